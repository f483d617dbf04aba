//! The AWS KMS backend.
//!
//! The SigV4 tests check [`keycast_kms::aws::sign`], the function that signs every KMS
//! request, against vectors of AWS's published SigV4 test suite. They are the only proof
//! the signing is right: moto accepts any signature.
//!
//! The other tests run against the KMS API of a moto server at `KEYCAST_TEST_AWS_ENDPOINT`,
//! each with a fresh key made through `TrentService.CreateKey`. A missing server skips
//! them, unless `KEYCAST_TEST_REQUIRE_SERVICES=1`.
//!
//! Locally: `moto_server -H 127.0.0.1 -p 5010 &` then
//! `KEYCAST_TEST_AWS_ENDPOINT=http://127.0.0.1:5010 cargo test -p keycast-kms --features aws --test it -- aws::`.

#![cfg(feature = "aws")]

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use keycast_core::random_secret32;
use keycast_core::testing;
use keycast_core::{envelope, EnvelopeBinding};
use keycast_core::{Error, KeyId, KeyManager, TenantId, Wrapped};
use keycast_kms::aws::{
    sign, AwsCredentials, AwsKmsConfig, AwsKmsKeyManager, UnsignedRequest, PROVIDER,
};
use keycast_kms::remote::RetryPolicy;
use keycast_kms::{CallOutcome, KmsError, KmsObserver};

// --- SigV4 against the AWS test suite -------------------------------------------------

/// Credentials, region, service and time shared by every vector of the suite.
const SUITE_KEY_ID: &str = "AKIDEXAMPLE";
const SUITE_SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
const SUITE_URL: &str = "https://example.amazonaws.com/";
/// 2015-08-30T12:36:00Z.
const SUITE_TIME_SECS: u64 = 1_440_938_160;
/// Session token of the suite's `post-sts-token` vectors.
const SUITE_TOKEN: &str = "AQoDYXdzEPT//////////wEXAMPLEtc764bNrC9SAPBSM22wDOk4x4HIZ8j4FZTwdQWLWsKWHGBuFqwAeMicRXmxfpSPfIeoIYRqTflfKD8YUuwthAx7mSEI/qkPpKPi/kMcGdQrmGdeehM4IC1NtBmUpp2wUE8phUZampKsburEDy0KPkyQDYwT7WZ0wq5VSXDvp75YU9HFvlRd8Tx6q6fE8YQcHNVXAkiY9q6d+xo0rKwT38xVqr7ZD0u0iPPkUL64lIZbqBAz+scqKmlzm8FDrypNC9Yjc8fPOLn9FX9KSYvKTr4rvx3iSIlTJabIQwj2ICCR/oLxBA==";

/// Signs a suite request and returns its `Authorization` header, after checking the date.
fn suite_authorization(
    method: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    token: Option<&str>,
) -> String {
    let credentials = AwsCredentials::new(SUITE_KEY_ID, SUITE_SECRET, token.map(str::to_owned));
    let request = UnsignedRequest {
        method,
        url: SUITE_URL,
        headers,
        body,
    };
    let time = UNIX_EPOCH + Duration::from_secs(SUITE_TIME_SECS);
    let signed = sign(&request, &credentials, "us-east-1", "service", time).expect("sign");
    assert_eq!(signed["x-amz-date"], "20150830T123600Z");
    assert_eq!(
        signed.get("x-amz-security-token").is_some(),
        token.is_some()
    );
    let authorization = signed["authorization"].to_str().expect("ascii").to_owned();
    assert!(
        signed["authorization"].is_sensitive(),
        "kept out of Debug output"
    );
    authorization
}

fn suite_expected(signed_headers: &str, signature: &str) -> String {
    format!(
        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, \
         SignedHeaders={signed_headers}, Signature={signature}"
    )
}

#[test]
fn sigv4_get_vanilla() {
    assert_eq!(
        suite_authorization("GET", &[], b"", None),
        suite_expected(
            "host;x-amz-date",
            "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"
        )
    );
}

#[test]
fn sigv4_post_vanilla() {
    assert_eq!(
        suite_authorization("POST", &[], b"", None),
        suite_expected(
            "host;x-amz-date",
            "5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b"
        )
    );
}

/// A body and a signed content type, as in every KMS call.
#[test]
fn sigv4_post_x_www_form_urlencoded() {
    let headers = [("Content-Type", "application/x-www-form-urlencoded")];
    assert_eq!(
        suite_authorization("POST", &headers, b"Param1=value1", None),
        suite_expected(
            "content-type;host;x-amz-date",
            "ff11897932ad3f4e8b18135d722051e5ac45fc38421b1da7b9d196a0fe09473a"
        )
    );
}

/// Temporary credentials: the session token is sent and signed.
#[test]
fn sigv4_post_sts_header_before() {
    assert_eq!(
        suite_authorization("POST", &[], b"", Some(SUITE_TOKEN)),
        suite_expected(
            "host;x-amz-date;x-amz-security-token",
            "85d96828115b5dc0cfc3bd16ad9e210dd772bbebba041836c64533a82be05ead"
        )
    );
}

#[test]
fn signed_headers_keep_the_request_headers_and_hide_secrets_in_debug() {
    let credentials = AwsCredentials::new(SUITE_KEY_ID, SUITE_SECRET, Some(SUITE_TOKEN.into()));
    let request = UnsignedRequest {
        method: "POST",
        url: SUITE_URL,
        headers: &[("x-amz-target", "TrentService.Encrypt")],
        body: b"{}",
    };
    let signed = sign(
        &request,
        &credentials,
        "us-east-1",
        "kms",
        SystemTime::now(),
    )
    .expect("sign");
    assert_eq!(signed["x-amz-target"], "TrentService.Encrypt");
    let shown = format!("{signed:?} {request:?} {credentials:?}");
    assert!(!shown.contains(SUITE_TOKEN), "{shown}");
    assert!(!shown.contains(SUITE_SECRET), "{shown}");
    assert!(!shown.contains("Signature="), "{shown}");
}

// --- Behaviour that needs no server -----------------------------------------------------

const SECRET: &str = "secret-access-key-value-never-printed";
const TOKEN: &str = "session-token-value-never-printed";

#[derive(Debug, Default)]
struct Calls(Mutex<Vec<(&'static str, CallOutcome)>>);

impl KmsObserver for Calls {
    fn call(&self, backend: &'static str, op: &'static str, _: Duration, outcome: CallOutcome) {
        assert_eq!(backend, "aws");
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((op, outcome));
    }
}

impl Calls {
    fn of(&self, op: &str) -> Vec<CallOutcome> {
        let calls = self.0.lock().unwrap_or_else(|p| p.into_inner());
        calls
            .iter()
            .filter(|(o, _)| *o == op)
            .map(|(_, c)| *c)
            .collect()
    }
}

fn short_retries() -> RetryPolicy {
    RetryPolicy {
        attempt_timeout: Duration::from_secs(2),
        backoff: [10, 20, 40].map(Duration::from_millis).to_vec(),
    }
}

#[test]
fn debug_never_shows_the_secret_key_or_session_token() {
    let credentials = AwsCredentials::new("AKIDTEST", SECRET, Some(TOKEN.into()));
    let config = AwsKmsConfig::new("us-east-1", "alias/keycast", credentials);
    let km = AwsKmsKeyManager::new(config.clone()).expect("valid config");
    for shown in [format!("{km:?}"), format!("{config:?}")] {
        assert!(shown.contains("AKIDTEST"), "{shown}");
        assert!(shown.contains("alias/keycast"), "{shown}");
        assert!(!shown.contains(SECRET), "{shown}");
        assert!(!shown.contains(TOKEN), "{shown}");
    }
    assert_eq!(km.endpoint(), "https://kms.us-east-1.amazonaws.com/");
    assert_eq!(km.id().provider, PROVIDER);
    assert_eq!(km.id().key_id, "alias/keycast");
    assert_eq!(km.id().version, 1);
}

#[test]
fn bad_configuration_is_a_config_error_without_secrets() {
    let credentials = AwsCredentials::new("AKIDTEST", SECRET, Some(TOKEN.into()));
    let config =
        AwsKmsConfig::new("us-east-1", "k", credentials).with_endpoint("http://127.0.0.1:1/x");
    let err = AwsKmsKeyManager::new(config).expect_err("a path is refused");
    assert!(
        matches!(err, KmsError::Config { backend: "aws", .. }),
        "{err}"
    );
    let shown = format!("{err} {err:?}");
    assert!(!shown.contains(SECRET) && !shown.contains(TOKEN), "{shown}");
}

#[tokio::test]
async fn closed_port_is_unavailable_after_three_retries() {
    let calls = Arc::new(Calls::default());
    let config = AwsKmsConfig::new(
        "us-east-1",
        "alias/unreachable",
        AwsCredentials::new("test", SECRET, None),
    )
    .with_endpoint("http://127.0.0.1:1")
    .with_retry_policy(short_retries())
    .with_observer(calls.clone());
    let km = AwsKmsKeyManager::new(config).expect("valid config");
    let r = km.wrap(&random_secret32(), b"aad").await;
    match r {
        Err(Error::Unavailable(m)) => {
            assert!(m.contains("aws key alias/unreachable"), "{m}");
            assert!(!m.contains(SECRET), "{m}");
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }
    assert_eq!(calls.of("wrap"), vec![CallOutcome::Transient; 4]);
}

// --- Against moto -------------------------------------------------------------------------

/// The moto endpoint, or `None` (test skipped) when unset locally.
fn moto() -> Option<String> {
    keycast_test_support::require_service("KEYCAST_TEST_AWS_ENDPOINT")
}

fn moto_credentials() -> AwsCredentials {
    AwsCredentials::new("test", "test", None)
}

async fn create_key(endpoint: &str) -> (String, String) {
    keycast_kms::testing::moto_create_key(endpoint).await
}

fn moto_config(endpoint: &str, key: &str) -> AwsKmsConfig {
    AwsKmsConfig::new("us-east-1", key, moto_credentials())
        .with_endpoint(endpoint)
        .with_retry_policy(short_retries())
}

fn manager(config: AwsKmsConfig) -> Arc<dyn KeyManager> {
    Arc::new(AwsKmsKeyManager::new(config).expect("valid config"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance() {
    let Some(endpoint) = moto() else { return };
    let (key, _) = create_key(&endpoint).await;
    testing::key_manager::run(manager(moto_config(&endpoint, &key))).await;
}

#[tokio::test]
async fn key_arn_and_temporary_credentials_work() {
    let Some(endpoint) = moto() else { return };
    let (_, arn) = create_key(&endpoint).await;
    let credentials = AwsCredentials::new("test", "test", Some("session".into()));
    let config = AwsKmsConfig {
        credentials,
        ..moto_config(&endpoint, &arn)
    };
    let km = manager(config);
    let dek = random_secret32();
    let w = km.wrap(&dek, b"aad").await.expect("wrap");
    assert_eq!(w.kek.key_id, arn, "the configured spelling is recorded");
    assert_eq!(*km.unwrap(&w, b"aad").await.expect("unwrap"), *dek);
    let empty_aad = km.wrap(&dek, b"").await.expect("wrap without AAD");
    assert_eq!(*km.unwrap(&empty_aad, b"").await.expect("unwrap"), *dek);
    assert!(km.unwrap(&empty_aad, b"x").await.is_err());
}

#[tokio::test]
async fn wrong_encryption_context_fails_once_without_retries() {
    let Some(endpoint) = moto() else { return };
    let (key, _) = create_key(&endpoint).await;
    let calls = Arc::new(Calls::default());
    let km = manager(moto_config(&endpoint, &key).with_observer(calls.clone()));
    let w = km.wrap(&random_secret32(), b"aad one").await.expect("wrap");
    let r = km.unwrap(&w, b"aad two").await;
    match r {
        Err(Error::KeyManager(m)) => assert!(m.contains(&format!("aws key {key}")), "{m}"),
        other => panic!("expected a KMS refusal, got {other:?}"),
    }
    assert_eq!(calls.of("wrap"), vec![CallOutcome::Ok]);
    assert_eq!(calls.of("unwrap"), vec![CallOutcome::Permanent]);
}

#[tokio::test]
async fn a_manager_for_another_key_cannot_unwrap() {
    let Some(endpoint) = moto() else { return };
    let (key_a, _) = create_key(&endpoint).await;
    let (key_b, _) = create_key(&endpoint).await;
    let a = manager(moto_config(&endpoint, &key_a));
    let b = manager(moto_config(&endpoint, &key_b));
    let w = a.wrap(&random_secret32(), b"aad").await.expect("wrap");
    assert!(!b.can_unwrap(&w.kek));
    let r = b.unwrap(&w, b"aad").await;
    assert!(matches!(r, Err(Error::KeyManager(_))), "{r:?}");
    // Relabelled as B's blob, KMS itself refuses: Decrypt names the key it expects.
    let forged = Wrapped {
        kek: b.id().clone(),
        ..w
    };
    let r = b.unwrap(&forged, b"aad").await;
    assert!(matches!(r, Err(Error::KeyManager(_))), "{r:?}");
}

#[tokio::test]
async fn envelopes_seal_and_open() {
    let Some(endpoint) = moto() else { return };
    let (key, _) = create_key(&endpoint).await;
    let km = manager(moto_config(&endpoint, &key));
    let binding = EnvelopeBinding {
        key_id: KeyId::random(),
        pubkey: testing::fixtures::pubkey(),
        tenant_id: TenantId::random(),
    };
    let secret = random_secret32();
    let env = envelope::seal(km.as_ref(), &binding, &secret)
        .await
        .expect("seal");
    assert_eq!(env.wrapped_dek.kek.provider, "aws");
    let opened = envelope::open(km.as_ref(), &binding, &env)
        .await
        .expect("open");
    assert_eq!(*opened, *secret);
    let other_row = EnvelopeBinding {
        key_id: KeyId::random(),
        ..binding
    };
    assert!(envelope::open(km.as_ref(), &other_row, &env).await.is_err());
}
