//! Accounts over HTTP in-process: registration, login, sessions, logout, rate limiting and
//! lockout; bad input answered with JSON errors.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use keycast_server::{app, AppState, Config};
use serde_json::{json, Value};
use tower::ServiceExt;

async fn state(registration: &str) -> (AppState, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!("keycast-accounts-{}", uuid::Uuid::new_v4()));
    let d = dir.display().to_string();
    let r = registration.to_owned();
    let config = Config::load(None, |k| match k {
        "KEYCAST_DATA_DIR" => Some(d.clone()),
        "KEYCAST_REGISTRATION_OPEN" => Some(r.clone()),
        _ => None,
    })
    .expect("config");
    let services = keycast_server::services::Services::open(&config, None)
        .await
        .expect("services");
    (AppState::new(services, None), dir)
}

async fn call(
    state: &AppState,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut r = Request::builder().method(method).uri(path);
    if let Some(t) = token {
        r = r.header("authorization", format!("Bearer {t}"));
    }
    let body = match body {
        Some(b) => {
            r = r.header("content-type", "application/json");
            Body::from(b.to_string())
        }
        None => Body::empty(),
    };
    let response = app(state.clone())
        .oneshot(r.body(body).expect("request"))
        .await
        .expect("response");
    let status = response.status();
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

fn creds(email: &str, password: &str) -> Option<Value> {
    Some(json!({"email": email, "password": password}))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_login_session_logout() {
    let (s, dir) = state("true").await;
    let (status, body) = call(
        &s,
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
        let (status, body) = call(&s, "POST", "/api/auth/register", None, c).await;
        assert_eq!(status, expected, "{body}");
        assert!(body["error"]["code"].is_string(), "{body}");
    }

    let (status, body) = call(
        &s,
        "POST",
        "/api/auth/login",
        None,
        creds("ann@example.org", "wrong password!"),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let wrong_password = body["error"]["message"].clone();
    let (status, body) = call(
        &s,
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

    let (status, body) = call(
        &s,
        "POST",
        "/api/auth/login",
        None,
        creds("ann@EXAMPLE.org", "correct horse battery"),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let token = body["token"].as_str().expect("token").to_owned();
    let (status, me) = call(&s, "GET", "/api/me", Some(&token), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(me["email"], "ann@example.org");
    for bad in [None, Some("forged-session-token")] {
        let (status, body) = call(&s, "GET", "/api/me", bad, None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    }
    let (status, _) = call(&s, "POST", "/api/auth/logout", Some(&token), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = call(&s, "GET", "/api/me", Some(&token), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "the session ended");

    let c = s.counters.snapshot();
    assert_eq!((c.registrations, c.logins, c.login_failures), (1, 1, 2));
    std::fs::remove_dir_all(dir).expect("cleanup");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_failures_lock_the_email_but_not_others() {
    let (s, dir) = state("true").await;
    for email in ["ann@example.org", "bob@example.org"] {
        let (status, _) = call(
            &s,
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
            call(
                &s,
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
    let (status, body) = call(
        &s,
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
    let (status, _) = call(
        &s,
        "POST",
        "/api/auth/login",
        None,
        creds("bob@example.org", "correct horse battery"),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "other accounts are unaffected");
    std::fs::remove_dir_all(dir).expect("cleanup");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_registration_is_refused() {
    let (s, dir) = state("false").await;
    let (status, body) = call(
        &s,
        "POST",
        "/api/auth/register",
        None,
        creds("ann@example.org", "correct horse battery"),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body["error"]["code"], "registration_closed");
    std::fs::remove_dir_all(dir).expect("cleanup");
}
