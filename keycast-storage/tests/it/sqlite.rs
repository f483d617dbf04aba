//! The SQLite backend: conformance, file safety, migrations, corrupt rows, bad URLs.

use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;

use keycast_core::nostr::{Keys, Kind, ToBech32};
use keycast_core::testing;
use keycast_core::*;
use keycast_storage::{Database, SqliteStore, StorageError};

async fn fresh(dir: &tempfile::TempDir) -> SqliteStore {
    let store = SqliteStore::open(dir.path().join("keycast.db"))
        .await
        .expect("open");
    store.migrate().await.expect("migrate");
    store
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance() {
    let dir = tempfile::tempdir().expect("tempdir");
    testing::key_store::run(Arc::new(fresh(&dir).await)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_authorizer_over_sqlite() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store: Arc<dyn KeyStore> = Arc::new(fresh(&dir).await);
    testing::authorizer::run(Arc::new(PolicyAuthorizer::new(store.clone())), store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_file_is_private_and_never_holds_a_plaintext_secret() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(fresh(&dir).await);
    let custody = Custody::builder(store.clone(), Arc::new(InsecureTestKeyManager::new()))
        .build()
        .expect("engine");
    let tenant = Tenant::new(TenantName::parse("plain").expect("name"));
    store.create_tenant(&tenant).await.expect("tenant");
    let user = User::new(tenant.id, Username::parse("alice").expect("name"), None);
    store.create_user(&user).await.expect("user");
    let secret = Keys::generate();
    let key = custody
        .create_key(
            NewKey::generate(
                tenant.id,
                Holder::User(user.id),
                KeyKind::User,
                Label::parse("main").expect("label"),
            )
            .with_secret(secret.secret_key().clone()),
        )
        .await
        .expect("key");
    let policy = Policy::new(
        tenant.id,
        Label::parse("all").expect("label"),
        vec![Permission::FullAccess],
    )
    .expect("policy");
    store.insert_policy(&policy).await.expect("policy");
    let (auth, connect_secret) = custody
        .create_authorization(NewAuthorization {
            tenant_id: tenant.id,
            user_id: user.id,
            key_id: key.id,
            policy_id: policy.id,
            label: Label::parse("app").expect("label"),
            relays: vec![],
            expires_at: None,
        })
        .await
        .expect("authorization");
    let event = custody
        .sign_event(
            Caller::Authorization(auth.id),
            EventTemplate::new(Kind::TextNote, "hi"),
        )
        .await
        .expect("sign through the stored key");
    event.verify().expect("valid");
    drop(custody);
    store.close().await;

    let needles: Vec<(&str, Vec<u8>)> = vec![
        (
            "secret bytes",
            secret.secret_key().to_secret_bytes().to_vec(),
        ),
        (
            "secret hex",
            secret.secret_key().to_secret_hex().into_bytes(),
        ),
        (
            "secret HEX",
            secret
                .secret_key()
                .to_secret_hex()
                .to_uppercase()
                .into_bytes(),
        ),
        (
            "nsec",
            secret.secret_key().to_bech32().expect("nsec").into_bytes(),
        ),
        (
            "connect secret",
            connect_secret.expose().as_bytes().to_vec(),
        ),
    ];
    let mut files = 0;
    for entry in std::fs::read_dir(dir.path()).expect("dir") {
        let path = entry.expect("entry").path();
        let name = path
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        if !name.starts_with("keycast.db") {
            continue;
        }
        files += 1;
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{name} has mode {mode:o}");
        let bytes = std::fs::read(&path).expect("read");
        for (what, needle) in &needles {
            assert!(
                !bytes.windows(needle.len()).any(|w| w == needle.as_slice()),
                "{what} found in {name}"
            );
        }
    }
    assert!(files >= 1, "no database file found");
    // And the store really holds the key: the pubkey is there in the clear.
    let db = std::fs::read(dir.path().join("keycast.db")).expect("read");
    let wal = std::fs::read(dir.path().join("keycast.db-wal")).unwrap_or_default();
    let pk = key.pubkey.to_bytes();
    assert!(
        db.windows(32).any(|w| w == pk) || wal.windows(32).any(|w| w == pk),
        "the pubkey should be stored (the grep would prove nothing otherwise)"
    );
}

#[tokio::test]
async fn migrating_twice_is_a_no_op() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = fresh(&dir).await;
    let tenant = testing::fixtures::tenant();
    store.create_tenant(&tenant).await.expect("tenant");
    store.migrate().await.expect("second migration");
    store.close().await;
    let reopened = fresh(&dir).await;
    assert_eq!(
        reopened.get_tenant(tenant.id).await,
        Ok(tenant),
        "data survives re-migration"
    );
}

#[tokio::test]
async fn undecodable_rows_are_corrupt_errors_not_panics() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = fresh(&dir).await;
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", store.path().display()))
        .await
        .expect("raw pool");
    let tenant = TenantId::random();
    sqlx::query("INSERT INTO tenants (id, name, created_at) VALUES (?1, 'Not A Slug!', 1)")
        .bind(tenant.as_uuid())
        .execute(&pool)
        .await
        .expect("raw insert");
    assert!(matches!(
        store.get_tenant(tenant).await,
        Err(Error::Corrupt(_))
    ));

    let good = testing::fixtures::tenant();
    store.create_tenant(&good).await.expect("tenant");
    let user = UserId::random();
    sqlx::query("INSERT INTO users (id, tenant_id, username, created_at) VALUES (?1, ?2, CAST(x'fffe61' AS TEXT), 1)")
        .bind(user.as_uuid())
        .bind(good.id.as_uuid())
        .execute(&pool)
        .await
        .expect("raw insert");
    let r = store.get_user(user).await;
    assert!(
        matches!(r, Err(Error::Corrupt(_))),
        "invalid UTF-8 username: {r:?}"
    );

    let key = testing::fixtures::key(good.id, None, KeyKind::User);
    store.insert_key(&key).await.expect("key");
    sqlx::query("UPDATE keys SET pubkey = x'ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff' WHERE id = ?1")
        .bind(key.id.as_uuid())
        .execute(&pool)
        .await
        .expect("raw update");
    let r = store.get_key(key.id).await;
    assert!(matches!(r, Err(Error::Corrupt(_))), "invalid pubkey: {r:?}");
    sqlx::query("UPDATE keys SET pubkey = ?1, format_version = 70000 WHERE id = ?2")
        .bind(key.pubkey.to_bytes().to_vec())
        .bind(key.id.as_uuid())
        .execute(&pool)
        .await
        .expect("raw update");
    let r = store.get_key(key.id).await;
    assert!(
        matches!(r, Err(Error::Corrupt(_))),
        "format version out of range: {r:?}"
    );
}

#[tokio::test]
async fn values_a_column_cannot_hold_are_invalid_input() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store: Arc<dyn KeyStore> = Arc::new(fresh(&dir).await);
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
    assert!(matches!(
        store.get_authorization(a.id).await,
        Err(Error::NotFound { .. })
    ));
    assert!(
        Label::parse(&"x".repeat(101)).is_err(),
        "over-long names never reach the store"
    );
    assert!(matches!(
        SecretDigest::from_slice(b"\xff\xfe"),
        Err(Error::InvalidInput { .. })
    ));
}

#[tokio::test]
async fn bad_urls_and_paths_are_clear_errors() {
    for url in ["mysql://localhost/x", "sqlite::memory:", "nonsense"] {
        let r = Database::open(url).await;
        assert!(matches!(r, Err(StorageError::Config(_))), "{url}: {r:?}");
    }
    let r = SqliteStore::open("/dev/null/keycast.db").await;
    assert!(matches!(r, Err(StorageError::File { .. })), "{r:?}");
}

/// Server settings: absent until set, replaced by a later set, kept across a reopen.
#[tokio::test]
async fn server_settings_are_recorded_and_replaced() {
    let dir = tempfile::tempdir().expect("dir");
    let url = format!("sqlite://{}", dir.path().join("keycast.db").display());
    let db = keycast_storage::Database::open(&url).await.expect("open");
    db.migrate().await.expect("migrate");
    keycast_storage::testing_settings(&db).await;
    db.close().await;
    let again = keycast_storage::Database::open(&url).await.expect("reopen");
    assert_eq!(
        again
            .setting("nip46_relays")
            .await
            .expect("read")
            .as_deref(),
        Some("[\"wss://b.example\"]")
    );
}
