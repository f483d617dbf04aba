//! The request handler: session rules and every method, over in-memory backends.

use std::sync::Arc;

use keycast_core::nostr::nips::{nip04, nip44};
use keycast_core::nostr::{Event, JsonUtil, Keys, RelayUrl};
use keycast_core::*;
use keycast_nip46::{Nip46Request, Nip46Response, RequestHandler};

struct Bunker {
    store: Arc<MemoryKeyStore>,
    custody: Custody,
    handler: RequestHandler,
    auth: Authorization,
    secret: BearerSecret,
    user: keycast_core::nostr::PublicKey,
}

async fn bunker(permissions: Vec<Permission>) -> Bunker {
    let store = Arc::new(MemoryKeyStore::new());
    let custody = Custody::builder(store.clone(), Arc::new(InsecureTestKeyManager::new()))
        .build()
        .expect("engine");
    let relays = vec![RelayUrl::parse("wss://relay.example.com").expect("relay")];
    let a = keycast_core::testing::fixtures::authorized_key(&custody, permissions, relays).await;
    let (key, auth, secret) = (a.key, a.authorization, a.secret);
    Bunker {
        handler: RequestHandler::new(custody.clone()),
        store,
        custody,
        auth,
        secret,
        user: key.pubkey,
    }
}

fn request(id: &str, method: &str, params: serde_json::Value) -> Nip46Request {
    let json = serde_json::json!({"id": id, "method": method, "params": params}).to_string();
    Nip46Request::parse(&json).expect("valid request")
}

impl Bunker {
    async fn call(&self, client: &Keys, method: &str, params: serde_json::Value) -> Nip46Response {
        self.handler
            .handle(
                self.auth.id,
                client.public_key(),
                request("r1", method, params),
            )
            .await
    }

    async fn connect(&self, client: &Keys) {
        let r = self
            .call(
                client,
                "connect",
                serde_json::json!([self.auth.bunker_pubkey.to_hex(), self.secret.expose()]),
            )
            .await;
        assert_eq!(r, Nip46Response::ok("r1", "ack"));
    }
}

#[tokio::test]
async fn connect_rules_secret_target_and_idempotence() {
    let b = bunker(vec![Permission::FullAccess]).await;
    let app = Keys::generate();
    let bunker_hex = b.auth.bunker_pubkey.to_hex();

    let other_signer = Keys::generate().public_key().to_hex();
    let r = b
        .call(
            &app,
            "connect",
            serde_json::json!([other_signer, b.secret.expose()]),
        )
        .await;
    assert!(r.is_error(), "connect to another signer: {r:?}");
    let r = b
        .call(&app, "connect", serde_json::json!([bunker_hex]))
        .await;
    assert!(r.is_error(), "connect without a secret: {r:?}");
    let r = b
        .call(&app, "connect", serde_json::json!([bunker_hex, "wrong"]))
        .await;
    assert!(r.is_error(), "connect with a wrong secret: {r:?}");
    assert!(b
        .store
        .get_authorization(b.auth.id)
        .await
        .expect("auth")
        .client_pubkeys
        .is_empty());

    // First param may be "" or the user's pubkey, as real clients send.
    let r = b
        .call(&app, "connect", serde_json::json!(["", b.secret.expose()]))
        .await;
    assert_eq!(r, Nip46Response::ok("r1", "ack"));
    let r = b
        .call(&app, "connect", serde_json::json!([b.user.to_hex()]))
        .await;
    assert_eq!(
        r,
        Nip46Response::ok("r1", "ack"),
        "reconnect is idempotent without the secret"
    );
    let r = b
        .call(
            &app,
            "connect",
            serde_json::json!([bunker_hex, b.secret.expose()]),
        )
        .await;
    assert_eq!(
        r,
        Nip46Response::ok("r1", "ack"),
        "reconnect with the used secret"
    );

    let thief = Keys::generate();
    let r = b
        .call(
            &thief,
            "connect",
            serde_json::json!([bunker_hex, b.secret.expose()]),
        )
        .await;
    assert!(r.is_error(), "the secret is single-use: {r:?}");
    let r = b
        .call(&thief, "get_public_key", serde_json::json!([]))
        .await;
    assert!(
        r.is_error(),
        "unbound clients get nothing, get_public_key included: {r:?}"
    );
    let r = b.call(&thief, "ping", serde_json::json!([])).await;
    assert!(r.is_error(), "unbound clients cannot ping: {r:?}");
}

#[tokio::test]
async fn every_method_for_a_bound_client() {
    let b = bunker(vec![Permission::FullAccess]).await;
    let app = Keys::generate();
    b.connect(&app).await;

    assert_eq!(
        b.call(&app, "ping", serde_json::json!([])).await,
        Nip46Response::ok("r1", "pong")
    );
    let r = b.call(&app, "get_public_key", serde_json::json!([])).await;
    assert_eq!(
        r,
        Nip46Response::ok("r1", b.user.to_hex()),
        "the user key, not the bunker key"
    );

    let template = serde_json::json!({"kind": 1, "content": "hi ✓", "tags": [["t", "x"]], "created_at": 1_700_000_000});
    let r = b
        .call(
            &app,
            "sign_event",
            serde_json::json!([template.to_string()]),
        )
        .await;
    let json: serde_json::Value = serde_json::from_str(&r.to_json()).expect("reply json");
    let event = Event::from_json(json["result"].as_str().expect("result")).expect("event");
    event.verify().expect("valid signature");
    assert_eq!(event.pubkey, b.user);
    assert_eq!(event.content, "hi ✓");
    assert_eq!(event.created_at.as_secs(), 1_700_000_000);

    let peer = Keys::generate();
    let r = b
        .call(
            &app,
            "nip44_encrypt",
            serde_json::json!([peer.public_key().to_hex(), "secret"]),
        )
        .await;
    let ct = serde_json::from_str::<serde_json::Value>(&r.to_json()).expect("json")["result"]
        .as_str()
        .expect("ciphertext")
        .to_owned();
    assert_eq!(
        nip44::decrypt(peer.secret_key(), &b.user, &ct).expect("peer decrypts"),
        "secret"
    );
    let theirs = nip04::encrypt(peer.secret_key(), &b.user, "legacy").expect("encrypt");
    let r = b
        .call(
            &app,
            "nip04_decrypt",
            serde_json::json!([peer.public_key().to_hex(), theirs]),
        )
        .await;
    assert_eq!(r, Nip46Response::ok("r1", "legacy"));

    let r = b.call(&app, "switch_relays", serde_json::json!([])).await;
    assert_eq!(r, Nip46Response::ok("r1", "[\"wss://relay.example.com\"]"));
    let r = b.call(&app, "teleport", serde_json::json!([])).await;
    assert!(
        r.is_error() && r.to_json().contains("\"id\":\"r1\""),
        "{r:?}"
    );

    assert_eq!(
        b.call(&app, "logout", serde_json::json!([])).await,
        Nip46Response::ok("r1", "ack")
    );
    let r = b.call(&app, "get_public_key", serde_json::json!([])).await;
    assert!(r.is_error(), "logout ends the session: {r:?}");
}

#[tokio::test]
async fn policy_denials_revocation_and_bad_ciphertext_are_error_replies() {
    let b = bunker(vec![Permission::AllowedKinds { kinds: [1].into() }]).await;
    let app = Keys::generate();
    b.connect(&app).await;
    let template = serde_json::json!({"kind": 4, "content": "dm", "tags": []});
    let r = b
        .call(
            &app,
            "sign_event",
            serde_json::json!([template.to_string()]),
        )
        .await;
    assert!(r.is_error() && r.to_json().contains("not allowed"), "{r:?}");
    let r = b
        .call(
            &app,
            "nip44_decrypt",
            serde_json::json!([Keys::generate().public_key().to_hex(), "AAAA"]),
        )
        .await;
    assert!(r.is_error(), "{r:?}");

    b.custody
        .revoke_authorization(b.auth.id)
        .await
        .expect("revoke");
    let r = b.call(&app, "ping", serde_json::json!([])).await;
    assert!(r.is_error() && r.to_json().contains("revoked"), "{r:?}");
}
