//! Issue 18, item 2: the relays of a `nostrconnect://` URI. Through the `/connect`
//! approval page of the real binary: relays at internal addresses and URIs with too many
//! relays are refused with a 4xx and create nothing; an account flooding pairings gets 429
//! with `Retry-After`; the server's descriptors stay bounded, and the relays of revoked
//! authorizations are let go.

use std::time::Duration;

use keycast_core::nostr::Keys;
use keycast_nip46::testing::TestRelay;
use reqwest::header::{COOKIE, RETRY_AFTER};
use reqwest::{Method, StatusCode};

use crate::common::pages::{csrf, form, html, login};
use crate::common::server::{Account, Served};

/// A logged-in account on the connect page: its session cookie and CSRF token.
struct Approver {
    account: Account,
    cookie: String,
    csrf: String,
}

impl Approver {
    async fn new(served: &Served, email: &str) -> Self {
        let account = served.account(email).await;
        let cookie = login(served, email).await;
        // Any usable URI shows the consent page, which carries the session's CSRF token.
        let uri = uri(&[&served.relay()]);
        let path = format!("/connect?{}", form(&[("uri", &uri)]));
        let (status, page, _) = html(served, Method::GET, &path, Some(&cookie), None).await;
        assert_eq!(status, 200, "{page}");
        Self {
            csrf: csrf(&page),
            account,
            cookie,
        }
    }

    /// Approves `uri` with the account's key: the status, the page and `Retry-After`.
    async fn approve(&self, served: &Served, uri: &str) -> (StatusCode, String, Option<u64>) {
        let response = served
            .http
            .post(served.env.url("/connect"))
            .header(COOKIE, &self.cookie)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form(&[
                ("uri", uri),
                ("key_id", &self.account.key_id),
                ("csrf", &self.csrf),
                ("decision", "approve"),
            ]))
            .send()
            .await
            .expect("approve");
        let status = response.status();
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok());
        (status, response.text().await.expect("page"), retry_after)
    }
}

/// A `nostrconnect://` URI of a fresh client key naming `relays`.
fn uri(relays: &[&str]) -> String {
    let query: Vec<String> = relays.iter().map(|r| format!("relay={r}")).collect();
    format!(
        "nostrconnect://{}?{}&secret=s3cret&name=Probe",
        Keys::generate().public_key().to_hex(),
        query.join("&")
    )
}

/// A server started with `settings` as its `[nip46_limits]` table.
async fn served_with(settings: &str) -> Served {
    let config = std::env::temp_dir().join(format!("keycast-relays-{}.toml", uuid::Uuid::new_v4()));
    std::fs::write(&config, format!("[nip46_limits]\n{settings}\n")).expect("config file");
    let served = Served::start_with(&["--config", &config.display().to_string()]).await;
    let _ = std::fs::remove_file(&config);
    served
}

/// The server's established TCP connections to any of `ports` on 127.0.0.1 (its sockets'
/// inodes matched against `/proc/<pid>/net/tcp`).
fn connections_to(served: &Served, ports: &[u16]) -> usize {
    let pid = served.pid();
    let inodes: std::collections::HashSet<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("/proc/<pid>/fd")
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter_map(|l| {
            let l = l.to_string_lossy().into_owned();
            Some(l.strip_prefix("socket:[")?.strip_suffix(']')?.to_owned())
        })
        .collect();
    let table = std::fs::read_to_string(format!("/proc/{pid}/net/tcp")).expect("net/tcp");
    table
        .lines()
        .skip(1)
        .filter(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let remote_port = f[2]
                .rsplit(':')
                .next()
                .and_then(|p| u16::from_str_radix(p, 16).ok());
            // State 01: established.
            f[3] == "01" && remote_port.is_some_and(|p| ports.contains(&p)) && inodes.contains(f[9])
        })
        .count()
}

/// Open descriptors of the server process.
fn fds(served: &Served) -> usize {
    std::fs::read_dir(format!("/proc/{}/fd", served.pid()))
        .expect("/proc/<pid>/fd")
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relays_at_internal_addresses_and_too_many_relays_are_refused_and_nothing_is_made() {
    // Default relay policy; pairings not rate-limited here (that is the next test).
    let served = served_with("pairing = \"1000/min\"").await;
    let ann = Approver::new(&served, "ann@example.org").await;
    let free = keycast_test_support::closed_port();
    for relay in [
        format!("ws://127.0.0.1:{free}"),
        format!("ws://localhost:{free}"),
        format!("ws://[::1]:{free}"),
        format!("ws://[::ffff:127.0.0.1]:{free}"),
        "ws://10.0.0.1:7777".to_owned(),
        "ws://192.168.1.1".to_owned(),
        "ws://100.64.0.1".to_owned(),
        "ws://169.254.169.254".to_owned(),
        "ws://[fd00:ec2::254]".to_owned(),
        "ws://0.0.0.0:80".to_owned(),
    ] {
        let (status, page, _) = ann.approve(&served, &uri(&[&relay])).await;
        assert_eq!(status, 400, "{relay}: {page}");
        assert!(page.contains("does not connect to that"), "{relay}: {page}");
    }
    // Four relays besides this server's: too many (checked before any is resolved).
    let four = [
        "wss://a.relay.example",
        "wss://b.relay.example",
        "wss://c.relay.example",
        "wss://d.relay.example",
    ];
    let (status, page, _) = ann.approve(&served, &uri(&four)).await;
    assert_eq!(status, 400, "{page}");
    assert!(page.contains("at most 3"), "{page}");
    // The original attack: one URI with 100 relays.
    let many: Vec<String> = (0..100)
        .map(|i| format!("wss://r{i}.relay.example"))
        .collect();
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    let (status, page, _) = ann.approve(&served, &uri(&many)).await;
    assert_eq!(status, 400, "{page}");

    assert!(served.authorizations(&ann.account).await.is_empty());
    assert_eq!(served.policy_count(&ann.account).await, 0);
    // The configured (embedded) relay is always allowed.
    let (status, page, _) = ann.approve(&served, &uri(&[&served.relay()])).await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(served.authorizations(&ann.account).await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flooding_pairings_gets_429_with_retry_after() {
    // The default: five pairings a minute per account.
    let served = Served::start().await;
    let ann = Approver::new(&served, "ann@example.org").await;
    let mut statuses = Vec::new();
    let mut waits = Vec::new();
    for _ in 0..12 {
        let (status, page, retry_after) = ann.approve(&served, &uri(&[&served.relay()])).await;
        if status == StatusCode::TOO_MANY_REQUESTS {
            assert!(page.contains("too many pairings"), "{page}");
            waits.push(retry_after.expect("Retry-After"));
        }
        statuses.push(status.as_u16());
    }
    assert_eq!(statuses[..5], [200; 5], "{statuses:?}");
    assert_eq!(statuses[5..], [429; 7], "{statuses:?}");
    assert!(waits.iter().all(|w| (1..=60).contains(w)), "{waits:?}");
    assert_eq!(served.authorizations(&ann.account).await.len(), 5);
    assert_eq!(
        served.policy_count(&ann.account).await,
        5,
        "none for refusals"
    );
    // Another account is not held back by this one.
    let bob = Approver::new(&served, "bob@example.org").await;
    let (status, page, _) = bob.approve(&served, &uri(&[&served.relay()])).await;
    assert_eq!(status, 200, "{page}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extra_relays_are_capped_per_account_and_let_go_when_revoked() {
    // Loopback relays allowed by name, as an operator would list its own.
    let served = served_with("pairing = \"1000/min\"\nrelay_allow_list = [\"127.0.0.1\"]").await;
    let ann = Approver::new(&served, "ann@example.org").await;
    let mut relays = Vec::new();
    for _ in 0..12 {
        relays.push(TestRelay::with_defaults().await.expect("relay"));
    }
    let urls: Vec<String> = relays.iter().map(|r| r.url().to_string()).collect();
    let u: Vec<&str> = urls.iter().map(String::as_str).collect();
    let ports: Vec<u16> = urls
        .iter()
        .map(|u| u.rsplit(':').next().expect("port").parse().expect("port"))
        .collect();
    let baseline = fds(&served);

    // Three URIs of three relays each: nine relays, each one connection.
    for chunk in u[..9].chunks(3) {
        let (status, page, _) = ann.approve(&served, &uri(chunk)).await;
        assert_eq!(status, 200, "{page}");
    }
    let paired = fds(&served);
    // Two more would make eleven: over the account's ten.
    let (status, page, _) = ann.approve(&served, &uri(&u[9..11])).await;
    assert_eq!(status, 409, "{page}");
    assert!(page.contains("at most 10"), "{page}");
    // The URI of the original attack, on relays that accept: refused before any socket.
    let many: Vec<String> = (0..100)
        .map(|i| format!("ws://127.0.0.1:{}", 20_000 + i))
        .collect();
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    let (status, _, _) = ann.approve(&served, &uri(&many)).await;
    assert_eq!(status, 400);
    let after = fds(&served);
    super::report(
        "nostrconnect:// approvals naming 11 relays and a URI of 100 relays, from one account",
        &format!(
            "nine relays connected (one descriptor each: {baseline} → {paired}); the tenth and \
             eleventh refused (409, account cap), the 100-relay URI refused before any socket \
             (400); descriptors after the refusals {after}; every connection closed on revoke"
        ),
        (super::rss_bytes(served.pid()), paired.max(after)),
        None,
    );
    assert!(
        paired <= baseline + 9 + 6,
        "one descriptor per relay (and some slack): {baseline} → {paired}"
    );
    assert!(
        after <= paired + 3,
        "refusals open nothing: {paired} → {after}"
    );
    assert_eq!(served.authorizations(&ann.account).await.len(), 3);

    // Revoked: their relays are dropped and their connections closed.
    for a in served.authorizations(&ann.account).await {
        let path = format!("/api/authorizations/{}", a["id"].as_str().expect("id"));
        let (status, body) = served
            .json(Method::DELETE, &path, Some(&ann.account.session), None)
            .await;
        assert_eq!(status, 200, "{body}");
    }
    keycast_test_support::eventually(
        Duration::from_secs(20),
        "no connection to relays of revoked authorizations",
        || async { connections_to(&served, &ports) == 0 },
    )
    .await;
    println!("server descriptors after revoking: {}", fds(&served));
    // With none left, the account may use other relays again.
    let (status, page, _) = ann.approve(&served, &uri(&u[9..12])).await;
    assert_eq!(status, 200, "{page}");
}
