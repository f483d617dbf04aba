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
