#![no_main]
//! Parsed NIP-46 requests through `RequestHandler::handle` on an in-memory engine, from a
//! bound client and from a stranger. The handler must never panic, always answer with the
//! request id, give a stranger no result, and never let a request reach a crypto panic
//! (the pool catches those as "internal error").

use std::sync::{Arc, OnceLock};

use keycast_core::nostr::{Keys, PublicKey, RelayUrl};
use keycast_core::testing::fixtures::authorized_key;
use keycast_core::{AuthorizationId, Custody, InsecureTestKeyManager, MemoryKeyStore, Permission};
use keycast_nip46::{Command, Nip46Request, Nip46Response, RequestHandler};

struct Engine {
    rt: tokio::runtime::Runtime,
    custody: Custody,
    handler: RequestHandler,
    session: Session,
    stranger: PublicKey,
}

struct Session {
    auth: AuthorizationId,
    client: PublicKey,
}

/// A new authorization with one client bound through `connect` and its secret.
async fn session(custody: &Custody, handler: &RequestHandler) -> Session {
    let relays = vec![RelayUrl::parse("wss://relay.example.com").expect("relay")];
    let a = authorized_key(custody, vec![Permission::FullAccess], relays).await;
    let client = Keys::generate().public_key();
    let connect = serde_json::json!({
        "id": "bind",
        "method": "connect",
        "params": [a.authorization.bunker_pubkey.to_hex(), a.secret.expose()],
    });
    let request = Nip46Request::parse(&connect.to_string()).expect("connect request");
    let reply = handler.handle(a.authorization.id, client, request).await;
    assert_eq!(reply, Nip46Response::ok("bind", "ack"));
    Session {
        auth: a.authorization.id,
        client,
    }
}

fn engine() -> &'static Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let (custody, handler, session) = rt.block_on(async {
            let custody = Custody::builder(
                Arc::new(MemoryKeyStore::new()),
                Arc::new(InsecureTestKeyManager::new()),
            )
            .build()
            .expect("engine");
            let handler = RequestHandler::new(custody.clone());
            let session = session(&custody, &handler).await;
            (custody, handler, session)
        });
        Engine {
            rt,
            custody,
            handler,
            session,
            stranger: Keys::generate().public_key(),
        }
    })
}

fn check(request: &Nip46Request, reply: &Nip46Response) {
    assert_eq!(reply.id, request.id, "reply id");
    assert!(
        reply.result.is_some() != reply.error.is_some(),
        "exactly one of result/error: {reply:?}"
    );
    if let Some(e) = &reply.error {
        assert!(!e.starts_with("internal error"), "{e}");
    }
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let text = keycast_fuzz::text(data);
    let Ok(request) = Nip46Request::parse(&text) else {
        return;
    };
    let e = engine();
    e.rt.block_on(async {
        // `logout` unbinds; give it its own session so every input sees the same state.
        let fresh;
        let session = if matches!(request.command, Command::Logout) {
            fresh = session(&e.custody, &e.handler).await;
            &fresh
        } else {
            &e.session
        };

        let reply = e
            .handler
            .handle(session.auth, e.stranger, request.clone())
            .await;
        check(&request, &reply);
        // The shared secret is used up, so no connect can bind the stranger.
        assert!(reply.result.is_none(), "stranger got a result: {reply:?}");

        let reply = e
            .handler
            .handle(session.auth, session.client, request.clone())
            .await;
        check(&request, &reply);
    });
});
