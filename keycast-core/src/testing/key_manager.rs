//! The KeyManager conformance suite. Call [`run`] with a manager that can wrap right now.

use std::sync::Arc;

use crate::crypto::envelope::{self, EnvelopeBinding};
use crate::crypto::secret::random_secret32;
use crate::error::Error;
use crate::ids::{KeyId, TenantId};
use crate::traits::key_manager::{KeyManager, Wrapped};

/// Runs every check.
pub async fn run(km: Arc<dyn KeyManager>) {
    round_trip(&km).await;
    aad_is_bound(&km).await;
    tampering_is_detected(&km).await;
    foreign_kek_is_refused(&km).await;
    rewrap_keeps_the_dek(&km).await;
    envelopes_open(&km).await;
    concurrent_calls(&km).await;
}

pub async fn round_trip(km: &Arc<dyn KeyManager>) {
    let dek = random_secret32();
    let w = km.wrap(&dek, b"keycast/v1/dek suite").await.unwrap();
    assert_eq!(&w.kek, km.id(), "a wrap names the current KEK");
    assert!(km.can_unwrap(&w.kek));
    assert_ne!(
        w.blob.as_slice(),
        dek.as_slice(),
        "the blob must not be the DEK"
    );
    let back = km.unwrap(&w, b"keycast/v1/dek suite").await.unwrap();
    assert_eq!(*back, *dek, "unwrap(wrap(dek)) == dek");
    let w2 = km.wrap(&dek, b"keycast/v1/dek suite").await.unwrap();
    assert_ne!(w.blob, w2.blob, "wrapping is randomized");
}

pub async fn aad_is_bound(km: &Arc<dyn KeyManager>) {
    let dek = random_secret32();
    let w = km.wrap(&dek, b"aad one").await.unwrap();
    let r = km.unwrap(&w, b"aad two").await;
    assert!(r.is_err(), "unwrap with another AAD must fail");
}

pub async fn tampering_is_detected(km: &Arc<dyn KeyManager>) {
    let dek = random_secret32();
    let w = km.wrap(&dek, b"aad").await.unwrap();
    for i in [0, w.blob.len() / 2, w.blob.len() - 1] {
        let mut bad = w.clone();
        bad.blob[i] ^= 0x01;
        assert!(
            km.unwrap(&bad, b"aad").await.is_err(),
            "flipped bit {i} accepted"
        );
    }
    let short = Wrapped {
        blob: w.blob[..4].to_vec(),
        ..w.clone()
    };
    assert!(
        km.unwrap(&short, b"aad").await.is_err(),
        "truncated blob accepted"
    );
    let empty = Wrapped { blob: vec![], ..w };
    assert!(
        km.unwrap(&empty, b"aad").await.is_err(),
        "empty blob accepted"
    );
}

pub async fn foreign_kek_is_refused(km: &Arc<dyn KeyManager>) {
    let dek = random_secret32();
    let mut w = km.wrap(&dek, b"aad").await.unwrap();
    w.kek.provider = "some-other-provider".into();
    assert!(!km.can_unwrap(&w.kek));
    let r = km.unwrap(&w, b"aad").await;
    assert!(
        matches!(r, Err(Error::KeyManager(_))),
        "unwrap of another provider's blob: {r:?}"
    );
}

pub async fn rewrap_keeps_the_dek(km: &Arc<dyn KeyManager>) {
    let dek = random_secret32();
    let w = km.wrap(&dek, b"aad").await.unwrap();
    let r = km.rewrap(&w, b"aad").await.unwrap();
    assert_eq!(&r.kek, km.id());
    assert_eq!(
        *km.unwrap(&r, b"aad").await.unwrap(),
        *dek,
        "rewrap keeps the DEK"
    );
    assert!(
        km.rewrap(&w, b"other").await.is_err(),
        "rewrap checks the AAD"
    );
}

pub async fn envelopes_open(km: &Arc<dyn KeyManager>) {
    let secret = random_secret32();
    let binding = EnvelopeBinding {
        key_id: KeyId::random(),
        pubkey: super::fixtures::pubkey(),
        tenant_id: TenantId::random(),
    };
    let env = envelope::seal(km.as_ref(), &binding, &secret)
        .await
        .unwrap();
    assert_eq!(
        *envelope::open(km.as_ref(), &binding, &env).await.unwrap(),
        *secret
    );
    let moved = EnvelopeBinding {
        key_id: KeyId::random(),
        ..binding
    };
    assert!(
        envelope::open(km.as_ref(), &moved, &env).await.is_err(),
        "envelope moved to another row"
    );
}

pub async fn concurrent_calls(km: &Arc<dyn KeyManager>) {
    let tasks: Vec<_> = (0..32)
        .map(|i| {
            let km = km.clone();
            tokio::spawn(async move {
                let dek = random_secret32();
                let aad = format!("aad {i}");
                let w = km.wrap(&dek, aad.as_bytes()).await.unwrap();
                assert_eq!(*km.unwrap(&w, aad.as_bytes()).await.unwrap(), *dek);
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
}
