//! "Change the account key" end to end, in-process on SQLite and (with
//! `KEYCAST_TEST_POSTGRES_URL`) Postgres: the password and a mailed `replace_key` code
//! give the key a new secret under the same id, every app of the old secret is refused at
//! once, the owner gets a notice by mail, and the change is audited. Refusals change
//! nothing and (until the code is checked) leave the code usable.

use crate::common;

use axum::http::StatusCode;
use common::inproc::{is_error, sign, Api};
use keycast_core::nostr::{Keys, ToBech32};
use serde_json::{json, Value};

const PASSWORD: &str = "correct horse battery";

fn good(code: &str) -> Value {
    json!({"account_password": PASSWORD, "email_code": code})
}

/// The pubkey `GET /api/keys` shows for `key_id`.
async fn stored_pubkey(api: &Api, session: &str, key_id: &str) -> Value {
    let (_, keys) = api.call("GET", "/api/keys", Some(session), None).await;
    keys["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .find(|k| k["id"] == key_id)
        .map(|k| k["pubkey"].clone())
        .unwrap_or(Value::Null)
}

async fn replace_end_to_end(database_url: Option<&str>) {
    let settings: Vec<(&str, &str)> = database_url
        .map(|u| vec![("KEYCAST_DATABASE_URL", u)])
        .unwrap_or_default();
    let api = Api::new(&settings).await;
    let ann = api.account("ann@example.org").await;
    let bob = api.account("bob@example.org").await;
    let (_, key) = api
        .call(
            "POST",
            "/api/keys",
            Some(&ann),
            Some(json!({"name": "identity"})),
        )
        .await;
    let key_id = key["id"].as_str().expect("id").to_owned();
    let (_, other) = api
        .call(
            "POST",
            "/api/keys",
            Some(&ann),
            Some(json!({"name": "other"})),
        )
        .await;
    let path = format!("/api/keys/{key_id}/danger/replace");
    let mut tokens = Vec::new();
    for label in ["phone", "laptop"] {
        let (status, auth) = api
            .call(
                "POST",
                "/api/authorizations",
                Some(&ann),
                Some(json!({"key_id": key_id, "label": label})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{auth}");
        tokens.push(auth["token"].as_str().expect("token").to_owned());
    }
    let (_, on_other) = api
        .call(
            "POST",
            "/api/authorizations",
            Some(&ann),
            Some(json!({"key_id": other["id"]})),
        )
        .await;
    let other_token = on_other["token"].as_str().expect("token").to_owned();
    assert_eq!(sign(&api, &tokens[0], 1).await, StatusCode::OK);

    // Refusals before the code is checked: nothing changes and the code stays usable.
    let code = api.confirm_code(&ann, "replace_key").await;
    let export_code = api.confirm_code(&ann, "export_key").await;
    let current_secret = {
        // The key's own secret, exported the audited way.
        let (status, body) = api
            .call(
                "POST",
                &format!("/api/keys/{key_id}/danger/export"),
                Some(&ann),
                Some(json!({"format": "nsec", "account_password": PASSWORD, "email_code": export_code})),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["exported"].as_str().expect("nsec").to_owned()
    };
    let with = |extra: Value| {
        let mut body = good(&code);
        for (k, v) in extra.as_object().expect("object") {
            body[k] = v.clone();
        }
        body
    };
    let refusals = [
        (
            json!({"account_password": "not my password", "email_code": code}),
            StatusCode::FORBIDDEN,
        ),
        (
            with(json!({"nsec": "nsec1garbage"})),
            StatusCode::BAD_REQUEST,
        ),
        (
            with(json!({"nsec": current_secret})),
            StatusCode::BAD_REQUEST,
        ),
        (
            with(json!({"ncryptsec": "ncryptsec1xyz", "ncryptsec_password": "whatever pw"})),
            StatusCode::BAD_REQUEST,
        ),
        (
            with(json!({"ncryptsec": "ncryptsec1xyz"})),
            StatusCode::BAD_REQUEST,
        ),
        (
            with(json!({"nsec": "", "ncryptsec": "x"})),
            StatusCode::BAD_REQUEST,
        ),
        (
            with(json!({"surprise": 1})),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!({"account_password": PASSWORD}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (json!("nope"), StatusCode::UNPROCESSABLE_ENTITY),
    ];
    for (body, want) in refusals {
        let (status, answer) = api
            .call("POST", &path, Some(&ann), Some(body.clone()))
            .await;
        assert_eq!(status, want, "{body}: {answer}");
        assert!(is_error(&answer), "{answer}");
    }
    // Another account, or a key id that is not the caller's: not found.
    let (status, _) = api.call("POST", &path, Some(&bob), Some(good(&code))).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let missing = format!("/api/keys/{}/danger/replace", uuid::Uuid::new_v4());
    let (status, _) = api
        .call("POST", &missing, Some(&ann), Some(good(&code)))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = api.call("POST", &path, None, Some(good(&code))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // The export code does not confirm a replacement (and is spent anyway).
    let (status, answer) = api
        .call("POST", &path, Some(&ann), Some(good(&export_code)))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert_eq!(answer["error"]["code"], "invalid_token");
    assert_eq!(
        stored_pubkey(&api, &ann, &key_id).await,
        key["pubkey"],
        "nothing changed"
    );
    assert_eq!(
        sign(&api, &tokens[1], 1).await,
        StatusCode::OK,
        "apps still work"
    );

    // The replacement, with a key brought as an nsec.
    let new_keys = Keys::generate();
    let nsec = new_keys.secret_key().to_bech32().expect("nsec");
    let (status, replaced) = api
        .call("POST", &path, Some(&ann), Some(with(json!({"nsec": nsec}))))
        .await;
    assert_eq!(status, StatusCode::OK, "{replaced}");
    assert_eq!(replaced["key"]["id"], key_id.as_str());
    assert_eq!(replaced["key"]["name"], "identity");
    assert_eq!(replaced["key"]["pubkey"], new_keys.public_key().to_hex());
    assert_eq!(replaced["old_pubkey"], key["pubkey"]);
    assert_eq!(
        replaced["revoked"].as_array().map(Vec::len),
        Some(2),
        "{replaced}"
    );
    assert_eq!(replaced["notified"], true);
    for token in &tokens {
        assert_eq!(
            sign(&api, token, 1).await,
            StatusCode::UNAUTHORIZED,
            "old apps are refused at once"
        );
    }
    assert_eq!(
        sign(&api, &other_token, 1).await,
        StatusCode::OK,
        "another key's app is untouched"
    );
    let notice = api.newest_mail();
    assert!(
        notice.contains("Subject: Your key was replaced"),
        "{notice}"
    );
    assert!(
        notice.contains(&new_keys.public_key().to_bech32().expect("npub")),
        "{notice}"
    );
    assert!(notice.contains("2 app authorization(s)"), "{notice}");
    assert!(!notice.contains(&nsec), "the notice never holds the secret");
    let (_, sessions) = api
        .call("GET", "/api/authorizations", Some(&ann), None)
        .await;
    let revoked = sessions["authorizations"]
        .as_array()
        .expect("list")
        .iter()
        .filter(|a| a["key_id"] == key_id.as_str() && !a["revoked_at"].is_null())
        .count();
    assert_eq!(
        revoked, 2,
        "the old sessions stay listed, revoked: {sessions}"
    );

    // The code worked once; a new app on the same key id signs as the new key.
    let (status, _) = api.call("POST", &path, Some(&ann), Some(good(&code))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (_, auth) = api
        .call(
            "POST",
            "/api/authorizations",
            Some(&ann),
            Some(json!({"key_id": key_id})),
        )
        .await;
    let token = auth["token"].as_str().expect("token");
    let (status, pk) = api
        .call(
            "POST",
            "/api/nostr",
            Some(token),
            Some(json!({"method": "get_public_key", "params": []})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{pk}");
    assert_eq!(pk["result"], new_keys.public_key().to_hex());

    // Generated when nothing is brought; another stored key's secret is refused.
    let code = api.confirm_code(&ann, "replace_key").await;
    let (status, generated) = api.call("POST", &path, Some(&ann), Some(good(&code))).await;
    assert_eq!(status, StatusCode::OK, "{generated}");
    assert_ne!(generated["key"]["pubkey"], new_keys.public_key().to_hex());
    assert_eq!(generated["revoked"].as_array().map(Vec::len), Some(1));
    let export_code = api.confirm_code(&ann, "export_key").await;
    let (_, other_secret) = api
        .call(
            "POST",
            &format!(
                "/api/keys/{}/danger/export",
                other["id"].as_str().expect("id")
            ),
            Some(&ann),
            Some(
                json!({"format": "nsec", "account_password": PASSWORD, "email_code": export_code}),
            ),
        )
        .await;
    let code = api.confirm_code(&ann, "replace_key").await;
    let clash =
        json!({"account_password": PASSWORD, "email_code": code, "nsec": other_secret["exported"]});
    let (status, answer) = api.call("POST", &path, Some(&ann), Some(clash)).await;
    assert_eq!(status, StatusCode::CONFLICT, "{answer}");
    assert_eq!(
        stored_pubkey(&api, &ann, &key_id).await,
        generated["key"]["pubkey"]
    );

    let audit = api
        .state
        .services
        .store
        .list_audit(&keycast_core::AuditFilter {
            tenant_id: keycast_server::services::default_tenant(),
            key_id: Some(key_id.parse().expect("key id")),
            authorization_id: None,
            limit: 100,
        })
        .await
        .expect("audit");
    let replacements = audit
        .iter()
        .filter(|r| r.action == keycast_core::AuditAction::ReplaceKey)
        .count();
    assert_eq!(replacements, 2, "each replacement is audited");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replacing_a_key_on_sqlite() {
    replace_end_to_end(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replacing_a_key_on_postgres() {
    let Some(admin) = keycast_storage::testing::postgres_url() else {
        return;
    };
    let db = keycast_storage::testing::FreshDb::create(&admin).await;
    replace_end_to_end(Some(&db.url)).await;
    db.drop_db().await;
}
