//! The one error type of keycast-core. Backends map their private errors into it.

/// Everything that can go wrong in the custody engine and the backend traits.
///
/// Variants carry meaning so that callers (HTTP, NIP-46) can map them to a
/// status or reply without string matching. Messages never contain secrets.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Caller input failed validation. `what` names the field.
    #[error("invalid {what}: {reason}")]
    InvalidInput {
        /// The field or value.
        what: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// A NIP-44 / NIP-04 payload could not be decoded, authenticated or decrypted.
    #[error("invalid ciphertext: {0}")]
    InvalidCiphertext(String),
    /// An event template names a pubkey other than the signing key's.
    #[error("event pubkey does not belong to the signing key")]
    ForeignPubkey,
    /// The requested record does not exist.
    #[error("{what} not found")]
    NotFound {
        /// What was looked up.
        what: &'static str,
    },
    /// A record with the same identity already exists.
    #[error("{what} already exists")]
    AlreadyExists {
        /// What was written.
        what: &'static str,
    },
    /// A compare-and-set or state precondition failed (stale version, secret already used, ...).
    #[error("conflict: {0}")]
    Conflict(String),
    /// A backend (database, KMS) could not be reached; retrying later may succeed.
    #[error("backend unavailable: {0}")]
    Unavailable(String),
    /// The authorization has been revoked.
    #[error("authorization revoked")]
    Revoked,
    /// The authorization or a policy expiry has passed.
    #[error("authorization expired")]
    Expired,
    /// The Authorizer denied the request.
    #[error("denied: {0}")]
    Denied(String),
    /// The request needs a human approval at this URL before it can run.
    #[error("approval required: {0}")]
    NeedsApproval(String),
    /// A stored key decrypted to a secret whose pubkey differs from the stored pubkey.
    #[error("stored key does not match its recorded pubkey")]
    KeyMismatch,
    /// An envelope failed to open: tampered, moved to another row, or wrong master key.
    #[error("envelope cannot be opened: {0}")]
    Envelope(String),
    /// An envelope was written by a format version this build does not know.
    #[error("unsupported envelope format version {0}")]
    UnsupportedFormat(u16),
    /// The key manager (KMS) refused or failed an operation.
    #[error("key manager: {0}")]
    KeyManager(String),
    /// A stored row could not be decoded (wrong length, bad UTF-8, unknown enum value).
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// A bounded queue is full; the caller should retry later.
    #[error("overloaded, retry later")]
    Overloaded,
    /// A broken internal invariant. Never caused by input.
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    /// Shorthand for [`Error::InvalidInput`].
    pub fn invalid(what: &'static str, reason: impl Into<String>) -> Self {
        Error::InvalidInput {
            what,
            reason: reason.into(),
        }
    }

    /// A short stable code for logs, metrics, audit records and API error bodies.
    pub fn code(&self) -> &'static str {
        match self {
            Error::InvalidInput { .. } => "invalid_input",
            Error::InvalidCiphertext(_) => "invalid_ciphertext",
            Error::ForeignPubkey => "foreign_pubkey",
            Error::NotFound { .. } => "not_found",
            Error::AlreadyExists { .. } => "already_exists",
            Error::Conflict(_) => "conflict",
            Error::Unavailable(_) => "unavailable",
            Error::Revoked => "revoked",
            Error::Expired => "expired",
            Error::Denied(_) => "denied",
            Error::NeedsApproval(_) => "needs_approval",
            Error::KeyMismatch => "key_mismatch",
            Error::Envelope(_) => "envelope",
            Error::UnsupportedFormat(_) => "unsupported_format",
            Error::KeyManager(_) => "key_manager",
            Error::Corrupt(_) => "corrupt",
            Error::Overloaded => "overloaded",
            Error::Internal(_) => "internal",
        }
    }

    /// True when retrying the same call later may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Error::Unavailable(_) | Error::Overloaded)
    }
}

/// Result alias used across keycast-core.
pub type Result<T, E = Error> = std::result::Result<T, E>;
