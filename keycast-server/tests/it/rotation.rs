//! `kms rotate` moves every key to a new local master key; afterwards the old file is no
//! longer needed. Also: the same services open on Postgres when one is configured.

use std::path::Path;

use keycast_core::{Caller, KeyKind, Label};
use keycast_server::services::{default_tenant, Services};
use keycast_server::Config;

fn config(dir: &Path, master: &str, database: Option<&str>) -> Config {
    let d = dir.display().to_string();
    let m = dir.join(master).display().to_string();
    let db = database.map(str::to_owned);
    Config::load(None, |k| match k {
        "KEYCAST_DATA_DIR" => Some(d.clone()),
        "KEYCAST_MASTER_KEY_FILE" => Some(m.clone()),
        "KEYCAST_DATABASE_URL" => db.clone(),
        _ => None,
    })
    .expect("config")
}

async fn sign(s: &Services, key: keycast_core::KeyId) -> keycast_core::Result<()> {
    s.custody.invalidate_key(key);
    let template = keycast_core::EventTemplate::new(keycast_core::nostr::Kind::TextNote, "rotated");
    s.custody
        .sign_event(Caller::Owner(key), template)
        .await
        .map(|_| ())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_to_a_new_master_key_file() {
    let dir = std::env::temp_dir().join(format!("keycast-rotate-{}", uuid::Uuid::new_v4()));
    let before = Services::open(&config(&dir, "old.key", None), None)
        .await
        .expect("open");
    let key = before
        .custody
        .create_key(keycast_core::NewKey::generate(
            default_tenant(),
            keycast_core::Holder::Service,
            KeyKind::User,
            Label::parse("k").expect("label"),
        ))
        .await
        .expect("key");
    sign(&before, key.id)
        .await
        .expect("signs under the old master key");
    before.database.close().await;

    // A new master key alone would strand the rows: it is not generated.
    let refused = Services::open(&config(&dir, "new.key", None), None).await;
    assert!(
        matches!(&refused, Err(keycast_server::ServerError::MasterKey(m)) if m.contains("new.key")),
        "{refused:?}"
    );
    assert!(
        !dir.join("new.key").exists(),
        "no master key over sealed rows"
    );

    let both = Services::open(&config(&dir, "new.key", None), Some(dir.join("old.key")))
        .await
        .expect("open with the previous key");
    sign(&both, key.id)
        .await
        .expect("old rows open through the keyring");
    let report = keycast_kms::rotation::rotate(
        both.store.clone(),
        &both.keyring,
        &Default::default(),
        |_| {},
    )
    .await
    .expect("rotate");
    // The user's key and the service identity key.
    assert_eq!(report.rewrapped, 2);
    both.database.close().await;

    std::fs::remove_file(dir.join("old.key")).expect("retire the old key");
    let after = Services::open(&config(&dir, "new.key", None), None)
        .await
        .expect("open");
    sign(&after, key.id)
        .await
        .expect("signs under the new master key only");
    assert!(
        Services::open(&config(&dir, "new.key", None), Some(dir.join("old.key")))
            .await
            .is_err(),
        "a missing previous key file is a clear error"
    );
    std::fs::remove_dir_all(dir).expect("cleanup");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_open_on_postgres() {
    let Some(admin) = keycast_storage::testing::postgres_url() else {
        return;
    };
    let db = keycast_storage::testing::FreshDb::create(&admin).await;
    let url = db.url.clone();
    let dir = std::env::temp_dir().join(format!("keycast-pg-{}", uuid::Uuid::new_v4()));
    let s = Services::open(&config(&dir, "master.key", Some(&url)), None)
        .await
        .expect("open on postgres");
    // Twice: migrations and the default tenant are idempotent.
    let again = Services::open(&config(&dir, "master.key", Some(&url)), None)
        .await
        .expect("reopen");
    let key = again
        .custody
        .create_key(keycast_core::NewKey::generate(
            default_tenant(),
            keycast_core::Holder::Service,
            KeyKind::User,
            Label::parse("pg").expect("label"),
        ))
        .await
        .expect("key");
    sign(&s, key.id).await.expect("sign");
    s.database.close().await;
    again.database.close().await;
    db.drop_db().await;
    std::fs::remove_dir_all(dir).expect("cleanup");
}
