//! Envelope format: round trips (property-based) and every way opening must fail.

use std::sync::Arc;

use keycast_core::envelope::{self, FORMAT_VERSION};
use keycast_core::*;
use proptest::prelude::*;

fn binding() -> EnvelopeBinding {
    EnvelopeBinding {
        key_id: KeyId::random(),
        pubkey: nostr::Keys::generate().public_key(),
        tenant_id: TenantId::random(),
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime")
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn seal_then_open_round_trips(secret in any::<[u8; 32]>()) {
        let km = InsecureTestKeyManager::new();
        let b = binding();
        let secret = Secret32::new(secret);
        let opened = rt().block_on(async {
            let env = envelope::seal(&km, &b, &secret).await?;
            envelope::open(&km, &b, &env).await
        });
        prop_assert_eq!(*opened.expect("open"), *secret);
    }

    #[test]
    fn any_flipped_ciphertext_bit_fails(secret in any::<[u8; 32]>(), byte in 0usize..48, bit in 0u8..8) {
        let km = InsecureTestKeyManager::new();
        let b = binding();
        let r = rt().block_on(async {
            let mut env = envelope::seal(&km, &b, &Secret32::new(secret)).await?;
            env.ciphertext[byte] ^= 1 << bit;
            envelope::open(&km, &b, &env).await
        });
        prop_assert!(matches!(r, Err(Error::Envelope(_))));
    }
}

#[tokio::test]
async fn opening_fails_for_every_kind_of_misuse() {
    let km = InsecureTestKeyManager::new();
    let b = binding();
    let secret = Secret32::new([42u8; 32]);
    let env = envelope::seal(&km, &b, &secret).await.expect("seal");
    assert_eq!(env.format_version, FORMAT_VERSION);
    assert_eq!(
        *envelope::open(&km, &b, &env).await.expect("open"),
        [42u8; 32]
    );

    let mut nonce = env.clone();
    nonce.nonce[0] ^= 1;
    let mut blob = env.clone();
    blob.wrapped_dek.blob[30] ^= 1;
    let other_row = envelope::seal(&km, &binding(), &Secret32::new([1u8; 32]))
        .await
        .expect("seal");
    let mut swapped_dek = env.clone();
    swapped_dek.wrapped_dek = other_row.wrapped_dek.clone();
    let mut version = env.clone();
    version.format_version = 2;

    let cases: Vec<(&str, EnvelopeBinding, &Envelope)> = vec![
        ("flipped nonce", b, &nonce),
        ("flipped wrapped DEK", b, &blob),
        ("DEK swapped from another row", b, &swapped_dek),
        (
            "moved to another key id",
            EnvelopeBinding {
                key_id: KeyId::random(),
                ..b
            },
            &env,
        ),
        (
            "moved to another pubkey",
            EnvelopeBinding {
                pubkey: binding().pubkey,
                ..b
            },
            &env,
        ),
        (
            "moved to another tenant",
            EnvelopeBinding {
                tenant_id: TenantId::random(),
                ..b
            },
            &env,
        ),
    ];
    for (name, binding, env) in cases {
        let r = envelope::open(&km, &binding, env).await;
        assert!(matches!(r, Err(Error::Envelope(_))), "{name}: {r:?}");
    }
    assert_eq!(
        envelope::open(&km, &b, &version).await,
        Err(Error::UnsupportedFormat(2))
    );

    // Another master key of the same provider: same provider name, different fingerprint.
    let other_kek = InsecureTestKeyManager::new();
    let r = envelope::open(&other_kek, &b, &env).await;
    // A key-manager failure, never "not found": the row exists, its master key is missing.
    assert!(matches!(r, Err(Error::KeyManager(_))), "wrong KEK: {r:?}");
    let mut relabelled = env.clone();
    relabelled.wrapped_dek.kek = other_kek.id().clone();
    let r = envelope::open(&other_kek, &b, &relabelled).await;
    assert!(
        matches!(r, Err(Error::Envelope(_))),
        "wrong KEK, relabelled: {r:?}"
    );

    let ring = Keyring::new(Arc::new(other_kek));
    let r = envelope::open(&ring, &b, &env).await;
    assert!(
        matches!(r, Err(Error::KeyManager(_))),
        "keyring without the KEK: {r:?}"
    );
}

#[test]
fn envelope_debug_shows_metadata_only() {
    let env = rt()
        .block_on(envelope::seal(
            &InsecureTestKeyManager::new(),
            &binding(),
            &Secret32::new([0xAB; 32]),
        ))
        .expect("seal");
    let shown = format!("{env:?}");
    assert!(
        shown.contains("format_version") && shown.contains("insecure-test"),
        "{shown}"
    );
    assert!(
        !shown.contains("ciphertext") && !shown.contains("blob"),
        "{shown}"
    );
}
