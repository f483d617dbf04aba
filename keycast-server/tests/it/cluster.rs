//! Cluster mode end to end: three `keycast-server` processes on one Postgres, one Redis
//! and one relay, driven by raw NIP-46 clients that count replies per request id (a
//! library client would hide a duplicate). Needs `KEYCAST_TEST_POSTGRES_URL` and
//! `KEYCAST_TEST_REDIS_URL`; the Redis-restart test also `KEYCAST_TEST_REDIS_SERVER` (a
//! `redis-server` binary it runs privately). The tests run one at a time: each starts
//! three servers on a two-core machine.

use crate::common;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use common::cluster::{redis_url, Made, TestCluster, TTL};
use common::redis::PrivateRedis;
use keycast_core::nostr::PublicKey;
use keycast_nip46::testing::{signed_by, LoadClient, Tally};
use keycast_test_support::closed_port;
use reqwest::Method;
use serde_json::json;

const AUTHORIZATIONS: usize = 300;
const REQUESTS: usize = 1000;
const CLIENTS: usize = 4;

/// One cluster at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The clients, each bound to its share of the authorizations (authorization `i` to client
/// `i % CLIENTS`: connect secrets are single-use).
async fn connected_clients(cluster: &TestCluster, made: &[Made]) -> LoadClient {
    let load = LoadClient::start(vec![cluster.relay()], CLIENTS)
        .await
        .expect("clients");
    let mut pending = tokio::task::JoinSet::new();
    for (i, m) in made.iter().enumerate() {
        let load = load.clone();
        let (bunker, secret) = (m.bunker, m.secret.clone());
        pending.spawn(async move {
            load.connect(i % CLIENTS, bunker, &secret, Duration::from_secs(30))
                .await
        });
        if pending.len() >= 16 {
            let done = pending.join_next().await.expect("task").expect("join");
            if let Err(e) = done {
                panic!("connect: {e:?}; {}", diagnosis(cluster).await);
            }
        }
    }
    while let Some(done) = pending.join_next().await {
        if let Err(e) = done.expect("join") {
            panic!("connect: {e:?}; {}", diagnosis(cluster).await);
        }
    }
    load
}

/// Each instance's NIP-46 counters, for a failure message.
async fn diagnosis(cluster: &TestCluster) -> String {
    let mut out = String::new();
    for (i, node) in cluster.nodes.iter().flatten().enumerate() {
        out.push_str(&format!("instance {i}:"));
        for name in [
            "keycast_nip46_requests_total",
            "keycast_nip46_processed_total",
            "keycast_nip46_claims_lost_total",
            "keycast_nip46_unknown_bunker_total",
            "keycast_nip46_rejected_hashring_total",
            "keycast_nip46_subscribed_authorizations",
            "keycast_nip46_reqs_sent_total",
            "keycast_nip46_invalid_total",
        ] {
            let short = name.trim_start_matches("keycast_nip46_");
            out.push_str(&format!(" {short}={}", node.metric(name).await));
        }
        let text = node.metrics_text().await;
        for line in text
            .lines()
            .filter(|l| l.starts_with("keycast_nip46_limited_total"))
        {
            out.push_str(&format!(" {line}"));
        }
        out.push_str("; ");
    }
    out
}

/// A sent request: its id, when it left, and who must have signed.
struct Sent {
    id: String,
    at: Instant,
}

/// Sends `count` sign requests spread over `made` at about `per_second`; `during(k)` runs
/// before request `k` (to kill something halfway).
async fn send_paced(
    load: &LoadClient,
    made: &[Made],
    count: usize,
    per_second: u32,
    mut during: impl AsyncFnMut(usize),
) -> Vec<Sent> {
    let gap = Duration::from_secs(1) / per_second;
    let mut sent = Vec::with_capacity(count);
    let mut next = Instant::now();
    for k in 0..count {
        during(k).await;
        let i = k % made.len();
        let id = load
            .sign(i % CLIENTS, made[i].bunker, &format!("note {k}"))
            .await
            .expect("send");
        sent.push(Sent {
            id,
            at: Instant::now(),
        });
        next += gap;
        tokio::time::sleep_until(next.into()).await;
    }
    sent
}

fn ids(sent: &[Sent]) -> Vec<String> {
    sent.iter().map(|s| s.id.clone()).collect()
}

/// Three instances, 300 authorizations, and clients connected to all but the first
/// `spare` of them.
struct Loaded {
    cluster: TestCluster,
    account: common::server::Account,
    made: Vec<Made>,
    load: LoadClient,
}

async fn three_loaded(redis: &str, spare: usize) -> Option<Loaded> {
    let cluster = TestCluster::start(3, redis, &[]).await?;
    let (account, made) = cluster.authorizations(AUTHORIZATIONS).await;
    let load = connected_clients(&cluster, &made[spare..]).await;
    Some(Loaded {
        cluster,
        account,
        made,
        load,
    })
}

/// No request answered twice, every answer a valid event signed by the account's key,
/// and, when `all`, every request answered.
fn check(tally: &Tally, account: &common::server::Account, all: bool) {
    assert!(
        tally.duplicated.is_empty(),
        "answered twice: {:?}",
        tally.duplicated
    );
    if all {
        assert!(
            tally.unanswered.is_empty(),
            "{} unanswered",
            tally.unanswered.len()
        );
    }
    let user = PublicKey::from_hex(&account.pubkey).expect("pubkey");
    for (id, replies) in &tally.replies {
        for r in replies {
            assert_eq!(r.error, None, "request {id} got an error");
            assert_eq!(
                signed_by(r),
                Some(user),
                "request {id}: not a valid event by the user"
            );
        }
    }
}

/// A counter summed over the running instances.
async fn total(cluster: &TestCluster, name: &str) -> u64 {
    let mut sum = 0;
    for node in cluster.nodes.iter().flatten() {
        sum += node.metric(name).await;
    }
    sum
}

/// Requests an instance received to handle, and kept unparsed as a standby.
async fn intake(node: &common::server::Served) -> (u64, u64) {
    (
        node.metric("keycast_nip46_requests_total").await,
        node.metric("keycast_nip46_standby_kept_total").await,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_answer_every_request_exactly_once() {
    let Some(redis) = redis_url() else { return };
    let _one = SERIAL.lock().await;
    let Some(Loaded {
        cluster,
        account,
        made,
        load,
    }) = three_loaded(&redis, 0).await
    else {
        return;
    };
    // Each instance listens for its share of the bunkers (owner or standby: about two
    // thirds), once instance 0 stops hearing the ones it made.
    cluster.wait_shares(AUTHORIZATIONS).await;
    let mut heard = Vec::new();
    for node in cluster.nodes.iter().flatten() {
        heard.push(intake(node).await);
    }
    let sent = send_paced(&load, &made, REQUESTS, 200, async |_| {}).await;
    let tally = load
        .wait(&ids(&sent), Duration::from_secs(60), Duration::from_secs(2))
        .await;
    check(&tally, &account, true);
    // Each instance received its share of the stream, not all of it: as owner about a
    // third, handled; as standby about another third, kept unparsed.
    for (node, (owned_before, kept_before)) in cluster.nodes.iter().flatten().zip(heard) {
        let (owned, kept) = intake(node).await;
        let share = |n: u64| n as f64 / REQUESTS as f64;
        let (owned, kept) = (share(owned - owned_before), share(kept - kept_before));
        assert!(
            (0.15..=0.55).contains(&owned) && (0.4..=0.85).contains(&(owned + kept)),
            "an instance received {owned:.2} of the requests and kept {kept:.2} for standby"
        );
    }
    // The ring spread the 300 bunkers: every instance answered part of the load.
    for node in cluster.nodes.iter().flatten() {
        let n = node.metric("keycast_nip46_processed_total").await;
        assert!(n > 0, "an instance answered nothing");
    }
    // Connects and signs; each counted once, by one instance.
    let processed = total(&cluster, "keycast_nip46_processed_total").await;
    assert_eq!(processed, (AUTHORIZATIONS + REQUESTS) as u64);
    load.shutdown().await;
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_instance_share_moves_within_the_ttl_and_nothing_is_answered_twice() {
    let Some(redis) = redis_url() else { return };
    let _one = SERIAL.lock().await;
    let Some(Loaded {
        mut cluster,
        account,
        made,
        load,
    }) = three_loaded(&redis, 0).await
    else {
        return;
    };
    let mut killed_at = None;
    let nodes = &mut cluster.nodes;
    let sent = send_paced(&load, &made, REQUESTS, 100, async |k| {
        if k == REQUESTS / 2 {
            let mut victim = nodes[2].take().expect("running");
            victim.kill();
            killed_at = Some(Instant::now());
        }
    })
    .await;
    let killed_at = killed_at.expect("killed");
    let tally = load
        .wait(&ids(&sent), Duration::from_secs(60), Duration::from_secs(3))
        .await;
    check(&tally, &account, false);
    // Its key expires within one TTL of its last heartbeat; survivors re-read every TTL/4.
    let takeover = killed_at + TTL + TTL / 4 + Duration::from_millis(500);
    let unanswered: HashSet<&String> = tally.unanswered.iter().collect();
    let late = sent
        .iter()
        .filter(|s| s.at > takeover && unanswered.contains(&s.id))
        .count();
    assert_eq!(late, 0, "requests sent after the takeover went unanswered");
    cluster.wait_members(2).await;
    // Requests the survivors left to the dead instance were kept and taken over.
    let rerouted = total(&cluster, "keycast_nip46_rerouted_total").await;
    assert!(rerouted > 0, "nothing was taken over after the kill");
    eprintln!(
        "killed one of three: {} of {} requests unanswered, {rerouted} taken over",
        tally.unanswered.len(),
        sent.len()
    );
    load.shutdown().await;
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_instance_hands_over_with_no_gap() {
    let Some(redis) = redis_url() else { return };
    let _one = SERIAL.lock().await;
    let Some(Loaded {
        mut cluster,
        account,
        made,
        load,
    }) = three_loaded(&redis, 0).await
    else {
        return;
    };
    let mut stopping = None;
    let nodes = &mut cluster.nodes;
    let sent = send_paced(&load, &made, REQUESTS, 100, async |k| {
        if k == REQUESTS / 2 {
            let mut victim = nodes[2].take().expect("running");
            stopping = Some(tokio::task::spawn_blocking(move || victim.stop_checked()));
        }
    })
    .await;
    let (clean, logs) = stopping.expect("stopped").await.expect("join");
    assert!(clean, "SIGTERM must exit 0: {logs}");
    let left = logs.find("left the cluster").expect("deregistered");
    let drained = logs.find("draining HTTP").expect("drained");
    assert!(left < drained, "deregistered before draining");
    // Deregistration moved its share at once, and it answered its old share meanwhile:
    // every request is answered, once.
    let tally = load
        .wait(&ids(&sent), Duration::from_secs(60), Duration::from_secs(3))
        .await;
    check(&tally, &account, true);
    cluster.wait_members(2).await;
    // The announcement moved the share at once: at most the few requests that arrived in
    // the milliseconds before it was heard were left to the stopping instance and taken
    // over (a killed one leaves its share unanswered for up to 1.25 TTL, ~80 here).
    let rerouted = total(&cluster, "keycast_nip46_rerouted_total").await;
    assert!(rerouted < 10, "{rerouted} requests waited for a takeover");
    load.shutdown().await;
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_mode_does_not_start_without_redis() {
    let Some(pg) = keycast_storage::testing::postgres_url() else {
        return;
    };
    let env = common::Env::new();
    // Nothing listens there.
    let redis = format!("redis://:hunter2@127.0.0.1:{}", closed_port());
    let out = env
        .command(&[])
        .env("KEYCAST_REDIS_URL", &redis)
        .env("KEYCAST_DATABASE_URL", &pg)
        .env("KEYCAST_RELAYS", "ws://127.0.0.1:9")
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("Redis"), "{stderr}");
    assert!(!stderr.contains("hunter2"), "the password leaked: {stderr}");
    // A bad cluster setting is refused before anything starts.
    let out = env
        .command(&[])
        .env("KEYCAST_REDIS_URL", "redis://127.0.0.1:6379")
        .env("KEYCAST_DATABASE_URL", &pg)
        .env("KEYCAST_RELAYS", "ws://127.0.0.1:9")
        .env("KEYCAST_NODE_ID", "a/b")
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("KEYCAST_NODE_ID"), "{stderr}");
}

/// HTTP RPC `sign_event` through `token` on one instance: the status.
async fn rpc_sign(node: &common::server::Served, token: &str) -> reqwest::StatusCode {
    let template = json!({"kind": 1, "content": "hi", "tags": [], "created_at": 1_700_000_000});
    node.json(
        Method::POST,
        "/api/nostr",
        Some(token),
        Some(json!({"method": "sign_event", "params": [template.to_string()]})),
    )
    .await
    .0
}

/// Revokes `m` through instance 0 and returns how long until every instance refused it.
async fn revoke_and_time(cluster: &TestCluster, session: &str, m: &Made) -> Duration {
    for node in cluster.nodes.iter().flatten() {
        assert_eq!(
            rpc_sign(node, &m.token).await,
            200,
            "allowed before the revocation"
        );
    }
    let (status, body) = cluster
        .node(0)
        .json(
            Method::DELETE,
            &format!("/api/authorizations/{}", m.id),
            Some(session),
            None,
        )
        .await;
    assert!(status.is_success(), "{status}: {body}");
    let start = Instant::now();
    for node in cluster.nodes.iter().flatten() {
        loop {
            let status = rpc_sign(node, &m.token).await;
            if status != 200 {
                assert!(status.is_client_error(), "refused with {status}");
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(5),
                "still signing 5 s after the revocation"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    start.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocations_and_login_lockouts_are_cluster_wide() {
    let Some(redis) = redis_url() else { return };
    let _one = SERIAL.lock().await;
    // A 10 s feed poll: only the announcement can explain a refusal within a second.
    let slow_poll = [("KEYCAST_CHANGE_POLL_MS", "10000".to_owned())];
    let Some(cluster) = TestCluster::start(3, &redis, &slow_poll).await else {
        return;
    };
    let (account, made) = cluster.authorizations(2).await;
    let took = revoke_and_time(&cluster, &account.session, &made[0]).await;
    assert!(took < Duration::from_secs(1), "took {took:?}");

    // Failures spread over the instances count once for the cluster: after
    // KEYCAST_LOGIN_FREE_FAILURES (5) from this address, the next attempt from it must
    // wait on every instance, even with the right password (one instance alone has seen
    // at most 2, and would let it in).
    let wrong = json!({"email": account.email, "password": "not the password"});
    for attempt in 0..5 {
        let node = cluster.node(attempt % 3);
        let (status, body) = node
            .json(Method::POST, "/api/auth/login", None, Some(wrong.clone()))
            .await;
        assert_eq!(status, 401, "attempt {attempt}: {body}");
    }
    let right = json!({"email": account.email, "password": common::server::PASSWORD});
    for node in cluster.nodes.iter().flatten() {
        let (status, body) = node
            .json(Method::POST, "/api/auth/login", None, Some(right.clone()))
            .await;
        assert_eq!(status, 429, "{body}");
    }
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restarted_mid_run_recovers_without_restarting_instances() {
    let Some(_) = redis_url() else { return };
    let Some(mut redis) = PrivateRedis::start() else {
        return;
    };
    let _one = SERIAL.lock().await;
    // The first authorization is kept for HTTP RPC.
    let Some(Loaded {
        cluster,
        account,
        made,
        load,
    }) = three_loaded(&redis.url(), 1).await
    else {
        return;
    };
    let targets = &made[1..];
    let mut restarted_at = None;
    let third = REQUESTS / 3;
    let sent = send_paced(&load, targets, REQUESTS, 100, async |k| {
        if k == third {
            redis.down();
        }
        if k == 2 * third {
            redis.up();
            restarted_at = Some(Instant::now());
        }
    })
    .await;
    let tally = load
        .wait(&ids(&sent), Duration::from_secs(60), Duration::from_secs(3))
        .await;
    // Redis was down for requests third..2 * third: all answered, once.
    check(&tally, &account, true);
    // Every instance re-registered by itself and serves on.
    cluster.wait_members(3).await;
    assert!(restarted_at.is_some());
    // With Redis down, no announcement can travel: the feed poll still refuses a revoked
    // authorization everywhere within a second.
    redis.down();
    let took = revoke_and_time(&cluster, &account.session, &made[0]).await;
    assert!(took < Duration::from_secs(1), "took {took:?} without Redis");
    // Readiness reports the trouble (within a heartbeat period) and stays 200.
    let deadline = Instant::now() + TTL;
    for node in cluster.nodes.iter().flatten() {
        loop {
            let (status, ready) = node.json(Method::GET, "/healthz/ready", None, None).await;
            assert_eq!(
                status, 200,
                "Redis trouble alone keeps an instance ready: {ready}"
            );
            if ready["cluster"]["redis_trouble"] == true {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "Redis trouble not reported: {ready}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    load.shutdown().await;
    cluster.stop().await;
}
