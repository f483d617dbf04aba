//! NIP-46 round trips through an in-process relay: keycast's `Bunker` against rust-nostr's
//! own `NostrConnectRemoteSigner` 0.44 (the peer), same relay, same run, same client
//! library (rust-nostr `NostrConnect`). The peer only answers NIP-44 requests, so both
//! are measured on `nip44_encrypt`; keycast also on `sign_event`.
//!
//! `cargo bench -p keycast-benches --bench nip46` prints a markdown table.
//!
//! Under `cargo test` (no `--bench`) it runs a handful of requests as a smoke test.

use std::sync::Arc;
use std::time::{Duration, Instant};

use keycast_core::nostr::{EventBuilder, Keys, NostrSigner, PublicKey, RelayUrl};
use keycast_core::*;
use keycast_nip46::SingleUserBunker;
use nostr_connect::prelude::{
    NostrConnect, NostrConnectKeys, NostrConnectRemoteSigner, NostrConnectRequest,
    NostrConnectSignerActions, NostrConnectURI,
};
use nostr_relay_builder::prelude::{LocalRelay, RateLimit, RelayBuilder};

#[derive(Debug, Clone, Copy)]
enum Op {
    Nip44Encrypt,
    SignEvent,
}

struct ApproveAll;
impl NostrConnectSignerActions for ApproveAll {
    fn approve(&self, _: &PublicKey, _: &NostrConnectRequest) -> bool {
        true
    }
}

struct Run {
    per_sec: f64,
    p50: Duration,
    p99: Duration,
    requests: usize,
}

/// `total` requests, `in_flight` at a time through one client (app key `app`, so the
/// single-use connect secret binds it once), after a warm-up.
async fn drive(uri: &str, app: &Keys, op: Op, in_flight: usize, total: usize) -> Run {
    let peer = Keys::generate().public_key();
    let client = NostrConnect::new(
        NostrConnectURI::parse(uri).expect("uri"),
        app.clone(),
        Duration::from_secs(30),
        None,
    )
    .expect("client");
    let user = client.get_public_key().await.expect("pubkey");
    let client = Arc::new(client);
    let start = Instant::now();
    let tasks: Vec<_> = (0..in_flight)
        .map(|task| {
            let c = client.clone();
            let n = total / in_flight;
            tokio::spawn(async move {
                let mut latencies = Vec::with_capacity(n);
                for i in 0..n {
                    let t = Instant::now();
                    match op {
                        Op::Nip44Encrypt => {
                            c.nip44_encrypt(&peer, "benchmark message")
                                .await
                                .expect("nip44_encrypt");
                        }
                        Op::SignEvent => {
                            let unsigned =
                                EventBuilder::text_note(format!("bench {task}-{i}")).build(user);
                            c.sign_event(unsigned).await.expect("sign_event");
                        }
                    }
                    latencies.push(t.elapsed());
                }
                latencies
            })
        })
        .collect();
    let mut all = Vec::with_capacity(total);
    for t in tasks {
        all.extend(t.await.expect("client task"));
    }
    let elapsed = start.elapsed();
    if let Ok(c) = Arc::try_unwrap(client) {
        c.shutdown().await;
    }
    all.sort();
    let pick = |q: f64| all[((all.len() - 1) as f64 * q).round() as usize];
    Run {
        per_sec: all.len() as f64 / elapsed.as_secs_f64(),
        p50: pick(0.5),
        p99: pick(0.99),
        requests: all.len(),
    }
}

fn peer_signer(url: &RelayUrl) -> String {
    let keys = NostrConnectKeys {
        signer: Keys::generate(),
        user: Keys::generate(),
    };
    let signer =
        NostrConnectRemoteSigner::new(keys, [url.clone()], Some("peer-secret".into()), None)
            .expect("peer");
    let uri = signer.bunker_uri().to_string();
    tokio::spawn(async move {
        let _ = signer.serve(ApproveAll).await;
    });
    uri
}

fn row(signer: &str, op: Op, in_flight: usize, r: &Run) {
    println!(
        "| {signer} | {op:?} | {in_flight} | {} | {:.0} | {:.2} | {:.2} |",
        r.requests,
        r.per_sec,
        r.p50.as_secs_f64() * 1e3,
        r.p99.as_secs_f64() * 1e3
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    let (one, sixteen) = if bench { (300, 3_200) } else { (4, 32) };
    // The relay builder limits each connection to 60 events a minute by default; the bunker
    // publishes every reply on one connection, so lift the limit for a load test.
    let relay = LocalRelay::new(RelayBuilder::default().rate_limit(RateLimit {
        max_reqs: 100_000,
        notes_per_minute: 10_000_000,
    }));
    relay.run().await.expect("relay");
    let url = relay.url().await;
    let keycast = SingleUserBunker::start(
        Keys::generate().secret_key().clone(),
        Arc::new(InsecureTestKeyManager::new()),
        vec![url.clone()],
    )
    .await
    .expect("bunker");
    let (bunker, keycast_uri) = (keycast.bunker, keycast.uri);
    let peer_uri = peer_signer(&url);
    tokio::time::sleep(Duration::from_millis(300)).await;

    println!("| signer | operation | in flight | requests | req/s | p50 ms | p99 ms |");
    println!("|---|---|---:|---:|---:|---:|---:|");
    let mut nip44 = Vec::new();
    let app = Keys::generate();
    for (name, uri) in [
        ("keycast", &keycast_uri),
        ("NostrConnectRemoteSigner 0.44", &peer_uri),
    ] {
        for (in_flight, total) in [(1, one), (16, sixteen)] {
            let r = drive(uri, &app, Op::Nip44Encrypt, in_flight, total).await;
            row(name, Op::Nip44Encrypt, in_flight, &r);
            nip44.push((name, in_flight, r.per_sec));
        }
    }
    for (in_flight, total) in [(1, one), (16, sixteen)] {
        let r = drive(&keycast_uri, &app, Op::SignEvent, in_flight, total).await;
        row("keycast", Op::SignEvent, in_flight, &r);
    }
    let rate = |who: &str, n: usize| {
        nip44
            .iter()
            .find(|(w, f, _)| *w == who && *f == n)
            .map(|x| x.2)
            .unwrap_or(0.0)
    };
    println!(
        "\nkeycast ÷ peer, nip44_encrypt at 16 in flight: {:.1}×",
        rate("keycast", 16) / rate("NostrConnectRemoteSigner 0.44", 16)
    );
    let stats = bunker.stats();
    println!("keycast bunker stats: {stats:?}");
    assert_eq!(stats.queue_dropped, 0);
    assert_eq!(stats.panics, 0);
    bunker.shutdown().await;
}
