//! More than one connection to a relay, when its keys need more `REQ`s than it allows
//! per connection.
//!
//! Relays cap the subscriptions of one connection (nostr-rs-relay 32, strfry 200 by
//! default). Shard `n` of a relay is sent on lane `n / subscriptions_per_connection`:
//! lane 0 is the service's main connection (the one replies go out on, and readiness and
//! metrics watch); lanes 1, 2 … are extra connections that only listen, each with its own
//! relay pool, reconnect supervisor and intake task, made when first needed. A lane keeps
//! only the relays that have shards on it.

use std::sync::Arc;

use keycast_core::nostr::RelayUrl;
use nostr_sdk::prelude::Client;
use tokio::task::JoinHandle;

use super::relays::{Pace, Supervisor};
use super::{intake, transport, Shared};

/// One extra connection set.
struct Lane {
    client: Client,
    tasks: Vec<JoinHandle<()>>,
}

/// The extra lanes (lane 0 is `Shared::client`).
#[derive(Default)]
pub(crate) struct Lanes {
    extra: tokio::sync::Mutex<Vec<Lane>>,
    /// `extra.len()`, readable without the lock (stats).
    count: std::sync::atomic::AtomicUsize,
}

impl std::fmt::Debug for Lanes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lanes").finish_non_exhaustive()
    }
}

impl Lanes {
    /// How many extra lanes exist.
    pub(crate) fn extra(&self) -> usize {
        self.count.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Stops every extra lane.
    pub(crate) async fn shutdown(&self) {
        let lanes = std::mem::take(&mut *self.extra.lock().await);
        for lane in lanes {
            for t in &lane.tasks {
                t.abort();
            }
            lane.client.shutdown().await;
        }
    }

    /// Removes `relay` from every extra lane from `first` on (it needs fewer now).
    pub(crate) async fn release(&self, relay: &RelayUrl, first: usize) {
        let lanes = self.extra.lock().await;
        for lane in lanes.iter().skip(first.saturating_sub(1)) {
            if lane.client.relay(relay).await.is_ok() {
                let _ = lane.client.pool().force_remove_relay(relay.clone()).await;
            }
        }
    }
}

impl Shared {
    /// The client of lane `n` with `relay` in its pool (connecting it when new).
    pub(super) async fn lane(self: &Arc<Self>, n: usize, relay: &RelayUrl) -> Option<Client> {
        let client = if n == 0 {
            self.client.clone()
        } else {
            let mut lanes = self.lanes.extra.lock().await;
            while lanes.len() < n {
                let lane = self.new_lane(lanes.len() + 1);
                lanes.push(lane);
                self.lanes
                    .count
                    .store(lanes.len(), std::sync::atomic::Ordering::Relaxed);
            }
            lanes[n - 1].client.clone()
        };
        if client.relay(relay).await.is_err() {
            if let Err(e) = client
                .pool()
                .add_relay(relay.clone(), self.relay_options.clone())
                .await
            {
                tracing::warn!(relay = %relay, lane = n, error = %e, "cannot add a relay connection");
                return None;
            }
            let _ = client.connect_relay(relay.clone()).await;
        }
        Some(client)
    }

    /// The client of lane `n` if it exists (never makes one).
    pub(super) async fn lane_if_open(&self, n: usize) -> Option<Client> {
        if n == 0 {
            return Some(self.client.clone());
        }
        let lanes = self.lanes.extra.lock().await;
        lanes.get(n - 1).map(|l| l.client.clone())
    }

    fn new_lane(self: &Arc<Self>, n: usize) -> Lane {
        tracing::info!(
            lane = n,
            "opening another connection set for NIP-46 subscriptions"
        );
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
            tokio::spawn(intake(self.clone(), client.notifications(), n)),
            tokio::spawn(Arc::new(Supervisor::default()).run(client.clone(), pace)),
        ];
        Lane { client, tasks }
    }
}
