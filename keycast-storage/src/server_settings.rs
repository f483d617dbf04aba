//! Settings a running server records for the processes beside it (its CLI, other
//! instances), in the `server_settings` table. They are the server's concern, not the
//! custody engine's, so they are methods of [`Database`] rather than of
//! [`keycast_core::KeyStore`].

use crate::error::{about, db_error};
use crate::Database;

const SUBJECT: crate::error::Subject = about("server setting", "server setting");

const GET: &str = "SELECT value FROM server_settings WHERE name = $1";
const PUT: &str = "INSERT INTO server_settings (name, value, updated_at) VALUES ($1, $2, $3) \
                   ON CONFLICT (name) DO UPDATE SET value = excluded.value, \
                   updated_at = excluded.updated_at";

impl Database {
    /// The value recorded under `name`, if any.
    pub async fn setting(&self, name: &str) -> keycast_core::Result<Option<String>> {
        match self {
            #[cfg(feature = "sqlite")]
            Database::Sqlite(s) => sqlx::query_scalar(&crate::SqliteStore::sql(GET))
                .bind(name)
                .fetch_optional(s.reader())
                .await
                .map_err(|e| db_error(e, SUBJECT)),
            #[cfg(feature = "postgres")]
            Database::Postgres(s) => sqlx::query_scalar(&crate::PostgresStore::sql(GET))
                .bind(name)
                .fetch_optional(s.reader())
                .await
                .map_err(|e| db_error(e, SUBJECT)),
        }
    }

    /// Records `value` under `name` (replacing what was there) at `at` (Unix seconds).
    pub async fn set_setting(&self, name: &str, value: &str, at: i64) -> keycast_core::Result<()> {
        match self {
            #[cfg(feature = "sqlite")]
            Database::Sqlite(s) => sqlx::query(&crate::SqliteStore::sql(PUT))
                .bind(name)
                .bind(value)
                .bind(at)
                .execute(s.writer())
                .await
                .map(drop)
                .map_err(|e| db_error(e, SUBJECT)),
            #[cfg(feature = "postgres")]
            Database::Postgres(s) => sqlx::query(&crate::PostgresStore::sql(PUT))
                .bind(name)
                .bind(value)
                .bind(at)
                .execute(s.writer())
                .await
                .map(drop)
                .map_err(|e| db_error(e, SUBJECT)),
        }
    }
}

/// The settings conformance both backends' tests run: absent until set, then the latest
/// value; a bad name is refused and changes nothing.
#[cfg(feature = "testing")]
#[doc(hidden)]
pub async fn testing_settings(db: &Database) {
    assert_eq!(db.setting("nip46_relays").await.expect("read"), None);
    db.set_setting("nip46_relays", "[\"wss://a.example\"]", 1)
        .await
        .expect("set");
    db.set_setting("nip46_relays", "[\"wss://b.example\"]", 2)
        .await
        .expect("replace");
    assert!(
        db.set_setting("", "x", 3).await.is_err(),
        "an empty name is refused"
    );
    assert_eq!(
        db.setting("nip46_relays").await.expect("read").as_deref(),
        Some("[\"wss://b.example\"]")
    );
    assert_eq!(db.setting("").await.expect("read"), None);
}
