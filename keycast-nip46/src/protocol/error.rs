//! The one error type of keycast-nip46.

use crate::protocol::response::Nip46Response;

/// Everything that can go wrong while reading NIP-46 input.
///
/// Request errors carry the request id whenever one could be read, so the caller can
/// still answer `{"id","error"}` (see [`Error::reply`]). Messages never contain secrets
/// or message content.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The request is larger than [`crate::protocol::message::MAX_REQUEST_BYTES`].
    #[error("request too large: {len} bytes, limit {max}")]
    TooLarge {
        /// Size of the input.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The request is not a JSON object of the NIP-46 shape (no usable id, `method` not a
    /// string, `params` not an array, not JSON at all).
    #[error("malformed request: {reason}")]
    Malformed {
        /// The request id, if one could be read.
        id: Option<String>,
        /// What is wrong.
        reason: String,
    },
    /// A known method got the wrong number or type of params.
    #[error("invalid params for {method}: {reason}")]
    InvalidParams {
        /// The request id.
        id: String,
        /// The NIP-46 method name.
        method: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// A param had the right type but failed validation (pubkey, event template).
    #[error("invalid argument for {method}: {source}")]
    InvalidArgument {
        /// The request id.
        id: String,
        /// The NIP-46 method name.
        method: &'static str,
        /// The validation error from keycast-core.
        source: keycast_core::Error,
    },
    /// A `perms` string entry that is not `method[:param]`.
    #[error("invalid perms entry {entry:?}: {reason}")]
    InvalidPerms {
        /// The offending entry (truncated).
        entry: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// A `bunker://` or `nostrconnect://` URI that cannot be parsed or issued.
    #[error("invalid connection URI: {reason}")]
    InvalidUri {
        /// What is wrong.
        reason: String,
    },
    /// The relay pool refused a relay or a subscription.
    #[error("relay: {reason}")]
    Relay {
        /// What went wrong.
        reason: String,
    },
    /// A relay the outbound relay policy does not allow (an internal address, or not on
    /// the operator's allow-list). Nothing was created.
    #[error("relay {relay} is not allowed: {reason}")]
    RelayRefused {
        /// The relay URL.
        relay: String,
        /// Why (e.g. "loopback", "not on the relay allow-list").
        reason: String,
    },
    /// A `nostrconnect://` URI names more relays (besides the configured ones) than
    /// [`crate::BunkerConfig::max_relays_per_uri`]. Nothing was created.
    #[error("the URI names {relays} relays besides this server's; at most {max} are accepted")]
    TooManyRelays {
        /// Extra relays the URI names.
        relays: usize,
        /// The limit.
        max: usize,
    },
    /// Pairing would give the account more distinct extra relays, over its active
    /// authorizations, than [`crate::BunkerConfig::max_relays_per_account`]. Nothing was
    /// created.
    #[error(
        "this account's apps would use {relays} relays besides this server's; at most {max} \
         are allowed (revoke an app that uses others first)"
    )]
    AccountRelays {
        /// Distinct extra relays the account would use.
        relays: usize,
        /// The limit.
        max: usize,
    },
    /// Too many pairings for this account lately; retry after the given time.
    #[error("too many pairings; retry in {} s", retry_after.as_secs().max(1))]
    RateLimited {
        /// When the next attempt can succeed.
        retry_after: std::time::Duration,
    },
    /// A [`crate::BunkerConfig`] value that cannot be used.
    #[error("bunker setting {setting}: {reason}")]
    InvalidConfig {
        /// The field.
        setting: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// The custody engine or its store failed while starting the service.
    #[error("custody: {0}")]
    Custody(#[from] keycast_core::Error),
}

impl Error {
    /// The id of the request this error is about, when it could be read.
    pub fn request_id(&self) -> Option<&str> {
        match self {
            Error::Malformed { id, .. } => id.as_deref(),
            Error::InvalidParams { id, .. } | Error::InvalidArgument { id, .. } => Some(id),
            Error::TooLarge { .. }
            | Error::InvalidPerms { .. }
            | Error::InvalidUri { .. }
            | Error::Relay { .. }
            | Error::RelayRefused { .. }
            | Error::TooManyRelays { .. }
            | Error::AccountRelays { .. }
            | Error::RateLimited { .. }
            | Error::InvalidConfig { .. }
            | Error::Custody(_) => None,
        }
    }

    /// The error reply to send, or `None` when no id could be read (nothing to answer to).
    pub fn reply(&self) -> Option<Nip46Response> {
        self.request_id()
            .map(|id| Nip46Response::error(id, self.to_string()))
    }
}

/// Result alias used across keycast-nip46.
pub type Result<T, E = Error> = std::result::Result<T, E>;
