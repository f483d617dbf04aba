//! Run with cargo run -p example-axum-embed
//!
//! The custody engine inside another axum app that has its own users and its own auth (an
//! API key per user, in `x-api-key`). The app decides who is asking; keycast holds each
//! user's Nostr key sealed and signs for them as the key's owner (`Caller::Owner`), with
//! every signature audited. The secret never reaches the app's handlers.
//!
//! Without arguments it answers a few requests in-process (no port) and checks them; with
//! `--listen 127.0.0.1:8080` it serves:
//!
//! ```sh
//! curl -s localhost:8080/notes -H 'x-api-key: alice-secret-api-key' \
//!     -H 'content-type: application/json' -d '{"content":"hello"}'
//! ```

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, Request, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use keycast_core::nostr::{Event, JsonUtil, Kind};
use keycast_core::*;
use subtle::ConstantTimeEq;
use tower::ServiceExt;

/// The host app's state: its own users, and the engine holding their keys.
#[derive(Debug, Clone)]
struct App {
    custody: Custody,
    /// API key → the user's key in custody. The app's own auth; keycast does not see it.
    users: Arc<HashMap<String, KeyId>>,
}

impl App {
    /// The app's authentication: which user's key this request may use.
    fn authenticate(&self, headers: &HeaderMap) -> Result<KeyId, (StatusCode, String)> {
        let presented = headers
            .get("x-api-key")
            .and_then(|v| v.to_str().ok())
            .ok_or((StatusCode::UNAUTHORIZED, "send x-api-key".to_owned()))?;
        self.users
            .iter()
            .find(|(k, _)| bool::from(k.as_bytes().ct_eq(presented.as_bytes())))
            .map(|(_, key)| *key)
            .ok_or((StatusCode::UNAUTHORIZED, "unknown API key".to_owned()))
    }
}

#[derive(Debug, serde::Deserialize)]
struct NewNote {
    content: String,
}

/// Maps engine errors onto statuses the app's clients understand.
fn refused(e: Error) -> (StatusCode, String) {
    let status = match &e {
        Error::InvalidInput { .. } => StatusCode::UNPROCESSABLE_ENTITY,
        Error::Denied(_) => StatusCode::FORBIDDEN,
        e if e.is_retryable() => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    (status, e.to_string())
}

async fn post_note(
    State(app): State<App>,
    headers: HeaderMap,
    Json(note): Json<NewNote>,
) -> Result<Json<serde_json::Value>, (StatusCode, String)> {
    let key = app.authenticate(&headers)?;
    let event = app
        .custody
        .sign_event(
            Caller::Owner(key),
            EventTemplate::new(Kind::TextNote, note.content),
        )
        .await
        .map_err(refused)?;
    serde_json::from_str(&event.as_json())
        .map(Json)
        .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
}

async fn pubkey(
    State(app): State<App>,
    headers: HeaderMap,
) -> Result<String, (StatusCode, String)> {
    let key = app.authenticate(&headers)?;
    let pubkey = app.custody.public_key_of(key).await.map_err(refused)?;
    Ok(pubkey.to_hex())
}

fn router(app: App) -> Router {
    Router::new()
        .route("/notes", post(post_note))
        .route("/pubkey", get(pubkey))
        .with_state(app)
}

/// The app's start-up: the engine (in-memory here; SQLite or Postgres and a real key
/// manager in production) and one user with a key.
async fn app() -> Result<App> {
    let store = Arc::new(MemoryKeyStore::new());
    let custody =
        Custody::builder(store.clone(), Arc::new(InsecureTestKeyManager::new())).build()?;
    let tenant = Tenant::new(TenantName::parse("host-app")?);
    store.create_tenant(&tenant).await?;
    let user = User::new(tenant.id, Username::parse("alice")?, None);
    store.create_user(&user).await?;
    let key = custody
        .create_key(NewKey::generate(
            tenant.id,
            Holder::User(user.id),
            KeyKind::User,
            Label::parse("alice")?,
        ))
        .await?;
    let users = HashMap::from([("alice-secret-api-key".to_owned(), key.id)]);
    Ok(App {
        custody,
        users: Arc::new(users),
    })
}

/// One in-process request: status and body.
async fn call(router: &Router, request: Request<axum::body::Body>) -> (StatusCode, String) {
    let response = router.clone().oneshot(request).await.expect("infallible");
    let status = response.status();
    let body = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .expect("body");
    (status, String::from_utf8_lossy(&body).into_owned())
}

fn note_request(api_key: Option<&str>) -> Request<axum::body::Body> {
    let mut r = Request::post("/notes").header("content-type", "application/json");
    if let Some(k) = api_key {
        r = r.header("x-api-key", k);
    }
    r.body(axum::body::Body::from(
        r#"{"content":"hello from the host app"}"#,
    ))
    .expect("request")
}

async fn demo(router: Router) -> std::result::Result<(), Box<dyn std::error::Error>> {
    let (status, _) = call(&router, note_request(None)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = call(&router, note_request(Some("guess"))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    println!("requests without the app's credentials: 401");

    let (status, body) = call(&router, note_request(Some("alice-secret-api-key"))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let event = Event::from_json(&body)?;
    event.verify()?;
    let (_, pubkey) = call(
        &router,
        Request::get("/pubkey")
            .header("x-api-key", "alice-secret-api-key")
            .body(axum::body::Body::empty())?,
    )
    .await;
    assert_eq!(event.pubkey.to_hex(), pubkey);
    println!("alice's note, signed by her key {pubkey}: {}", event.id);
    Ok(())
}

#[tokio::main]
async fn main() -> std::result::Result<(), Box<dyn std::error::Error>> {
    let router = router(app().await?);
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [] => demo(router).await,
        [flag, addr] if flag == "--listen" => {
            let listener = tokio::net::TcpListener::bind(addr).await?;
            println!("listening on {addr}; the API key is alice-secret-api-key");
            axum::serve(listener, router).await?;
            Ok(())
        }
        _ => Err("usage: example-axum-embed [--listen ADDR]".into()),
    }
}
