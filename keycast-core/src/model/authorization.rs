//! Authorizations: an app's connection to one key.

use nostr::{PublicKey, RelayUrl, Timestamp};

use crate::crypto::secret::SecretDigest;
use crate::ids::{AuthorizationId, KeyId, PolicyId, TenantId, UserId};
use crate::model::names::Label;

/// An app's connection to one signing key, with its own bunker keypair.
///
/// `version` increases on every change that must reach caches (revocation, client changes),
/// so cached copies can be fenced against the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorization {
    /// Identity.
    pub id: AuthorizationId,
    /// Owning tenant.
    pub tenant_id: TenantId,
    /// The user who granted it.
    pub user_id: UserId,
    /// The key the app may use.
    pub key_id: KeyId,
    /// The stored bunker key (kind [`crate::KeyKind::Bunker`]) that signs NIP-46 replies.
    pub bunker_key_id: KeyId,
    /// Its public half; NIP-46 requests are `#p`-tagged with it.
    pub bunker_pubkey: PublicKey,
    /// Digest of the single-use connect secret; `None` once redeemed or if none was issued.
    pub connect_secret: Option<SecretDigest>,
    /// Relays the app and the bunker meet on.
    pub relays: Vec<RelayUrl>,
    /// The policy every request is checked against.
    pub policy_id: PolicyId,
    /// Human label ("Damus on my phone").
    pub label: Label,
    /// After this instant every request is refused.
    pub expires_at: Option<Timestamp>,
    /// Set once revoked; revocation is permanent.
    pub revoked_at: Option<Timestamp>,
    /// Client pubkeys that completed `connect`.
    pub client_pubkeys: Vec<PublicKey>,
    /// Uses reserved under a max-uses permission.
    pub uses: u64,
    /// Bumped on every change.
    pub version: u64,
    /// Creation time.
    pub created_at: Timestamp,
}

impl Authorization {
    /// Whether the authorization is revoked or past its expiry at `now`.
    pub fn check_active(&self, now: Timestamp) -> crate::Result<()> {
        if self.revoked_at.is_some() {
            return Err(crate::Error::Revoked);
        }
        if self.expires_at.is_some_and(|t| now >= t) {
            return Err(crate::Error::Expired);
        }
        Ok(())
    }

    /// Whether `client` has completed `connect` on this authorization.
    pub fn has_client(&self, client: &PublicKey) -> bool {
        self.client_pubkeys.contains(client)
    }
}
