//! The HTTP listener: accepts connections under a [`Gate`], serves each with hyper's
//! HTTP/1 with a header-read timeout and an idle timeout, hands handlers the peer address
//! (axum's `ConnectInfo<SocketAddr>`), and drains open connections on stop.
//!
//! `axum::serve` runs hyper without a timer, so it has neither timeout and no cap: idle
//! sockets stayed open for minutes and enough of them exhausted the process's descriptors.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::{TcpListener, TcpStream};
use tower_service::Service;

use crate::connections::idle::{Activity, Tracked};
use crate::connections::{Gate, Limits, Refused};

/// What a refused connection is told before it is closed (when the socket takes it at
/// once; nothing waits for a slow client).
const REFUSAL: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\n\
Content-Type: application/json\r\nContent-Length: 78\r\nConnection: close\r\n\r\n\
{\"error\":{\"code\":\"overloaded\",\"message\":\"too many connections; retry later\"}}\n";

/// Serves `router` on `listener` until `stop` resolves, then stops accepting and lets open
/// connections finish their requests (the caller bounds how long with a timeout).
pub async fn serve_http(
    listener: TcpListener,
    router: Router,
    gate: Arc<Gate>,
    limits: Limits,
    stop: impl Future<Output = ()>,
) {
    let graceful = GracefulShutdown::new();
    let mut stop = std::pin::pin!(stop);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut stop => break,
        };
        let (tcp, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of descriptors, say: keep the loop alive and let connections close.
                tracing::warn!(error = %e, "cannot accept an HTTP connection; retrying");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let admission = match gate.admit(peer.ip()) {
            Ok(a) => a,
            Err(why) => {
                refuse(&tcp, why);
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let activity = Activity::new();
        let io = TokioIo::new(Tracked::new(tcp, activity.clone()));
        let service = hyper::service::service_fn(move_to_router(router.clone(), peer));
        let connection = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_timeout)
            .serve_connection(io, service);
        let connection = graceful.watch(connection);
        let idle = limits.idle_timeout;
        tokio::spawn(async move {
            tokio::select! {
                served = connection => {
                    if let Err(e) = served {
                        tracing::debug!(error = %e, "HTTP connection ended with an error");
                    }
                }
                // Dropping the connection closes it.
                () = activity.idle_for(idle) => {
                    tracing::debug!("HTTP connection idle; closed");
                }
            }
            drop(admission);
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

/// What the router answers one request with.
type Answer = std::pin::Pin<
    Box<dyn Future<Output = Result<axum::response::Response, std::convert::Infallible>> + Send>,
>;

/// Each request of one connection, with the peer address, to the router.
fn move_to_router(
    router: Router,
    peer: SocketAddr,
) -> impl Fn(hyper::Request<Incoming>) -> Answer + Clone {
    move |request: hyper::Request<Incoming>| {
        let mut request = request.map(axum::body::Body::new);
        request.extensions_mut().insert(ConnectInfo(peer));
        let mut router = router.clone();
        Box::pin(async move { router.call(request).await })
    }
}

/// Tells a refused client why, if its socket takes the answer without waiting, and
/// closes it.
fn refuse(tcp: &TcpStream, why: Refused) {
    tracing::debug!(?why, "HTTP connection refused");
    let _ = tcp.try_write(REFUSAL);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_refusal_is_well_formed_http() {
        let text = std::str::from_utf8(REFUSAL).expect("ascii");
        let (head, body) = text.split_once("\r\n\r\n").expect("head and body");
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("Content-Length: "))
            .and_then(|v| v.parse().ok())
            .expect("length");
        assert_eq!(body.len(), length);
        serde_json::from_str::<serde_json::Value>(body).expect("JSON body");
    }
}
