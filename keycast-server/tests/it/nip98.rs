//! NIP-98 auth on HTTP RPC: a connected client key signs each request; replays, other
//! URLs or bodies, stale events and strangers are refused.

use crate::common;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use base64::Engine;
use common::inproc::{send, Api};
use keycast_core::nostr::hashes::{sha256, Hash};
use keycast_core::nostr::nips::nip98::HttpMethod;
use keycast_core::nostr::{
    EventBuilder, JsonUtil, Keys, Kind, PublicKey, Tag, TagStandard, Timestamp, Url,
};
use keycast_core::BearerSecret;
use serde_json::{json, Value};

const URL: &str = "http://127.0.0.1:3000/api/nostr";

struct Header<'a> {
    keys: &'a Keys,
    bunker: Option<PublicKey>,
    url: &'a str,
    body: &'a str,
    created_at: Timestamp,
}

impl Header<'_> {
    fn build(&self) -> String {
        let mut tags = vec![
            Tag::from_standardized(TagStandard::AbsoluteURL(Url::parse(self.url).expect("url"))),
            Tag::from_standardized(TagStandard::Method(HttpMethod::POST)),
            Tag::from_standardized(TagStandard::Payload(sha256::Hash::hash(
                self.body.as_bytes(),
            ))),
        ];
        if let Some(b) = self.bunker {
            tags.push(Tag::public_key(b));
        }
        let event = EventBuilder::new(Kind::HttpAuth, "")
            .tags(tags)
            .custom_created_at(self.created_at)
            .sign_with_keys(self.keys)
            .expect("sign");
        format!(
            "Nostr {}",
            base64::engine::general_purpose::STANDARD.encode(event.as_json())
        )
    }
}

async fn call(api: &Api, header: &str, body: &str) -> (StatusCode, Value) {
    let request = Request::post("/api/nostr")
        .header("authorization", header)
        .header("content-type", "application/json")
        .body(Body::from(body.to_owned()))
        .expect("request");
    send(&api.state, request).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connected_clients_sign_requests_and_everything_else_is_refused() {
    let api = Api::new(&[("KEYCAST_LISTEN", "127.0.0.1:3000")]).await;
    let ann = api.account("ann@example.org").await;
    let (_, key) = api
        .call("POST", "/api/keys", Some(&ann), Some(json!({})))
        .await;
    let (_, created) = api
        .call(
            "POST",
            "/api/authorizations",
            Some(&ann),
            Some(json!({"key_id": key["id"]})),
        )
        .await;
    let bunker =
        PublicKey::from_hex(created["bunker_pubkey"].as_str().expect("bunker")).expect("pk");
    let secret = created["bunker_uri"]
        .as_str()
        .expect("uri")
        .split("secret=")
        .nth(1)
        .expect("secret")
        .to_owned();
    let id = created["id"]
        .as_str()
        .expect("id")
        .parse()
        .expect("authorization id");
    let app_keys = Keys::generate();
    api.state
        .services
        .store
        .redeem_connect_secret(
            id,
            &BearerSecret::from_presented(&secret).digest(),
            app_keys.public_key(),
        )
        .await
        .expect("the app connected over NIP-46");

    let body = r#"{"method":"get_public_key","params":[]}"#;
    let good = Header {
        keys: &app_keys,
        bunker: Some(bunker),
        url: URL,
        body,
        created_at: Timestamp::now(),
    };
    let header = good.build();
    let (status, answer) = call(&api, &header, body).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["result"], key["pubkey"]);

    let (status, _) = call(&api, &header, body).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "a replayed header");
    let stranger = Keys::generate();
    let old = Timestamp::from(Timestamp::now().as_secs() - 300);
    let other_body = r#"{"method":"ping","params":[]}"#;
    let cases = [
        (
            "another URL",
            Header {
                url: "http://evil.example/api/nostr",
                ..Header { ..good_copy(&good) }
            }
            .build(),
            body,
        ),
        ("another body", good_copy(&good).build(), other_body),
        (
            "stale",
            Header {
                created_at: old,
                ..good_copy(&good)
            }
            .build(),
            body,
        ),
        (
            "no p tag",
            Header {
                bunker: None,
                ..good_copy(&good)
            }
            .build(),
            body,
        ),
        (
            "unknown bunker",
            Header {
                bunker: Some(Keys::generate().public_key()),
                ..good_copy(&good)
            }
            .build(),
            body,
        ),
        (
            "unconnected key",
            Header {
                keys: &stranger,
                ..good_copy(&good)
            }
            .build(),
            body,
        ),
        ("garbage", "Nostr !!!not-base64".to_owned(), body),
        ("empty", "Nostr ".to_owned(), body),
    ];
    for (what, header, body) in cases {
        let (status, answer) = call(&api, &header, body).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{what}: {answer}");
        assert_eq!(answer["error"]["code"], "unauthorized", "{what}");
    }
    assert_eq!(api.state.counters.snapshot().rpc_auth_errors, 9);
}

/// The same header fields (built fresh, so each has its own event id).
fn good_copy<'a>(h: &Header<'a>) -> Header<'a> {
    Header {
        keys: h.keys,
        bunker: h.bunker,
        url: h.url,
        body: h.body,
        created_at: Timestamp::now(),
    }
}
