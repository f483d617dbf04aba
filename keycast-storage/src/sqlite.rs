//! The SQLite backend: one file, WAL mode, nothing to install.
//!
//! Durability settings (every acknowledged write survives a crash of the process, and of
//! the machine): `journal_mode=WAL`, `synchronous=FULL` (the WAL is fsynced at every
//! commit), `foreign_keys=ON`, `busy_timeout=5s`. Writes go through a single connection, so
//! transactions never contend inside the process; reads use a separate pool and see every
//! committed write.

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use crate::audit_spool::{AuditSpool, DrainSignals};
use crate::error::{about, db_error, StorageError};
use crate::sql_store::impl_key_store;

/// A [`keycast_core::KeyStore`] in one SQLite file.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    writer: SqlitePool,
    reader: SqlitePool,
    path: PathBuf,
    spool: Option<AuditSpool>,
    drain: Arc<DrainSignals>,
}

impl SqliteStore {
    /// Opens (creating with mode 0600 if missing) the database file at `path`.
    /// Does not migrate; call [`SqliteStore::migrate`].
    pub async fn open(path: impl AsRef<Path>) -> Result<Self, StorageError> {
        let path = path.as_ref().to_path_buf();
        create_private(&path)?;
        let options = SqliteConnectOptions::new()
            .filename(&path)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(5));
        // No ping before each acquire: a SQLite connection is a thread beside an open file,
        // and sqlx's ping is one more round trip to that thread per query (it already pings
        // each connection when it is given back).
        let connect = |max: u32| {
            SqlitePoolOptions::new()
                .max_connections(max)
                .acquire_timeout(Duration::from_secs(30))
                .test_before_acquire(false)
                .connect_with(options.clone())
        };
        let url = format!("sqlite://{}", path.display());
        let writer = connect(1).await.map_err(|source| StorageError::Connect {
            url: url.clone(),
            source,
        })?;
        let readers = std::thread::available_parallelism().map_or(4, |n| n.get() as u32 * 2);
        let reader = connect(readers.max(2))
            .await
            .map_err(|source| StorageError::Connect { url, source })?;
        Ok(Self {
            writer,
            reader,
            path,
            spool: None,
            drain: Arc::default(),
        })
    }

    /// Opens from a `sqlite:` URL (`sqlite:///abs/path.db`, `sqlite://rel/path.db` or
    /// `sqlite:path.db`).
    pub async fn open_url(url: &str) -> Result<Self, StorageError> {
        let opts = SqliteConnectOptions::from_str(url)
            .map_err(|e| StorageError::Config(format!("bad sqlite URL: {e}")))?;
        let path = opts.get_filename();
        if path.as_os_str().is_empty() || url.contains(":memory:") || url.contains("mode=memory") {
            return Err(StorageError::Config(
                "sqlite URL must name a file; in-memory databases lose every write".into(),
            ));
        }
        Self::open(path).await
    }

    /// Applies pending migrations from `migrations/sqlite`. Applying twice is a no-op.
    pub async fn migrate(&self) -> Result<(), StorageError> {
        sqlx::migrate!("migrations/sqlite")
            .run(&self.writer)
            .await?;
        Ok(())
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes a consistent copy of the database to `target` while it stays in use
    /// (`VACUUM INTO`: one read transaction, so concurrent writes wait neither for it nor
    /// end up half in it). `target` must not exist; it is created 0600 and fsynced.
    pub async fn backup_to(&self, target: &Path) -> Result<(), StorageError> {
        let file_err = |source| StorageError::File {
            path: target.display().to_string(),
            source,
        };
        // An empty file of our own making, so the copy is never readable by others.
        let mut open = std::fs::OpenOptions::new();
        open.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut open, 0o600);
        open.open(target).map_err(file_err)?;
        let copied = sqlx::query("VACUUM INTO ?1")
            .bind(target.display().to_string())
            .execute(&self.reader)
            .await;
        if let Err(e) = copied {
            let _ = std::fs::remove_file(target);
            return Err(StorageError::Backup(e.to_string()));
        }
        std::fs::File::open(target)
            .and_then(|f| f.sync_all())
            .map_err(file_err)?;
        Ok(())
    }

    /// SQLite's own consistency check of every page and index (`PRAGMA integrity_check`).
    pub async fn integrity_check(&self) -> Result<(), StorageError> {
        let (verdict,): (String,) = sqlx::query_as("PRAGMA integrity_check")
            .fetch_one(&self.reader)
            .await
            .map_err(|e| StorageError::Backup(format!("integrity check: {e}")))?;
        if verdict == "ok" {
            Ok(())
        } else {
            Err(StorageError::Backup(format!(
                "the database is damaged: {verdict}"
            )))
        }
    }

    /// Closes both pools, waiting for in-flight statements.
    pub async fn close(&self) {
        self.drain.stop.notify_one();
        self.writer.close().await;
        self.reader.close().await;
    }

    pub(crate) fn writer(&self) -> &SqlitePool {
        &self.writer
    }

    pub(crate) fn reader(&self) -> &SqlitePool {
        &self.reader
    }

    /// SQLite spells numbered parameters `?1`; the shared SQL uses `$1`.
    pub(crate) fn sql(q: &'static str) -> Cow<'static, str> {
        Cow::Owned(q.replace('$', "?"))
    }

    // An aggregate's own ORDER BY needs SQLite 3.44; sqlx bundles a newer one.
    const REVOKE_AUTHORIZATION: &'static str = crate::sql_store::revoke_authorization_sql!(
        "(SELECT group_concat(hex(c.client_pubkey), ',' ORDER BY c.seq) \
         FROM authorization_clients c WHERE c.authorization_id = authorizations.id)"
    );
}

/// Creates the file readable and writable by its owner only, before SQLite opens it.
fn create_private(path: &Path) -> Result<(), StorageError> {
    let err = |source| StorageError::File {
        path: path.display().to_string(),
        source,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    let mut open = std::fs::OpenOptions::new();
    open.write(true).create(true).truncate(false);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut open, 0o600);
    open.open(path).map_err(err)?;
    Ok(())
}

impl_key_store!(SqliteStore, sqlx::Sqlite);
