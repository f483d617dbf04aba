//! The web UI (`/ui`) of the real server binary over HTTP: login and logout, the app
//! sessions page and its Revoke button, the new-connection form; CSRF and bad input
//! refused with a 4xx page that changed nothing. Then the same in a real headless
//! Chromium with screenshots, decoding the QR code from the screenshot (needs Chromium
//! and the npm packages of `tests/browser`, see `common::browser`).

use std::time::Duration;

use crate::common;

use common::browser::{self, browser, screenshot_dir};
use common::pages::{code, csrf, get, html, login};
use common::server::{Account, Served, PASSWORD};
use reqwest::header::SET_COOKIE;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// An authorization made over the JSON API: its id and RPC token.
async fn authorize(served: &Served, account: &Account, label: &str) -> (String, String) {
    let (status, body) = served
        .json(
            Method::POST,
            "/api/authorizations",
            Some(&account.session),
            Some(json!({"key_id": account.key_id, "label": label})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    (
        body["id"].as_str().expect("id").to_owned(),
        body["token"].as_str().expect("token").to_owned(),
    )
}

fn revoked(list: &[Value], id: &str) -> bool {
    let a = list.iter().find(|a| a["id"] == id).expect("listed");
    !a["revoked_at"].is_null()
}

#[tokio::test]
async fn pages_without_a_session_redirect_to_the_login_form() {
    let served = Served::start().await;
    let ann = served.account("ann@example.org").await;
    let (id, _) = authorize(&served, &ann, "Notes").await;
    let revoke = format!("/ui/sessions/{id}/revoke");
    for cookie in [None, Some("keycast_session=not-a-session")] {
        for (method, path) in [
            (Method::GET, "/ui"),
            (Method::GET, "/ui/connect/new"),
            (Method::POST, "/ui/connect/new"),
            (Method::POST, revoke.as_str()),
            (Method::POST, "/ui/logout"),
        ] {
            let fields: &[(&str, &str)] = &[("csrf", "00"), ("key_id", &ann.key_id)];
            let body = (method == Method::POST).then_some(fields);
            let (status, _, location) = html(&served, method.clone(), path, cookie, body).await;
            assert_eq!(status, StatusCode::SEE_OTHER, "{method} {path}");
            assert_eq!(location.as_deref(), Some("/ui/login"), "{method} {path}");
        }
    }
    // The login form itself needs none; nothing was revoked or created.
    let (status, page, _) = html(&served, Method::GET, "/ui/login", None, None).await;
    assert_eq!(status, 200);
    assert!(page.contains("action=\"/ui/login\""), "{page}");
    let list = served.authorizations(&ann).await;
    assert_eq!(list.len(), 1);
    assert!(!revoked(&list, &id));
    // Unknown /ui pages are an HTML 404.
    let (status, _, _) = html(&served, Method::GET, "/ui/nope", None, None).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn login_failures_are_shown_and_lock_the_account_like_the_api() {
    let served = Served::start().await;
    let ann = served.account("ann@example.org").await;
    let creds = json!({"email": "bob@example.org", "password": PASSWORD});
    let (status, body) = served
        .json(
            Method::POST,
            "/api/auth/register",
            None,
            Some(creds.clone()),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let attempt = |email: &'static str, password: Option<&'static str>| {
        let served = &served;
        async move {
            let mut fields = vec![("email", email)];
            fields.extend(password.map(|p| ("password", p)));
            html(served, Method::POST, "/ui/login", None, Some(&fields)).await
        }
    };
    let (status, page, _) = attempt("bob@example.org", None).await;
    assert_eq!(status, 400);
    assert!(page.contains("Enter your e-mail and password."), "{page}");
    let (status, page, _) = attempt("nobody@example.org", Some("x")).await;
    assert_eq!(status, 401);
    assert!(page.contains("Wrong e-mail or password."), "{page}");
    // KEYCAST_LOGIN_FREE_FAILURES (5), then this address must wait.
    for _ in 0..5 {
        let (status, page, _) = attempt("bob@example.org", Some("wrong password")).await;
        assert_eq!(status, 401, "{page}");
        assert!(page.contains("Wrong e-mail or password."), "{page}");
        assert!(
            !page.contains("wrong password"),
            "the password is not echoed"
        );
    }
    // Refused from this address now, through the API and the form alike, even with the
    // right password (tests/abuse/accounts.rs shows other addresses are not).
    let (status, body) = served
        .json(Method::POST, "/api/auth/login", None, Some(creds))
        .await;
    assert_eq!(status, 429, "{body}");
    let (status, page, _) = attempt("bob@example.org", Some(PASSWORD)).await;
    assert_eq!(status, 429);
    assert!(page.contains("Too many login attempts"), "{page}");
    // Other accounts are not affected; a login posted from another site is refused.
    let response = served
        .http
        .post(served.env.url("/ui/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("sec-fetch-site", "cross-site")
        .body(common::pages::form(&[
            ("email", &ann.email),
            ("password", PASSWORD),
        ]))
        .send()
        .await
        .expect("login");
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert!(response.headers().get(SET_COOKIE).is_none());
    login(&served, &ann.email).await;
}

#[tokio::test]
async fn every_form_needs_the_sessions_csrf_token() {
    let served = Served::start().await;
    let ann = served.account("ann@example.org").await;
    let (id, token) = authorize(&served, &ann, "Notes").await;
    let cookie = login(&served, &ann.email).await;
    // A token from another session of the same account does not do either.
    let other = csrf(&get(&served, "/ui", &login(&served, &ann.email).await, 200).await);
    let policies_before = served.policy_count(&ann).await;
    for presented in [None, Some(""), Some("00"), Some(other.as_str())] {
        let with = |mut fields: Vec<(&'static str, String)>| {
            fields.extend(presented.map(|c| ("csrf", c.to_owned())));
            fields
        };
        let forms = [
            (
                "/ui/connect/new".to_owned(),
                with(vec![
                    ("key_id", ann.key_id.clone()),
                    ("label", "Sneaky".into()),
                    ("preset", "full".into()),
                ]),
            ),
            (format!("/ui/sessions/{id}/revoke"), with(Vec::new())),
            ("/ui/logout".to_owned(), with(Vec::new())),
        ];
        for (path, fields) in forms {
            let fields: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let (status, page, _) =
                html(&served, Method::POST, &path, Some(&cookie), Some(&fields)).await;
            assert_eq!(status, StatusCode::FORBIDDEN, "{path} {presented:?}");
            assert!(page.contains("CSRF"), "{page}");
        }
    }
    // Nothing happened: no new authorization or policy, not revoked, still logged in.
    let list = served.authorizations(&ann).await;
    assert_eq!(list.len(), 1);
    assert!(!revoked(&list, &id));
    assert_eq!(served.policy_count(&ann).await, policies_before);
    assert_eq!(served.sign(&token, 1).await, 200);
    get(&served, "/ui", &cookie, 200).await;
}

#[tokio::test]
async fn a_session_is_revoked_from_the_list() {
    let served = Served::start().await;
    let ann = served.account("ann@example.org").await;
    let eve = served.account("eve@example.org").await;
    let (id, token) = authorize(&served, &ann, "<Notes & co>").await;
    let (eves, eves_token) = authorize(&served, &eve, "Eve's").await;
    assert_eq!(served.sign(&token, 1).await, 200);
    let cookie = login(&served, &ann.email).await;

    let page = get(&served, "/ui", &cookie, 200).await;
    assert!(page.contains("<table id=\"sessions\">"), "{page}");
    assert!(page.contains("&lt;Notes &amp; co&gt;"), "escaped: {page}");
    assert!(!page.contains("<Notes"), "{page}");
    assert!(page.contains("main ("), "the key by name: {page}");
    assert!(page.contains("<td>1</td>"), "one signature: {page}");
    assert!(!page.contains("Eve"), "only the account's own: {page}");
    let action = format!("action=\"/ui/sessions/{id}/revoke\"");
    assert!(page.contains(&action), "{page}");

    // Another account's session, an unknown id and a non-id are 404 and change nothing.
    let token_field = csrf(&page);
    let fields: &[(&str, &str)] = &[("csrf", &token_field)];
    for target in [
        eves.as_str(),
        "6f1f2c39-2a57-4a6b-9a49-4a0c8b1d2e3f",
        "nope",
    ] {
        let path = format!("/ui/sessions/{target}/revoke");
        let (status, page, _) =
            html(&served, Method::POST, &path, Some(&cookie), Some(fields)).await;
        assert_eq!(status, 404, "{target}: {page}");
    }
    assert!(!revoked(&served.authorizations(&eve).await, &eves));
    assert_eq!(served.sign(&eves_token, 1).await, 200);

    let path = format!("/ui/sessions/{id}/revoke");
    let (status, _, location) =
        html(&served, Method::POST, &path, Some(&cookie), Some(fields)).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(location.as_deref(), Some("/ui"));
    assert!(revoked(&served.authorizations(&ann).await, &id));
    assert_eq!(served.sign(&token, 1).await, 401, "refused at once");
    // The subscription lets go of the key when the change feed is next read (alone: the
    // next poll, 250 ms; the revocation was applied here, so nothing reads it at once).
    keycast_test_support::eventually(
        Duration::from_secs(5),
        "the revoked key out of the NIP-46 subscription",
        || async {
            served
                .metric("keycast_nip46_subscribed_authorizations")
                .await
                == 1
        },
    )
    .await;
    let page = get(&served, "/ui", &cookie, 200).await;
    assert!(page.contains("Revoked "), "{page}");
    assert!(!page.contains(&action), "no button once revoked: {page}");
}

#[tokio::test]
async fn bad_input_to_the_connect_form_changes_nothing() {
    let served = Served::start().await;
    let ann = served.account("ann@example.org").await;
    let eve = served.account("eve@example.org").await;
    let cookie = login(&served, &ann.email).await;
    let page = get(&served, "/ui/connect/new", &cookie, 200).await;
    assert!(
        page.contains(&format!("<option value=\"{}\">", ann.key_id)),
        "{page}"
    );
    let token = csrf(&page);
    let policies_before = served.policy_count(&ann).await;
    let long = "x".repeat(101);
    let key = ann.key_id.as_str();
    // (fields besides csrf, a phrase the page must show)
    let cases: &[(&[(&str, &str)], &str)] = &[
        (
            &[("label", "A"), ("preset", "full")],
            "Choose one of your keys",
        ),
        (
            &[("key_id", ""), ("label", "A"), ("preset", "full")],
            "Choose one of your keys",
        ),
        (
            &[("key_id", "nope"), ("label", "A"), ("preset", "full")],
            "not one of yours",
        ),
        (
            &[
                ("key_id", "6f1f2c39-2a57-4a6b-9a49-4a0c8b1d2e3f"),
                ("label", "A"),
                ("preset", "full"),
            ],
            "not one of yours",
        ),
        (
            &[("key_id", &eve.key_id), ("label", "A"), ("preset", "full")],
            "not one of yours",
        ),
        (&[("key_id", key), ("preset", "full")], "Enter a label"),
        (
            &[("key_id", key), ("label", "  "), ("preset", "full")],
            "Enter a label",
        ),
        (
            &[("key_id", key), ("label", &long), ("preset", "full")],
            "label",
        ),
        (
            &[("key_id", key), ("label", "A")],
            "Choose what the app may do",
        ),
        (
            &[("key_id", key), ("label", "A"), ("preset", "admin")],
            "Choose what the app may do",
        ),
        (
            &[("key_id", key), ("label", "A"), ("preset", "kinds")],
            "at least one event kind",
        ),
        (
            &[
                ("key_id", key),
                ("label", "A"),
                ("preset", "kinds"),
                ("kinds", " , "),
            ],
            "at least one event kind",
        ),
        (
            &[
                ("key_id", key),
                ("label", "A"),
                ("preset", "kinds"),
                ("kinds", "1,<b>"),
            ],
            "&lt;b&gt;\u{201d} is not an event kind",
        ),
        (
            &[
                ("key_id", key),
                ("label", "A"),
                ("preset", "kinds"),
                ("kinds", "70000"),
            ],
            "is not an event kind",
        ),
        (
            &[
                ("key_id", key),
                ("key_id", key),
                ("label", "A"),
                ("preset", "full"),
            ],
            "malformed",
        ),
    ];
    for (fields, phrase) in cases {
        let mut all = vec![("csrf", token.as_str())];
        all.extend_from_slice(fields);
        let (status, page, _) = html(
            &served,
            Method::POST,
            "/ui/connect/new",
            Some(&cookie),
            Some(&all),
        )
        .await;
        assert_eq!(status, 400, "{fields:?}: {page}");
        assert!(
            page.contains(phrase),
            "{fields:?} should say {phrase:?}: {page}"
        );
        assert!(!page.contains("bunker://"), "{page}");
    }
    // Not a form at all.
    let response = served
        .http
        .post(served.env.url("/ui/connect/new"))
        .header("cookie", &cookie)
        .header("content-type", "application/json")
        .body(json!({"csrf": token, "key_id": key, "label": "A", "preset": "full"}).to_string())
        .send()
        .await
        .expect("post");
    assert!(response.status().is_client_error(), "{}", response.status());
    assert!(served.authorizations(&ann).await.is_empty());
    assert!(served.authorizations(&eve).await.is_empty());
    assert_eq!(served.policy_count(&ann).await, policies_before);
}

#[tokio::test]
async fn a_connection_from_the_form_signs_what_its_preset_allows_and_logout_ends_the_session() {
    let mut served = Served::start().await;
    let ann = served.account("ann@example.org").await;
    let cookie = login(&served, &ann.email).await;
    let token = csrf(&get(&served, "/ui/connect/new", &cookie, 200).await);
    let create = |preset: &'static str, kinds: &'static str, label: &'static str| {
        let (served, cookie, token, key) = (&served, &cookie, &token, &ann.key_id);
        async move {
            let fields: &[(&str, &str)] = &[
                ("csrf", token),
                ("key_id", key),
                ("label", label),
                ("preset", preset),
                ("kinds", kinds),
            ];
            let (status, page, _) = html(
                served,
                Method::POST,
                "/ui/connect/new",
                Some(cookie),
                Some(fields),
            )
            .await;
            assert_eq!(status, StatusCode::CREATED, "{page}");
            (code(&page, "bunker-uri"), code(&page, "rpc-token"), page)
        }
    };

    let (uri, rpc, page) = create("kinds", "1, 7", "Notes").await;
    assert!(
        page.contains("<svg role=\"img\""),
        "an inline QR code: {page}"
    );
    assert!(page.contains("Shown once"), "{page}");
    assert!(!page.contains("Full access"), "{page}");
    let list = served.authorizations(&ann).await;
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["label"], "Notes");
    assert_eq!(list[0]["key_id"], ann.key_id.as_str());
    let bunker = list[0]["bunker_pubkey"].as_str().expect("bunker pubkey");
    assert!(uri.starts_with(&format!("bunker://{bunker}?")), "{uri}");
    assert!(uri.contains("secret="), "{uri}");
    assert_eq!(served.sign(&rpc, 1).await, 200);
    assert_eq!(served.sign(&rpc, 7).await, 200);
    assert_eq!(served.sign(&rpc, 4).await, 403, "kind 4 is not allowed");

    let (_, full_rpc, page) = create("full", "", "Everything").await;
    assert!(page.contains("Full access"), "{page}");
    assert_eq!(served.sign(&full_rpc, 30023).await, 200);
    let page = get(&served, "/ui", &cookie, 200).await;
    assert!(
        page.contains("Notes") && page.contains("Everything"),
        "{page}"
    );
    assert!(
        !page.contains(&rpc) && !page.contains("secret="),
        "the list shows no credential"
    );

    // Logging out ends the session in the store, not only in the browser.
    let session = cookie.trim_start_matches("keycast_session=").to_owned();
    let fields: &[(&str, &str)] = &[("csrf", &token)];
    let response = served
        .http
        .post(served.env.url("/ui/logout"))
        .header("cookie", &cookie)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(common::pages::form(fields))
        .send()
        .await
        .expect("logout");
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(response.headers()["location"], "/ui/login");
    let cleared = response.headers()[SET_COOKIE].to_str().expect("cookie");
    assert!(
        cleared.starts_with("keycast_session=;") && cleared.contains("Max-Age=0"),
        "{cleared}"
    );
    let (status, _, location) = html(&served, Method::GET, "/ui", Some(&cookie), None).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(location.as_deref(), Some("/ui/login"));
    let (status, _) = served
        .json(Method::GET, "/api/me", Some(&session), None)
        .await;
    assert_eq!(status, 401);

    // No secret reached the (debug) logs.
    let logs = served.stop();
    assert!(
        logs.contains("bunker connection created in the web UI"),
        "{logs}"
    );
    let secret = uri.split("secret=").nth(1).expect("secret");
    for (what, value) in [
        ("password", PASSWORD),
        ("session", session.as_str()),
        ("csrf token", token.as_str()),
        ("rpc token", rpc.as_str()),
        ("connect secret", secret),
    ] {
        assert!(!logs.contains(value), "the {what} was logged");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_uses_the_web_ui_in_chromium() {
    let Some((dir, chromium)) = browser() else {
        return;
    };
    let served = Served::start().await;
    let ann = served.account("ann@example.org").await;
    let shots = screenshot_dir("connect");
    let args = vec![
        served.env.url(""),
        ann.email.clone(),
        PASSWORD.to_owned(),
        shots.display().to_string(),
    ];
    let steps = [
        "nav bar",
        "sessions table",
        "revoke button",
        "revoked status",
        "old cookie refused",
    ];
    let result = browser::walk(dir, chromium, "web_ui.mjs", args, &steps).await;

    // The QR code in the screenshot is the URI on the page, of the session just made.
    let uri = result["uri"].as_str().expect("uri");
    assert!(uri.starts_with("bunker://"), "{uri}");
    assert_eq!(result["qr"], uri, "the QR code decodes to the URI");
    let list = served.authorizations(&ann).await;
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0]["label"], result["label"]);
    let bunker = list[0]["bunker_pubkey"].as_str().expect("bunker pubkey");
    assert!(uri.starts_with(&format!("bunker://{bunker}?")), "{uri}");
    // Revoked in the UI, so revoked for the API.
    assert!(!list[0]["revoked_at"].is_null(), "{list:?}");
    // Logged out in the UI, so the session is gone for the API too.
    let session = result["session"].as_str().expect("session");
    let (status, _) = served
        .json(Method::GET, "/api/me", Some(session), None)
        .await;
    assert_eq!(status, 401);
}
