//! Counters of the relay service, read by metrics and readiness.

use std::sync::atomic::{AtomicU64, Ordering};

/// Monotonic counters; `snapshot` reads them.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) requests: AtomicU64,
    pub(crate) rejected_hashring: AtomicU64,
    pub(crate) processed: AtomicU64,
    pub(crate) queue_dropped: AtomicU64,
    pub(crate) invalid: AtomicU64,
    pub(crate) replayed: AtomicU64,
    pub(crate) duplicates: AtomicU64,
    pub(crate) panics: AtomicU64,
    pub(crate) queue_wait_micros: AtomicU64,
    pub(crate) replies_refused: AtomicU64,
}

pub(crate) fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// A point-in-time copy of the service's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BunkerStats {
    /// Kind-24133 events received (after the relay pool's own de-duplication).
    pub requests: u64,
    /// Requests owned by another instance and ignored.
    pub rejected_hashring: u64,
    /// Requests answered.
    pub processed: u64,
    /// Requests refused because the queue was full.
    pub queue_dropped: u64,
    /// Requests dropped as unusable (bad signature, unknown bunker, undecryptable, no id).
    pub invalid: u64,
    /// Requests outside the `created_at` window.
    pub replayed: u64,
    /// Requests seen before (same event id).
    pub duplicates: u64,
    /// Handler panics caught (the worker survived).
    pub panics: u64,
    /// Total time requests waited in the queue, in microseconds.
    pub queue_wait_micros: u64,
    /// Replies a relay answered with `OK false` (rate limits, policy). Replies are sent
    /// without waiting for `OK`, so this is the only trace of a refused reply.
    pub replies_refused: u64,
    /// Requests waiting now.
    pub queue_depth: usize,
    /// Queue capacity.
    pub queue_capacity: usize,
}

impl Counters {
    pub(crate) fn snapshot(&self, queue_depth: usize, queue_capacity: usize) -> BunkerStats {
        let r = |c: &AtomicU64| c.load(Ordering::Relaxed);
        BunkerStats {
            requests: r(&self.requests),
            rejected_hashring: r(&self.rejected_hashring),
            processed: r(&self.processed),
            queue_dropped: r(&self.queue_dropped),
            invalid: r(&self.invalid),
            replayed: r(&self.replayed),
            duplicates: r(&self.duplicates),
            panics: r(&self.panics),
            queue_wait_micros: r(&self.queue_wait_micros),
            replies_refused: r(&self.replies_refused),
            queue_depth,
            queue_capacity,
        }
    }
}
