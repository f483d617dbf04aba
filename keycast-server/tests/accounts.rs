//! Accounts over HTTP in-process: registration, login, sessions, logout, rate limiting and
//! lockout; bad input answered with JSON errors.

mod common;

use axum::http::StatusCode;
use common::inproc::Api;
use serde_json::{json, Value};

fn creds(email: &str, password: &str) -> Option<Value> {
    Some(json!({"email": email, "password": password}))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_login_session_logout() {
    let s = Api::new(&[("KEYCAST_REGISTRATION_OPEN", "true")]).await;
    let (status, body) = s
        .call(
            "POST",
            "/api/auth/register",
            None,
            creds("Ann@Example.org", "correct horse battery"),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["email"], "ann@example.org");

    for (c, expected) in [
        (
            creds("ANN@example.org", "another long password"),
            StatusCode::CONFLICT,
        ),
        (
            creds("not-an-email", "correct horse battery"),
            StatusCode::BAD_REQUEST,
        ),
        (creds("bob@example.org", "short"), StatusCode::BAD_REQUEST),
        (
            Some(json!({"email": "bob@example.org"})),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            Some(
                json!({"email": "bob@example.org", "password": "correct horse battery", "admin": true}),
            ),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
    ] {
        let (status, body) = s.call("POST", "/api/auth/register", None, c).await;
        assert_eq!(status, expected, "{body}");
        assert!(body["error"]["code"].is_string(), "{body}");
    }

    let (status, body) = s
        .call(
            "POST",
            "/api/auth/login",
            None,
            creds("ann@example.org", "wrong password!"),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let wrong_password = body["error"]["message"].clone();
    let (status, body) = s
        .call(
            "POST",
            "/api/auth/login",
            None,
            creds("nobody@example.org", "wrong password!"),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        body["error"]["message"], wrong_password,
        "the same answer whether or not the account exists"
    );

    let (status, body) = s
        .call(
            "POST",
            "/api/auth/login",
            None,
            creds("ann@EXAMPLE.org", "correct horse battery"),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let token = body["token"].as_str().expect("token").to_owned();
    let (status, me) = s.call("GET", "/api/me", Some(&token), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(me["email"], "ann@example.org");
    for bad in [None, Some("forged-session-token")] {
        let (status, body) = s.call("GET", "/api/me", bad, None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    }
    let (status, _) = s.call("POST", "/api/auth/logout", Some(&token), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = s.call("GET", "/api/me", Some(&token), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "the session ended");

    let c = s.state.counters.snapshot();
    assert_eq!((c.registrations, c.logins, c.login_failures), (1, 1, 2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_failures_lock_the_email_but_not_others() {
    let s = Api::new(&[("KEYCAST_REGISTRATION_OPEN", "true")]).await;
    for email in ["ann@example.org", "bob@example.org"] {
        let (status, _) = s
            .call(
                "POST",
                "/api/auth/register",
                None,
                creds(email, "correct horse battery"),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED);
    }
    let mut statuses = Vec::new();
    for _ in 0..11 {
        statuses.push(
            s.call(
                "POST",
                "/api/auth/login",
                None,
                creds("ann@example.org", "guess guess guess"),
            )
            .await
            .0,
        );
    }
    assert!(
        statuses[..10]
            .iter()
            .all(|s| *s == StatusCode::UNAUTHORIZED),
        "{statuses:?}"
    );
    assert_eq!(statuses[10], StatusCode::TOO_MANY_REQUESTS);
    let (status, body) = s
        .call(
            "POST",
            "/api/auth/login",
            None,
            creds("ann@example.org", "correct horse battery"),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::TOO_MANY_REQUESTS,
        "locked even with the right password: {body}"
    );
    let (status, _) = s
        .call(
            "POST",
            "/api/auth/login",
            None,
            creds("bob@example.org", "correct horse battery"),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "other accounts are unaffected");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_registration_is_refused() {
    let s = Api::new(&[("KEYCAST_REGISTRATION_OPEN", "false")]).await;
    let (status, body) = s
        .call(
            "POST",
            "/api/auth/register",
            None,
            creds("ann@example.org", "correct horse battery"),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body["error"]["code"], "registration_closed");
}
