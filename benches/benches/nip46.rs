//! NIP-46 round trips through an in-process relay: keycast's `Bunker` against rust-nostr's
//! own `NostrConnectRemoteSigner` 0.44 (the peer), same relay, same run, same client
//! library (rust-nostr `NostrConnect`). The peer only answers NIP-44 requests, so both
//! are measured on `nip44_encrypt`; keycast also on `sign_event`. Three load shapes: one
//! request at a time; 16 at a time from one app (one `NostrConnect`); one at a time from
//! each of 16 apps (16 `NostrConnect`s, each with its own keycast authorization).
//!
//! `cargo bench -p keycast-benches --bench nip46` prints a markdown table.
//!
//! What each side gets. Relay: one nostr-relay-builder `LocalRelay` for both signers, fed
//! connections by `keycast_benches::serve_relay_nodelay`, which sets `TCP_NODELAY` on the
//! relay's side of every connection (its own listener does not; see there). Client: the
//! same `NostrConnect` for both, with the relay pool's default transport (Nagle on;
//! `NostrConnect` builds its own pool, so no transport can be installed). Signers: each
//! brings its own relay connection, keycast's with `TCP_NODELAY` (keycast-nip46's
//! transport), the peer's the pool default. `NIP46_BENCH_RELAY_NAGLE=1` runs the relay's
//! own listener instead, for comparison.
//!
//! Under `cargo test` (no `--bench`) it runs a handful of requests as a smoke test.

use std::sync::Arc;
use std::time::{Duration, Instant};

use keycast_benches::serve_relay_nodelay;
use keycast_core::nostr::{EventBuilder, Keys, NostrSigner, PublicKey, RelayUrl, Timestamp};
use keycast_core::*;
use keycast_nip46::{BunkerUri, SingleUserBunker};
use nostr_connect::prelude::{
    NostrConnect, NostrConnectKeys, NostrConnectRemoteSigner, NostrConnectRequest,
    NostrConnectSignerActions, NostrConnectURI,
};
use nostr_relay_builder::prelude::{LocalRelay, RateLimit, RelayBuilder};

const PEER: &str = "NostrConnectRemoteSigner 0.44";

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

/// One NIP-46 app: the `bunker://` URI it was given and its key.
struct App {
    uri: String,
    keys: Keys,
}

struct Run {
    per_sec: f64,
    p50: Duration,
    p99: Duration,
    requests: usize,
    /// Share of the machine's cores this process kept busy while timed.
    busy: f64,
    /// CPU time of the whole process (clients, relay, signers) per request.
    cpu_per_request: Duration,
    /// Of that, on keycast's crypto pool threads.
    crypto_per_request: Duration,
}

/// CPU time used so far by this process's threads, and by those of keycast's crypto pool,
/// from `/proc/self/task/*/schedstat` (zero where there is no such file).
fn cpu_time() -> (Duration, Duration) {
    let (mut all, mut crypto) = (0, 0);
    for task in std::fs::read_dir("/proc/self/task")
        .into_iter()
        .flatten()
        .flatten()
    {
        let path = task.path();
        let Some(ns) = std::fs::read_to_string(path.join("schedstat"))
            .ok()
            .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        else {
            continue;
        };
        all += ns;
        if std::fs::read_to_string(path.join("comm")).is_ok_and(|c| c.starts_with("keycast-crypto"))
        {
            crypto += ns;
        }
    }
    (Duration::from_nanos(all), Duration::from_nanos(crypto))
}

/// `total` requests, `per_app` at a time through each of `apps` (one `NostrConnect` each,
/// so `apps.len() × per_app` in flight), timed after every app has connected.
///
/// One `NostrConnect` with many requests in flight decrypts every reply once per waiting
/// request (each waiter takes all replies from the pool and decrypts before it compares
/// ids), so its CPU cost per reply grows with the number in flight; separate apps each
/// get only their own replies.
async fn drive(apps: &[App], op: Op, per_app: usize, total: usize) -> Run {
    let peer = Keys::generate().public_key();
    let mut clients = Vec::with_capacity(apps.len());
    for app in apps {
        let client = NostrConnect::new(
            NostrConnectURI::parse(&app.uri).expect("uri"),
            app.keys.clone(),
            Duration::from_secs(30),
            None,
        )
        .expect("client");
        let user = client.get_public_key().await.expect("pubkey");
        clients.push((Arc::new(client), user));
    }
    let n = total / (apps.len() * per_app);
    let (cpu_before, crypto_before) = cpu_time();
    let start = Instant::now();
    let tasks: Vec<_> = clients
        .iter()
        .flat_map(|(c, user)| (0..per_app).map(move |_| (c.clone(), *user)))
        .enumerate()
        .map(|(task, (c, user))| {
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
    let (cpu_after, crypto_after) = cpu_time();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let cpu = cpu_after.saturating_sub(cpu_before);
    for (c, _) in clients {
        if let Ok(c) = Arc::try_unwrap(c) {
            c.shutdown().await;
        }
    }
    all.sort();
    let pick = |q: f64| all[((all.len() - 1) as f64 * q).round() as usize];
    Run {
        per_sec: all.len() as f64 / elapsed.as_secs_f64(),
        p50: pick(0.5),
        p99: pick(0.99),
        requests: all.len(),
        busy: cpu.as_secs_f64() / (elapsed.as_secs_f64() * cores as f64),
        cpu_per_request: cpu / all.len() as u32,
        crypto_per_request: crypto_after.saturating_sub(crypto_before) / all.len() as u32,
    }
}

/// `n` more keycast apps, each with its own authorization (a connect secret binds one app)
/// of the same key and policy as the one `SingleUserBunker` made.
async fn keycast_apps(keycast: &SingleUserBunker, relay: &RelayUrl, n: usize) -> Vec<App> {
    let custody = &keycast.custody;
    let first = custody
        .store()
        .list_active_authorizations(Timestamp::now(), None, 1)
        .await
        .expect("authorizations")
        .into_iter()
        .next()
        .expect("the bunker's authorization");
    let mut apps = Vec::with_capacity(n);
    for i in 0..n {
        let (auth, secret) = custody
            .create_authorization(NewAuthorization {
                tenant_id: first.tenant_id,
                user_id: first.user_id,
                key_id: first.key_id,
                policy_id: first.policy_id,
                label: Label::parse(&format!("bench app {i}")).expect("label"),
                relays: vec![relay.clone()],
                expires_at: None,
            })
            .await
            .expect("authorization");
        let uri = BunkerUri {
            signer: auth.bunker_pubkey,
            relays: vec![relay.clone()],
            secret: Some(secret.expose().to_owned()),
        }
        .to_uri()
        .expect("bunker uri");
        apps.push(App {
            uri,
            keys: Keys::generate(),
        });
    }
    keycast
        .bunker
        .refresh_subscription()
        .await
        .expect("subscribe");
    apps
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

/// The three load shapes: one request at a time; 16 at a time from one app; one at a time
/// from each of 16 apps.
fn runs<'a>(
    one_app: &'a [App],
    many: &'a [App],
    one: usize,
    sixteen: usize,
) -> [(&'a [App], usize, usize); 3] {
    [
        (one_app, 1, one),
        (one_app, 16, sixteen),
        (many, 1, sixteen),
    ]
}

fn row(signer: &str, op: Op, apps: usize, per_app: usize, r: &Run) {
    println!(
        "| {signer} | {op:?} | {apps} | {} | {} | {:.0} | {:.2} | {:.2} | {:.0}% | {} | {} |",
        apps * per_app,
        r.requests,
        r.per_sec,
        r.p50.as_secs_f64() * 1e3,
        r.p99.as_secs_f64() * 1e3,
        r.busy * 100.0,
        r.cpu_per_request.as_micros(),
        r.crypto_per_request.as_micros(),
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
    let url = if std::env::var_os("NIP46_BENCH_RELAY_NAGLE").is_some_and(|v| v == "1") {
        relay.run().await.expect("relay");
        relay.url().await
    } else {
        serve_relay_nodelay(relay.clone()).await
    };
    let keycast = SingleUserBunker::start(
        Keys::generate().secret_key().clone(),
        Arc::new(InsecureTestKeyManager::new()),
        vec![url.clone()],
    )
    .await
    .expect("bunker");
    let keycast_one = vec![App {
        uri: keycast.uri.clone(),
        keys: Keys::generate(),
    }];
    let keycast_many = keycast_apps(&keycast, &url, 16).await;
    let peer_uri = peer_signer(&url);
    let peer_one = vec![App {
        uri: peer_uri.clone(),
        keys: Keys::generate(),
    }];
    let peer_many: Vec<App> = (0..16)
        .map(|_| App {
            uri: peer_uri.clone(),
            keys: Keys::generate(),
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;

    println!(
        "| signer | operation | apps | in flight | requests | req/s | p50 ms | p99 ms \
         | CPU busy | CPU µs/req | of which keycast crypto pool |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    // Requests keycast should see: the timed ones, and per app and drive `connect` and
    // `get_public_key`.
    let mut sent_to_keycast = 0;
    let mut nip44 = Vec::new();
    for (name, one_app, many) in [
        ("keycast", &keycast_one, &keycast_many),
        (PEER, &peer_one, &peer_many),
    ] {
        for (apps, per_app, total) in runs(one_app, many, one, sixteen) {
            let r = drive(apps, Op::Nip44Encrypt, per_app, total).await;
            row(name, Op::Nip44Encrypt, apps.len(), per_app, &r);
            nip44.push((name, apps.len(), per_app, r.per_sec));
            if name == "keycast" {
                sent_to_keycast += r.requests + 2 * apps.len();
            }
        }
    }
    for (apps, per_app, total) in runs(&keycast_one, &keycast_many, one, sixteen) {
        let r = drive(apps, Op::SignEvent, per_app, total).await;
        row("keycast", Op::SignEvent, apps.len(), per_app, &r);
        sent_to_keycast += r.requests + 2 * apps.len();
    }
    let rate = |who: &str, apps: usize, per_app: usize| {
        nip44
            .iter()
            .find(|x| x.0 == who && x.1 == apps && x.2 == per_app)
            .map(|x| x.3)
            .unwrap_or(0.0)
    };
    println!(
        "\nkeycast ÷ peer, nip44_encrypt at 16 in flight: {:.1}× (one app), {:.1}× (16 apps)",
        rate("keycast", 1, 16) / rate(PEER, 1, 16),
        rate("keycast", 16, 1) / rate(PEER, 16, 1),
    );
    // A reply is counted just after it is handed to the relay, so the last may lag.
    let deadline = Instant::now() + Duration::from_secs(2);
    while keycast.bunker.stats().processed < sent_to_keycast as u64 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let stats = keycast.bunker.stats();
    println!("keycast bunker stats: {stats:?}");
    // Every request reached the bunker once and got one reply (the clients waited for
    // each); none was dropped, refused by the relay or failed.
    assert_eq!(stats.requests, sent_to_keycast as u64);
    assert_eq!(stats.processed, sent_to_keycast as u64);
    assert_eq!(stats.duplicates, 0);
    assert_eq!(stats.queue_dropped, 0);
    assert_eq!(stats.replies_refused, 0);
    assert_eq!(stats.invalid, 0);
    assert_eq!(stats.panics, 0);
    keycast.bunker.shutdown().await;
}
