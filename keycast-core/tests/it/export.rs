//! `Custody::danger_export_ncryptsec`: the only way a secret leaves, and it is audited.

use keycast_core::nostr::nips::nip49::EncryptedSecretKey;
use keycast_core::nostr::FromBech32;
use keycast_core::testing::fixtures::{authorized_key, memory_engine};
use keycast_core::{AuditAction, AuditFilter, KeyId, Permission};
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
            .any(|r| r.action == AuditAction::ExportKey && r.key_id == key.id),
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nsec_and_mnemonic_exports_give_back_the_key_and_are_audited() {
    use keycast_core::nostr::bip39::Mnemonic;
    use keycast_core::nostr::SecretKey;

    let (custody, key) = memory_engine(|b| b).await;
    let nsec = custody.danger_export_nsec(key.id).await.expect("nsec");
    let from_nsec = SecretKey::from_bech32(nsec.as_str()).expect("an nsec");
    assert_eq!(
        keycast_core::nostr::Keys::new(from_nsec.clone()).public_key(),
        key.pubkey
    );

    let words = custody
        .danger_export_mnemonic(key.id)
        .await
        .expect("mnemonic");
    assert_eq!(words.split_whitespace().count(), 24);
    let entropy = Mnemonic::parse(words.as_str())
        .expect("BIP-39")
        .to_entropy();
    assert_eq!(
        entropy,
        from_nsec.to_secret_bytes(),
        "the words are the secret bytes"
    );

    let exports = custody
        .store()
        .list_audit(&AuditFilter {
            tenant_id: key.tenant_id,
            key_id: Some(key.id),
            authorization_id: None,
            limit: 10,
        })
        .await
        .expect("audit")
        .iter()
        .filter(|r| r.action == AuditAction::ExportKey)
        .count();
    assert_eq!(exports, 2, "each export audited");

    let a = authorized_key(&custody, vec![Permission::FullAccess], vec![]).await;
    let bunker = a.authorization.bunker_key_id;
    assert!(matches!(
        custody.danger_export_nsec(bunker).await,
        Err(keycast_core::Error::Denied(_))
    ));
    assert!(matches!(
        custody.danger_export_mnemonic(KeyId::random()).await,
        Err(keycast_core::Error::NotFound { .. })
    ));
}
