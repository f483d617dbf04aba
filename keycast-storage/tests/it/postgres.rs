//! The Postgres backend against a real server (`KEYCAST_TEST_POSTGRES_URL`).

use crate::common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use keycast_core::testing;
use keycast_core::*;
use keycast_storage::{PostgresOptions, PostgresStore, StorageError};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance() {
    let Some(url) = common::postgres_url() else {
        return;
    };
    let db = common::FreshDb::create(&url).await;
    testing::key_store::run(Arc::new(db.store().await)).await;
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_authorizer_over_postgres() {
    let Some(url) = common::postgres_url() else {
        return;
    };
    let db = common::FreshDb::create(&url).await;
    let store: Arc<dyn KeyStore> = Arc::new(db.store().await);
    testing::authorizer::run(Arc::new(PolicyAuthorizer::new(store.clone())), store).await;
    db.drop_db().await;
}

#[tokio::test]
async fn migrating_twice_is_a_no_op() {
    let Some(url) = common::postgres_url() else {
        return;
    };
    let db = common::FreshDb::create(&url).await;
    let store = db.store().await;
    let tenant = testing::fixtures::tenant();
    store.create_tenant(&tenant).await.expect("tenant");
    store.migrate().await.expect("second migration");
    let again = db.store().await;
    assert_eq!(again.get_tenant(tenant.id).await, Ok(tenant));
    store.close().await;
    again.close().await;
    db.drop_db().await;
}

#[tokio::test]
async fn values_a_column_cannot_hold_are_invalid_input() {
    let Some(url) = common::postgres_url() else {
        return;
    };
    let db = common::FreshDb::create(&url).await;
    let store: Arc<dyn KeyStore> = Arc::new(db.store().await);
    let w = testing::key_store::world(&store).await;
    let mut a = w.authorization(&store, None).await;
    a.id = AuthorizationId::random();
    a.bunker_pubkey = testing::fixtures::pubkey();
    a.expires_at = Some(keycast_core::nostr::Timestamp::from(u64::MAX));
    let r = store.insert_authorization(&a).await;
    assert!(
        matches!(r, Err(Error::InvalidInput { what: "time", .. })),
        "{r:?}"
    );
    drop(store);
    db.drop_db().await;
}

#[tokio::test]
async fn unreachable_server_fails_after_the_retry_schedule() {
    let options = PostgresOptions {
        connect_retries: vec![Duration::from_millis(50), Duration::from_millis(100)],
        ..PostgresOptions::default()
    };
    let start = Instant::now();
    let r =
        PostgresStore::connect("postgres://keycast:hunter2@127.0.0.1:1/keycast", &options).await;
    let waited = start.elapsed();
    match r {
        Err(StorageError::Connect { url, .. }) => {
            assert_eq!(
                url, "postgres://keycast@127.0.0.1:1/keycast",
                "password redacted"
            );
        }
        other => panic!("expected a connect error, got {other:?}"),
    }
    assert!(
        waited >= Duration::from_millis(150),
        "retries were skipped: {waited:?}"
    );
    let r = PostgresStore::connect("postgres://[bad", &options).await;
    assert!(matches!(r, Err(StorageError::Config(_))), "{r:?}");
}

#[tokio::test]
async fn server_settings_are_recorded_and_replaced() {
    let Some(url) = common::postgres_url() else {
        return;
    };
    let fresh = common::FreshDb::create(&url).await;
    let db = keycast_storage::Database::open(&fresh.url)
        .await
        .expect("open");
    db.migrate().await.expect("migrate");
    keycast_storage::testing_settings(&db).await;
    db.close().await;
    fresh.drop_db().await;
}
