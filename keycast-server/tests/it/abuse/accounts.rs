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
use keycast_test_support::eventually;

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
    fds_peak: usize,
    health: Vec<Duration>,
    took: Duration,
}

/// `FLOOD` concurrent POSTs to `path`, the `n`th with body `body(n)` from forwarded
/// address 198.18.x.y, while `/health` is polled and the server's RSS sampled.
async fn flood(served: &Served, path: &str, body: impl Fn(usize) -> Value) -> Flood {
    let pid = served.pid();
    let rss_before = rss(pid);
    let descriptors = super::Peaks::watch(pid);
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
    let (_, fds_peak) = descriptors.stop();
    let mut health = health.await.expect("health poller");
    health.sort();
    Flood {
        statuses,
        rss_before,
        rss_peak,
        rss_after: rss(pid),
        fds_peak,
        health,
        took,
    }
}

impl Flood {
    fn report(&self, what: &str) {
        super::report(
            &format!("{FLOOD} concurrent {what} with distinct e-mails (and forwarded addresses, behind a trusted proxy)"),
            &format!(
                "RSS {} MiB before, {} MiB after (bound 300); /health answered all {} polls; answers {:?} (every 429 and 503 with Retry-After)",
                self.rss_before / MIB,
                self.rss_after / MIB,
                self.health.len(),
                self.statuses
            ),
            (self.rss_peak, self.fds_peak),
            Some(percentile(&self.health, 0.99)),
        );
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

/// The files the server wrote to `<data dir>/mail`, with their text, and asserts each is
/// readable by its owner only.
fn mails(api: &Api) -> Vec<String> {
    use std::os::unix::fs::PermissionsExt;
    let dir = api.state.services.config.data_dir.join("mail");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    entries
        .map(|e| e.expect("entry").path())
        .map(|path| {
            let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "{}: {mode:o}", path.display());
            std::fs::read_to_string(&path).expect("mail")
        })
        .collect()
}

fn mails_to(api: &Api, to: &str) -> Vec<String> {
    mails(api)
        .into_iter()
        .filter(|m| m.contains(&format!("To: {to}")))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mail_burst_to_one_address_sends_at_most_the_limit() {
    let api = Api::new(&[]).await;
    let session = api.account("ann@example.org").await;
    let burst: Vec<_> = (0..20)
        .map(|_| {
            api.call_from(
                "127.0.0.1",
                "POST",
                "/api/auth/email/verify/request",
                Some(&session),
                None,
            )
        })
        .collect();
    let answers = futures_util::future::join_all(burst).await;
    let sent = answers
        .iter()
        .filter(|((s, _), _)| *s == StatusCode::ACCEPTED)
        .count();
    let refused: Vec<_> = answers
        .iter()
        .filter(|((s, _), _)| *s == StatusCode::TOO_MANY_REQUESTS)
        .collect();
    assert_eq!(
        (sent, refused.len()),
        (5, 15),
        "KEYCAST_MAIL_PER_ACCOUNT_PER_HOUR (5)"
    );
    assert!(refused
        .iter()
        .all(|(_, retry)| retry.is_some_and(|s| s > 0)));
    assert_eq!(
        mails_to(&api, "ann@example.org").len(),
        5,
        "nothing sent over the limit"
    );
    let (status, _) = api
        .call(
            "POST",
            "/api/auth/confirm/request",
            Some(&session),
            Some(json!({"action": "export_key"})),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::TOO_MANY_REQUESTS,
        "one budget for every code of the account"
    );
    assert_eq!(mails_to(&api, "ann@example.org").len(), 5);

    // Of the five codes mailed at once, exactly one is live: the store keeps the newest.
    let mut verified = 0;
    for mail in mails_to(&api, "ann@example.org") {
        let token = crate::common::smtp::token_in(&mail);
        let (status, body) = api
            .call(
                "POST",
                "/api/auth/email/verify",
                None,
                Some(json!({ "token": token })),
            )
            .await;
        match status {
            StatusCode::OK => verified += 1,
            StatusCode::BAD_REQUEST => assert_eq!(body["error"]["code"], "invalid_token"),
            other => panic!("{other}: {body}"),
        }
    }
    assert_eq!(
        verified, 1,
        "older codes stopped working when a newer one was issued"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newer_code_makes_the_older_one_useless() {
    let api = Api::new(&[]).await;
    let session = api.account("bo@example.org").await;
    let mut codes = Vec::new();
    for _ in 0..2 {
        let (status, body) = api
            .call(
                "POST",
                "/api/auth/email/verify/request",
                Some(&session),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        codes.push(crate::common::smtp::token_in(&api.newest_mail()));
    }
    assert_ne!(codes[0], codes[1]);
    let verify = |token: &str| {
        api.call(
            "POST",
            "/api/auth/email/verify",
            None,
            Some(json!({ "token": token })),
        )
    };
    let (status, body) = verify(&codes[0]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["code"], "invalid_token");
    let (status, body) = verify(&codes[1]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forgot_password_is_limited_alike_for_known_and_unknown_addresses() {
    let api = Api::new(&[]).await;
    let session = api.account("ann@example.org").await;
    // Ann's own mail budget is spent: that must not show in forgot-password's answers.
    for _ in 0..5 {
        let (status, _) = api
            .call(
                "POST",
                "/api/auth/email/verify/request",
                Some(&session),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::ACCEPTED);
    }
    let mut answers = BTreeMap::new();
    for email in ["ann@example.org", "nobody@example.org"] {
        let mut seen = Vec::new();
        // From a new client address each time: the recipient's budget is what stops it.
        for i in 0..7 {
            let ((status, body), retry) = api
                .call_from(
                    &format!("192.0.2.{}", i + 1),
                    "POST",
                    "/api/auth/password/forgot",
                    None,
                    Some(json!({ "email": email })),
                )
                .await;
            seen.push((status, body, retry.is_some()));
        }
        answers.insert(email, seen);
    }
    let ann = &answers["ann@example.org"];
    assert_eq!(
        ann, &answers["nobody@example.org"],
        "the same answers, in the same order"
    );
    let statuses: Vec<_> = ann.iter().map(|(s, _, _)| *s).collect();
    assert_eq!(statuses[..5], [StatusCode::ACCEPTED; 5], "{statuses:?}");
    assert_eq!(statuses[5..], [StatusCode::TOO_MANY_REQUESTS; 2]);
    assert!(ann[5].2, "429 carries Retry-After");
    // The reset mails are sent in the background: wait for the five.
    eventually(
        Duration::from_secs(20),
        "five reset mails arrive",
        || async { mails_to(&api, "ann@example.org").len() >= 10 },
    )
    .await;
    assert_eq!(
        mails_to(&api, "ann@example.org").len(),
        10,
        "5 codes + 5 resets"
    );
    assert!(mails_to(&api, "nobody@example.org").is_empty());
    // One client address asking for many recipients is bounded too.
    let mut last = StatusCode::OK;
    for i in 0..21 {
        let ((status, _), _) = api
            .call_from(
                "198.51.100.50",
                "POST",
                "/api/auth/password/forgot",
                None,
                Some(json!({ "email": format!("probe{i}@example.org") })),
            )
            .await;
        last = status;
    }
    assert_eq!(
        last,
        StatusCode::TOO_MANY_REQUESTS,
        "KEYCAST_MAIL_PER_ADDRESS_PER_HOUR (20)"
    );
}

/// A form post straight through the router from 127.0.0.1, with `Sec-Fetch-Site` when
/// given: the status, whether a session cookie was set, and the page.
async fn post_form(
    api: &Api,
    path: &str,
    fields: &[(&str, &str)],
    fetch_site: Option<&str>,
) -> (StatusCode, bool, String) {
    use http_body_util::BodyExt;
    use tower::ServiceExt;
    let mut r =
        axum::http::Request::post(path).header("content-type", "application/x-www-form-urlencoded");
    if let Some(site) = fetch_site {
        r = r.header("sec-fetch-site", site);
    }
    let request = crate::common::inproc::with_peer(
        r.body(axum::body::Body::from(form(fields)))
            .expect("request"),
    );
    let response = keycast_server::app(api.state.clone())
        .oneshot(request)
        .await
        .expect("response");
    let status = response.status();
    let cookie = response.headers().contains_key("set-cookie");
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    (status, cookie, String::from_utf8_lossy(&bytes).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_login_form_refuses_cross_site_posts() {
    let clients =
        json!([{"id": "notes", "name": "Notes", "redirect_uris": ["https://notes.example/cb"]}]);
    let api = Api::new(&[("KEYCAST_OAUTH_CLIENTS", &clients.to_string())]).await;
    api.account("ann@example.org").await;
    let creds = [("email", "ann@example.org"), ("password", PASSWORD)];
    let oauth: Vec<(&str, &str)> = [
        ("response_type", "code"),
        ("client_id", "notes"),
        ("redirect_uri", "https://notes.example/cb"),
        (
            "code_challenge",
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
        ),
        ("code_challenge_method", "S256"),
        ("state", "st"),
        ("scope", "sign_event:1"),
    ]
    .into_iter()
    .chain(creds)
    .collect();
    let uri = format!(
        "nostrconnect://{}?relay=wss://relay.example&secret=s",
        keycast_core::nostr::Keys::generate().public_key().to_hex()
    );
    let connect: Vec<(&str, &str)> = [("uri", uri.as_str())].into_iter().chain(creds).collect();
    for (path, fields) in [
        ("/ui/login", creds.to_vec()),
        ("/oauth/login", oauth),
        ("/connect/login", connect),
    ] {
        for site in ["cross-site", "same-site"] {
            let (status, cookie, page) = post_form(&api, path, &fields, Some(site)).await;
            assert_eq!(status, StatusCode::FORBIDDEN, "{path} {site}: {page}");
            assert!(!cookie, "{path}: no session for a cross-site post");
            assert!(page.contains("sent from another site"), "{path}: {page}");
        }
        for site in [Some("same-origin"), Some("none"), None] {
            let (status, cookie, page) = post_form(&api, path, &fields, site).await;
            assert_eq!(status, StatusCode::SEE_OTHER, "{path} {site:?}: {page}");
            assert!(cookie, "{path} {site:?}");
        }
    }
}

/// A JSON login of `email` with `password` from `peer`: the status and `Retry-After`.
async fn login_from(
    api: &Api,
    peer: &str,
    email: &str,
    password: &str,
) -> (StatusCode, Option<u64>) {
    let ((status, _), retry) = api
        .call_from(
            peer,
            "POST",
            "/api/auth/login",
            None,
            Some(json!({"email": email, "password": password})),
        )
        .await;
    (status, retry)
}

/// Waits (with a deadline) until `peer` may try again; then fails once more and answers
/// the `Retry-After` of the attempt after that.
async fn fail_again_when_allowed(api: &Api, peer: &str, email: &str) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match login_from(api, peer, email, "guess guess guess").await {
            (StatusCode::UNAUTHORIZED, _) => break,
            (StatusCode::TOO_MANY_REQUESTS, _) => {
                assert!(Instant::now() < deadline, "the delay never ended");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            other => panic!("{other:?}"),
        }
    }
    let (status, retry) = login_from(api, peer, email, "guess guess guess").await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    retry.expect("Retry-After")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attacker_elsewhere_cannot_keep_the_owner_out() {
    let api = Api::new(&[("KEYCAST_LOGIN_FAILURES_PER_EMAIL", "8")]).await;
    api.account("ann@example.org").await; // logged in from 127.0.0.1: known to the account
    api.account("bob@example.org").await;
    let (ann, home, attacker) = ("ann@example.org", "127.0.0.1", "198.51.100.1");

    // One address guessing: five answers, then delays of 1, 2, 4 s, even for the right
    // password, while the owner at home is let in at once.
    for _ in 0..5 {
        assert_eq!(
            login_from(&api, attacker, ann, "guess guess guess").await.0,
            StatusCode::UNAUTHORIZED
        );
    }
    let (status, first) = login_from(&api, attacker, ann, PASSWORD).await;
    assert_eq!((status, first), (StatusCode::TOO_MANY_REQUESTS, Some(1)));
    let second = fail_again_when_allowed(&api, attacker, ann).await;
    let third = fail_again_when_allowed(&api, attacker, ann).await;
    println!("Retry-After after 5, 6 and 7 failures: 1, {second}, {third} s");
    assert!(
        1 < second && second < third,
        "delays grow: 1, {second}, {third}"
    );
    assert_eq!(
        login_from(&api, home, ann, PASSWORD).await.0,
        StatusCode::OK,
        "the owner at home"
    );

    // Many addresses guessing: the account's budget (8 failures a window) is spent.
    assert_eq!(
        login_from(&api, "198.51.100.2", ann, "guess guess guess")
            .await
            .0,
        StatusCode::UNAUTHORIZED
    );
    let (status, wait) = login_from(&api, "198.51.100.3", ann, "guess guess guess").await;
    assert_eq!(
        status,
        StatusCode::TOO_MANY_REQUESTS,
        "a new guessing address is refused"
    );
    assert!(
        wait.is_some_and(|s| (1..=900).contains(&s)),
        "until the window ends: {wait:?}"
    );
    assert_eq!(
        login_from(&api, "198.51.100.3", "bob@example.org", PASSWORD)
            .await
            .0,
        StatusCode::OK,
        "other accounts are not affected"
    );
    // The owner: at home, in at once; somewhere new, refused like the guessers, until a
    // password reset by mail from there (which proves the mailbox) makes that place known.
    assert_eq!(
        login_from(&api, home, ann, PASSWORD).await.0,
        StatusCode::OK
    );
    let cafe = "192.0.2.77";
    assert_eq!(
        login_from(&api, cafe, ann, PASSWORD).await.0,
        StatusCode::TOO_MANY_REQUESTS
    );
    let ((status, _), _) = api
        .call_from(
            cafe,
            "POST",
            "/api/auth/password/forgot",
            None,
            Some(json!({ "email": ann })),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    eventually(
        Duration::from_secs(20),
        "the reset mail arrives",
        || async { !mails_to(&api, ann).is_empty() },
    )
    .await;
    let code = crate::common::smtp::token_in(&mails_to(&api, ann)[0]);
    let new_password = "a brand new password";
    let ((status, body), _) = api
        .call_from(
            cafe,
            "POST",
            "/api/auth/password/reset",
            None,
            Some(json!({ "token": code, "password": new_password })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        login_from(&api, cafe, ann, new_password).await.0,
        StatusCode::OK,
        "in from the new place"
    );
    assert_eq!(
        login_from(&api, "198.51.100.4", ann, new_password).await.0,
        StatusCode::TOO_MANY_REQUESTS,
        "guessers stay refused (even with the right password) until the window ends"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_reset_can_revoke_every_app_session() {
    let api = Api::new(&[]).await;
    let mut tokens = BTreeMap::new();
    for email in ["ann@example.org", "bob@example.org"] {
        let session = api.account(email).await;
        let (status, key) = api
            .call("POST", "/api/keys", Some(&session), Some(json!({})))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{key}");
        for _ in 0..2 {
            let (status, made) = api
                .call(
                    "POST",
                    "/api/authorizations",
                    Some(&session),
                    Some(json!({"key_id": key["id"]})),
                )
                .await;
            assert_eq!(status, StatusCode::CREATED, "{made}");
            tokens
                .entry(email)
                .or_insert_with(Vec::new)
                .push(made["token"].as_str().expect("token").to_owned());
        }
    }
    let reset = |email: &'static str, revoke: bool| {
        let api = &api;
        async move {
            let (status, _) = api
                .call(
                    "POST",
                    "/api/auth/password/forgot",
                    None,
                    Some(json!({ "email": email })),
                )
                .await;
            assert_eq!(status, StatusCode::ACCEPTED);
            eventually(
                Duration::from_secs(20),
                "the reset mail arrives",
                || async { !mails_to(api, email).is_empty() },
            )
            .await;
            let mail = mails_to(api, email).remove(0);
            assert!(mail.contains("revoke_apps"), "the mail offers it: {mail}");
            let code = crate::common::smtp::token_in(&mail);
            let body =
                json!({"token": code, "password": "a brand new password", "revoke_apps": revoke});
            let (status, answer) = api
                .call("POST", "/api/auth/password/reset", None, Some(body))
                .await;
            assert_eq!(status, StatusCode::OK, "{answer}");
            answer
        }
    };
    let answer = reset("ann@example.org", true).await;
    assert_eq!(answer["apps_revoked"], 2, "{answer}");
    assert_eq!(answer["sessions_ended"], 1, "{answer}");
    for token in &tokens["ann@example.org"] {
        assert_eq!(
            crate::common::inproc::sign(&api, token, 1).await,
            StatusCode::UNAUTHORIZED
        );
    }
    let answer = reset("bob@example.org", false).await;
    assert_eq!(answer["apps_revoked"], 0, "{answer}");
    for token in &tokens["bob@example.org"] {
        assert_eq!(
            crate::common::inproc::sign(&api, token, 1).await,
            StatusCode::OK,
            "without revoke_apps the apps keep working"
        );
    }
}

/// With SMTP configured (never reached here: nothing in these cases sends mail).
async fn with_smtp(extra: &[(&str, &str)]) -> Api {
    let mut settings = vec![("KEYCAST_SMTP_URL", "smtp://127.0.0.1:9")];
    settings.extend_from_slice(extra);
    Api::new(&settings).await
}

fn assert_unverified(status: StatusCode, body: &Value) {
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["error"]["code"], "email_unverified", "{body}");
}

async fn verified(api: &Api, session: &str) {
    let (_, me) = api.call("GET", "/api/me", Some(session), None).await;
    let id: keycast_core::UserId = me["id"].as_str().expect("id").parse().expect("user id");
    api.state
        .services
        .store
        .mark_email_verified(id, keycast_core::nostr::Timestamp::now())
        .await
        .expect("verified");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_smtp_keys_and_apps_need_a_verified_email() {
    let api = with_smtp(&[]).await;
    let nsec = keycast_core::nostr::Keys::generate()
        .secret_key()
        .to_secret_hex();
    // A key brought at registration: refused, and no account is left behind.
    let (status, body) = api
        .call(
            "POST",
            "/api/auth/register",
            None,
            Some(json!({"email": "victim@example.org", "password": PASSWORD, "nsec": nsec})),
        )
        .await;
    assert_unverified(status, &body);
    let ann = api.account("victim@example.org").await; // the e-mail was still free
    let (status, body) = api
        .call("POST", "/api/keys", Some(&ann), Some(json!({})))
        .await;
    assert_unverified(status, &body);
    let (_, keys) = api.call("GET", "/api/keys", Some(&ann), None).await;
    assert_eq!(keys["keys"], json!([]), "nothing created");
    // A key planted some other way (an embedding application): still no app on it.
    let (_, me) = api.call("GET", "/api/me", Some(&ann), None).await;
    let ann_id: keycast_core::UserId = me["id"].as_str().expect("id").parse().expect("id");
    let tenant = api
        .state
        .services
        .store
        .get_user(ann_id)
        .await
        .expect("user")
        .tenant_id;
    let planted = api
        .state
        .services
        .custody
        .create_key(keycast_core::NewKey::generate(
            tenant,
            keycast_core::Holder::User(ann_id),
            keycast_core::KeyKind::User,
            keycast_core::Label::parse("planted").expect("label"),
        ))
        .await;
    let planted = planted.expect("planted key");
    let (status, body) = api
        .call(
            "POST",
            "/api/authorizations",
            Some(&ann),
            Some(json!({"key_id": planted.id.to_string()})),
        )
        .await;
    assert_unverified(status, &body);
    let (_, list) = api
        .call("GET", "/api/authorizations", Some(&ann), None)
        .await;
    assert_eq!(list["authorizations"], json!([]));
    let (_, policies) = api.call("GET", "/api/policies", Some(&ann), None).await;
    assert_eq!(policies["policies"], json!([]), "not even a policy");

    // Teams: a verified admin's key, granted to the unverified member, or by it.
    let carol = api.account("carol@example.org").await;
    verified(&api, &carol).await;
    let (status, team) = api
        .call(
            "POST",
            "/api/teams",
            Some(&carol),
            Some(json!({"name": "t"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{team}");
    let team = team["id"].as_str().expect("team id").to_owned();
    let (status, key) = api
        .call(
            "POST",
            &format!("/api/teams/{team}/keys"),
            Some(&carol),
            Some(json!({})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{key}");
    let (status, body) = api
        .call(
            "PUT",
            &format!("/api/teams/{team}/members"),
            Some(&carol),
            Some(json!({"email": "victim@example.org", "role": "admin"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let grant = |member: Option<&str>| {
        let mut b = json!({"key_id": key["id"]});
        if let Some(m) = member {
            b["member"] = json!(m);
        }
        b
    };
    let path = format!("/api/teams/{team}/authorizations");
    let (status, body) = api
        .call(
            "POST",
            &path,
            Some(&carol),
            Some(grant(Some("victim@example.org"))),
        )
        .await;
    assert_unverified(status, &body);
    let (status, body) = api.call("POST", &path, Some(&ann), Some(grant(None))).await;
    assert_unverified(status, &body);
    let (status, body) = api
        .call(
            "POST",
            &format!("/api/teams/{team}/keys"),
            Some(&ann),
            Some(json!({})),
        )
        .await;
    assert_unverified(status, &body);
    let (_, list) = api.call("GET", &path, Some(&carol), None).await;
    assert_eq!(list["authorizations"], json!([]), "nothing created");

    // Once the address is proved, all of it works.
    verified(&api, &ann).await;
    let (status, body) = api
        .call("POST", "/api/keys", Some(&ann), Some(json!({})))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, body) = api
        .call(
            "POST",
            "/api/authorizations",
            Some(&ann),
            Some(json!({"key_id": planted.id.to_string()})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, body) = api.call("POST", &path, Some(&ann), Some(grant(None))).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_smtp_keys_need_no_verified_email() {
    let api = Api::new(&[]).await;
    let nsec = keycast_core::nostr::Keys::generate()
        .secret_key()
        .to_secret_hex();
    let (status, body) = api
        .call(
            "POST",
            "/api/auth/register",
            None,
            Some(json!({"email": "dev@example.org", "password": PASSWORD, "nsec": nsec})),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::CREATED,
        "development keeps today's behaviour: {body}"
    );
    assert!(body["key"]["id"].is_string(), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_smtp_the_pages_create_no_app_for_an_unverified_account() {
    let clients =
        json!([{"id": "notes", "name": "Notes", "redirect_uris": ["https://notes.example/cb"]}])
            .to_string();
    // An account with a key from before SMTP was configured: unverified, holding a key.
    let served = Served::launch(Env::new(), &[], &[]).await;
    let ann = served.account("ann@example.org").await;
    let (env, _) = served.kill_keeping_env();
    let smtp = format!("smtp://127.0.0.1:{}", keycast_test_support::closed_port());
    let served = Served::launch(
        env,
        &[],
        &[
            ("KEYCAST_SMTP_URL", smtp),
            ("KEYCAST_OAUTH_CLIENTS", clients),
        ],
    )
    .await;
    let (status, session) = served
        .json(
            Method::POST,
            "/api/auth/login",
            None,
            Some(json!({"email": ann.email, "password": PASSWORD})),
        )
        .await;
    assert_eq!(status, 200, "{session}");
    let cookie = format!(
        "keycast_session={}",
        session["token"].as_str().expect("token")
    );
    let page = |path: String| {
        let (served, cookie) = (&served, cookie.clone());
        async move {
            let (status, page, _) = html(served, Method::GET, &path, Some(&cookie), None).await;
            assert_eq!(status, 200, "{path}: {page}");
            page
        }
    };
    let post = |path: &'static str, fields: Vec<(&'static str, String)>| {
        let (served, cookie) = (&served, cookie.clone());
        async move {
            let fields: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
            html(served, Method::POST, path, Some(&cookie), Some(&fields)).await
        }
    };
    let refused = |(status, page, _): (reqwest::StatusCode, String, Option<String>), what: &str| {
        assert_eq!(status, 403, "{what}: {page}");
        assert!(page.contains("verify this account"), "{what}: {page}");
    };

    let form_page = page("/ui/connect/new".into()).await;
    let fields = vec![
        ("csrf", csrf(&form_page)),
        ("key_id", ann.key_id.clone()),
        ("label", "app".into()),
        ("preset", "full".into()),
    ];
    refused(post("/ui/connect/new", fields).await, "web UI");

    let oauth = [
        ("response_type", "code"),
        ("client_id", "notes"),
        ("redirect_uri", "https://notes.example/cb"),
        (
            "code_challenge",
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
        ),
        ("code_challenge_method", "S256"),
        ("state", "st"),
        ("scope", "sign_event:1"),
    ];
    let consent = page(format!("/oauth/authorize?{}", form(&oauth))).await;
    let mut fields: Vec<(&'static str, String)> =
        oauth.iter().map(|(k, v)| (*k, (*v).to_owned())).collect();
    fields.extend([
        ("csrf", csrf(&consent)),
        ("key_id", ann.key_id.clone()),
        ("decision", "approve".into()),
    ]);
    refused(post("/oauth/authorize", fields).await, "OAuth");

    let uri = format!(
        "nostrconnect://{}?relay={}&secret=s&name=App",
        keycast_core::nostr::Keys::generate().public_key().to_hex(),
        served.relay()
    );
    let consent = page(format!("/connect?{}", form(&[("uri", &uri)]))).await;
    let fields = vec![
        ("uri", uri.clone()),
        ("key_id", ann.key_id.clone()),
        ("csrf", csrf(&consent)),
        ("decision", "approve".into()),
    ];
    refused(post("/connect", fields).await, "/connect");

    let token = session["token"].as_str().expect("token");
    let (status, body) = served
        .json(
            Method::POST,
            "/api/authorizations",
            Some(token),
            Some(json!({"key_id": ann.key_id})),
        )
        .await;
    assert_eq!(
        (status.as_u16(), &body["error"]["code"]),
        (403, &json!("email_unverified"))
    );
    let account = crate::common::server::Account {
        session: token.to_owned(),
        ..ann
    };
    assert!(
        served.authorizations(&account).await.is_empty(),
        "nothing was created"
    );
    assert_eq!(served.policy_count(&account).await, 0, "not even a policy");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_registration_and_team_invites_tell_about_emails_is_bounded() {
    let api = Api::new(&[
        ("KEYCAST_REGISTRATIONS_PER_ADDRESS_PER_HOUR", "3"),
        ("KEYCAST_EMAIL_LOOKUPS_PER_HOUR", "3"),
    ])
    .await;
    let admin = api.account("admin@example.org").await; // one registration from 127.0.0.1
    api.account("known@example.org").await; // two

    // Login and forgot-password say nothing (the same answer, byte for byte).
    let probe = |email: &str| json!({"email": email, "password": "guess guess guess"});
    let known = api
        .call(
            "POST",
            "/api/auth/login",
            None,
            Some(probe("known@example.org")),
        )
        .await;
    let unknown = api
        .call(
            "POST",
            "/api/auth/login",
            None,
            Some(probe("unknown@example.org")),
        )
        .await;
    assert_eq!(known, unknown);
    assert_eq!(known.0, StatusCode::UNAUTHORIZED);

    // Registration answers 409 for a known e-mail (docs/SECURITY.md says why), but one
    // address can ask only KEYCAST_REGISTRATIONS_PER_ADDRESS_PER_HOUR times an hour.
    let register = |email: &str| {
        api.call(
            "POST",
            "/api/auth/register",
            None,
            Some(json!({"email": email, "password": PASSWORD})),
        )
    };
    let (status, body) = register("known@example.org").await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    for email in ["known@example.org", "fresh@example.org"] {
        let (status, body) = register(email).await;
        assert_eq!(
            status,
            StatusCode::TOO_MANY_REQUESTS,
            "{email}: the same refusal: {body}"
        );
    }

    // Adding a team member answers 404 for an unknown e-mail, within the admin's budget of
    // look-ups, which is spent alike by hits and misses.
    let (_, team) = api
        .call(
            "POST",
            "/api/teams",
            Some(&admin),
            Some(json!({"name": "t"})),
        )
        .await;
    let path = format!("/api/teams/{}/members", team["id"].as_str().expect("team"));
    let add = |email: &str| {
        api.call(
            "PUT",
            &path,
            Some(&admin),
            Some(json!({"email": email, "role": "member"})),
        )
    };
    assert_eq!(add("known@example.org").await.0, StatusCode::OK);
    assert_eq!(add("nobody@example.org").await.0, StatusCode::NOT_FOUND);
    assert_eq!(add("nobody2@example.org").await.0, StatusCode::NOT_FOUND);
    for email in ["known@example.org", "nobody3@example.org"] {
        let (status, body) = add(email).await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{email}: {body}");
    }
}
