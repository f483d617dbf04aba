//! HTTP RPC load: `POST /api/nostr` `sign_event` with each authorization's bearer token
//! in turn; an answer counts as correct when it is a 200 carrying an event signed by the
//! expected key.
//!
//! Requests go over a fixed set of keep-alive connections (as wrk2 does), all opened
//! during the warm-up: a request due while every connection is busy waits for one, and
//! that wait counts in its latency. Without the cap the client would open a connection
//! per concurrent request, and the server's open fds would follow every latency spike.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use keycast_core::nostr::{Event, JsonUtil, PublicKey, Timestamp};
use serde_json::{json, Value};
use tokio::sync::Semaphore;

/// Sends HTTP RPC requests round-robin over a set of tokens, at most one per connection
/// at a time.
#[derive(Debug, Clone)]
pub struct HttpLoad {
    http: reqwest::Client,
    connections: Arc<Semaphore>,
    size: usize,
    url: Arc<str>,
    tokens: Arc<[String]>,
    user: PublicKey,
}

impl HttpLoad {
    /// A client of `connections` (at least 1) keep-alive connections to `base`.
    pub fn new(
        base: &str,
        connections: usize,
        tokens: Vec<String>,
        user: PublicKey,
    ) -> Result<Self, String> {
        let size = connections.max(1);
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .pool_max_idle_per_host(size)
            .pool_idle_timeout(None::<Duration>)
            .build()
            .map_err(|e| format!("http client: {e}"))?;
        Ok(Self {
            http,
            connections: Arc::new(Semaphore::new(size)),
            size,
            url: format!("{base}/api/nostr").into(),
            tokens: tokens.into(),
            user,
        })
    }

    /// Request `i`: a kind 1 note signed with token `i % tokens`.
    pub fn request(&self, i: u64) -> impl Future<Output = Result<(), String>> + Send + 'static {
        let this = self.clone();
        async move {
            let _connection = this
                .connections
                .acquire()
                .await
                .map_err(|_| "http: client closed".to_owned())?;
            let token = &this.tokens[(i % this.tokens.len() as u64) as usize];
            let body = json!({"method": "sign_event", "params": [template(i)]});
            let response = this
                .http
                .post(&*this.url)
                .bearer_auth(token)
                .json(&body)
                .send()
                .await
                .map_err(|e| transport_error(&e))?;
            let status = response.status();
            if !status.is_success() {
                return Err(format!("http {}", status.as_u16()));
            }
            let answer: Value = response
                .json()
                .await
                .map_err(|_| "http: unreadable body".to_owned())?;
            check_signed(answer["result"].as_str(), this.user)
        }
    }

    /// Not counted: as many requests at once as there are connections (which opens them
    /// all), then one per token, one after another (which loads every token, authorization
    /// and the key into the server's caches).
    pub async fn warm_up(&self) -> Result<(), String> {
        let mut opening = tokio::task::JoinSet::new();
        for i in 0..self.size as u64 {
            opening.spawn(self.request(i));
        }
        while let Some(done) = opening.join_next().await {
            done.map_err(|e| format!("HTTP RPC warm-up: {e}"))?
                .map_err(|e| format!("HTTP RPC warm-up: {e}"))?;
        }
        for i in 0..self.tokens.len() as u64 {
            self.request(i)
                .await
                .map_err(|e| format!("HTTP RPC warm-up: {e}"))?;
        }
        Ok(())
    }
}

/// A `sign_event` template, as the JSON string NIP-46 passes.
pub fn template(i: u64) -> String {
    json!({
        "kind": 1,
        "content": format!("keycast-bench {i}"),
        "tags": [],
        "created_at": Timestamp::now().as_secs(),
    })
    .to_string()
}

/// `Ok` if `result` is an event with a valid signature by `user`.
pub fn check_signed(result: Option<&str>, user: PublicKey) -> Result<(), String> {
    let event = Event::from_json(result.ok_or("no result")?).map_err(|_| "result: not an event")?;
    event.verify().map_err(|_| "result: bad signature")?;
    if event.pubkey != user {
        return Err("result: signed by another key".into());
    }
    Ok(())
}

fn transport_error(e: &reqwest::Error) -> String {
    if e.is_connect() {
        "http: connect".into()
    } else if e.is_timeout() {
        "timeout".into()
    } else {
        "http: transport".into()
    }
}
