//! Authorizer: decides whether a request may run.

use std::fmt::Debug;

use async_trait::async_trait;
use nostr::{PublicKey, Timestamp};

use crate::error::Result;
use crate::ids::{KeyId, TenantId};
use crate::model::authorization::Authorization;
use crate::model::policy::Policy;
use crate::model::request::Request;

/// Everything an authorizer may look at besides the request itself.
#[derive(Debug, Clone, Copy)]
pub struct AuthContext<'a> {
    /// Tenant of the key.
    pub tenant_id: TenantId,
    /// The key that would be used.
    pub key_id: KeyId,
    /// Its pubkey (for encrypt-to-self).
    pub key_pubkey: PublicKey,
    /// The app's authorization; `None` when the key's owner calls directly through the library.
    pub authorization: Option<&'a Authorization>,
    /// The authorization's policy, loaded by the engine.
    pub policy: Option<&'a Policy>,
    /// The time the decision is made at.
    pub now: Timestamp,
}

/// The verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Run it.
    Allow,
    /// Refuse it, with a reason fit to show the caller.
    Deny(String),
    /// A human must approve at this URL (NIP-46 `auth_url`, HTTP 403 with a link).
    NeedsApproval(String),
}

/// Decides whether a request may run.
///
/// Promises: deterministic for the same context and state, and fails closed (anything it
/// cannot evaluate is a `Deny`). It may keep state (rate limits, use counters) and should
/// consume it only when it returns `Allow`.
///
/// Errors: `Err` only for infrastructure failures (e.g. the store behind a use counter is
/// [`crate::Error::Unavailable`]); the engine treats them as a refusal.
///
/// Concurrency: called concurrently for the same authorization; limits must hold under races.
#[async_trait]
pub trait Authorizer: Send + Sync + Debug + 'static {
    /// Decides.
    async fn authorize(&self, ctx: &AuthContext<'_>, request: &Request) -> Result<Decision>;

    /// Decides without I/O, where it can: the same decision [`Authorizer::authorize`]
    /// would make, with the same effects (a rate-limit token taken on `Allow`), or `None`
    /// with no effect at all when only the async path can decide. The engine's NIP-46
    /// fast path asks it on the crypto pool and takes `None` (or anything but `Allow`) to
    /// the full path, which asks [`Authorizer::authorize`]. The default is `None`.
    fn authorize_now(
        &self,
        _ctx: &AuthContext<'_>,
        _request: &Request,
    ) -> Option<Result<Decision>> {
        None
    }
}
