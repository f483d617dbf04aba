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

/// A port nothing listens on, for a test of what happens when nothing answers there. It
/// was free a moment ago; another process may take it later, which such a test tolerates
/// (it fails, not passes, if anything answered).
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
