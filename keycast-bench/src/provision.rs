//! What the load needs, made over the server's HTTP API: an account, one key, and
//! authorizations of it, each with its `bunker://` URI (NIP-46) and bearer token (HTTP
//! RPC).

use keycast_core::nostr::PublicKey;
use keycast_nip46::BunkerUri;
use serde_json::{json, Value};

/// One authorization: how an app reaches the key over NIP-46 and over HTTP RPC.
#[derive(Debug, Clone)]
pub struct App {
    pub bunker: BunkerUri,
    pub token: String,
}

/// The key every authorization signs with, and the authorizations.
#[derive(Debug)]
pub struct Provisioned {
    pub user: PublicKey,
    pub apps: Vec<App>,
}

/// Registers a fresh account on `base` (a random e-mail, so a running server can be
/// reused), logs in, creates a key and `count` full-access authorizations of it.
pub async fn provision(
    http: &reqwest::Client,
    base: &str,
    count: usize,
) -> Result<Provisioned, String> {
    let email = format!("bench-{:016x}@example.com", rand::random::<u64>());
    let creds = json!({"email": email, "password": "correct horse battery staple"});
    post(http, base, "/api/auth/register", None, &creds, 201).await?;
    let login = post(http, base, "/api/auth/login", None, &creds, 200).await?;
    let session = field(&login, "token")?;
    let key = post(
        http,
        base,
        "/api/keys",
        Some(&session),
        &json!({"name": "keycast-bench"}),
        201,
    )
    .await?;
    let user = PublicKey::from_hex(&field(&key, "pubkey")?).map_err(|e| format!("pubkey: {e}"))?;
    let mut apps = Vec::with_capacity(count);
    for i in 0..count {
        let body = json!({"key_id": key["id"], "label": format!("keycast-bench {i}")});
        let created = post(
            http,
            base,
            "/api/authorizations",
            Some(&session),
            &body,
            201,
        )
        .await?;
        let bunker = BunkerUri::parse(&field(&created, "bunker_uri")?)
            .map_err(|e| format!("bunker_uri: {e}"))?;
        if bunker.secret.is_none() || bunker.relays.is_empty() {
            return Err(format!("bunker_uri without a secret or relays: {created}"));
        }
        apps.push(App {
            bunker,
            token: field(&created, "token")?,
        });
    }
    Ok(Provisioned { user, apps })
}

/// A JSON POST expecting `status`; its JSON answer.
async fn post(
    http: &reqwest::Client,
    base: &str,
    path: &str,
    bearer: Option<&str>,
    body: &Value,
    status: u16,
) -> Result<Value, String> {
    let mut request = http.post(format!("{base}{path}")).json(body);
    if let Some(token) = bearer {
        request = request.bearer_auth(token);
    }
    let response = request
        .send()
        .await
        .map_err(|e| format!("POST {path}: {e}"))?;
    let got = response.status().as_u16();
    let answer: Value = response.json().await.unwrap_or(Value::Null);
    if got != status {
        return Err(format!("POST {path}: {got} (want {status}): {answer}"));
    }
    Ok(answer)
}

fn field(v: &Value, name: &str) -> Result<String, String> {
    v[name]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| format!("answer without {name:?}: {v}"))
}
