//! Bad and hostile input through a real relay: each gets an error reply or is dropped and
//! counted, never a panic, and the service keeps serving.

mod common;

use std::time::Duration;

use common::raw::RawClient;
use common::setup_with;
use keycast_core::nostr::{Event, Keys, Timestamp};

const WAIT: Duration = Duration::from_secs(5);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_requests_are_answered_or_dropped_and_service_keeps_serving() {
    let s = setup_with(|c| c).await;
    let mut c = RawClient::new(&s.url, s.bunker_pubkey).await;
    let now = Timestamp::now;

    // Connect over NIP-04: the reply comes back in NIP-04.
    let connect = format!(
        r#"{{"id":"c1","method":"connect","params":["{}","{}"]}}"#,
        s.bunker_pubkey.to_hex(),
        s.secret
    );
    c.send(&c.request(&connect, now(), true)).await;
    let (reply, legacy) = c.reply(WAIT).await.expect("connect reply");
    assert_eq!(reply["id"], "c1");
    assert_eq!(reply["result"], "ack");
    assert!(legacy, "a NIP-04 request gets a NIP-04 reply");

    // Unknown method and wrong param types: error replies with the same id.
    c.send(&c.request(
        r#"{"id":"u1","method":"teleport","params":[]}"#,
        now(),
        false,
    ))
    .await;
    let (reply, _) = c.reply(WAIT).await.expect("unknown method reply");
    assert_eq!(reply["id"], "u1");
    assert!(
        reply["error"].as_str().is_some_and(|e| !e.is_empty()) && reply.get("result").is_none()
    );
    c.send(&c.request(
        r#"{"id":"t1","method":"sign_event","params":[5]}"#,
        now(),
        false,
    ))
    .await;
    let (reply, _) = c.reply(WAIT).await.expect("bad params reply");
    assert_eq!(reply["id"], "t1");
    assert!(reply["error"].is_string());

    // Oversized content inside a valid template (NIP-04, since NIP-44 caps messages at
    // 64 KiB): a typed refusal, not a crash.
    let big =
        serde_json::json!({"kind": 1, "content": "ü".repeat(140_000), "tags": []}).to_string();
    let req = serde_json::json!({"id": "b1", "method": "sign_event", "params": [big]}).to_string();
    c.send(&c.request(&req, now(), true)).await;
    let (reply, _) = c.reply(WAIT).await.expect("oversized reply");
    assert_eq!(reply["id"], "b1");
    assert!(reply["error"].is_string(), "{reply}");

    // Not JSON (no id to answer), a replayed old request (the subscription's `since` or
    // the window drops it) and one dated far in the future (the window drops it): no
    // replies, and the window's refusals are counted.
    let before = s.bunker.stats();
    c.send(&c.request("not json", now(), false)).await;
    let old = Timestamp::from(now().as_secs() - 3_600);
    c.send(&c.request(r#"{"id":"old","method":"ping","params":[]}"#, old, false))
        .await;
    let future = Timestamp::from(now().as_secs() + 3_600);
    c.send(&c.request(r#"{"id":"new","method":"ping","params":[]}"#, future, false))
        .await;
    assert!(
        c.reply(Duration::from_millis(700)).await.is_none(),
        "no reply to garbage or replays"
    );
    let after = s.bunker.stats();
    assert_eq!(after.invalid, before.invalid + 1, "{after:?}");
    assert!(after.replayed > before.replayed, "{after:?}");
    assert_eq!(after.processed, before.processed, "{after:?}");

    // The same request event twice (as from two relays): answered once.
    let ping = c.request(r#"{"id":"p1","method":"ping","params":[]}"#, now(), false);
    c.send(&ping).await;
    c.send(&ping).await;
    let (reply, _) = c.reply(WAIT).await.expect("ping reply");
    assert_eq!(reply["result"], "pong");
    assert!(
        c.reply(Duration::from_millis(700)).await.is_none(),
        "a duplicate is not answered twice"
    );

    // Still serving.
    c.send(&c.request(
        r#"{"id":"g1","method":"get_public_key","params":[]}"#,
        now(),
        false,
    ))
    .await;
    let (reply, _) = c.reply(WAIT).await.expect("still serving");
    assert_eq!(reply["result"], s.user.to_hex());
    assert_eq!(s.bunker.stats().panics, 0);
    s.bunker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_answers_overloaded_and_counts_the_drop() {
    let s = setup_with(|mut c| {
        c.workers = 1;
        c.queue_capacity = 1;
        c
    })
    .await;
    let mut c = RawClient::new(&s.url, s.bunker_pubkey).await;
    let connect = format!(
        r#"{{"id":"c1","method":"connect","params":["","{}"]}}"#,
        s.secret
    );
    c.send(&c.request(&connect, Timestamp::now(), false)).await;
    assert_eq!(c.reply(WAIT).await.expect("connect").0["result"], "ack");

    // A burst larger than one worker and one queue slot.
    let burst: Vec<Event> = (0..40)
        .map(|i| {
            c.request(
                &format!(r#"{{"id":"q{i}","method":"ping","params":[]}}"#),
                Timestamp::now(),
                false,
            )
        })
        .collect();
    for e in &burst {
        c.client.send_event(e).await.expect("send");
    }
    let mut answered = std::collections::HashSet::new();
    let mut overloaded = 0;
    while let Some((reply, _)) = c.reply(Duration::from_secs(3)).await {
        let id = reply["id"].as_str().expect("id").to_owned();
        assert!(answered.insert(id.clone()), "duplicate reply for {id}");
        if reply["error"]
            .as_str()
            .is_some_and(|e| e.contains("overloaded"))
        {
            overloaded += 1;
        } else {
            assert_eq!(reply["result"], "pong");
        }
        if answered.len() == burst.len() {
            break;
        }
    }
    let stats = s.bunker.stats();
    assert_eq!(
        answered.len(),
        burst.len(),
        "every request got exactly one reply: {stats:?}"
    );
    assert_eq!(stats.queue_dropped, overloaded, "{stats:?}");
    s.bunker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_a_relay_refuses_are_counted() {
    // The test relay allows 60 events a minute per connection: the bunker's 61st reply
    // within the minute is refused. Requests come from several connections (same key) so
    // that only the bunker's connection hits the limit.
    let s = setup_with(|c| c).await;
    let keys = Keys::generate();
    let first = RawClient::with_keys(&s.url, s.bunker_pubkey, keys.clone()).await;
    let connect = format!(
        r#"{{"id":"c1","method":"connect","params":["","{}"]}}"#,
        s.secret
    );
    first
        .send(&first.request(&connect, Timestamp::now(), false))
        .await;
    for batch in 0..3 {
        let c = RawClient::with_keys(&s.url, s.bunker_pubkey, keys.clone()).await;
        for i in 0..25 {
            let json = format!(r#"{{"id":"r{batch}-{i}","method":"ping","params":[]}}"#);
            c.send(&c.request(&json, Timestamp::now(), false)).await;
        }
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while s.bunker.stats().processed < 76 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let stats = s.bunker.stats();
    assert_eq!(stats.processed, 76, "{stats:?}");
    assert!(
        stats.replies_refused >= 16,
        "61st reply onwards refused: {stats:?}"
    );
    s.bunker.shutdown().await;
}
