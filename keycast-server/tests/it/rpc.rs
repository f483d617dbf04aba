//! HTTP RPC (`POST /api/nostr`) in-process: every method, the token rules, and bad input
//! answered with JSON errors (never a 500) that change nothing.

use crate::common;

use std::collections::BTreeSet;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::inproc::send;
use keycast_core::nostr::nips::{nip04, nip44};
use keycast_core::nostr::{Event, JsonUtil, Keys, Timestamp};
use keycast_core::{KeyKind, Label, NewAuthorization, Permission, Policy, User, Username};
use keycast_server::services::{default_tenant, Services};
use keycast_server::{AppState, Config};
use serde_json::{json, Value};

struct Fixture {
    state: AppState,
    token: String,
    user_key: keycast_core::nostr::PublicKey,
    auth: keycast_core::AuthorizationId,
    dir: std::path::PathBuf,
}

async fn fixture(permissions: Vec<Permission>) -> Fixture {
    let dir = std::env::temp_dir().join(format!("keycast-rpc-test-{}", uuid::Uuid::new_v4()));
    let d = dir.display().to_string();
    let config =
        Config::load(None, |k| (k == "KEYCAST_DATA_DIR").then(|| d.clone())).expect("config");
    let s = Services::open(&config, None).await.expect("services");
    let user = User::new(
        default_tenant(),
        Username::parse("alice").expect("name"),
        None,
    );
    s.store.create_user(&user).await.expect("user");
    let key = s
        .custody
        .create_key(keycast_core::NewKey::generate(
            default_tenant(),
            keycast_core::Holder::User(user.id),
            KeyKind::User,
            Label::parse("k").expect("l"),
        ))
        .await
        .expect("key");
    let policy =
        Policy::new(default_tenant(), Label::parse("p").expect("l"), permissions).expect("policy");
    s.store.insert_policy(&policy).await.expect("policy");
    let (auth, _) = s
        .custody
        .create_authorization(NewAuthorization {
            tenant_id: default_tenant(),
            user_id: user.id,
            key_id: key.id,
            policy_id: policy.id,
            label: Label::parse("app").expect("l"),
            relays: vec![],
            expires_at: None,
        })
        .await
        .expect("authorization");
    let token = s
        .issue_token(&auth, None)
        .await
        .expect("token")
        .expose()
        .to_owned();
    Fixture {
        state: AppState::new(s, None),
        token,
        user_key: key.pubkey,
        auth: auth.id,
        dir,
    }
}

impl Fixture {
    async fn call(
        &self,
        token: Option<&str>,
        body: Body,
        content_type: &str,
    ) -> (StatusCode, Value) {
        let mut request = Request::post("/api/nostr").header("content-type", content_type);
        if let Some(t) = token {
            request = request.header("authorization", format!("Bearer {t}"));
        }
        let (status, value) = send(&self.state, request.body(body).expect("request")).await;
        assert!(!value.is_null(), "{status}: the answer is JSON");
        (status, value)
    }

    async fn rpc(&self, method: &str, params: Value) -> (StatusCode, Value) {
        let body = json!({"method": method, "params": params}).to_string();
        self.call(Some(&self.token), Body::from(body), "application/json")
            .await
    }

    async fn result(&self, method: &str, params: Value) -> String {
        let (status, body) = self.rpc(method, params).await;
        assert_eq!(status, StatusCode::OK, "{method}: {body}");
        body["result"].as_str().expect("result string").to_owned()
    }
}

fn is_error(body: &Value) -> bool {
    body["error"]["code"].is_string() && body["error"]["message"].is_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_method_over_http() {
    let f = fixture(vec![Permission::FullAccess]).await;
    assert_eq!(
        f.result("get_public_key", json!([])).await,
        f.user_key.to_hex()
    );
    assert_eq!(f.result("ping", json!([])).await, "pong");

    let template = json!({"kind": 1, "content": "über HTTP ✓", "tags": [["t", "x"]], "created_at": 1_700_000_000});
    let signed = f.result("sign_event", json!([template.to_string()])).await;
    let event = Event::from_json(&signed).expect("event");
    event.verify().expect("valid signature");
    assert_eq!(event.pubkey, f.user_key);
    assert_eq!(event.content, "über HTTP ✓");
    assert_eq!(event.created_at, Timestamp::from(1_700_000_000));

    let peer = Keys::generate();
    let ct = f
        .result(
            "nip44_encrypt",
            json!([peer.public_key().to_hex(), "secret ✓"]),
        )
        .await;
    assert_eq!(
        nip44::decrypt(peer.secret_key(), &f.user_key, &ct).expect("decrypt"),
        "secret ✓"
    );
    let back =
        nip44::encrypt(peer.secret_key(), &f.user_key, "back", nip44::Version::V2).expect("enc");
    assert_eq!(
        f.result("nip44_decrypt", json!([peer.public_key().to_hex(), back]))
            .await,
        "back"
    );
    let ct = f
        .result("nip04_encrypt", json!([peer.public_key().to_hex(), "old"]))
        .await;
    assert_eq!(
        nip04::decrypt(peer.secret_key(), &f.user_key, &ct).expect("decrypt"),
        "old"
    );
    let back = nip04::encrypt(peer.secret_key(), &f.user_key, "back04").expect("enc");
    assert_eq!(
        f.result("nip04_decrypt", json!([peer.public_key().to_hex(), back]))
            .await,
        "back04"
    );

    let metrics = f.state.counters.snapshot();
    assert_eq!(metrics.rpc_requests, 7);
    assert_eq!(metrics.rpc_auth_errors, 0);
    std::fs::remove_dir_all(&f.dir).expect("cleanup");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_checked_and_revocation_is_immediate() {
    let f = fixture(vec![Permission::FullAccess]).await;
    let ping = || Body::from(r#"{"method":"get_public_key","params":[]}"#);
    for token in [
        None,
        Some(""),
        Some("not-a-token"),
        Some(&"a".repeat(300)[..]),
    ] {
        let (status, body) = f.call(token, ping(), "application/json").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{token:?}: {body}");
        assert!(is_error(&body), "{body}");
    }
    // An expired token.
    let auth = f
        .state
        .services
        .custody
        .authorization(f.auth)
        .await
        .expect("auth");
    let old = f
        .state
        .services
        .issue_token(&auth, Some(Timestamp::from(Timestamp::now().as_secs() - 1)))
        .await
        .expect("token");
    let (status, body) = f.call(Some(old.expose()), ping(), "application/json").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"]["code"], "expired");

    assert_eq!(f.rpc("get_public_key", json!([])).await.0, StatusCode::OK);
    f.state
        .services
        .custody
        .revoke_authorization(f.auth)
        .await
        .expect("revoke");
    let (status, body) = f.rpc("get_public_key", json!([])).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(body["error"]["code"], "revoked");
    // `ping` gets the same checks: a revoked token is not alive.
    let (status, body) = f.rpc("ping", json!([])).await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "ping with a revoked token: {body}"
    );
    assert_eq!(body["error"]["code"], "revoked");
    assert_eq!(f.state.counters.snapshot().rpc_auth_errors, 7);
    std::fs::remove_dir_all(&f.dir).expect("cleanup");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ping_answers_only_for_a_live_authorization() {
    let f = fixture(vec![Permission::FullAccess]).await;
    assert_eq!(f.result("ping", json!([])).await, "pong");
    let key = f
        .state
        .services
        .store
        .get_authorization(f.auth)
        .await
        .expect("auth")
        .key_id;
    f.state
        .services
        .custody
        .delete_key(key)
        .await
        .expect("delete");
    let (status, body) = f.rpc("ping", json!([])).await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "ping after its key was deleted: {body}"
    );
    std::fs::remove_dir_all(&f.dir).expect("cleanup");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_a_json_error_never_a_500() {
    let f = fixture(vec![Permission::AllowedKinds {
        kinds: BTreeSet::from([1]),
    }])
    .await;
    let t = Some(f.token.as_str());
    let huge = format!(
        r#"{{"method":"ping","params":["{}"]}}"#,
        "x".repeat(300 * 1024)
    );
    let cases: Vec<(Body, &str, StatusCode)> = vec![
        (
            Body::from("not json"),
            "application/json",
            StatusCode::BAD_REQUEST,
        ),
        (
            Body::from("{}"),
            "application/json",
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            Body::from(r#"{"method":"ping","params":[],"extra":1}"#),
            "application/json",
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            Body::from(r#"{"method":5}"#),
            "application/json",
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            Body::from(r#"{"method":"ping"}"#),
            "text/plain",
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
        (
            Body::from(huge),
            "application/json",
            StatusCode::PAYLOAD_TOO_LARGE,
        ),
        (
            Body::from(r#"{"method":"teleport","params":[]}"#),
            "application/json",
            StatusCode::BAD_REQUEST,
        ),
        (
            Body::from(r#"{"method":"connect","params":[""]}"#),
            "application/json",
            StatusCode::BAD_REQUEST,
        ),
        (
            Body::from(r#"{"method":"sign_event","params":[5]}"#),
            "application/json",
            StatusCode::BAD_REQUEST,
        ),
        (
            Body::from(r#"{"method":"sign_event","params":["{\"kind\":\"x\"}"]}"#),
            "application/json",
            StatusCode::BAD_REQUEST,
        ),
        (
            Body::from(r#"{"method":"nip44_encrypt","params":["zz","x"]}"#),
            "application/json",
            StatusCode::BAD_REQUEST,
        ),
        (
            Body::from(
                r#"{"method":"nip44_decrypt","params":["79be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798","%%%"]}"#,
            ),
            "application/json",
            StatusCode::BAD_REQUEST,
        ),
        (
            Body::from(
                r#"{"method":"sign_event","params":["{\"kind\":7,\"content\":\"\",\"tags\":[]}"]}"#,
            ),
            "application/json",
            StatusCode::FORBIDDEN,
        ),
    ];
    for (body, content_type, expected) in cases {
        let (status, value) = f.call(t, body, content_type).await;
        assert_eq!(status, expected, "{value}");
        assert!(is_error(&value), "{value}");
    }
    // Still serving.
    assert_eq!(f.rpc("ping", json!([])).await.0, StatusCode::OK);
    std::fs::remove_dir_all(&f.dir).expect("cleanup");
}
