//! Key manager call counts and latency, fed by keycast-kms's observer hook.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use keycast_kms::{CallOutcome, KmsObserver};

/// Counts every provider call attempt (the local key manager makes none).
#[derive(Debug, Default)]
pub struct KmsMetrics {
    calls: AtomicU64,
    failures: AtomicU64,
    micros: AtomicU64,
}

/// A point-in-time copy.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct KmsSnapshot {
    /// Attempts made.
    pub calls: u64,
    /// Attempts that failed (transient or permanent).
    pub failures: u64,
    /// Total time spent, in seconds.
    pub seconds: f64,
}

impl KmsMetrics {
    /// Reads the counters.
    pub fn snapshot(&self) -> KmsSnapshot {
        KmsSnapshot {
            calls: self.calls.load(Ordering::Relaxed),
            failures: self.failures.load(Ordering::Relaxed),
            seconds: self.micros.load(Ordering::Relaxed) as f64 / 1e6,
        }
    }
}

impl KmsObserver for KmsMetrics {
    fn call(
        &self,
        backend: &'static str,
        op: &'static str,
        elapsed: Duration,
        outcome: CallOutcome,
    ) {
        self.calls.fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        self.micros.fetch_add(micros, Ordering::Relaxed);
        if outcome != CallOutcome::Ok {
            self.failures.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(backend, op, ?outcome, "key manager call failed");
        }
    }
}
