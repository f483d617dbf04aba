//! Test helpers (feature `testing`): the Postgres server from `KEYCAST_TEST_POSTGRES_URL`
//! and a fresh database per test. Used by this crate's tests and the server's.

use crate::{PostgresOptions, PostgresStore};
use sqlx::Connection;

/// The Postgres server to test against, or `None` (test skipped) when unset locally.
/// Under CI (`KEYCAST_TEST_REQUIRE_SERVICES=1`) a missing variable fails the test.
pub fn postgres_url() -> Option<String> {
    match std::env::var("KEYCAST_TEST_POSTGRES_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ if std::env::var("KEYCAST_TEST_REQUIRE_SERVICES").is_ok_and(|v| v == "1") => {
            panic!("KEYCAST_TEST_POSTGRES_URL must be set when KEYCAST_TEST_REQUIRE_SERVICES=1")
        }
        _ => {
            eprintln!("skipped: KEYCAST_TEST_POSTGRES_URL is not set");
            None
        }
    }
}

/// A database created for one test and dropped by [`FreshDb::drop_db`].
#[derive(Debug)]
pub struct FreshDb {
    /// The server's URL the database was created through.
    pub admin_url: String,
    /// The database's name (`keycast_t_…`).
    pub name: String,
    /// A URL that connects to it.
    pub url: String,
}

impl FreshDb {
    /// Creates an empty database on the server of `admin_url`.
    pub async fn create(admin_url: &str) -> FreshDb {
        let name = format!("keycast_t_{}", uuid::Uuid::new_v4().simple());
        let mut admin = sqlx::PgConnection::connect(admin_url)
            .await
            .expect("admin connection");
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut admin)
            .await
            .expect("create database");
        admin.close().await.expect("close");
        let base = admin_url.split('?').next().unwrap_or(admin_url);
        let (server, _db) = base.rsplit_once('/').expect("URL has a database path");
        FreshDb {
            admin_url: admin_url.to_owned(),
            url: format!("{server}/{name}"),
            name,
        }
    }

    /// Connects and migrates.
    pub async fn store(&self) -> PostgresStore {
        let store = PostgresStore::connect(&self.url, &PostgresOptions::default())
            .await
            .expect("connect");
        store.migrate().await.expect("migrate");
        store
    }

    /// Drops the database, closing its connections.
    pub async fn drop_db(self) {
        let mut admin = sqlx::PgConnection::connect(&self.admin_url)
            .await
            .expect("admin connection");
        sqlx::query(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        ))
        .execute(&mut admin)
        .await
        .expect("drop database");
    }
}
