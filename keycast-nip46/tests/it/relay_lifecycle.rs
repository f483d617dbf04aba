//! Subscription updates and relay loss.

use crate::common;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::recorder::{until, Limits, Recorder};
use keycast_core::nostr::{Keys, NostrSigner, PublicKey, RelayUrl};
use keycast_nip46::testing::TestRelay;
use keycast_nip46::{BunkerConfig, BunkerUri, RelayConnection};
use keycast_test_support::eventually;
use nostr_connect::prelude::{NostrConnect, NostrConnectURI};
use nostr_relay_builder::prelude::{LocalRelay, RelayBuilder};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};

/// For a condition on a loaded 2-core machine.
const WAIT: Duration = Duration::from_secs(10);

fn client_with(uri: &str, keys: &Keys, timeout: Duration) -> NostrConnect {
    NostrConnect::new(
        NostrConnectURI::parse(uri).expect("uri"),
        keys.clone(),
        timeout,
        None,
    )
    .expect("client")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_service_survives_a_relay_restart_on_the_same_port() {
    // A relay on a fixed free port, so it can come back at the same address.
    let port = keycast_test_support::closed_port();
    let relay = LocalRelay::new(RelayBuilder::default().port(port));
    relay.run().await.expect("relay");
    let s = common::setup_on(relay.url().await).await;
    let app = Keys::generate();
    let signer = client_with(&s.uri, &app, Duration::from_secs(10));
    assert_eq!(signer.get_public_key().await.expect("before"), s.user);
    signer.shutdown().await;

    relay.shutdown();
    drop(relay);
    // Its listener closes in the background: started again once the port is free.
    let _again = eventually(
        Duration::from_secs(10),
        "the relay restarted on the same port",
        || async {
            let again = LocalRelay::new(RelayBuilder::default().port(port));
            again.run().await.ok().map(|()| again)
        },
    )
    .await;

    // Same client key: the reconnect is idempotent although the secret is spent.
    let pk = eventually(Duration::from_secs(45), "served again", || async {
        let signer = client_with(&s.uri, &app, Duration::from_secs(5));
        let answer = signer.get_public_key().await.ok();
        signer.shutdown().await;
        answer
    })
    .await;
    assert_eq!(pk, s.user);
    assert!(s.bunker.connected_relays().await >= 1);
    let states = s.bunker.relay_states().await;
    assert_eq!(
        states[0].connection,
        RelayConnection::Connected,
        "{states:?}"
    );
    assert!(
        states[0].reconnects >= 1,
        "reconnected by the supervisor: {states:?}"
    );
    s.bunker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_that_stops_answering_is_dropped_and_reconnected() {
    let relay = TestRelay::with_defaults().await.expect("relay");
    let target = relay.url();
    let proxy = FreezableProxy::start(&target).await;
    let s = common::setup_on_with(proxy.url.clone(), |mut c| {
        c.stall_probe_every = Duration::from_millis(500);
        c.stall_timeout = Duration::from_millis(500);
        c
    })
    .await;
    // Connected through the proxy, probes answered: four probe periods pass without a
    // stall (the time passing is what is tested).
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(s.bunker.relay_states().await[0].stalls, 0);

    // The socket stays open but nothing gets through: only a probe can tell.
    proxy.frozen.store(true, Ordering::SeqCst);
    eventually(Duration::from_secs(20), "a stall detected", || async {
        s.bunker.relay_states().await[0].stalls > 0
    })
    .await;
    proxy.frozen.store(false, Ordering::SeqCst);

    // Served again once reconnected; the client talks to the relay directly.
    let direct = BunkerUri {
        signer: s.bunker_pubkey,
        relays: vec![target.clone()],
        secret: Some(s.secret.clone()),
    }
    .to_uri()
    .expect("uri");
    let app = Keys::generate();
    let pk = eventually(Duration::from_secs(30), "served again", || async {
        let signer = client_with(&direct, &app, Duration::from_secs(3));
        let answer = signer.get_public_key().await.ok();
        signer.shutdown().await;
        answer
    })
    .await;
    assert_eq!(pk, s.user);
    let state = &s.bunker.relay_states().await[0];
    assert!(state.reconnects >= 1, "{state:?}");
    s.bunker.shutdown().await;
}

/// A TCP proxy that can stop forwarding while keeping both sockets open: a relay that
/// hangs without closing.
struct FreezableProxy {
    url: RelayUrl,
    frozen: Arc<AtomicBool>,
}

impl FreezableProxy {
    async fn start(target: &RelayUrl) -> Self {
        let upstream = target
            .as_str()
            .trim_start_matches("ws://")
            .trim_end_matches('/')
            .to_owned();
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let frozen = Arc::new(AtomicBool::new(false));
        let f = frozen.clone();
        tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                let Ok(outbound) = TcpStream::connect(&upstream).await else {
                    continue;
                };
                let (ri, wi) = inbound.into_split();
                let (ro, wo) = outbound.into_split();
                tokio::spawn(pump(ri, wo, f.clone()));
                tokio::spawn(pump(ro, wi, f.clone()));
            }
        });
        Self {
            url: RelayUrl::parse(&format!("ws://127.0.0.1:{port}")).expect("url"),
            frozen,
        }
    }
}

async fn pump(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, frozen: Arc<AtomicBool>) {
    let mut buf = vec![0u8; 16 * 1024];
    while let Ok(n) = from.read(&mut buf).await {
        if n == 0 {
            break;
        }
        while frozen.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_authorizations_are_served_after_a_refresh_and_revoked_ones_are_not() {
    let s = common::setup().await;
    let second = common::add_authorization(&s).await;
    s.bunker.refresh_subscription().await.expect("refresh");
    let app = Keys::generate();
    let signer = client_with(&second.uri, &app, Duration::from_secs(10));
    assert_eq!(
        signer.get_public_key().await.expect("new authorization"),
        s.user
    );
    signer.shutdown().await;

    s.custody
        .revoke_authorization(second.id)
        .await
        .expect("revoke");
    s.bunker.refresh_subscription().await.expect("refresh");
    let signer = client_with(&second.uri, &app, Duration::from_secs(3));
    assert!(
        signer.get_public_key().await.is_err(),
        "revoked authorizations are not served"
    );
    s.bunker.shutdown().await;
}

/// Stores `n` active authorizations with fresh bunker keys.
async fn many_authorizations(s: &common::Setup, n: usize) -> Vec<keycast_core::Authorization> {
    let mut made = Vec::with_capacity(n);
    for _ in 0..n {
        made.push(common::store_authorization(s).await);
    }
    made
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_authorizations_are_split_over_small_reqs_and_connections_and_a_change_sends_one_req()
{
    // At most 6 subscriptions a connection, like a small relay; the bunker puts 4 on one.
    let relay = Recorder::start_with(Limits {
        max_req_bytes: None,
        max_subs: Some(6),
    })
    .await;
    let s = common::setup_on_with(relay.url.clone(), |c| BunkerConfig {
        req_max_bytes: 4_096,
        subscriptions_per_connection: 4,
        ..c
    })
    .await;
    let others = many_authorizations(&s, 1_000).await;
    s.bunker.refresh_subscription().await.expect("refresh");
    let mut all: BTreeSet<PublicKey> = others.iter().map(|a| a.bunker_pubkey).collect();
    all.insert(s.bunker_pubkey);
    until(WAIT, "every bunker key subscribed", || {
        relay.live_keys() == all
    })
    .await;

    // 1,001 keys at 59 a REQ: 17 REQs, 4 a connection: 5 connections.
    let per_req = (4_096 - 96) / 67;
    let reqs = all.len().div_ceil(per_req);
    assert!(
        relay.req_sizes().iter().all(|&n| n <= 4_096),
        "{:?}",
        relay.req_sizes()
    );
    until(WAIT, "the subscriptions settle", || {
        relay.subscribed_connections() == reqs.div_ceil(4) && relay.most_subs_on_a_connection() <= 4
    })
    .await;
    let stats = s.bunker.stats();
    assert_eq!(stats.subscribed_authorizations, all.len(), "{stats:?}");
    assert_eq!(stats.open_reqs, reqs, "{stats:?}");
    assert_eq!(stats.extra_lanes, reqs.div_ceil(4) - 1, "{stats:?}");
    assert_eq!((stats.reqs_refused, relay.refused()), (0, 0), "{stats:?}");

    // A new authorization: one REQ, confirmed before `cover` returns, and a client that
    // connects at once is answered.
    let sent = relay.req_sizes().len();
    let bytes = s.bunker.stats().req_bytes;
    let extra = common::add_authorization(&s).await;
    assert!(s.bunker.cover(extra.id).await.expect("cover"), "confirmed");
    assert_eq!(relay.req_sizes().len(), sent + 1, "one REQ for one change");
    let fresh = BunkerUri::parse(&extra.uri).expect("uri").signer;
    assert!(relay.live_keys().contains(&fresh));
    assert!(s.bunker.stats().req_bytes - bytes <= 4_096);

    // A revocation: one REQ, and the key is no longer asked for.
    let gone = &others[500];
    s.custody
        .revoke_authorization(gone.id)
        .await
        .expect("revoke");
    s.bunker
        .authorizations_changed(&[gone.id])
        .await
        .expect("changed");
    until(WAIT, "the revoked key dropped", || {
        !relay.live_keys().contains(&gone.bunker_pubkey)
    })
    .await;
    assert_eq!(relay.req_sizes().len(), sent + 2, "one REQ for one change");
    assert_eq!(relay.live_keys().len(), all.len());
    s.bunker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_made_here_is_applied_without_reading_it_again() {
    let relay = Recorder::start().await;
    let s = common::setup_on(relay.url.clone()).await;
    let extra = common::add_authorization(&s).await;
    assert!(s.bunker.cover(extra.id).await.expect("cover"), "confirmed");
    let key = BunkerUri::parse(&extra.uri).expect("uri").signer;
    assert!(relay.live_keys().contains(&key));
    // Told it was revoked here (falsely: the store still holds it active), applying the
    // change lets its key go without asking the store.
    s.bunker.authorization_revoked(extra.id);
    s.bunker
        .authorizations_changed(&[extra.id])
        .await
        .expect("changed");
    until(WAIT, "the key let go", || !relay.live_keys().contains(&key)).await;
    // The note serves once: the next change reads the store, which holds it active.
    s.bunker
        .authorizations_changed(&[extra.id])
        .await
        .expect("changed");
    until(WAIT, "the key asked for again", || {
        relay.live_keys().contains(&key)
    })
    .await;
    s.bunker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_that_refuses_big_or_many_reqs_gets_smaller_ones_and_fewer_per_connection() {
    // Refuses REQs over 2,000 bytes with CLOSED, and a fifth subscription on one
    // connection with a NOTICE.
    let relay = Recorder::start_with(Limits {
        max_req_bytes: Some(2_000),
        max_subs: Some(4),
    })
    .await;
    let s = common::setup_on_with(relay.url.clone(), |c| BunkerConfig {
        req_max_bytes: 8_192,
        subscriptions_per_connection: 10,
        ..c
    })
    .await;
    let others = many_authorizations(&s, 400).await;
    s.bunker.refresh_subscription().await.expect("refresh");
    let mut all: BTreeSet<PublicKey> = others.iter().map(|a| a.bunker_pubkey).collect();
    all.insert(s.bunker_pubkey);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while relay.live_keys() != all || relay.most_subs_on_a_connection() > 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "not settled: {} of {} keys, at most {} subscriptions a connection, {} refused; {:?}",
            relay.live_keys().intersection(&all).count(),
            all.len(),
            relay.most_subs_on_a_connection(),
            relay.refused(),
            s.bunker.stats()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let stats = s.bunker.stats();
    assert!(relay.refused() > 0, "the relay refused some");
    assert!(stats.reqs_refused > 0, "{stats:?}");
    // 122 → 61 → 30 → 15 keys a REQ (the last fits 2,000 bytes), 10 → 5 → 2 a
    // connection (2, the stall probe and an update's moment of overlap fit 4): five
    // steps, each taken once.
    assert_eq!(stats.req_shrinks, 5, "{stats:?}");
    assert!(relay.req_sizes().iter().all(|&n| n <= 2_000));
    // No loop: every REQ sent belongs to one of the five layouts or the first.
    assert!(stats.reqs_sent < 6 * 28, "{stats:?}");
    s.bunker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_covered_authorization_is_answered_the_moment_it_is_handed_out() {
    let s = common::setup().await;
    // Several in a row: each replaces the shard's REQ with a new version.
    for round in 0..3 {
        let extra = common::add_authorization(&s).await;
        assert!(
            s.bunker.cover(extra.id).await.expect("cover"),
            "round {round}"
        );
        let app = Keys::generate();
        let signer = client_with(&extra.uri, &app, Duration::from_secs(10));
        assert_eq!(
            signer.get_public_key().await.expect("answered at once"),
            s.user,
            "round {round}"
        );
    }
    s.bunker.shutdown().await;
}
