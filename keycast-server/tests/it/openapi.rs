//! `/api/openapi.json` describes the router, and `/.well-known/nostr.json` the service.

use crate::common;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::inproc::{send, Api};
use serde_json::Value;

async fn document(api: &Api) -> Value {
    let (status, doc) = api.call("GET", "/api/openapi.json", None, None).await;
    assert_eq!(status, StatusCode::OK);
    doc
}

#[tokio::test]
async fn the_document_lists_every_endpoint() {
    let api = Api::new(&[]).await;
    let doc = document(&api).await;
    assert!(doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")));
    let paths = doc["paths"].as_object().expect("paths");
    for (path, method) in [
        ("/health", "get"),
        ("/healthz/startup", "get"),
        ("/healthz/ready", "get"),
        ("/metrics", "get"),
        ("/api/metrics", "get"),
        ("/.well-known/nostr.json", "get"),
        ("/api/nostr", "post"),
        ("/api/auth/register", "post"),
        ("/api/auth/login", "post"),
        ("/api/auth/logout", "post"),
        ("/api/me", "get"),
        ("/api/keys", "get"),
        ("/api/keys", "post"),
        ("/api/keys/{id}", "patch"),
        ("/api/keys/{id}", "delete"),
        ("/api/keys/{id}/danger/export", "post"),
        ("/api/policies", "get"),
        ("/api/policies", "post"),
        ("/api/policies/{id}", "get"),
        ("/api/policies/{id}", "put"),
        ("/api/policies/{id}", "delete"),
        ("/api/authorizations", "get"),
        ("/api/authorizations", "post"),
        ("/api/authorizations/{id}", "delete"),
        ("/api/auth/email/verify/request", "post"),
        ("/api/auth/email/verify", "post"),
        ("/api/auth/password/forgot", "post"),
        ("/api/auth/password/reset", "post"),
        ("/api/auth/confirm/request", "post"),
        ("/api/keys/{id}/danger/replace", "post"),
        ("/api/authorizations/{id}/approvals", "get"),
        ("/api/authorizations/{id}/approvals/{request}", "post"),
        ("/api/teams", "get"),
        ("/api/teams", "post"),
        ("/api/teams/{id}", "get"),
        ("/api/teams/{id}/members", "put"),
        ("/api/teams/{id}/members/{user_id}", "delete"),
        ("/api/teams/{id}/keys", "get"),
        ("/api/teams/{id}/keys", "post"),
        ("/api/teams/{id}/keys/{key_id}", "delete"),
        ("/api/teams/{id}/policies", "get"),
        ("/api/teams/{id}/policies", "post"),
        ("/api/teams/{id}/policies/{policy_id}", "put"),
        ("/api/teams/{id}/policies/{policy_id}", "delete"),
        ("/api/teams/{id}/authorizations", "get"),
        ("/api/teams/{id}/authorizations", "post"),
        (
            "/api/teams/{id}/authorizations/{authorization_id}",
            "delete",
        ),
    ] {
        assert!(
            paths.get(path).and_then(|p| p.get(method)).is_some(),
            "{method} {path} is not documented"
        );
    }
    for scheme in ["session", "token", "nip98"] {
        assert!(
            doc["components"]["securitySchemes"][scheme].is_object(),
            "{scheme}"
        );
    }
}

/// Every documented operation is routed: none reaches the fallback's "no such endpoint".
#[tokio::test]
async fn every_documented_operation_is_served() {
    let api = Api::new(&[]).await;
    let doc = document(&api).await;
    let paths = doc["paths"].as_object().expect("paths");
    let zero_id = "00000000-0000-0000-0000-000000000000";
    for (path, operations) in paths {
        for method in operations.as_object().expect("operations").keys() {
            let uri = path.replace("{id}", zero_id);
            let request = Request::builder()
                .method(method.to_uppercase().as_str())
                .uri(&uri)
                .header("content-type", "application/json")
                .body(Body::from("{}"))
                .expect("request");
            let (status, body) = send(&api.state, request).await;
            assert!(
                !(status == StatusCode::NOT_FOUND
                    && body["error"]["message"] == "no such endpoint")
                    && status != StatusCode::METHOD_NOT_ALLOWED,
                "{method} {path} is documented but not routed ({status})"
            );
            assert!(status.as_u16() < 500, "{method} {path}: {status} {body}");
        }
    }
}

#[tokio::test]
async fn discovery_names_the_service_and_leaves_out_nip46_when_it_is_off() {
    let api = Api::new(&[]).await;
    let request = |uri: &str| {
        Request::builder()
            .uri(uri)
            .header("origin", "https://some-app.example")
            .body(Body::empty())
            .expect("request")
    };
    let response = keycast_server::app(api.state.clone());
    let answer = tower::ServiceExt::oneshot(response, request("/.well-known/nostr.json"))
        .await
        .expect("response");
    assert_eq!(answer.status(), StatusCode::OK);
    assert_eq!(
        answer.headers()["access-control-allow-origin"],
        "*",
        "NIP-05 documents must be readable from any origin"
    );
    let (_, doc) = send(&api.state, request("/.well-known/nostr.json?name=_")).await;
    let identity = api.state.services.identity.to_hex();
    assert_eq!(doc["names"]["_"], identity.as_str());
    assert!(doc.get("nip46").is_none(), "NIP-46 is off here: {doc}");
    let (status, doc) = send(&api.state, request("/.well-known/nostr.json?name=bob")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(doc["names"], serde_json::json!({}));
}

#[tokio::test]
async fn the_identity_key_is_the_same_after_a_restart() {
    let api = Api::new(&[]).await;
    let first = api.state.services.identity;
    let again = keycast_server::services::Services::open(&api.state.services.config, None)
        .await
        .expect("reopen");
    assert_eq!(again.identity, first);
}
