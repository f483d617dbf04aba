//! Counters of the relay service, read by metrics and readiness.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the queue-wait histogram buckets, in microseconds; a last, unbounded
/// bucket follows. Prometheus-style `le` buckets are their running sums.
pub const QUEUE_WAIT_BUCKETS_MICROS: [u64; 10] = [
    100, 250, 1_000, 2_500, 10_000, 25_000, 100_000, 250_000, 1_000_000, 5_000_000,
];
const BUCKETS: usize = QUEUE_WAIT_BUCKETS_MICROS.len() + 1;

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
    pub(crate) queue_wait: [AtomicU64; BUCKETS],
    pub(crate) approvals_resumed: AtomicU64,
    pub(crate) approvals_expired: AtomicU64,
    pub(crate) claims_lost: AtomicU64,
    pub(crate) rerouted: AtomicU64,
    pub(crate) unknown_bunker: AtomicU64,
    pub(crate) limited_client: AtomicU64,
    pub(crate) limited_bunker: AtomicU64,
    pub(crate) limited_unbound_client: AtomicU64,
    pub(crate) limited_unbound_bunker: AtomicU64,
    pub(crate) limited_unbound: AtomicU64,
    pub(crate) pairings_refused: AtomicU64,
    pub(crate) reqs_sent: AtomicU64,
    pub(crate) req_bytes: AtomicU64,
    pub(crate) reqs_refused: AtomicU64,
    pub(crate) req_shrinks: AtomicU64,
}

pub(crate) fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

impl Counters {
    /// Records how long a request waited for a worker.
    pub(crate) fn waited(&self, wait: Duration) {
        let micros = u64::try_from(wait.as_micros()).unwrap_or(u64::MAX);
        self.queue_wait_micros.fetch_add(micros, Ordering::Relaxed);
        let bucket = QUEUE_WAIT_BUCKETS_MICROS
            .iter()
            .position(|&le| micros <= le)
            .unwrap_or(BUCKETS - 1);
        bump(&self.queue_wait[bucket]);
    }
}

/// A point-in-time copy of the service's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BunkerStats {
    /// Kind-24133 events received (after the relay pool's own de-duplication).
    pub requests: u64,
    /// Requests owned by another instance and ignored (dropped at intake, or on arrival
    /// while routing was not trusted).
    pub rejected_hashring: u64,
    /// Requests answered.
    pub processed: u64,
    /// Requests refused because the queue was full.
    pub queue_dropped: u64,
    /// Requests dropped as unusable (no `#p`, authorization gone meanwhile, undecryptable,
    /// no id). Requests to unknown bunker keys are `unknown_bunker`.
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
    /// Requests per queue-wait bucket ([`QUEUE_WAIT_BUCKETS_MICROS`], then the rest).
    pub queue_wait_histogram: [u64; BUCKETS],
    /// Requests answered `auth_url` and waiting for a human's approval now.
    pub approvals_pending: usize,
    /// Waiting requests answered after approval (or a final refusal).
    pub approvals_resumed: u64,
    /// Waiting requests given up after the approval timeout.
    pub approvals_expired: u64,
    /// Requests this instance routed to itself but another instance had claimed: while a
    /// cluster's ring changes, or kept requests re-routed after their owner answered them.
    pub claims_lost: u64,
    /// Requests first left to another instance, then taken over after a ring change
    /// because nobody had claimed them (their owner died, or was not yet known here).
    pub rerouted: u64,
    /// Other instances' requests kept now, in case their owner changes.
    pub parked: usize,
    /// Requests to keys this instance stands by for, kept raw as they arrived (neither
    /// parsed nor verified, nor counted in `requests`, unless ownership moves here).
    pub standby_kept: u64,
    /// Bunker keys this instance answers now whoever owns them, because it handed out
    /// their URI within the last 10 s (in a cluster, they cost a claim on both sides).
    pub pinned: usize,
    /// Requests waiting now.
    pub queue_depth: usize,
    /// Queue capacity.
    pub queue_capacity: usize,
    /// Requests to a bunker key that is no active authorization's, dropped at intake.
    pub unknown_bunker: u64,
    /// Requests dropped at intake by `client_limit` (a bound client over its rate).
    pub limited_client: u64,
    /// Requests dropped at intake by `bunker_limit`.
    pub limited_bunker: u64,
    /// Requests from unbound clients dropped at intake by `unbound_client_limit`.
    pub limited_unbound_client: u64,
    /// Requests from unbound clients dropped at intake by `unbound_bunker_limit`.
    pub limited_unbound_bunker: u64,
    /// Requests from unbound clients dropped at intake by `unbound_limit`.
    pub limited_unbound: u64,
    /// Events from clients bound to no authorization dropped as they arrived, over
    /// `unbound_client_limit`, before the relay pool parsed or verified them.
    pub limited_on_arrival: u64,
    /// Keys the intake and pairing limiters track now (bounded by `limiter_max_keys` each).
    pub limiter_keys: usize,
    /// Times a limiter tracked too many keys and was reset.
    pub limiter_resets: u64,
    /// Relay connection attempts refused by the outbound relay policy.
    pub relays_refused: u64,
    /// Pairings refused (relay policy, relay caps, or the account's pairing rate).
    pub pairings_refused: u64,
    /// Subscription `REQ`s sent (one per changed shard per relay).
    pub reqs_sent: u64,
    /// Bytes of those `REQ`s.
    pub req_bytes: u64,
    /// Our `REQ`s a relay refused (`CLOSED`, or a `NOTICE` about size or count).
    pub reqs_refused: u64,
    /// Times a relay's keys were split into smaller `REQ`s after a refusal.
    pub req_shrinks: u64,
    /// Active authorizations the subscriptions cover.
    pub subscribed_authorizations: usize,
    /// Subscription `REQ`s open, over all relays.
    pub open_reqs: usize,
    /// Connection sets besides the main one, opened because a relay takes fewer `REQ`s
    /// per connection than the bunker needs.
    pub extra_lanes: usize,
}

impl BunkerStats {
    /// Requests dropped at intake by any rate limit.
    pub fn limited(&self) -> u64 {
        self.limited_client
            + self.limited_bunker
            + self.limited_unbound_client
            + self.limited_unbound_bunker
            + self.limited_unbound
            + self.limited_on_arrival
    }
}

impl Counters {
    pub(crate) fn snapshot(
        &self,
        queue_depth: usize,
        queue_capacity: usize,
        approvals_pending: usize,
        parked: usize,
    ) -> BunkerStats {
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
            queue_wait_histogram: std::array::from_fn(|i| r(&self.queue_wait[i])),
            approvals_pending,
            approvals_resumed: r(&self.approvals_resumed),
            approvals_expired: r(&self.approvals_expired),
            claims_lost: r(&self.claims_lost),
            rerouted: r(&self.rerouted),
            parked,
            standby_kept: 0,
            pinned: 0,
            queue_depth,
            queue_capacity,
            unknown_bunker: r(&self.unknown_bunker),
            limited_client: r(&self.limited_client),
            limited_bunker: r(&self.limited_bunker),
            limited_unbound_client: r(&self.limited_unbound_client),
            limited_unbound_bunker: r(&self.limited_unbound_bunker),
            limited_unbound: r(&self.limited_unbound),
            limited_on_arrival: 0,
            limiter_keys: 0,
            limiter_resets: 0,
            relays_refused: 0,
            pairings_refused: r(&self.pairings_refused),
            reqs_sent: r(&self.reqs_sent),
            req_bytes: r(&self.req_bytes),
            reqs_refused: r(&self.reqs_refused),
            req_shrinks: r(&self.req_shrinks),
            subscribed_authorizations: 0,
            open_reqs: 0,
            extra_lanes: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_waits_land_in_their_buckets() {
        let c = Counters::default();
        c.waited(Duration::from_micros(50));
        c.waited(Duration::from_micros(100));
        c.waited(Duration::from_micros(101));
        c.waited(Duration::from_secs(60));
        let s = c.snapshot(0, 1, 0, 0);
        assert_eq!(s.queue_wait_histogram[0], 2, "<= 100 us, bound inclusive");
        assert_eq!(s.queue_wait_histogram[1], 1, "<= 250 us");
        assert_eq!(
            s.queue_wait_histogram[BUCKETS - 1],
            1,
            "beyond the last bound"
        );
        assert_eq!(s.queue_wait_histogram.iter().sum::<u64>(), 4);
        assert_eq!(s.queue_wait_micros, 50 + 100 + 101 + 60_000_000);
    }
}
