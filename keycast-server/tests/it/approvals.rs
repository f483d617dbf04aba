//! `require_approval` against the real server binary: a NIP-46 client (nostr-connect)
//! gets an `auth_url` pointing at the web UI, a person logs in there and approves, and
//! the client receives the signed event under its request id; a refusal reaches the
//! client as an error. Over HTTP RPC the same request answers 403 with the link until it
//! is approved through the JSON API. Bad decisions change nothing. And a person approves
//! in a real headless Chromium (see `common::browser`), with screenshots.

use crate::common;

use std::sync::Arc;
use std::time::Duration;

use common::browser::{self, browser, screenshot_dir};
use common::pages::{csrf, get, html, login};
use common::server::{Account, Served, PASSWORD};
use keycast_core::nostr::{EventBuilder, Keys, Url};
use nostr_connect::prelude::{
    AuthUrlHandler, BoxedFuture, NostrConnect, NostrConnectURI, NostrSigner,
};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tokio::sync::mpsc;

const ASK_EACH_TIME: &str = r#"[{"type":"full_access"},{"type":"require_approval"}]"#;

/// An authorization whose every request waits for approval: (id, bunker URI, RPC token).
async fn ask_each_time(served: &Served, account: &Account) -> (String, String, String) {
    let permissions: Value = serde_json::from_str(ASK_EACH_TIME).expect("json");
    let (status, auth) = served
        .json(
            Method::POST,
            "/api/authorizations",
            Some(&account.session),
            Some(json!({"key_id": account.key_id, "label": "careful app", "permissions": permissions})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{auth}");
    let s = |k: &str| auth[k].as_str().expect(k).to_owned();
    (s("id"), s("bunker_uri"), s("token"))
}

async fn waiting(served: &Served, account: &Account, id: &str) -> Vec<Value> {
    let (status, list) = served
        .json(
            Method::GET,
            &format!("/api/authorizations/{id}/approvals"),
            Some(&account.session),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{list}");
    list["approvals"].as_array().expect("list").clone()
}

async fn rpc_sign(served: &Served, token: &str, content: &str) -> (StatusCode, Value) {
    let template =
        json!({"kind": 1, "content": content, "tags": [], "created_at": 1_700_000_000}).to_string();
    served
        .json(
            Method::POST,
            "/api/nostr",
            Some(token),
            Some(json!({"method": "sign_event", "params": [template]})),
        )
        .await
}

/// Hands every `auth_url` the client is given to the test, as a browser would open it.
#[derive(Debug)]
struct Opens(mpsc::UnboundedSender<Url>);

impl AuthUrlHandler for Opens {
    fn on_auth_url(&self, auth_url: Url) -> BoxedFuture<'_, nostr_connect::prelude::Result<()>> {
        // The test holds the receiver until the end.
        let _ = self.0.send(auth_url);
        Box::pin(async { Ok(()) })
    }
}

/// The next `auth_url` the client was given.
async fn next_auth_url(opens: &mut mpsc::UnboundedReceiver<Url>) -> Url {
    tokio::time::timeout(Duration::from_secs(20), opens.recv())
        .await
        .expect("an auth_url in time")
        .expect("auth_url")
}

/// The person: opens the approval page with its session and presses `decision` on the
/// one waiting request.
async fn decide_in_the_ui(served: &Served, cookie: &str, url: &Url, decision: &str) {
    let page = get(served, url.path(), cookie, 200).await;
    assert!(page.contains("careful app"), "{page}");
    let request = page
        .split("name=\"request\" value=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .expect("a waiting request")
        .to_owned();
    let fields = [
        ("csrf", csrf(&page)),
        ("request", request),
        ("decision", decision.to_owned()),
    ];
    let fields: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (status, body, location) = html(
        served,
        Method::POST,
        url.path(),
        Some(cookie),
        Some(&fields),
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{body}");
    assert_eq!(location.as_deref(), Some(url.path()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nip46_client_gets_its_signature_once_a_person_approves_in_the_web_ui() {
    let served = Served::start().await;
    let ann = served.account("ann@example.org").await;
    let (id, uri, _) = ask_each_time(&served, &ann).await;
    let cookie = login(&served, &ann.email).await;

    let (opened, mut opens) = mpsc::unbounded_channel();
    let mut signer = NostrConnect::new(
        NostrConnectURI::parse(&uri).expect("uri"),
        Keys::generate(),
        Duration::from_secs(30),
        None,
    )
    .expect("client");
    signer.auth_url_handler(Opens(opened));
    let signer = Arc::new(signer);
    let user = signer
        .get_public_key()
        .await
        .expect("get_public_key needs no approval");
    assert_eq!(user.to_hex(), ann.pubkey);

    // Approved: the client's one call returns the signed event.
    let client = signer.clone();
    let signing = tokio::spawn(async move {
        let unsigned = EventBuilder::text_note("approved by a person").build(user);
        client.sign_event(unsigned).await
    });
    let url = next_auth_url(&mut opens).await;
    assert_eq!(url.path(), format!("/ui/approvals/{id}"));
    let sessions = get(&served, "/ui", &cookie, 200).await;
    assert!(
        sessions.contains(&format!("/ui/approvals/{id}")),
        "the sessions page points at it"
    );
    decide_in_the_ui(&served, &cookie, &url, "approve").await;
    let event = tokio::time::timeout(Duration::from_secs(20), signing)
        .await
        .expect("the result in time")
        .expect("task")
        .expect("signed after approval");
    event.verify().expect("valid signature");
    assert_eq!(event.content, "approved by a person");
    assert!(get(&served, url.path(), &cookie, 200)
        .await
        .contains("none-waiting"));

    // Refused: the client gets an error, not a signature.
    let client = signer.clone();
    let refused = tokio::spawn(async move {
        let unsigned = EventBuilder::text_note("refused by a person").build(user);
        client.sign_event(unsigned).await
    });
    let url = next_auth_url(&mut opens).await;
    decide_in_the_ui(&served, &cookie, &url, "refuse").await;
    let result = tokio::time::timeout(Duration::from_secs(20), refused)
        .await
        .expect("the answer in time")
        .expect("task");
    assert!(
        result.is_err(),
        "a refused request is not signed: {result:?}"
    );
    Arc::into_inner(signer)
        .expect("the calls are done")
        .shutdown()
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_http_rpc_a_request_waits_until_approved_and_bad_decisions_change_nothing() {
    let served = Served::start().await;
    let ann = served.account("ann@example.org").await;
    let bob = served.account("bob@example.org").await;
    let (id, _, token) = ask_each_time(&served, &ann).await;

    let (status, answer) = rpc_sign(&served, &token, "hello").await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{answer}");
    assert_eq!(answer["error"]["code"], "needs_approval", "{answer}");
    assert!(
        answer["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains(&format!("/ui/approvals/{id}"))),
        "the answer carries the link: {answer}"
    );
    rpc_sign(&served, &token, "hello").await;
    let list = waiting(&served, &ann, &id).await;
    assert_eq!(
        list.len(),
        1,
        "the same request asked twice waits once: {list:?}"
    );
    assert!(
        list[0]["summary"]
            .as_str()
            .is_some_and(|s| s.contains("hello")),
        "{list:?}"
    );
    let request = list[0]["id"].as_str().expect("id").to_owned();
    let decide_path = format!("/api/authorizations/{id}/approvals/{request}");

    // Bad decisions: nothing decided.
    let other = format!("/api/authorizations/{id}/approvals/{}", "0".repeat(64));
    for (who, path, body, want) in [
        (
            &bob.session,
            decide_path.clone(),
            json!({"approve": true}),
            StatusCode::NOT_FOUND,
        ),
        (
            &ann.session,
            other,
            json!({"approve": true}),
            StatusCode::NOT_FOUND,
        ),
        (
            &ann.session,
            format!("/api/authorizations/{id}/approvals/zz"),
            json!({"approve": true}),
            StatusCode::NOT_FOUND,
        ),
        (
            &ann.session,
            decide_path.clone(),
            json!({"approve": "yes"}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            &ann.session,
            decide_path.clone(),
            json!({}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            &ann.session,
            "/api/authorizations/not-an-id/approvals/x".into(),
            json!({"approve": true}),
            StatusCode::NOT_FOUND,
        ),
    ] {
        let (status, answer) = served
            .json(Method::POST, &path, Some(who), Some(body.clone()))
            .await;
        assert_eq!(status, want, "{path} {body}: {answer}");
        assert!(answer["error"]["code"].is_string(), "{answer}");
    }
    let (status, _) = served
        .json(
            Method::GET,
            &format!("/api/authorizations/{id}/approvals"),
            Some(&bob.session),
            None,
        )
        .await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "another account cannot see what waits"
    );
    let cookie = login(&served, &bob.email).await;
    get(&served, &format!("/ui/approvals/{id}"), &cookie, 404).await;
    let ann_cookie = login(&served, &ann.email).await;
    let page = get(&served, &format!("/ui/approvals/{id}"), &ann_cookie, 200).await;
    for fields in [
        vec![
            ("csrf", "wrong"),
            ("request", request.as_str()),
            ("decision", "approve"),
        ],
        vec![
            ("csrf", csrf(&page).leak()),
            ("request", request.as_str()),
            ("decision", "maybe"),
        ],
        vec![
            ("csrf", csrf(&page).leak()),
            ("request", "ab"),
            ("decision", "approve"),
        ],
    ] {
        let (status, body, _) = html(
            &served,
            Method::POST,
            &format!("/ui/approvals/{id}"),
            Some(&ann_cookie),
            Some(&fields),
        )
        .await;
        assert!(status.is_client_error(), "{fields:?}: {status} {body}");
    }
    assert_eq!(waiting(&served, &ann, &id).await.len(), 1, "still waiting");
    assert_eq!(
        rpc_sign(&served, &token, "hello").await.0,
        StatusCode::FORBIDDEN
    );

    // Approved once: the same request signs, once.
    let (status, answer) = served
        .json(
            Method::POST,
            &decide_path,
            Some(&ann.session),
            Some(json!({"approve": true})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let (status, signed) = rpc_sign(&served, &token, "hello").await;
    assert_eq!(status, StatusCode::OK, "{signed}");
    assert_eq!(
        rpc_sign(&served, &token, "hello").await.0,
        StatusCode::FORBIDDEN,
        "used once"
    );
    let (status, _) = served
        .json(
            Method::POST,
            &decide_path,
            Some(&ann.session),
            Some(json!({"approve": true})),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::OK,
        "asked again, it waits again under the same id"
    );

    // Refused: denied, with the reason.
    rpc_sign(&served, &token, "no").await;
    let list = waiting(&served, &ann, &id).await;
    let no = list
        .iter()
        .find(|w| {
            w["summary"]
                .as_str()
                .is_some_and(|s| s.contains("content: no;"))
        })
        .expect("waits");
    let path = format!(
        "/api/authorizations/{id}/approvals/{}",
        no["id"].as_str().expect("id")
    );
    served
        .json(
            Method::POST,
            &path,
            Some(&ann.session),
            Some(json!({"approve": false})),
        )
        .await;
    let (status, answer) = rpc_sign(&served, &token, "no").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(answer["error"]["code"], "denied", "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_approves_a_waiting_request_in_chromium() {
    let Some((dir, chromium)) = browser() else {
        return;
    };
    let served = Served::start().await;
    let ann = served.account("ann@example.org").await;
    let (id, _, token) = ask_each_time(&served, &ann).await;
    let content = "posted after a click in Chromium";
    assert_eq!(
        rpc_sign(&served, &token, content).await.0,
        StatusCode::FORBIDDEN
    );

    let shots = screenshot_dir("approvals");
    let args = vec![
        served.env.url(""),
        ann.email.clone(),
        PASSWORD.to_owned(),
        shots.display().to_string(),
        id.clone(),
        content.to_owned(),
    ];
    let steps = [
        "waiting notice",
        "waiting table",
        "request summary",
        "approve button",
        "refuse button",
        "nothing waiting",
    ];
    browser::walk(dir, chromium, "approvals.mjs", args, &steps).await;
    // Approved in the browser, so the same request now signs, once.
    let (status, signed) = rpc_sign(&served, &token, content).await;
    assert_eq!(status, StatusCode::OK, "{signed}");
    assert_eq!(
        rpc_sign(&served, &token, content).await.0,
        StatusCode::FORBIDDEN
    );
}
