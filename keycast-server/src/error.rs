//! The one error type of the server library.

/// What can go wrong starting or running the service.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// A setting is missing or invalid; the message names it.
    #[error("configuration: {0}")]
    Config(String),
    /// Another keycast-server holds the data dir.
    #[error("data dir {0} is in use by another keycast-server (lock held)")]
    Locked(String),
    /// Reading or writing local files (data dir, lock).
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The database could not be opened or migrated.
    #[error("database: {0}")]
    Storage(#[from] keycast_storage::StorageError),
    /// The key manager could not be set up.
    #[error("key manager: {0}")]
    Kms(#[from] keycast_kms::KmsError),
    /// The master key does not fit the database: missing while sealed keys exist, or not
    /// the one their rows were wrapped by. The message names the file or key.
    #[error("master key: {0}")]
    MasterKey(String),
    /// A custody operation failed.
    #[error(transparent)]
    Custody(#[from] keycast_core::Error),
    /// The NIP-46 service failed.
    #[error("nip-46: {0}")]
    Nip46(#[from] keycast_nip46::Error),
    /// The embedded relay could not start.
    #[error("embedded relay: {0}")]
    Relay(String),
    /// Cluster mode: Redis could not be reached or used; the message names what failed.
    #[error("cluster: {0}")]
    Cluster(String),
}

/// Result with [`ServerError`].
pub type Result<T, E = ServerError> = std::result::Result<T, E>;

impl ServerError {
    pub(crate) fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io {
            what: what.into(),
            source,
        }
    }
}
