//! The Postgres backend, for production and for many instances.

use std::borrow::Cow;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions};
use sqlx::Connection;

use crate::audit_spool::{AuditSpool, DrainSignals};
use crate::error::{about, db_error, redact_url, StorageError};
use crate::sql_store::impl_key_store;

/// A pooled connection idle this long is pinged before it is used again.
const PING_WHEN_IDLE: Duration = Duration::from_secs(1);

/// Connection settings for [`PostgresStore::connect`].
#[derive(Debug, Clone)]
pub struct PostgresOptions {
    /// Pool size. Default: the service's concurrency, 2 × cores with a minimum of 8.
    pub max_connections: u32,
    /// Waits between start-up connection attempts. Default 1, 2, 4, 8 s (five attempts).
    pub connect_retries: Vec<Duration>,
    /// How long a call waits for a free connection before it fails as unavailable.
    pub acquire_timeout: Duration,
}

impl Default for PostgresOptions {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(4, |n| n.get() as u32);
        Self {
            max_connections: (2 * cores).max(8),
            connect_retries: [1, 2, 4, 8].map(Duration::from_secs).to_vec(),
            acquire_timeout: Duration::from_secs(5),
        }
    }
}

/// A [`keycast_core::KeyStore`] in a Postgres database.
#[derive(Debug, Clone)]
pub struct PostgresStore {
    pool: PgPool,
    spool: Option<AuditSpool>,
    drain: Arc<DrainSignals>,
}

impl PostgresStore {
    /// Connects to `url` (`postgres://…`), retrying on the configured schedule, then
    /// failing with [`StorageError::Connect`]. Does not migrate.
    pub async fn connect(url: &str, options: &PostgresOptions) -> Result<Self, StorageError> {
        let connect_options = PgConnectOptions::from_str(url)
            .map_err(|e| StorageError::Config(format!("bad postgres URL: {e}")))?;
        // sqlx pings every connection when it is given back; pinging again on each acquire
        // is a second network round trip per query. Only a connection idle for a while
        // (the server may have restarted meanwhile) is pinged before use.
        let pool_options = PgPoolOptions::new()
            .max_connections(options.max_connections.max(1))
            .acquire_timeout(options.acquire_timeout)
            .test_before_acquire(false)
            .before_acquire(|conn, meta| {
                Box::pin(async move {
                    if meta.idle_for >= PING_WHEN_IDLE {
                        conn.ping().await?;
                    }
                    Ok(true)
                })
            });
        // Probe with single connections so each attempt fails fast (the pool itself would
        // keep retrying until its acquire timeout).
        let mut waits = options.connect_retries.iter();
        loop {
            match PgConnection::connect_with(&connect_options).await {
                Ok(probe) => {
                    let _ = probe.close().await;
                    let pool =
                        pool_options
                            .connect_with(connect_options)
                            .await
                            .map_err(|source| StorageError::Connect {
                                url: redact_url(url),
                                source,
                            })?;
                    return Ok(Self {
                        pool,
                        spool: None,
                        drain: Arc::default(),
                    });
                }
                Err(source) => match waits.next() {
                    Some(wait) => {
                        tracing::warn!(url = %redact_url(url), error = %source, retry_in = ?wait, "postgres not reachable");
                        tokio::time::sleep(*wait).await;
                    }
                    None => {
                        return Err(StorageError::Connect {
                            url: redact_url(url),
                            source,
                        })
                    }
                },
            }
        }
    }

    /// Applies pending migrations from `migrations/postgres`. Applying twice is a no-op;
    /// concurrent instances serialise on an advisory lock.
    pub async fn migrate(&self) -> Result<(), StorageError> {
        sqlx::migrate!("migrations/postgres")
            .run(&self.pool)
            .await?;
        Ok(())
    }

    /// The connection pool (for health checks).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Closes the pool, waiting for in-flight statements.
    pub async fn close(&self) {
        self.drain.stop.notify_one();
        self.pool.close().await;
    }

    pub(crate) fn writer(&self) -> &PgPool {
        &self.pool
    }

    pub(crate) fn reader(&self) -> &PgPool {
        &self.pool
    }

    pub(crate) fn sql(q: &'static str) -> Cow<'static, str> {
        Cow::Borrowed(q)
    }

    const REVOKE_AUTHORIZATION: &'static str = crate::sql_store::revoke_authorization_sql!(
        "(SELECT string_agg(encode(c.client_pubkey, 'hex'), ',' ORDER BY c.seq) \
         FROM authorization_clients c WHERE c.authorization_id = authorizations.id)"
    );
}

impl_key_store!(PostgresStore, sqlx::Postgres);
