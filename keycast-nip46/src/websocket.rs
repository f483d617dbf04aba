//! The server side of a WebSocket opening handshake, for relays that take connections
//! already upgraded (nostr-relay-builder's `LocalRelay::take_connection`): keycast-server's
//! embedded relay and the test relay (`testing::TestRelay`, feature `testing`) accept on listeners they bound
//! themselves, so they set socket options, admit connections and never release a port.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;

/// The largest upgrade request read.
pub const MAX_REQUEST: usize = 16 * 1024;

/// The server side of the WebSocket opening handshake (RFC 6455 §4.2): reads the request
/// headers, answers 101 with the accept key. Anything else closes the connection.
pub async fn upgrade(tcp: &mut TcpStream) -> Option<()> {
    let mut request = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    // A client sends nothing after the request until it has the 101, so a read never
    // takes bytes past the end of the headers.
    while !request.ends_with(b"\r\n\r\n") {
        let n = tcp.read(&mut chunk).await.ok()?;
        if n == 0 || request.len() + n > MAX_REQUEST {
            return None;
        }
        request.extend_from_slice(&chunk[..n]);
    }
    let request = std::str::from_utf8(&request).ok()?;
    let key = request.lines().skip(1).find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.trim()
            .eq_ignore_ascii_case("sec-websocket-key")
            .then_some(value.trim())
    })?;
    let response = format!(
        "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Accept: {}\r\n\r\n",
        derive_accept_key(key.as_bytes())
    );
    tcp.write_all(response.as_bytes()).await.ok()
}
