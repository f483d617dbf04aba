//! Change announcements over Redis pub/sub (`KEYCAST_TEST_REDIS_URL`): a position ahead of
//! this instance's cursor wakes its feed reader; positions it has, and garbage, do not.

use crate::common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use keycast_server::cluster::invalidation::{listen, Announcer};
use keycast_server::fence::FenceSignals;

async fn woken(signals: &FenceSignals, within: Duration) -> bool {
    tokio::time::timeout(within, signals.remote.notified())
        .await
        .is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_positions_ahead_of_the_cursor_wake_the_reader() {
    let Some(url) = common::cluster::redis_url() else {
        return;
    };
    let prefix = format!("keycast-test-{}", uuid::Uuid::new_v4().simple());
    let client = redis::Client::open(url.as_str()).expect("url");
    let redis = client.get_connection_manager().await.expect("connect");
    let signals = FenceSignals::default();
    signals.cursor.store(5, Ordering::Relaxed);
    let task = listen(client.clone(), &prefix, signals.clone());
    // Subscribing wakes it once: anything published before may have been missed.
    assert!(woken(&signals, Duration::from_secs(5)).await);
    let announcer = Announcer::new(redis.clone(), &prefix);
    announcer.announce(5).await;
    announcer.announce(3).await;
    let mut raw = redis.clone();
    let channel = format!("{prefix}:changes");
    let _: () = redis::AsyncCommands::publish(&mut raw, &channel, "not a number")
        .await
        .expect("publish");
    assert!(
        !woken(&signals, Duration::from_millis(300)).await,
        "woken by a position it has, or by garbage"
    );
    announcer.announce(9).await;
    assert!(
        woken(&signals, Duration::from_secs(2)).await,
        "not woken by a newer position"
    );
    task.abort();
}
