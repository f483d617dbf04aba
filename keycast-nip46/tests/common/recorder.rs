//! A tiny relay that records what the bunker asks it for: every `REQ` frame, and how many
//! connections it accepted and holds open. It answers `REQ` with `EOSE` and `EVENT` with
//! `OK`, and delivers nothing.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use async_wsocket::futures_util::{SinkExt, StreamExt};
use keycast_core::nostr::{PublicKey, RelayUrl};
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;

#[derive(Clone)]
pub struct Recorder {
    pub url: RelayUrl,
    pub port: u16,
    reqs: Arc<Mutex<Vec<Value>>>,
    accepted: Arc<AtomicUsize>,
    open: Arc<AtomicUsize>,
}

impl Recorder {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let me = Self {
            url: RelayUrl::parse(&format!("ws://127.0.0.1:{port}")).expect("url"),
            port,
            reqs: Arc::default(),
            accepted: Arc::default(),
            open: Arc::default(),
        };
        let r = me.clone();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                r.accepted.fetch_add(1, Ordering::SeqCst);
                let r = r.clone();
                tokio::spawn(async move {
                    r.open.fetch_add(1, Ordering::SeqCst);
                    if let Ok(ws) = tokio_tungstenite::accept_async(tcp).await {
                        r.serve(ws).await;
                    }
                    r.open.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
        me
    }

    async fn serve(&self, mut ws: tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>) {
        while let Some(Ok(msg)) = ws.next().await {
            let Message::Text(text) = msg else { continue };
            let Ok(Value::Array(frame)) = serde_json::from_str::<Value>(&text) else {
                continue;
            };
            let answer = match frame.first().and_then(Value::as_str) {
                Some("REQ") => {
                    self.reqs
                        .lock()
                        .expect("reqs")
                        .push(Value::Array(frame.clone()));
                    json!(["EOSE", frame[1]])
                }
                Some("EVENT") => json!(["OK", frame[1]["id"], true, ""]),
                _ => continue,
            };
            if ws.send(Message::text(answer.to_string())).await.is_err() {
                return;
            }
        }
    }

    /// The bunker keys of every subscription `REQ` received (the stall probes, which ask
    /// for `limit 0`, left out), in order.
    pub fn subscribed_keys(&self) -> Vec<Vec<PublicKey>> {
        let reqs = self.reqs.lock().expect("reqs");
        reqs.iter()
            .filter(|f| f[2].get("limit").is_none())
            .map(|f| {
                f[2]["#p"]
                    .as_array()
                    .map(|keys| {
                        keys.iter()
                            .map(|k| PublicKey::from_hex(k.as_str().expect("hex")).expect("key"))
                            .collect()
                    })
                    .unwrap_or_default()
            })
            .collect()
    }

    /// TCP connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }
}

/// Waits until `done` holds, checking every 20 ms, for at most `within`.
pub async fn until(within: std::time::Duration, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + within;
    while !done() {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}
