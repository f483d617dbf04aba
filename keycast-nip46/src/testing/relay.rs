//! A nostr-relay-builder relay on a listener it bound itself, for tests and benchmarks.

use keycast_core::nostr::RelayUrl;
use nostr_relay_builder::prelude::{LocalRelay, RelayBuilder};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::websocket::upgrade;

/// A relay on 127.0.0.1 at a port the kernel picked when it bound (`LocalRelay::run`
/// probes for a free port and binds it again later, which another test can take in
/// between). Stops on drop.
pub struct TestRelay {
    relay: LocalRelay,
    accepting: JoinHandle<()>,
    url: RelayUrl,
}

impl TestRelay {
    /// `builder`'s relay (its address and port settings unused) on a fresh loopback port.
    pub async fn start(builder: RelayBuilder) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let bound = listener.local_addr()?;
        let url = RelayUrl::parse(&format!("ws://{bound}")).map_err(std::io::Error::other)?;
        let relay = LocalRelay::new(builder);
        let accepting = tokio::spawn(serve_relay(listener, relay.clone()));
        Ok(Self {
            relay,
            accepting,
            url,
        })
    }

    /// A relay with nostr-relay-builder's defaults (what its `MockRelay` runs).
    pub async fn with_defaults() -> std::io::Result<Self> {
        Self::start(RelayBuilder::default()).await
    }

    /// Where clients connect.
    pub fn url(&self) -> RelayUrl {
        self.url.clone()
    }
}

impl std::fmt::Debug for TestRelay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestRelay").field("url", &self.url).finish()
    }
}

impl Drop for TestRelay {
    fn drop(&mut self) {
        self.accepting.abort();
        self.relay.shutdown();
    }
}

/// Hands every connection `listener` accepts that completes the WebSocket upgrade to
/// `relay`, with `TCP_NODELAY` set, until the task is aborted; no caps (the test and
/// bench relays; keycast-server's embedded relay has its own loop with limits).
pub async fn serve_relay(listener: TcpListener, relay: LocalRelay) {
    while let Ok((mut tcp, peer)) = listener.accept().await {
        let relay = relay.clone();
        tokio::spawn(async move {
            // As on the embedded relay: a reply must not wait behind Nagle for the ACK of
            // the `OK` sent just before it.
            let _ = tcp.set_nodelay(true);
            if upgrade(&mut tcp).await.is_some() {
                let _ = relay.take_connection(tcp, peer).await;
            }
        });
    }
}
