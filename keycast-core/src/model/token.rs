//! Bearer tokens for HTTP RPC. Only their digest is stored.

use nostr::Timestamp;

use crate::crypto::secret::SecretDigest;
use crate::ids::{AuthorizationId, TenantId};

/// An API token that acts through one authorization.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiToken {
    /// SHA-256 of the bearer secret; the lookup key.
    pub digest: SecretDigest,
    /// Owning tenant.
    pub tenant_id: TenantId,
    /// The authorization this token acts through.
    pub authorization_id: AuthorizationId,
    /// After this instant the token is refused.
    pub expires_at: Option<Timestamp>,
    /// Creation time.
    pub created_at: Timestamp,
}
