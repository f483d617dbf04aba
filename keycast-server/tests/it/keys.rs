//! The account's keys over HTTP: generate, import (nsec, hex, ncryptsec), list, rename,
//! delete (which takes the key's apps with it) and the audited export; isolation between
//! accounts; bad input.

use crate::common;

use axum::http::StatusCode;
use common::inproc::{is_error, sign, Api};
use keycast_core::nostr::nips::nip49::{EncryptedSecretKey, KeySecurity};
use keycast_core::nostr::{FromBech32, Keys, ToBech32};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generate_import_list_rename_export() {
    let api = Api::new(&[]).await;
    let ann = api.account("ann@example.org").await;
    let t = Some(ann.as_str());

    let (status, generated) = api.call("POST", "/api/keys", t, Some(json!({}))).await;
    assert_eq!(status, StatusCode::CREATED, "{generated}");
    assert_eq!(generated["name"], "main");
    assert!(generated["npub"]
        .as_str()
        .expect("npub")
        .starts_with("npub1"));

    let nsec = Keys::generate();
    let (status, imported) = api
        .call(
            "POST",
            "/api/keys",
            t,
            Some(
                json!({"name": "imported", "secret": nsec.secret_key().to_bech32().expect("nsec")}),
            ),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{imported}");
    assert_eq!(imported["pubkey"], nsec.public_key().to_hex());
    let (status, body) = api
        .call(
            "POST",
            "/api/keys",
            t,
            Some(json!({"secret": nsec.secret_key().to_secret_hex()})),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "the same key twice: {body}");

    let n49 = Keys::generate();
    let ncryptsec = EncryptedSecretKey::new(n49.secret_key(), "pw ✓", 8, KeySecurity::Unknown)
        .expect("nip49")
        .to_bech32()
        .expect("bech32");
    let (status, body) = api
        .call(
            "POST",
            "/api/keys",
            t,
            Some(json!({"ncryptsec": ncryptsec, "password": "pw ✓"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["pubkey"], n49.public_key().to_hex());

    let (status, list) = api.call("GET", "/api/keys", t, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list["keys"].as_array().expect("keys").len(), 3);

    let id = imported["id"].as_str().expect("id");
    let (status, renamed) = api
        .call(
            "PATCH",
            &format!("/api/keys/{id}"),
            t,
            Some(json!({"name": "travel ✈"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{renamed}");
    assert_eq!(renamed["name"], "travel ✈");

    let code = api.export_code(&ann).await;
    let (status, exported) = api
        .call(
            "POST",
            &format!("/api/keys/{id}/danger/export"),
            t,
            Some(json!({"password": "export password", "log_n": 8,
                "account_password": "correct horse battery", "email_code": code})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{exported}");
    assert_eq!(exported["format"], "ncryptsec");
    let back = EncryptedSecretKey::from_bech32(exported["exported"].as_str().expect("ncryptsec"))
        .expect("bech32")
        .decrypt("export password")
        .expect("decrypt");
    assert_eq!(Keys::new(back).public_key(), nsec.public_key());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accounts_cannot_see_or_touch_each_others_keys() {
    let api = Api::new(&[]).await;
    let ann = api.account("ann@example.org").await;
    let bob = api.account("bob@example.org").await;
    let (_, key) = api
        .call("POST", "/api/keys", Some(&ann), Some(json!({})))
        .await;
    let id = key["id"].as_str().expect("id");

    let (status, list) = api.call("GET", "/api/keys", Some(&bob), None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        list["keys"].as_array().expect("keys").is_empty(),
        "bob sees none of ann's keys"
    );
    let (status, _) = api
        .call(
            "PATCH",
            &format!("/api/keys/{id}"),
            Some(&bob),
            Some(json!({"name": "mine"})),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = api
        .call(
            "POST",
            &format!("/api/keys/{id}/danger/export"),
            Some(&bob),
            Some(json!({"password": "long enough pw", "account_password": "correct horse battery", "email_code": "0"})),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = api.call("GET", "/api/keys", None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (_, list) = api.call("GET", "/api/keys", Some(&ann), None).await;
    assert_eq!(list["keys"][0]["name"], "main", "unchanged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_key_requests_are_json_errors_and_change_nothing() {
    let api = Api::new(&[]).await;
    let ann = api.account("ann@example.org").await;
    let t = Some(ann.as_str());
    let (_, key) = api.call("POST", "/api/keys", t, Some(json!({}))).await;
    let id = key["id"].as_str().expect("id").to_owned();
    let cases = vec![
        (
            "POST",
            "/api/keys".to_owned(),
            json!({"secret": "nsec1garbage"}),
            StatusCode::BAD_REQUEST,
        ),
        (
            "POST",
            "/api/keys".to_owned(),
            json!({"secret": "00"}),
            StatusCode::BAD_REQUEST,
        ),
        (
            "POST",
            "/api/keys".to_owned(),
            json!({"ncryptsec": "ncryptsec1xyz"}),
            StatusCode::BAD_REQUEST,
        ),
        (
            "POST",
            "/api/keys".to_owned(),
            json!({"ncryptsec": "ncryptsec1xyz", "password": "p"}),
            StatusCode::BAD_REQUEST,
        ),
        (
            "POST",
            "/api/keys".to_owned(),
            json!({"secret": "x", "ncryptsec": "y", "password": "z"}),
            StatusCode::BAD_REQUEST,
        ),
        (
            "POST",
            "/api/keys".to_owned(),
            json!({"name": ""}),
            StatusCode::BAD_REQUEST,
        ),
        (
            "POST",
            "/api/keys".to_owned(),
            json!({"name": "x".repeat(101)}),
            StatusCode::BAD_REQUEST,
        ),
        (
            "POST",
            "/api/keys".to_owned(),
            json!({"owner": "someone"}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "PATCH",
            format!("/api/keys/{id}"),
            json!({"name": "\u{0}"}),
            StatusCode::BAD_REQUEST,
        ),
        (
            "PATCH",
            "/api/keys/not-a-uuid".to_owned(),
            json!({"name": "x"}),
            StatusCode::NOT_FOUND,
        ),
        (
            "POST",
            format!("/api/keys/{id}/danger/export"),
            json!({"password": "short", "account_password": "correct horse battery", "email_code": "0"}),
            StatusCode::BAD_REQUEST,
        ),
        (
            "POST",
            format!("/api/keys/{id}/danger/export"),
            json!({"password": "long enough pw", "log_n": 19, "account_password": "correct horse battery", "email_code": "0"}),
            StatusCode::BAD_REQUEST,
        ),
    ];
    for (method, path, body, expected) in cases {
        let (status, answer) = api.call(method, &path, t, Some(body.clone())).await;
        assert_eq!(status, expected, "{method} {path} {body}: {answer}");
        assert!(is_error(&answer), "{answer}");
    }
    let (_, list) = api.call("GET", "/api/keys", t, None).await;
    assert_eq!(
        list["keys"].as_array().expect("keys").len(),
        1,
        "nothing was added"
    );
    assert_eq!(list["keys"][0]["name"], "main", "nothing was renamed");
}

/// A key and an authorization on it; the key id and the authorization's RPC token.
async fn key_with_app(api: &Api, session: &str) -> (String, String) {
    let (status, key) = api
        .call("POST", "/api/keys", Some(session), Some(json!({})))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{key}");
    let id = key["id"].as_str().expect("id").to_owned();
    let (status, auth) = api
        .call(
            "POST",
            "/api/authorizations",
            Some(session),
            Some(json!({"key_id": id})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{auth}");
    (id, auth["token"].as_str().expect("token").to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_key_removes_it_and_refuses_its_apps() {
    let api = Api::new(&[]).await;
    let ann = api.account("ann@example.org").await;
    let t = Some(ann.as_str());
    let (doomed, doomed_token) = key_with_app(&api, &ann).await;
    let (kept, kept_token) = key_with_app(&api, &ann).await;
    assert_eq!(sign(&api, &doomed_token, 1).await, StatusCode::OK, "warm");

    let path = format!("/api/keys/{doomed}");
    let (status, deleted) = api.call("DELETE", &path, t, None).await;
    assert_eq!(status, StatusCode::OK, "{deleted}");
    assert_eq!(deleted["id"], doomed.as_str());
    assert!(deleted["npub"]
        .as_str()
        .is_some_and(|n| n.starts_with("npub1")));

    for attempt in ["cached token", "token looked up again"] {
        assert_eq!(
            sign(&api, &doomed_token, 1).await,
            StatusCode::UNAUTHORIZED,
            "{attempt}"
        );
    }
    let (_, list) = api.call("GET", "/api/keys", t, None).await;
    let ids: Vec<&str> = list["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .filter_map(|k| k["id"].as_str())
        .collect();
    assert_eq!(ids, vec![kept.as_str()], "only the other key is left");
    let (_, auths) = api.call("GET", "/api/authorizations", t, None).await;
    assert_eq!(
        auths["authorizations"]
            .as_array()
            .expect("authorizations")
            .len(),
        1,
        "the deleted key's authorization went with it: {auths}"
    );
    assert_eq!(sign(&api, &kept_token, 1).await, StatusCode::OK);

    let (status, again) = api.call("DELETE", &path, t, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "second delete: {again}");
    assert!(is_error(&again), "{again}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accounts_cannot_delete_each_others_keys() {
    let api = Api::new(&[]).await;
    let ann = api.account("ann@example.org").await;
    let bob = api.account("bob@example.org").await;
    let (key, token) = key_with_app(&api, &ann).await;
    let (status, body) = api
        .call("DELETE", &format!("/api/keys/{key}"), Some(&bob), None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert!(is_error(&body), "{body}");
    let (status, _) = api
        .call("DELETE", &format!("/api/keys/{key}"), None, None)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(sign(&api, &token, 1).await, StatusCode::OK, "still works");
    let (_, list) = api.call("GET", "/api/keys", Some(&ann), None).await;
    assert_eq!(list["keys"][0]["id"], key.as_str(), "still listed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_bad_or_unknown_id_is_a_json_404() {
    let api = Api::new(&[]).await;
    let ann = api.account("ann@example.org").await;
    for id in ["not-a-uuid", "6f1c2d3e-0000-4000-8000-000000000000", "%00"] {
        let (status, body) = api
            .call("DELETE", &format!("/api/keys/{id}"), Some(&ann), None)
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{id}: {body}");
        assert!(is_error(&body), "{id}: {body}");
    }
}

/// scrypt holds up to 256 MiB a call, so only `SCRYPT_SLOTS` run at once; the rest are
/// told to retry, and nothing is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nip49_work_beyond_the_slots_is_refused_with_a_retry() {
    let api = Api::new(&[]).await;
    let ann = api.account("ann@example.org").await;
    let t = Some(ann.as_str());
    let (_, key) = api.call("POST", "/api/keys", t, Some(json!({}))).await;
    let id = key["id"].as_str().expect("id").to_owned();
    let ncryptsec = EncryptedSecretKey::new(
        &keycast_core::nostr::SecretKey::generate(),
        "import password",
        8,
        KeySecurity::Medium,
    )
    .expect("encrypt")
    .to_bech32()
    .expect("bech32");
    let held = api
        .state
        .scrypt_slots
        .clone()
        .acquire_many_owned(keycast_server::http::SCRYPT_SLOTS as u32)
        .await
        .expect("slots");
    let (status, body) = api
        .call(
            "POST",
            &format!("/api/keys/{id}/danger/export"),
            t,
            Some(json!({"password": "export password", "log_n": 8,
                "account_password": "correct horse battery", "email_code": "0"})),
        )
        .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["error"]["code"], "overloaded");
    let import = json!({"ncryptsec": ncryptsec, "password": "import password"});
    let (status, _) = api.call("POST", "/api/keys", t, Some(import.clone())).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    let (_, list) = api.call("GET", "/api/keys", t, None).await;
    assert_eq!(
        list["keys"].as_array().map(Vec::len),
        Some(1),
        "nothing stored"
    );
    drop(held);
    let (status, body) = api.call("POST", "/api/keys", t, Some(import)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exports_need_the_password_and_a_fresh_mailed_code() {
    use keycast_core::nostr::bip39::Mnemonic;
    use keycast_core::nostr::SecretKey;

    let api = Api::new(&[]).await;
    let ann = api.account("ann@example.org").await;
    let bob = api.account("bob@example.org").await;
    let (_, key) = api
        .call("POST", "/api/keys", Some(&ann), Some(json!({})))
        .await;
    let path = format!(
        "/api/keys/{}/danger/export",
        key["id"].as_str().expect("id")
    );
    let export = |session: &str, body: serde_json::Value| {
        let (api, path, session) = (&api, path.clone(), session.to_owned());
        async move { api.call("POST", &path, Some(&session), Some(body)).await }
    };
    let good = |format: &str, code: &str| json!({"format": format, "account_password": "correct horse battery", "email_code": code});

    let code = api.export_code(&ann).await;
    let (status, body) = export(&ann, good("nsec", &code)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let secret = SecretKey::from_bech32(body["exported"].as_str().expect("nsec")).expect("nsec");
    assert_eq!(
        Keys::new(secret.clone()).public_key().to_hex(),
        key["pubkey"]
    );
    let (status, body) = export(&ann, good("nsec", &code)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "a code works once: {body}");
    assert_eq!(body["error"]["code"], "invalid_token");

    // Refusals before the code is spent leave it usable.
    let code = api.export_code(&ann).await;
    let wrong =
        json!({"format": "mnemonic", "account_password": "not my password", "email_code": code});
    let refusals = [
        (wrong, StatusCode::FORBIDDEN, "wrong_password"),
        (
            json!({"format": "pem", "account_password": "correct horse battery", "email_code": code}),
            StatusCode::BAD_REQUEST,
            "invalid_input",
        ),
        (
            json!({"format": "nsec", "password": "long enough pw", "account_password": "correct horse battery", "email_code": code}),
            StatusCode::BAD_REQUEST,
            "invalid_input",
        ),
        (
            json!({"format": "ncryptsec", "account_password": "correct horse battery", "email_code": code}),
            StatusCode::BAD_REQUEST,
            "invalid_input",
        ),
        (
            json!({"format": "nsec", "account_password": "correct horse battery"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_input",
        ),
    ];
    for (body, want, error) in refusals {
        let (status, answer) = export(&ann, body.clone()).await;
        assert_eq!(status, want, "{body}: {answer}");
        assert_eq!(answer["error"]["code"], error, "{answer}");
    }
    let (status, body) = export(&ann, good("mnemonic", &code)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let words = body["exported"].as_str().expect("words");
    assert_eq!(words.split(' ').count(), 24);
    let entropy = Mnemonic::parse(words).expect("BIP-39").to_entropy();
    assert_eq!(entropy, secret.to_secret_bytes(), "the same key");

    // Another account's code, and a code for another purpose, do not work.
    let bobs = api.export_code(&bob).await;
    let (status, _) = export(&ann, good("nsec", &bobs)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "bob's code is not ann's");
    let (status, _) = export(&ann, good("nsec", &"a".repeat(64))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    let audited = api
        .state
        .services
        .store
        .list_audit(&keycast_core::AuditFilter {
            tenant_id: keycast_server::services::default_tenant(),
            key_id: Some(key["id"].as_str().expect("id").parse().expect("key id")),
            authorization_id: None,
            limit: 100,
        })
        .await
        .expect("audit")
        .iter()
        .filter(|r| r.action == keycast_core::AuditAction::ExportKey)
        .count();
    assert_eq!(
        audited, 2,
        "every export, and only exports that happened, audited"
    );
}
