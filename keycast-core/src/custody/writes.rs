//! Store writes that cached values depend on, made through the engine so that it, not
//! each caller, forgets what they make stale. Other instances learn of them from the
//! change feed ([`Custody::apply_changes`]).

use nostr::PublicKey;

use super::Custody;
use crate::crypto::secret::SecretDigest;
use crate::error::Result;
use crate::ids::AuthorizationId;
use crate::model::authorization::Authorization;
use crate::model::policy::Policy;

impl Custody {
    /// Replaces a policy's name and permissions ([`crate::KeyStore::update_policy`]: only
    /// if `policy.version` is the stored one, else [`crate::Error::Conflict`]); requests
    /// answered here after it returns see the new rules.
    pub async fn update_policy(&self, policy: &Policy) -> Result<Policy> {
        let updated = self.inner.store.update_policy(policy).await?;
        self.invalidate_policy(updated.id);
        Ok(updated)
    }

    /// Connects `client` to an authorization with its single-use connect secret
    /// ([`crate::KeyStore::redeem_connect_secret`]); the next lookup here sees the client.
    pub async fn redeem_connect_secret(
        &self,
        id: AuthorizationId,
        secret: &SecretDigest,
        client: PublicKey,
    ) -> Result<Authorization> {
        let result = self
            .inner
            .store
            .redeem_connect_secret(id, secret, client)
            .await;
        // Also after a failure: a conflict may mean another instance connected it.
        self.invalidate_authorization(id);
        result
    }

    /// Disconnects `client` (NIP-46 `logout`); returns whether it was connected. Its next
    /// request here is refused.
    pub async fn remove_client(&self, id: AuthorizationId, client: &PublicKey) -> Result<bool> {
        let removed = self.inner.store.remove_client(id, client).await?;
        self.invalidate_authorization(id);
        Ok(removed)
    }

    /// The authorization as stored now, not as cached here: for a check that a cached copy
    /// may answer wrongly because another instance changed it (a client connected there).
    pub async fn reload_authorization(
        &self,
        id: AuthorizationId,
    ) -> Result<std::sync::Arc<Authorization>> {
        self.invalidate_authorization(id);
        self.authorization(id).await
    }
}
