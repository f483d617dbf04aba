//! The kms crate's error type for building key managers. Errors of individual
//! [`keycast_core::KeyManager`] calls are [`keycast_core::Error`]s that name the backend and
//! key (never key material).

/// Errors from constructing or configuring a key manager.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KmsError {
    /// A setting is missing or malformed.
    #[error("{backend}: invalid configuration: {reason}")]
    Config {
        /// Which backend.
        backend: &'static str,
        /// What is wrong (no secret values).
        reason: String,
    },
    /// The master-key file is unusable.
    #[error("master key file {path}: {reason}")]
    KeyFile {
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// The provider refused or could not be reached while starting up.
    #[error("{backend}: {source}")]
    Startup {
        /// Which backend.
        backend: &'static str,
        /// The failed call.
        #[source]
        source: keycast_core::Error,
    },
}
