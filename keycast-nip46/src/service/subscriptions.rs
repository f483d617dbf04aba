//! What the bunker asks each relay for, and what intake knows about each bunker key.
//!
//! [`plan`] is the one place that decides which bunker keys go to which relay: the
//! configured relays get every active bunker key; any other relay (one a
//! `nostrconnect://` client named) gets only the bunker keys of the active
//! authorizations that list it, so a relay chosen by one app never learns the bunker keys
//! of other users or tenants. A relay the policy refuses gets nothing and is not
//! connected. (Splitting a large key set over several `REQ`s builds on this map.)
//!
//! [`Bindings`] is intake's view of the active bunker keys and the clients bound to each,
//! rebuilt from the same listing: intake drops requests to unknown bunker keys and tells
//! bound clients from strangers without a store read or any crypto.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{PoisonError, RwLock};

use keycast_core::nostr::{PublicKey, RelayUrl};
use keycast_core::Authorization;

/// Relay → the bunker keys it is asked for (possibly none).
pub(crate) type Plan = BTreeMap<RelayUrl, BTreeSet<PublicKey>>;

/// The subscription plan for the `active` authorizations. `allowed` says whether the
/// relay policy lets a relay other than the configured ones be connected at all.
pub(crate) fn plan(
    configured: &[RelayUrl],
    active: &[Authorization],
    allowed: impl Fn(&RelayUrl) -> bool,
) -> Plan {
    let every: BTreeSet<PublicKey> = active.iter().map(|a| a.bunker_pubkey).collect();
    let mut plan: Plan = configured
        .iter()
        .map(|r| (r.clone(), every.clone()))
        .collect();
    for auth in active {
        for relay in &auth.relays {
            if configured.contains(relay) || !allowed(relay) {
                continue;
            }
            plan.entry(relay.clone())
                .or_default()
                .insert(auth.bunker_pubkey);
        }
    }
    plan
}

/// Active bunker keys and their bound clients, as intake sees them.
#[derive(Debug, Default)]
pub(crate) struct Bindings {
    clients: RwLock<HashMap<PublicKey, Vec<PublicKey>>>,
}

impl Bindings {
    /// Replaces the view with the `active` authorizations.
    pub(crate) fn replace(&self, active: &[Authorization]) {
        let map = active
            .iter()
            .map(|a| (a.bunker_pubkey, a.client_pubkeys.clone()))
            .collect();
        *self.clients.write().unwrap_or_else(PoisonError::into_inner) = map;
    }

    /// `None` when `bunker` is no active authorization's; else whether `client` is bound.
    pub(crate) fn is_bound(&self, bunker: &PublicKey, client: &PublicKey) -> Option<bool> {
        let clients = self.clients.read().unwrap_or_else(PoisonError::into_inner);
        clients.get(bunker).map(|c| c.contains(client))
    }

    /// Updates one bunker's clients after a connect or logout handled here; a bunker no
    /// longer in the view (revoked meanwhile) is not added back.
    pub(crate) fn update(&self, auth: &Authorization) {
        let mut clients = self.clients.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(c) = clients.get_mut(&auth.bunker_pubkey) {
            c.clone_from(&auth.client_pubkeys);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keycast_core::nostr::{Keys, Timestamp};
    use keycast_core::{AuthorizationId, KeyId, Label, PolicyId, TenantId, UserId};

    fn relay(s: &str) -> RelayUrl {
        RelayUrl::parse(s).expect(s)
    }

    fn auth(relays: &[RelayUrl]) -> Authorization {
        Authorization {
            id: AuthorizationId::random(),
            tenant_id: TenantId::random(),
            user_id: UserId::random(),
            key_id: KeyId::random(),
            bunker_key_id: KeyId::random(),
            bunker_pubkey: Keys::generate().public_key(),
            connect_secret: None,
            relays: relays.to_vec(),
            policy_id: PolicyId::random(),
            label: Label::parse("app").expect("label"),
            expires_at: None,
            revoked_at: None,
            client_pubkeys: vec![Keys::generate().public_key()],
            uses: 0,
            version: 1,
            created_at: Timestamp::now(),
        }
    }

    #[test]
    fn extra_relays_get_only_the_keys_of_the_authorizations_that_list_them() {
        let ours = relay("wss://ours.example");
        let (x, y, refused) = (
            relay("wss://x.example"),
            relay("wss://y.example"),
            relay("ws://10.0.0.1"),
        );
        let plain = auth(&[]);
        let on_ours = auth(std::slice::from_ref(&ours));
        let on_x = auth(&[x.clone(), refused.clone()]);
        let on_xy = auth(&[x.clone(), y.clone()]);
        let active = [plain.clone(), on_ours.clone(), on_x.clone(), on_xy.clone()];
        let p = plan(std::slice::from_ref(&ours), &active, |r| r != &refused);
        let keys = |a: &[&Authorization]| -> BTreeSet<PublicKey> {
            a.iter().map(|a| a.bunker_pubkey).collect()
        };
        assert_eq!(p.len(), 3, "{p:?}");
        assert_eq!(p[&ours], keys(&[&plain, &on_ours, &on_x, &on_xy]));
        assert_eq!(p[&x], keys(&[&on_x, &on_xy]));
        assert_eq!(p[&y], keys(&[&on_xy]));
        assert!(!p.contains_key(&refused), "a refused relay is not planned");
    }

    #[test]
    fn configured_relays_are_planned_without_authorizations() {
        let ours = relay("wss://ours.example");
        let p = plan(std::slice::from_ref(&ours), &[], |_| true);
        assert_eq!(p.len(), 1);
        assert!(p[&ours].is_empty());
    }

    #[test]
    fn bindings_know_active_bunkers_and_their_clients() {
        let a = auth(&[]);
        let b = Bindings::default();
        b.replace(std::slice::from_ref(&a));
        let stranger = Keys::generate().public_key();
        assert_eq!(
            b.is_bound(&a.bunker_pubkey, &a.client_pubkeys[0]),
            Some(true)
        );
        assert_eq!(b.is_bound(&a.bunker_pubkey, &stranger), Some(false));
        assert_eq!(b.is_bound(&stranger, &stranger), None);
        let mut connected = a.clone();
        connected.client_pubkeys.push(stranger);
        b.update(&connected);
        assert_eq!(b.is_bound(&a.bunker_pubkey, &stranger), Some(true));
        b.replace(&[]);
        b.update(&connected);
        assert_eq!(
            b.is_bound(&a.bunker_pubkey, &stranger),
            None,
            "a revoked bunker is not added back"
        );
    }
}
