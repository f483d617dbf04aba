//! A relay that does not check signatures (hand-rolled here: nostr-relay-builder refuses
//! forged events itself) delivers a forged request and a genuine one: only the genuine one
//! is processed and answered.

use std::sync::Arc;
use std::time::Duration;

use async_wsocket::futures_util::{SinkExt, StreamExt};
use keycast_core::nostr::nips::nip44;
use keycast_core::nostr::{Event, EventBuilder, JsonUtil, Keys, Kind, RelayUrl, Tag};
use keycast_core::{Custody, InsecureTestKeyManager, MemoryKeyStore, Permission};
use keycast_nip46::{Bunker, BunkerConfig};
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_requests_are_never_answered() {
    let store = Arc::new(MemoryKeyStore::new());
    let custody = Custody::builder(store, Arc::new(InsecureTestKeyManager::new()))
        .build()
        .expect("engine");
    let a = keycast_core::testing::fixtures::authorized_key(
        &custody,
        vec![Permission::FullAccess],
        vec![],
    )
    .await;
    let bunker = a.authorization.bunker_pubkey;
    let client = Keys::generate();
    let request = |id: &str| -> Event {
        let json = json!({"id": id, "method": "ping", "params": []}).to_string();
        let content =
            nip44::encrypt(client.secret_key(), &bunker, json, nip44::Version::V2).expect("nip44");
        EventBuilder::new(Kind::NostrConnect, content)
            .tag(Tag::public_key(bunker))
            .sign_with_keys(&client)
            .expect("sign")
    };
    let genuine = request("genuine");
    // Same fields, signature of another event: the id no longer matches the signature.
    let other = request("forged");
    let mut forged: Value = serde_json::from_str(&other.as_json()).expect("json");
    forged["sig"] = json!(genuine.sig.to_string());

    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url =
        RelayUrl::parse(&format!("ws://{}", listener.local_addr().expect("addr"))).expect("url");
    let (replies_tx, mut replies) = tokio::sync::mpsc::unbounded_channel::<Event>();
    let genuine_json = genuine.as_json();
    tokio::spawn(async move {
        let Ok((tcp, _)) = listener.accept().await else {
            return;
        };
        let Ok(mut ws) = tokio_tungstenite::accept_async(tcp).await else {
            return;
        };
        let mut delivered = false;
        while let Some(Ok(msg)) = ws.next().await {
            let Message::Text(text) = msg else { continue };
            let Ok(Value::Array(frame)) = serde_json::from_str::<Value>(&text) else {
                continue;
            };
            match frame.first().and_then(Value::as_str) {
                Some("REQ") => {
                    let sub = frame[1].clone();
                    let _ = ws
                        .send(Message::text(json!(["EOSE", sub]).to_string()))
                        .await;
                    let is_bunker_sub =
                        frame[2]["kinds"] == json!([24133]) && frame[2].get("limit").is_none();
                    if is_bunker_sub && !delivered {
                        delivered = true;
                        for event in [forged.to_string(), genuine_json.clone()] {
                            let frame = format!(r#"["EVENT",{sub},{event}]"#);
                            let _ = ws.send(Message::text(frame)).await;
                        }
                    }
                }
                Some("EVENT") => {
                    if let Ok(event) = Event::from_json(frame[1].to_string()) {
                        let _ = replies_tx.send(event);
                    }
                }
                _ => {}
            }
        }
    });

    let service = Bunker::start(custody, BunkerConfig::new(vec![url]))
        .await
        .expect("bunker");
    let reply = tokio::time::timeout(Duration::from_secs(10), replies.recv())
        .await
        .expect("a reply within 10 s")
        .expect("reply");
    let plain = nip44::decrypt(client.secret_key(), &bunker, &reply.content).expect("decrypt");
    let reply: Value = serde_json::from_str(&plain).expect("json");
    assert_eq!(
        reply["id"], "genuine",
        "only the genuine request is answered: {reply}"
    );
    assert!(
        tokio::time::timeout(Duration::from_millis(700), replies.recv())
            .await
            .is_err(),
        "no reply to the forged one"
    );
    let stats = service.stats();
    assert_eq!(stats.processed, 1, "{stats:?}");
    assert_eq!(stats.panics, 0);
    service.shutdown().await;
}
