//! E-mail verification and password reset, in-process, with mail delivered by a real SMTP
//! server (aiosmtpd, `KEYCAST_TEST_SMTP_PYTHON`) and read back from its Maildir; and the
//! development fallback that writes `.eml` files to the data dir.

use crate::common;

use axum::http::StatusCode;
use common::inproc::{is_error, Api};
use common::smtp::{token_in, PrivateSmtp};
use serde_json::{json, Value};

const FROM: &str = "keycast <noreply@keycast.test>";

async fn api_with(smtp: &PrivateSmtp) -> Api {
    let url = smtp.url();
    Api::new(&[
        ("KEYCAST_SMTP_URL", url.as_str()),
        ("KEYCAST_MAIL_FROM", FROM),
    ])
    .await
}

async fn me(api: &Api, session: &str) -> (StatusCode, Value) {
    api.call("GET", "/api/me", Some(session), None).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_address_is_verified_with_the_mailed_code_once() {
    let Some(smtp) = PrivateSmtp::start() else {
        return;
    };
    let api = api_with(&smtp).await;
    let ann = api.account("ann@example.org").await;
    assert!(me(&api, &ann).await.1["email_verified_at"].is_null());

    let (status, _) = api
        .call("POST", "/api/auth/email/verify/request", None, None)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "needs a session");
    let (status, body) = api
        .call("POST", "/api/auth/email/verify/request", Some(&ann), None)
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let message = smtp.message_to("ann@example.org", 1).await;
    assert!(
        message.contains("Subject: Verify your e-mail address"),
        "{message}"
    );
    assert!(
        message.contains("From: keycast <noreply@keycast.test>"),
        "{message}"
    );
    let token = token_in(&message);

    for (body, want) in [
        (json!({"token": "0".repeat(64)}), StatusCode::BAD_REQUEST),
        (json!({"token": ""}), StatusCode::BAD_REQUEST),
        (json!({"token": "x".repeat(5000)}), StatusCode::BAD_REQUEST),
        (json!({}), StatusCode::UNPROCESSABLE_ENTITY),
        (
            json!({"token": token, "extra": 1}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
    ] {
        let (status, answer) = api
            .call("POST", "/api/auth/email/verify", None, Some(body.clone()))
            .await;
        assert_eq!(status, want, "{body}: {answer}");
        assert!(is_error(&answer), "{answer}");
    }
    assert!(
        me(&api, &ann).await.1["email_verified_at"].is_null(),
        "bad tries change nothing"
    );

    let (status, body) = api
        .call(
            "POST",
            "/api/auth/email/verify",
            None,
            Some(json!({"token": token})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let at = body["email_verified_at"].as_u64().expect("time");
    assert_eq!(me(&api, &ann).await.1["email_verified_at"], at);
    let (status, body) = api
        .call(
            "POST",
            "/api/auth/email/verify",
            None,
            Some(json!({"token": token})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "single use: {body}");
    assert_eq!(body["error"]["code"], "invalid_token");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forgotten_password_is_reset_once_and_every_session_ends() {
    let Some(smtp) = PrivateSmtp::start() else {
        return;
    };
    let api = api_with(&smtp).await;
    let first = api.account("bo@example.org").await;
    let login = |password: &str| {
        let body = json!({"email": "bo@example.org", "password": password});
        let api = &api;
        async move { api.call("POST", "/api/auth/login", None, Some(body)).await }
    };
    let (_, second) = login("correct horse battery").await;
    let second = second["token"].as_str().expect("token").to_owned();

    // The same answer whether or not the address has an account.
    let forgot = |email: &str| {
        let body = json!({"email": email});
        let api = &api;
        async move {
            api.call("POST", "/api/auth/password/forgot", None, Some(body))
                .await
        }
    };
    let known = forgot("BO@example.org").await;
    let unknown = forgot("nobody@example.org").await;
    assert_eq!(known.0, StatusCode::ACCEPTED, "{}", known.1);
    assert_eq!(known, unknown, "answers do not reveal accounts");
    let message = smtp.message_to("bo@example.org", 1).await;
    assert!(
        message.contains("Subject: Reset your password"),
        "{message}"
    );
    let token = token_in(&message);

    let reset = |token: &str, password: &str| {
        let body = json!({"token": token, "password": password});
        let api = &api;
        async move {
            api.call("POST", "/api/auth/password/reset", None, Some(body))
                .await
        }
    };
    let (status, body) = reset(&token, "short").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "weak: {body}");
    let (status, body) = reset(&"0".repeat(64), "a brand new password").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["code"], "invalid_token");
    assert_eq!(
        me(&api, &first).await.0,
        StatusCode::OK,
        "nothing changed yet"
    );

    let (status, body) = reset(&token, "a brand new password").await;
    assert_eq!(
        status,
        StatusCode::OK,
        "a weak try left the token usable: {body}"
    );
    assert_eq!(body["sessions_ended"], 2);
    for session in [&first, &second] {
        assert_eq!(
            me(&api, session).await.0,
            StatusCode::UNAUTHORIZED,
            "sessions end"
        );
    }
    assert_eq!(
        login("correct horse battery").await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(login("a brand new password").await.0, StatusCode::OK);
    let (status, _) = reset(&token, "yet another password").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "single use");

    for (body, want) in [
        (json!({"email": "not-an-address"}), StatusCode::BAD_REQUEST),
        (json!({}), StatusCode::UNPROCESSABLE_ENTITY),
    ] {
        let (status, answer) = api
            .call(
                "POST",
                "/api/auth/password/forgot",
                None,
                Some(body.clone()),
            )
            .await;
        assert_eq!(status, want, "{body}: {answer}");
    }
    let to_nobody = smtp
        .messages()
        .iter()
        .filter(|m| m.contains("nobody@example.org"))
        .count();
    assert_eq!(to_nobody, 0, "no mail for an address without an account");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_smtp_mail_is_written_to_the_private_data_dir() {
    let api = Api::new(&[]).await;
    let cy = api.account("cy@example.org").await;
    let (status, body) = api
        .call("POST", "/api/auth/email/verify/request", Some(&cy), None)
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let dir = api.state.services.config.data_dir.join("mail");
    let files: Vec<_> = std::fs::read_dir(&dir)
        .expect("mail dir")
        .filter_map(|e| e.ok())
        .collect();
    assert_eq!(files.len(), 1, "one message written");
    let text = std::fs::read_to_string(files[0].path()).expect("message");
    assert!(text.contains("To: cy@example.org"), "{text}");
    let (status, _) = api
        .call(
            "POST",
            "/api/auth/email/verify",
            None,
            Some(json!({"token": token_in(&text)})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&dir).expect("meta").permissions().mode();
        assert_eq!(mode & 0o077, 0, "mail dir is private: {mode:o}");
    }
}

#[test]
fn bad_mail_settings_stop_the_start_with_the_setting_named() {
    for (name, value) in [
        ("KEYCAST_SMTP_URL", "http://mail.example.org"),
        ("KEYCAST_SMTP_URL", "mail.example.org:25"),
        ("KEYCAST_MAIL_FROM", "not an address"),
    ] {
        let err = common::config_error(name, value);
        assert!(err.contains(name), "{err}");
    }
}
