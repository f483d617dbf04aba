//! Settings of the relay service.

use std::num::NonZeroU32;
use std::time::Duration;

use governor::Quota;
use keycast_core::nostr::RelayUrl;

use crate::{Error, Result};

/// A token bucket: up to `burst` at once, refilled at `per_second` (a fraction for less
/// than one a second, e.g. `1.0 / 60.0` for one a minute).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    /// Sustained rate, per second: 0.001 to 1,000,000.
    pub per_second: f64,
    /// How many may come at once: 1 to 1,000,000.
    pub burst: u32,
}

impl RateLimit {
    /// `burst` at once, then `per_second`.
    pub const fn new(per_second: f64, burst: u32) -> Self {
        Self { per_second, burst }
    }

    /// The governor quota, or why these values cannot be used (naming `setting`).
    pub(crate) fn quota(&self, setting: &'static str) -> Result<Quota> {
        let bad = |reason: String| Error::InvalidConfig { setting, reason };
        if !(self.per_second.is_finite() && (0.001..=1_000_000.0).contains(&self.per_second)) {
            return Err(bad(format!(
                "rate {} per second: must be 0.001 to 1000000",
                self.per_second
            )));
        }
        let burst = NonZeroU32::new(self.burst)
            .filter(|b| b.get() <= 1_000_000)
            .ok_or_else(|| bad(format!("burst {}: must be 1 to 1000000", self.burst)))?;
        let period = Duration::from_secs_f64(1.0 / self.per_second);
        Quota::with_period(period)
            .map(|q| q.allow_burst(burst))
            .ok_or_else(|| bad("rate too high".into()))
    }
}

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

    // Intake limits (see the `service` module docs). Checked before a request is queued,
    // so before any decrypt or signature of ours; requests over a limit are dropped
    // without a reply and counted in `BunkerStats::limited_*`.
    /// Requests from one client key bound to the bunker it writes to. Default 500/s,
    /// burst 2,000 (one app key may serve many bunkers: a benchmark client drives ~300/s).
    pub client_limit: RateLimit,
    /// Requests to one bunker key, from all its clients. Default 200/s, burst 2,000.
    pub bunker_limit: RateLimit,
    /// Requests from one client key not bound to the bunker it writes to (they can only be
    /// a `connect`, whose decrypt and reply cost crypto). Default 10/s, burst 100 (a client
    /// pairing with dozens of bunkers at once, as the cluster tests do).
    pub unbound_client_limit: RateLimit,
    /// Requests from unbound clients to one bunker key (a secret is single-use, so a real
    /// client sends one, or a few retries). Default one per 5 s, burst 10.
    pub unbound_bunker_limit: RateLimit,
    /// Requests from unbound clients over all bunkers: the crypto spent on strangers.
    /// Default 100/s, burst 500.
    pub unbound_limit: RateLimit,
    /// Keys each per-key limiter tracks at most. Keys whose bucket is full again are
    /// forgotten every second; a limiter still over this is reset (everyone's bucket full
    /// again). Default 100,000 (a few MiB per limiter).
    pub limiter_max_keys: usize,

    // Relays of nostrconnect:// pairings (see `relay_policy.rs`).
    /// Hosts (names or IP addresses) that relays other than `relays` may be on; any address
    /// they resolve to is allowed. `None` (the default): any host, but only public
    /// addresses (no loopback, private, link-local, CGNAT, metadata … addresses).
    pub relay_allow_list: Option<Vec<String>>,
    /// Relays besides `relays` one `nostrconnect://` URI may name. Default 3.
    pub max_relays_per_uri: usize,
    /// Distinct relays besides `relays` over one account's active authorizations.
    /// Default 10.
    pub max_relays_per_account: usize,
    /// Pairings per account (tenant and user). Default 5 a minute, burst 5.
    pub pairing_limit: RateLimit,
    /// How often the subscription is compared with a full listing of the active
    /// authorizations, as a safety net: changes arrive one by one
    /// ([`crate::Bunker::authorizations_changed`]) and expiries need no listing, so this
    /// only catches what no caller reported. It re-sends only what differs. Default 600 s.
    pub refresh_every: Duration,
    /// Largest subscription `REQ` sent to a relay, in bytes; the bunker keys are split
    /// over as many `REQ`s as needed. Relays cap a message (strfry 128 KiB, nostr-rs-relay
    /// 128 KiB by default); a relay that refuses one anyway gets smaller ones. 1,024 to
    /// 1,048,576; default 32,768 (about 480 keys).
    pub req_max_bytes: usize,
    /// Most subscription `REQ`s on one connection to a relay; more open further
    /// connections to it. Relays cap this (nostr-rs-relay 32, strfry 200); the default, 20,
    /// leaves room for the stall probe and for the one extra subscription an update holds
    /// for a moment. A relay that refuses anyway gets fewer per connection. 1 to 10,000.
    pub subscriptions_per_connection: usize,
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
            client_limit: RateLimit::new(500.0, 2_000),
            bunker_limit: RateLimit::new(200.0, 2_000),
            unbound_client_limit: RateLimit::new(10.0, 100),
            unbound_bunker_limit: RateLimit::new(0.2, 10),
            unbound_limit: RateLimit::new(100.0, 500),
            limiter_max_keys: 100_000,
            relay_allow_list: None,
            max_relays_per_uri: 3,
            max_relays_per_account: 10,
            pairing_limit: RateLimit::new(5.0 / 60.0, 5),
            refresh_every: Duration::from_secs(600),
            req_max_bytes: 32_768,
            subscriptions_per_connection: 20,
        }
    }

    /// Refuses values that cannot work, naming the field.
    pub(crate) fn validate(&self) -> Result<()> {
        for (setting, limit) in [
            ("client_limit", self.client_limit),
            ("bunker_limit", self.bunker_limit),
            ("unbound_client_limit", self.unbound_client_limit),
            ("unbound_bunker_limit", self.unbound_bunker_limit),
            ("unbound_limit", self.unbound_limit),
            ("pairing_limit", self.pairing_limit),
        ] {
            limit.quota(setting)?;
        }
        let bad = |setting, reason: &str| {
            Err(Error::InvalidConfig {
                setting,
                reason: reason.to_owned(),
            })
        };
        if self.limiter_max_keys == 0 {
            return bad("limiter_max_keys", "must be at least 1");
        }
        if self.refresh_every < Duration::from_secs(1) {
            return bad("refresh_every", "must be at least 1 s");
        }
        if !(1_024..=1_048_576).contains(&self.req_max_bytes) {
            return bad("req_max_bytes", "must be 1024 to 1048576");
        }
        if !(1..=10_000).contains(&self.subscriptions_per_connection) {
            return bad("subscriptions_per_connection", "must be 1 to 10000");
        }
        if let Some(hosts) = &self.relay_allow_list {
            if hosts.iter().any(|h| h.trim().is_empty()) {
                return bad("relay_allow_list", "an entry is empty");
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_bad_limits_name_the_field() {
        let ok = BunkerConfig::new(Vec::new());
        ok.validate().expect("defaults");
        type Spoil = fn(&mut BunkerConfig);
        let cases: [(Spoil, &str); 9] = [
            (|c| c.client_limit.per_second = 0.0, "client_limit"),
            (|c| c.unbound_limit.burst = 0, "unbound_limit"),
            (|c| c.bunker_limit.per_second = f64::NAN, "bunker_limit"),
            (|c| c.pairing_limit.burst = 2_000_000, "pairing_limit"),
            (|c| c.limiter_max_keys = 0, "limiter_max_keys"),
            (|c| c.req_max_bytes = 1_000, "req_max_bytes"),
            (|c| c.req_max_bytes = 2 << 20, "req_max_bytes"),
            (
                |c| c.subscriptions_per_connection = 0,
                "subscriptions_per_connection",
            ),
            (
                |c| c.relay_allow_list = Some(vec![" ".into()]),
                "relay_allow_list",
            ),
        ];
        for (spoil, field) in cases {
            let mut c = ok.clone();
            spoil(&mut c);
            match c.validate() {
                Err(Error::InvalidConfig { setting, .. }) => assert_eq!(setting, field),
                other => panic!("{field}: {other:?}"),
            }
        }
    }

    #[test]
    fn a_rate_below_one_a_second_is_a_period() {
        let q = RateLimit::new(0.2, 10).quota("x").expect("quota");
        assert_eq!(q.replenish_interval(), Duration::from_secs(5));
        assert_eq!(q.burst_size().get(), 10);
    }
}
