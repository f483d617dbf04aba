//! The client-initiated flow: a client shows a `nostrconnect://` URI, the user accepts it
//! in keycast, and the bunker answers the client first.

use std::sync::Arc;

use keycast_core::{Authorization, NewAuthorization, TransportScheme};
use rand::Rng;

use super::Bunker;
use crate::protocol::response::Nip46Response;
use crate::protocol::uri::NostrConnectUri;
use crate::Result;

impl Bunker {
    /// Pairs with the client of `uri`: creates the authorization described by `new` (its
    /// relays are replaced by the URI's, where the client listens), binds the client's key
    /// to it, subscribes on those relays and sends the client a `connect` reply carrying
    /// its secret (`"ack"` for older clients that sent none). The client's requests then
    /// go to the new authorization's bunker key.
    ///
    /// The permissions the client asked for (`uri.perms`) are not applied here: the caller
    /// chooses the policy in `new`, e.g. from [`crate::PolicyMapping`] after the user
    /// agreed to it.
    pub async fn pair(
        &self,
        uri: &NostrConnectUri,
        mut new: NewAuthorization,
    ) -> Result<Arc<Authorization>> {
        let s = &self.shared;
        new.relays = uri.relays.clone();
        let (auth, secret) = s.custody.create_authorization(new).await?;
        s.custody
            .store()
            .redeem_connect_secret(auth.id, &secret.digest(), uri.client)
            .await?;
        s.custody.invalidate_authorization(auth.id);
        let auth = s.custody.authorization(auth.id).await?;
        s.add_relays(&uri.relays).await?;
        s.refresh_subscription().await?;
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
