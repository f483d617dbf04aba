//! Account abuse (issue 18, items 1, 4 and parts of 8): password-hashing floods, limits
//! per client address and the trusted proxy, mail floods and one live code per purpose,
//! login CSRF on every login form, progressive login delays that an attacker elsewhere
//! cannot turn against the owner, pre-hijacked accounts, reset revoking apps, and what
//! registration and team invites tell about e-mails.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use reqwest::Method;
use serde_json::{json, Value};

use crate::common::inproc::Api;
use crate::common::pages::{csrf, form, html};
use crate::common::server::{Served, PASSWORD};
use crate::common::Env;

const MIB: u64 = 1024 * 1024;
/// The bound for 500 concurrent password requests.
const RSS_LIMIT: u64 = 300 * MIB;
const FLOOD: usize = 500;

/// The resident set of process `pid`, from `/proc/<pid>/status`.
fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS");
    kb * 1024
}

/// Nearest-rank percentile of sorted `v`.
fn percentile(v: &[Duration], p: f64) -> Duration {
    if v.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p * v.len() as f64).ceil() as usize).clamp(1, v.len());
    v[rank - 1]
}

/// The real binary believing `x-forwarded-for` from 127.0.0.1, as behind a local proxy.
async fn behind_a_proxy() -> Served {
    let vars = [
        ("KEYCAST_TRUSTED_PROXY_HEADER", "x-forwarded-for".to_owned()),
        ("KEYCAST_TRUSTED_PROXIES", "127.0.0.1/32".to_owned()),
    ];
    Served::launch(Env::new(), &[], &vars).await
}

/// What a flood saw.
struct Flood {
    /// Answers by status; every 429 and 503 carried `Retry-After`.
    statuses: BTreeMap<u16, usize>,
    rss_before: u64,
    rss_peak: u64,
    rss_after: u64,
    health: Vec<Duration>,
    took: Duration,
}

/// `FLOOD` concurrent POSTs to `path`, the `n`th with body `body(n)` from forwarded
/// address 198.18.x.y, while `/health` is polled and the server's RSS sampled.
async fn flood(served: &Served, path: &str, body: impl Fn(usize) -> Value) -> Flood {
    let pid = served.pid();
    let rss_before = rss(pid);
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let done = done.clone();
        tokio::spawn(async move {
            let mut peak = 0;
            let mut tick = tokio::time::interval(Duration::from_millis(5));
            while !done.load(Ordering::Acquire) {
                tick.tick().await;
                peak = peak.max(rss(pid));
            }
            peak
        })
    };
    let health = {
        let done = done.clone();
        let url = served.env.url("/health");
        tokio::spawn(async move {
            // Its own connection, as a monitor would have.
            let http = reqwest::Client::new();
            let mut seen = Vec::new();
            let mut tick = tokio::time::interval(Duration::from_millis(20));
            while !done.load(Ordering::Acquire) {
                tick.tick().await;
                let started = Instant::now();
                let answer = http.get(&url).timeout(Duration::from_secs(5)).send().await;
                let status = answer.map(|r| r.status().as_u16()).unwrap_or(0);
                assert_eq!(status, 200, "/health during the flood");
                seen.push(started.elapsed());
            }
            seen
        })
    };
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .expect("client");
    let start = Arc::new(tokio::sync::Barrier::new(FLOOD));
    let started = Instant::now();
    let tasks: Vec<_> = (0..FLOOD)
        .map(|n| {
            let request = http
                .post(served.env.url(path))
                .header(
                    "x-forwarded-for",
                    format!("198.18.{}.{}", n / 250, n % 250 + 1),
                )
                .header("content-type", "application/json")
                .body(body(n).to_string())
                .timeout(Duration::from_secs(120));
            let start = start.clone();
            tokio::spawn(async move {
                start.wait().await;
                let r = request.send().await.expect("an answer");
                let retry_after = r.headers().contains_key("retry-after");
                (r.status().as_u16(), retry_after)
            })
        })
        .collect();
    let mut statuses = BTreeMap::new();
    for t in tasks {
        let (status, retry_after) = t.await.expect("task");
        if matches!(status, 429 | 503) {
            assert!(retry_after, "{status} carries Retry-After");
        }
        *statuses.entry(status).or_insert(0) += 1;
    }
    let took = started.elapsed();
    done.store(true, Ordering::Release);
    let rss_peak = sampler.await.expect("sampler");
    let mut health = health.await.expect("health poller");
    health.sort();
    Flood {
        statuses,
        rss_before,
        rss_peak,
        rss_after: rss(pid),
        health,
        took,
    }
}

impl Flood {
    fn report(&self, what: &str) {
        println!(
            "{what}: {FLOOD} concurrent in {:?}; answers {:?}; RSS before {} MiB, peak {} MiB, \
             after {} MiB; /health {} polls, p99 {:?}, max {:?}",
            self.took,
            self.statuses,
            self.rss_before / MIB,
            self.rss_peak / MIB,
            self.rss_after / MIB,
            self.health.len(),
            percentile(&self.health, 0.99),
            self.health.last().copied().unwrap_or_default(),
        );
    }

    /// The bounds of item 1: memory under the limit during and after, `/health` served,
    /// and the excess refused (503 busy or 429) rather than queued.
    fn assert_bounded(&self, processed: &[u16]) {
        assert!(
            self.rss_peak < RSS_LIMIT,
            "peak RSS {} MiB",
            self.rss_peak / MIB
        );
        assert!(
            self.rss_after < RSS_LIMIT,
            "RSS after {} MiB",
            self.rss_after / MIB
        );
        assert!(
            !self.health.is_empty(),
            "/health was polled during the flood"
        );
        let allowed: Vec<u16> = processed.iter().copied().chain([429, 503]).collect();
        assert!(
            self.statuses.keys().all(|s| allowed.contains(s)),
            "{:?}",
            self.statuses
        );
        assert_eq!(self.statuses.values().sum::<usize>(), FLOOD);
        assert!(
            self.statuses.get(&503).copied().unwrap_or(0) > 0,
            "more than the hashing slots and queue at once: some were told to retry: {:?}",
            self.statuses
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundred_concurrent_logins_keep_memory_bounded_and_health_answering() {
    let served = behind_a_proxy().await;
    let flood = flood(
        &served,
        "/api/auth/login",
        |n| json!({"email": format!("nobody{n}@flood.example"), "password": "guess guess guess"}),
    )
    .await;
    flood.report("logins");
    flood.assert_bounded(&[401]);
    let (status, _) = served.json(Method::GET, "/health", None, None).await;
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundred_concurrent_registrations_keep_memory_bounded_and_health_answering() {
    let served = behind_a_proxy().await;
    let flood = flood(
        &served,
        "/api/auth/register",
        |n| json!({"email": format!("new{n}@flood.example"), "password": PASSWORD}),
    )
    .await;
    flood.report("registrations");
    flood.assert_bounded(&[201]);
    let created = flood.statuses.get(&201).copied().unwrap_or(0);
    assert!(created > 0, "some registrations went through");
    assert_eq!(
        served.metric("keycast_registrations_total").await,
        created as u64,
        "each 201 is one account, nothing else was made"
    );
}

/// Logins from `peer` (the TCP peer in-process) with a spoofed `x-forwarded-for` each.
async fn spoofed_logins(api: &Api, peer: &str, n: usize) -> Vec<StatusCode> {
    let mut statuses = Vec::new();
    for i in 0..n {
        let request = axum::http::Request::post("/api/auth/login")
            .header("content-type", "application/json")
            .header("x-forwarded-for", format!("203.0.113.{}", i + 1))
            .body(axum::body::Body::from(
                json!({"email": format!("u{i}@example.org"), "password": "guess guess guess"})
                    .to_string(),
            ))
            .expect("request");
        let request = crate::common::inproc::from_peer(request, peer);
        statuses.push(crate::common::inproc::send(&api.state, request).await.0);
    }
    statuses
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logins_and_registrations_are_limited_per_client_address_without_a_proxy() {
    let api = Api::new(&[
        ("KEYCAST_LOGINS_PER_ADDRESS_PER_MINUTE", "4"),
        ("KEYCAST_REGISTRATIONS_PER_ADDRESS_PER_HOUR", "2"),
    ])
    .await;
    // No proxy is trusted: the forwarded addresses are the client's own words.
    let statuses = spoofed_logins(&api, "192.0.2.1", 5).await;
    assert_eq!(statuses[..4], [StatusCode::UNAUTHORIZED; 4], "{statuses:?}");
    assert_eq!(statuses[4], StatusCode::TOO_MANY_REQUESTS, "{statuses:?}");
    let fresh = spoofed_logins(&api, "192.0.2.2", 1).await;
    assert_eq!(
        fresh,
        [StatusCode::UNAUTHORIZED],
        "another address has its own budget"
    );
    // IPv6 counts by /64: a host that changes its interface id is the same client.
    for (i, peer) in ["2001:db8:7:7::1", "2001:db8:7:7::2", "2001:db8:7:7:1:2:3:4"]
        .iter()
        .enumerate()
    {
        let ((status, body), _) = api
            .call_from(
                peer,
                "POST",
                "/api/auth/register",
                None,
                Some(json!({"email": format!("v6-{i}@example.org"), "password": PASSWORD})),
            )
            .await;
        let expected = if i < 2 {
            StatusCode::CREATED
        } else {
            StatusCode::TOO_MANY_REQUESTS
        };
        assert_eq!(status, expected, "{peer}: {body}");
    }
    let ((status, _), retry_after) = api
        .call_from(
            "2001:db8:7:8::1",
            "POST",
            "/api/auth/register",
            None,
            Some(json!({"email": "v6-other@example.org", "password": PASSWORD})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "another /64");
    assert_eq!(retry_after, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forwarded_address_counts_only_when_a_trusted_proxy_sends_it() {
    let api = Api::new(&[
        ("KEYCAST_LOGINS_PER_ADDRESS_PER_MINUTE", "3"),
        ("KEYCAST_TRUSTED_PROXY_HEADER", "X-Forwarded-For"),
        ("KEYCAST_TRUSTED_PROXIES", "10.0.0.0/8"),
    ])
    .await;
    let through_proxy = spoofed_logins(&api, "10.1.1.1", 6).await;
    assert_eq!(
        through_proxy,
        [StatusCode::UNAUTHORIZED; 6],
        "each forwarded client has its own budget"
    );
    let spoofed = spoofed_logins(&api, "198.51.100.1", 4).await;
    assert_eq!(
        spoofed[3],
        StatusCode::TOO_MANY_REQUESTS,
        "an untrusted peer's header is ignored: {spoofed:?}"
    );
}

