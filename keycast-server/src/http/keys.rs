//! The logged-in account's keys: generate or import, list, rename, and export (a separate,
//! audited call under `/danger/` that returns a NIP-49 ncryptsec).
//!
//! Another account's key answers 404, the same as a missing one, so ids cannot be probed.

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use keycast_core::nostr::nips::nip49::EncryptedSecretKey;
use keycast_core::nostr::{FromBech32, SecretKey, ToBech32};
use keycast_core::{KeyId, KeyKind, Label, StoredKey};
use serde::Deserialize;
use serde_json::{json, Value};
use zeroize::Zeroizing;

use super::accounts::CurrentUser;
use super::error::json_body;
use super::{ApiError, AppState};
use crate::services::default_tenant;

/// `POST /api/keys`: no secret generates a key; `secret` imports an nsec or 64 hex
/// characters; `ncryptsec` with `password` imports a NIP-49 key. No `Debug`: it holds secrets.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_debug_implementations)]
pub(crate) struct NewKey {
    name: Option<String>,
    secret: Option<Zeroizing<String>>,
    ncryptsec: Option<String>,
    password: Option<Zeroizing<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Rename {
    name: String,
}

/// No `Debug`: it holds a password.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_debug_implementations)]
pub(crate) struct Export {
    password: Zeroizing<String>,
    log_n: Option<u8>,
}

fn key_json(k: &StoredKey) -> Value {
    json!({
        "id": k.id,
        "name": k.name.as_str(),
        "pubkey": k.pubkey.to_hex(),
        "npub": k.pubkey.to_bech32().unwrap_or_default(),
        "created_at": k.created_at.as_secs(),
    })
}

/// The key if it is a user key of the current account; 404 otherwise.
pub(crate) async fn owned(
    state: &AppState,
    current: &CurrentUser,
    id: &str,
) -> Result<StoredKey, ApiError> {
    let not_found = || ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such key");
    let id: KeyId = id.parse().map_err(|_| not_found())?;
    match state.services.store.get_key(id).await {
        Ok(k) if k.owner == Some(current.user_id) && k.kind == KeyKind::User => Ok(k),
        Ok(_) | Err(keycast_core::Error::NotFound { .. }) => Err(not_found()),
        Err(e) => Err(e.into()),
    }
}

pub(crate) async fn list(
    State(state): State<AppState>,
    current: CurrentUser,
) -> Result<Json<Value>, ApiError> {
    let keys = state
        .services
        .store
        .list_keys(default_tenant(), Some(current.user_id))
        .await?;
    let keys: Vec<Value> = keys
        .iter()
        .filter(|k| k.kind == KeyKind::User)
        .map(key_json)
        .collect();
    Ok(Json(json!({ "keys": keys })))
}

pub(crate) async fn create(
    State(state): State<AppState>,
    current: CurrentUser,
    b: Result<Json<NewKey>, JsonRejection>,
) -> Result<Response, ApiError> {
    let b = json_body(b)?;
    let name = Label::parse(b.name.as_deref().unwrap_or("main"))?;
    let secret = match (b.secret, b.ncryptsec, b.password) {
        (None, None, None) => None,
        (Some(s), None, None) => Some(
            SecretKey::parse(s.trim())
                .map_err(|_| ApiError::bad_request("secret: not an nsec or 64 hex characters"))?,
        ),
        (None, Some(n), Some(p)) => {
            let encrypted = EncryptedSecretKey::from_bech32(n.trim())
                .map_err(|_| ApiError::bad_request("ncryptsec: not a NIP-49 key"))?;
            // scrypt: off the runtime.
            let key = tokio::task::spawn_blocking(move || encrypted.decrypt(p.as_str()))
                .await
                .map_err(|_| ApiError::bad_request("ncryptsec: cannot decrypt"))?
                .map_err(|_| ApiError::bad_request("ncryptsec: wrong password or damaged"))?;
            Some(key)
        }
        _ => {
            return Err(ApiError::bad_request(
                "send nothing (generate), `secret`, or `ncryptsec` with `password`",
            ))
        }
    };
    let key = state
        .services
        .custody
        .create_key(
            default_tenant(),
            Some(current.user_id),
            KeyKind::User,
            name,
            secret,
        )
        .await?;
    Ok((StatusCode::CREATED, Json(key_json(&key))).into_response())
}

pub(crate) async fn rename(
    State(state): State<AppState>,
    current: CurrentUser,
    Path(id): Path<String>,
    b: Result<Json<Rename>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let key = owned(&state, &current, &id).await?;
    let name = Label::parse(&json_body(b)?.name)?;
    let key = state.services.store.rename_key(key.id, &name).await?;
    Ok(Json(key_json(&key)))
}

pub(crate) async fn danger_export(
    State(state): State<AppState>,
    current: CurrentUser,
    Path(id): Path<String>,
    b: Result<Json<Export>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let key = owned(&state, &current, &id).await?;
    let b = json_body(b)?;
    if b.password.chars().count() < crate::passwords::MIN_LEN {
        return Err(ApiError::bad_request(format!(
            "password must have at least {} characters",
            crate::passwords::MIN_LEN
        )));
    }
    let ncryptsec = state
        .services
        .custody
        .danger_export_ncryptsec(key.id, b.password, b.log_n.unwrap_or(16))
        .await?;
    tracing::warn!(key = %key.id, user = %current.user_id, "key exported (NIP-49)");
    Ok(Json(json!({ "ncryptsec": ncryptsec })))
}
