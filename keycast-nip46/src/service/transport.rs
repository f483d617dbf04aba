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
//! Only direct connections are handled here; a proxy or Tor connection mode (the bunker
//! configures neither) falls back to the default transport.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use async_wsocket::futures_util::stream::{FuturesUnordered, SplitSink};
use async_wsocket::futures_util::{Sink, SinkExt, StreamExt, TryStreamExt};
use async_wsocket::{ConnectionMode, Message, WebSocket};
use nostr_sdk::pool::transport::error::TransportError;
use nostr_sdk::pool::transport::websocket::{
    DefaultWebsocketTransport, WebSocketSink, WebSocketStream, WebSocketTransport,
};
use nostr_sdk::util::BoxedFuture;
use nostr_sdk::Url;
use tokio::net::TcpStream;

/// When a host has several addresses, the next one is tried this long after the previous
/// attempt started, if none has connected yet (the delay RFC 8305 recommends).
const NEXT_ADDRESS_AFTER: Duration = Duration::from_millis(250);

/// [`WebSocketTransport`] with `TCP_NODELAY` on direct connections; see the module docs.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct NoDelayTransport;

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
                return DefaultWebsocketTransport.connect(url, mode, timeout).await;
            }
            let socket = tokio::time::timeout(timeout, connect(url))
                .await
                .map_err(|_| {
                    TransportError::backend(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "websocket connection timed out",
                    ))
                })??;
            let (sink, stream) = socket.split();
            let sink: WebSocketSink = Box::new(NoDelaySink(sink));
            let stream: WebSocketStream = Box::pin(stream.map_err(TransportError::backend));
            Ok((sink, stream))
        })
    }
}

/// TCP (Nagle off), then TLS for `wss://`, then the WebSocket handshake.
async fn connect(url: &Url) -> Result<WebSocket, TransportError> {
    let host = url
        .host_str()
        .ok_or_else(|| invalid("relay URL without a host"))?;
    // An IPv6 literal comes bracketed in a URL but not in a socket address.
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port = url
        .port_or_known_default()
        .ok_or_else(|| invalid("relay URL without a port"))?;
    let tcp = connect_tcp(host, port)
        .await
        .map_err(TransportError::backend)?;
    tcp.set_nodelay(true).map_err(TransportError::backend)?;
    // Boxed: the handshake future is large.
    let (ws, _response) = Box::pin(tokio_tungstenite::client_async_tls(url.as_str(), tcp))
        .await
        .map_err(TransportError::backend)?;
    Ok(WebSocket::Tokio(ws))
}

/// Connects to the first of `host`'s addresses that answers. Attempts start one after
/// another, [`NEXT_ADDRESS_AFTER`] apart and alternating address families, so one
/// unreachable address (a broken IPv6 route, say) does not cost the whole timeout.
async fn connect_tcp(host: &str, port: u16) -> io::Result<TcpStream> {
    let (v6, v4): (Vec<SocketAddr>, Vec<SocketAddr>) = tokio::net::lookup_host((host, port))
        .await?
        .partition(SocketAddr::is_ipv6);
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

    async fn round_trip(url: &str) -> Message {
        let url = Url::parse(url).expect("url");
        let (mut sink, mut stream) = NoDelayTransport
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
        let result = NoDelayTransport
            .connect(&url, &ConnectionMode::Direct, Duration::from_secs(5))
            .await;
        assert!(result.is_err());
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}
