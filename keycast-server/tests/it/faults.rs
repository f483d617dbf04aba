//! Fault injection with real processes (design §7): the server SIGKILLed under load, its
//! relay, Postgres and the KMS going away and coming back, a cluster instance paused past
//! its TTL, file descriptors running out, and the disk filling up. Each case checks what a
//! user sees and that nothing acknowledged was lost.
//!
//! Services come from the usual variables: `KEYCAST_TEST_POSTGRES_URL` (the Postgres case
//! stops and starts the local `pg_ctlcluster` cluster behind it), `KEYCAST_TEST_REDIS_URL`
//! (the cluster case), `KEYCAST_TEST_MOTO_BIN` (a `moto_server` the KMS case runs and
//! pauses privately) and `KEYCAST_TEST_TMPFS=1` (this process may mount a private tmpfs,
//! for the disk case). Without one, its case prints that it was skipped (fails under
//! `KEYCAST_TEST_REQUIRE_SERVICES=1`). The cases run one at a time: some stop shared
//! services, and each starts servers on a two-core machine.

use crate::common;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::cluster::{made_from, redis_url, Made, TestCluster, TTL};
use common::moto::PrivateMoto;
use common::postgres::LocalPostgres;
use common::server::{Account, Served};
use common::Env;
use keycast_core::nostr::{PublicKey, RelayUrl};
use keycast_core::{AuditFilter, Method as CustodyMethod, Outcome};
use keycast_nip46::testing::{signed_by, LoadClient, Tally};
use keycast_server::embedded_relay::EmbeddedRelay;
use keycast_storage::testing::{postgres_url, FreshDb};
use keycast_test_support::eventually;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// One case at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Info logs: debug logs under load only slow the two cores down.
fn quiet() -> (&'static str, String) {
    ("RUST_LOG", "info".to_owned())
}

/// An HTTP answer with the header a 503 must carry.
#[derive(Debug)]
struct Answer {
    status: StatusCode,
    retry_after: Option<String>,
    body: Value,
}

impl Answer {
    /// 503 with `Retry-After`: a backend is down and the caller should come back.
    fn assert_unavailable(&self, what: &str) {
        assert_eq!(
            self.status,
            StatusCode::SERVICE_UNAVAILABLE,
            "{what}: {}",
            self.body
        );
        assert!(
            self.retry_after.is_some(),
            "{what}: 503 without Retry-After"
        );
    }

    /// The id of the event a `sign_event` answer carries.
    fn signed_event_id(&self) -> String {
        let result = self.body["result"].as_str().expect("result");
        let event: Value = serde_json::from_str(result).expect("event JSON");
        event["id"].as_str().expect("event id").to_owned()
    }
}

/// The ids of the events the default tenant's audit log records as signed, with how many
/// records each has, read straight from the database at `url`.
async fn signatures_audited(url: &str) -> std::collections::HashMap<String, usize> {
    let store = keycast_storage::Database::open(url)
        .await
        .expect("open the database")
        .into_key_store();
    let audit = store
        .list_audit(&AuditFilter {
            tenant_id: keycast_server::services::default_tenant(),
            key_id: None,
            authorization_id: None,
            limit: u32::MAX,
        })
        .await
        .expect("audit log");
    let mut counts = std::collections::HashMap::new();
    for r in &audit {
        if r.action == CustodyMethod::SignEvent.into() && r.outcome == Outcome::Allowed {
            if let Some(id) = r.event_id {
                *counts.entry(id.to_hex()).or_insert(0) += 1;
            }
        }
    }
    counts
}

/// The database a server on embedded defaults writes in `env`.
fn sqlite_url(env: &Env) -> String {
    format!("sqlite://{}", env.dir.join("keycast.db").display())
}

async fn call(
    http: &reqwest::Client,
    method: Method,
    url: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> Result<Answer, reqwest::Error> {
    let mut r = http.request(method, url);
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    if let Some(b) = body {
        r = r.json(&b);
    }
    let response = r.send().await?;
    let status = response.status();
    let retry_after = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = response.json::<Value>().await.unwrap_or(Value::Null);
    Ok(Answer {
        status,
        retry_after,
        body,
    })
}

/// HTTP RPC `sign_event` of a kind 1 note through `token`.
async fn sign(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    content: &str,
) -> Result<Answer, reqwest::Error> {
    let template = json!({"kind": 1, "content": content, "tags": [], "created_at": 1_700_000_000});
    let body = json!({"method": "sign_event", "params": [template.to_string()]});
    call(
        http,
        Method::POST,
        &format!("{base}/api/nostr"),
        Some(token),
        Some(body),
    )
    .await
}

fn base(served: &Served) -> String {
    served.env.url("")
}

/// [`sign`] that must reach the server.
async fn sign_on(served: &Served, token: &str, content: &str) -> Answer {
    sign(&served.http, &base(served), token, content)
        .await
        .expect("request")
}

/// A full-access authorization of the account's key, created over HTTP.
async fn authorize(served: &Served, account: &Account, label: &str) -> Made {
    let (status, a) = served
        .json(
            Method::POST,
            "/api/authorizations",
            Some(&account.session),
            Some(json!({"key_id": account.key_id, "label": label})),
        )
        .await;
    assert_eq!(status, 201, "{a}");
    made_from(&a)
}

/// `/healthz/ready`: the status and answer.
async fn readiness(served: &Served) -> (StatusCode, Value) {
    served.json(Method::GET, "/healthz/ready", None, None).await
}

/// Polls readiness until `done(status, answer)` holds; how long it took.
async fn await_readiness(
    served: &Served,
    within: Duration,
    what: &str,
    done: impl Fn(StatusCode, &Value) -> bool,
) -> Duration {
    let start = Instant::now();
    loop {
        let (status, ready) = readiness(served).await;
        if done(status, &ready) {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < within,
            "{what} not seen within {within:?}: {status} {ready}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn relay_url(url: &str) -> RelayUrl {
    RelayUrl::parse(url).expect("relay URL")
}

/// Sends one `sign_event` from `client` to `m` and waits for its reply, which must be an
/// event signed by `user`.
async fn nip46_sign_answered(load: &LoadClient, client: usize, m: &Made, user: PublicKey) {
    let id = load.sign(client, m.bunker, "hello").await.expect("send");
    let reply = load
        .wait_one(&id, Duration::from_secs(15))
        .await
        .expect("the sign request was answered");
    assert_eq!(reply.error, None, "{reply:?}");
    assert_eq!(signed_by(&reply), Some(user), "{reply:?}");
}

// --- 1. SIGKILL under load ---------------------------------------------------------------

/// What the load got acknowledged before the kill.
#[derive(Default)]
struct Acked {
    /// Event ids of HTTP RPC signatures answered 200.
    http_signatures: Vec<String>,
    /// Authorizations created with 201.
    authorizations: Vec<String>,
}

const CRASH_CLIENTS: usize = 2;
/// Authorizations with NIP-46 clients connected before the load (the first four also sign
/// over HTTP).
const CONNECTED: usize = 8;
/// Authorizations whose clients connect during the load.
const CONNECTING: usize = 24;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_under_load_restarts_at_once_and_keeps_every_acknowledged_write() {
    let _one = SERIAL.lock().await;
    let vars = [quiet()];
    let served = Served::launch(Env::new(), &[], &vars).await;
    let account = served.account("crash@example.com").await;
    let user = PublicKey::from_hex(&account.pubkey).expect("pubkey");
    let mut made = Vec::new();
    for i in 0..CONNECTED + CONNECTING {
        made.push(authorize(&served, &account, &format!("app {i}")).await);
    }
    let load = LoadClient::start(vec![relay_url(&served.relay())], CRASH_CLIENTS)
        .await
        .expect("clients");
    for (i, m) in made[..CONNECTED].iter().enumerate() {
        load.connect(
            i % CRASH_CLIENTS,
            m.bunker,
            &m.secret,
            Duration::from_secs(10),
        )
        .await
        .expect("connect");
    }

    let stop = Arc::new(AtomicBool::new(false));
    // Acknowledged so far, for knowing when enough load ran before the kill.
    let (http_acks, write_acks) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let base = base(&served);
    // HTTP RPC signers, one per token.
    let mut http_tasks = tokio::task::JoinSet::new();
    for (t, m) in made[..4].iter().enumerate() {
        let (http, base, token, stop, acks) = (
            served.http.clone(),
            base.clone(),
            m.token.clone(),
            stop.clone(),
            http_acks.clone(),
        );
        http_tasks.spawn(async move {
            let mut signed = Vec::new();
            for k in 0.. {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                match sign(&http, &base, &token, &format!("http {t} {k}")).await {
                    Ok(a) => {
                        assert_eq!(a.status, 200, "before the kill: {}", a.body);
                        signed.push(a.signed_event_id());
                        acks.fetch_add(1, Ordering::Relaxed);
                    }
                    // The server is gone.
                    Err(_) => break,
                }
            }
            signed
        });
    }
    // Writes: authorizations created one after another.
    let writer = {
        let (http, base, session, key_id, stop, acks) = (
            served.http.clone(),
            base.clone(),
            account.session.clone(),
            account.key_id.clone(),
            stop.clone(),
            write_acks.clone(),
        );
        tokio::spawn(async move {
            let mut created = Vec::new();
            for k in 0.. {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let body = json!({"key_id": key_id, "label": format!("written {k}")});
                let url = format!("{base}/api/authorizations");
                match call(&http, Method::POST, &url, Some(&session), Some(body)).await {
                    Ok(a) => {
                        assert_eq!(a.status, 201, "before the kill: {}", a.body);
                        created.push(a.body["id"].as_str().expect("id").to_owned());
                        acks.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(_) => break,
                }
            }
            created
        })
    };
    // NIP-46: signs through the connected authorizations at about 200/s, and a connect
    // for one of the others every 50 ms. Sending stops when the relay (in the server) is
    // gone.
    let targets: Vec<(PublicKey, String)> =
        made.iter().map(|m| (m.bunker, m.secret.clone())).collect();
    let nip46 = {
        let (load, stop) = (load.clone(), stop.clone());
        tokio::spawn(async move {
            let (mut signs, mut connects) = (Vec::new(), Vec::new());
            for k in 0.. {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let i = k % CONNECTED;
                let sent = if k % 10 == 0 && k / 10 < CONNECTING {
                    let j = CONNECTED + k / 10;
                    let (bunker, secret) = &targets[j];
                    let params = vec![bunker.to_hex(), secret.clone()];
                    let send = load.send(j % CRASH_CLIENTS, *bunker, "connect", params);
                    tokio::time::timeout(Duration::from_secs(2), send)
                        .await
                        .map(|r| r.map(|id| connects.push((id, j))))
                } else {
                    let content = format!("n {k}");
                    let send = load.sign(i % CRASH_CLIENTS, targets[i].0, &content);
                    tokio::time::timeout(Duration::from_secs(2), send)
                        .await
                        .map(|r| r.map(|id| signs.push(id)))
                };
                if !matches!(sent, Ok(Ok(()))) {
                    break;
                }
                // Pacing the load generator (about 200/s), not waiting for anything.
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            (signs, connects)
        })
    };

    // Killed once the load is well under way: twice what the checks below ask of each kind
    // acknowledged (NIP-46 counted by the server, connects included).
    eventually(
        Duration::from_secs(60),
        "load under way before the kill",
        || async {
            http_acks.load(Ordering::Relaxed) > 40
                && write_acks.load(Ordering::Relaxed) > 4
                && served.metric("keycast_nip46_processed_total").await > (CONNECTED + 40) as u64
        },
    )
    .await;
    let (env, _) = served.kill_keeping_env();
    stop.store(true, Ordering::Relaxed);
    let mut acked = Acked::default();
    while let Some(signed) = http_tasks.join_next().await {
        acked.http_signatures.extend(signed.expect("HTTP signer"));
    }
    acked.authorizations = writer.await.expect("writer");
    let (signs, connects) = nip46.await.expect("NIP-46 sender");
    // Replies that arrived before the kill are what NIP-46 acknowledged.
    let tally: Tally = load.wait(&signs, Duration::ZERO, Duration::ZERO).await;
    let nip46_signatures: Vec<String> = tally
        .replies
        .values()
        .map(|r| {
            assert_eq!(r[0].error, None, "{r:?}");
            let event: Value =
                serde_json::from_str(r[0].result.as_deref().expect("result")).expect("event JSON");
            event["id"].as_str().expect("id").to_owned()
        })
        .collect();
    let connect_ids: Vec<String> = connects.iter().map(|(id, _)| id.clone()).collect();
    let connected = load
        .wait(&connect_ids, Duration::ZERO, Duration::ZERO)
        .await;
    let bound: Vec<usize> = connects
        .iter()
        .filter(|(id, _)| {
            connected.replies.get(id).is_some_and(|r| {
                assert_eq!(r[0].error, None, "connect refused: {r:?}");
                true
            })
        })
        .map(|(_, j)| *j)
        .collect();
    load.shutdown().await;
    assert!(
        acked.http_signatures.len() > 20 && acked.authorizations.len() > 2,
        "too little load before the kill: {} HTTP signatures, {} authorizations",
        acked.http_signatures.len(),
        acked.authorizations.len()
    );
    assert!(
        nip46_signatures.len() > 20,
        "too little NIP-46 load: {}",
        nip46_signatures.len()
    );

    // Restarted at once on the same data dir: the kernel released the flock, nothing to
    // clean up.
    let restart = Instant::now();
    let mut served = Served::launch(env, &[], &vars).await;
    let restart = restart.elapsed();

    // Every authorization acknowledged with 201 is there, and every NIP-46 connect that
    // was answered left its client bound.
    let (status, listed) = served
        .json(
            Method::GET,
            "/api/authorizations",
            Some(&account.session),
            None,
        )
        .await;
    assert_eq!(status, 200, "{listed}");
    let listed = listed["authorizations"].as_array().expect("list").clone();
    let ids: HashSet<&str> = listed.iter().filter_map(|a| a["id"].as_str()).collect();
    for id in &acked.authorizations {
        assert!(ids.contains(id.as_str()), "authorization {id} lost");
    }
    let clients = |m: &Made| {
        listed
            .iter()
            .find(|a| a["id"] == m.id.as_str())
            .and_then(|a| a["clients"].as_u64())
            .expect("listed")
    };
    for j in (0..CONNECTED).chain(bound.iter().copied()) {
        assert_eq!(clients(&made[j]), 1, "the client bound to {j} was lost");
    }

    // It answers again: HTTP RPC, and NIP-46 for a new client.
    assert_eq!(sign_on(&served, &made[0].token, "after").await.status, 200);
    let fresh = authorize(&served, &account, "after the restart").await;
    let load = LoadClient::start(vec![relay_url(&served.relay())], 1)
        .await
        .expect("client");
    load.connect(0, fresh.bunker, &fresh.secret, Duration::from_secs(10))
        .await
        .expect("connect after the restart");
    nip46_sign_answered(&load, 0, &fresh, user).await;
    load.shutdown().await;
    served.stop();

    // Every signature released before the kill has its audit record.
    let audited = signatures_audited(&sqlite_url(&served.env)).await;
    for id in acked.http_signatures.iter().chain(&nip46_signatures) {
        assert!(
            audited.contains_key(id),
            "signature {id} has no audit record"
        );
    }
    eprintln!(
        "killed under load: {} HTTP and {} NIP-46 signatures, {} authorizations and {} \
         connects acknowledged, all kept; restart ready in {restart:?}",
        acked.http_signatures.len(),
        nip46_signatures.len(),
        acked.authorizations.len(),
        bound.len()
    );
}

// --- 2. Relay down and back --------------------------------------------------------------

/// Starts a relay on `addr`, retrying while the port is still held by the previous one.
async fn relay_on(addr: SocketAddr) -> EmbeddedRelay {
    let what = format!("a relay listening on {addr}");
    eventually(Duration::from_secs(10), &what, || async {
        EmbeddedRelay::start(addr).await.ok()
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_down_makes_the_server_unready_and_back_serves_nip46_again() {
    let _one = SERIAL.lock().await;
    let relay = relay_on(([127, 0, 0, 1], 0).into()).await;
    // Brought back on the same address, which the server is configured with.
    let addr: SocketAddr = relay
        .url
        .as_str_without_trailing_slash()
        .trim_start_matches("ws://")
        .parse()
        .expect("relay address");
    let vars = [("KEYCAST_RELAYS", relay.url.to_string()), quiet()];
    let mut served = Served::launch(Env::new(), &[], &vars).await;
    let account = served.account("relay@example.com").await;
    let user = PublicKey::from_hex(&account.pubkey).expect("pubkey");
    let before = authorize(&served, &account, "before").await;

    relay.shutdown();
    let unready = await_readiness(
        &served,
        Duration::from_secs(10),
        "not ready for lack of relays",
        |status, ready| status == 503 && ready["failing"] == json!(["relays"]),
    )
    .await;
    // Written while the relay is away: listened for once it is back.
    let during = authorize(&served, &account, "during").await;
    eventually(
        Duration::from_secs(10),
        "the authorization written while the relay is away in the server's plan",
        || async {
            served
                .metric("keycast_nip46_subscribed_authorizations")
                .await
                >= 2
        },
    )
    .await;

    let relay = relay_on(addr).await;
    let back = await_readiness(
        &served,
        Duration::from_secs(20),
        "ready again",
        |status, _| status == 200,
    )
    .await;
    let load = LoadClient::start(vec![relay.url.clone()], 1)
        .await
        .expect("client");
    for (m, which) in [(&before, "before"), (&during, "during")] {
        if let Err(e) = load
            .connect(0, m.bunker, &m.secret, Duration::from_secs(10))
            .await
        {
            let logs = served.stop();
            panic!("connect ({which}) after the relay returned: {e:?}; server log:\n{logs}");
        }
        nip46_sign_answered(&load, 0, m, user).await;
    }
    load.shutdown().await;
    relay.shutdown();
    let logs = served.stop();
    assert!(!logs.contains("panicked"), "{logs}");
    eprintln!("relay down: not ready after {unready:?}; back: ready after {back:?}");
}

// --- 3. Postgres stopped and started -----------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_outage_answers_503_with_retry_after_and_recovers_by_itself() {
    let Some(admin) = postgres_url() else { return };
    let _one = SERIAL.lock().await;
    let Some(mut postgres) = LocalPostgres::find(&admin) else {
        return;
    };
    let db = FreshDb::create(&admin).await;
    let vars = [("KEYCAST_DATABASE_URL", db.url.clone()), quiet()];
    let mut served = Served::launch(Env::new(), &[], &vars).await;
    let account = served.account("pg@example.com").await;
    let warm = authorize(&served, &account, "warm").await;
    let cold = authorize(&served, &account, "cold").await;
    assert_eq!(sign_on(&served, &warm.token, "warm up").await.status, 200);

    postgres.stop();
    let outage = Instant::now();
    // Each of these waits out the pool's acquire timeout (5 s), so they run together: the
    // cached token, authorization and key; a token never used here (read from the store);
    // a new key (written); readiness.
    let new_key = json!({"name": "during"});
    let (cached, uncached, new_key, (status, ready)) = tokio::join!(
        sign_on(&served, &warm.token, "during"),
        sign_on(&served, &cold.token, "during"),
        async {
            let url = served.env.url("/api/keys");
            let session = Some(account.session.as_str());
            call(&served.http, Method::POST, &url, session, Some(new_key))
                .await
                .expect("request")
        },
        readiness(&served),
    );
    // Past the 10 s authorization cache lifetime: the reload fails, and the stale copy
    // answers (with no new wait on the dead database while the breaker holds).
    tokio::time::sleep_until((outage + Duration::from_secs(11)).into()).await;
    let late = sign_on(&served, &warm.token, "late in the outage").await;
    let stale_served = served.metric("keycast_stale_served_total").await;
    let in_outage = outage.elapsed();
    postgres.start();

    uncached.assert_unavailable("an uncached token while Postgres is down");
    new_key.assert_unavailable("creating a key while Postgres is down");
    assert_eq!(status, 503, "{ready}");
    assert!(
        ready["failing"]
            .as_array()
            .is_some_and(|f| f.contains(&json!("database"))),
        "{ready}"
    );
    // The cached token, authorization and key keep signing: the audit record went to the
    // local spool, fsynced, before the answer.
    assert_eq!(
        cached.status, 200,
        "a cached key while Postgres is down: {}",
        cached.body
    );
    let during = cached.signed_event_id();
    assert_eq!(late.status, 200, "past the cache lifetime: {}", late.body);
    assert!(stale_served >= 1, "the late signature used no stale copy");

    // Back without a restart of keycast-server.
    let recovered = await_readiness(
        &served,
        Duration::from_secs(20),
        "ready again",
        |status, _| status == 200,
    )
    .await;
    assert_eq!(sign_on(&served, &cold.token, "after").await.status, 200);
    assert_eq!(sign_on(&served, &warm.token, "after").await.status, 200);
    let (status, key) = served
        .json(
            Method::POST,
            "/api/keys",
            Some(&account.session),
            Some(json!({"name": "after"})),
        )
        .await;
    assert_eq!(status, 201, "{key}");
    // The signature made during the outage reached the audit log once the spool drained.
    eventually(
        Duration::from_secs(10),
        "the audit spool drained",
        || async { served.metric("keycast_audit_spool_pending").await == 0 },
    )
    .await;
    assert!(served.metric("keycast_audit_spooled_total").await >= 1);
    let audited = signatures_audited(&db.url).await;
    for id in [during, late.signed_event_id()] {
        assert_eq!(
            audited.get(&id),
            Some(&1),
            "a signature made in the outage is audited once"
        );
    }
    assert!(served.alive());
    served.stop();
    db.drop_db().await;
    eprintln!(
        "Postgres down for {in_outage:?}: cached key answered {}; ready {recovered:?} after \
         it returned",
        cached.status
    );
}

// --- 4. KMS paused -----------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kms_outage_keeps_cached_keys_signing_and_cold_loads_get_503() {
    let _one = SERIAL.lock().await;
    let Some(moto) = PrivateMoto::start() else {
        return;
    };
    let kms_key = moto.create_key().await;
    let vars = [
        ("KEYCAST_KMS", "aws".to_owned()),
        ("KEYCAST_AWS_KMS_KEY_ID", kms_key),
        ("KEYCAST_AWS_KMS_ENDPOINT", moto.endpoint()),
        ("AWS_REGION", "us-east-1".to_owned()),
        ("AWS_ACCESS_KEY_ID", "test".to_owned()),
        ("AWS_SECRET_ACCESS_KEY", "test".to_owned()),
        quiet(),
    ];
    let mut served = Served::launch(Env::new(), &[], &vars).await;
    let warm_account = served.account("warm@example.com").await;
    let warm = authorize(&served, &warm_account, "warm").await;
    // A second key, never loaded since it was sealed.
    let cold_account = served.account("cold@example.com").await;
    let cold = authorize(&served, &cold_account, "cold").await;
    assert_eq!(sign_on(&served, &warm.token, "warm up").await.status, 200);

    moto.pause();
    let paused = Instant::now();
    // The cold load waits out the KMS retries; meanwhile the cached key signs on.
    let cold_sign = {
        let (http, base, token) = (served.http.clone(), base(&served), cold.token.clone());
        tokio::spawn(async move { sign(&http, &base, &token, "cold").await })
    };
    for k in 0..5 {
        let a = sign_on(&served, &warm.token, &format!("during {k}")).await;
        assert_eq!(a.status, 200, "a cached key must keep signing: {}", a.body);
        // Spread over the pause, while the cold load waits: the time is the test.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let cold_answer = cold_sign.await.expect("join").expect("request");
    let waited = paused.elapsed();
    cold_answer.assert_unavailable("a cold key load while the KMS does not answer");
    assert_eq!(
        cold_answer.body["error"]["code"], "unavailable",
        "{}",
        cold_answer.body
    );

    moto.resume();
    let a = sign_on(&served, &cold.token, "after").await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert!(served.alive());
    served.stop();
    eprintln!("KMS paused: the cold load answered 503 after {waited:?}");
}

// --- 5. A cluster instance paused past its TTL -------------------------------------------

const CLUSTER_AUTHORIZATIONS: usize = 60;
const CLUSTER_CLIENTS: usize = 4;
const CLUSTER_REQUESTS: usize = 1000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_cluster_instance_is_taken_over_and_rejoins_without_double_answers() {
    let Some(redis) = redis_url() else { return };
    let _one = SERIAL.lock().await;
    let Some(cluster) = TestCluster::start(3, &redis, &[]).await else {
        return;
    };
    let (account, made) = cluster.authorizations(CLUSTER_AUTHORIZATIONS).await;
    let user = PublicKey::from_hex(&account.pubkey).expect("pubkey");
    let load = LoadClient::start(vec![cluster.relay()], CLUSTER_CLIENTS)
        .await
        .expect("clients");
    for (i, m) in made.iter().enumerate() {
        load.connect(
            i % CLUSTER_CLIENTS,
            m.bunker,
            &m.secret,
            Duration::from_secs(30),
        )
        .await
        .expect("connect");
    }
    // Instance 0 answers the keys it made for a few seconds whoever owns them; the
    // takeover is tried on the shares alone.
    cluster.wait_shares(CLUSTER_AUTHORIZATIONS).await;

    // 100 requests a second; instance 2 is stopped at 2 s for 4 s (two TTLs).
    let gap = Duration::from_millis(10);
    let (pause_at, resume_at) = (200, 600);
    let mut sent = Vec::with_capacity(CLUSTER_REQUESTS);
    let mut paused_at = None;
    let mut next = Instant::now();
    for k in 0..CLUSTER_REQUESTS {
        if k == pause_at {
            cluster.node(2).signal("STOP");
            paused_at = Some(Instant::now());
        }
        if k == resume_at {
            cluster.node(2).signal("CONT");
        }
        let i = k % made.len();
        let id = load
            .sign(i % CLUSTER_CLIENTS, made[i].bunker, &format!("note {k}"))
            .await
            .expect("send");
        sent.push((id, Instant::now()));
        next += gap;
        tokio::time::sleep_until(next.into()).await;
    }
    let paused_at = paused_at.expect("paused");
    let ids: Vec<String> = sent.iter().map(|(id, _)| id.clone()).collect();
    let tally = load
        .wait(&ids, Duration::from_secs(60), Duration::from_secs(3))
        .await;
    assert!(
        tally.duplicated.is_empty(),
        "answered twice: {:?}",
        tally.duplicated
    );
    for (id, replies) in &tally.replies {
        assert_eq!(replies[0].error, None, "request {id}");
        assert_eq!(signed_by(&replies[0]), Some(user), "request {id}");
    }
    // The survivors took its share over within the TTL (plus a re-read period), and the
    // resumed instance answered no request twice on its way back.
    let takeover = paused_at + TTL + TTL / 4 + Duration::from_millis(500);
    let unanswered: HashSet<&String> = tally.unanswered.iter().collect();
    let late: Vec<&String> = sent
        .iter()
        .filter(|(id, at)| *at > takeover && unanswered.contains(id))
        .map(|(id, _)| id)
        .collect();
    assert!(
        late.is_empty(),
        "{} requests sent after the takeover went unanswered",
        late.len()
    );
    // The pause was long enough to matter: the survivors took requests over.
    let rerouted = cluster.node(0).metric("keycast_nip46_rerouted_total").await
        + cluster.node(1).metric("keycast_nip46_rerouted_total").await;
    assert!(rerouted > 0, "the survivors took nothing over");
    // It rejoined by itself.
    cluster.wait_members(3).await;
    let claims_lost = cluster
        .node(2)
        .metric("keycast_nip46_claims_lost_total")
        .await;
    eprintln!(
        "paused one of three for 2 TTLs: {} of {} requests unanswered (sent before the \
         takeover), {rerouted} taken over, {claims_lost} claims lost by the resumed one",
        tally.unanswered.len(),
        sent.len()
    );
    load.shutdown().await;
    cluster.stop().await;
}

// --- 6. File descriptors exhausted -------------------------------------------------------

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, Iterator::count)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_out_of_file_descriptors_does_not_crash_the_server() {
    let _one = SERIAL.lock().await;
    let mut served = Served::launch(Env::new(), &[], &[quiet()]).await;
    let account = served.account("fd@example.com").await;
    let user = PublicKey::from_hex(&account.pubkey).expect("pubkey");
    let made = authorize(&served, &account, "fd").await;
    assert_eq!(sign_on(&served, &made.token, "before").await.status, 200);
    // A NIP-46 client connected before the descriptors run out.
    let load = LoadClient::start(vec![relay_url(&served.relay())], 1)
        .await
        .expect("client");
    load.connect(0, made.bunker, &made.secret, Duration::from_secs(10))
        .await
        .expect("connect");

    // Room for 40 more descriptors than it holds now.
    let pid = served.pid();
    let limit = open_fds(pid) + 40;
    let status = std::process::Command::new("prlimit")
        .args([
            "--pid",
            &pid.to_string(),
            &format!("--nofile={limit}:{limit}"),
        ])
        .status()
        .expect("prlimit");
    assert!(status.success(), "prlimit failed");

    // Idle connections until it cannot accept any more.
    let addr = format!("127.0.0.1:{}", served.env.http_port);
    let mut idle = Vec::new();
    for _ in 0..limit + 100 {
        idle.push(
            tokio::net::TcpStream::connect(&addr)
                .await
                .expect("connect (the kernel's backlog takes it)"),
        );
    }
    let what = format!("{limit} descriptors open");
    eventually(Duration::from_secs(10), &what, || async {
        open_fds(pid) >= limit
    })
    .await;
    // A new request is not served while every descriptor is in use,
    let quick = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .expect("client");
    let refused = quick.get(served.env.url("/health")).send().await;
    assert!(refused.is_err(), "served with no descriptor left?");
    // Connections it already holds keep working meanwhile.
    nip46_sign_answered(&load, 0, &made, user).await;
    assert!(served.alive(), "the server died when descriptors ran out");

    // and once they are released, it serves again.
    drop(idle);
    let health = served.env.url("/health");
    eventually(
        Duration::from_secs(15),
        "serving after the release",
        || async {
            let answer = quick.get(&health).send().await;
            answer.is_ok_and(|r| r.status() == 200)
        },
    )
    .await;
    assert_eq!(sign_on(&served, &made.token, "after").await.status, 200);
    let fresh = authorize(&served, &account, "after").await;
    assert_eq!(sign_on(&served, &fresh.token, "after").await.status, 200);
    await_readiness(&served, Duration::from_secs(10), "ready", |s, _| s == 200).await;
    nip46_sign_answered(&load, 0, &made, user).await;
    load.shutdown().await;
    assert!(served.alive());
    let (clean, logs) = served.stop_checked();
    assert!(clean, "SIGTERM must still exit 0: {logs}");
    eprintln!("descriptors limited to {limit}: survived, served again");
}

// --- 7. The disk fills up ----------------------------------------------------------------

/// A tmpfs of `mib` MiB mounted on `dir` (created) for the life of the guard. `None` (the
/// test prints that it was skipped) when `KEYCAST_TEST_TMPFS` is not `1`: scripts/test sets
/// it where this process may mount (root), and CI then requires it.
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(dir: &std::path::Path, mib: u32) -> Option<Self> {
        keycast_test_support::require_service("KEYCAST_TEST_TMPFS")?;
        std::fs::create_dir_all(dir).expect("mount point");
        let status = std::process::Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={mib}m,mode=0700"),
                "tmpfs",
            ])
            .arg(dir)
            .status()
            .expect("mount");
        assert!(status.success(), "mount -t tmpfs failed");
        Some(Self(dir.to_owned()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
        let _ = std::fs::remove_dir(&self.0);
    }
}

/// Writes `path` until the filesystem is full.
fn fill(path: &std::path::Path) {
    use std::io::Write;
    let mut f = std::fs::File::create(path).expect("filler");
    let block = vec![0u8; 64 * 1024];
    while f.write_all(&block).is_ok() {}
    let _ = f.sync_all();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_answers_503_and_loses_no_acknowledged_signature() {
    let env = Env::new();
    let Some(_disk) = Tmpfs::mount(&env.dir, 48) else {
        return;
    };
    let _one = SERIAL.lock().await;
    // Readiness fails below 4 MiB free (the default, 64, is more than this disk holds).
    let floor = ("KEYCAST_MIN_FREE_DISK_MIB", "4".to_owned());
    let mut served = Served::launch(env, &[], &[quiet(), floor]).await;
    let account = served.account("disk@example.com").await;
    let made = authorize(&served, &account, "disk").await;
    let mut acknowledged = vec![sign_on(&served, &made.token, "before").await];
    assert_eq!(acknowledged[0].status, 200);

    let filler = served.env.dir.join("filler");
    fill(&filler);
    // Signatures (each needs its audit record written) until one is refused: the SQLite
    // WAL may still have room for a few.
    let mut refused = None;
    for n in 0..2000 {
        let answer = sign_on(&served, &made.token, &format!("full {n}")).await;
        match answer.status {
            StatusCode::OK => acknowledged.push(answer),
            _ => {
                answer.assert_unavailable("a signature on a full disk");
                refused = Some(n);
                break;
            }
        }
    }
    let refused = refused.expect("the disk never filled up");
    // Every write fails now, and readiness says so (a load balancer stops sending).
    await_readiness(
        &served,
        Duration::from_secs(5),
        "not ready: disk",
        |s, body| {
            s == StatusCode::SERVICE_UNAVAILABLE
                && body["failing"]
                    .as_array()
                    .is_some_and(|f| f.iter().any(|c| c == "disk"))
        },
    )
    .await;
    let (status, body) = served
        .json(
            Method::POST,
            "/api/keys",
            Some(&account.session),
            Some(json!({"name": "on a full disk"})),
        )
        .await;
    assert!(
        status == StatusCode::CREATED || status == StatusCode::SERVICE_UNAVAILABLE,
        "creating a key on a full disk: {status} {body}"
    );
    assert!(served.alive(), "the server died when the disk filled up");

    std::fs::remove_file(&filler).expect("free the disk");
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let answer = sign_on(&served, &made.token, "after").await;
        if answer.status == StatusCode::OK {
            acknowledged.push(answer);
            break;
        }
        answer.assert_unavailable("a signature while the disk frees");
        assert!(
            Instant::now() < deadline,
            "not signing after the disk was freed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    await_readiness(&served, Duration::from_secs(10), "ready", |s, _| s == 200).await;
    let (clean, logs) = served.stop_checked();
    assert!(clean, "SIGTERM must still exit 0: {logs}");

    // Every signature it answered is in the audit log.
    let audited = signatures_audited(&sqlite_url(&served.env)).await;
    for a in &acknowledged {
        let id = a.signed_event_id();
        assert!(
            audited.contains_key(&id),
            "signature {id} was answered but not audited"
        );
    }
    eprintln!(
        "disk full: {} signatures answered and audited, refused with 503 after {refused}; \
         signing again once space was freed",
        acknowledged.len()
    );
}
