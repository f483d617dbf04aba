//! The Vault / OpenBao transit backend against a real server.
//!
//! Most tests use the server at `KEYCAST_TEST_VAULT_ADDR` (token `KEYCAST_TEST_VAULT_TOKEN`,
//! default `root`), each with its own randomly named transit key. The outage test starts
//! and kills its own `bao server -dev` (binary `KEYCAST_TEST_BAO_BIN`, default `bao`).
//! Missing services skip a test, unless `KEYCAST_TEST_REQUIRE_SERVICES=1`.
//!
//! Locally:
//! `bao server -dev -dev-listen-address=127.0.0.1:8210 -dev-root-token-id=root &` then
//! `KEYCAST_TEST_VAULT_ADDR=http://127.0.0.1:8210 cargo test -p keycast-kms --features vault --test it -- vault::`.

#![cfg(feature = "vault")]

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use keycast_core::random_secret32;
use keycast_core::{
    Caller, Custody, Error, EventTemplate, KeyKind, KeyManager, Keyring, Label, MemoryKeyStore,
    Tenant, TenantName,
};
use keycast_kms::remote::RetryPolicy;
use keycast_kms::vault::{VaultConfig, VaultTransitKeyManager};
use keycast_kms::{CallOutcome, KmsError, KmsObserver};

/// The shared test server, or `None` (test skipped) when unset locally.
fn server() -> Option<Admin> {
    let addr = keycast_test_support::require_service("KEYCAST_TEST_VAULT_ADDR")?;
    let token = std::env::var("KEYCAST_TEST_VAULT_TOKEN")
        .ok()
        .filter(|t| !t.is_empty())
        .unwrap_or_else(|| "root".into());
    Some(Admin::new(addr.trim_end_matches('/').to_owned(), token))
}

/// Server setup through the plain HTTP API, as an operator would do it.
struct Admin {
    http: reqwest::Client,
    addr: String,
    token: String,
}

impl Admin {
    fn new(addr: String, token: String) -> Self {
        Self {
            http: reqwest::Client::new(),
            addr,
            token,
        }
    }

    async fn post(&self, path: &str, body: serde_json::Value) -> (u16, String) {
        let r = self
            .http
            .post(format!("{}/v1/{path}", self.addr))
            .header("X-Vault-Token", &self.token)
            .json(&body)
            .send()
            .await
            .expect("vault admin request");
        let status = r.status().as_u16();
        (status, r.text().await.unwrap_or_default())
    }

    /// Waits until the server is unsealed and answering; a freshly started one may not be.
    async fn wait_ready(&self) {
        let (health, what) = (
            format!("{}/v1/sys/health", self.addr),
            format!("vault at {} ready", self.addr),
        );
        keycast_test_support::eventually(Duration::from_secs(30), &what, || async {
            let r = self.http.get(&health).send().await;
            r.is_ok_and(|r| r.status().is_success())
        })
        .await;
    }

    /// Mounts transit unless it is mounted already, then creates a fresh key.
    async fn fresh_key(&self) -> String {
        self.wait_ready().await;
        keycast_kms::testing::bao_transit_key(&self.addr, &self.token).await
    }

    async fn rotate(&self, key: &str) {
        let (status, body) = self
            .post(&format!("transit/keys/{key}/rotate"), serde_json::json!({}))
            .await;
        assert!(
            (200..300).contains(&status),
            "rotating key: HTTP {status}: {body}"
        );
    }

    fn config(&self, key: &str) -> VaultConfig {
        VaultConfig::new(&self.addr, &self.token, key)
    }

    async fn manager(&self, key: &str) -> VaultTransitKeyManager {
        VaultTransitKeyManager::connect(self.config(key))
            .await
            .expect("connect to vault")
    }
}

/// Records every provider call attempt.
#[derive(Debug, Default)]
struct Calls(Mutex<Vec<(&'static str, CallOutcome)>>);

impl KmsObserver for Calls {
    fn call(&self, _: &'static str, op: &'static str, _: Duration, outcome: CallOutcome) {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance() {
    let Some(admin) = server() else { return };
    let key = admin.fresh_key().await;
    keycast_core::testing::key_manager::run(Arc::new(admin.manager(&key).await)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_aad_fails_once_without_retries() {
    let Some(admin) = server() else { return };
    let key = admin.fresh_key().await;
    let calls = Arc::new(Calls::default());
    let km = VaultTransitKeyManager::connect(admin.config(&key).observer(calls.clone()))
        .await
        .expect("connect");
    let w = km.wrap(&random_secret32(), b"row one").await.expect("wrap");
    let err = km
        .unwrap(&w, b"row two")
        .await
        .expect_err("wrong AAD must fail");
    assert_eq!(
        calls.of("unwrap"),
        [CallOutcome::Permanent],
        "one attempt, no retries"
    );
    match &err {
        Error::KeyManager(m) => {
            assert!(m.contains(&format!("vault key transit/{key}")), "{m}");
            assert!(m.contains("HTTP 400"), "{m}");
            assert!(!m.contains(&admin.token), "{m}");
        }
        other => panic!("{other:?}"),
    }
    assert!(!err.is_retryable());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_keeps_old_blobs_and_new_managers_use_the_new_version() {
    let Some(admin) = server() else { return };
    let key = admin.fresh_key().await;
    let old = admin.manager(&key).await;
    assert_eq!(old.id().version, 1);
    let dek = random_secret32();
    let w1 = old.wrap(&dek, b"aad").await.expect("wrap v1");
    assert_eq!(w1.kek.version, 1);
    assert!(w1.blob.starts_with(b"vault:v1:"));

    admin.rotate(&key).await;
    assert_eq!(
        *old.unwrap(&w1, b"aad").await.expect("v1 still unwraps"),
        *dek
    );
    let by_old = old.wrap(&dek, b"aad").await.expect("wrap after rotation");
    assert_eq!(
        by_old.kek.version, 2,
        "a wrap records the version the server used"
    );

    let new = admin.manager(&key).await;
    assert_eq!(
        new.id().version,
        2,
        "a new manager reads the latest version"
    );
    let w2 = new.wrap(&dek, b"aad").await.expect("wrap v2");
    assert_eq!(w2.kek.version, 2);
    assert!(w2.blob.starts_with(b"vault:v2:"));
    assert_eq!(*new.unwrap(&w1, b"aad").await.expect("v1 blob"), *dek);

    let ring = Keyring::new(Arc::new(new));
    assert!(ring.needs_rewrap(&w1.kek), "v1 blobs need a rewrap");
    assert!(!ring.needs_rewrap(&w2.kek));
    let rewrapped = ring.rewrap(&w1, b"aad").await.expect("rewrap");
    assert_eq!(rewrapped.kek.version, 2);
    assert_eq!(
        *ring.unwrap(&rewrapped, b"aad").await.expect("unwrap"),
        *dek
    );
    assert!(
        ring.rewrap(&w1, b"other aad").await.is_err(),
        "rewrap keeps the AAD check"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn debug_never_shows_the_token() {
    let Some(admin) = server() else { return };
    let key = admin.fresh_key().await;
    let config = admin.config(&key);
    let km = admin.manager(&key).await;
    for shown in [format!("{config:?}"), format!("{km:?}")] {
        assert!(!shown.contains(&admin.token), "{shown}");
        assert!(shown.contains(&key), "{shown}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn startup_refusals_name_the_key_and_hide_the_token() {
    let Some(admin) = server() else { return };
    let key = admin.fresh_key().await;

    let bad_token = "s.wrong-token-for-test";
    let err = VaultTransitKeyManager::connect(VaultConfig::new(&admin.addr, bad_token, &key))
        .await
        .expect_err("bad token");
    let shown = err.to_string();
    assert!(
        matches!(
            err,
            KmsError::Startup {
                backend: "vault",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        shown.contains("403") && !shown.contains(bad_token),
        "{shown}"
    );

    let err = VaultTransitKeyManager::connect(admin.config("keycast-test-missing"))
        .await
        .expect_err("missing key");
    assert!(
        matches!(&err, KmsError::Startup { source: Error::KeyManager(m), .. } if m.contains("transit/keycast-test-missing")),
        "{err:?}"
    );

    let (status, body) = admin
        .post(
            &format!("transit/keys/{key}-rsa"),
            serde_json::json!({"type": "rsa-2048"}),
        )
        .await;
    assert!((200..300).contains(&status), "HTTP {status}: {body}");
    let err = VaultTransitKeyManager::connect(admin.config(&format!("{key}-rsa")))
        .await
        .expect_err("RSA keys cannot bind AAD");
    assert!(err.to_string().contains("associated data"), "{err}");
}

/// A `bao server -dev` this test owns; killed when dropped, on every path.
struct BaoServer {
    child: Child,
    addr: String,
}

impl Drop for BaoServer {
    fn drop(&mut self) {
        self.kill();
    }
}

impl BaoServer {
    /// Starts a dev server on a free loopback port (its cluster listener takes the next
    /// port too). `None` when the binary cannot be spawned.
    async fn start() -> Option<BaoServer> {
        let bin = std::env::var("KEYCAST_TEST_BAO_BIN").unwrap_or_else(|_| "bao".into());
        for _ in 0..5 {
            let port = free_port_pair();
            let spawned = Command::new(&bin)
                .args([
                    "server",
                    "-dev",
                    &format!("-dev-listen-address=127.0.0.1:{port}"),
                    "-dev-root-token-id=root",
                    "-dev-no-store-token",
                ])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn();
            let child = match spawned {
                Ok(child) => child,
                Err(e) => {
                    return keycast_test_support::missing_service(&format!(
                        "cannot spawn {bin} ({e}); set KEYCAST_TEST_BAO_BIN"
                    ));
                }
            };
            let mut server = BaoServer {
                child,
                addr: format!("http://127.0.0.1:{port}"),
            };
            if server.healthy_within(Duration::from_secs(30)).await {
                return Some(server);
            }
            // Most likely lost a race for the port; try another.
            server.kill();
        }
        panic!("{bin} server -dev did not start in five tries");
    }

    async fn healthy_within(&mut self, limit: Duration) -> bool {
        let http = reqwest::Client::new();
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return false;
            }
            let r = http
                .get(format!("{}/v1/sys/health", self.addr))
                .send()
                .await;
            if r.is_ok_and(|r| r.status().is_success()) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        false
    }

    /// SIGKILL and reap; a no-op once the process is gone.
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port `p` with `p + 1` also free at the time of asking, for `bao`, which takes port
/// numbers and cannot report ports it picked; [`BaoServer::start`] retries on a lost race.
fn free_port_pair() -> u16 {
    loop {
        let first = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = first.local_addr().expect("addr").port();
        if port < u16::MAX && TcpListener::bind(("127.0.0.1", port + 1)).is_ok() {
            return port;
        }
    }
}

/// The KMS outage drill: with the KMS gone, keys already in memory keep signing
/// and cold loads fail fast with a retryable error naming the backend.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kms_outage_keeps_warm_keys_and_fails_cold_loads_fast() {
    let Some(mut bao) = BaoServer::start().await else {
        return;
    };
    let admin = Admin::new(bao.addr.clone(), "root".into());
    let key = admin.fresh_key().await;
    let policy = RetryPolicy {
        attempt_timeout: Duration::from_millis(200),
        backoff: [10, 20, 40].map(Duration::from_millis).to_vec(),
    };
    let km = VaultTransitKeyManager::connect(admin.config(&key).retry_policy(policy))
        .await
        .expect("connect");

    let store = Arc::new(MemoryKeyStore::new());
    let custody = Custody::builder(store.clone(), Arc::new(km))
        .build()
        .expect("engine");
    let tenant = Tenant::new(TenantName::parse("outage").expect("name"));
    keycast_core::KeyStore::create_tenant(store.as_ref(), &tenant)
        .await
        .expect("tenant");
    let create = |label: &'static str| {
        custody.create_key(keycast_core::NewKey::generate(
            tenant.id,
            keycast_core::Holder::Service,
            KeyKind::User,
            Label::parse(label).expect("label"),
        ))
    };
    let warm = create("warm").await.expect("create warm key");
    let cold = create("cold").await.expect("create cold key");
    let note = || EventTemplate::new(keycast_core::nostr::Kind::TextNote, "during the outage");
    custody
        .sign_event(Caller::Owner(warm.id), note())
        .await
        .expect("warm-up signature");

    bao.kill();

    let event = custody
        .sign_event(Caller::Owner(warm.id), note())
        .await
        .expect("a cached key signs without the KMS");
    assert_eq!(event.pubkey, warm.pubkey);
    event.verify().expect("the signature verifies");

    let started = Instant::now();
    let err = custody
        .sign_event(Caller::Owner(cold.id), note())
        .await
        .expect_err("a cold load needs the KMS");
    let took = started.elapsed();
    eprintln!("cold load during the outage failed after {took:?}: {err}");
    assert!(took < Duration::from_secs(2), "cold load took {took:?}");
    match &err {
        Error::Unavailable(m) => assert!(m.contains("vault") && m.contains(&key), "{m}"),
        other => panic!("expected Unavailable, got {other:?}"),
    }
    assert!(err.is_retryable());
}
