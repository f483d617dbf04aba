//! Bad and hostile input through a real relay: each gets an error reply or is dropped and
//! counted, never a panic, and the service keeps serving.

use crate::common;

use std::time::{Duration, Instant};

use async_wsocket::futures_util::{SinkExt, StreamExt};
use common::raw::RawClient;
use common::{add_authorization, setup_on, setup_with};
use keycast_core::nostr::nips::nip44;
use keycast_core::nostr::{
    Event, EventBuilder, JsonUtil, Keys, Kind, PublicKey, RelayUrl, Tag, TagKind, Timestamp,
};
use keycast_nip46::testing::LoadClient;
use keycast_nip46::testing::TestRelay;
use keycast_nip46::BunkerUri;
use keycast_test_support::eventually;
use nostr_relay_builder::prelude::{RateLimit, RelayBuilder};
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;

const WAIT: Duration = Duration::from_secs(5);

/// The floods saturate the machine's cores for a while: they run alone, the other tests
/// of this file side by side.
static FLOODS: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_requests_are_answered_or_dropped_and_service_keeps_serving() {
    let _alone = FLOODS.read().await;
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
    let _alone = FLOODS.read().await;
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
    let _alone = FLOODS.read().await;
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
    // Bound before the pings: an unbound client's requests meet the strict unbound limit.
    eventually(Duration::from_secs(10), "the connect answered", || async {
        s.bunker.stats().processed >= 1
    })
    .await;
    for batch in 0..3 {
        let c = RawClient::with_keys(&s.url, s.bunker_pubkey, keys.clone()).await;
        for i in 0..25 {
            let json = format!(r#"{{"id":"r{batch}-{i}","method":"ping","params":[]}}"#);
            c.send(&c.request(&json, Timestamp::now(), false)).await;
        }
    }
    // Every request processed and the refused replies counted (a reply is refused after its
    // request was processed).
    eventually(
        Duration::from_secs(10),
        "76 processed, 16 replies refused",
        || async {
            let stats = s.bunker.stats();
            stats.processed >= 76 && stats.replies_refused >= 16
        },
    )
    .await;
    let stats = s.bunker.stats();
    assert_eq!(stats.processed, 76, "{stats:?}");
    assert!(
        stats.replies_refused >= 16,
        "61st reply onwards refused: {stats:?}"
    );
    s.bunker.shutdown().await;
}

/// A relay without the test relay's 60 events a minute, for floods.
async fn flood_relay() -> TestRelay {
    TestRelay::start(RelayBuilder::default().rate_limit(RateLimit {
        max_reqs: 1_000,
        notes_per_minute: u32::MAX,
    }))
    .await
    .expect("relay")
}

/// `count` signed requests from `from` to `bunker`: one encrypted `connect` with a wrong
/// secret (what a stranger can send), each event made distinct by a tag. Signed on
/// blocking threads, as JSON.
async fn junk(from: &Keys, bunker: PublicKey, count: usize) -> Vec<String> {
    let from = from.clone();
    tokio::task::spawn_blocking(move || {
        let json = r#"{"id":"junk","method":"connect","params":["","wrong"]}"#;
        let content =
            nip44::encrypt(from.secret_key(), &bunker, json, nip44::Version::V2).expect("nip44");
        (0..count)
            .map(|i| {
                EventBuilder::new(Kind::NostrConnect, content.clone())
                    .tag(Tag::public_key(bunker))
                    .tag(Tag::custom(TagKind::custom("n"), [i.to_string()]))
                    .sign_with_keys(&from)
                    .expect("sign")
                    .as_json()
            })
            .collect()
    })
    .await
    .expect("signing")
}

/// Publishes `events` over one raw WebSocket as fast as the relay reads them; returns how
/// many the relay accepted (`OK true`).
async fn publish_raw(url: &RelayUrl, events: Vec<String>) -> usize {
    let (ws, _) = tokio_tungstenite::connect_async(url.as_str())
        .await
        .expect("flood connection");
    let (mut sink, mut stream) = ws.split();
    let total = events.len();
    let reader = tokio::spawn(async move {
        let (mut answered, mut accepted) = (0, 0);
        while answered < total {
            let Some(Ok(Message::Text(text))) = stream.next().await else {
                break;
            };
            let frame: Value = serde_json::from_str(&text).expect("frame");
            if frame[0] == "OK" {
                answered += 1;
                if frame[2] == true {
                    accepted += 1;
                }
            }
        }
        accepted
    });
    for event in events {
        let frame = format!(r#"["EVENT",{event}]"#);
        sink.send(Message::text(frame)).await.expect("send");
    }
    tokio::time::timeout(Duration::from_secs(120), reader)
        .await
        .expect("every event answered by the relay")
        .expect("reader")
}

fn sorted_latencies(tally: &keycast_nip46::testing::Tally) -> Vec<Duration> {
    let mut latencies: Vec<Duration> = tally
        .replies
        .values()
        .map(|r| {
            assert_eq!(r[0].error, None, "{r:?}");
            r[0].latency
        })
        .collect();
    latencies.sort();
    latencies
}

/// The upper bound of the queue-wait bucket holding the 99th percentile of the requests
/// queued between two snapshots (`u64::MAX` for the last, unbounded bucket).
fn queue_wait_p99(before: &keycast_nip46::BunkerStats, after: &keycast_nip46::BunkerStats) -> u64 {
    let counts: Vec<u64> = after
        .queue_wait_histogram
        .iter()
        .zip(before.queue_wait_histogram)
        .map(|(a, b)| a - b)
        .collect();
    let total: u64 = counts.iter().sum();
    let mut seen = 0;
    for (i, c) in counts.iter().enumerate() {
        seen += c;
        if seen * 100 >= total * 99 {
            return keycast_nip46::QUEUE_WAIT_BUCKETS_MICROS
                .get(i)
                .copied()
                .unwrap_or(u64::MAX);
        }
    }
    0
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Waits until `done(stats)` holds, for at most `within`.
async fn until_stats(
    bunker: &keycast_nip46::Bunker,
    within: Duration,
    what: &str,
    done: impl Fn(&keycast_nip46::BunkerStats) -> bool,
) -> keycast_nip46::BunkerStats {
    eventually(within, what, || async {
        let stats = bunker.stats();
        done(&stats).then_some(stats)
    })
    .await
}

/// Issue 18, item 5: one unbound client key floods a bunker. Its requests are dropped at
/// intake (before any decrypt or signature of ours), it gets at most the unbound
/// per-bunker budget of replies, and a bound client of another bunker, signing at a
/// steady rate throughout, loses nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unbound_flood_is_dropped_at_intake_while_a_bound_client_keeps_signing() {
    let _alone = FLOODS.write().await;
    const FLOOD: usize = 20_000;
    // Paces the bound client's signing during the flood (a load rate, not a wait).
    const SIGN_EVERY: Duration = Duration::from_millis(25);
    let relay = flood_relay().await;
    let url = relay.url();
    let s = setup_on(url.clone()).await;
    let unbound_bunker = s.bunker.stats();
    assert_eq!(unbound_bunker.limited(), 0);
    let other = add_authorization(&s).await;
    s.bunker.refresh_subscription().await.expect("refresh");
    let other_uri = BunkerUri::parse(&other.uri).expect("uri");

    let load = LoadClient::start(vec![url.clone()], 1)
        .await
        .expect("load client");
    load.connect(
        0,
        other_uri.signer,
        &other_uri.secret.expect("secret"),
        WAIT,
    )
    .await
    .expect("the bound client connects");

    // The same steady signing without a flood, for comparison.
    let mut calm = Vec::new();
    for n in 0..40 {
        calm.push(
            load.sign(0, other_uri.signer, &format!("calm {n}"))
                .await
                .expect("sent"),
        );
        tokio::time::sleep(SIGN_EVERY).await;
    }
    let tally = load
        .wait(&calm, Duration::from_secs(30), Duration::ZERO)
        .await;
    assert!(tally.exactly_once());
    let calm_latencies = sorted_latencies(&tally);
    let calm_count = calm.len() as u64;

    let flooder = Keys::generate();
    let mut listener = RawClient::with_keys(&url, s.bunker_pubkey, flooder.clone()).await;
    let events = junk(&flooder, s.bunker_pubkey, FLOOD).await;
    let before_flood = s.bunker.stats();
    let started = Instant::now();
    let flood = tokio::spawn({
        let url = url.clone();
        async move { publish_raw(&url, events).await }
    });
    let mut ids = Vec::new();
    let mut n = 0;
    while !flood.is_finished() || ids.len() < 40 {
        ids.push(
            load.sign(0, other_uri.signer, &format!("steady {n}"))
                .await
                .expect("sent"),
        );
        n += 1;
        tokio::time::sleep(SIGN_EVERY).await;
    }
    let delivered = flood.await.expect("flood");
    let flood_secs = started.elapsed().as_secs_f64();

    let tally = load
        .wait(&ids, Duration::from_secs(60), Duration::ZERO)
        .await;
    let latencies = sorted_latencies(&tally);
    let stats = s.bunker.stats();
    println!(
        "bound client without a flood: {} requests, p50 {:?}, p99 {:?}",
        calm_latencies.len(),
        percentile(&calm_latencies, 50.0),
        percentile(&calm_latencies, 99.0),
    );
    println!(
        "flood: {delivered} of {FLOOD} junk events accepted by the relay in {flood_secs:.1} s; \
         bound client meanwhile: {} requests, p50 {:?}, p99 {:?}, max {:?}; \
         bunker queue wait p99 (all requests during the flood) <= {} us",
        ids.len(),
        percentile(&latencies, 50.0),
        percentile(&latencies, 99.0),
        latencies.last().copied().unwrap_or_default(),
        queue_wait_p99(&before_flood, &stats),
    );
    println!("bunker: {stats:?}");
    assert!(
        tally.exactly_once(),
        "the bound client lost nothing: {} unanswered, {} duplicated",
        tally.unanswered.len(),
        tally.duplicated.len()
    );

    // Every junk event was dropped as it arrived (before the pool parsed or verified it)
    // or at intake, all but the unbound budget.
    let bound = ids.len() as u64 + calm_count + 1;
    let stats = until_stats(
        &s.bunker,
        Duration::from_secs(60),
        "the flood reaches the bunker",
        |st| st.requests + st.limited_on_arrival >= delivered as u64 + bound,
    )
    .await;
    assert!(
        stats.limited_on_arrival >= (FLOOD as u64) / 2,
        "most junk never reached the pool: {stats:?}"
    );
    let budget = 10 + (0.2 * started.elapsed().as_secs_f64()).ceil() as u64 + 1;
    let at_intake = stats.limited() - stats.limited_on_arrival;
    let admitted = stats.requests - bound - at_intake;
    assert!(
        admitted <= budget,
        "{admitted} junk requests admitted: {stats:?}"
    );
    assert!(stats.limited_unbound_bunker > 0, "{stats:?}");
    assert_eq!(stats.limited_client + stats.limited_bunker, 0, "{stats:?}");
    assert_eq!(stats.queue_dropped, 0, "nothing dropped for a full queue");
    // Each admitted junk request got its (error) reply; nothing more was sent.
    let stats = until_stats(&s.bunker, WAIT, "the admitted junk is answered", |st| {
        st.processed >= bound + admitted
    })
    .await;
    assert_eq!(stats.processed, bound + admitted, "{stats:?}");
    let mut replies = 0;
    while listener.reply(Duration::from_millis(500)).await.is_some() {
        replies += 1;
    }
    assert!(
        replies <= admitted as usize,
        "{replies} replies to the flooder, {admitted} admitted"
    );
    // A row of docs/RELIABILITY.md's attack table (scripts/reliability_report.py): the
    // whole test process (relay, bunker and clients), its peak RSS and its descriptors.
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let hwm_kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0);
    let fds = std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count());
    println!(
        "ABUSE\t{FLOOD} signed requests from one unbound client key to one bunker (relay, \
         bunker and clients in one test process)\tthe bound client of another bunker lost \
         none of {} requests (p50 {:?}; p99 {:?} without the flood); {} junk requests dropped \
         before any crypto ({} as they arrived, before the relay pool parsed or verified \
         them), {admitted} admitted, {replies} replies to the flooder\t{}\t{fds}\t{:.1}",
        ids.len(),
        percentile(&latencies, 50.0),
        percentile(&calm_latencies, 99.0),
        stats.limited(),
        stats.limited_on_arrival,
        hwm_kib / 1024,
        percentile(&latencies, 99.0).as_secs_f64() * 1000.0,
    );
    load.shutdown().await;
    s.bunker.shutdown().await;
}

/// Many client keys, one request each, on one bunker: no per-client limit triggers, the
/// bunker's unbound limit does; the bunker's bound client is still answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_unbound_keys_on_one_bunker_meet_its_limit_and_its_client_is_served() {
    let _alone = FLOODS.write().await;
    const KEYS: usize = 300;
    let relay = flood_relay().await;
    let url = relay.url();
    let s = setup_on(url.clone()).await;
    let mut c = RawClient::new(&url, s.bunker_pubkey).await;
    let connect = format!(
        r#"{{"id":"c1","method":"connect","params":["","{}"]}}"#,
        s.secret
    );
    c.send(&c.request(&connect, Timestamp::now(), false)).await;
    assert_eq!(c.reply(WAIT).await.expect("connect").0["result"], "ack");

    let bunker = s.bunker_pubkey;
    let events: Vec<String> = tokio::task::spawn_blocking(move || {
        (0..KEYS)
            .map(|_| {
                let from = Keys::generate();
                let json = r#"{"id":"x","method":"connect","params":["","wrong"]}"#;
                let content = nip44::encrypt(from.secret_key(), &bunker, json, nip44::Version::V2)
                    .expect("nip44");
                EventBuilder::new(Kind::NostrConnect, content)
                    .tag(Tag::public_key(bunker))
                    .sign_with_keys(&from)
                    .expect("sign")
                    .as_json()
            })
            .collect()
    })
    .await
    .expect("signing");
    let started = Instant::now();
    let delivered = publish_raw(&url, events).await as u64;
    c.send(&c.request(
        r#"{"id":"after","method":"get_public_key","params":[]}"#,
        Timestamp::now(),
        false,
    ))
    .await;
    let stats = until_stats(
        &s.bunker,
        Duration::from_secs(30),
        "the keys reach intake",
        |st| st.requests >= delivered + 2,
    )
    .await;
    let budget = 10 + (0.2 * started.elapsed().as_secs_f64()).ceil() as u64 + 1;
    assert_eq!(
        stats.limited_unbound_client, 0,
        "one request per key: {stats:?}"
    );
    assert!(
        stats.limited_unbound_bunker >= delivered - budget,
        "{stats:?}"
    );
    // The bound client's request is answered among the strangers' few error replies.
    loop {
        let (reply, _) = c.reply(WAIT).await.expect("the bound client is answered");
        if reply["id"] == "after" {
            assert_eq!(reply["result"], s.user.to_hex());
            break;
        }
    }
    s.bunker.shutdown().await;
}
