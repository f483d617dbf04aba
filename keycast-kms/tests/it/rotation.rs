//! Master-key rotation under concurrent signing load, over the in-memory store and local key
//! files. Backends are independent: the SQL stores' side of rotation is their conformance suite
//! (`rewrap_support`) and keycast-server's `rotation` test, which runs the whole thing on SQLite.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use keycast_core::nostr::Kind;
use keycast_core::*;
use keycast_kms::rotation::{rotate, RotationOptions};
use keycast_kms::LocalKeyManager;

const KEYS: usize = 60;

fn store() -> Arc<dyn KeyStore> {
    Arc::new(MemoryKeyStore::new())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_under_signing_load_moves_every_row_and_keys_still_sign() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = store();
    let old: Arc<dyn KeyManager> =
        Arc::new(LocalKeyManager::open_or_create(dir.path().join("old.key")).expect("old"));
    let new: Arc<dyn KeyManager> =
        Arc::new(LocalKeyManager::open_or_create(dir.path().join("new.key")).expect("new"));

    // Keys are created under the old master key.
    let before = Custody::builder(store.clone(), old.clone())
        .build()
        .expect("engine");
    let tenant = keycast_core::testing::fixtures::tenant();
    store.create_tenant(&tenant).await.expect("tenant");
    let mut keys = Vec::new();
    for i in 0..KEYS {
        let label = Label::parse(&format!("k{i}")).expect("label");
        let k = before
            .create_key(NewKey::generate(
                tenant.id,
                Holder::Service,
                KeyKind::User,
                label,
            ))
            .await
            .expect("key");
        keys.push(k);
    }
    drop(before);

    // The service now runs with the new key as primary and the old one for unwraps.
    let keyring = Arc::new(Keyring::new(new.clone()).with_older(old.clone()));
    let custody = Custody::builder(store.clone(), keyring.clone())
        .build()
        .expect("engine");
    let stop = Arc::new(AtomicBool::new(false));
    let signed = Arc::new(AtomicU64::new(0));
    let signers: Vec<_> = (0..4)
        .map(|w| {
            let (custody, keys, stop, signed) =
                (custody.clone(), keys.clone(), stop.clone(), signed.clone());
            tokio::spawn(async move {
                let mut i = w;
                while !stop.load(Ordering::Relaxed) {
                    let key = &keys[i % keys.len()];
                    // Evict first so every signature is a cold load racing the rotation.
                    custody.invalidate_key(key.id);
                    let e = custody
                        .sign_event(
                            Caller::Owner(key.id),
                            EventTemplate::new(Kind::TextNote, "during"),
                        )
                        .await
                        .expect("signing keeps working during rotation");
                    e.verify().expect("valid");
                    signed.fetch_add(1, Ordering::Relaxed);
                    i += 4;
                }
            })
        })
        .collect();

    let mut batches = 0;
    let options = RotationOptions { batch_size: 7 };
    let report = rotate(store.clone(), &keyring, &options, |_| batches += 1)
        .await
        .expect("rotate");
    stop.store(true, Ordering::Relaxed);
    for s in signers {
        s.await.expect("signer");
    }
    assert_eq!(report.rewrapped as usize, KEYS, "{report:?}");
    assert!(report.failed.is_empty(), "{report:?}");
    assert!(batches >= KEYS / 7, "progress is reported per batch");
    assert!(
        signed.load(Ordering::Relaxed) > 0,
        "signing ran during the rotation"
    );

    let left = store
        .keys_not_wrapped_by(keyring.id(), None, 1_000)
        .await
        .expect("page");
    assert!(left.is_empty(), "{} rows still on the old KEK", left.len());

    // Every key signs with the new master key alone; the ciphertext was never rewritten.
    let only_new = Custody::builder(store.clone(), new.clone())
        .build()
        .expect("engine");
    for k in &keys {
        let row = store.get_key(k.id).await.expect("row");
        assert_eq!(
            row.envelope.ciphertext, k.envelope.ciphertext,
            "secret ciphertext untouched"
        );
        assert_eq!(&row.envelope.wrapped_dek.kek, new.id());
        let e = only_new
            .sign_event(
                Caller::Owner(k.id),
                EventTemplate::new(Kind::TextNote, "after"),
            )
            .await
            .expect("sign with the new KEK only");
        assert_eq!(e.pubkey, k.pubkey);
    }

    // A second run finds nothing to do (resumable, idempotent).
    let again = rotate(store.clone(), &keyring, &RotationOptions::default(), |_| {})
        .await
        .expect("rotate");
    assert_eq!(again.rewrapped, 0);
}

#[tokio::test]
async fn rows_the_keyring_cannot_open_are_reported_not_fatal() {
    let store = store();
    let lost: Arc<dyn KeyManager> = Arc::new(InsecureTestKeyManager::new());
    let custody = Custody::builder(store.clone(), lost)
        .build()
        .expect("engine");
    let tenant = keycast_core::testing::fixtures::tenant();
    store.create_tenant(&tenant).await.expect("tenant");
    let label = Label::parse("orphan").expect("label");
    let k = custody
        .create_key(NewKey::generate(
            tenant.id,
            Holder::Service,
            KeyKind::User,
            label,
        ))
        .await
        .expect("key");
    let keyring = Keyring::new(Arc::new(InsecureTestKeyManager::new()));
    let report = rotate(store, &keyring, &RotationOptions::default(), |_| {})
        .await
        .expect("rotate");
    assert_eq!(report.rewrapped, 0);
    assert_eq!(report.failed.len(), 1);
    assert_eq!(report.failed[0].0, k.id);
}

/// Provider migration: rows made under a local master key move to Vault transit.
#[cfg(feature = "vault")]
#[tokio::test]
async fn a_keyring_spans_providers_local_to_vault() {
    use keycast_kms::vault::{VaultConfig, VaultTransitKeyManager};
    let Some(addr) = keycast_test_support::require_service("KEYCAST_TEST_VAULT_ADDR") else {
        return;
    };
    let token = std::env::var("KEYCAST_TEST_VAULT_TOKEN").unwrap_or_else(|_| "root".into());
    let key = keycast_kms::testing::bao_transit_key(&addr, &token).await;
    let vault: Arc<dyn KeyManager> = Arc::new(
        VaultTransitKeyManager::connect(VaultConfig::new(&addr, &token, &key))
            .await
            .expect("vault"),
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let store = store();
    let local: Arc<dyn KeyManager> =
        Arc::new(LocalKeyManager::open_or_create(dir.path().join("local.key")).expect("local"));
    let before = Custody::builder(store.clone(), local.clone())
        .build()
        .expect("engine");
    let tenant = keycast_core::testing::fixtures::tenant();
    store.create_tenant(&tenant).await.expect("tenant");
    let label = Label::parse("migrating").expect("label");
    let k = before
        .create_key(NewKey::generate(
            tenant.id,
            Holder::Service,
            KeyKind::User,
            label,
        ))
        .await
        .expect("key");

    let keyring = Keyring::new(vault.clone()).with_older(local);
    let report = rotate(store.clone(), &keyring, &RotationOptions::default(), |_| {})
        .await
        .expect("rotate");
    assert_eq!(report.rewrapped, 1, "{report:?}");
    let row = store.get_key(k.id).await.expect("row");
    assert_eq!(row.envelope.wrapped_dek.kek.provider, "vault");
    let only_vault = Custody::builder(store, vault).build().expect("engine");
    let e = only_vault
        .sign_event(
            Caller::Owner(k.id),
            EventTemplate::new(Kind::TextNote, "moved"),
        )
        .await
        .expect("sign under vault alone");
    assert_eq!(e.pubkey, k.pubkey);
}
