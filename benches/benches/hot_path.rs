//! Issue 21's NIP-46 measure: the serving process's own CPU per answered request, next to
//! the floor (`keycast_benches::floor`) measured in the same run, for a release
//! `keycast-server` and for rust-nostr's `NostrConnectRemoteSigner` 0.44 (the peer), at 1,
//! 16 and 64 requests in flight, for `sign_event` and `nip44_encrypt`.
//!
//! Processes: this one hosts the relay (nostr-relay-builder with `TCP_NODELAY`, see
//! `keycast_benches::serve_relay_nodelay`) and the clients (`LoadClient`: raw NIP-46, one
//! relay connection per client key); the server runs on embedded defaults (SQLite, a local
//! master key) pointed at that relay, with [`AUTHORIZATIONS`] authorizations of one key
//! bound to [`CLIENTS`] client keys; the peer is this executable again, started with
//! `KEYCAST_BENCH_PEER_RELAY` (see [`peer_main`]), with every client key connected to it.
//!
//! Each measurement is a closed loop for a fixed window: `in flight` tasks each send a
//! request to the next bunker in turn and send the next once its reply is in. CPU per
//! request is the process's user plus system time from `/proc/<pid>/stat` around the
//! window, divided by the replies that arrived inside it. After all loops every request id
//! sent to keycast is tallied: a lost or duplicated reply, an error, or a wrong answer (a
//! `sign_event` not signed by the user's key, a `nip44_encrypt` that does not decrypt to
//! what was sent) fails the bench. The peer's tally is printed, not asserted.
//!
//! `cargo build --release -p keycast-server && cargo bench -p keycast-benches --bench
//! hot_path` (`KEYCAST_BENCH_SERVER_BIN` names another server binary;
//! `KEYCAST_BENCH_SECONDS` sets the window, default 5; `KEYCAST_TEST_NODE_INTEROP=1` with
//! the npm packages of `keycast-nip46/tests/interop` adds nostr-tools' latency).
//! Under `cargo test` (no `--bench`) it makes a short smoke run with that binary or
//! `target/debug/keycast-server`; without either it says it skipped (and fails under
//! `KEYCAST_TEST_REQUIRE_SERVICES=1`, as does the nostr-tools part without
//! `KEYCAST_TEST_NODE_INTEROP=1`).

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use keycast_benches::floor::{Floor, Method};
use keycast_benches::server::Server;
use keycast_benches::{connect_all, context_switches, process_cpu, serve_relay_nodelay};
use keycast_core::nostr::nips::nip44;
use keycast_core::nostr::{Keys, PublicKey, RelayUrl, Timestamp};
use keycast_nip46::testing::{signed_by, LoadClient, Tally};
use nostr_connect::prelude::{
    NostrConnectKeys, NostrConnectRemoteSigner, NostrConnectRequest, NostrConnectSignerActions,
};
use nostr_relay_builder::prelude::{LocalRelay, RateLimit, RelayBuilder};

/// Authorizations (bunkers) on the keycast server.
const AUTHORIZATIONS: usize = 64;
/// Client keys, each on its own relay connection.
const CLIENTS: usize = 8;
const IN_FLIGHT: [usize; 3] = [1, 16, 64];
const METHODS: [Method; 2] = [Method::SignEvent, Method::Nip44Encrypt];
/// A request without a reply by then counts as lost.
const REPLY_TIMEOUT: Duration = Duration::from_secs(10);
/// The peer's connect secret (it takes any number of clients with it).
const PEER_SECRET: &str = "hot-path-peer";

/// One closed loop's result.
#[derive(Default)]
struct Measured {
    per_sec: f64,
    p50: Duration,
    p99: Duration,
    cpu_per_reply: Duration,
    switches_per_reply: f64,
    /// Every id sent, answered in the window or not.
    ids: Vec<String>,
}

/// A signer's loops: `(method, in flight, measured)`.
type Rows = Vec<(Method, usize, Measured)>;

/// Who is measured: the serving process and where its requests go.
struct Signer {
    name: &'static str,
    pid: u32,
    /// `(client index, bunker)`, taken in turn.
    targets: Arc<Vec<(usize, PublicKey)>>,
    /// The key a `sign_event` must come back signed by.
    user: PublicKey,
}

/// The request a loop sends: `sign_event` of a fresh note by `user` (the peer needs the
/// template's `pubkey`; keycast checks it), or `nip44_encrypt` to `to`.
fn params(method: Method, n: usize, user: &PublicKey, to: &PublicKey) -> Vec<String> {
    match method {
        Method::SignEvent => vec![serde_json::json!({
            "pubkey": user.to_hex(),
            "kind": 1,
            "content": format!("hot path note {n}"),
            "tags": [["t", "keycast"]],
            "created_at": Timestamp::now().as_secs(),
        })
        .to_string()],
        Method::Nip44Encrypt => vec![to.to_hex(), format!("hot path secret {n}")],
    }
}

/// `in_flight` tasks, each sending `method` to the next target in turn and waiting for
/// its reply before sending another, for `window`; CPU of `signer.pid` around it.
async fn closed_loop(
    load: &LoadClient,
    signer: &Signer,
    method: Method,
    to: PublicKey,
    in_flight: usize,
    window: Duration,
) -> Measured {
    let next = Arc::new(AtomicUsize::new(0));
    let (cpu0, switches0) = (process_cpu(signer.pid), context_switches(signer.pid));
    let end = Instant::now() + window;
    let tasks: Vec<_> = (0..in_flight)
        .map(|_| {
            let (load, targets, next) = (load.clone(), signer.targets.clone(), next.clone());
            let user = signer.user;
            tokio::spawn(async move {
                let (mut ids, mut latencies) = (Vec::new(), Vec::new());
                while Instant::now() < end {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    let (client, bunker) = targets[n % targets.len()];
                    let sent = load
                        .send(client, bunker, method.name(), params(method, n, &user, &to))
                        .await;
                    let id = sent.expect("the relay took the request");
                    let reply = load.wait_one(&id, REPLY_TIMEOUT).await;
                    ids.push(id);
                    if let Some(r) = reply.filter(|_| Instant::now() <= end) {
                        latencies.push(r.latency);
                    }
                }
                (ids, latencies)
            })
        })
        .collect();
    tokio::time::sleep_until(end.into()).await;
    let cpu = process_cpu(signer.pid).saturating_sub(cpu0);
    let switches = context_switches(signer.pid).saturating_sub(switches0);
    let (mut ids, mut latencies) = (Vec::new(), Vec::new());
    for task in tasks {
        let (i, l) = task.await.expect("loop task");
        ids.extend(i);
        latencies.extend(l);
    }
    latencies.sort();
    let pick = |q: f64| {
        let at = (latencies.len().saturating_sub(1) as f64 * q).round() as usize;
        latencies.get(at).copied().unwrap_or_default()
    };
    let replies = latencies.len().max(1);
    Measured {
        per_sec: latencies.len() as f64 / window.as_secs_f64(),
        p50: pick(0.5),
        p99: pick(0.99),
        cpu_per_reply: cpu / u32::try_from(replies).unwrap_or(u32::MAX),
        switches_per_reply: switches as f64 / replies as f64,
        ids,
    }
}

/// Replies in `tally` that are errors or wrong answers to `method`.
fn wrong_answers(tally: &Tally, method: Method, user: &PublicKey, to: &Keys) -> usize {
    tally
        .replies
        .values()
        .flatten()
        .filter(|r| {
            r.error.is_some()
                || match method {
                    Method::SignEvent => signed_by(r) != Some(*user),
                    Method::Nip44Encrypt => r.result.as_deref().is_none_or(|c| {
                        nip44::decrypt(to.secret_key(), user, c)
                            .map_or(true, |p| !p.starts_with("hot path secret"))
                    }),
                }
        })
        .count()
}

/// Every loop for `signer`, then per method the tally of all it was sent: `(method, in
/// flight, measured)` rows. Lost, duplicated or wrong replies are printed, and fail the
/// bench for keycast.
async fn measure(load: &LoadClient, signer: &Signer, window: Duration) -> Rows {
    let to = Keys::generate();
    let mut rows = Vec::new();
    for method in METHODS {
        // Warm-up: every target once (keys and conversation keys into their caches).
        let warm = closed_loop(load, signer, method, to.public_key(), 8, window / 5).await;
        let mut ids = warm.ids;
        for in_flight in IN_FLIGHT {
            // Progress on stderr, also the cue for a profiler attached to `pid`.
            eprintln!(
                "hot_path: {} {} at {in_flight} in flight, pid {}",
                signer.name,
                method.name(),
                signer.pid
            );
            let mut m = closed_loop(load, signer, method, to.public_key(), in_flight, window).await;
            ids.append(&mut m.ids);
            rows.push((method, in_flight, m));
        }
        // Late duplicates would land within the settle time.
        let tally = load.wait(&ids, REPLY_TIMEOUT, Duration::from_secs(1)).await;
        let wrong = wrong_answers(&tally, method, &signer.user, &to);
        let bad = [tally.unanswered.len(), tally.duplicated.len(), wrong];
        if bad != [0; 3] {
            eprintln!(
                "{} {}: {} lost, {} duplicated, {} wrong of {}",
                signer.name,
                method.name(),
                bad[0],
                bad[1],
                bad[2],
                ids.len()
            );
        }
        if signer.name == "keycast" {
            assert_eq!(bad, [0; 3], "keycast lost, duplicated or wrong replies");
        }
    }
    rows
}

/// The floor per method, on this thread.
fn floor(requests: usize, rounds: usize) -> HashMap<&'static str, Duration> {
    let f = Floor::new();
    METHODS
        .into_iter()
        .map(|m| (m.name(), f.measure(m, requests, rounds)))
        .collect()
}

/// The peer process: a `NostrConnectRemoteSigner` on the relay, its `bunker://` URI on
/// stdout, until stdin closes.
fn peer_main(relay: &str) {
    struct ApproveAll;
    impl NostrConnectSignerActions for ApproveAll {
        fn approve(&self, _: &PublicKey, _: &NostrConnectRequest) -> bool {
            true
        }
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let keys = NostrConnectKeys {
            signer: Keys::generate(),
            user: Keys::generate(),
        };
        let relay = RelayUrl::parse(relay).expect("relay url");
        let signer = NostrConnectRemoteSigner::new(keys, [relay], Some(PEER_SECRET.into()), None)
            .expect("peer");
        println!("{}", signer.bunker_uri());
        tokio::spawn(async move {
            let _ = signer.serve(ApproveAll).await;
        });
        tokio::task::spawn_blocking(|| {
            std::io::Read::read_to_end(&mut std::io::stdin(), &mut Vec::new())
        })
        .await
        .ok();
    });
}

/// Starts the peer process; its bunker URI's signer key.
fn spawn_peer(relay: &RelayUrl) -> (Child, PublicKey) {
    let mut child = Command::new(std::env::current_exe().expect("this executable"))
        .env("KEYCAST_BENCH_PEER_RELAY", relay.as_str())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("peer process");
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().expect("stdout")),
        &mut line,
    )
    .expect("peer URI");
    let uri = keycast_nip46::BunkerUri::parse(line.trim()).expect("peer bunker URI");
    (child, uri.signer)
}

/// nostr-tools' `BunkerSigner` through the embedded relay, one request in flight.
struct Latency {
    /// `(method, p50, p99)`.
    rows: Vec<(String, Duration, Duration)>,
    /// The client's own median cost, in milliseconds, to sign a request event and to
    /// verify a reply event, measured in the same Node process.
    client_sign_ms: f64,
    client_verify_ms: f64,
}

/// [`Latency`] against a fresh server (`bunker_latency.mjs`); `None` when the Node
/// packages are not installed (`KEYCAST_TEST_NODE_INTEROP=1` says they are).
async fn bunker_latency(
    bin: &std::path::Path,
    http: &reqwest::Client,
    requests: usize,
) -> Option<Latency> {
    let interop = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../keycast-nip46/tests/interop");
    if std::env::var("KEYCAST_TEST_NODE_INTEROP").as_deref() != Ok("1") {
        return keycast_test_support::missing_service(
            "hot_path's nostr-tools latency: KEYCAST_TEST_NODE_INTEROP=1 is not set",
        );
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let vars = [
        ("KEYCAST_DATA_DIR", dir.path().display().to_string()),
        ("KEYCAST_EMBEDDED_RELAY_LISTEN", "127.0.0.1:0".into()),
    ];
    let mut server = Server::spawn(bin, &vars, dir.path().join("server.log"));
    server.ready(http).await;
    let account = server.authorizations(http, 1).await;
    let uri = account.uris[0].to_uri().expect("bunker URI");
    let out = tokio::process::Command::new("node")
        .arg("bunker_latency.mjs")
        .arg(&uri)
        .arg(requests.to_string())
        .current_dir(&interop)
        .output()
        .await
        .expect("node runs");
    server.stop();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let result: serde_json::Value = stdout
        .lines()
        .last()
        .and_then(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| {
            panic!(
                "bunker_latency.mjs printed no result: {stdout}\n{}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    assert!(result.get("failure").is_none(), "nostr-tools: {result}");
    let rows = METHODS
        .into_iter()
        .map(|m| {
            let times: Vec<f64> = result[m.name()]
                .as_array()
                .expect("times")
                .iter()
                .filter_map(serde_json::Value::as_f64)
                .collect();
            assert_eq!(
                times.len(),
                requests,
                "nostr-tools {}: every request timed",
                m.name()
            );
            let pick = |q: f64| {
                let at = ((times.len() - 1) as f64 * q).round() as usize;
                Duration::from_secs_f64(times[at] / 1e3)
            };
            (m.name().to_owned(), pick(0.5), pick(0.99))
        })
        .collect();
    let client = |what: &str| result["client"][what].as_f64().expect("the client's cost");
    Some(Latency {
        rows,
        client_sign_ms: client("sign_ms"),
        client_verify_ms: client("verify_ms"),
    })
}

/// The server binary: `KEYCAST_BENCH_SERVER_BIN`, else this tree's release build (a
/// bench) or debug build (a smoke run), if built.
fn server_bin(bench: bool) -> Option<PathBuf> {
    if let Some(bin) = std::env::var_os("KEYCAST_BENCH_SERVER_BIN") {
        return Some(PathBuf::from(bin));
    }
    let profile = if bench { "release" } else { "debug" };
    let built = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../target")
        .join(profile)
        .join("keycast-server");
    built.is_file().then_some(built)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn print_report(floors: &[HashMap<&'static str, Duration>; 2], results: &[(&Signer, Rows)]) {
    let floor = |m: Method| (floors[0][m.name()] + floors[1][m.name()]) / 2;
    println!("| request | floor µs before | floor µs after | used |");
    println!("|---|---:|---:|---:|");
    for m in METHODS {
        println!(
            "| {} | {:.1} | {:.1} | {:.1} |",
            m.name(),
            floors[0][m.name()].as_secs_f64() * 1e6,
            floors[1][m.name()].as_secs_f64() * 1e6,
            floor(m).as_secs_f64() * 1e6
        );
    }
    println!();
    println!(
        "| signer | request | in flight | replies/s | p50 ms | p99 ms | CPU µs per reply \
         | ÷ floor | switches per reply |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---:|---:|");
    for (signer, rows) in results {
        for (m, in_flight, r) in rows {
            println!(
                "| {} | {} | {in_flight} | {:.0} | {:.2} | {:.2} | {:.0} | {:.2} | {:.1} |",
                signer.name,
                m.name(),
                r.per_sec,
                ms(r.p50),
                ms(r.p99),
                r.cpu_per_reply.as_secs_f64() * 1e6,
                r.cpu_per_reply.as_secs_f64() / floor(*m).as_secs_f64(),
                r.switches_per_reply,
            );
        }
    }
}

fn main() {
    if let Ok(relay) = std::env::var("KEYCAST_BENCH_PEER_RELAY") {
        return peer_main(&relay);
    }
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(bench());
}

async fn bench() {
    let bench = std::env::args().any(|a| a == "--bench");
    let Some(bin) = server_bin(bench).or_else(|| {
        keycast_test_support::missing_service(
            "hot_path: no server binary (set KEYCAST_BENCH_SERVER_BIN or build keycast-server)",
        )
    }) else {
        return;
    };
    let seconds: u64 = std::env::var("KEYCAST_BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(if bench { 5 } else { 1 });
    let window = Duration::from_secs(seconds);
    let (requests, rounds) = if bench { (2_000, 3) } else { (20, 1) };

    let relay = LocalRelay::new(RelayBuilder::default().rate_limit(RateLimit {
        max_reqs: 100_000,
        notes_per_minute: 100_000_000,
    }));
    let url = serve_relay_nodelay(relay).await;
    let floor_before = floor(requests, rounds);

    let http = reqwest::Client::new();
    let dir = tempfile::tempdir().expect("temp dir");
    let vars = [
        ("KEYCAST_DATA_DIR", dir.path().display().to_string()),
        ("KEYCAST_RELAYS", url.to_string()),
    ];
    let mut server = Server::spawn(&bin, &vars, dir.path().join("server.log"));
    server.ready(&http).await;
    let account = server.authorizations(&http, AUTHORIZATIONS).await;
    let load = LoadClient::start(vec![url.clone()], CLIENTS)
        .await
        .expect("load clients");
    connect_all(&load, &account.uris).await;
    let keycast = Signer {
        name: "keycast",
        pid: server.pid(),
        targets: Arc::new(
            account
                .bunkers()
                .into_iter()
                .enumerate()
                .map(|(i, b)| (i % CLIENTS, b))
                .collect(),
        ),
        user: account.user,
    };
    let keycast_rows = measure(&load, &keycast, window).await;
    server.stop();

    let (mut peer_process, peer_key) = spawn_peer(&url);
    // The peer prints its URI before it has subscribed, and asks only for events from
    // then on: the first connect is retried until one is answered.
    let deadline = Instant::now() + Duration::from_secs(30);
    while let Err(e) = load
        .connect(0, peer_key, PEER_SECRET, Duration::from_millis(500))
        .await
    {
        assert!(
            Instant::now() < deadline,
            "the peer never answered connect: {e}"
        );
    }
    for c in 1..CLIENTS {
        load.connect(c, peer_key, PEER_SECRET, REPLY_TIMEOUT)
            .await
            .expect("connect to the peer");
    }
    let id = load
        .send(0, peer_key, "get_public_key", Vec::new())
        .await
        .expect("get_public_key");
    let peer_user = load
        .wait_one(&id, REPLY_TIMEOUT)
        .await
        .and_then(|r| r.result)
        .and_then(|hex| PublicKey::from_hex(&hex).ok())
        .expect("the peer's user key");
    let peer = Signer {
        name: "peer",
        pid: peer_process.id(),
        targets: Arc::new((0..CLIENTS).map(|c| (c, peer_key)).collect()),
        user: peer_user,
    };
    let peer_rows = measure(&load, &peer, window).await;
    drop(peer_process.stdin.take());
    let _ = peer_process.wait();
    load.shutdown().await;
    let floor_after = floor(requests, rounds);
    let latency = bunker_latency(&bin, &http, if bench { 500 } else { 5 }).await;

    println!(
        "NIP-46 hot path: {AUTHORIZATIONS} authorizations, {CLIENTS} client keys, {seconds} s \
         per loop; peer = NostrConnectRemoteSigner 0.44 (its own process)\n"
    );
    print_report(
        &[floor_before, floor_after],
        &[(&keycast, keycast_rows), (&peer, peer_rows)],
    );
    if let Some(latency) = latency {
        println!("\nnostr-tools BunkerSigner through the embedded relay, one request in flight:\n");
        println!("| request | p50 ms | p99 ms |");
        println!("|---|---:|---:|");
        for (method, p50, p99) in latency.rows {
            println!("| {method} | {:.2} | {:.2} |", ms(p50), ms(p99));
        }
        println!(
            "\nthe client's own cost per request in Node: {:.2} ms to sign the request event, \
             {:.2} ms to verify the reply event",
            latency.client_sign_ms, latency.client_verify_ms
        );
    }
}
