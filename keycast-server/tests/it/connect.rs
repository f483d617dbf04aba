//! The `nostrconnect_url` page against the real binary with NIP-46 on its embedded relay:
//! a rust-nostr client's `nostrconnect://` URI is approved in the page, and the client
//! then signs within the policy its `perms` asked for. Also every refusal, none of which
//! leaves an authorization or policy behind.
//!
//! nostr-connect 0.44 cannot put `secret` or `perms` in its `NostrConnectURI` and accepts
//! only `"ack"` as the signer's first reply, where keycast (as NIP-46 asks) echoes a
//! secret. So a URI with a secret is extended by hand and the client then talks to the
//! bunker key it was paired with (keycast-nip46's tests check the echoed secret); the
//! secret-less URI goes through nostr-connect's own waiting client flow.
//!
//! A bunker URI is answerable the moment any path hands it out (issue 19): from the JSON
//! API, the web UI's form and the OAuth token endpoint a client connects at once and is
//! answered the first time; the paired client above does the same right after approval.

use crate::common;

use std::time::Duration;

use common::pages::{csrf, form, html};
use common::server::{Account, Served, PASSWORD};
use keycast_core::nostr::{EventBuilder, Keys, Kind, NostrSigner, PublicKey, RelayUrl};
use nostr_connect::prelude::{NostrConnect, NostrConnectURI};
use reqwest::header::{LOCATION, SET_COOKIE};
use reqwest::{Method, StatusCode};

/// Logs in through `/connect/login` for `uri`; the `Cookie` header to send.
async fn login(served: &Served, account: &Account, uri: &str) -> String {
    let response = served
        .http
        .post(served.env.url("/connect/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(&[
            ("uri", uri),
            ("email", &account.email),
            ("password", PASSWORD),
        ]))
        .send()
        .await
        .expect("login");
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let back = response.headers()[LOCATION].to_str().expect("location");
    let encoded = back
        .strip_prefix("/connect?uri=")
        .expect("back to /connect");
    assert!(encoded.starts_with("nostrconnect%3A%2F%2F"), "{back}");
    let decoded = percent_encoding::percent_decode_str(encoded).decode_utf8();
    assert_eq!(decoded.expect("utf-8"), uri, "the same URI comes back");
    let cookie = response.headers()[SET_COOKIE].to_str().expect("cookie");
    assert!(cookie.contains("HttpOnly"), "{cookie}");
    cookie.split(';').next().expect("pair").to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approved_uri_pairs_the_client_under_its_perms() {
    let served = Served::start().await;
    let ann = served.account("ann@example.org").await;
    let relay = served.relay();
    let app = Keys::generate();
    let secret = uuid::Uuid::new_v4().simple().to_string();
    let created = NostrConnectURI::client(
        app.public_key(),
        [RelayUrl::parse(&relay).expect("relay")],
        "Notes <b>",
    );
    let uri = format!("{created}&secret={secret}&perms=sign_event:1,nip44_encrypt");

    // Encoded, as most clients send it.
    let path = format!("/connect?{}", form(&[("uri", &uri)]));
    let (status, page, _) = html(&served, Method::GET, &path, None, None).await;
    assert_eq!(status, 200);
    assert!(page.contains("action=\"/connect/login\""), "{page}");
    assert!(page.contains("Notes &lt;b&gt;"), "escaped: {page}");
    let cookie = login(&served, &ann, &uri).await;

    let (status, page, _) = html(&served, Method::GET, &path, Some(&cookie), None).await;
    assert_eq!(status, 200, "{page}");
    for words in [
        "Notes &lt;b&gt; wants to use one of your Nostr keys",
        "Sign events of kind 1 (short text notes)",
        "Encrypt messages with NIP-44",
        &relay,
        &keycast_core::nostr::ToBech32::to_bech32(&app.public_key()).expect("npub"),
        &ann.key_id,
    ] {
        assert!(page.contains(words), "{words} missing: {page}");
    }
    assert!(!page.contains("Full access"), "{page}");

    let fields = [
        ("uri", uri.as_str()),
        ("key_id", &ann.key_id),
        ("csrf", &csrf(&page)),
        ("decision", "approve"),
    ];
    let (status, done, _) = html(
        &served,
        Method::POST,
        "/connect",
        Some(&cookie),
        Some(&fields),
    )
    .await;
    assert_eq!(status, 200, "{done}");
    assert!(done.contains("Connected — return to the app"), "{done}");
    let listed = served.authorizations(&ann).await;
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["label"], "Notes <b>");
    assert_eq!(listed[0]["clients"], 1, "the client is bound");

    // The client, bound by the pairing, reaches its bunker key.
    let bunker = PublicKey::from_hex(listed[0]["bunker_pubkey"].as_str().expect("bunker"))
        .expect("bunker pubkey");
    let signer = NostrConnect::new(
        NostrConnectURI::Bunker {
            remote_signer_public_key: bunker,
            relays: vec![RelayUrl::parse(&relay).expect("relay")],
            secret: None,
        },
        app,
        Duration::from_secs(20),
        None,
    )
    .expect("client");
    let user = signer.get_public_key().await.expect("get_public_key");
    assert_eq!(user.to_hex(), ann.pubkey);
    let note = EventBuilder::text_note("hello from nostrconnect").build(user);
    let signed = signer.sign_event(note).await.expect("kind 1 is allowed");
    signed.verify().expect("valid signature");
    let reaction = EventBuilder::new(Kind::Reaction, "+").build(user);
    assert!(
        signer.sign_event(reaction).await.is_err(),
        "kind 7 was not in the perms"
    );
    signer.shutdown().await;

    let mut served = served;
    let logs = served.stop();
    assert!(logs.contains("nostrconnect paired"), "{logs}");
    for (what, s) in [
        ("connect secret", secret.as_str()),
        ("password", PASSWORD),
        ("session", cookie.trim_start_matches("keycast_session=")),
    ] {
        assert!(!logs.contains(s), "the {what} was logged");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_raw_uri_without_perms_answers_the_waiting_client_with_full_access() {
    let served = Served::start().await;
    let bob = served.account("bob@example.org").await;
    let relay = RelayUrl::parse(&served.relay()).expect("relay");
    let app = Keys::generate();
    let client_uri = NostrConnectURI::client(app.public_key(), [relay.clone()], "Raw App");
    // Unencoded: the URI's own `?` and `&` are part of the query.
    let uri = client_uri.to_string();
    assert!(uri.contains("&relay="), "{uri}");
    let cookie = login(&served, &bob, &uri).await;
    let (status, page, _) = html(
        &served,
        Method::GET,
        &format!("/connect?uri={uri}"),
        Some(&cookie),
        None,
    )
    .await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("Raw App wants to use"), "{page}");
    assert!(page.contains("did not say what it needs"), "{page}");
    assert!(page.contains("<strong>Full access"), "{page}");
    let token = csrf(&page);

    // nostr-connect's own client-initiated flow: it listens for the signer's "ack". The
    // reply is ephemeral, so the client must be subscribed before the approval, and
    // nostr-connect keeps its relay pool private: the client reaches the relay through a
    // proxy that shows when the relay answered its `REQ` (`EOSE`; its filter has
    // `limit: 0`). The URI the account approves names the relay itself.
    let (via, subscribed) = eose_watching_proxy(&served.relay()).await;
    let proxied = NostrConnectURI::client(app.public_key(), [via], "Raw App");
    let signer = NostrConnect::new(proxied, app, Duration::from_secs(30), None).expect("client");
    let waiting = tokio::spawn({
        let signer = signer.clone();
        async move {
            let user = signer.get_public_key().await;
            signer.shutdown().await;
            user
        }
    });
    tokio::time::timeout(Duration::from_secs(20), subscribed.notified())
        .await
        .expect("the relay answered the client's subscription");

    let fields = [
        ("uri", uri.as_str()),
        ("key_id", &bob.key_id),
        ("csrf", &token),
        ("decision", "approve"),
    ];
    let (status, done, _) = html(
        &served,
        Method::POST,
        "/connect",
        Some(&cookie),
        Some(&fields),
    )
    .await;
    assert_eq!(status, 200, "{done}");
    let user = waiting
        .await
        .expect("client task")
        .expect("the client got the connect reply and the user key");
    assert_eq!(user.to_hex(), bob.pubkey);
    let (status, list) = served
        .json(Method::GET, "/api/policies", Some(&bob.session), None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        list["policies"][0]["permissions"][0]["type"], "full_access",
        "{list}"
    );
    assert_eq!(list["policies"][0]["name"], "Raw App", "{list}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_leave_nothing_behind() {
    let served = Served::start().await;
    let ann = served.account("ann@example.org").await;
    let eve = served.account("eve@example.org").await;
    let app = Keys::generate();
    let uri = format!(
        "nostrconnect://{}?relay={}&secret=abc&perms=sign_event:1&name=Notes",
        app.public_key().to_hex(),
        served.relay()
    );

    // Missing or unusable URIs.
    for path in [
        "/connect".to_owned(),
        "/connect?uri=".to_owned(),
        "/connect?uri=%3Cnostrconnect%3E".to_owned(),
        "/connect?uri=nostrconnect%3A%2F%2Fnot-a-key%3Frelay%3Dws%3A%2F%2Fr".to_owned(),
        format!("/connect?uri=nostrconnect://{}", app.public_key().to_hex()),
    ] {
        let (status, page, location) = html(&served, Method::GET, &path, None, None).await;
        assert_eq!(status, 400, "{path}: {page}");
        assert!(page.contains("class=\"error\""), "{path}: {page}");
        assert!(location.is_none());
    }

    // A wrong password re-renders the form with the error, and sets no cookie.
    let response = served
        .http
        .post(served.env.url("/connect/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(&[
            ("uri", &uri),
            ("email", &ann.email),
            ("password", "wrong password!"),
        ]))
        .send()
        .await
        .expect("login");
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert!(response.headers().get(SET_COOKIE).is_none());
    let page = response.text().await.expect("body");
    assert!(page.contains("Wrong e-mail or password."), "{page}");
    assert!(page.contains("action=\"/connect/login\""), "{page}");

    let cookie = login(&served, &ann, &uri).await;
    let path = format!("/connect?{}", form(&[("uri", &uri)]));
    let (_, page, _) = html(&served, Method::GET, &path, Some(&cookie), None).await;
    let token = csrf(&page);
    let post = |fields: Vec<(&'static str, String)>, cookie: Option<String>| {
        let served = &served;
        async move {
            let pairs: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
            html(
                served,
                Method::POST,
                "/connect",
                cookie.as_deref(),
                Some(&pairs),
            )
            .await
        }
    };
    let approve = |csrf: Option<&str>, key: &str| {
        let mut f = vec![
            ("uri", uri.clone()),
            ("key_id", key.to_owned()),
            ("decision", "approve".to_owned()),
        ];
        if let Some(c) = csrf {
            f.push(("csrf", c.to_owned()));
        }
        f
    };

    // CSRF missing or wrong.
    for csrf in [None, Some("0".repeat(64)), Some("nope".to_owned())] {
        let (status, page, _) =
            post(approve(csrf.as_deref(), &ann.key_id), Some(cookie.clone())).await;
        assert_eq!(status, 403, "{page}");
        assert!(page.contains("CSRF"), "{page}");
    }
    // Another account's key.
    let (status, page, _) = post(approve(Some(&token), &eve.key_id), Some(cookie.clone())).await;
    assert_eq!(status, 400, "{page}");
    assert!(page.contains("not one of yours"), "{page}");
    // No session: the login form again.
    let (status, page, _) = post(approve(Some(&token), &ann.key_id), None).await;
    assert_eq!(status, 401, "{page}");
    assert!(page.contains("action=\"/connect/login\""), "{page}");
    // Deny.
    let deny = vec![
        ("uri", uri.clone()),
        ("key_id", ann.key_id.clone()),
        ("csrf", token.clone()),
        ("decision", "deny".to_owned()),
    ];
    let (status, page, location) = post(deny, Some(cookie.clone())).await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("Request declined"), "{page}");
    assert!(location.is_none());

    assert!(served.authorizations(&ann).await.is_empty());
    assert!(served.authorizations(&eve).await.is_empty());
    assert_eq!(served.policy_count(&ann).await, 0);
}

#[tokio::test]
async fn without_nip46_the_page_says_so() {
    use axum::body::Body;
    use axum::http::Request;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    let api = common::inproc::Api::new(&[]).await;
    let session = api.account("ann@example.org").await;
    let uri = format!(
        "nostrconnect://{}?relay=wss://relay.example",
        Keys::generate().public_key().to_hex()
    );
    let request = Request::get(format!("/connect?{}", form(&[("uri", &uri)])))
        .header("cookie", format!("keycast_session={session}"))
        .body(Body::empty())
        .expect("request");
    let response = keycast_server::app(api.state.clone())
        .oneshot(common::inproc::with_peer(request))
        .await
        .expect("response");
    assert_eq!(response.status(), 503);
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    let page = String::from_utf8_lossy(&body);
    assert!(page.contains("NIP-46 service is not running"), "{page}");
}

/// Connects a fresh rust-nostr client to `uri` and asks for the user's key once: the
/// client sends its `connect` as soon as it reaches the relay and never resends it, and
/// relays keep no kind 24133, so an answer means the key was covered when `uri` came out.
async fn answered_at_once(uri: &str, user: &str, path: &str) {
    let signer = NostrConnect::new(
        NostrConnectURI::parse(uri).expect("bunker uri"),
        Keys::generate(),
        Duration::from_secs(10),
        None,
    )
    .expect("client");
    let answer = signer.get_public_key().await;
    signer.shutdown().await;
    let got = answer.unwrap_or_else(|e| panic!("{path}: a URI used at once is not answered: {e}"));
    assert_eq!(got.to_hex(), user, "{path}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bunker_uri_from_every_path_is_answered_the_first_time() {
    use crate::oauth::{challenge, REDIRECT, VERIFIER};
    let clients =
        serde_json::json!([{"id": "notes", "name": "Notes", "redirect_uris": [REDIRECT]}]);
    let served = Served::launch(
        common::Env::new(),
        &[],
        &[("KEYCAST_OAUTH_CLIENTS", clients.to_string())],
    )
    .await;
    let ann = served.account("ann@example.org").await;

    // The JSON API, several times in a row.
    for n in 0..3 {
        let (status, created) = served
            .json(
                Method::POST,
                "/api/authorizations",
                Some(&ann.session),
                Some(serde_json::json!({"key_id": ann.key_id, "label": format!("api {n}")})),
            )
            .await;
        assert_eq!(status, 201, "{created}");
        let uri = created["bunker_uri"].as_str().expect("bunker_uri");
        answered_at_once(uri, &ann.pubkey, "POST /api/authorizations").await;
    }

    // The web UI's new-connection form.
    let cookie = common::pages::login(&served, &ann.email).await;
    let (_, page, _) = html(&served, Method::GET, "/ui/connect/new", Some(&cookie), None).await;
    let fields = [
        ("csrf", csrf(&page)),
        ("key_id", ann.key_id.clone()),
        ("label", "ui".to_owned()),
        ("preset", "full".to_owned()),
        ("kinds", String::new()),
    ];
    let fields: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (status, page, _) = html(
        &served,
        Method::POST,
        "/ui/connect/new",
        Some(&cookie),
        Some(&fields),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{page}");
    let uri = common::pages::code(&page, "bunker-uri");
    answered_at_once(&uri, &ann.pubkey, "/ui/connect/new").await;

    // OAuth: consent, then the token endpoint's bunker URL.
    let challenge = challenge(VERIFIER);
    let request = [
        ("response_type", "code"),
        ("client_id", "notes"),
        ("redirect_uri", REDIRECT),
        ("code_challenge", challenge.as_str()),
        ("code_challenge_method", "S256"),
        ("state", "s"),
        ("scope", "get_public_key sign_event:1"),
    ];
    let (status, page, _) = html(
        &served,
        Method::GET,
        &format!("/oauth/authorize?{}", form(&request)),
        Some(&cookie),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let token = csrf(&page);
    let mut approve = request.to_vec();
    approve.extend([
        ("csrf", token.as_str()),
        ("key_id", ann.key_id.as_str()),
        ("decision", "approve"),
    ]);
    let (status, page, location) = html(
        &served,
        Method::POST,
        "/oauth/authorize",
        Some(&cookie),
        Some(&approve),
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{page}");
    let location = location.expect("redirect");
    let code = keycast_core::nostr::Url::parse(&location)
        .expect("redirect url")
        .query_pairs()
        .find_map(|(k, v)| (k == "code").then(|| v.into_owned()))
        .expect("code");
    let exchanged = served
        .http
        .post(served.env.url("/oauth/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(&[
            ("grant_type", "authorization_code"),
            ("client_id", "notes"),
            ("redirect_uri", REDIRECT),
            ("code_verifier", VERIFIER),
            ("code", &code),
        ]))
        .send()
        .await
        .expect("token");
    assert_eq!(exchanged.status(), StatusCode::OK);
    let body: serde_json::Value = exchanged.json().await.expect("json");
    let uri = body["bunker_url"].as_str().expect("bunker_url");
    answered_at_once(uri, &ann.pubkey, "/oauth/token").await;
}

/// A TCP proxy to the relay at `relay` (`ws://host:port`) for one client: its URL, and a
/// signal raised once the relay sent that client an `EOSE`. Relay-to-client WebSocket
/// frames are not masked, so the text shows in the bytes as sent.
async fn eose_watching_proxy(relay: &str) -> (RelayUrl, std::sync::Arc<tokio::sync::Notify>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let upstream = relay
        .trim_start_matches("ws://")
        .trim_end_matches('/')
        .to_owned();
    let listener = keycast_test_support::local_tokio_listener();
    let url = format!("ws://{}", listener.local_addr().expect("proxy address"));
    let seen = std::sync::Arc::new(tokio::sync::Notify::new());
    let signal = seen.clone();
    tokio::spawn(async move {
        let Ok((client, _)) = listener.accept().await else {
            return;
        };
        let server = tokio::net::TcpStream::connect(&upstream)
            .await
            .expect("connect to the relay");
        let (mut client_read, mut client_write) = client.into_split();
        let (mut server_read, mut server_write) = server.into_split();
        tokio::spawn(async move {
            let _ = tokio::io::copy(&mut client_read, &mut server_write).await;
        });
        let mut buf = vec![0u8; 64 * 1024];
        let mut raised = false;
        while let Ok(n) = server_read.read(&mut buf).await {
            if n == 0 || client_write.write_all(&buf[..n]).await.is_err() {
                break;
            }
            if !raised && buf[..n].windows(6).any(|w| w == b"\"EOSE\"") {
                raised = true;
                signal.notify_one();
            }
        }
    });
    (RelayUrl::parse(&url).expect("proxy url"), seen)
}
