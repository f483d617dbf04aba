//! For tests and benchmarks (feature `testing`): a raw NIP-46 load client, and
//! [`TestRelay`], a relay on a listener it bound itself.
//!
//! [`LoadClient`] sends requests to bunkers over real relays and records every reply
//! event per request id, so a test can prove that each request was answered exactly once
//! even when several bunker instances serve the same keys. A library client such as
//! nostr-connect keeps only the first reply, which would hide duplicates.

mod load;
mod relay;

pub use load::{signed_by, Ignored, LoadClient, Reply, Tally};
pub use relay::{serve_relay, TestRelay};

/// Why a [`LoadClient`] call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// A relay could not be added, connected, subscribed to, or did not accept an event.
    #[error("relay: {0}")]
    Relay(String),
    /// No reply arrived in time.
    #[error("no reply in time")]
    Timeout,
    /// The bunker answered with an error (or without a result).
    #[error("refused: {0}")]
    Refused(String),
    /// Encrypting or signing the request failed.
    #[error("crypto: {0}")]
    Crypto(String),
}
