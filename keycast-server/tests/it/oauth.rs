//! OAuth 2.0 (authorization code + PKCE) through the router in-process: the whole flow
//! with plain HTTP requests, and every refusal: unknown client, redirect URI not on the
//! allow-list, bad parameters, CSRF, someone else's key, PKCE mismatch, code reuse, expiry,
//! client or redirect mismatch at the token endpoint, malformed bodies, HTML escaping.

use crate::common;

use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::http::{header, HeaderMap, Request, StatusCode};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use common::inproc::{sign, Api};
use common::pages::form;
use http_body_util::BodyExt;
use keycast_core::nostr::{Timestamp, Url};
use keycast_core::{AuthorizationId, OAuthCode, SecretDigest};
use serde_json::{json, Value};
use tower::ServiceExt;

pub(crate) const REDIRECT: &str = "https://notes.example/cb";
const LOOPBACK: &str = "http://127.0.0.1:9/cb?app=1";
const PASSWORD: &str = "correct horse battery";
pub(crate) const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk.~abc";

fn clients() -> String {
    json!([
        {"id": "notes", "name": "Notes & <Co>", "redirect_uris": [REDIRECT, LOOPBACK]},
        {"id": "other", "name": "Other", "redirect_uris": ["https://other.example/cb"]},
    ])
    .to_string()
}

async fn api() -> Api {
    Api::new(&[("KEYCAST_OAUTH_CLIENTS", &clients())]).await
}

pub(crate) fn challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(SecretDigest::of(verifier.as_bytes()).as_bytes())
}

/// Parameters to replace (`Some`) or remove (`None`).
type Changes<'a> = &'a [(&'a str, Option<&'a str>)];

/// A good authorization request with `changes` applied (`None` removes a parameter).
fn request(changes: &[(&str, Option<&str>)]) -> Vec<(String, String)> {
    let ch = challenge(VERIFIER);
    let mut p: Vec<(String, String)> = [
        ("response_type", "code"),
        ("client_id", "notes"),
        ("redirect_uri", REDIRECT),
        ("code_challenge", ch.as_str()),
        ("code_challenge_method", "S256"),
        ("state", "st-123"),
        (
            "scope",
            "get_public_key sign_event:1 nip44_encrypt nip44_decrypt",
        ),
    ]
    .iter()
    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
    .collect();
    for (name, value) in changes {
        p.retain(|(k, _)| k != name);
        if let Some(v) = value {
            p.push(((*name).to_owned(), (*v).to_owned()));
        }
    }
    p
}

fn pairs(p: &[(String, String)]) -> Vec<(&str, &str)> {
    p.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

impl Answer {
    fn location(&self) -> Option<&str> {
        self.headers
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
    }

    /// The query parameters of the `Location` header.
    fn redirect_params(&self) -> Vec<(String, String)> {
        let location = self.location().expect("a Location header");
        Url::parse(location)
            .or_else(|_| Url::parse(&format!("http://server{location}")))
            .expect("location url")
            .query_pairs()
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect()
    }

    fn redirect_param(&self, name: &str) -> Option<String> {
        self.redirect_params()
            .into_iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v)
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }
}

async fn send(api: &Api, r: Request<Body>) -> Answer {
    let response = keycast_server::app(api.state.clone())
        .oneshot(common::inproc::with_peer(r))
        .await
        .expect("response");
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    Answer {
        status,
        headers,
        body: String::from_utf8_lossy(&bytes).into_owned(),
    }
}

async fn get(api: &Api, p: &[(String, String)], session: Option<&str>) -> Answer {
    let mut r = Request::get(format!("/oauth/authorize?{}", form(&pairs(p))));
    if let Some(s) = session {
        r = r.header(header::COOKIE, format!("keycast_session={s}"));
    }
    send(api, r.body(Body::empty()).expect("request")).await
}

async fn post_form(api: &Api, path: &str, body: String, session: Option<&str>) -> Answer {
    let mut r =
        Request::post(path).header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
    if let Some(s) = session {
        r = r.header(header::COOKIE, format!("keycast_session={s}"));
    }
    send(api, r.body(Body::from(body)).expect("request")).await
}

/// The value of the hidden `csrf` field of a consent page.
fn csrf_of(page: &str) -> String {
    let start = page.find("name=\"csrf\" value=\"").expect("a csrf field") + 19;
    page[start..]
        .split('"')
        .next()
        .expect("csrf value")
        .to_owned()
}

/// A key of the session's account: (id, pubkey hex).
async fn key(api: &Api, session: &str) -> (String, String) {
    let (status, body) = api
        .call(
            "POST",
            "/api/keys",
            Some(session),
            Some(json!({"name": "main"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    (
        body["id"].as_str().expect("id").to_owned(),
        body["pubkey"].as_str().expect("pubkey").to_owned(),
    )
}

/// Posts the consent form.
async fn decide(
    api: &Api,
    session: &str,
    p: &[(String, String)],
    extra: &[(&str, &str)],
) -> Answer {
    let mut all = pairs(p);
    all.extend_from_slice(extra);
    post_form(api, "/oauth/authorize", form(&all), Some(session)).await
}

/// Consent page, approve with `key_id`: the code.
async fn code_for(api: &Api, session: &str, p: &[(String, String)], key_id: &str) -> String {
    let page = get(api, p, Some(session)).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    let csrf = csrf_of(&page.body);
    let a = decide(
        api,
        session,
        p,
        &[("csrf", &csrf), ("key_id", key_id), ("decision", "approve")],
    )
    .await;
    assert_eq!(a.status, StatusCode::SEE_OTHER, "{}", a.body);
    a.redirect_param("code").expect("code")
}

async fn exchange(api: &Api, changes: &[(&str, Option<&str>)]) -> Answer {
    let mut p: Vec<(String, String)> = [
        ("grant_type", "authorization_code"),
        ("client_id", "notes"),
        ("redirect_uri", REDIRECT),
        ("code_verifier", VERIFIER),
    ]
    .iter()
    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
    .collect();
    for (name, value) in changes {
        p.retain(|(k, _)| k != name);
        if let Some(v) = value {
            p.push(((*name).to_owned(), (*v).to_owned()));
        }
    }
    post_form(api, "/oauth/token", form(&pairs(&p)), None).await
}

fn assert_token_error(a: &Answer, error: &str) {
    assert_eq!(a.status, StatusCode::BAD_REQUEST, "{}", a.body);
    assert_eq!(a.json()["error"], error, "{}", a.body);
    assert!(a.json()["error_description"].is_string(), "{}", a.body);
    assert_eq!(a.headers[header::CACHE_CONTROL], "no-store");
}

async fn authorizations(api: &Api, session: &str) -> Vec<Value> {
    let (_, body) = api
        .call("GET", "/api/authorizations", Some(session), None)
        .await;
    body["authorizations"].as_array().expect("list").clone()
}

#[tokio::test]
async fn the_whole_flow_over_http() {
    let api = api().await;
    let session = api.account("ann@example.org").await;
    let (key_id, pubkey) = key(&api, &session).await;
    let p = request(&[]);

    // No session: the login form, with the request in hidden fields.
    let page = get(&api, &p, None).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(
        page.body.contains("action=\"/oauth/login\""),
        "{}",
        page.body
    );
    assert!(
        page.body.contains("name=\"code_challenge\""),
        "{}",
        page.body
    );
    let csp = page.headers[header::CONTENT_SECURITY_POLICY]
        .to_str()
        .expect("csp");
    assert!(csp.contains("default-src 'none'") && csp.contains("form-action 'self'"));
    assert_eq!(page.headers[header::X_FRAME_OPTIONS], "DENY");
    assert_eq!(page.headers[header::CACHE_CONTROL], "no-store");

    // Log in through the form: a session cookie and back to the same request.
    let mut login = pairs(&p);
    login.extend([("email", "ann@example.org"), ("password", PASSWORD)]);
    let a = post_form(&api, "/oauth/login", form(&login), None).await;
    assert_eq!(a.status, StatusCode::SEE_OTHER, "{}", a.body);
    let location = a.location().expect("location");
    assert!(location.starts_with("/oauth/authorize?"), "{location}");
    let mut back = a.redirect_params();
    back.sort();
    let mut sent = p.clone();
    sent.sort();
    assert_eq!(back, sent, "the login returns to the same request");
    let cookie = a.headers[header::SET_COOKIE].to_str().expect("cookie");
    assert!(cookie.starts_with("keycast_session="), "{cookie}");
    for attribute in ["HttpOnly", "SameSite=Lax", "Path=/"] {
        assert!(cookie.contains(attribute), "{cookie}");
    }
    assert!(
        !cookie.contains("Secure"),
        "the server is plain http: {cookie}"
    );
    let browser_session = cookie
        .trim_start_matches("keycast_session=")
        .split(';')
        .next()
        .expect("value")
        .to_owned();

    // The consent page says what the app asks for, in words.
    let page = get(&api, &p, Some(&browser_session)).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    for words in [
        "Notes &amp; &lt;Co&gt;",
        "See your public key",
        "Sign events of kind 1 (short text notes)",
        "Encrypt and decrypt messages with NIP-44",
        "Use both NIP-44 and NIP-04",
        REDIRECT,
        key_id.as_str(),
    ] {
        assert!(page.body.contains(words), "{words}: {}", page.body);
    }
    assert!(!page.body.contains("Full access"), "{}", page.body);
    let csp = page.headers[header::CONTENT_SECURITY_POLICY]
        .to_str()
        .expect("csp");
    assert!(
        csp.contains("form-action 'self' https://notes.example"),
        "{csp}"
    );

    // Approve: a code and the state at the redirect URI.
    let csrf = csrf_of(&page.body);
    let a = decide(
        &api,
        &browser_session,
        &p,
        &[
            ("csrf", &csrf),
            ("key_id", &key_id),
            ("decision", "approve"),
        ],
    )
    .await;
    assert_eq!(a.status, StatusCode::SEE_OTHER, "{}", a.body);
    let location = a.location().expect("location");
    assert!(
        location.starts_with(&format!("{REDIRECT}?code=")),
        "{location}"
    );
    assert_eq!(a.redirect_param("state").as_deref(), Some("st-123"));
    let code = a.redirect_param("code").expect("code");

    // The token endpoint: an RPC token, a bunker URL, the pubkey and the scope.
    let t = exchange(&api, &[("code", Some(&code))]).await;
    assert_eq!(t.status, StatusCode::OK, "{}", t.body);
    assert_eq!(t.headers[header::CACHE_CONTROL], "no-store");
    let body = t.json();
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["pubkey"], pubkey.as_str());
    assert_eq!(
        body["scope"],
        "get_public_key sign_event:1 nip04_encrypt nip44_encrypt nip04_decrypt nip44_decrypt"
    );
    let token = body["access_token"].as_str().expect("token").to_owned();
    assert_eq!(sign(&api, &token, 1).await, StatusCode::OK);
    assert_eq!(
        sign(&api, &token, 7).await,
        StatusCode::FORBIDDEN,
        "only kind 1 was granted"
    );
    let (status, answer) = api
        .call(
            "POST",
            "/api/nostr",
            Some(&token),
            Some(json!({"method": "get_public_key", "params": []})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["result"], pubkey.as_str());

    // The bunker URL carries the authorization's unredeemed connect secret.
    let uri = keycast_nip46::BunkerUri::parse(body["bunker_url"].as_str().expect("bunker url"))
        .expect("bunker url parses");
    let list = authorizations(&api, &session).await;
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["label"], "Notes & <Co>");
    assert_eq!(list[0]["bunker_pubkey"], uri.signer.to_hex().as_str());
    let id: AuthorizationId = list[0]["id"].as_str().expect("id").parse().expect("uuid");
    let stored = api
        .state
        .services
        .store
        .get_authorization(id)
        .await
        .expect("authorization");
    let secret = uri.secret.expect("a connect secret");
    assert_eq!(
        stored.connect_secret,
        Some(SecretDigest::of(secret.as_bytes()))
    );
    assert!(!uri.relays.is_empty());

    // The code was single-use, and presenting it again (RFC 6749 §4.1.2) revokes what
    // the first exchange granted: whoever replays it may have stolen it.
    let replay = exchange(&api, &[("code", Some(&code))]).await;
    assert_token_error(&replay, "invalid_grant");
    assert!(
        replay.json()["error_description"]
            .as_str()
            .is_some_and(|d| d.contains("revoked")),
        "{}",
        replay.body
    );
    assert_eq!(
        sign(&api, &token, 1).await,
        StatusCode::UNAUTHORIZED,
        "the first exchange's token is revoked"
    );
    let list = authorizations(&api, &session).await;
    assert!(list[0]["revoked_at"].is_u64(), "{list:?}");
    // A code-shaped string naming the authorization, with a seal that does not open
    // under it, is just unknown (it cannot revoke anything).
    let forged = format!("{}x", code.split_once('.').map_or("", |(_, s)| s));
    assert_token_error(
        &exchange(&api, &[("code", Some(&forged))]).await,
        "invalid_grant",
    );
}

#[tokio::test]
async fn a_failed_exchange_spends_the_code_and_revokes_its_authorization() {
    let api = api().await;
    let session = api.account("ann@example.org").await;
    let (key_id, _) = key(&api, &session).await;

    // (what the token request changes, the error)
    let wrong_verifier = "x".repeat(43);
    let cases: [(Changes, &str); 5] = [
        (&[("code_verifier", Some(&wrong_verifier))], "invalid_grant"),
        (&[("client_id", Some("other"))], "invalid_grant"),
        (&[("redirect_uri", Some(LOOPBACK))], "invalid_grant"),
        (&[("code_verifier", Some("short"))], "invalid_request"),
        (&[("code_verifier", None)], "invalid_request"),
    ];
    for (n, (changes, error)) in cases.into_iter().enumerate() {
        let code = code_for(&api, &session, &request(&[]), &key_id).await;
        let mut bad = changes.to_vec();
        bad.push(("code", Some(&code)));
        assert_token_error(&exchange(&api, &bad).await, error);
        // The right request now fails too: the code is gone.
        assert_token_error(
            &exchange(&api, &[("code", Some(&code))]).await,
            "invalid_grant",
        );
        let list = authorizations(&api, &session).await;
        assert_eq!(list.len(), n + 1);
        assert!(
            list.iter().all(|a| a["revoked_at"].is_u64()),
            "{changes:?}: every authorization is revoked: {list:?}"
        );
    }
}

#[tokio::test]
async fn unknown_and_expired_codes_are_refused() {
    let api = api().await;
    let session = api.account("ann@example.org").await;
    let (key_id, _) = key(&api, &session).await;
    assert_token_error(
        &exchange(&api, &[("code", Some("nope"))]).await,
        "invalid_grant",
    );
    assert_token_error(
        &exchange(&api, &[("code", Some(&"x".repeat(5000)))]).await,
        "invalid_grant",
    );

    // A code past its expiry, stored directly (waiting out 60 s would be slow).
    let (status, created) = api
        .call(
            "POST",
            "/api/authorizations",
            Some(&session),
            Some(json!({"key_id": key_id})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let auth: AuthorizationId = created["id"].as_str().expect("id").parse().expect("uuid");
    let stored = api
        .state
        .services
        .store
        .get_authorization(auth)
        .await
        .expect("authorization");
    let now = Timestamp::now().as_secs();
    api.state
        .services
        .store
        .insert_oauth_code(&OAuthCode {
            digest: SecretDigest::of(b"old-code"),
            tenant_id: stored.tenant_id,
            user_id: stored.user_id,
            authorization_id: auth,
            client_id: "notes".into(),
            redirect_uri: REDIRECT.into(),
            code_challenge: challenge(VERIFIER),
            expires_at: Timestamp::from(now - 1),
            created_at: Timestamp::from(now - 61),
        })
        .await
        .expect("insert");
    let a = exchange(&api, &[("code", Some("old-code"))]).await;
    assert_token_error(&a, "invalid_grant");
    assert!(a.json()["error_description"]
        .as_str()
        .is_some_and(|d| d.contains("expired")));
}

#[tokio::test]
async fn bad_token_requests_get_rfc_errors_not_500() {
    let api = api().await;
    assert_token_error(
        &exchange(&api, &[("grant_type", None)]).await,
        "invalid_request",
    );
    assert_token_error(
        &exchange(&api, &[("grant_type", Some("password"))]).await,
        "unsupported_grant_type",
    );
    assert_token_error(&exchange(&api, &[]).await, "invalid_request");
    let json_body = Request::post("/oauth/token")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(r#"{"grant_type":"authorization_code"}"#))
        .expect("request");
    assert_token_error(&send(&api, json_body).await, "invalid_request");
    let repeated = post_form(
        &api,
        "/oauth/token",
        "grant_type=authorization_code&grant_type=authorization_code".into(),
        None,
    )
    .await;
    assert_token_error(&repeated, "invalid_request");
    let garbage = post_form(&api, "/oauth/token", "%%%&&==\u{0}".into(), None).await;
    assert_eq!(garbage.status, StatusCode::BAD_REQUEST, "{}", garbage.body);
}

#[tokio::test]
async fn unknown_clients_and_unlisted_redirects_get_a_page_not_a_redirect() {
    let api = api().await;
    let session = api.account("ann@example.org").await;
    for changes in [
        vec![("redirect_uri", Some("https://evil.example/cb"))],
        vec![("redirect_uri", Some("https://notes.example/cb/"))],
        vec![("redirect_uri", Some("https://other.example/cb"))],
        vec![("redirect_uri", None)],
        vec![("client_id", Some("nobody"))],
        vec![("client_id", None)],
    ] {
        for s in [None, Some(session.as_str())] {
            let a = get(&api, &request(&changes), s).await;
            assert_eq!(a.status, StatusCode::BAD_REQUEST, "{changes:?}: {}", a.body);
            assert!(a.location().is_none(), "{changes:?}: redirected");
            assert!(a.headers[header::CONTENT_TYPE]
                .to_str()
                .is_ok_and(|t| t.starts_with("text/html")));
        }
    }
    let repeated = Request::get("/oauth/authorize?client_id=notes&client_id=other")
        .body(Body::empty())
        .expect("request");
    let a = send(&api, repeated).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert!(a.location().is_none());
}

#[tokio::test]
async fn other_bad_parameters_go_back_to_the_app() {
    let api = api().await;
    let stars = "*".repeat(43);
    // (change, error) — checked before and after login alike.
    let cases: &[(Changes, &str)] = &[
        (
            &[("code_challenge_method", Some("plain"))],
            "invalid_request",
        ),
        (&[("code_challenge_method", None)], "invalid_request"),
        (&[("code_challenge", None)], "invalid_request"),
        (&[("code_challenge", Some("too-short"))], "invalid_request"),
        (&[("code_challenge", Some(&stars))], "invalid_request"),
        (
            &[("response_type", Some("token"))],
            "unsupported_response_type",
        ),
        (&[("response_type", None)], "invalid_request"),
        (&[("scope", None)], "invalid_scope"),
        (&[("scope", Some(""))], "invalid_scope"),
        (&[("scope", Some("sign_event:notakind"))], "invalid_scope"),
        (&[("scope", Some("steal_everything"))], "invalid_scope"),
    ];
    let session = api.account("ann@example.org").await;
    for (changes, error) in cases {
        for s in [None, Some(session.as_str())] {
            let a = get(&api, &request(changes), s).await;
            assert_eq!(a.status, StatusCode::SEE_OTHER, "{changes:?}: {}", a.body);
            let location = a.location().expect("location");
            assert!(
                location.starts_with(&format!("{REDIRECT}?error=")),
                "{location}"
            );
            assert_eq!(
                a.redirect_param("error").as_deref(),
                Some(*error),
                "{changes:?}"
            );
            assert!(a.redirect_param("error_description").is_some());
            assert_eq!(a.redirect_param("state").as_deref(), Some("st-123"));
        }
    }
    // A redirect URI with a query gets the error appended with '&'.
    let a = get(
        &api,
        &request(&[
            ("redirect_uri", Some(LOOPBACK)),
            ("response_type", Some("token")),
        ]),
        None,
    )
    .await;
    let location = a.location().expect("location");
    assert!(
        location.starts_with(&format!("{LOOPBACK}&error=unsupported_response_type")),
        "{location}"
    );
}

#[tokio::test]
async fn the_decision_needs_the_csrf_token_a_session_and_an_own_key() {
    let api = api().await;
    let ann = api.account("ann@example.org").await;
    let bob = api.account("bob@example.org").await;
    let (ann_key, _) = key(&api, &ann).await;
    let (bob_key, _) = key(&api, &bob).await;
    let p = request(&[]);
    let ann_csrf = csrf_of(&get(&api, &p, Some(&ann)).await.body);
    let bob_csrf = csrf_of(&get(&api, &p, Some(&bob)).await.body);
    assert_ne!(ann_csrf, bob_csrf);

    for (extra, status) in [
        (
            vec![("key_id", ann_key.as_str()), ("decision", "approve")],
            StatusCode::FORBIDDEN,
        ),
        (
            vec![
                ("csrf", bob_csrf.as_str()),
                ("key_id", &ann_key),
                ("decision", "approve"),
            ],
            StatusCode::FORBIDDEN,
        ),
        (
            vec![("csrf", "0"), ("key_id", &ann_key), ("decision", "approve")],
            StatusCode::FORBIDDEN,
        ),
        (
            vec![
                ("csrf", &ann_csrf),
                ("key_id", &bob_key),
                ("decision", "approve"),
            ],
            StatusCode::BAD_REQUEST,
        ),
        (
            vec![
                ("csrf", &ann_csrf),
                ("key_id", "not-a-uuid"),
                ("decision", "approve"),
            ],
            StatusCode::BAD_REQUEST,
        ),
        (
            vec![("csrf", &ann_csrf), ("decision", "approve")],
            StatusCode::BAD_REQUEST,
        ),
        (
            vec![("csrf", &ann_csrf), ("key_id", &ann_key)],
            StatusCode::BAD_REQUEST,
        ),
        (
            vec![
                ("csrf", &ann_csrf),
                ("key_id", &ann_key),
                ("decision", "maybe"),
            ],
            StatusCode::BAD_REQUEST,
        ),
    ] {
        let a = decide(&api, &ann, &p, &extra).await;
        assert_eq!(a.status, status, "{extra:?}: {}", a.body);
        assert!(a.location().is_none(), "{extra:?}: no code");
    }
    // Without a session: the login form again, no code.
    let mut all = pairs(&p);
    all.extend([
        ("csrf", ann_csrf.as_str()),
        ("key_id", &ann_key),
        ("decision", "approve"),
    ]);
    let a = post_form(&api, "/oauth/authorize", form(&all), None).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    assert!(a.body.contains("action=\"/oauth/login\""));
    assert!(a.location().is_none());
    // An unlisted redirect URI in the form: a page, even with a valid CSRF token.
    let a = decide(
        &api,
        &ann,
        &request(&[("redirect_uri", Some("https://evil.example/cb"))]),
        &[
            ("csrf", &ann_csrf),
            ("key_id", &ann_key),
            ("decision", "approve"),
        ],
    )
    .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert!(a.location().is_none());
    // Not a form at all.
    let r = Request::post("/oauth/authorize")
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::COOKIE, format!("keycast_session={ann}"))
        .body(Body::from("{}"))
        .expect("request");
    assert_eq!(send(&api, r).await.status, StatusCode::BAD_REQUEST);

    assert!(
        authorizations(&api, &ann).await.is_empty(),
        "nothing was created"
    );
    assert!(authorizations(&api, &bob).await.is_empty());
    let (_, policies) = api.call("GET", "/api/policies", Some(&ann), None).await;
    assert_eq!(
        policies["policies"].as_array().map(Vec::len),
        Some(0),
        "{policies}"
    );
}

#[tokio::test]
async fn deny_sends_access_denied_and_creates_nothing() {
    let api = api().await;
    let session = api.account("ann@example.org").await;
    let (key_id, _) = key(&api, &session).await;
    let p = request(&[]);
    let csrf = csrf_of(&get(&api, &p, Some(&session)).await.body);
    let a = decide(
        &api,
        &session,
        &p,
        &[("csrf", &csrf), ("key_id", &key_id), ("decision", "deny")],
    )
    .await;
    assert_eq!(a.status, StatusCode::SEE_OTHER);
    assert_eq!(a.redirect_param("error").as_deref(), Some("access_denied"));
    assert_eq!(a.redirect_param("state").as_deref(), Some("st-123"));
    assert!(a.redirect_param("code").is_none());
    assert!(authorizations(&api, &session).await.is_empty());
}

#[tokio::test]
async fn interpolated_values_are_escaped() {
    let api = api().await;
    let session = api.account("ann@example.org").await;
    key(&api, &session).await;
    let evil = "\"><script>alert(1)</script>";
    let p = request(&[("state", Some(evil))]);
    for s in [None, Some(session.as_str())] {
        let page = get(&api, &p, s).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        assert!(!page.body.contains("<script>"), "{}", page.body);
        assert!(page
            .body
            .contains("value=\"&quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt;\""));
    }
    // And it comes back intact in the redirect.
    let a = get(
        &api,
        &request(&[("state", Some(evil)), ("response_type", None)]),
        None,
    )
    .await;
    assert_eq!(a.redirect_param("state").as_deref(), Some(evil));
}

#[tokio::test]
async fn a_scope_that_means_full_access_says_so() {
    let api = api().await;
    let session = api.account("ann@example.org").await;
    key(&api, &session).await;
    let page = get(
        &api,
        &request(&[("scope", Some("get_public_key"))]),
        Some(&session),
    )
    .await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("<strong>Full access"), "{}", page.body);
    assert!(
        page.body.contains("Sign events of any kind"),
        "{}",
        page.body
    );
}

#[tokio::test]
async fn bad_logins_show_the_form_again_and_are_rate_limited() {
    let api = api().await;
    api.account("ann@example.org").await;
    let p = request(&[]);
    let login = |password: &'static str| {
        let mut all = pairs(&p);
        all.extend([("email", "ann@example.org"), ("password", password)]);
        form(&all)
    };
    let a = post_form(&api, "/oauth/login", login("wrong password!"), None).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    assert!(a.body.contains("Wrong e-mail or password"), "{}", a.body);
    assert!(a.headers.get(header::SET_COOKIE).is_none());
    let a = post_form(&api, "/oauth/login", form(&pairs(&p)), None).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST, "no credentials");
    let a = post_form(&api, "/oauth/login", "email=%ZZ&&password".into(), None).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST, "{}", a.body);
    // The same limits as the JSON login: after 5 failures in a row, this address waits.
    let mut last = StatusCode::OK;
    for _ in 0..10 {
        last = post_form(&api, "/oauth/login", login("wrong password!"), None)
            .await
            .status;
    }
    assert_eq!(last, StatusCode::TOO_MANY_REQUESTS);
    let a = post_form(&api, "/oauth/login", login(PASSWORD), None).await;
    assert_eq!(
        a.status,
        StatusCode::TOO_MANY_REQUESTS,
        "even the right password"
    );
    assert!(a.body.contains("Too many login attempts"));
}

/// Collects every log line the current thread emits.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("lock").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn no_code_token_verifier_or_password_reaches_the_logs() {
    let capture = Capture::default();
    let writer = capture.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let api = api().await;
    api.account("ann@example.org").await;
    let p = request(&[]);
    let mut login = pairs(&p);
    login.extend([("email", "ann@example.org"), ("password", PASSWORD)]);
    let a = post_form(&api, "/oauth/login", form(&login), None).await;
    let cookie = a.headers[header::SET_COOKIE].to_str().expect("cookie");
    let session = cookie
        .trim_start_matches("keycast_session=")
        .split(';')
        .next()
        .expect("value")
        .to_owned();
    let (key_id, _) = key(&api, &session).await;
    let page = get(&api, &p, Some(&session)).await;
    let csrf = csrf_of(&page.body);
    let code = code_for(&api, &session, &p, &key_id).await;
    let t = exchange(&api, &[("code", Some(&code))]).await;
    assert_eq!(t.status, StatusCode::OK, "{}", t.body);
    let token = t.json()["access_token"].as_str().expect("token").to_owned();
    let bunker = t.json()["bunker_url"].as_str().expect("bunker").to_owned();
    let connect_secret = bunker.split("secret=").nth(1).expect("secret").to_owned();
    // A refused exchange with a stolen code logs nothing of it either.
    let stolen = code_for(&api, &session, &p, &key_id).await;
    let wrong = "w".repeat(50);
    exchange(
        &api,
        &[("code", Some(&stolen)), ("code_verifier", Some(&wrong))],
    )
    .await;

    let logs = String::from_utf8(capture.0.lock().expect("lock").clone()).expect("utf-8");
    assert!(logs.contains("oauth code issued"), "{logs}");
    assert!(logs.contains("oauth token issued"), "{logs}");
    assert!(logs.contains("oauth code refused"), "{logs}");
    let code_random = code.split('.').next().expect("random part");
    for (what, secret) in [
        ("password", PASSWORD),
        ("session", session.as_str()),
        ("csrf token", csrf.as_str()),
        ("code", code.as_str()),
        ("code's random part", code_random),
        ("stolen code", stolen.as_str()),
        ("verifier", VERIFIER),
        ("wrong verifier", wrong.as_str()),
        ("access token", token.as_str()),
        ("connect secret", connect_secret.as_str()),
        ("e-mail", "ann@example.org"),
    ] {
        assert!(!logs.contains(secret), "the {what} was logged");
    }
}
