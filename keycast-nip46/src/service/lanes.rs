//! More than one connection to a relay, when its keys need more `REQ`s than it allows
//! per connection.
//!
//! Relays cap the subscriptions of one connection (nostr-rs-relay 32, strfry 200 by
//! default). Shard `n` of a relay is sent on lane `n / subscriptions_per_connection`:
//! lane 0 is the service's main connection (the one replies go out on, and readiness and
//! metrics watch); lanes 1, 2 … are extra connections that only listen.
//!
//! Every extra connection lives in one second relay pool, made when first needed, with
//! its own intake task and reconnect supervisor. A relay pool costs ~7 MiB whatever it
//! holds (nostr-sdk preallocates a 128k-entry verification cache, an event-id LRU and a
//! 4,096-slot notification channel), a relay in it ~0.6 MiB; one pool per lane made
//! extra connections the largest memory cost at 100k authorizations. The pool keys
//! relays by URL, so lane `n` of `wss://relay.example` is the pool's relay
//! `wss://relay.example#keycast-lane-n`: the fragment never leaves the process (the
//! transport drops it, and HTTP never sends one), and notifications name the lane.
//! A lane keeps only the relays that have shards on it.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use keycast_core::nostr::RelayUrl;
use nostr_sdk::prelude::{Client, Relay};
use tokio::task::JoinHandle;

use super::relays::{Pace, Supervisor};
use super::{intake, transport, Shared};

/// What marks lane `n` of a relay in the extra pool: `<relay url>#keycast-lane-<n>`.
const MARK: &str = "#keycast-lane-";

/// The extra pool and its tasks.
struct Pool {
    client: Client,
    tasks: Vec<JoinHandle<()>>,
}

/// The extra lanes (lane 0 is `Shared::client`).
#[derive(Default)]
pub(crate) struct Lanes {
    pool: tokio::sync::Mutex<Option<Pool>>,
    /// The highest lane in use (readable without the lock, for stats).
    count: AtomicUsize,
}

impl std::fmt::Debug for Lanes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lanes").finish_non_exhaustive()
    }
}

/// The extra pool's name for lane `n` (≥ 1) of `relay`.
fn lane_url(relay: &RelayUrl, n: usize) -> Option<RelayUrl> {
    RelayUrl::parse(&format!("{}{MARK}{n}", relay.as_str())).ok()
}

/// The relay and lane an extra pool's relay URL stands for.
pub(crate) fn relay_of(url: &RelayUrl) -> Option<(RelayUrl, usize)> {
    let (relay, n) = url.as_str().rsplit_once(MARK)?;
    Some((RelayUrl::parse(relay).ok()?, n.parse().ok()?))
}

impl Lanes {
    /// The highest extra lane in use (0 when there is none).
    pub(crate) fn extra(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }

    /// Stops the extra pool.
    pub(crate) async fn shutdown(&self) {
        if let Some(pool) = self.pool.lock().await.take() {
            for t in &pool.tasks {
                t.abort();
            }
            pool.client.shutdown().await;
        }
    }

    /// Removes `relay`'s lanes from `first` on (it needs fewer now).
    pub(crate) async fn release(&self, relay: &RelayUrl, first: usize) {
        let pool = self.pool.lock().await;
        let Some(pool) = pool.as_ref() else {
            return;
        };
        let mut highest = 0;
        for url in pool.client.relays().await.into_keys() {
            let Some((of, n)) = relay_of(&url) else {
                continue;
            };
            if of == *relay && n >= first.max(1) {
                let _ = pool.client.pool().force_remove_relay(url).await;
            } else {
                highest = highest.max(n);
            }
        }
        self.count.store(highest, Ordering::Relaxed);
    }
}

impl Shared {
    /// Lane `n` of `relay`, connecting it when new.
    pub(super) async fn lane(self: &Arc<Self>, n: usize, relay: &RelayUrl) -> Option<Relay> {
        let (client, url) = if n == 0 {
            (self.client.clone(), relay.clone())
        } else {
            let mut pool = self.lanes.pool.lock().await;
            let client = pool.get_or_insert_with(|| self.extra_pool()).client.clone();
            (client, lane_url(relay, n)?)
        };
        if let Ok(r) = client.relay(&url).await {
            return Some(r);
        }
        if let Err(e) = client
            .pool()
            .add_relay(url.clone(), self.relay_options.clone())
            .await
        {
            tracing::warn!(relay = %relay, lane = n, error = %e, "cannot add a relay connection");
            return None;
        }
        self.lanes.count.fetch_max(n, Ordering::Relaxed);
        let _ = client.connect_relay(url.clone()).await;
        client.relay(&url).await.ok()
    }

    /// Lane `n` of `relay` if it exists (never makes one).
    pub(super) async fn lane_if_open(&self, n: usize, relay: &RelayUrl) -> Option<Relay> {
        if n == 0 {
            return self.client.relay(relay).await.ok();
        }
        let client = self.lanes.pool.lock().await.as_ref()?.client.clone();
        client.relay(&lane_url(relay, n)?).await.ok()
    }

    fn extra_pool(self: &Arc<Self>) -> Pool {
        tracing::info!("opening extra connections for NIP-46 subscriptions");
        let client = Client::builder()
            .websocket_transport(transport::NoDelayTransport::new(
                self.policy.clone(),
                self.prefilter.clone(),
            ))
            .build();
        let pace = Pace {
            reconnect_after: self.config.reconnect_after,
            probe_every: self.config.stall_probe_every,
            stall_timeout: self.config.stall_timeout,
        };
        let tasks = vec![
            tokio::spawn(intake(self.clone(), client.notifications(), true)),
            tokio::spawn(Arc::new(Supervisor::default()).run(client.clone(), pace)),
        ];
        Pool { client, tasks }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lane_url_names_its_relay_and_lane() {
        for relay in [
            "wss://relay.example",
            "wss://relay.example/",
            "ws://127.0.0.1:7777",
            "wss://relay.example/nostr?x=1",
        ] {
            let relay = RelayUrl::parse(relay).expect("relay");
            for n in [1, 2, 17] {
                let lane = lane_url(&relay, n).expect("lane url");
                assert_ne!(lane, relay);
                assert_eq!(relay_of(&lane), Some((relay.clone(), n)), "{lane}");
            }
            assert_eq!(relay_of(&relay), None);
        }
    }
}
