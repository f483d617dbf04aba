//! Settings of the relay service.

use std::time::Duration;

use keycast_core::nostr::RelayUrl;

/// How the bunker service connects and how much work it accepts.
#[derive(Debug, Clone)]
pub struct BunkerConfig {
    /// Relays to listen and reply on.
    pub relays: Vec<RelayUrl>,
    /// Requests that may wait for a worker; beyond that clients get an "overloaded" reply.
    pub queue_capacity: usize,
    /// Concurrent request workers. Default 2 × cores, at least 8.
    pub workers: usize,
    /// Requests older than this are refused as replays.
    pub max_age: Duration,
    /// Requests dated further in the future than this are refused.
    pub max_skew: Duration,
    /// How long a seen event id is remembered for de-duplication (longer than `max_age`).
    pub dedupe_ttl: Duration,
    /// First wait before reconnecting to a lost relay; it doubles with each failed attempt
    /// up to 60 s, and each wait is shortened by a random 0–25 % (jitter).
    pub reconnect_after: Duration,
    /// How often each connected relay is probed (a `REQ` it must answer).
    pub stall_probe_every: Duration,
    /// A relay that leaves a probe unanswered this long is disconnected and reconnected.
    pub stall_timeout: Duration,
    /// How long a request answered with `auth_url` waits for approval before the client
    /// gets an error instead.
    pub approval_timeout: Duration,
    /// How long start waits for the relays before subscribing anyway. Requests sent before
    /// the subscription reaches a relay are lost (kind 24133 is ephemeral, relays keep
    /// none), so start waits a little; unreachable relays only delay start this long.
    pub connect_timeout: Duration,
}

impl BunkerConfig {
    /// Defaults for the given relays.
    pub fn new(relays: Vec<RelayUrl>) -> Self {
        let cores = std::thread::available_parallelism().map_or(4, |n| n.get());
        Self {
            relays,
            queue_capacity: 4096,
            workers: (2 * cores).max(8),
            max_age: Duration::from_secs(120),
            max_skew: Duration::from_secs(60),
            dedupe_ttl: Duration::from_secs(300),
            reconnect_after: Duration::from_secs(1),
            stall_probe_every: Duration::from_secs(30),
            stall_timeout: Duration::from_secs(10),
            approval_timeout: Duration::from_secs(600),
            connect_timeout: Duration::from_secs(5),
        }
    }
}
