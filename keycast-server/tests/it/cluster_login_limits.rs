//! Login counters shared through Redis (`KEYCAST_TEST_REDIS_URL`): failures of an e-mail
//! from an address are seen by every instance and cleared by a success there, which also
//! makes the address known to the account; an account's failures from every address add
//! up in its window; rate-limit windows are counted once for the cluster; an unreachable
//! Redis counts nothing (the instance's own limits then decide).

use crate::common;

use std::time::Duration;

use keycast_server::cluster::login_limits::{now_ms, window_index, SharedLoginLimits};

const KEEP: Duration = Duration::from_secs(60);
const WINDOW: Duration = Duration::from_secs(900);

fn prefix() -> String {
    format!("keycast-test-{}", uuid::Uuid::new_v4().simple())
}

/// One instance's counters: its own connection, the cluster's prefix.
async fn limits(url: &str, prefix: &str) -> SharedLoginLimits {
    let redis = redis::Client::open(url)
        .expect("url")
        .get_connection_manager()
        .await
        .expect("connect");
    SharedLoginLimits::new(redis, prefix)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_per_email_and_address_are_seen_everywhere_until_a_success() {
    let Some(url) = common::cluster::redis_url() else {
        return;
    };
    let p = prefix();
    let (one, two) = (limits(&url, &p).await, limits(&url, &p).await);
    let (ann, attacker, home) = ("t/ann@example.com", "198.51.100.1", "192.0.2.1");
    let before = now_ms();
    for _ in 0..3 {
        one.failed(ann, attacker, now_ms(), KEEP, WINDOW).await;
    }
    let seen = two.view(ann, attacker, WINDOW).await.expect("view");
    assert_eq!(seen.failures, 3, "in a row, seen by the other instance");
    assert!(seen.last_failure_ms >= before);
    assert_eq!(seen.account_failures, 3);
    assert!(!seen.known);
    let elsewhere = two.view(ann, home, WINDOW).await.expect("view");
    assert_eq!(elsewhere.failures, 0, "per address");
    assert_eq!(
        elsewhere.account_failures, 3,
        "the account's, from everywhere"
    );
    let bob = two
        .view("t/bob@example.com", attacker, WINDOW)
        .await
        .expect("view");
    assert_eq!((bob.failures, bob.account_failures), (0, 0), "per e-mail");
    let other_cluster = limits(&url, &prefix()).await;
    let theirs = other_cluster
        .view(ann, attacker, WINDOW)
        .await
        .expect("view");
    assert_eq!(theirs.failures, 0, "per cluster");

    one.failed(ann, home, now_ms(), KEEP, WINDOW).await;
    two.succeeded(ann, home, Duration::from_secs(3600)).await;
    let at_home = one.view(ann, home, WINDOW).await.expect("view");
    assert_eq!(
        at_home.failures, 0,
        "a success clears that address's failures"
    );
    assert!(at_home.known, "and makes the address known to the account");
    assert_eq!(
        at_home.account_failures, 4,
        "the account's window keeps counting"
    );
    let still = one.view(ann, attacker, WINDOW).await.expect("view");
    assert_eq!(still.failures, 3, "not the attacker's");
    assert!(!still.known);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_windows_are_counted_once_for_everyone_sharing_the_prefix() {
    let Some(url) = common::cluster::redis_url() else {
        return;
    };
    let p = prefix();
    let (one, two) = (limits(&url, &p).await, limits(&url, &p).await);
    let hour = Duration::from_secs(3600);
    let window = window_index(now_ms(), hour);
    let mut last = 0;
    for i in 0..8 {
        let instance = if i % 2 == 0 { &one } else { &two };
        last = instance
            .count("login", "192.0.2.7", hour)
            .await
            .expect("count");
    }
    // An hour boundary falling in between starts a new window; only then may it differ.
    if window_index(now_ms(), hour) == window {
        assert_eq!(last, 8, "counted once for both instances");
    }
    let other = one.count("login", "192.0.2.8", hour).await.expect("count");
    assert_eq!(other, 1, "per key");
    let other_limit = one
        .count("register", "192.0.2.7", hour)
        .await
        .expect("count");
    assert_eq!(other_limit, 1, "per limit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_redis_nothing_is_counted_and_calls_return() {
    let Some(mut private) = common::redis::PrivateRedis::start() else {
        return;
    };
    let one = limits(&private.url(), &prefix()).await;
    one.failed("t/dan@example.com", "192.0.2.1", now_ms(), KEEP, WINDOW)
        .await;
    let seen = one.view("t/dan@example.com", "192.0.2.1", WINDOW).await;
    assert_eq!(seen.map(|s| s.failures), Some(1));
    private.down();
    let started = std::time::Instant::now();
    assert_eq!(
        one.view("t/dan@example.com", "192.0.2.1", WINDOW).await,
        None
    );
    assert_eq!(one.count("login", "192.0.2.1", WINDOW).await, None);
    one.failed("t/dan@example.com", "192.0.2.1", now_ms(), KEEP, WINDOW)
        .await;
    println!("three calls with Redis down took {:?}", started.elapsed());
}
