//! # keycast-nip46
//!
//! NIP-46 remote signing on top of [`keycast_core::Custody`].
//!
//! - [`protocol`], pure (no I/O): [`protocol::message`] parses decrypted request JSON into
//!   a typed [`Nip46Request`]; [`protocol::response`] builds [`Nip46Response`] replies
//!   (`result`, `error`, `auth_url`); [`protocol::scheme`] detects NIP-04 / NIP-44 per
//!   message so replies match; [`protocol::perms`] maps the `perms` string onto keycast
//!   [`keycast_core::Permission`]s; [`protocol::uri`] handles `bunker://` (issued) and
//!   `nostrconnect://` (accepted) URIs.
//! - [`handler`]: [`RequestHandler`] answers one decrypted request for one authorization
//!   through the custody engine, enforcing connect secrets and client binding.
//! - [`service`]: [`Bunker`], the relay service: subscription for the bunker keys of
//!   active authorizations, `created_at` window, de-duplication, routing, a bounded work
//!   queue with "overloaded" replies, replies without waiting for `OK`, reconnects with
//!   exponential backoff and stall probes ([`Bunker::relay_states`]), `auth_url` approvals
//!   ([`Bunker::resume_approvals`]) and `nostrconnect://` pairing ([`Bunker::pair`]);
//!   rate limits at intake, before any crypto, and an outbound relay policy, caps and a
//!   per-relay subscription for the relays `nostrconnect://` clients name (see the
//!   [`service`] docs).
//! - [`embedded`]: [`SingleUserBunker`], one key served in-process in a few lines.
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

pub mod embedded;
// The cargo-fuzz entry points: only with the `fuzzing` feature.
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
pub mod handler;
pub mod protocol;
pub mod service;
#[cfg(feature = "testing")]
pub mod testing;
pub mod websocket;

pub use embedded::SingleUserBunker;
pub use handler::RequestHandler;
pub use protocol::error::{Error, Result};
pub use protocol::message::{connect_target_ok, Command, Nip46Request};
pub use protocol::perms::{Gap, PermEntry, PermMethod, PolicyMapping};
pub use protocol::response::{result_text, Nip46Response};
pub use protocol::scheme::Scheme;
pub use protocol::uri::{BunkerUri, NostrConnectUri};
pub use service::{
    Bunker, BunkerConfig, BunkerStats, PairingPermit, RateLimit, RelayConnection, RelayState,
    QUEUE_WAIT_BUCKETS_MICROS,
};
