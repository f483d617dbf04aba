//! Policies over HTTP: CRUD with the core permission types, edits that apply to running
//! authorizations at once, optimistic versions, isolation and bad input.

use crate::common;

use axum::http::StatusCode;
use common::inproc::{is_error, sign, Api};
use serde_json::{json, Value};

fn kinds(list: &[u16]) -> Value {
    json!([{"type": "allowed_kinds", "kinds": list}])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policies_govern_authorizations_and_edits_apply_at_once() {
    let api = Api::new(&[]).await;
    let ann = api.account("ann@example.org").await;
    let a = Some(ann.as_str());
    let (status, policy) = api
        .call(
            "POST",
            "/api/policies",
            a,
            Some(json!({"name": "notes only", "permissions": kinds(&[1])})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{policy}");
    let pid = policy["id"].as_str().expect("id").to_owned();
    assert_eq!(policy["permissions"], kinds(&[1]));
    let (_, list) = api.call("GET", "/api/policies", a, None).await;
    assert_eq!(list["policies"].as_array().expect("list").len(), 1);
    let (status, got) = api
        .call("GET", &format!("/api/policies/{pid}"), a, None)
        .await;
    assert_eq!(
        (status, &got["name"]),
        (StatusCode::OK, &json!("notes only"))
    );

    let (_, key) = api.call("POST", "/api/keys", a, Some(json!({}))).await;
    let (status, auth) = api
        .call(
            "POST",
            "/api/authorizations",
            a,
            Some(json!({"key_id": key["id"], "policy_id": pid})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{auth}");
    let token = auth["token"].as_str().expect("token").to_owned();
    assert_eq!(sign(&api, &token, 1).await, StatusCode::OK);
    assert_eq!(sign(&api, &token, 7).await, StatusCode::FORBIDDEN);

    let (status, updated) = api
        .call(
            "PUT",
            &format!("/api/policies/{pid}"),
            a,
            Some(json!({"name": "notes and likes", "permissions": kinds(&[1, 7]), "version": 1})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{updated}");
    assert_eq!(updated["version"], 2);
    assert_eq!(
        sign(&api, &token, 7).await,
        StatusCode::OK,
        "the edit applies at once"
    );
    let (status, stale) = api
        .call(
            "PUT",
            &format!("/api/policies/{pid}"),
            a,
            Some(json!({"name": "x", "permissions": kinds(&[1]), "version": 1})),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{stale}");

    let (status, _) = api
        .call("DELETE", &format!("/api/policies/{pid}"), a, None)
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "in use");
    let (_, spare) = api
        .call(
            "POST",
            "/api/policies",
            a,
            Some(json!({"name": "spare", "permissions": [{"type": "decrypt_only"}]})),
        )
        .await;
    let spare = spare["id"].as_str().expect("id");
    let (status, _) = api
        .call("DELETE", &format!("/api/policies/{spare}"), a, None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = api
        .call("GET", &format!("/api/policies/{spare}"), a, None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_account_cannot_read_edit_delete_or_use_a_policy() {
    let api = Api::new(&[]).await;
    let ann = api.account("ann@example.org").await;
    let bob = api.account("bob@example.org").await;
    let (_, policy) = api
        .call(
            "POST",
            "/api/policies",
            Some(&ann),
            Some(json!({"name": "p", "permissions": kinds(&[1])})),
        )
        .await;
    let pid = policy["id"].as_str().expect("id").to_owned();
    let b = Some(bob.as_str());
    assert_eq!(
        api.call("GET", &format!("/api/policies/{pid}"), b, None)
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    let body = json!({"name": "mine", "permissions": [{"type": "full_access"}]});
    assert_eq!(
        api.call("PUT", &format!("/api/policies/{pid}"), b, Some(body))
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        api.call("DELETE", &format!("/api/policies/{pid}"), b, None)
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    let (_, key) = api.call("POST", "/api/keys", b, Some(json!({}))).await;
    let (status, _) = api
        .call(
            "POST",
            "/api/authorizations",
            b,
            Some(json!({"key_id": key["id"], "policy_id": pid})),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "bob cannot attach ann's policy"
    );
    let (_, list) = api.call("GET", "/api/policies", b, None).await;
    assert!(list["policies"].as_array().expect("list").is_empty());
    let (_, mine) = api
        .call("GET", &format!("/api/policies/{pid}"), Some(&ann), None)
        .await;
    assert_eq!(mine["version"], 1, "unchanged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_policies_are_json_errors() {
    let api = Api::new(&[]).await;
    let ann = api.account("ann@example.org").await;
    let cases = vec![
        (
            json!({"name": "p", "permissions": []}),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({"name": "", "permissions": [{"type": "full_access"}]}),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({"name": "p", "permissions": [{"type": "teleport"}]}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!({"name": "p", "permissions": [{"type": "allowed_kinds", "kinds": [70000]}]}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!({"name": "p", "permissions": [{"type": "content_filter", "deny_patterns": ["(unclosed"]}]}),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({"name": "p", "permissions": [{"type": "rate_limit", "per_minute": 0}]}),
            StatusCode::BAD_REQUEST,
        ),
        (json!({"name": "p"}), StatusCode::UNPROCESSABLE_ENTITY),
    ];
    for (body, expected) in cases {
        let (status, answer) = api
            .call("POST", "/api/policies", Some(&ann), Some(body.clone()))
            .await;
        assert_eq!(status, expected, "{body}: {answer}");
        assert!(is_error(&answer), "{answer}");
    }
    let (_, list) = api.call("GET", "/api/policies", Some(&ann), None).await;
    assert!(
        list["policies"].as_array().expect("list").is_empty(),
        "nothing created"
    );
}
