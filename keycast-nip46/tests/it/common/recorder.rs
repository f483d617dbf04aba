//! A tiny relay that records what the bunker asks it for: every `REQ` frame, the
//! subscriptions each connection holds open, and how many connections it accepted and
//! holds open. It answers `REQ` with `EOSE` and `EVENT` with `OK`, and delivers nothing.
//! [`Limits`] make it refuse as real relays do: a `REQ` over a size with `CLOSED`
//! (strfry's way), one subscription too many with a `NOTICE` (nostr-rs-relay's way).

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use async_wsocket::futures_util::{SinkExt, StreamExt};
use keycast_core::nostr::{PublicKey, RelayUrl};
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;

/// What the recorder refuses.
#[derive(Clone, Copy, Default)]
pub struct Limits {
    /// `REQ` frames longer than this get `CLOSED` "error: message too large".
    pub max_req_bytes: Option<usize>,
    /// Subscriptions one connection may hold; a new one past it gets a `NOTICE`.
    pub max_subs: Option<usize>,
}

type Subs = HashMap<String, BTreeSet<PublicKey>>;

#[derive(Clone)]
pub struct Recorder {
    pub url: RelayUrl,
    pub port: u16,
    limits: Limits,
    reqs: Arc<Mutex<Vec<Value>>>,
    /// Sizes of the subscription `REQ` frames accepted.
    sizes: Arc<Mutex<Vec<usize>>>,
    /// Per connection: its open subscriptions.
    conns: Arc<Mutex<HashMap<usize, Subs>>>,
    refused: Arc<AtomicUsize>,
    accepted: Arc<AtomicUsize>,
    open: Arc<AtomicUsize>,
}

impl Recorder {
    pub async fn start() -> Self {
        Self::start_with(Limits::default()).await
    }

    pub async fn start_with(limits: Limits) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let me = Self {
            url: RelayUrl::parse(&format!("ws://127.0.0.1:{port}")).expect("url"),
            port,
            limits,
            reqs: Arc::default(),
            sizes: Arc::default(),
            conns: Arc::default(),
            refused: Arc::default(),
            accepted: Arc::default(),
            open: Arc::default(),
        };
        let r = me.clone();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let conn = r.accepted.fetch_add(1, Ordering::SeqCst);
                let r = r.clone();
                tokio::spawn(async move {
                    r.open.fetch_add(1, Ordering::SeqCst);
                    let config =
                        tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
                            .max_message_size(Some(64 << 20))
                            .max_frame_size(Some(64 << 20));
                    if let Ok(ws) =
                        tokio_tungstenite::accept_async_with_config(tcp, Some(config)).await
                    {
                        r.serve(ws, conn).await;
                    }
                    r.conns.lock().expect("conns").remove(&conn);
                    r.open.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
        me
    }

    async fn serve(
        &self,
        mut ws: tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>,
        conn: usize,
    ) {
        while let Some(Ok(msg)) = ws.next().await {
            let Message::Text(text) = msg else { continue };
            let Ok(Value::Array(frame)) = serde_json::from_str::<Value>(&text) else {
                continue;
            };
            let answer = match frame.first().and_then(Value::as_str) {
                Some("REQ") => match self.subscribe(conn, &frame, text.len()) {
                    Some(refusal) => refusal,
                    None => {
                        self.reqs
                            .lock()
                            .expect("reqs")
                            .push(Value::Array(frame.clone()));
                        json!(["EOSE", frame[1]])
                    }
                },
                Some("CLOSE") => {
                    let id = frame[1].as_str().unwrap_or_default();
                    if let Some(subs) = self.conns.lock().expect("conns").get_mut(&conn) {
                        subs.remove(id);
                    }
                    continue;
                }
                Some("EVENT") => json!(["OK", frame[1]["id"], true, ""]),
                _ => continue,
            };
            if ws.send(Message::text(answer.to_string())).await.is_err() {
                return;
            }
        }
    }

    /// Registers a `REQ` on `conn`, or answers its refusal.
    fn subscribe(&self, conn: usize, frame: &[Value], bytes: usize) -> Option<Value> {
        let id = frame[1].as_str().unwrap_or_default().to_owned();
        if self.limits.max_req_bytes.is_some_and(|max| bytes > max) {
            self.refused.fetch_add(1, Ordering::SeqCst);
            return Some(json!(["CLOSED", id, "error: message too large"]));
        }
        let mut conns = self.conns.lock().expect("conns");
        let subs = conns.entry(conn).or_default();
        if !subs.contains_key(&id) && self.limits.max_subs.is_some_and(|max| subs.len() >= max) {
            self.refused.fetch_add(1, Ordering::SeqCst);
            return Some(json!([
                "NOTICE",
                "Subscription error: Maximum concurrent subscription count reached"
            ]));
        }
        let keys = keys_of(&frame[2]);
        if frame[2].get("limit").is_none() {
            self.sizes.lock().expect("sizes").push(bytes);
        }
        subs.insert(id, keys);
        None
    }

    /// Every bunker key some open subscription asks for, over all connections.
    pub fn live_keys(&self) -> BTreeSet<PublicKey> {
        let conns = self.conns.lock().expect("conns");
        conns
            .values()
            .flat_map(|subs| subs.values().flatten().copied())
            .collect()
    }

    /// The most subscriptions any connection holds open now.
    pub fn most_subs_on_a_connection(&self) -> usize {
        let conns = self.conns.lock().expect("conns");
        conns.values().map(HashMap::len).max().unwrap_or(0)
    }

    /// Connections holding at least one subscription.
    pub fn subscribed_connections(&self) -> usize {
        let conns = self.conns.lock().expect("conns");
        conns.values().filter(|s| !s.is_empty()).count()
    }

    /// Sizes of the subscription `REQ` frames accepted, in order.
    pub fn req_sizes(&self) -> Vec<usize> {
        self.sizes.lock().expect("sizes").clone()
    }

    /// `REQ`s refused so far.
    pub fn refused(&self) -> usize {
        self.refused.load(Ordering::SeqCst)
    }

    /// The bunker keys of every subscription `REQ` received (the stall probes, which ask
    /// for `limit 0`, left out), in order.
    pub fn subscribed_keys(&self) -> Vec<Vec<PublicKey>> {
        let reqs = self.reqs.lock().expect("reqs");
        reqs.iter()
            .filter(|f| f[2].get("limit").is_none())
            .map(|f| keys_of(&f[2]).into_iter().collect())
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

/// The `#p` keys of a filter.
fn keys_of(filter: &Value) -> BTreeSet<PublicKey> {
    filter["#p"]
        .as_array()
        .map(|keys| {
            keys.iter()
                .map(|k| PublicKey::from_hex(k.as_str().expect("hex")).expect("key"))
                .collect()
        })
        .unwrap_or_default()
}

/// Waits until `done` holds, for at most `within`.
pub async fn until(within: std::time::Duration, what: &str, mut done: impl FnMut() -> bool) {
    keycast_test_support::eventually(within, what, || std::future::ready(done())).await;
}
