//! Relay connections: reconnect with exponential backoff, stall probes, and the state that
//! readiness and metrics read.
//!
//! The relay pool's own reconnect is turned off (its schedule is linear), so a lost relay
//! ends up `Terminated` and this supervisor reconnects it. The pool still re-sends our
//! subscription on every new connection. The pool pings only every 55 s, so a relay that
//! keeps the socket open but stops answering is found by a probe: a `REQ` with `limit 0`
//! must be answered (`EOSE` or `CLOSED`) within [`super::BunkerConfig::stall_timeout`], or
//! the connection is dropped and reconnected.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use keycast_core::nostr::{Kind, RelayUrl};
use nostr_sdk::prelude::{
    Client, ClientMessage, Filter, Keys, Relay, RelayMessage, RelayNotification, RelayStatus,
    SubscriptionId,
};
use rand::Rng;

/// Longest wait between reconnect attempts.
pub(crate) const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// How often the supervisor looks at the relays.
const TICK: Duration = Duration::from_millis(200);
/// A connection that lasted this long resets the backoff.
const STABLE: Duration = Duration::from_secs(30);

/// How one relay connection is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelayConnection {
    /// Connected; requests can arrive.
    Connected,
    /// A connection attempt is under way.
    Connecting,
    /// Not connected; a reconnect is scheduled.
    Disconnected,
}

/// One relay as readiness and metrics see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayState {
    /// The relay.
    pub url: RelayUrl,
    /// Its connection now.
    pub connection: RelayConnection,
    /// Reconnect attempts started since the service began.
    pub reconnects: u64,
    /// Failed attempts in a row (the backoff exponent).
    pub failures: u32,
    /// Connections dropped because the relay stopped answering probes.
    pub stalls: u64,
}

#[derive(Debug, Default)]
struct Track {
    failures: u32,
    next_attempt: Option<Instant>,
    connected_since: Option<Instant>,
    last_probe: Option<Instant>,
    probing: bool,
    reconnects: u64,
    stalls: u64,
}

/// The wait before reconnect attempt `failures + 1`: 1 s, 2 s, 4 s … capped at 60 s, each
/// shortened by a random 0–25 % so instances that lost a relay together do not return in
/// lockstep.
pub(crate) fn backoff(base: Duration, failures: u32) -> Duration {
    let full = base
        .saturating_mul(1u32.checked_shl(failures.min(16)).unwrap_or(u32::MAX))
        .min(MAX_BACKOFF);
    full.mul_f64(1.0 - rand::thread_rng().gen_range(0.0..0.25))
}

/// Watches every relay in the pool; cheap to share.
#[derive(Debug, Default)]
pub(crate) struct Supervisor {
    tracks: Mutex<HashMap<RelayUrl, Track>>,
}

/// Timing settings, copied from the service config.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Pace {
    pub(crate) reconnect_after: Duration,
    pub(crate) probe_every: Duration,
    pub(crate) stall_timeout: Duration,
}

impl Supervisor {
    /// Runs until aborted.
    pub(crate) async fn run(self: Arc<Self>, client: Client, pace: Pace) {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let relays = client.relays().await;
            // Relays removed from the pool (no active authorization uses them) are
            // forgotten, so they are never retried.
            self.tracks
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .retain(|url, _| relays.contains_key(url));
            for (url, relay) in relays {
                if let Some(probe) = self.step(&url, &relay, pace) {
                    let me = self.clone();
                    tokio::spawn(async move { me.probe(url, relay, probe).await });
                }
            }
        }
    }

    /// Advances one relay's state; returns a probe timeout when a probe is due.
    fn step(&self, url: &RelayUrl, relay: &Relay, pace: Pace) -> Option<Duration> {
        let now = Instant::now();
        let mut tracks = self.tracks.lock().unwrap_or_else(PoisonError::into_inner);
        let t = tracks.entry(url.clone()).or_default();
        match relay.status() {
            RelayStatus::Connected => {
                let since = *t.connected_since.get_or_insert(now);
                if now.duration_since(since) >= STABLE {
                    t.failures = 0;
                }
                let due = t
                    .last_probe
                    .is_none_or(|p| now.duration_since(p) >= pace.probe_every);
                if due && !t.probing {
                    t.last_probe = Some(now);
                    t.probing = true;
                    return Some(pace.stall_timeout);
                }
            }
            RelayStatus::Terminated | RelayStatus::Disconnected => {
                if let Some(since) = t.connected_since.take() {
                    if now.duration_since(since) >= STABLE {
                        t.failures = 0;
                    }
                    t.last_probe = None;
                }
                match t.next_attempt {
                    None => {
                        t.next_attempt = Some(now + backoff(pace.reconnect_after, t.failures));
                        t.failures = t.failures.saturating_add(1);
                    }
                    Some(at) if now >= at && relay.status() == RelayStatus::Terminated => {
                        t.next_attempt = None;
                        t.reconnects += 1;
                        tracing::info!(relay = %url, attempt = t.failures, "reconnecting to relay");
                        relay.connect();
                    }
                    Some(_) => {}
                }
            }
            // Initialized, Pending, Connecting; Banned and Sleeping are not used here.
            _ => {}
        }
        None
    }

    /// Sends a `REQ` that any live relay answers at once; drops the connection if it
    /// stays unanswered for `timeout`.
    async fn probe(&self, url: RelayUrl, relay: Relay, timeout: Duration) {
        let id = SubscriptionId::generate();
        // A random pubkey: matches nothing, so the answer is just EOSE.
        let filter = Filter::new()
            .kind(Kind::NostrConnect)
            .pubkey(Keys::generate().public_key())
            .limit(0);
        let mut notes = relay.notifications();
        let answered = relay
            .send_msg(ClientMessage::req(id.clone(), filter))
            .is_ok()
            && tokio::time::timeout(timeout, async {
                while let Ok(n) = notes.recv().await {
                    if let RelayNotification::Message { message } = n {
                        match message {
                            RelayMessage::EndOfStoredEvents(sid) if *sid == id => return true,
                            RelayMessage::Closed {
                                subscription_id, ..
                            } if *subscription_id == id => return true,
                            _ => {}
                        }
                    }
                }
                false
            })
            .await
            .unwrap_or(false);
        let still_connected = relay.status() == RelayStatus::Connected;
        let mut tracks = self.tracks.lock().unwrap_or_else(PoisonError::into_inner);
        let t = tracks.entry(url.clone()).or_default();
        t.probing = false;
        if answered {
            drop(tracks);
            let _ = relay.send_msg(ClientMessage::close(id));
        } else if still_connected {
            t.stalls += 1;
            drop(tracks);
            tracing::warn!(relay = %url, "relay stopped answering; reconnecting");
            relay.disconnect();
        }
    }

    /// Every relay in the pool, with its connection and counters.
    pub(crate) async fn states(&self, client: &Client) -> Vec<RelayState> {
        let relays = client.relays().await;
        let tracks = self.tracks.lock().unwrap_or_else(PoisonError::into_inner);
        let mut out: Vec<RelayState> = relays
            .iter()
            .map(|(url, relay)| {
                let t = tracks.get(url);
                RelayState {
                    url: url.clone(),
                    connection: match relay.status() {
                        RelayStatus::Connected => RelayConnection::Connected,
                        RelayStatus::Pending | RelayStatus::Connecting => {
                            RelayConnection::Connecting
                        }
                        _ => RelayConnection::Disconnected,
                    },
                    reconnects: t.map_or(0, |t| t.reconnects),
                    failures: t.map_or(0, |t| t.failures),
                    stalls: t.map_or(0, |t| t.stalls),
                }
            })
            .collect();
        out.sort_by(|a, b| a.url.as_str().cmp(b.url.as_str()));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_the_base_to_the_cap_with_downward_jitter() {
        let base = Duration::from_secs(1);
        for failures in 0..40 {
            let expected = Duration::from_secs(1u64 << failures.min(6)).min(MAX_BACKOFF);
            for _ in 0..50 {
                let d = backoff(base, failures);
                assert!(d <= expected, "attempt {failures}: {d:?} > {expected:?}");
                assert!(
                    d >= expected.mul_f64(0.75),
                    "attempt {failures}: {d:?} < 75 % of {expected:?}"
                );
            }
        }
        let spread: std::collections::HashSet<_> = (0..50).map(|_| backoff(base, 3)).collect();
        assert!(spread.len() > 1, "jitter varies the wait");
    }
}
