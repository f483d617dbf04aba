//! The floor of a NIP-46 request (issue 21), alone: `keycast_benches::floor` for
//! `sign_event` and `nip44_encrypt`, next to the raw BIP-340 signature on one thread in
//! the same run. The median of [`ROUNDS`] rounds is reported, in microseconds and in raw
//! signatures. `hot_path` measures the same floor in the run that measures the server.
//!
//! `cargo bench -p keycast-benches --bench nip46_floor`; under `cargo test` a short smoke
//! run checks that replies decrypt to correctly signed answers.

use std::time::Duration;

use keycast_benches::floor::{Floor, Method};

/// Distinct requests per round.
const REQUESTS: usize = 4_000;
/// Rounds; the median is reported.
const ROUNDS: usize = 5;

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    let (requests, rounds, baseline) = if bench {
        (REQUESTS, ROUNDS, Duration::from_secs(2))
    } else {
        (50, 1, Duration::from_millis(100))
    };
    let floor = Floor::new();
    let before = keycast_benches::raw_sign_rate(1, baseline);
    let rows: Vec<_> = [Method::SignEvent, Method::Nip44Encrypt]
        .into_iter()
        .map(|m| (m, floor.measure(m, requests, rounds)))
        .collect();
    let after = keycast_benches::raw_sign_rate(1, baseline);
    let signature = Duration::from_secs_f64(2.0 / (before + after));
    println!(
        "raw BIP-340 signature, one thread: {:.0}/s before, {:.0}/s after ({:.1} µs)",
        before,
        after,
        signature.as_secs_f64() * 1e6
    );
    println!();
    println!("| request | floor CPU µs per request (median of {rounds}) | in raw signatures |");
    println!("|---|---:|---:|");
    for (method, t) in rows {
        println!(
            "| {} | {:.1} | {:.2} |",
            method.name(),
            t.as_secs_f64() * 1e6,
            t.as_secs_f64() / signature.as_secs_f64()
        );
    }
}
