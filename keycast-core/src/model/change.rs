//! The change feed: a record per write that can make a cached value stale.
//!
//! Caches in every process and instance read the feed (`KeyStore::changes_since`) and
//! drop what it names, so a revocation made anywhere (HTTP, CLI, another instance) takes
//! effect everywhere without a read on the signing path.

use crate::ids::{AuthorizationId, KeyId, PolicyId};

/// What changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Changed {
    /// An authorization was created, revoked, or gained or lost a client.
    Authorization(AuthorizationId),
    /// A policy's permissions were replaced.
    Policy(PolicyId),
    /// A key was deleted: every process must drop its secret from memory.
    Key(KeyId),
}

/// One entry of the feed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Change {
    /// Position in the feed, assigned when the write happens. With concurrent writers a
    /// lower `seq` can commit a moment after a higher one, so readers read again from the
    /// first position missing below their cursor; applying a change twice is harmless.
    pub seq: u64,
    /// What changed.
    pub what: Changed,
}
