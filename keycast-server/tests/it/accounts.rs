//! Accounts over HTTP in-process: registration, login, sessions, logout, login limits
//! (delays per e-mail and address); bad input answered with JSON errors.

use crate::common;

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
async fn repeated_failures_slow_that_address_but_not_the_owner_elsewhere() {
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
    let attacker = "198.51.100.7";
    let login = |from: &'static str, email: &'static str, password: &'static str| {
        let s = &s;
        async move {
            let ((status, body), retry_after) = s
                .call_from(
                    from,
                    "POST",
                    "/api/auth/login",
                    None,
                    creds(email, password),
                )
                .await;
            (status, body, retry_after)
        }
    };
    // KEYCAST_LOGIN_FREE_FAILURES (5) are answered, then the address must wait.
    let mut statuses = Vec::new();
    for _ in 0..6 {
        statuses.push(
            login(attacker, "ann@example.org", "guess guess guess")
                .await
                .0,
        );
    }
    assert!(
        statuses[..5].iter().all(|s| *s == StatusCode::UNAUTHORIZED),
        "{statuses:?}"
    );
    assert_eq!(statuses[5], StatusCode::TOO_MANY_REQUESTS);
    let (status, body, retry_after) =
        login(attacker, "ann@example.org", "correct horse battery").await;
    assert_eq!(
        status,
        StatusCode::TOO_MANY_REQUESTS,
        "that address waits even with the right password: {body}"
    );
    assert_eq!(body["error"]["code"], "too_many_requests");
    assert_eq!(retry_after, Some(1), "the first delay is a second");
    let (status, body, _) = login("192.0.2.10", "ann@example.org", "correct horse battery").await;
    assert_eq!(
        status,
        StatusCode::OK,
        "the owner elsewhere is not held up: {body}"
    );
    let (status, _, _) = login(attacker, "bob@example.org", "correct horse battery").await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registration_can_bring_a_key_and_a_bad_one_creates_nothing() {
    use keycast_core::nostr::nips::nip49::{EncryptedSecretKey, KeySecurity};
    use keycast_core::nostr::{Keys, ToBech32};

    let s = Api::new(&[]).await;
    let register = |body: Value| {
        let s = &s;
        async move { s.call("POST", "/api/auth/register", None, Some(body)).await }
    };
    let mine = Keys::generate();
    let nsec = mine.secret_key().to_bech32().expect("nsec");
    let (status, body) = register(json!({
        "email": "kim@example.org", "password": "correct horse battery", "nsec": nsec,
    }))
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["key"]["pubkey"], mine.public_key().to_hex(), "{body}");
    let (_, login) = s
        .call(
            "POST",
            "/api/auth/login",
            None,
            creds("kim@example.org", "correct horse battery"),
        )
        .await;
    let session = login["token"].as_str().expect("token");
    let (_, keys) = s.call("GET", "/api/keys", Some(session), None).await;
    assert_eq!(
        keys["keys"][0]["pubkey"],
        mine.public_key().to_hex(),
        "{keys}"
    );
    assert_eq!(keys["keys"].as_array().map(Vec::len), Some(1));

    let other = Keys::generate();
    let ncryptsec =
        EncryptedSecretKey::new(other.secret_key(), "pass phrase", 8, KeySecurity::Unknown)
            .expect("ncryptsec")
            .to_bech32()
            .expect("bech32");
    let (status, body) = register(json!({
        "email": "lee@example.org", "password": "correct horse battery",
        "ncryptsec": ncryptsec, "ncryptsec_password": "pass phrase",
    }))
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["key"]["pubkey"], other.public_key().to_hex());

    // Bad keys: a clear error, and no account is left behind.
    let hex = Keys::generate().secret_key().to_secret_hex();
    for (i, (extra, want, code)) in [
        (
            json!({"nsec": "nsec1notakey"}),
            StatusCode::BAD_REQUEST,
            "nsec",
        ),
        (json!({"nsec": "zz"}), StatusCode::BAD_REQUEST, "nsec"),
        (
            json!({"ncryptsec": ncryptsec, "ncryptsec_password": "wrong"}),
            StatusCode::BAD_REQUEST,
            "wrong password",
        ),
        (
            json!({"ncryptsec": ncryptsec}),
            StatusCode::BAD_REQUEST,
            "ncryptsec_password",
        ),
        (
            json!({"nsec": hex, "ncryptsec": ncryptsec, "ncryptsec_password": "pass phrase"}),
            StatusCode::BAD_REQUEST,
            "send no key",
        ),
        (
            json!({"nsec": nsec}),
            StatusCode::CONFLICT,
            "already stored",
        ),
    ]
    .into_iter()
    .enumerate()
    {
        let mut body = json!({"email": "max@example.org", "password": "correct horse battery"});
        body.as_object_mut()
            .expect("object")
            .extend(extra.as_object().expect("object").clone());
        let (status, answer) = register(body).await;
        assert_eq!(status, want, "{extra}: {answer}");
        let message = answer["error"]["message"].as_str().expect("message");
        assert!(message.contains(code), "{message}");
        assert!(
            !message.contains(&nsec) && !message.contains(&hex),
            "no secret echoed"
        );
        // From a new address each time: failures in a row from one address are delayed.
        let ((status, _), _) = s
            .call_from(
                &format!("192.0.2.{}", i + 1),
                "POST",
                "/api/auth/login",
                None,
                creds("max@example.org", "correct horse battery"),
            )
            .await;
        assert_eq!(
            status,
            StatusCode::UNAUTHORIZED,
            "{extra}: no account was made"
        );
    }
    let (status, body) =
        register(json!({"email": "max@example.org", "password": "correct horse battery"})).await;
    assert_eq!(
        status,
        StatusCode::CREATED,
        "the e-mail is still free: {body}"
    );
    assert!(body.get("key").is_none(), "{body}");
}
