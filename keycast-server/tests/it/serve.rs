//! `serve` as operators run it: embedded defaults, NIP-46 through the embedded relay, the
//! data-dir lock across a kill -9, and a graceful stop on SIGTERM.

use crate::common;

use std::io::Read;
use std::process::Stdio;
use std::time::Duration;

use common::Env;
use keycast_core::nostr::{Keys, NostrSigner};
use keycast_test_support::{eventually_blocking, ServerProcess};
use nostr_connect::prelude::{NostrConnect, NostrConnectURI};

/// A running server; killed on drop if still running.
struct Server {
    process: ServerProcess,
}

impl Server {
    /// Starts `serve` on ports it picks, which `env` adopts once it is serving.
    fn start(env: &mut Env) -> Self {
        (env.http_port, env.relay_port) = (0, 0);
        let mut command = env.command(&[]);
        command.stdin(Stdio::null()).stdout(Stdio::null());
        let mut process = ServerProcess::spawn(command).expect("spawn serve");
        let bound = process
            .wait_serving(Duration::from_secs(30))
            .unwrap_or_else(|e| panic!("{e}"));
        env.adopt(&bound);
        Self { process }
    }

    /// Waits until `/healthz/ready` answers 200.
    fn wait_ready(&self, env: &Env) {
        let ready = env.url("/healthz/ready");
        eventually_blocking(Duration::from_secs(30), "the server ready", || {
            if let Some(status) = self.process.exited() {
                panic!("server exited early ({status}): {}", self.process.logs());
            }
            get_status(&ready) == Some(200)
        });
    }

    fn signal(&self, signal: &str) {
        common::signal(self.process.pid(), signal);
    }

    /// Waits for exit (bounded); returns the exit code and everything logged.
    fn wait(mut self, limit: Duration) -> (Option<i32>, String) {
        let status = eventually_blocking(limit, "the server to exit", || self.process.exited());
        (status.code(), self.process.kill())
    }
}

/// A gauge or counter from `/metrics` (0 when absent or unreachable).
fn metric(env: &Env, name: &str) -> u64 {
    get(&env.url("/metrics"))
        .and_then(|(_, text)| {
            text.lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        })
        .unwrap_or(0)
}

/// A blocking HTTP/1.0 GET (no client library needed here): status and body.
fn get(url: &str) -> Option<(u16, String)> {
    use std::io::Write;
    let rest = url.strip_prefix("http://")?;
    let (host, path) = rest.split_once('/').map(|(h, p)| (h, format!("/{p}")))?;
    let mut stream = std::net::TcpStream::connect(host).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n").ok()?;
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    let status = response.split_whitespace().nth(1)?.parse().ok()?;
    let body = response.split_once("\r\n\r\n").map(|(_, b)| b.to_owned())?;
    Some((status, body))
}

fn get_status(url: &str) -> Option<u16> {
    get(url).map(|(status, _)| status)
}

/// Waits up to `limit` until the server listens for `n` authorizations: a change made by
/// another process (the CLI) has reached it.
fn wait_subscribed(env: &Env, n: u64, limit: Duration) {
    eventually_blocking(
        limit,
        &format!("the server listening for {n} authorizations"),
        || metric(env, "keycast_nip46_subscribed_authorizations") == n,
    );
}

/// A user, a key and an authorization made with the CLI; returns (bunker URI, key npub line).
fn provision(env: &Env) -> String {
    env.ok(&["user", "add", "alice"], "");
    let key = env.ok(&["key", "generate", "--user", "alice"], "");
    let key_id = key.split_whitespace().next().expect("key id").to_owned();
    env.ok(&["authorization", "create", "--key", &key_id], "")
        .trim()
        .to_owned()
}

#[test]
fn serves_nip46_on_embedded_defaults_and_stops_cleanly_on_sigterm() {
    let mut env = Env::new();
    // Serving first: the port of its relay, which the bunker URI names, is the one it bound.
    let server = Server::start(&mut env);
    server.wait_ready(&env);
    let uri = provision(&env);
    wait_subscribed(&env, 1, Duration::from_secs(15));
    assert_eq!(get_status(&env.url("/health")), Some(200));
    let (status, metrics) = get(&env.url("/metrics")).expect("metrics");
    assert_eq!(status, 200);
    // Every name design §8 asks for, with the NIP-46 service running.
    for name in [
        "keycast_cache_hits_total",
        "keycast_cache_misses_total",
        "keycast_cache_size",
        "keycast_nip46_requests_total",
        "keycast_nip46_rejected_hashring_total",
        "keycast_nip46_processed_total",
        "keycast_nip46_queue_dropped_total",
        "keycast_http_rpc_requests_total",
        "keycast_http_rpc_auth_errors_total",
        "keycast_registrations_total",
        "keycast_logins_total",
        "keycast_login_failures_total",
        "keycast_nip46_queue_depth",
        "keycast_nip46_queue_capacity",
        "keycast_nip46_queue_wait_seconds_bucket",
        "keycast_kms_call_seconds_sum",
        "keycast_nip46_relay_connected{relay=",
        "keycast_http_requests_total{class=\"5xx\"}",
        "keycast_http_request_duration_seconds_bucket",
        "process_resident_memory_bytes",
        "process_open_fds",
    ] {
        assert!(metrics.contains(name), "{name} missing from /metrics");
    }
    // NIP-46 discovery names the relay the bunker URI names.
    let (status, doc) = get(&env.url("/.well-known/nostr.json?name=_")).expect("nostr.json");
    assert_eq!(status, 200);
    let doc: serde_json::Value = serde_json::from_str(&doc).expect("json");
    let relay = format!("ws://127.0.0.1:{}", env.relay_port);
    let identity = doc["names"]["_"].as_str().expect("identity");
    assert_eq!(identity.len(), 64);
    assert_eq!(doc["nip46"]["relays"][0], relay, "{doc}");
    assert_eq!(doc["relays"][identity][0], relay, "{doc}");
    assert!(
        doc["nip46"]["nostrconnect_url"]
            .as_str()
            .is_some_and(|u| u.ends_with("/connect?uri=<nostrconnect>")),
        "{doc}"
    );

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let user = runtime.block_on(async {
        let signer = NostrConnect::new(
            NostrConnectURI::parse(&uri).expect("uri"),
            Keys::generate(),
            Duration::from_secs(15),
            None,
        )
        .expect("client");
        let pk = signer
            .get_public_key()
            .await
            .expect("get_public_key over NIP-46");
        signer.shutdown().await;
        pk
    });
    let listed = env.ok(&["key", "list"], "");
    assert!(listed.contains(&keycast_core::nostr::ToBech32::to_bech32(&user).expect("npub")));

    server.signal("TERM");
    let (code, logs) = server.wait(Duration::from_secs(30));
    assert_eq!(code, Some(0), "{logs}");
    assert!(logs.contains("keycast-server stopped"), "{logs}");
    assert!(
        logs.contains("embedded NIP-46 relay"),
        "says so clearly: {logs}"
    );
    let secret = uri.split("secret=").nth(1).expect("secret");
    assert!(!logs.contains(secret), "the connect secret was logged");
}

#[test]
fn a_second_server_is_refused_and_kill_9_leaves_no_stale_lock() {
    let mut env = Env::new();
    let first = Server::start(&mut env);
    first.wait_ready(&env);

    // Same data dir, other ports: refused by the lock, with a clear message.
    let mut other = Env::new();
    other.dir = env.dir.clone();
    let out = other.run(&["serve"], "");
    std::mem::forget(other); // shares the dir; `env` removes it
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("in use by another keycast-server"));

    first.signal("KILL");
    let (code, _) = first.wait(Duration::from_secs(10));
    assert_eq!(code, None, "killed by a signal");
    // Immediately again: the kernel released the lock with the process.
    let again = Server::start(&mut env);
    again.wait_ready(&env);
    again.signal("INT");
    let (code, logs) = again.wait(Duration::from_secs(30));
    assert_eq!(code, Some(0), "{logs}");
}

#[test]
fn authorizations_made_and_revoked_by_the_cli_reach_a_running_server_within_a_second() {
    let mut env = Env::new();
    env.ok(&["user", "add", "alice"], "");
    let key = env.ok(&["key", "generate", "--user", "alice"], "");
    let key_id = key.split_whitespace().next().expect("key id").to_owned();
    let server = Server::start(&mut env);
    server.wait_ready(&env);

    // Made while the server runs, by another process.
    let out = env.run(&["authorization", "create", "--key", &key_id], "");
    assert!(out.status.success());
    let uri = String::from_utf8(out.stdout)
        .expect("utf-8")
        .trim()
        .to_owned();
    let id = String::from_utf8_lossy(&out.stderr)
        .lines()
        .find_map(|l| l.strip_prefix("authorization ").map(str::to_owned))
        .expect("authorization id");
    // As long as the client below would wait for an answer.
    wait_subscribed(&env, 1, Duration::from_secs(15));

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let app = Keys::generate();
    let ask = |timeout: u64| {
        runtime.block_on(async {
            let signer = NostrConnect::new(
                NostrConnectURI::parse(&uri).expect("uri"),
                app.clone(),
                Duration::from_secs(timeout),
                None,
            )
            .expect("client");
            let answer = signer.get_public_key().await;
            signer.shutdown().await;
            answer
        })
    };
    ask(15).expect("served without a restart");

    env.ok(&["authorization", "revoke", &id], "");
    // The promise under test: a revocation takes effect within a second.
    wait_subscribed(&env, 0, Duration::from_secs(1));
    assert!(ask(3).is_err(), "revoked within a second");
    server.signal("TERM");
    let (code, logs) = server.wait(Duration::from_secs(30));
    assert_eq!(code, Some(0), "{logs}");
}

/// The NIP-46 sizing settings reach the running service.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nip46_queue_and_workers_follow_the_settings() {
    let vars = [
        ("KEYCAST_NIP46_QUEUE_CAPACITY", "7".to_owned()),
        ("KEYCAST_NIP46_WORKERS", "3".to_owned()),
        ("KEYCAST_DATABASE_POOL_SIZE", "4".to_owned()),
    ];
    let mut served = common::server::Served::launch(Env::new(), &[], &vars).await;
    assert_eq!(served.metric("keycast_nip46_queue_capacity").await, 7);
    let (clean, logs) = served.stop_checked();
    assert!(clean, "{logs}");
}
