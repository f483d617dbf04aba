//! `Custody::danger_export_ncryptsec`: the only way a secret leaves, and it is audited.

use keycast_core::nostr::nips::nip49::EncryptedSecretKey;
use keycast_core::nostr::FromBech32;
use keycast_core::testing::fixtures::{authorized_key, memory_engine};
use keycast_core::{AuditFilter, KeyId, Method, Permission};
use zeroize::Zeroizing;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_round_trips_through_nip49_and_is_audited() {
    let (custody, key) = memory_engine(|b| b).await;
    let ncryptsec = custody
        .danger_export_ncryptsec(key.id, Zeroizing::new("pass ✓".into()), 8)
        .await
        .expect("export");
    assert!(ncryptsec.starts_with("ncryptsec1"));
    let secret = EncryptedSecretKey::from_bech32(&ncryptsec)
        .expect("bech32")
        .decrypt("pass ✓")
        .expect("decrypts with the password");
    assert_eq!(
        keycast_core::nostr::Keys::new(secret).public_key(),
        key.pubkey
    );

    let audit = custody
        .store()
        .list_audit(&AuditFilter {
            tenant_id: key.tenant_id,
            key_id: Some(key.id),
            authorization_id: None,
            limit: 10,
        })
        .await
        .expect("audit");
    assert!(
        audit
            .iter()
            .any(|r| r.method == Method::ExportKey && r.key_id == key.id),
        "the export is in the audit log"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_exports_are_refused() {
    let (custody, key) = memory_engine(|b| b).await;
    let pw = || Zeroizing::new("pw".to_owned());
    assert!(custody
        .danger_export_ncryptsec(key.id, pw(), 0)
        .await
        .is_err());
    assert!(custody
        .danger_export_ncryptsec(key.id, pw(), 30)
        .await
        .is_err());
    assert!(custody
        .danger_export_ncryptsec(key.id, Zeroizing::new(String::new()), 8)
        .await
        .is_err());
    assert!(custody
        .danger_export_ncryptsec(KeyId::random(), pw(), 8)
        .await
        .is_err());
    let a = authorized_key(&custody, vec![Permission::FullAccess], vec![]).await;
    let bunker = a.authorization.bunker_key_id;
    let refused = custody.danger_export_ncryptsec(bunker, pw(), 8).await;
    assert!(
        matches!(refused, Err(keycast_core::Error::Denied(_))),
        "{refused:?}"
    );
}
