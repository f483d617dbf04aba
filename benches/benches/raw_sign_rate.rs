//! The baseline for load tests: raw secp256k1 Schnorr signs per second on N threads for S
//! seconds (no keycast code). Prints one line: `<signs per second>`.
//!
//! Run with: cargo bench -p keycast-benches --bench raw_sign_rate -- --threads 2 --seconds 10

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nostr::secp256k1::{Message, SECP256K1};
use nostr::Keys;

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    // `cargo test --benches` runs this once quickly; `cargo bench` passes `--bench`.
    let quick = !std::env::args().any(|a| a == "--bench");
    let threads = arg("--threads", 2);
    let seconds = if quick { 1 } else { arg("--seconds", 10) };
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
    std::thread::sleep(Duration::from_secs(seconds));
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        let _ = w.join();
    }
    let rate = total.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64();
    println!("{rate:.0}");
}
