//! Cluster mode: many instances on one Postgres, coordinating through Redis (design §6).
//!
//! Built so far:
//! - [`ring::HashRing`] decides the one instance that answers each bunker pubkey's NIP-46
//!   requests;
//! - [`membership::Membership`] keeps this instance registered in Redis (TTL heartbeat,
//!   join/leave announcements, periodic full re-read) and publishes the current ring.
//!
//! Still to come (issue 7): the `RequestRouter` over the ring wired into `serve`, `SET NX`
//! claims during ring changes, pub/sub cache invalidation, readiness, and the
//! three-process tests.

pub mod membership;
pub mod ring;
