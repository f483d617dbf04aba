//! Authorizations this process revoked itself, so applying their change needs no store
//! read.
//!
//! An HTTP revocation already holds the row it wrote; the change feed brings the same
//! authorization a moment later, and applying it used to read the row again (one of the
//! few store round trips a revocation costs). Revocation is final — nothing clears
//! `revoked_at` — so "revoked" is what any later read would return too: whenever the
//! change is applied, and in whatever order, its key can be let go without the read.
//! Bounded (moka evicts once it holds `CAPACITY`): an id noted but never applied (the
//! feed was read before it was noted) does not stay forever.

use keycast_core::AuthorizationId;

/// How many ids are remembered.
const CAPACITY: u64 = 4_096;

#[derive(Debug)]
pub(crate) struct Revoked(moka::sync::Cache<AuthorizationId, ()>);

impl Default for Revoked {
    fn default() -> Self {
        Self(moka::sync::Cache::new(CAPACITY))
    }
}

impl Revoked {
    /// Notes that `id` was revoked (the store write succeeded).
    pub(crate) fn note(&self, id: AuthorizationId) {
        self.0.insert(id, ());
    }

    /// Whether `id` was noted as revoked; forgets it.
    pub(crate) fn take(&self, id: AuthorizationId) -> bool {
        self.0.remove(&id).is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_noted_id_is_taken_once() {
        let revoked = Revoked::default();
        let (a, b) = (AuthorizationId::random(), AuthorizationId::random());
        revoked.note(a);
        assert!(!revoked.take(b), "never noted");
        assert!(revoked.take(a));
        assert!(!revoked.take(a), "taken already");
    }

    #[test]
    fn holds_at_most_its_capacity() {
        let revoked = Revoked::default();
        for _ in 0..CAPACITY * 2 {
            revoked.note(AuthorizationId::random());
        }
        revoked.0.run_pending_tasks();
        assert!(revoked.0.entry_count() <= CAPACITY);
    }
}
