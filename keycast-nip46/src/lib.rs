//! # keycast-nip46
//!
//! NIP-46 remote signing on top of [`keycast_core::Custody`].
//!
//! This crate currently holds the pure protocol layer, [`protocol`]: no I/O, no relays.
//!
//! - [`protocol::message`]: decrypted request JSON into a typed [`Nip46Request`].
//! - [`protocol::response`]: [`Nip46Response`] replies (`result`, `error`, `auth_url`).
//! - [`protocol::scheme`]: per-message NIP-04 / NIP-44 detection, so replies match.
//! - [`protocol::perms`]: the `perms` string of `connect` and `nostrconnect://`, and how it
//!   maps onto keycast [`keycast_core::Permission`]s.
//! - [`protocol::uri`]: `bunker://` (issued) and `nostrconnect://` (accepted) URIs.
//! - [`Error`]: the one error type of the crate.
//!
//! - [`handler`]: [`RequestHandler`] answers one decrypted request for one authorization
//!   through the custody engine, enforcing connect secrets and client binding.
//!
//! - [`embedded`]: [`SingleUserBunker`], one key served in-process in a few lines.
//! - [`service`]: [`Bunker`], the relay service (subscription, `created_at` window,
//!   de-duplication, routing, bounded work queue, replies without waiting for `OK`).

pub mod embedded;
pub mod handler;
pub mod protocol;
pub mod service;

pub use embedded::SingleUserBunker;
pub use handler::RequestHandler;
pub use protocol::error::{Error, Result};
pub use protocol::message::{connect_target_ok, Command, Nip46Request};
pub use protocol::perms::{Gap, PermEntry, PermMethod, PolicyMapping};
pub use protocol::response::Nip46Response;
pub use protocol::scheme::Scheme;
pub use protocol::uri::{BunkerUri, NostrConnectUri};
pub use service::{
    Bunker, BunkerConfig, BunkerStats, RelayConnection, RelayState, QUEUE_WAIT_BUCKETS_MICROS,
};
