//! Runs the server binary with debug logging through every flow that handles a secret,
//! then scans everything it logged, and its metrics page: no password, secret key, token,
//! connect secret or ncryptsec may appear.

use crate::common;

use std::time::Duration;

use common::server::Served;
use common::Env;
use keycast_core::nostr::{Keys, ToBech32};
use keycast_test_support::eventually;
use serde_json::{json, Value};

/// The newest message with `subject` the server wrote to its data dir (no SMTP is set).
async fn mailed(env: &Env, subject: &str) -> String {
    let mail_dir = env.dir.join("mail");
    let what = format!("a {subject:?} message in {}", mail_dir.display());
    eventually(Duration::from_secs(10), &what, || async {
        std::fs::read_dir(&mail_dir)
            .into_iter()
            .flatten()
            .filter_map(|e| std::fs::read_to_string(e.ok()?.path()).ok())
            .find(|m| m.contains(subject))
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_reaches_the_logs() {
    // Debug logs, SQLite in the data dir (the test reads the mail written there).
    let mut served = Served::launch(Env::new(), &[], &[]).await;
    let env = &served.env;
    let http = reqwest::Client::new();
    let base = env.url("");
    let post = |path: &str, token: Option<&str>, body: Value| {
        let mut r = http.post(format!("{base}{path}")).json(&body);
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        async move {
            r.send()
                .await
                .expect("request")
                .json::<Value>()
                .await
                .expect("json")
        }
    };

    let password = "Sup3r secret passphrase";
    let creds = json!({"email": "ann@example.org", "password": password});
    post("/api/auth/register", None, creds.clone()).await;
    post(
        "/api/auth/login",
        None,
        json!({"email": "ann@example.org", "password": "wrong but secret-ish"}),
    )
    .await;
    let session = post("/api/auth/login", None, creds).await["token"]
        .as_str()
        .expect("session")
        .to_owned();
    let imported = Keys::generate();
    let nsec = imported.secret_key().to_bech32().expect("nsec");
    let key = post("/api/keys", Some(&session), json!({"secret": nsec})).await;
    let key_id = key["id"].as_str().expect("key id").to_owned();
    let export_password = "export passphrase 42";
    post(
        "/api/auth/confirm/request",
        Some(&session),
        json!({"action": "export_key"}),
    )
    .await;
    let export_code = common::smtp::token_in(&mailed(env, "Confirm: export a key").await);
    let exported = post(
        &format!("/api/keys/{key_id}/danger/export"),
        Some(&session),
        json!({"password": export_password, "log_n": 8, "account_password": password,
            "email_code": export_code}),
    )
    .await;
    let ncryptsec = exported["exported"].as_str().expect("ncryptsec").to_owned();
    let created = post(
        "/api/authorizations",
        Some(&session),
        json!({"key_id": key_id}),
    )
    .await;
    let token = created["token"].as_str().expect("token").to_owned();
    let uri = created["bunker_uri"].as_str().expect("uri").to_owned();
    let connect_secret = uri.split("secret=").nth(1).expect("secret").to_owned();
    let template = json!({"kind": 1, "content": "hello", "tags": []}).to_string();
    let signed = post(
        "/api/nostr",
        Some(&token),
        json!({"method": "sign_event", "params": [template]}),
    )
    .await;
    assert!(signed["result"].is_string(), "{signed}");
    post(
        "/api/nostr",
        Some("forged-token-value-1234"),
        json!({"method": "ping"}),
    )
    .await;

    // The key replaced by a brought nsec, with its own mailed code.
    post(
        "/api/auth/confirm/request",
        Some(&session),
        json!({"action": "replace_key"}),
    )
    .await;
    let replace_code = common::smtp::token_in(&mailed(env, "Confirm: replace a key").await);
    let replacement = Keys::generate();
    let replacement_nsec = replacement.secret_key().to_bech32().expect("nsec");
    let replaced = post(
        &format!("/api/keys/{key_id}/danger/replace"),
        Some(&session),
        json!({"account_password": password, "email_code": replace_code, "nsec": replacement_nsec}),
    )
    .await;
    assert_eq!(
        replaced["key"]["pubkey"],
        replacement.public_key().to_hex(),
        "{replaced}"
    );

    // A team key and an authorization on it: its token and connect secret.
    let team = post("/api/teams", Some(&session), json!({"name": "ops"})).await;
    let team_id = team["id"].as_str().expect("team id").to_owned();
    let team_key = post(
        &format!("/api/teams/{team_id}/keys"),
        Some(&session),
        json!({}),
    )
    .await;
    let grant = post(
        &format!("/api/teams/{team_id}/authorizations"),
        Some(&session),
        json!({"key_id": team_key["id"]}),
    )
    .await;
    let team_token = grant["token"].as_str().expect("team token").to_owned();
    let team_uri = grant["bunker_uri"].as_str().expect("uri").to_owned();
    let team_secret = team_uri.split("secret=").nth(1).expect("secret").to_owned();

    // A password reset: its mailed token (no SMTP set, so a file in the data dir) and the
    // new password.
    post(
        "/api/auth/password/forgot",
        None,
        json!({"email": "ann@example.org"}),
    )
    .await;
    let message = mailed(env, "Reset your password").await;
    let reset_token = common::smtp::token_in(&message);
    let new_password = "Another s3cret passphrase";
    let reset = post(
        "/api/auth/password/reset",
        None,
        json!({"token": reset_token, "password": new_password}),
    )
    .await;
    assert_eq!(reset["sessions_ended"], 1, "{reset}");

    // The metrics page is scraped by monitoring systems: scanned like the logs.
    let metrics = http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics text");
    assert!(metrics.contains("keycast_"), "{metrics}");

    let (clean, logs) = served.stop_checked();
    assert!(clean, "{logs}");
    assert!(logs.lines().count() > 20, "debug logging was on: {logs}");
    assert!(logs.contains("trace_id"), "request spans carry a trace id");

    for (what, secret) in [
        ("account password", password),
        ("wrong password", "wrong but secret-ish"),
        ("session token", session.as_str()),
        ("nsec", nsec.as_str()),
        ("hex secret", &imported.secret_key().to_secret_hex()),
        ("export password", export_password),
        ("ncryptsec", ncryptsec.as_str()),
        ("RPC token", token.as_str()),
        ("connect secret", connect_secret.as_str()),
        ("forged token", "forged-token-value-1234"),
        ("password-reset token", reset_token.as_str()),
        ("export code", export_code.as_str()),
        ("replace code", replace_code.as_str()),
        ("replacement nsec", replacement_nsec.as_str()),
        (
            "replacement hex secret",
            &replacement.secret_key().to_secret_hex(),
        ),
        ("team RPC token", team_token.as_str()),
        ("team connect secret", team_secret.as_str()),
        ("new password", new_password),
        ("e-mail", "ann@example.org"),
    ] {
        assert!(!logs.contains(secret), "the {what} was logged");
        assert!(!metrics.contains(secret), "the {what} is in the metrics");
    }
}
