//! `POST /api/nostr`: the NIP-46 methods over HTTP, `{"method","params"}` in and
//! `{"result"}` out (the same strings NIP-46 returns), with a bearer token bound to one
//! authorization or a NIP-98 header (see `nip98`).
//!
//! The hot path reads no database: tokens are cached by digest, and the engine caches the
//! authorization and the signing key (the change feed keeps both fresh, see `fence`). A
//! cached token whose authorization was deleted with its key is dropped on its next use.

use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::Json;
use keycast_core::nostr::Timestamp;
use keycast_core::{ApiToken, AuthorizationId, Caller, SecretDigest};
use keycast_nip46::{result_text, Command};
use serde::Deserialize;
use serde_json::Value;

use super::{ApiError, AppState, HostTenant};

/// The request body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RpcRequest {
    /// A NIP-46 method; the session methods (`connect`, …) have no meaning over HTTP.
    #[schema(value_type = RpcMethod)]
    method: String,
    /// The method's NIP-46 params (strings; `sign_event` also takes the event object).
    #[serde(default)]
    params: Vec<Value>,
}

/// The NIP-46 methods HTTP RPC runs (documentation only: the handler parses the name
/// with keycast-nip46's `Command::parse`, and answers others with 400).
#[derive(utoipa::ToSchema)]
#[schema(rename_all = "snake_case")]
#[allow(dead_code)]
pub(crate) enum RpcMethod {
    SignEvent,
    GetPublicKey,
    Nip04Encrypt,
    Nip04Decrypt,
    Nip44Encrypt,
    Nip44Decrypt,
    Ping,
}

/// The answer: the string NIP-46 would return.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub(crate) struct RpcResult {
    /// A signed event's JSON, a hex pubkey, a ciphertext, a plaintext or `pong`.
    result: String,
}

/// Known tokens by digest. Misses are not cached, so unknown tokens cannot fill it.
pub type TokenCache = moka::sync::Cache<SecretDigest, ApiToken>;

/// A token cache sized for a large install.
pub fn token_cache() -> TokenCache {
    moka::sync::Cache::builder()
        .max_capacity(100_000)
        .time_to_idle(Duration::from_secs(3600))
        .build()
}

/// Runs one NIP-46 method with the key of the authorization the credential is bound to.
#[utoipa::path(post, path = "/api/nostr", tag = "rpc",
    request_body = RpcRequest,
    security(("token" = []), ("nip98" = [])),
    responses(
        (status = 200, description = "The method's result", body = RpcResult),
        (status = 400, description = "Bad method or params", body = super::error::ErrorBody),
        (status = 401, description = "Missing, unknown, expired or revoked credential", body = super::error::ErrorBody),
        (status = 403, description = "The authorization's policy refuses it", body = super::error::ErrorBody),
        (status = 415, description = "Not JSON", body = super::error::ErrorBody),
        (status = 422, description = "JSON of the wrong shape", body = super::error::ErrorBody),
        (status = 503, description = "Overloaded or a backend is unavailable; retry", body = super::error::ErrorBody)))]
pub(crate) async fn rpc(
    State(state): State<AppState>,
    HostTenant(tenant): HostTenant,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<RpcResult>, ApiError> {
    state.counters.rpc_requests.fetch_add(1, Ordering::Relaxed);
    let body = body.map_err(|e| ApiError::new(e.status(), "invalid_input", e.body_text()))?;
    let authorization_id = match authenticate_any(&state, tenant, &headers, &body).await {
        Ok(id) => id,
        Err(e) => {
            state
                .counters
                .rpc_auth_errors
                .fetch_add(1, Ordering::Relaxed);
            return Err(e);
        }
    };
    let custody = &state.services.custody;
    let answered = match parse_call(&headers, &body)? {
        Call::Run(request) => {
            let caller = Caller::Authorization(authorization_id);
            custody.handle(caller, request).await.map(Answer::Response)
        }
        // The same checks a real call gets before it runs: a revoked, expired or deleted
        // authorization's token must not look alive.
        Call::Ping => match custody.authorization(authorization_id).await {
            Ok(a) => a.check_active(Timestamp::now()).map(|()| Answer::Pong),
            Err(e) => Err(e),
        },
    };
    match answered {
        Ok(Answer::Pong) => Ok(Json(RpcResult {
            result: "pong".to_owned(),
        })),
        Ok(Answer::Response(response)) => Ok(Json(RpcResult {
            result: result_text(response)?,
        })),
        Err(e @ (keycast_core::Error::Revoked | keycast_core::Error::Expired)) => {
            state
                .counters
                .rpc_auth_errors
                .fetch_add(1, Ordering::Relaxed);
            Err(e.into())
        }
        // The authorization was deleted with its key (the change feed evicted it from the
        // engine): the credential is dead, and its cached token goes too.
        Err(keycast_core::Error::NotFound { .. }) => {
            if let Some(digest) = super::error::bearer_digest(&headers) {
                state.tokens.invalidate(&digest);
            }
            state
                .counters
                .rpc_auth_errors
                .fetch_add(1, Ordering::Relaxed);
            Err(ApiError::unauthorized("the authorization no longer exists"))
        }
        Err(e) => Err(e.into()),
    }
}

/// What a call answered.
enum Answer {
    Pong,
    Response(keycast_core::Response),
}

/// What a body asks for.
#[derive(Debug)]
enum Call {
    /// `ping`: answered `pong` while the authorization is usable, without running any
    /// operation.
    Ping,
    /// A custody operation.
    Run(keycast_core::Request),
}

/// The body's method and params, parsed as keycast-nip46 parses NIP-46 requests. Session
/// methods (`connect`, …) and unknown ones are 400.
fn parse_call(headers: &HeaderMap, body: &[u8]) -> Result<Call, ApiError> {
    let body = parse_body(headers, body)?;
    let command = Command::parse(&body.method, &body.params)
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    match command.into_request().map_err(|c| *c) {
        Ok(request) => Ok(Call::Run(request)),
        Err(Command::Ping) => Ok(Call::Ping),
        Err(Command::Unknown(method)) => {
            Err(ApiError::bad_request(format!("unknown method: {method}")))
        }
        Err(session) => Err(ApiError::bad_request(format!(
            "{} is a NIP-46 session method; it has no meaning over HTTP",
            session.method()
        ))),
    }
}

/// For the `rpc_body` fuzz target: `data` as a `POST /api/nostr` body (JSON content type)
/// through the handler's parsing. It must return, never panic: a request, `ping`, or a
/// 400/422 error; the same answer when asked twice; and a parsed request's method is the
/// one the body named.
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub fn fuzz_rpc_body(data: &[u8]) {
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    let call = parse_call(&headers, data);
    let again = parse_call(&headers, data);
    assert_eq!(format!("{call:?}"), format!("{again:?}"), "deterministic");
    match call {
        Ok(Call::Ping) => {}
        Ok(Call::Run(request)) => {
            let body: Value = serde_json::from_slice(data).expect("a parsed body is JSON");
            assert_eq!(body["method"].as_str(), Some(request.method().as_str()));
        }
        Err(e) => {
            assert!(
                matches!(
                    e.status,
                    StatusCode::BAD_REQUEST | StatusCode::UNPROCESSABLE_ENTITY
                ),
                "{e:?}"
            );
            assert!(!e.message.is_empty());
        }
    }
}

/// A JSON body: 415 without a JSON content type, 400 when it is not JSON, 422 when it is
/// JSON of the wrong shape (as axum's `Json` would answer).
fn parse_body(headers: &HeaderMap, body: &[u8]) -> Result<RpcRequest, ApiError> {
    let json_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            let essence = v.split(';').next().unwrap_or("").trim();
            essence.eq_ignore_ascii_case("application/json")
        });
    if !json_type {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "invalid_input",
            "send Content-Type: application/json",
        ));
    }
    serde_json::from_slice(body).map_err(|e| {
        let status = match e.classify() {
            serde_json::error::Category::Data => StatusCode::UNPROCESSABLE_ENTITY,
            _ => StatusCode::BAD_REQUEST,
        };
        ApiError::new(status, "invalid_input", format!("body: {e}"))
    })
}

/// Bearer token or NIP-98, by the `Authorization` scheme; a credential of another tenant
/// than the host's is refused as unknown.
async fn authenticate_any(
    state: &AppState,
    tenant: keycast_core::TenantId,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<AuthorizationId, ApiError> {
    let value = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if let Some(nostr) = value.filter(|v| v.starts_with("Nostr ")) {
        return super::nip98::authenticate(state, tenant, headers, nostr, body).await;
    }
    let token = authenticate(state, headers).await?;
    if token.tenant_id != tenant {
        return Err(ApiError::unauthorized("unknown token"));
    }
    Ok(token.authorization_id)
}

/// The token of `Authorization: Bearer …`, checked against the cache, then the store.
async fn authenticate(state: &AppState, headers: &HeaderMap) -> Result<ApiToken, ApiError> {
    let digest = super::error::bearer_digest(headers).ok_or_else(|| {
        ApiError::unauthorized("send Authorization: Bearer <token> or a NIP-98 Nostr header")
    })?;
    let token = match state.tokens.get(&digest) {
        Some(t) => t,
        None => match state.services.store.find_token(&digest).await {
            Ok(t) => {
                state.tokens.insert(digest, t.clone());
                t
            }
            Err(keycast_core::Error::NotFound { .. }) => {
                return Err(ApiError::unauthorized("unknown token"))
            }
            Err(e) => return Err(e.into()),
        },
    };
    if token.expires_at.is_some_and(|at| at <= Timestamp::now()) {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "expired",
            "token expired",
        ));
    }
    Ok(token)
}

#[cfg(test)]
mod tests {
    use keycast_nip46::Command;
    use utoipa::PartialSchema;

    use super::RpcMethod;

    /// The method names the document lists are ones the handler knows.
    #[test]
    fn every_documented_method_is_one_keycast_parses() {
        let schema = serde_json::to_value(RpcMethod::schema()).expect("schema");
        let names = schema["enum"].as_array().expect("an enum of names");
        assert_eq!(names.len(), 7);
        for name in names {
            let name = name.as_str().expect("a name");
            assert!(
                !matches!(Command::parse(name, &[]), Ok(Command::Unknown(_))),
                "{name} is documented but unknown"
            );
        }
        assert!(matches!(
            Command::parse("no_such_method", &[]),
            Ok(Command::Unknown(_))
        ));
    }
}
