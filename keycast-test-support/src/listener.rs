//! Sockets for servers under test. A port read from a listener and then released can be
//! taken by anyone before the server binds it again, so in-process servers are handed the
//! bound listener itself and the `keycast-server` binary binds port 0 and reports its
//! address (see [`crate::ServerProcess`]).

use std::net::TcpListener;

/// A listener on `127.0.0.1`, on a port the kernel picks; hand it to the server as is.
///
/// # Panics
/// If loopback cannot be bound.
pub fn local_listener() -> TcpListener {
    TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0")
}

/// [`local_listener`] for a tokio server (call it inside a runtime).
///
/// # Panics
/// If loopback cannot be bound.
pub fn local_tokio_listener() -> tokio::net::TcpListener {
    let listener = local_listener();
    listener.set_nonblocking(true).expect("non-blocking");
    tokio::net::TcpListener::from_std(listener).expect("a tokio listener")
}

/// A loopback port that was free a moment ago and is released: for an address where
/// nothing should answer (a test of that fails, not passes, if something took it since),
/// or for an outside program that can only be told a port number (prefer
/// [`crate::spawn_on_free_port`], which starts it again if the port was taken). Never for
/// our own servers: hand them [`local_listener`] or let them bind port 0.
///
/// # Panics
/// If loopback cannot be bound.
pub fn closed_port() -> u16 {
    local_listener().local_addr().expect("local address").port()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_listener_is_bound_on_loopback_to_a_real_port() {
        let l = local_listener();
        let addr = l.local_addr().expect("addr");
        assert!(addr.ip().is_loopback());
        assert_ne!(addr.port(), 0);
        // Bound, not just reserved: a connection is queued without anyone accepting.
        std::net::TcpStream::connect(addr).expect("connect");
    }

    #[tokio::test]
    async fn the_tokio_listener_accepts() {
        let l = local_tokio_listener();
        let addr = l.local_addr().expect("addr");
        let (_client, accepted) = tokio::join!(tokio::net::TcpStream::connect(addr), l.accept());
        accepted.expect("accept");
    }
}
