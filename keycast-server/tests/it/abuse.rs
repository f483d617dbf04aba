//! The abuse-resistance suite (issue 18): what an outsider or a fresh account can try
//! against one instance, each attack bounded in count and time and aimed at 127.0.0.1
//! only. Every case asserts that the attacker is limited and that others keep being
//! served. `docs/SECURITY.md` maps each property to its case here.
//!
//! Cases that measure print one `ABUSE` line each ([`report`]):
//! `scripts/reliability_report.py` turns them into the attack table of
//! `docs/RELIABILITY.md`.

mod accounts;
mod listener;
mod master_key;
mod relays;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Resident bytes of process `pid` (0 when it cannot be read).
pub fn rss_bytes(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |kib| kib * 1024)
}

/// Descriptors process `pid` holds now.
pub fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

/// The highest resident memory and descriptor count of a process while it is watched,
/// sampled every 20 ms on a thread of its own.
#[derive(Debug)]
pub struct Peaks {
    stop: Arc<AtomicBool>,
    sampler: std::thread::JoinHandle<(u64, usize)>,
}

impl Peaks {
    /// Starts sampling process `pid`.
    pub fn watch(pid: u32) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let sampler = std::thread::spawn(move || {
            let (mut rss, mut fds) = (0, 0);
            loop {
                rss = rss.max(rss_bytes(pid));
                fds = fds.max(open_fds(pid));
                if stopped.load(Ordering::Relaxed) {
                    return (rss, fds);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        Self { stop, sampler }
    }

    /// Peak resident bytes and descriptors.
    pub fn stop(self) -> (u64, usize) {
        self.stop.store(true, Ordering::Relaxed);
        self.sampler.join().expect("sampler")
    }
}

/// The 99th percentile (nearest rank).
pub fn p99(latencies: &[Duration]) -> Duration {
    let mut sorted = latencies.to_vec();
    sorted.sort();
    let i = (sorted.len() * 99).div_ceil(100).saturating_sub(1);
    sorted.get(i).copied().unwrap_or_default()
}

/// One row of the attack table: the attack, what held, the server's peak RSS and
/// descriptors during it, and the p99 of what others were served meanwhile.
/// `p99` is `None` where no client was measured alongside.
pub fn report(attack: &str, held: &str, peaks: (u64, usize), p99: Option<Duration>) {
    let p99 = p99.map_or("—".to_owned(), |p| {
        format!("{:.1}", p.as_secs_f64() * 1000.0)
    });
    println!(
        "ABUSE\t{attack}\t{held}\t{:.0}\t{}\t{p99}",
        peaks.0 as f64 / (1024.0 * 1024.0),
        peaks.1,
    );
}
