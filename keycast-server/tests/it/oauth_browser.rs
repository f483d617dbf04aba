//! A real headless Chromium walks the OAuth consent page of the real server binary: log
//! in, pick the key, approve, and land on the app's redirect URI with the code, which is
//! then exchanged and used to sign. The client comes from a TOML config file.
//!
//! Needs Chromium and the npm packages of `tests/browser` (see `common::browser`); without
//! them the test prints that it was skipped, and fails under `KEYCAST_TEST_REQUIRE_SERVICES=1`.

use crate::common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::mpsc;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use common::browser::{self, browser, run_node};
use common::pages::form;
use common::server::{Served, PASSWORD};
use keycast_core::nostr::Url;
use keycast_core::SecretDigest;
use serde_json::{json, Value};

/// A tiny web server standing in for the app: answers 200 to everything and reports
/// each request line.
fn redirect_catcher() -> (u16, mpsc::Receiver<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
            let mut head = Vec::new();
            let mut buf = [0u8; 1024];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 * 1024 {
                match stream.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => head.extend_from_slice(&buf[..n]),
                }
            }
            let line = String::from_utf8_lossy(&head)
                .lines()
                .next()
                .unwrap_or("")
                .to_owned();
            let body = "<!doctype html><title>app</title><p>signed in</p>";
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    (port, rx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_approves_in_chromium_and_the_app_gets_a_working_code() {
    let Some((dir, chromium)) = browser() else {
        return;
    };
    let (app_port, requests) = redirect_catcher();
    let redirect_uri = format!("http://127.0.0.1:{app_port}/cb");
    let config = std::env::temp_dir().join(format!("keycast-oauth-{}.toml", uuid::Uuid::new_v4()));
    std::fs::write(
        &config,
        format!(
            "[[oauth_clients]]\nid = \"notes\"\nname = \"Notes\"\nredirect_uris = [\"{redirect_uri}\"]\n"
        ),
    )
    .expect("config file");

    let mut served = Served::start_with(&["--config", &config.display().to_string()]).await;
    let env = &served.env;
    // An account with one key, made through the API.
    let account = served.account("ann@example.org").await;
    let (email, session, pubkey) = (
        account.email.as_str(),
        account.session.as_str(),
        account.pubkey.as_str(),
    );

    // The app's request, walked by Chromium.
    let verifier = format!(
        "{}-{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    );
    let challenge = URL_SAFE_NO_PAD.encode(SecretDigest::of(verifier.as_bytes()).as_bytes());
    let state = "xyz <&> 42";
    let authorize = format!(
        "{}?{}",
        env.url("/oauth/authorize"),
        form(&[
            ("response_type", "code"),
            ("client_id", "notes"),
            ("redirect_uri", &redirect_uri),
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
            ("state", state),
            ("scope", "get_public_key sign_event:1"),
        ])
    );
    let args = vec![authorize.clone(), email.to_owned(), PASSWORD.to_owned()];
    let out =
        tokio::task::spawn_blocking(move || run_node(&dir, &chromium, "oauth_consent.mjs", &args))
            .await
            .expect("node thread");
    let result = browser::result(&out);
    let consent = result["consent"].as_str().expect("consent text");
    assert!(
        consent.contains("Sign events of kind 1 (short text notes)"),
        "{consent}"
    );
    assert!(!consent.contains("Full access"), "{consent}");
    assert!(
        result["url"]
            .as_str()
            .is_some_and(|u| u.starts_with(&redirect_uri)),
        "{result}"
    );

    // What the app's server saw.
    let line = std::iter::from_fn(|| requests.recv_timeout(Duration::from_secs(10)).ok())
        .find(|l| l.starts_with("GET /cb?"))
        .expect("the redirect reached the app");
    let target = line.split(' ').nth(1).expect("request target");
    let params: Vec<(String, String)> = Url::parse(&format!("http://app{target}"))
        .expect("url")
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let param = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    assert_eq!(param("state").as_deref(), Some(state), "{line}");
    let code = param("code").expect("a code");

    // The app exchanges the code and signs with the token.
    let response = served
        .http
        .post(env.url("/oauth/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", &redirect_uri),
            ("client_id", "notes"),
            ("code_verifier", &verifier),
        ]))
        .send()
        .await
        .expect("token request");
    assert_eq!(response.status(), 200);
    let token: Value = response.json().await.expect("token json");
    assert_eq!(token["pubkey"], pubkey);
    let access = token["access_token"]
        .as_str()
        .expect("access token")
        .to_owned();
    let template =
        json!({"kind": 1, "content": "hi from the browser flow", "tags": []}).to_string();
    let (status, signed) = served
        .json(
            reqwest::Method::POST,
            "/api/nostr",
            Some(&access),
            Some(json!({"method": "sign_event", "params": [template]})),
        )
        .await;
    assert_eq!(status, 200, "{signed}");
    let event: Value =
        serde_json::from_str(signed["result"].as_str().expect("event")).expect("json");
    assert_eq!(event["pubkey"], pubkey);

    // Stop the server; nothing secret went to its (debug) logs.
    let (clean, logs) = served.stop_checked();
    assert!(clean, "{logs}");
    let _ = std::fs::remove_file(&config);
    assert!(logs.contains("oauth token issued"), "{logs}");
    let bunker = token["bunker_url"].as_str().expect("bunker url");
    let connect_secret = bunker.split("secret=").nth(1).expect("secret");
    for (what, secret) in [
        ("password", PASSWORD),
        ("session", session),
        ("code", code.as_str()),
        ("verifier", verifier.as_str()),
        ("access token", access.as_str()),
        ("connect secret", connect_secret),
    ] {
        assert!(!logs.contains(secret), "the {what} was logged");
    }
}
