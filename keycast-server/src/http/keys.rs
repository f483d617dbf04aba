//! The logged-in account's keys: generate or import, list, rename, delete. Export is a
//! separate, audited call under `/danger/` (`export.rs`).
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
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::accounts::CurrentUser;
use super::error::{json_body, ErrorBody};
use super::{ApiError, AppState};

/// A key to store: send nothing to generate one, `secret` to import an nsec or 64 hex
/// characters, or `ncryptsec` with `password` to import a NIP-49 key.
// No `Debug`: it holds secrets.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(missing_debug_implementations)]
pub(crate) struct NewKey {
    /// A label (default `main`): 1–100 characters, no control characters.
    #[schema(min_length = 1, max_length = 100)]
    name: Option<String>,
    /// An nsec or 64 hex characters to import.
    #[schema(value_type = Option<String>, format = Password)]
    secret: Option<Zeroizing<String>>,
    /// A NIP-49 `ncryptsec1…` to import, with `password`.
    ncryptsec: Option<String>,
    /// The ncryptsec's password.
    #[schema(value_type = Option<String>, format = Password)]
    password: Option<Zeroizing<String>>,
}

impl NewKey {
    /// A key to generate, named `name` (the web UI's "add a generated key").
    pub(crate) fn generated(name: String) -> Self {
        Self {
            name: Some(name),
            secret: None,
            ncryptsec: None,
            password: None,
        }
    }
}

/// A new label.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Rename {
    /// 1–100 characters, no control characters.
    #[schema(min_length = 1, max_length = 100)]
    name: String,
}

/// A stored key (never its secret).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct KeyView {
    /// Its id.
    #[schema(value_type = String)]
    id: KeyId,
    /// Its label.
    name: String,
    /// Hex pubkey.
    pubkey: String,
    /// Bech32 pubkey.
    npub: String,
    /// Unix seconds.
    created_at: u64,
}

/// The account's keys.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct KeyList {
    /// Oldest first.
    pub(crate) keys: Vec<KeyView>,
}

pub(crate) fn key_json(k: &StoredKey) -> KeyView {
    KeyView {
        id: k.id,
        name: k.name.as_str().to_owned(),
        pubkey: k.pubkey.to_hex(),
        npub: k.pubkey.to_bech32().unwrap_or_default(),
        created_at: k.created_at.as_secs(),
    }
}

/// Most scrypt cost (2^log_n, 256 MiB at 18) accepted for import and export: nostr's
/// own NIP-49 decryption refuses more by default.
pub(crate) const MAX_LOG_N: u8 = EncryptedSecretKey::MAX_LOG_N;

/// One of the few NIP-49 slots, or 503 (retry) when all are busy.
pub(crate) fn scrypt_slot(state: &AppState) -> Result<tokio::sync::SemaphorePermit<'_>, ApiError> {
    state.scrypt_slots.try_acquire().map_err(|_| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "overloaded",
            "too many key imports or exports at once; retry",
        )
    })
}

/// The secret key an import names: nothing (generate), an nsec or 64 hex characters, or a
/// NIP-49 ncryptsec with its password (scrypt, off the runtime, in one of the few slots).
/// Shared by key creation and registration; errors use the request's field `names`
/// (secret, ncryptsec, its password).
pub(crate) async fn imported_secret(
    state: &AppState,
    names: [&str; 3],
    secret: Option<Zeroizing<String>>,
    ncryptsec: Option<String>,
    password: Option<Zeroizing<String>>,
) -> Result<Option<SecretKey>, ApiError> {
    let [secret_field, ncryptsec_field, password_field] = names;
    Ok(match (secret, ncryptsec, password) {
        (None, None, None) => None,
        (Some(s), None, None) => Some(
            SecretKey::parse(s.trim())
                .map_err(|_| {
                    ApiError::bad_request(format!("{secret_field}: not an nsec or 64 hex characters"))
                })?,
        ),
        (None, Some(n), Some(p)) => {
            let encrypted = EncryptedSecretKey::from_bech32(n.trim())
                .map_err(|_| ApiError::bad_request(format!("{ncryptsec_field}: not a NIP-49 key")))?;
            if encrypted.log_n() > MAX_LOG_N {
                return Err(ApiError::bad_request(format!(
                    "{ncryptsec_field}: its scrypt cost (log_n {}) is over {MAX_LOG_N}",
                    encrypted.log_n()
                )));
            }
            let _slot = scrypt_slot(state)?;
            // scrypt: off the runtime.
            let key = tokio::task::spawn_blocking(move || encrypted.decrypt(p.as_str()))
                .await
                .map_err(|_| ApiError::bad_request(format!("{ncryptsec_field}: cannot decrypt")))?
                .map_err(|_| {
                    ApiError::bad_request(format!("{ncryptsec_field}: wrong password or damaged"))
                })?;
            Some(key)
        }
        _ => {
            return Err(ApiError::bad_request(format!(
                "send no key (generate), `{secret_field}`, or `{ncryptsec_field}` with `{password_field}`"
            )))
        }
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

/// The current account's keys.
#[utoipa::path(get, path = "/api/keys", tag = "keys", security(("session" = [])),
    responses((status = 200, description = "The keys", body = KeyList)))]
pub(crate) async fn list(
    State(state): State<AppState>,
    current: CurrentUser,
) -> Result<Json<KeyList>, ApiError> {
    let keys = state
        .services
        .store
        .list_keys(current.tenant_id, Some(current.user_id))
        .await?;
    let keys = keys
        .iter()
        .filter(|k| k.kind == KeyKind::User)
        .map(key_json)
        .collect();
    Ok(Json(KeyList { keys }))
}

/// Generates a key, or imports one (nsec, hex, or NIP-49 with its password).
#[utoipa::path(post, path = "/api/keys", tag = "keys", request_body = NewKey,
    security(("session" = [])), responses(
        (status = 201, description = "Stored", body = KeyView),
        (status = 400, description = "Not a key, wrong password, or a bad combination", body = ErrorBody),
        (status = 403, description = "With SMTP configured: the account's e-mail is not verified yet (`email_unverified`)", body = ErrorBody),
        (status = 409, description = "This key is already stored", body = ErrorBody),
        (status = 503, description = "Too many NIP-49 imports or exports at once; retry", body = ErrorBody)))]
pub(crate) async fn create(
    State(state): State<AppState>,
    current: CurrentUser,
    b: Result<Json<NewKey>, JsonRejection>,
) -> Result<Response, ApiError> {
    super::verified::require(&state, current.user_id).await?;
    let (name, secret) = new_key(&state, json_body(b)?).await?;
    let key = state
        .services
        .custody
        .create_key(
            keycast_core::NewKey::generate(
                current.tenant_id,
                keycast_core::Holder::User(current.user_id),
                KeyKind::User,
                name,
            )
            .with_secret(secret),
        )
        .await?;
    Ok((StatusCode::CREATED, Json(key_json(&key))).into_response())
}

/// The label and the secret (or `None`: generate) a [`NewKey`] asks for.
pub(crate) async fn new_key(
    state: &AppState,
    b: NewKey,
) -> Result<(Label, Option<SecretKey>), ApiError> {
    let name = Label::parse(b.name.as_deref().unwrap_or("main"))?;
    let names = ["secret", "ncryptsec", "password"];
    let secret = imported_secret(state, names, b.secret, b.ncryptsec, b.password).await?;
    Ok((name, secret))
}

/// Renames one of the account's keys.
#[utoipa::path(patch, path = "/api/keys/{id}", tag = "keys", params(("id" = String, Path, description = "The key id")),
    request_body = Rename, security(("session" = [])), responses(
        (status = 200, description = "Renamed", body = KeyView),
        (status = 404, description = "No such key of this account", body = ErrorBody)))]
pub(crate) async fn rename(
    State(state): State<AppState>,
    current: CurrentUser,
    Path(id): Path<String>,
    b: Result<Json<Rename>, JsonRejection>,
) -> Result<Json<KeyView>, ApiError> {
    let key = owned(&state, &current, &id).await?;
    let name = Label::parse(&json_body(b)?.name)?;
    let key = state.services.store.rename_key(key.id, &name).await?;
    Ok(Json(key_json(&key)))
}

/// Deletes the key with its authorizations and their tokens; answers the deleted key. Apps
/// are refused from then on: here at once, on other instances after the change feed's poll.
#[utoipa::path(delete, path = "/api/keys/{id}", tag = "keys", params(("id" = String, Path, description = "The key id")),
    security(("session" = [])), responses(
        (status = 200, description = "Deleted; the key as it was", body = KeyView),
        (status = 404, description = "No such key of this account", body = ErrorBody)))]
pub(crate) async fn delete(
    State(state): State<AppState>,
    current: CurrentUser,
    Path(id): Path<String>,
) -> Result<Json<KeyView>, ApiError> {
    let key = owned(&state, &current, &id).await?;
    Ok(Json(key_json(&delete_now(&state, key.id).await?)))
}

/// Deletes `id` (the caller checked who may) and stops listening for its authorizations'
/// bunker keys now, not at the next poll.
pub(crate) async fn delete_now(state: &AppState, id: KeyId) -> Result<StoredKey, ApiError> {
    let deleted = state.services.custody.delete_key(id).await?;
    if let Some(bunker) = &state.bunker {
        if let Err(e) = bunker.refresh_subscription().await {
            tracing::warn!(error = %e, "cannot refresh the NIP-46 subscription");
        }
    }
    tracing::info!(key = %deleted.id, "key deleted");
    Ok(deleted)
}
