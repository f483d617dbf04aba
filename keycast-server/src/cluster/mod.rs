//! Cluster mode: many instances on one Postgres, coordinating through Redis (design §6).
//!
//! Built so far: [`ring::HashRing`], which decides the one instance that answers each
//! bunker pubkey's NIP-46 requests. Membership over Redis, the `RequestRouter` on top of
//! the ring, claims during ring changes and pub/sub invalidation are still to come
//! (issue 7).

pub mod ring;
