//! The baseline for load tests: raw secp256k1 Schnorr signs per second on N threads for S
//! seconds (no keycast code). Prints one line: `<signs per second>`.
//!
//! Run with: cargo bench -p keycast-benches --bench raw_sign_rate -- --threads 2 --seconds 10

use std::time::Duration;

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
    let threads = usize::try_from(threads).unwrap_or(1);
    let rate = keycast_benches::raw_sign_rate(threads, Duration::from_secs(seconds));
    println!("{rate:.0}");
}
