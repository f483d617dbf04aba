//! A relay inside the server, for single-machine use when no relay is configured.
//!
//! It accepts only NIP-46 events (kind 24133), which relays do not store, so it holds
//! nothing and cannot be used as a general relay by whoever can reach it.

use std::net::SocketAddr;

use keycast_core::nostr::{Event, Kind, RelayUrl};
use nostr_relay_builder::builder::{PolicyResult, RateLimit, WritePolicy};
use nostr_relay_builder::prelude::{BoxedFuture, LocalRelay, RelayBuilder};

use crate::error::{Result, ServerError};

#[derive(Debug)]
struct OnlyNip46;

impl WritePolicy for OnlyNip46 {
    fn admit_event<'a>(
        &'a self,
        event: &'a Event,
        _: &'a SocketAddr,
    ) -> BoxedFuture<'a, PolicyResult> {
        Box::pin(async move {
            if event.kind == Kind::NostrConnect {
                PolicyResult::Accept
            } else {
                PolicyResult::Reject("blocked: this relay carries NIP-46 (kind 24133) only".into())
            }
        })
    }
}

/// The running relay; dropping it does not stop it, call [`EmbeddedRelay::shutdown`].
#[derive(Debug)]
pub struct EmbeddedRelay {
    relay: LocalRelay,
    /// Where clients connect.
    pub url: RelayUrl,
}

impl EmbeddedRelay {
    /// Starts listening on `addr`.
    pub async fn start(addr: SocketAddr) -> Result<Self> {
        let builder = RelayBuilder::default()
            .addr(addr.ip())
            .port(addr.port())
            .write_policy(OnlyNip46)
            // The default (60 events a minute per connection) would throttle the bunker,
            // which sends every reply over one connection.
            .rate_limit(RateLimit {
                max_reqs: 1_000,
                notes_per_minute: 600_000,
            });
        let relay = LocalRelay::new(builder);
        relay
            .run()
            .await
            .map_err(|e| ServerError::Relay(format!("cannot listen on {addr}: {e}")))?;
        let url = relay.url().await;
        Ok(Self { relay, url })
    }

    /// Stops accepting and closes connections.
    pub fn shutdown(&self) {
        self.relay.shutdown();
    }
}
