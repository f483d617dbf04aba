//! Login counters shared through Redis (`KEYCAST_TEST_REDIS_URL`): failures lock an e-mail
//! for every instance, a success clears them, attempts per minute are counted once for the
//! cluster, and an unreachable Redis admits (the instance's own limits then decide).

mod common;

use std::time::Duration;

use keycast_server::cluster::login_limits::SharedLoginLimits;

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
async fn failures_lock_an_email_until_a_success_clears_them() {
    let Some(url) = common::cluster::redis_url() else {
        return;
    };
    let p = prefix();
    let (one, two) = (limits(&url, &p).await, limits(&url, &p).await);
    let email = "ann@example.com";
    for _ in 0..3 {
        assert!(one.admit(email, 1000, 3).await);
        one.failed(email, Duration::from_secs(60)).await;
    }
    assert!(
        !two.admit(email, 1000, 3).await,
        "locked everywhere after 3 failures"
    );
    assert!(two.admit("bob@example.com", 1000, 3).await, "per e-mail");
    let other_cluster = limits(&url, &prefix()).await;
    assert!(other_cluster.admit(email, 1000, 3).await, "per cluster");
    two.succeeded(email).await;
    assert!(
        one.admit(email, 1000, 3).await,
        "a success clears the failures"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attempts_per_minute_are_counted_once_for_everyone_sharing_the_prefix() {
    let Some(url) = common::cluster::redis_url() else {
        return;
    };
    let p = prefix();
    let (one, two) = (limits(&url, &p).await, limits(&url, &p).await);
    let email = "carol@example.com";
    let mut admitted = 0;
    for i in 0..8 {
        let instance = if i % 2 == 0 { &one } else { &two };
        admitted += usize::from(instance.admit(email, 5, 1000).await);
    }
    // A minute boundary may fall in between and start a new window: 5 or a few more.
    assert!((5..8).contains(&admitted), "{admitted} of 8 admitted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_redis_the_shared_limits_admit() {
    let Some(mut private) = common::redis::PrivateRedis::start() else {
        return;
    };
    let one = limits(&private.url(), &prefix()).await;
    one.failed("dan@example.com", Duration::from_secs(60)).await;
    assert!(!one.admit("dan@example.com", 1000, 1).await);
    private.down();
    assert!(
        one.admit("dan@example.com", 1000, 1).await,
        "Redis down: admit"
    );
}
