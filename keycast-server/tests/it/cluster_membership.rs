//! Cluster membership against a real Redis (`KEYCAST_TEST_REDIS_URL`): joins and leaves
//! reach every member at once, a silent member expires after its TTL, and cluster mode
//! refuses to start without Redis. Each test uses its own key prefix.

use crate::common;

use std::time::{Duration, Instant};

use common::redis::PrivateRedis;

use keycast_core::NodeId;
use keycast_server::cluster::membership::{Membership, MembershipConfig};

use keycast_test_support::{closed_port, eventually, require_service};

fn redis_url() -> Option<String> {
    require_service("KEYCAST_TEST_REDIS_URL")
}

fn config(url: &str, prefix: &str, node: &str, ttl: Duration) -> MembershipConfig {
    MembershipConfig {
        redis_url: url.to_owned(),
        prefix: prefix.to_owned(),
        node: NodeId(node.to_owned()),
        ttl,
    }
}

fn ids(m: &Membership) -> Vec<String> {
    m.ring().members().iter().map(|n| n.0.clone()).collect()
}

/// Waits up to `limit` for `m` to see exactly `want`; the time it took.
async fn sees(m: &Membership, want: &[&str], limit: Duration) -> Duration {
    let start = Instant::now();
    let what = format!("exactly {want:?} in the ring");
    eventually(limit, &what, || async { ids(m) == want }).await;
    start.elapsed()
}

/// Members "a" and "crashed" join with a TTL of 1 s, then "crashed" is dropped without
/// leaving (no announcement; its key simply stops being renewed). Returns "a" once it sees
/// itself alone (at most 3 s), and how long that took.
async fn one_crashes(url: &str, p: &str) -> (Membership, Duration) {
    let ttl = Duration::from_secs(1);
    let a = Membership::join(config(url, p, "a", ttl)).await.expect("a");
    let crashed = Membership::join(config(url, p, "crashed", ttl))
        .await
        .expect("crashed");
    sees(&a, &["a", "crashed"], Duration::from_secs(1)).await;
    drop(crashed);
    let took = sees(&a, &["a"], Duration::from_secs(3)).await;
    (a, took)
}

fn prefix() -> String {
    format!("keycast-test-{}", uuid::Uuid::new_v4().simple())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joins_and_leaves_reach_the_others_at_once() {
    let Some(url) = redis_url() else { return };
    let p = prefix();
    // A long TTL: only the announcements can explain a change within a second.
    let ttl = Duration::from_secs(30);
    let a = Membership::join(config(&url, &p, "a", ttl))
        .await
        .expect("a");
    assert_eq!(ids(&a), ["a"]);
    let b = Membership::join(config(&url, &p, "b", ttl))
        .await
        .expect("b");
    assert_eq!(ids(&b), ["a", "b"], "a joiner reads the members");
    sees(&a, &["a", "b"], Duration::from_secs(1)).await;
    assert_eq!(*a.ring().members(), *b.ring().members());

    b.leave().await.expect("leave");
    sees(&a, &["a"], Duration::from_secs(1)).await;
    a.leave().await.expect("leave");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_that_stops_heartbeating_expires_after_its_ttl() {
    let Some(url) = redis_url() else { return };
    let p = prefix();
    let (a, took) = one_crashes(&url, &p).await;
    assert!(
        took >= Duration::from_millis(300),
        "gone too early: {took:?}"
    );
    // The survivor's own heartbeat keeps it in the ring well past its TTL: the time passing
    // is what is tested.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(ids(&a), ["a"]);
    a.leave().await.expect("leave");
}

/// Claims fill a busy cluster's Redis (a key per NIP-46 request for the replay window):
/// reading the members must not walk them. Before the member index, each read `SCAN`ned
/// the whole keyspace; with this many keys a read overran its second, the view stayed
/// troubled and, troubled, never dropped the crashed member.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keyspace_full_of_claims_does_not_slow_reading_the_members() {
    let Some(redis) = PrivateRedis::start() else {
        return;
    };
    let url = redis.url();
    let p = prefix();
    let client = redis::Client::open(url.as_str()).expect("url");
    let mut raw = client
        .get_multiplexed_async_connection()
        .await
        .expect("connect");
    for chunk in 0..30 {
        let mut pipe = redis::pipe();
        for n in 0..10_000 {
            pipe.cmd("SET")
                .arg(format!("{p}:claim:{chunk}-{n}"))
                .arg("node")
                .arg("PX")
                .arg(120_000)
                .ignore();
        }
        let _: () = pipe.query_async(&mut raw).await.expect("fill");
    }
    let (a, _) = one_crashes(&url, &p).await;
    assert!(!a.view().troubled(), "reading the members overran");
    a.leave().await.expect("leave");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_redis_cluster_mode_does_not_start() {
    let port = closed_port();
    let url = format!("redis://:hunter2@127.0.0.1:{port}");
    let err = Membership::join(config(&url, &prefix(), "a", Duration::from_secs(10)))
        .await
        .expect_err("no Redis");
    let message = err.to_string();
    assert!(message.contains("Redis"), "{message}");
    assert!(message.contains(&format!("127.0.0.1:{port}")), "{message}");
    assert!(
        !message.contains("hunter2"),
        "the password leaked: {message}"
    );
    let err = Membership::join(config("not a url", &prefix(), "a", Duration::from_secs(10)))
        .await
        .expect_err("bad URL");
    assert!(err.to_string().contains("Redis URL"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_loss_keeps_the_ring_and_a_restart_is_repaired_without_dropping_members() {
    let Some(mut redis) = PrivateRedis::start() else {
        return;
    };
    let ttl = Duration::from_secs(2);
    let p = prefix();
    let a = Membership::join(config(&redis.url(), &p, "a", ttl))
        .await
        .expect("join a");
    let b = Membership::join(config(&redis.url(), &p, "b", ttl))
        .await
        .expect("join b");
    sees(&a, &["a", "b"], Duration::from_secs(2)).await;
    redis.down();
    eventually(ttl, "Redis loss noticed within a TTL", || async {
        a.view().troubled()
    })
    .await;
    assert_eq!(
        a.view().epoch(),
        None,
        "no take-overs while claims are unreliable"
    );
    // A whole TTL without Redis, in which the members' keys would have expired: the time
    // passing is what is tested.
    tokio::time::sleep(ttl).await;
    assert_eq!(ids(&a), ["a", "b"], "the last ring stays");
    // Back empty: both re-register by themselves, and neither ever dropped the other.
    redis.up();
    let start = Instant::now();
    while start.elapsed() < ttl * 2 {
        assert_eq!(ids(&a), ["a", "b"]);
        assert_eq!(ids(&b), ["a", "b"]);
        // Sampling the ring throughout a window, not waiting for anything.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Troubled for two TTLs after the last failure, then settled again.
    eventually(ttl * 3, "the ring settled", || async {
        a.view().epoch().is_some()
    })
    .await;
    a.leave().await.expect("leave");
    sees(&b, &["b"], Duration::from_secs(2)).await;
    b.leave().await.expect("leave");
}
