//! Contract tests of the Cloud KMS backend against an in-process fake of Cloud KMS, the
//! OAuth token endpoint and the metadata server (no Cloud KMS emulator exists), plus one
//! test against real Cloud KMS that runs only when credentials are provided.
#![cfg(feature = "gcp")]
#![allow(clippy::unwrap_used)]

use crate::gcp_fake;

use std::sync::Arc;
use std::time::Duration;

use gcp_fake::{Fake, Misbehave, CLIENT_EMAIL};
use keycast_core::random_secret32;
use keycast_core::{Error, KeyManager};
use keycast_kms::gcp::{GcpCredentials, GcpKmsConfig, GcpKmsKeyManager, DEFAULT_ENDPOINT};
use keycast_kms::remote::RetryPolicy;
use keycast_kms::KmsError;
use tempfile::TempDir;

const KEY: &str = "projects/keycast-test/locations/global/keyRings/keycast/cryptoKeys/dek-kek";

/// The default schedule's shape with short waits, so exhausted retries end quickly.
fn quick_retries() -> RetryPolicy {
    RetryPolicy {
        attempt_timeout: Duration::from_secs(5),
        backoff: [5, 10, 20].map(Duration::from_millis).to_vec(),
    }
}

/// A service-account key file for the fake, in a directory that lives as long as the test.
fn key_file(fake: &Fake, client_email: &str) -> (TempDir, GcpCredentials) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("service-account.json");
    std::fs::write(&path, fake.service_account_json(client_email)).unwrap();
    (dir, GcpCredentials::ServiceAccountFile(path))
}

fn config(fake: &Fake, credentials: GcpCredentials) -> GcpKmsConfig {
    GcpKmsConfig {
        key_name: KEY.into(),
        credentials,
        endpoint: fake.endpoint(),
    }
}

fn metadata(fake: &Fake) -> GcpCredentials {
    GcpCredentials::MetadataServer {
        endpoint: fake.endpoint(),
    }
}

/// A manager authenticating with the test service account; no call made yet.
fn service_account_manager(fake: &Fake) -> (TempDir, GcpKmsKeyManager) {
    let (dir, credentials) = key_file(fake, CLIENT_EMAIL);
    let km = GcpKmsKeyManager::new(config(fake, credentials))
        .unwrap()
        .with_policy(quick_retries());
    (dir, km)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_with_a_service_account() {
    let fake = Fake::start(KEY).await;
    let (_dir, km) = service_account_manager(&fake);
    let km = km.probe().await.unwrap();
    keycast_core::testing::key_manager::run(Arc::new(km)).await;
    assert_eq!(
        fake.service_account_token_requests(),
        1,
        "one token serves the whole suite; refused assertions: {:?}",
        fake.refused_assertions()
    );
    assert_eq!(fake.metadata_token_requests(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_with_the_metadata_server() {
    let fake = Fake::start(KEY).await;
    let km = GcpKmsKeyManager::connect(config(&fake, metadata(&fake)))
        .await
        .unwrap();
    keycast_core::testing::key_manager::run(Arc::new(km)).await;
    assert_eq!(fake.metadata_token_requests(), 1);
    assert_eq!(fake.service_account_token_requests(), 0);
}

#[tokio::test]
async fn config_from_variables_reaches_the_fake() {
    let fake = Fake::start(KEY).await;
    let endpoint = fake.endpoint();
    let vars = |name: &str| match name {
        "KEYCAST_GCP_KMS_KEY" => Some(KEY.to_string()),
        "KEYCAST_GCP_KMS_ENDPOINT" | "KEYCAST_GCP_METADATA_ENDPOINT" => Some(endpoint.clone()),
        _ => None,
    };
    let config = GcpKmsConfig::from_vars(vars).unwrap();
    assert_eq!(config.credentials, metadata(&fake));
    let km = GcpKmsKeyManager::connect(config).await.unwrap();
    assert_eq!(km.key_name(), KEY);
    assert_eq!(km.id().provider, "gcp");
}

#[tokio::test]
async fn wrong_aad_fails_permanently() {
    let fake = Fake::start(KEY).await;
    let (_dir, km) = service_account_manager(&fake);
    let wrapped = km.wrap(&random_secret32(), b"row one").await.unwrap();
    let before = fake.kms_requests();
    let r = km.unwrap(&wrapped, b"row two").await;
    match r {
        Err(Error::KeyManager(m)) => {
            assert!(m.contains(&format!("gcp key {KEY}")), "{m}");
            assert!(m.contains("HTTP 400"), "{m}");
        }
        other => panic!("expected a permanent refusal, got {other:?}"),
    }
    assert_eq!(fake.kms_requests(), before + 1, "a refusal is not retried");
}

#[tokio::test]
async fn integrity_failures_are_retried_then_unavailable() {
    let fake = Fake::start(KEY).await;
    let (_dir, km) = service_account_manager(&fake);
    let wrapped = km.wrap(&random_secret32(), b"aad").await.unwrap();
    for how in [
        Misbehave::WrongCiphertextCrc,
        Misbehave::UnverifiedPlaintext,
        Misbehave::UnverifiedAad,
        Misbehave::WrongPlaintextCrc,
    ] {
        fake.misbehave(how);
        let before = fake.kms_requests();
        let r = if how == Misbehave::WrongPlaintextCrc {
            km.unwrap(&wrapped, b"aad").await.map(|_| ())
        } else {
            km.wrap(&random_secret32(), b"aad").await.map(|_| ())
        };
        match r {
            Err(Error::Unavailable(m)) => {
                assert!(m.contains("integrity check failed"), "{how:?}: {m}");
                assert!(m.contains(KEY), "{how:?}: {m}");
            }
            other => panic!("{how:?}: expected Unavailable, got {other:?}"),
        }
        assert_eq!(
            fake.kms_requests(),
            before + 4,
            "{how:?}: one try and three retries"
        );
    }
    fake.misbehave(Misbehave::No);
    km.unwrap(&wrapped, b"aad").await.unwrap();
}

#[tokio::test]
async fn a_503_then_success_is_retried_transparently() {
    let fake = Fake::start(KEY).await;
    let (_dir, km) = service_account_manager(&fake);
    let dek = random_secret32();
    fake.unavailable_next(2);
    let wrapped = km.wrap(&dek, b"aad").await.unwrap();
    assert_eq!(fake.kms_requests(), 3);
    fake.unavailable_next(1);
    assert_eq!(*km.unwrap(&wrapped, b"aad").await.unwrap(), *dek);

    fake.unavailable_next(10);
    let r = km.wrap(&dek, b"aad").await;
    assert!(
        matches!(r, Err(Error::Unavailable(ref m)) if m.contains("503")),
        "{r:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_cached_and_fetched_once_by_concurrent_callers() {
    let fake = Fake::start(KEY).await;
    let (_dir, km) = service_account_manager(&fake);
    let km = Arc::new(km);
    let calls: Vec<_> = (0..16)
        .map(|_| {
            let km = km.clone();
            tokio::spawn(async move { km.wrap(&random_secret32(), b"aad").await })
        })
        .collect();
    for call in calls {
        call.await.unwrap().unwrap();
    }
    assert_eq!(fake.service_account_token_requests(), 1);
    km.wrap(&random_secret32(), b"aad").await.unwrap();
    assert_eq!(fake.service_account_token_requests(), 1, "still cached");
}

#[tokio::test]
async fn tokens_are_refreshed_before_they_expire() {
    let fake = Fake::start(KEY).await;
    fake.set_expires_in(4);
    let km = GcpKmsKeyManager::new(config(&fake, metadata(&fake))).unwrap();
    km.wrap(&random_secret32(), b"aad").await.unwrap();
    km.wrap(&random_secret32(), b"aad").await.unwrap();
    assert_eq!(fake.metadata_token_requests(), 1);
    // A 4 s token is replaced after half its lifetime (the margin is capped at half): the
    // runtime's clock is moved past that instead of waiting for it.
    tokio::time::pause();
    tokio::time::advance(Duration::from_millis(2100)).await;
    tokio::time::resume();
    km.wrap(&random_secret32(), b"aad").await.unwrap();
    assert_eq!(fake.metadata_token_requests(), 2);
}

#[tokio::test]
async fn a_401_renews_the_token_once() {
    let fake = Fake::start(KEY).await;
    let (_dir, km) = service_account_manager(&fake);
    km.wrap(&random_secret32(), b"aad").await.unwrap();
    fake.revoke_tokens();
    km.wrap(&random_secret32(), b"aad").await.unwrap();
    assert_eq!(
        fake.service_account_token_requests(),
        2,
        "revoked token replaced"
    );

    fake.reject_all_tokens(true);
    let before = fake.kms_requests();
    let r = km.wrap(&random_secret32(), b"aad").await;
    assert!(
        matches!(r, Err(Error::KeyManager(ref m)) if m.contains("HTTP 401")),
        "{r:?}"
    );
    assert_eq!(
        fake.service_account_token_requests(),
        3,
        "renewed once, not per retry"
    );
    assert_eq!(fake.kms_requests(), before + 2);
}

#[tokio::test]
async fn a_refused_assertion_is_a_permanent_error() {
    let fake = Fake::start(KEY).await;
    let (_dir, credentials) = key_file(&fake, "someone-else@keycast-test.iam.gserviceaccount.com");
    let km = GcpKmsKeyManager::new(config(&fake, credentials))
        .unwrap()
        .with_policy(quick_retries());
    let r = km.wrap(&random_secret32(), b"aad").await;
    assert!(
        matches!(r, Err(Error::KeyManager(ref m)) if m.contains("token endpoint") && m.contains("invalid_grant")),
        "{r:?}"
    );
    assert_eq!(fake.service_account_token_requests(), 1, "not retried");
    assert_eq!(fake.kms_requests(), 0);
}

#[tokio::test]
async fn wraps_name_the_key_version_that_was_used() {
    let fake = Fake::start(KEY).await;
    assert_eq!(fake.rotate(), 2);
    let (_dir, km) = service_account_manager(&fake);
    assert_eq!(km.id().version, 1, "unknown before the probe");
    let km = km.probe().await.unwrap();
    assert_eq!(km.id().version, 2, "the probe learns the primary version");

    let dek = random_secret32();
    let old = km.wrap(&dek, b"aad").await.unwrap();
    assert_eq!(old.kek.version, 2);
    assert_eq!(fake.rotate(), 3);
    let new = km.wrap(&dek, b"aad").await.unwrap();
    assert_eq!(new.kek.version, 3);
    assert_eq!(
        *km.unwrap(&old, b"aad").await.unwrap(),
        *dek,
        "older versions still decrypt"
    );
    assert_eq!(*km.unwrap(&new, b"aad").await.unwrap(), *dek);
}

#[tokio::test]
async fn startup_failures_are_reported_as_startup_errors() {
    let fake = Fake::start("projects/p/locations/l/keyRings/r/cryptoKeys/another").await;
    let r = GcpKmsKeyManager::connect(config(&fake, metadata(&fake))).await;
    match r {
        Err(KmsError::Startup { backend, source }) => {
            assert_eq!(backend, "gcp");
            assert!(source.to_string().contains("HTTP 404"), "{source}");
        }
        other => panic!("expected a startup error, got {other:?}"),
    }
}

#[tokio::test]
async fn a_bad_key_file_is_a_config_error_without_the_key() {
    let fake = Fake::start(KEY).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sa.json");
    let broken = fake.service_account_json(CLIENT_EMAIL).replace(
        "MIIEvAIBADANBgkqhkiG9w0BAQEFAASCBKYwggSiAgEAAoIBAQ",
        "MIIEvAIBADANBgkqhkiG9w0BAQEFAASCBKYwggSiAgEAAoIBAA",
    );
    std::fs::write(&path, broken).unwrap();
    let r = GcpKmsKeyManager::new(config(&fake, GcpCredentials::ServiceAccountFile(path)));
    let e = r.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(e.starts_with("gcp: invalid configuration"), "{e}");
    assert!(!e.contains("MIIE"), "{e}");
}

#[tokio::test]
async fn debug_output_and_errors_hide_the_key_and_tokens() {
    let fake = Fake::start(KEY).await;
    let (_dir, km) = service_account_manager(&fake);
    km.wrap(&random_secret32(), b"aad").await.unwrap();
    fake.reject_all_tokens(true);
    let error = km
        .wrap(&random_secret32(), b"aad")
        .await
        .unwrap_err()
        .to_string();
    let debug = format!("{km:?} {km:#?}");
    assert!(
        debug.contains(KEY) && debug.contains(CLIENT_EMAIL),
        "{debug}"
    );
    let key_body = gcp_fake::TEST_PRIVATE_KEY_PEM.lines().nth(1).unwrap();
    for text in [&debug, &error] {
        assert!(
            !text.contains("PRIVATE KEY") && !text.contains(key_body),
            "{text}"
        );
        for token in fake.issued_tokens() {
            assert!(!text.contains(&token), "token leaked: {text}");
        }
    }
}

/// Runs the conformance suite against real Cloud KMS when both variables are set:
/// `KEYCAST_TEST_GCP_KEY` (path to a service-account JSON key) and
/// `KEYCAST_TEST_GCP_KMS_KEY` (a CryptoKey resource name the account may use).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_cloud_kms() {
    let Some(key_file) = std::env::var_os("KEYCAST_TEST_GCP_KEY").filter(|v| !v.is_empty()) else {
        println!("skipped: KEYCAST_TEST_GCP_KEY is not set");
        return;
    };
    let Some(key_name) = std::env::var("KEYCAST_TEST_GCP_KMS_KEY")
        .ok()
        .filter(|v| !v.is_empty())
    else {
        println!("skipped: KEYCAST_TEST_GCP_KMS_KEY is not set");
        return;
    };
    let km = GcpKmsKeyManager::connect(GcpKmsConfig {
        key_name,
        credentials: GcpCredentials::ServiceAccountFile(key_file.into()),
        endpoint: DEFAULT_ENDPOINT.into(),
    })
    .await
    .unwrap();
    keycast_core::testing::key_manager::run(Arc::new(km)).await;
}
