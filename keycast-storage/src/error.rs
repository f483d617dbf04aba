//! The storage crate's error type, and the mapping of database errors into core errors.

use keycast_core::Error as CoreError;

/// Errors from opening, migrating or configuring a store. Errors of individual
/// [`keycast_core::KeyStore`] calls are [`keycast_core::Error`]s.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    /// The database URL or options are not usable.
    #[error("invalid database configuration: {0}")]
    Config(String),
    /// The database could not be reached, even after the start-up retries.
    #[error("cannot connect to the database at {url}: {source}")]
    Connect {
        /// The URL with any password removed.
        url: String,
        /// The last error.
        #[source]
        source: sqlx::Error,
    },
    /// Applying migrations failed.
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// Copying the database (a backup) failed.
    #[error("backup failed: {0}")]
    Backup(String),
    /// A filesystem operation on the database file failed.
    #[error("database file {path}: {source}")]
    File {
        /// The file.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

/// What a failing statement was about, for meaningful error variants.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Subject {
    /// The record being written (for unique violations).
    pub(crate) what: &'static str,
    /// What a foreign key points at (for foreign-key violations).
    pub(crate) refers_to: &'static str,
}

pub(crate) const fn about(what: &'static str, refers_to: &'static str) -> Subject {
    Subject { what, refers_to }
}

/// Maps a sqlx error into the core error for a call about `subject`.
pub(crate) fn db_error(e: sqlx::Error, subject: Subject) -> CoreError {
    use sqlx::error::ErrorKind;
    match e {
        sqlx::Error::RowNotFound => CoreError::NotFound { what: subject.what },
        sqlx::Error::Database(db) => match db.kind() {
            ErrorKind::UniqueViolation => CoreError::AlreadyExists { what: subject.what },
            ErrorKind::ForeignKeyViolation => CoreError::NotFound {
                what: subject.refers_to,
            },
            ErrorKind::CheckViolation | ErrorKind::NotNullViolation => {
                CoreError::invalid(subject.what, "value violates a database constraint")
            }
            _ if is_busy(db.as_ref()) => {
                tracing::warn!(error = %db, "database cannot take this now");
                CoreError::Unavailable("database is busy or out of space".into())
            }
            _ => {
                tracing::error!(error = %db, "database error");
                CoreError::Internal("database error".into())
            }
        },
        sqlx::Error::ColumnDecode { .. }
        | sqlx::Error::Decode(_)
        | sqlx::Error::ColumnNotFound(_) => {
            CoreError::Corrupt(format!("{} row cannot be decoded", subject.what))
        }
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => CoreError::Unavailable("database unreachable".into()),
        other => {
            tracing::error!(error = %other, "database error");
            CoreError::Internal("database error".into())
        }
    }
}

/// Failures that pass: the database is busy, shutting down or out of space. The caller
/// gets `Unavailable` (HTTP 503 with `Retry-After`), never an internal error.
fn is_busy(db: &dyn sqlx::error::DatabaseError) -> bool {
    let Some(code) = db.code() else { return false };
    // SQLite reports extended codes; the primary code is the low byte: BUSY (5),
    // LOCKED (6), IOERR (10), FULL (13).
    if let Ok(n) = code.parse::<u32>() {
        return matches!(n & 0xff, 5 | 6 | 10 | 13);
    }
    // Postgres: lock timeout, disk full, out of memory, too many connections, admin and
    // crash shutdown, cannot connect now.
    matches!(
        code.as_ref(),
        "55P03" | "53100" | "53200" | "53300" | "57P01" | "57P02" | "57P03"
    )
}

/// Strips a password from a URL for error messages and logs.
#[cfg_attr(not(feature = "postgres"), allow(dead_code))]
pub(crate) fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{}{}@{}", &url[..scheme + 3], user, &url[at + 1..])
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact_url("postgres://u:secret@h:5432/db"),
            "postgres://u@h:5432/db"
        );
        assert_eq!(redact_url("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(redact_url("sqlite:///tmp/x.db"), "sqlite:///tmp/x.db");
    }
}
