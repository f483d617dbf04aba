//! # keycast-nip46
//!
//! NIP-46 remote signing on top of [`keycast_core::Custody`].
//!
//! - The protocol, pure (no I/O): [`Nip46Request`] parses decrypted request JSON into a
//!   typed [`Command`]; [`Nip46Response`] builds replies (`result`, `error`, `auth_url`);
//!   [`Scheme`] detects NIP-04 / NIP-44 per message so replies match; [`perms`] maps the
//!   `perms` string onto keycast [`keycast_core::Permission`]s; [`BunkerUri`] (issued) and
//!   [`NostrConnectUri`] (accepted) are the URIs.
//! - [`RequestHandler`] answers one decrypted request for one authorization through the
//!   custody engine, enforcing connect secrets and client binding.
//! - [`Bunker`], the relay service: subscription for the bunker keys of active
//!   authorizations, `created_at` window, de-duplication, routing, a bounded work queue
//!   with "overloaded" replies, replies without waiting for `OK`, reconnects with
//!   exponential backoff and stall probes ([`Bunker::relay_states`]), `auth_url` approvals
//!   ([`Bunker::resume_approvals`]) and `nostrconnect://` pairing ([`Bunker::pair`]); rate
//!   limits at intake, before any crypto, and an outbound relay policy, caps and a
//!   per-relay subscription for the relays `nostrconnect://` clients name.
//! - [`SingleUserBunker`]: one key served in-process in a few lines.
//! - [`Error`]: the one error type of the crate.
//! - `testing` (feature `testing`): a raw NIP-46 load client for tests and benchmarks.
//!
//! The pure protocol layer, for example reading what a `nostrconnect://` client asks for:
//!
//! ```
//! use keycast_nip46::NostrConnectUri;
//!
//! let uri = "nostrconnect://83f3b2ae6aa368e8275397b9c26cf550101d63ebaab900d19dd4a4429f5ad8f5\
//!            ?relay=wss%3A%2F%2Frelay.example&secret=0s8j2djs&perms=sign_event%3A1%2Cnip44_encrypt\
//!            &name=Notes";
//! let client = NostrConnectUri::parse(uri)?;
//! assert_eq!(client.relays[0].as_str(), "wss://relay.example");
//! assert_eq!(client.secret.as_deref(), Some("0s8j2djs"));
//! assert_eq!(client.perms.len(), 2);
//! assert_eq!(client.name.as_deref(), Some("Notes"));
//! assert!(NostrConnectUri::parse("https://example.com").is_err());
//! # Ok::<_, keycast_nip46::Error>(())
//! ```

#![warn(unreachable_pub)]

// Modules are private: every public item has one path, at the root or in `perms`,
// `websocket` or `testing` (feature).
mod embedded;
// The cargo-fuzz entry points: only with the `fuzzing` feature.
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
mod handler;
mod protocol;
mod service;
#[cfg(feature = "testing")]
pub mod testing;
pub mod websocket;

/// NIP-46 `perms` strings (`sign_event:1,nip44_encrypt`): reading them and mapping them to
/// a keycast policy. The types are at the root ([`PermEntry`], [`PolicyMapping`], ...).
pub mod perms {
    pub use crate::protocol::perms::{parse, to_policy, MAX_PERMS_BYTES};
}

pub use embedded::SingleUserBunker;
pub use handler::RequestHandler;
pub use protocol::error::{Error, Result};
pub use protocol::message::{
    connect_target_ok, Command, Nip46Request, MAX_ID_BYTES, MAX_REQUEST_BYTES,
};
pub use protocol::perms::{Gap, PermEntry, PermMethod, PolicyMapping};
pub use protocol::response::{result_text, Nip46Response};
pub use protocol::scheme::Scheme;
pub use protocol::uri::{BunkerUri, NostrConnectUri};
pub use service::{
    Bunker, BunkerConfig, BunkerStats, PairingPermit, RateLimit, RelayConnection, RelayState,
    QUEUE_WAIT_BUCKETS_MICROS,
};
