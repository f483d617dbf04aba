//! KeyManager and envelope benchmarks: wrap and unwrap per backend, and the CPU cost of
//! opening an envelope, next to the raw Schnorr sign rate of the same run.
//!
//! Remote backends are measured against the local emulators when their env vars are set
//! (as `scripts/test` and `benches/report.sh` set them): `KEYCAST_TEST_VAULT_ADDR` (+
//! `KEYCAST_TEST_VAULT_TOKEN`) for OpenBao transit, `KEYCAST_TEST_AWS_ENDPOINT` for moto.

// criterion_group! generates an undocumented public function.
#![allow(missing_docs)]

use std::sync::Arc;

use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion, Throughput};
use keycast_core::envelope;
use keycast_core::nostr::secp256k1::{Message, SECP256K1};
use keycast_core::nostr::{Keys, SecretKey};
use keycast_core::*;
use keycast_kms::aws::{AwsCredentials, AwsKmsConfig, AwsKmsKeyManager};
use keycast_kms::vault::{VaultConfig, VaultTransitKeyManager};
use keycast_kms::LocalKeyManager;
use tokio::runtime::Runtime;

type Group<'a> = BenchmarkGroup<'a, criterion::measurement::WallTime>;

fn binding() -> EnvelopeBinding {
    EnvelopeBinding {
        key_id: KeyId::random(),
        pubkey: Keys::generate().public_key(),
        tenant_id: TenantId::random(),
    }
}

/// wrap and unwrap of one DEK through `km`.
fn wrap_unwrap(g: &mut Group<'_>, rt: &Runtime, name: &str, km: Arc<dyn KeyManager>) {
    let dek = keycast_core::random_secret32();
    let aad = binding().dek_aad();
    g.bench_function(format!("{name}_wrap"), |b| {
        b.to_async(rt).iter(|| km.wrap(&dek, &aad))
    });
    let wrapped = rt.block_on(km.wrap(&dek, &aad)).expect("wrap");
    g.bench_function(format!("{name}_unwrap"), |b| {
        b.to_async(rt).iter(|| km.unwrap(&wrapped, &aad))
    });
}

fn kms(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut g = c.benchmark_group("kms");
    g.throughput(Throughput::Elements(1));

    let keys = Keys::generate();
    let msg = Message::from_digest([7u8; 32]);
    let mut rng = rand::thread_rng();
    g.bench_function("raw_schnorr_sign", |b| {
        b.iter(|| keys.sign_schnorr_with_ctx(SECP256K1, &msg, &mut rng))
    });

    // The CPU half of a cold load: AEAD-open the secret, then re-derive its pubkey.
    let km = InsecureTestKeyManager::new();
    let secret_keys = Keys::generate();
    let bind = EnvelopeBinding {
        pubkey: secret_keys.public_key(),
        ..binding()
    };
    let secret = Secret32::new(secret_keys.secret_key().to_secret_bytes());
    let env = rt
        .block_on(envelope::seal(&km, &bind, &secret))
        .expect("seal");
    let dek = rt
        .block_on(envelope::unwrap_dek(&km, &bind, &env))
        .expect("dek");
    g.bench_function("envelope_open", |b| {
        b.iter(|| envelope::open_with_dek(&dek, &bind, &env))
    });
    g.bench_function("envelope_open_and_rederive_pubkey", |b| {
        b.iter(|| {
            let s = envelope::open_with_dek(&dek, &bind, &env).expect("open");
            let k = Keys::new(SecretKey::from_slice(s.as_ref()).expect("key"));
            assert_eq!(k.public_key(), bind.pubkey);
        })
    });

    let dir = tempfile::tempdir().expect("tempdir");
    let local = LocalKeyManager::open_or_create(dir.path().join("master.key")).expect("local");
    wrap_unwrap(&mut g, &rt, "local", Arc::new(local));

    if let Ok(addr) = std::env::var("KEYCAST_TEST_VAULT_ADDR") {
        let token = std::env::var("KEYCAST_TEST_VAULT_TOKEN").unwrap_or_else(|_| "root".into());
        let vault = rt.block_on(async {
            let key = keycast_kms::testing::bao_transit_key(&addr, &token).await;
            VaultTransitKeyManager::connect(VaultConfig::new(&addr, &token, &key))
                .await
                .expect("vault")
        });
        wrap_unwrap(&mut g, &rt, "vault_openbao_dev", Arc::new(vault));
    } else {
        eprintln!("vault skipped: KEYCAST_TEST_VAULT_ADDR is not set");
    }
    if let Ok(endpoint) = std::env::var("KEYCAST_TEST_AWS_ENDPOINT") {
        let aws = rt.block_on(async {
            let (key, _) = keycast_kms::testing::moto_create_key(&endpoint).await;
            let credentials = AwsCredentials::new("test", "test", None);
            AwsKmsKeyManager::new(
                AwsKmsConfig::new("us-east-1", key, credentials).with_endpoint(endpoint),
            )
            .expect("aws")
        });
        wrap_unwrap(&mut g, &rt, "aws_moto", Arc::new(aws));
    } else {
        eprintln!("aws skipped: KEYCAST_TEST_AWS_ENDPOINT is not set");
    }
    g.finish();
}

criterion_group!(benches, kms);
criterion_main!(benches);
