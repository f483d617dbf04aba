//! Connections: idle, slow and numerous sockets on the HTTP port and the embedded relay
//! (issue 18 item 3), duplicate `Host` headers, and the operator's metrics port.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use super::{open_fds, p99, report, Peaks};
use crate::common::server::Served;
use crate::common::Env;
use keycast_test_support::eventually;

/// Descriptors the server may open, as `ulimit -n 1024` leaves it.
const DESCRIPTORS: u32 = 1024;
/// Sockets one attacker address opens on each port (the attack that broke it: 1,050).
const SOCKETS: usize = 1_050;
/// The HTTP header timeout, and the relay's handshake timeout, the server runs with here.
const HEADER_TIMEOUT: Duration = Duration::from_secs(2);

fn attacker(n: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2 + n))
}

/// Opens `count` TCP connections from `from` to `port` and keeps them, sending nothing.
async fn hold(from: IpAddr, port: u16, count: usize) -> Vec<TcpStream> {
    let target = SocketAddr::from(([127, 0, 0, 1], port));
    let mut held = Vec::with_capacity(count);
    for _ in 0..count {
        let socket = TcpSocket::new_v4().expect("socket");
        socket
            .bind(SocketAddr::new(from, 0))
            .expect("bind attacker address");
        if let Ok(stream) = socket.connect(target).await {
            held.push(stream);
        }
    }
    held
}

/// `GET path` on a fresh connection to `port` from 127.0.0.1: the status, and how long it
/// took (`None` when refused, reset or not answered within 5 s).
async fn get(port: u16, path: &str) -> Option<(u16, Duration)> {
    let started = Instant::now();
    let exchange = async {
        let mut tcp = TcpStream::connect(("127.0.0.1", port)).await.ok()?;
        let request =
            format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
        tcp.write_all(request.as_bytes()).await.ok()?;
        let mut answer = Vec::new();
        tcp.read_to_end(&mut answer).await.ok()?;
        let text = String::from_utf8_lossy(&answer);
        text.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()
    };
    let status = tokio::time::timeout(Duration::from_secs(5), exchange)
        .await
        .ok()??;
    Some((status, started.elapsed()))
}

/// Whether the relay at `port` upgrades a WebSocket for a client at 127.0.0.1.
async fn relay_upgrades(port: u16) -> bool {
    let attempt = async {
        let mut tcp = TcpStream::connect(("127.0.0.1", port)).await.ok()?;
        tcp.write_all(
            b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
              Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        )
        .await
        .ok()?;
        let mut head = [0u8; 12];
        tcp.read_exact(&mut head).await.ok()?;
        Some(head.starts_with(b"HTTP/1.1 101"))
    };
    tokio::time::timeout(Duration::from_secs(5), attempt)
        .await
        .ok()
        .flatten()
        .unwrap_or(false)
}

/// A counter or gauge (with its labels) from the metrics port.
async fn metric(port: u16, name: &str) -> u64 {
    let body = reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    body.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// Polls `/health` from 127.0.0.1 until `done` resolves; every answer must be 200.
async fn health_throughout(
    port: u16,
    done: impl std::future::Future<Output = ()>,
) -> Vec<Duration> {
    let mut done = std::pin::pin!(done);
    let mut latencies = Vec::new();
    loop {
        tokio::select! {
            () = &mut done => return latencies,
            answer = get(port, "/health") => {
                let (status, took) = answer.expect("/health did not answer during the attack");
                assert_eq!(status, 200, "/health during the attack");
                latencies.push(took);
            }
        }
    }
}

/// The per-address refusals an attack of `sockets` must have caused at a cap of `cap`, when
/// opening them took `took`: all past the cap while no held socket can have reached the
/// header timeout; otherwise timed-out sockets freed slots, and at least one in ten must
/// still have been refused (the cap, not the timeout, turned them away).
fn refusals_expected(sockets: usize, cap: usize, took: Duration) -> u64 {
    if took < HEADER_TIMEOUT {
        (sockets - cap) as u64
    } else {
        (sockets / 10) as u64
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_and_slow_sockets_cannot_take_the_server_down() {
    // The test holds thousands of sockets itself.
    keycast_server::connections::raise_descriptor_limit();
    let env = Env::new();
    let vars = [
        ("RUST_LOG", "info".to_owned()),
        (
            "KEYCAST_HTTP_HEADER_TIMEOUT_SECS",
            HEADER_TIMEOUT.as_secs().to_string(),
        ),
        ("KEYCAST_HTTP_IDLE_TIMEOUT_SECS", "3".to_owned()),
        (
            "KEYCAST_RELAY_HANDSHAKE_TIMEOUT_SECS",
            HEADER_TIMEOUT.as_secs().to_string(),
        ),
        ("KEYCAST_METRICS_LISTEN", "127.0.0.1:0".to_owned()),
    ];
    let served = Served::launch_limited(env, DESCRIPTORS, &vars).await;
    let ops = served.metrics.expect("the operator's listener").port();
    let (http, relay) = (served.env.http_port, served.env.relay_port);
    let pid = served.pid();
    let base_fds = open_fds(pid);

    // One address, 1,050 idle sockets on each port, while /health is asked from another.
    let peaks = Peaks::watch(pid);
    let attack = async {
        let started = Instant::now();
        let on_http = hold(attacker(0), http, SOCKETS).await;
        let http_took = started.elapsed();
        let started = Instant::now();
        let on_relay = hold(attacker(0), relay, SOCKETS).await;
        (on_http, on_relay, http_took, started.elapsed())
    };
    let mut outcome = None;
    let latencies = health_throughout(http, async { outcome = Some(attack.await) }).await;
    let (on_http, on_relay, http_took, relay_took) = outcome.expect("attack ran");
    let (peak_rss, peak_fds) = peaks.stop();
    assert!(
        relay_upgrades(relay).await,
        "a relay client from another address is served"
    );
    let refused = metric(
        ops,
        "keycast_connections_refused_total{listener=\"http\",reason=\"per_address\"}",
    )
    .await;
    let refused_relay = metric(
        ops,
        "keycast_connections_refused_total{listener=\"relay\",reason=\"per_address\"}",
    )
    .await;
    // Every socket past the per-address cap is refused, unless the header timeout freed
    // slots while the attack was still opening sockets (a loaded machine opens them slowly).
    assert!(
        refused >= refusals_expected(SOCKETS, 256, http_took),
        "HTTP refusals by address: {refused} (opening the sockets took {http_took:?})"
    );
    assert!(
        refused_relay >= refusals_expected(SOCKETS, 32, relay_took),
        "relay refusals by address: {refused_relay} (opening the sockets took {relay_took:?})"
    );
    assert!(
        peak_fds < 1024 - 256,
        "descriptors: {base_fds} before, {peak_fds} during"
    );
    // Idle sockets are closed once the header timeout passes.
    eventually(
        Duration::from_secs(15),
        "idle HTTP sockets closed",
        || async { metric(ops, "keycast_connections_open{listener=\"http\"}").await <= 2 },
    )
    .await;
    eventually(
        Duration::from_secs(15),
        "idle relay sockets closed",
        || async {
            // The bunker's own connection stays.
            metric(ops, "keycast_connections_open{listener=\"relay\"}").await <= 1
        },
    )
    .await;
    drop((on_http, on_relay));
    report(
        "1,050 idle sockets from one address on the HTTP port and 1,050 on the relay, under ulimit -n 1024",
        &format!(
            "/health answered all {} checks; {refused} HTTP and {refused_relay} relay connections \
             refused at the per-address caps; idle ones closed after the 2 s header timeout; \
             descriptors {base_fds} before",
            latencies.len()
        ),
        (peak_rss, peak_fds),
        Some(p99(&latencies)),
    );

    // Many addresses, beyond the listener's total cap (384 at 1,024 descriptors): the
    // process keeps its descriptors, the operator's port answers throughout, and the
    // public port answers again once the header timeout has closed the idle ones.
    let peaks = Peaks::watch(pid);
    let spread = async {
        let mut all = Vec::new();
        for n in 1..=20 {
            all.extend(hold(attacker(n), http, 60).await);
        }
        all
    };
    let mut outcome = None;
    let ops_latencies = health_throughout(ops, async { outcome = Some(spread.await) }).await;
    let spread_sockets = outcome.expect("attack ran");
    let (spread_rss, spread_fds) = peaks.stop();
    let full = metric(
        ops,
        "keycast_connections_refused_total{listener=\"http\",reason=\"full\"}",
    )
    .await;
    assert!(full > 0, "the total cap was reached");
    assert!(
        spread_fds < 1024 - 256,
        "descriptors during the spread attack: {spread_fds}"
    );
    eventually(
        Duration::from_secs(15),
        "the public port answers again",
        || async { get(http, "/health").await.is_some_and(|(s, _)| s == 200) },
    )
    .await;
    drop(spread_sockets);
    report(
        "1,200 idle HTTP sockets from 20 addresses (past the total cap), under ulimit -n 1024",
        &format!(
            "{full} refused at the total cap (384); /health on the metrics port answered all {} \
             checks; the public port answered again after the header timeout",
            ops_latencies.len()
        ),
        (spread_rss, spread_fds),
        Some(p99(&ops_latencies)),
    );

    // Slow headers: a byte now and then does not keep a connection past the header timeout.
    let mut slow = TcpStream::connect(("127.0.0.1", http))
        .await
        .expect("connect");
    slow.write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\n")
        .await
        .expect("write");
    let started = Instant::now();
    let mut closed = false;
    for _ in 0..30 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        if slow.write_all(b"X-Slow: 1\r\n").await.is_err() {
            closed = true;
            break;
        }
    }
    if !closed {
        let mut rest = Vec::new();
        closed = tokio::time::timeout(Duration::from_secs(2), slow.read_to_end(&mut rest))
            .await
            .is_ok();
    }
    assert!(
        closed,
        "a slow header was still being read after {:?}",
        started.elapsed()
    );

    // The operator's port has the metrics; the public one does not.
    assert_eq!(get(http, "/metrics").await.map(|(s, _)| s), Some(404));
    assert_eq!(get(ops, "/metrics").await.map(|(s, _)| s), Some(200));
    assert_eq!(get(ops, "/api/keys").await.map(|(s, _)| s), Some(404));
    drop(served);
}

#[tokio::test]
async fn two_host_headers_are_refused() {
    let served = Served::start().await;
    let mut tcp = TcpStream::connect(("127.0.0.1", served.env.http_port))
        .await
        .expect("connect");
    tcp.write_all(
        b"GET /.well-known/nostr.json HTTP/1.1\r\nHost: a.example\r\nHost: b.example\r\n\
          Connection: close\r\n\r\n",
    )
    .await
    .expect("write");
    let mut answer = Vec::new();
    tcp.read_to_end(&mut answer).await.expect("read");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("exactly one Host header"), "{answer}");
    // One Host is served as ever.
    let (status, _) = served
        .json(reqwest::Method::GET, "/.well-known/nostr.json", None, None)
        .await;
    assert_eq!(status, 200);
}
