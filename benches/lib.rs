//! Holder crate for keycast's benchmarks (`benches/*.rs`), and what several of them share:
//! the raw Schnorr sign-rate baseline, an in-process relay with `TCP_NODELAY` and a
//! `keycast-server` process ([`server`]). See BENCHMARKS.md.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use keycast_core::nostr::secp256k1::{Message, SECP256K1};
use keycast_core::nostr::{Keys, RelayUrl};
use keycast_nip46::testing::LoadClient;
use keycast_nip46::BunkerUri;
use nostr_relay_builder::prelude::LocalRelay;
use tokio::net::TcpListener;

pub mod floor;
pub mod server;

/// The sizes a scaling benchmark runs at: `KEYCAST_BENCH_SCALES` (comma-separated,
/// `_` allowed in numbers), else `default`.
///
/// # Panics
/// On a value that is not a number.
pub fn bench_scales(default: &str) -> Vec<usize> {
    let spec = std::env::var("KEYCAST_BENCH_SCALES")
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| default.to_owned());
    spec.split(',')
        .map(|s| {
            s.trim()
                .replace('_', "")
                .parse()
                .unwrap_or_else(|_| panic!("KEYCAST_BENCH_SCALES: {s:?} is not a number"))
        })
        .collect()
}

/// Context switches of every thread of `pid` so far (voluntary and not): each is a
/// hand-off between threads or a wait, which on this VM costs more than most of the work
/// around it, and which the box's noise does not move.
pub fn context_switches(pid: u32) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("status")).ok())
        .flat_map(|status| {
            status
                .lines()
                .filter(|l| l.contains("ctxt_switches:"))
                .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
                .collect::<Vec<_>>()
        })
        .sum()
}

/// CPU time the calling thread has used so far (`CLOCK_THREAD_CPUTIME_ID`).
#[must_use]
pub fn thread_cpu() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Duration::new(
        u64::try_from(t.tv_sec).unwrap_or(0),
        u32::try_from(t.tv_nsec).unwrap_or(0),
    )
}

/// Raw secp256k1 BIP-340 signatures of a 32-byte digest per second, on `threads` threads
/// for `duration` (no keycast code): the baseline load benchmarks are reported against.
pub fn raw_sign_rate(threads: usize, duration: Duration) -> f64 {
    let stop = Arc::new(AtomicBool::new(false));
    let total = Arc::new(AtomicU64::new(0));
    let workers: Vec<_> = (0..threads)
        .map(|_| {
            let (stop, total) = (stop.clone(), total.clone());
            std::thread::spawn(move || {
                let keys = Keys::generate();
                let msg = Message::from_digest([7u8; 32]);
                let mut rng = rand::thread_rng();
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    for _ in 0..64 {
                        std::hint::black_box(keys.sign_schnorr_with_ctx(SECP256K1, &msg, &mut rng));
                    }
                    n += 64;
                }
                total.fetch_add(n, Ordering::Relaxed);
            })
        })
        .collect();
    let start = Instant::now();
    std::thread::sleep(duration);
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        let _ = w.join();
    }
    total.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64()
}

/// CPU time (user and system) used so far by process `pid`, dead threads included, from
/// `/proc/<pid>/stat` (clock-tick resolution: 10 ms here); zero if it cannot be read.
#[must_use]
pub fn process_cpu(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The command name (field 2) may hold spaces; fields are counted after its `)`.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let ticks: u64 = rest
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|v| v.parse::<u64>().ok())
        .sum();
    let hz = rustix::param::clock_ticks_per_second().max(1);
    Duration::from_nanos(ticks.saturating_mul(1_000_000_000) / hz)
}

/// Binds authorization `i` (`bunker://` URI `uris[i]`) to load client `i % clients`,
/// 16 connects at a time (connect secrets are single-use).
///
/// # Panics
/// If a connect fails.
pub async fn connect_all(load: &LoadClient, uris: &[BunkerUri]) {
    let clients = load.clients();
    let mut pending = tokio::task::JoinSet::new();
    for (i, uri) in uris.iter().enumerate() {
        let (load, bunker) = (load.clone(), uri.signer);
        let secret = uri.secret.clone().unwrap_or_default();
        pending.spawn(async move {
            load.connect(i % clients, bunker, &secret, Duration::from_secs(30))
                .await
        });
        if pending.len() >= 16 {
            if let Some(done) = pending.join_next().await {
                done.expect("connect task").expect("connect");
            }
        }
    }
    while let Some(done) = pending.join_next().await {
        done.expect("connect task").expect("connect");
    }
}

/// Accepts connections for `relay` on a loopback port with `TCP_NODELAY` set
/// (`keycast_nip46::testing::serve_relay`), and returns its URL.
///
/// # Panics
/// If no loopback port can be bound.
pub async fn serve_relay_nodelay(relay: LocalRelay) -> RelayUrl {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(keycast_nip46::testing::serve_relay(listener, relay));
    RelayUrl::parse(&format!("ws://{addr}")).expect("url")
}
