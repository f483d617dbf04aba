//! App authorizations over HTTP: create (bunker URI and RPC token), use, list, revoke;
//! isolation between accounts; bad input.

use crate::common;

use axum::http::StatusCode;
use common::inproc::{is_error, sign, Api};
use keycast_nip46::BunkerUri;
use serde_json::json;

async fn key_of(api: &Api, session: &str) -> String {
    let (_, key) = api
        .call("POST", "/api/keys", Some(session), Some(json!({})))
        .await;
    key["id"].as_str().expect("key id").to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_use_list_and_revoke() {
    let api = Api::new(&[("KEYCAST_RELAYS", "wss://relay.example")]).await;
    let ann = api.account("ann@example.org").await;
    let key = key_of(&api, &ann).await;
    let (status, created) = api
        .call(
            "POST",
            "/api/authorizations",
            Some(&ann),
            Some(json!({"key_id": key, "label": "notes app", "permissions": [{"type": "allowed_kinds", "kinds": [1]}]})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let uri = BunkerUri::parse(created["bunker_uri"].as_str().expect("uri")).expect("bunker uri");
    assert_eq!(uri.signer.to_hex(), created["bunker_pubkey"]);
    assert_eq!(
        uri.relays[0].as_str_without_trailing_slash(),
        "wss://relay.example"
    );
    assert!(uri.secret.is_some());
    let token = created["token"].as_str().expect("token").to_owned();

    assert_eq!(sign(&api, &token, 1).await, StatusCode::OK);
    assert_eq!(
        sign(&api, &token, 7).await,
        StatusCode::FORBIDDEN,
        "the policy applies"
    );

    let (status, list) = api
        .call("GET", "/api/authorizations", Some(&ann), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    let session = &list["authorizations"][0];
    assert_eq!(session["label"], "notes app");
    assert!(session["revoked_at"].is_null());
    assert_eq!(
        session["signatures"], 1,
        "one allowed sign, one refused: {session}"
    );
    let last = session["last_used_at"].as_u64().expect("last activity");
    let now = keycast_core::nostr::Timestamp::now().as_secs();
    assert!(last <= now && last + 60 > now, "{last} vs {now}");
    assert_eq!(sign(&api, &token, 1).await, StatusCode::OK);
    let (_, list) = api
        .call("GET", "/api/authorizations", Some(&ann), None)
        .await;
    assert_eq!(list["authorizations"][0]["signatures"], 2, "{list}");

    let id = created["id"].as_str().expect("id");
    let (status, revoked) = api
        .call(
            "DELETE",
            &format!("/api/authorizations/{id}"),
            Some(&ann),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{revoked}");
    assert!(revoked["revoked_at"].is_u64());
    assert_eq!(
        sign(&api, &token, 1).await,
        StatusCode::UNAUTHORIZED,
        "revoked at once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_account_cannot_use_or_revoke_anothers() {
    let api = Api::new(&[]).await;
    let ann = api.account("ann@example.org").await;
    let bob = api.account("bob@example.org").await;
    let ann_key = key_of(&api, &ann).await;
    let (status, _) = api
        .call(
            "POST",
            "/api/authorizations",
            Some(&bob),
            Some(json!({"key_id": ann_key})),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "bob cannot authorize apps on ann's key"
    );

    let (_, created) = api
        .call(
            "POST",
            "/api/authorizations",
            Some(&ann),
            Some(json!({"key_id": ann_key})),
        )
        .await;
    let id = created["id"].as_str().expect("id");
    let (status, _) = api
        .call(
            "DELETE",
            &format!("/api/authorizations/{id}"),
            Some(&bob),
            None,
        )
        .await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "bob cannot revoke ann's authorization"
    );
    let (_, list) = api
        .call("GET", "/api/authorizations", Some(&bob), None)
        .await;
    assert!(list["authorizations"].as_array().expect("list").is_empty());
    // Ann's token still works: bob changed nothing.
    let token = created["token"].as_str().expect("token");
    assert_eq!(sign(&api, token, 1).await, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_authorization_requests_are_json_errors() {
    let api = Api::new(&[]).await;
    let ann = api.account("ann@example.org").await;
    let key = key_of(&api, &ann).await;
    let cases = vec![
        (json!({"key_id": "nope"}), StatusCode::NOT_FOUND),
        (
            json!({"key_id": key, "permissions": []}),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({"key_id": key, "permissions": [{"type": "teleport"}]}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!({"key_id": key, "permissions": [{"type": "allowed_kinds", "kinds": []}]}),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({"key_id": key, "expires_at": 1}),
            StatusCode::BAD_REQUEST,
        ),
        (json!({"key_id": key, "label": ""}), StatusCode::BAD_REQUEST),
        (
            json!({"key_id": key, "scope": "all"}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (json!({}), StatusCode::UNPROCESSABLE_ENTITY),
    ];
    for (body, expected) in cases {
        let (status, answer) = api
            .call(
                "POST",
                "/api/authorizations",
                Some(&ann),
                Some(body.clone()),
            )
            .await;
        assert_eq!(status, expected, "{body}: {answer}");
        assert!(is_error(&answer), "{answer}");
    }
    let (_, list) = api
        .call("GET", "/api/authorizations", Some(&ann), None)
        .await;
    assert!(
        list["authorizations"].as_array().expect("list").is_empty(),
        "nothing created"
    );
    let (status, _) = api
        .call("DELETE", "/api/authorizations/not-an-id", Some(&ann), None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}
