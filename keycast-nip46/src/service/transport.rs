//! The WebSocket transport of the bunker's relay connections: the relay pool's default
//! (tokio-tungstenite, rustls with webpki roots for `wss://`), except that the TCP socket
//! has Nagle's algorithm off (`TCP_NODELAY`).
//!
//! Why: NIP-46 traffic is small frames (a reply is well under one segment) that the bunker
//! writes back to back under load. With Nagle on, a small write waits while an earlier one
//! is unacknowledged, and a relay with nothing to send back delays its ACK (40 ms on
//! Linux) — relays need not answer ephemeral events with `OK`, so that is a normal case.
//! Each such wait adds up to 40 ms to a reply. The pool's default transport (async-wsocket
//! 0.13) never sets `TCP_NODELAY` and nostr-relay-pool 0.44 offers no option for it, hence
//! this transport.
//!
//! It is also where the outbound relay policy ([`super::relay_policy`]) is enforced: the
//! addresses a relay's host resolves to are filtered just before connecting, so no name
//! (or later DNS answer) can point the bunker at an address the policy refuses. Only
//! direct connections are made: through a proxy or Tor (the bunker configures neither)
//! the proxy would resolve the name, so the policy could not be kept, and such a
//! connection is refused.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use async_wsocket::futures_util::stream::{FuturesUnordered, SplitSink};
use async_wsocket::futures_util::{Sink, SinkExt, StreamExt, TryStreamExt};
use async_wsocket::{ConnectionMode, Message, WebSocket};
use nostr_sdk::pool::transport::error::TransportError;
use nostr_sdk::pool::transport::websocket::{WebSocketSink, WebSocketStream, WebSocketTransport};
use nostr_sdk::util::BoxedFuture;
use nostr_sdk::Url;
use tokio::net::TcpStream;

use super::prefilter::PreFilter;
use super::relay_policy::{RelayPolicy, Verdict};

/// When a host has several addresses, the next one is tried this long after the previous
/// attempt started, if none has connected yet (the delay RFC 8305 recommends).
const NEXT_ADDRESS_AFTER: Duration = Duration::from_millis(250);

/// [`WebSocketTransport`] with `TCP_NODELAY` and the relay policy; see the module docs.
#[derive(Debug, Clone)]
pub(crate) struct NoDelayTransport {
    policy: Arc<RelayPolicy>,
    prefilter: Arc<PreFilter>,
}

impl NoDelayTransport {
    pub(crate) fn new(policy: Arc<RelayPolicy>, prefilter: Arc<PreFilter>) -> Self {
        Self { policy, prefilter }
    }
}

impl WebSocketTransport for NoDelayTransport {
    fn support_ping(&self) -> bool {
        true
    }

    fn connect<'a>(
        &'a self,
        url: &'a Url,
        mode: &'a ConnectionMode,
        timeout: Duration,
    ) -> BoxedFuture<'a, Result<(WebSocketSink, WebSocketStream), TransportError>> {
        Box::pin(async move {
            if !matches!(mode, ConnectionMode::Direct) {
                return Err(refused("only direct relay connections are made"));
            }
            let socket = tokio::time::timeout(timeout, connect(url, &self.policy))
                .await
                .map_err(|_| {
                    TransportError::backend(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "websocket connection timed out",
                    ))
                })??;
            let (sink, stream) = socket.split();
            let sink: WebSocketSink = Box::new(NoDelaySink(sink));
            // Strangers' floods end here, before the pool parses or verifies them, and
            // so do a standby's requests from configured relays (kept raw).
            let prefilter = self.prefilter.clone();
            let configured = self.policy.is_configured_url(url);
            let stream = stream.try_filter(move |message| {
                let keep = match message {
                    Message::Text(frame) => prefilter.admit(frame, configured),
                    _ => true,
                };
                std::future::ready(keep)
            });
            let stream: WebSocketStream = Box::pin(stream.map_err(TransportError::backend));
            Ok((sink, stream))
        })
    }
}

/// TCP (Nagle off) to an address the policy allows, then TLS for `wss://`, then the
/// WebSocket handshake.
async fn connect(url: &Url, policy: &RelayPolicy) -> Result<WebSocket, TransportError> {
    let verdict = policy.verdict(url);
    if let Verdict::Refused(why) = verdict {
        policy.count_refusal();
        tracing::warn!(relay = %url, reason = why, "relay refused by the outbound relay policy");
        return Err(refused(why));
    }
    let host = url
        .host_str()
        .ok_or_else(|| invalid("relay URL without a host"))?;
    // An IPv6 literal comes bracketed in a URL but not in a socket address.
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port = url
        .port_or_known_default()
        .ok_or_else(|| invalid("relay URL without a port"))?;
    let tcp = connect_tcp(host, port, |addr| {
        let ok = RelayPolicy::permits(verdict, addr.ip());
        if !ok {
            tracing::warn!(relay = %url, "relay address refused by the outbound relay policy");
        }
        ok
    })
    .await
    .map_err(|e| {
        if e.kind() == io::ErrorKind::PermissionDenied {
            policy.count_refusal();
        }
        TransportError::backend(e)
    })?;
    tcp.set_nodelay(true).map_err(TransportError::backend)?;
    // HTTP sends no fragment; the extra lanes' URLs carry one (`lanes.rs`).
    let mut request = url.clone();
    request.set_fragment(None);
    // Boxed: the handshake future is large.
    let (ws, _response) = Box::pin(tokio_tungstenite::client_async_tls(request.as_str(), tcp))
        .await
        .map_err(TransportError::backend)?;
    Ok(WebSocket::Tokio(ws))
}

/// Connects to the first of `host`'s addresses that `allowed` lets through and that
/// answers. Attempts start one after another, [`NEXT_ADDRESS_AFTER`] apart and
/// alternating address families, so one unreachable address (a broken IPv6 route, say)
/// does not cost the whole timeout. No allowed address is `PermissionDenied`.
async fn connect_tcp(
    host: &str,
    port: u16,
    allowed: impl Fn(&SocketAddr) -> bool,
) -> io::Result<TcpStream> {
    let resolved: Vec<SocketAddr> = tokio::net::lookup_host((host, port)).await?.collect();
    let any = !resolved.is_empty();
    let (v6, v4): (Vec<SocketAddr>, Vec<SocketAddr>) = resolved
        .into_iter()
        .filter(|a| allowed(a))
        .partition(SocketAddr::is_ipv6);
    if any && v6.is_empty() && v4.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            "the relay's addresses are refused by the outbound relay policy",
        ));
    }
    let (first, second) = if v6.is_empty() { (v4, v6) } else { (v6, v4) };
    let mut order = Vec::with_capacity(first.len() + second.len());
    let (mut a, mut b) = (first.into_iter(), second.into_iter());
    loop {
        match (a.next(), b.next()) {
            (None, None) => break,
            (x, y) => order.extend(x.into_iter().chain(y)),
        }
    }
    let mut attempts: FuturesUnordered<_> = order
        .into_iter()
        .zip(0u32..)
        .map(|(addr, i)| async move {
            tokio::time::sleep(NEXT_ADDRESS_AFTER * i).await;
            TcpStream::connect(addr).await
        })
        .collect();
    let mut last_error = None;
    while let Some(attempt) = attempts.next().await {
        match attempt {
            Ok(tcp) => return Ok(tcp),
            Err(e) => last_error = Some(e),
        }
    }
    Err(last_error
        .unwrap_or_else(|| io::Error::new(io::ErrorKind::AddrNotAvailable, "host has no address")))
}

fn refused(reason: &str) -> TransportError {
    TransportError::backend(io::Error::new(
        io::ErrorKind::PermissionDenied,
        format!("relay refused by the outbound relay policy: {reason}"),
    ))
}

fn invalid(reason: &str) -> TransportError {
    TransportError::backend(io::Error::new(io::ErrorKind::InvalidInput, reason))
}

/// The WebSocket's write half with errors as [`TransportError`]. A plain wrapper rather
/// than `SinkExt::sink_map_err`, whose adapter panics if a second error comes through.
struct NoDelaySink(SplitSink<WebSocket, Message>);

impl Sink<Message> for NoDelaySink {
    type Error = TransportError;

    fn poll_ready(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.0.poll_ready_unpin(cx).map_err(TransportError::backend)
    }

    fn start_send(mut self: Pin<&mut Self>, item: Message) -> Result<(), Self::Error> {
        self.0
            .start_send_unpin(item)
            .map_err(TransportError::backend)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.0.poll_flush_unpin(cx).map_err(TransportError::backend)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.0.poll_close_unpin(cx).map_err(TransportError::backend)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keycast_core::nostr::RelayUrl;
    use tokio::net::TcpListener;

    /// A WebSocket server on loopback that echoes one text message.
    async fn echo_server() -> u16 {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut ws = tokio_tungstenite::accept_async(tcp).await.expect("accept");
                    if let Some(Ok(msg)) = ws.next().await {
                        ws.send(msg).await.expect("echo");
                    }
                });
            }
        });
        port
    }

    /// An arrival filter that lets everything through.
    fn no_filter() -> Arc<PreFilter> {
        let quota = governor::Quota::per_second(std::num::NonZeroU32::MAX);
        let standby = super::super::standby::Standby::new(
            Arc::new(keycast_core::LocalRouter),
            Arc::default(),
        );
        Arc::new(PreFilter::new(
            Arc::default(),
            super::super::limits::Keyed::new(quota, 10),
            Arc::new(standby),
        ))
    }

    /// A transport whose policy allows loopback (as a test's allow-list would).
    fn loopback_allowed() -> NoDelayTransport {
        let allow = [
            "127.0.0.1".to_owned(),
            "localhost".to_owned(),
            "::1".to_owned(),
        ];
        NoDelayTransport::new(Arc::new(RelayPolicy::new(&[], Some(&allow))), no_filter())
    }

    async fn round_trip(url: &str) -> Message {
        let url = Url::parse(url).expect("url");
        let (mut sink, mut stream) = loopback_allowed()
            .connect(&url, &ConnectionMode::Direct, Duration::from_secs(5))
            .await
            .expect("connect");
        sink.send(Message::Text("hello".into()))
            .await
            .expect("send");
        stream.next().await.expect("reply").expect("message")
    }

    #[tokio::test]
    async fn connects_by_address_and_by_name() {
        let port = echo_server().await;
        let hello = Message::Text("hello".into());
        assert_eq!(round_trip(&format!("ws://127.0.0.1:{port}")).await, hello);
        // `localhost` may resolve to ::1 first, where nothing listens: the IPv4 attempt
        // still connects.
        assert_eq!(round_trip(&format!("ws://localhost:{port}")).await, hello);
    }

    #[tokio::test]
    async fn unreachable_relay_fails_within_the_timeout() {
        let port = {
            let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
            listener.local_addr().expect("addr").port()
        };
        let url = Url::parse(&format!("ws://127.0.0.1:{port}")).expect("url");
        let started = std::time::Instant::now();
        let result = loopback_allowed()
            .connect(&url, &ConnectionMode::Direct, Duration::from_secs(5))
            .await;
        assert!(result.is_err());
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[tokio::test]
    async fn the_default_policy_refuses_internal_addresses_also_behind_a_name() {
        let port = echo_server().await;
        let policy = Arc::new(RelayPolicy::new(&[], None));
        let transport = NoDelayTransport::new(policy.clone(), no_filter());
        // `localhost` resolves only to loopback: every address is filtered out.
        for url in [
            format!("ws://127.0.0.1:{port}"),
            format!("ws://localhost:{port}"),
            format!("ws://[::ffff:127.0.0.1]:{port}"),
        ] {
            let parsed = Url::parse(&url).expect("url");
            let result = transport
                .connect(&parsed, &ConnectionMode::Direct, Duration::from_secs(5))
                .await;
            let err = result.err().map(|e| e.to_string()).unwrap_or_default();
            assert!(err.contains("outbound relay policy"), "{url}: {err:?}");
        }
        assert_eq!(policy.refusals(), 3);
        // The same relay configured is allowed.
        let configured = RelayUrl::parse(&format!("ws://127.0.0.1:{port}")).expect("relay");
        let transport =
            NoDelayTransport::new(Arc::new(RelayPolicy::new(&[configured], None)), no_filter());
        let url = Url::parse(&format!("ws://127.0.0.1:{port}")).expect("url");
        assert!(transport
            .connect(&url, &ConnectionMode::Direct, Duration::from_secs(5))
            .await
            .is_ok());
    }
}
