//! The client-initiated flow: a client shows a `nostrconnect://` URI, the user accepts it
//! in keycast, and the bunker answers the client first.
//!
//! The URI's relays are chosen by whoever made it, so pairing is where they are checked,
//! before anything is created: the relay policy (no internal addresses unless configured
//! or allow-listed), at most `max_relays_per_uri` relays besides the configured ones, at
//! most `max_relays_per_account` distinct such relays over the account's active
//! authorizations, and at most `pairing_limit` pairings per account.

use std::collections::BTreeSet;
use std::sync::Arc;

use keycast_core::nostr::{RelayUrl, Timestamp};
use keycast_core::{Authorization, NewAuthorization, TenantId, TransportScheme, UserId};
use rand::Rng;

use super::{bump, Bunker, Shared};
use crate::protocol::response::Nip46Response;
use crate::protocol::uri::NostrConnectUri;
use crate::{Error, Result};

/// Proof that [`Bunker::admit_pairing`] took one of the account's pairings and found the
/// URI acceptable; spent by [`Bunker::pair_admitted`].
#[derive(Debug)]
pub struct PairingPermit {
    tenant: TenantId,
    user: UserId,
}

impl Bunker {
    /// Pairs with the client of `uri`: [`Bunker::admit_pairing`] for the account of `new`,
    /// then [`Bunker::pair_admitted`]. Refused (with nothing created) when the URI's
    /// relays are not allowed or too many, or the account pairs too often.
    ///
    /// The permissions the client asked for (`uri.perms`) are not applied here: the caller
    /// chooses the policy in `new`, e.g. from [`crate::PolicyMapping`] after the user
    /// agreed to it.
    pub async fn pair(
        &self,
        uri: &NostrConnectUri,
        new: NewAuthorization,
    ) -> Result<Arc<Authorization>> {
        let permit = self.admit_pairing(uri, new.tenant_id, new.user_id).await?;
        self.pair_admitted(permit, uri, new).await
    }

    /// Takes one of the account's pairings ([`Error::RateLimited`] when none is left) and
    /// checks the URI's relays: [`Error::TooManyRelays`], [`Error::RelayRefused`] (the
    /// relay policy; names are resolved), [`Error::AccountRelays`]. Creates nothing; call
    /// it before making anything the pairing needs (a policy, say).
    pub async fn admit_pairing(
        &self,
        uri: &NostrConnectUri,
        tenant: TenantId,
        user: UserId,
    ) -> Result<PairingPermit> {
        let s = &self.shared;
        if let Err(retry_after) = s.pairings.check(&(tenant, user)) {
            bump(&s.counters.pairings_refused);
            return Err(Error::RateLimited { retry_after });
        }
        s.check_pairing(uri, tenant, user, true)
            .await
            .inspect_err(|_| bump(&s.counters.pairings_refused))?;
        Ok(PairingPermit { tenant, user })
    }

    /// Pairs after [`Bunker::admit_pairing`]: creates the authorization described by
    /// `new` (its relays are replaced by the URI's, where the client listens; it must be
    /// for the permit's account), binds the client's key to it, subscribes on those relays
    /// and sends the client a `connect` reply carrying its secret (`"ack"` for older
    /// clients that sent none). The client's requests then go to the new authorization's
    /// bunker key. The relay counts are checked again, one pairing at a time, so
    /// concurrent pairings cannot pass the account's cap together.
    pub async fn pair_admitted(
        &self,
        permit: PairingPermit,
        uri: &NostrConnectUri,
        mut new: NewAuthorization,
    ) -> Result<Arc<Authorization>> {
        let s = &self.shared;
        if (permit.tenant, permit.user) != (new.tenant_id, new.user_id) {
            return Err(Error::InvalidConfig {
                setting: "pair_admitted",
                reason: "the permit is for another account".into(),
            });
        }
        new.relays = uri.relays.clone();
        let auth = {
            let _one_at_a_time = s.pairing.lock().await;
            s.check_pairing(uri, new.tenant_id, new.user_id, false)
                .await
                .inspect_err(|_| bump(&s.counters.pairings_refused))?;
            let (auth, secret) = s.custody.create_authorization(new).await?;
            s.custody
                .redeem_connect_secret(auth.id, &secret.digest(), uri.client)
                .await?;
            auth
        };
        let auth = s.custody.authorization(auth.id).await?;
        s.cover(auth.id).await?;
        // The id of an unsolicited reply is ours to pick; clients match on the secret.
        let id = format!("{:016x}", rand::thread_rng().gen::<u64>());
        let result = uri.secret.clone().unwrap_or_else(|| "ack".to_owned());
        s.publish(
            &auth,
            uri.client,
            TransportScheme::Nip44,
            Nip46Response::ok(id, result),
        )
        .await;
        Ok(auth)
    }
}

impl Shared {
    /// The relay checks of pairing; `resolve` also resolves names (the first check).
    async fn check_pairing(
        &self,
        uri: &NostrConnectUri,
        tenant: TenantId,
        user: UserId,
        resolve: bool,
    ) -> Result<()> {
        let extra: BTreeSet<&RelayUrl> = uri
            .relays
            .iter()
            .filter(|r| !self.policy.is_configured(r))
            .collect();
        let max = self.config.max_relays_per_uri;
        if extra.len() > max {
            return Err(Error::TooManyRelays {
                relays: extra.len(),
                max,
            });
        }
        for relay in &extra {
            if resolve {
                self.policy.check(relay).await?;
            } else if let super::relay_policy::Verdict::Refused(why) =
                self.policy.relay_verdict(relay)
            {
                return Err(Error::RelayRefused {
                    relay: relay.to_string(),
                    reason: why.into(),
                });
            }
        }
        let now = Timestamp::now();
        let mine = self
            .custody
            .store()
            .list_authorizations(tenant, Some(user))
            .await?;
        let mut used: BTreeSet<&RelayUrl> = mine
            .iter()
            .filter(|a| a.check_active(now).is_ok())
            .flat_map(|a| a.relays.iter())
            .filter(|r| !self.policy.is_configured(r))
            .collect();
        used.extend(extra);
        let max = self.config.max_relays_per_account;
        if used.len() > max {
            return Err(Error::AccountRelays {
                relays: used.len(),
                max,
            });
        }
        Ok(())
    }
}
