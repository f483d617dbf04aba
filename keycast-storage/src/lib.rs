//! # keycast-storage
//!
//! Durable [`keycast_core::KeyStore`] backends on sqlx, each behind its own feature:
//!
//! - `sqlite` (default): [`SqliteStore`], one file in WAL mode with `synchronous=FULL`,
//!   created with mode 0600; the embedded default.
//! - `postgres`: `PostgresStore`, for production and many instances; pool size and
//!   start-up retries (1, 2, 4, 8 s) from `PostgresOptions`. (Not links: the docs of a
//!   build with default features must resolve every link.)
//!
//! Both pass `keycast_core::testing::key_store` unchanged. The schema lives in
//! `migrations/sqlite` and `migrations/postgres` and is embedded at build time; `migrate()`
//! applies what is pending and is a no-op when nothing is.
//!
//! With an [`AuditSpool`] attached (`with_audit_spool`), audit records the database cannot
//! take are kept in a local fsynced file and moved in once it answers again, so cached
//! keys keep signing through an outage.
//!
//! Secrets are stored only as envelope columns and SHA-256 digests. Database errors map to
//! meaningful [`keycast_core::Error`] variants: unique violations to `AlreadyExists`,
//! foreign-key violations to `NotFound`, check violations to `InvalidInput`, undecodable
//! rows to `Corrupt`, unreachable or busy databases to `Unavailable`.
//!
//! Opening, migrating and using a SQLite store (a Postgres URL works the same way):
//!
//! ```
//! use keycast_core::{Tenant, TenantName};
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let dir = tempfile::tempdir()?;
//! let url = format!("sqlite://{}", dir.path().join("keycast.db").display());
//! let db = keycast_storage::Database::open(&url).await?;
//! db.migrate().await?;
//! let store = db.into_key_store();
//! let tenant = Tenant::new(TenantName::parse("example")?);
//! store.create_tenant(&tenant).await?;
//! assert_eq!(store.get_tenant(tenant.id).await?.name, tenant.name);
//! // A second tenant under the same id is refused with a meaningful error.
//! assert!(matches!(
//!     store.create_tenant(&tenant).await,
//!     Err(keycast_core::Error::AlreadyExists { .. })
//! ));
//! # Ok::<_, Box<dyn std::error::Error>>(()) }).unwrap();
//! ```

mod audit_spool;
mod error;
mod rows;
mod server_settings;
mod sql_store;
mod sql_teams;

#[cfg(feature = "postgres")]
mod postgres;
#[cfg(feature = "sqlite")]
mod sqlite;
#[cfg(all(feature = "testing", feature = "postgres"))]
#[doc(hidden)]
pub mod testing;

use std::sync::Arc;

pub use audit_spool::{AuditSpool, SpoolStats};
pub use error::StorageError;
#[cfg(feature = "postgres")]
pub use postgres::{PostgresOptions, PostgresStore};
#[cfg(feature = "testing")]
#[doc(hidden)]
pub use server_settings::testing_settings;
#[cfg(feature = "sqlite")]
pub use sqlite::SqliteStore;

use keycast_core::KeyStore;

/// A store chosen by URL scheme.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Database {
    /// `sqlite:` URLs.
    #[cfg(feature = "sqlite")]
    Sqlite(SqliteStore),
    /// `postgres:` and `postgresql:` URLs.
    #[cfg(feature = "postgres")]
    Postgres(PostgresStore),
}

impl Database {
    /// Opens the database named by `url` with default options. Does not migrate.
    pub async fn open(url: &str) -> Result<Self, StorageError> {
        Self::open_with(url, None).await
    }

    /// [`Database::open`] with `pool_size` Postgres connections (`None`: the default,
    /// 2 × cores and at least 8). SQLite ignores it: one writer and a read pool.
    pub async fn open_with(url: &str, pool_size: Option<u32>) -> Result<Self, StorageError> {
        #[cfg(not(feature = "postgres"))]
        let _ = pool_size;
        let scheme = url.split(':').next().unwrap_or_default();
        match scheme {
            #[cfg(feature = "sqlite")]
            "sqlite" => Ok(Database::Sqlite(SqliteStore::open_url(url).await?)),
            #[cfg(feature = "postgres")]
            "postgres" | "postgresql" => Ok(Database::Postgres(
                PostgresStore::connect(url, &postgres_options(pool_size)).await?,
            )),
            _ => Err(StorageError::Config(format!(
                "unsupported database URL scheme {scheme:?}; this build supports: {}",
                supported_schemes()
            ))),
        }
    }

    /// Applies pending migrations.
    pub async fn migrate(&self) -> Result<(), StorageError> {
        match self {
            #[cfg(feature = "sqlite")]
            Database::Sqlite(s) => s.migrate().await,
            #[cfg(feature = "postgres")]
            Database::Postgres(s) => s.migrate().await,
        }
    }

    /// Waits for in-flight queries and closes every connection (graceful shutdown).
    pub async fn close(&self) {
        match self {
            #[cfg(feature = "sqlite")]
            Database::Sqlite(s) => s.close().await,
            #[cfg(feature = "postgres")]
            Database::Postgres(s) => s.close().await,
        }
    }

    /// Attaches a spool for audit records the database cannot take ([`AuditSpool`]), so
    /// signing goes on through an outage. Call inside a Tokio runtime.
    pub fn with_audit_spool(self, spool: AuditSpool) -> Self {
        match self {
            #[cfg(feature = "sqlite")]
            Database::Sqlite(s) => Database::Sqlite(s.with_audit_spool(spool)),
            #[cfg(feature = "postgres")]
            Database::Postgres(s) => Database::Postgres(s.with_audit_spool(spool)),
        }
    }

    /// The store as the engine holds it.
    pub fn into_key_store(self) -> Arc<dyn KeyStore> {
        match self {
            #[cfg(feature = "sqlite")]
            Database::Sqlite(s) => Arc::new(s),
            #[cfg(feature = "postgres")]
            Database::Postgres(s) => Arc::new(s),
        }
    }
}

#[cfg(feature = "postgres")]
fn postgres_options(pool_size: Option<u32>) -> PostgresOptions {
    let mut options = PostgresOptions::default();
    if let Some(n) = pool_size {
        options.max_connections = n;
    }
    options
}

fn supported_schemes() -> &'static str {
    match (cfg!(feature = "sqlite"), cfg!(feature = "postgres")) {
        (true, true) => "sqlite, postgres",
        (true, false) => "sqlite",
        (false, true) => "postgres",
        (false, false) => "none (enable the sqlite or postgres feature)",
    }
}
