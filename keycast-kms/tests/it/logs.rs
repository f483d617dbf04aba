//! No key material in logs. Alone in its own test binary: tracing caches per-callsite
//! interest process-wide, so a test running concurrently without a subscriber could hide
//! events from the scoped subscriber this test installs.

use std::sync::Arc;

use keycast_core::*;
use keycast_kms::LocalKeyManager;

/// Captures everything logged at any level while `f` runs.
fn capture_logs(f: impl FnOnce()) -> String {
    #[derive(Clone, Default)]
    struct Buf(Arc<std::sync::Mutex<Vec<u8>>>);
    impl std::io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let buf = Buf::default();
    let writer = buf.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .finish();
    tracing::subscriber::with_default(subscriber, f);
    let bytes = buf.0.lock().unwrap_or_else(|p| p.into_inner()).clone();
    String::from_utf8_lossy(&bytes).into_owned()
}

#[test]
fn logs_never_show_key_material() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("master.key");
    let dek = keycast_core::random_secret32();
    let logs = capture_logs(|| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let km = Arc::new(LocalKeyManager::open_or_create(&path).expect("create"));
            let w = km.wrap(&dek, b"aad").await.expect("wrap");
            assert!(km.unwrap(&w, b"other").await.is_err());
            // A rotation that cannot open a row logs a warning with the error.
            let store: Arc<dyn KeyStore> = Arc::new(MemoryKeyStore::new());
            let custody = Custody::builder(store.clone(), Arc::new(InsecureTestKeyManager::new()))
                .build()
                .expect("engine");
            let t = keycast_core::testing::fixtures::tenant();
            store.create_tenant(&t).await.expect("tenant");
            let label = Label::parse("k").expect("label");
            custody
                .create_key(NewKey::generate(
                    t.id,
                    Holder::Service,
                    KeyKind::User,
                    label,
                ))
                .await
                .expect("key");
            let ring = Keyring::new(km.clone());
            let report = keycast_kms::rotation::rotate(store, &ring, &Default::default(), |_| {})
                .await
                .expect("rotate");
            assert_eq!(report.failed.len(), 1);
        });
    });
    assert!(
        logs.contains("generated a new local master key"),
        "nothing was logged: {logs}"
    );
    assert!(logs.contains("cannot rewrap key"), "{logs}");
    let master = std::fs::read(&path).expect("read");
    for secret in [master.as_slice(), dek.as_slice()] {
        let hex: String = secret.iter().map(|b| format!("{b:02x}")).collect();
        assert!(!logs.contains(&hex), "key material in logs");
        assert!(
            !logs.contains(&format!("{:?}", &secret[..6])),
            "key bytes in logs"
        );
    }
}
