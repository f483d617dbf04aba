//! A relay inside the server, for single-machine use when no relay is configured.
//!
//! It accepts only NIP-46 events (kind 24133), which relays do not store, so it holds
//! nothing and cannot be used as a general relay by whoever can reach it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use keycast_core::nostr::{Event, Kind, RelayUrl};
use keycast_nip46::websocket::upgrade;
use nostr_relay_builder::builder::{PolicyResult, RateLimit, WritePolicy};
use nostr_relay_builder::prelude::{BoxedFuture, LocalRelay, RelayBuilder};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::connections::idle::{Activity, Tracked};
use crate::connections::{ConnectionSettings, Gate, Limits};
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
    accepting: JoinHandle<()>,
    /// Where clients connect.
    pub url: RelayUrl,
    /// The address bound (the one asked for, with port 0 replaced by the port picked).
    pub local_addr: SocketAddr,
}

impl EmbeddedRelay {
    /// Starts listening on `addr` with the default connection limits
    /// ([`ConnectionSettings::default`], caps from the descriptor limit).
    pub async fn start(addr: SocketAddr) -> Result<Self> {
        let limits = ConnectionSettings::default().relay;
        let descriptors = crate::connections::raise_descriptor_limit().unwrap_or(1024);
        let (_, cap) = crate::connections::default_caps(descriptors);
        Self::start_limited(addr, Gate::new(cap, limits.max_per_address), limits).await
    }

    /// Starts listening on `addr`; connections are admitted by `gate` and closed when
    /// idle or slow to upgrade as `limits` says.
    pub async fn start_limited(addr: SocketAddr, gate: Arc<Gate>, limits: Limits) -> Result<Self> {
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
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|e| ServerError::Relay(format!("cannot listen on {addr}: {e}")))?;
        let bound = listener
            .local_addr()
            .map_err(|e| ServerError::Relay(format!("cannot listen on {addr}: {e}")))?;
        let url = RelayUrl::parse(&format!("ws://{bound}"))
            .map_err(|e| ServerError::Relay(format!("relay address {bound}: {e}")))?;
        let accepting = tokio::spawn(accept_limited(listener, relay.clone(), gate, limits));
        Ok(Self {
            relay,
            accepting,
            url,
            local_addr: bound,
        })
    }

    /// Stops accepting and closes connections.
    pub fn shutdown(&self) {
        self.accepting.abort();
        self.relay.shutdown();
    }
}

/// Accepts connections for `relay` with `TCP_NODELAY` set, under `gate` (a refused
/// connection is closed at once), until the task is aborted. A client must finish its
/// WebSocket upgrade within `limits.header_timeout`, and a connection that moves no byte
/// for `limits.idle_timeout` is closed.
///
/// `LocalRelay::run` accepts without `TCP_NODELAY`. The relay answers a client's request
/// with `OK` and a moment later forwards the signer's reply to the same client: with
/// Nagle on, the reply waits for the client's ACK of the `OK`, which Linux delays by
/// 40 ms. Measured on the embedded relay: a NIP-46 round trip took 46 ms at p50 before,
/// about 1 ms after. `take_connection` expects the HTTP upgrade done, so it is done here.
/// Accept errors (out of file descriptors, say) are retried after a pause rather than
/// ending the loop.
pub async fn accept_limited(
    listener: TcpListener,
    relay: LocalRelay,
    gate: Arc<Gate>,
    limits: Limits,
) {
    loop {
        let (mut tcp, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!(error = %e, "relay cannot accept a connection; retrying");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(admission) = gate.admit(peer.ip()) else {
            tracing::debug!(%peer, "relay connection refused: too many open");
            continue;
        };
        let relay = relay.clone();
        tokio::spawn(async move {
            let upgraded = tcp.set_nodelay(true).is_ok()
                && tokio::time::timeout(limits.header_timeout, upgrade(&mut tcp))
                    .await
                    .is_ok_and(|done| done.is_some());
            if upgraded {
                let activity = Activity::new();
                let stream = Tracked::new(tcp, activity.clone());
                tokio::select! {
                    taken = relay.take_connection(stream, peer) => {
                        if let Err(e) = taken {
                            tracing::debug!(error = %e, "relay connection ended");
                        }
                    }
                    () = activity.idle_for(limits.idle_timeout) => {
                        tracing::debug!(%peer, "relay connection idle; closed");
                    }
                }
            }
            drop(admission);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keycast_nip46::websocket::MAX_REQUEST;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    async fn exchange(url: &RelayUrl, request: &[u8]) -> String {
        let addr = url
            .as_str_without_trailing_slash()
            .trim_start_matches("ws://");
        let mut tcp = TcpStream::connect(addr).await.expect("connect");
        // The relay may close before all of an oversized request is written.
        let _ = tcp.write_all(request).await;
        let mut answer = Vec::new();
        let mut chunk = [0u8; 1024];
        // The 101 arrives in one piece; a refused request is a closed connection.
        if let Ok(Ok(n)) = tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut chunk)).await
        {
            answer.extend_from_slice(&chunk[..n]);
        }
        String::from_utf8_lossy(&answer).into_owned()
    }

    #[tokio::test]
    async fn upgrades_websockets_and_closes_anything_else() {
        let relay = EmbeddedRelay::start("127.0.0.1:0".parse().expect("addr"))
            .await
            .expect("start");
        // The example of RFC 6455 §1.3.
        let good = b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                     Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
        let answer = exchange(&relay.url, good).await;
        assert!(answer.starts_with("HTTP/1.1 101"), "{answer}");
        assert!(
            answer.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
            "{answer}"
        );
        for bad in [
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
            vec![b'A'; MAX_REQUEST + 10],
            b"\r\n\r\n".to_vec(),
        ] {
            assert_eq!(exchange(&relay.url, &bad).await, "", "answered {bad:?}");
        }
        // Still serving after them.
        assert!(exchange(&relay.url, good).await.starts_with("HTTP/1.1 101"));
        relay.shutdown();
    }
}
