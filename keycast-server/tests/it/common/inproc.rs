//! The router in-process (`oneshot`) over a fresh data dir: on SQLite, or with
//! `KEYCAST_TEST_DATABASE=postgres` on a fresh Postgres database (see
//! [`super::flow_database`]), so every in-process flow runs on both.
//!
//! `oneshot` has no TCP peer, so [`send`] inserts the `ConnectInfo<SocketAddr>` that
//! `serve` would: 127.0.0.1 unless the request already carries one ([`from_peer`]), as
//! the limits per client address need it (without one the router answers 500 there).

use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use keycast_server::{app, AppState, Config};
use serde_json::{json, Value};
use tower::ServiceExt;

/// App state over a private data dir, removed on drop.
pub struct Api {
    pub state: AppState,
    dir: std::path::PathBuf,
    postgres: Option<keycast_storage::testing::FreshDb>,
}

impl Api {
    /// Extra settings as `(variable, value)`.
    pub async fn new(settings: &[(&str, &str)]) -> Self {
        let dir = std::env::temp_dir().join(format!("keycast-api-{}", uuid::Uuid::new_v4()));
        let d = dir.display().to_string();
        let mut settings: Vec<(String, String)> = settings
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        // A test that names its own database keeps it.
        let postgres = if settings.iter().any(|(k, _)| k == "KEYCAST_DATABASE_URL") {
            None
        } else {
            super::flow_database().await
        };
        if let Some(db) = &postgres {
            settings.push(("KEYCAST_DATABASE_URL".into(), db.url.clone()));
        }
        let config = Config::load(None, |k| {
            if k == "KEYCAST_DATA_DIR" {
                return Some(d.clone());
            }
            settings
                .iter()
                .find(|(name, _)| name == k)
                .map(|(_, v)| v.clone())
        })
        .expect("config");
        if postgres.is_some() {
            assert!(
                config.database_url.starts_with("postgres"),
                "in-process on Postgres"
            );
        }
        let services = keycast_server::services::Services::open(&config, None)
            .await
            .expect("services");
        Self {
            state: AppState::new(services, None),
            dir,
            postgres,
        }
    }

    /// A request with an optional bearer token and JSON body; the status and JSON answer
    /// (`null` when the body is empty or not JSON).
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        self.call_at(None, method, path, token, body).await
    }

    /// [`Api::call`] with a `Host` header when `host` is set.
    pub async fn call_at(
        &self,
        host: Option<&str>,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        self.call_full(host, None, method, path, token, body)
            .await
            .0
    }

    /// [`Api::call`] from the TCP peer `peer`; the status, the JSON answer and the
    /// `Retry-After` seconds, if any.
    pub async fn call_from(
        &self,
        peer: &str,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> ((StatusCode, Value), Option<u64>) {
        self.call_full(None, Some(peer), method, path, token, body)
            .await
    }

    async fn call_full(
        &self,
        host: Option<&str>,
        peer: Option<&str>,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> ((StatusCode, Value), Option<u64>) {
        let mut r = Request::builder().method(method).uri(path);
        if let Some(h) = host {
            r = r.header("host", h);
        }
        if let Some(t) = token {
            r = r.header("authorization", format!("Bearer {t}"));
        }
        let body = match body {
            Some(b) => {
                r = r.header("content-type", "application/json");
                Body::from(b.to_string())
            }
            None => Body::empty(),
        };
        let mut request = r.body(body).expect("request");
        if let Some(peer) = peer {
            request = from_peer(request, peer);
        }
        send_full(&self.state, request).await
    }

    /// Registers `email` and logs in; returns the session token.
    pub async fn account(&self, email: &str) -> String {
        let creds = json!({"email": email, "password": "correct horse battery"});
        let (status, body) = self
            .call("POST", "/api/auth/register", None, Some(creds.clone()))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        let (status, body) = self
            .call("POST", "/api/auth/login", None, Some(creds))
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["token"].as_str().expect("token").to_owned()
    }
}

impl Api {
    /// Asks for a code confirming a key export and reads it from the mail the server wrote
    /// to its data dir (no SMTP is set in-process).
    pub async fn export_code(&self, session: &str) -> String {
        self.confirm_code(session, "export_key").await
    }

    /// Asks for a code confirming `action` and reads it from the mail written to the data dir.
    pub async fn confirm_code(&self, session: &str, action: &str) -> String {
        let (status, body) = self
            .call(
                "POST",
                "/api/auth/confirm/request",
                Some(session),
                Some(json!({ "action": action })),
            )
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        super::smtp::token_in(&self.newest_mail())
    }

    /// The newest message the server wrote to its data dir (no SMTP is set in-process).
    pub fn newest_mail(&self) -> String {
        let dir = self.state.services.config.data_dir.join("mail");
        let newest = std::fs::read_dir(&dir)
            .expect("mail dir")
            .filter_map(|e| e.ok())
            .max_by_key(|e| e.metadata().and_then(|m| m.modified()).ok())
            .expect("a message");
        std::fs::read_to_string(newest.path()).expect("message")
    }
}

impl Drop for Api {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
        if let Some(db) = self.postgres.take() {
            super::drop_database(db);
        }
    }
}

/// `request` as if it came from the TCP peer `ip` (an IPv4 or IPv6 address).
pub fn from_peer<B>(mut request: Request<B>, ip: &str) -> Request<B> {
    let ip: std::net::IpAddr = ip.parse().expect("peer address");
    request
        .extensions_mut()
        .insert(ConnectInfo(SocketAddr::new(ip, 40000)));
    request
}

/// `request` from 127.0.0.1 unless it names its peer already (see the module docs).
pub fn with_peer<B>(request: Request<B>) -> Request<B> {
    if request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .is_some()
    {
        return request;
    }
    from_peer(request, "127.0.0.1")
}

/// Sends one request through the router; the status and JSON answer (`null` when the
/// body is empty or not JSON).
pub async fn send(state: &AppState, request: Request<Body>) -> (StatusCode, Value) {
    send_full(state, request).await.0
}

/// [`send`], and the `Retry-After` seconds if any.
pub async fn send_full(
    state: &AppState,
    request: Request<Body>,
) -> ((StatusCode, Value), Option<u64>) {
    let response = app(state.clone())
        .oneshot(with_peer(request))
        .await
        .expect("response");
    let retry_after = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    let status = response.status();
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    (
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        ),
        retry_after,
    )
}

/// `sign_event` of an empty event of `kind` over HTTP RPC with `token`; the status.
pub async fn sign(api: &Api, token: &str, kind: u16) -> StatusCode {
    let template = json!({"kind": kind, "content": "hi", "tags": []}).to_string();
    let body = json!({"method": "sign_event", "params": [template]});
    api.call("POST", "/api/nostr", Some(token), Some(body))
        .await
        .0
}

/// A JSON error body: `{"error":{"code","message"}}`.
pub fn is_error(body: &Value) -> bool {
    body["error"]["code"].is_string() && body["error"]["message"].is_string()
}
