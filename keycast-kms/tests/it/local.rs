//! The local master-key file backend.

use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;

use keycast_core::testing;
use keycast_core::*;
use keycast_kms::{KmsError, LocalKeyManager};

#[tokio::test]
async fn conformance() {
    let dir = tempfile::tempdir().expect("tempdir");
    let km = LocalKeyManager::open_or_create(dir.path().join("master.key")).expect("create");
    testing::key_manager::run(Arc::new(km)).await;
}

#[tokio::test]
async fn created_0600_and_reopened_with_the_same_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("sub/master.key");
    let first = LocalKeyManager::open_or_create(&path).expect("create");
    let mode = std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    assert_eq!(std::fs::read(&path).expect("read").len(), 32);
    let dek = Secret32::new([3u8; 32]);
    let wrapped = first.wrap(&dek, b"aad").await.expect("wrap");
    let again = LocalKeyManager::open_or_create(&path).expect("reopen");
    assert_eq!(again.id(), first.id(), "the fingerprint is stable");
    assert_eq!(
        *again.unwrap(&wrapped, b"aad").await.expect("unwrap"),
        [3u8; 32]
    );
    assert_eq!(again.id().provider, "local");
    assert_eq!(again.id().key_id.len(), 16, "8-byte fingerprint in hex");
}

#[test]
fn unsafe_or_malformed_key_files_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("master.key");
    LocalKeyManager::open_or_create(&path).expect("create");
    for mode in [0o644, 0o640, 0o604, 0o660] {
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod");
        let r = LocalKeyManager::open_or_create(&path);
        assert!(
            matches!(r, Err(KmsError::KeyFile { ref reason, .. }) if reason.contains("chmod 600")),
            "mode {mode:o}: {r:?}"
        );
    }
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    std::fs::write(&path, [1u8; 31]).expect("write");
    let r = LocalKeyManager::open(&path);
    assert!(
        matches!(r, Err(KmsError::KeyFile { ref reason, .. }) if reason.contains("exactly 32")),
        "{r:?}"
    );
    let r = LocalKeyManager::open(dir.path().join("missing.key"));
    assert!(
        matches!(r, Err(KmsError::KeyFile { .. })),
        "open never creates: {r:?}"
    );
    let r = LocalKeyManager::open_or_create(dir.path());
    assert!(
        matches!(r, Err(KmsError::KeyFile { .. })),
        "a directory is not a key file: {r:?}"
    );
}

#[test]
fn debug_output_never_shows_the_master_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("master.key");
    let km = LocalKeyManager::open_or_create(&path).expect("create");
    let key = std::fs::read(&path).expect("read");
    let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
    let shown = format!("{km:?}");
    assert!(!shown.contains(&hex), "{shown}");
    assert!(!shown.contains(&format!("{:?}", &key[..8])), "{shown}");
    assert!(shown.contains("local"));
}
