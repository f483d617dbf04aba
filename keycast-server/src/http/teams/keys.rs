//! A team's keys: members list them; admins generate, import and delete them. They have no
//! owner, so no account's own key calls (export, replace, rename) reach them.

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use keycast_core::{KeyId, StoredKey};

use super::{membership, Membership};
use crate::http::accounts::CurrentUser;
use crate::http::error::{json_body, ErrorBody};
use crate::http::keys::{key_json, new_key, KeyList, KeyView, NewKey};
use crate::http::{ApiError, AppState};

/// The team key `id`; 404 for anything else.
pub(crate) async fn team_key(
    state: &AppState,
    m: &Membership,
    id: &str,
) -> Result<StoredKey, ApiError> {
    let not_found = || {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "no such key of this team",
        )
    };
    let id: KeyId = id.parse().map_err(|_| not_found())?;
    match state.services.store.get_key(id).await {
        Ok(k) if k.team == Some(m.team.id) && k.tenant_id == m.team.tenant_id => Ok(k),
        Ok(_) | Err(keycast_core::Error::NotFound { .. }) => Err(not_found()),
        Err(e) => Err(e.into()),
    }
}

/// The keys of `m`'s team (anyone who has `m` may see them).
pub(crate) async fn team_keys(
    state: &AppState,
    m: &Membership,
) -> Result<Vec<StoredKey>, ApiError> {
    Ok(state.services.store.list_team_keys(m.team.id).await?)
}

/// The team's keys (members and admins).
#[utoipa::path(get, path = "/api/teams/{id}/keys", tag = "teams",
    params(("id" = String, Path, description = "The team id")), security(("session" = [])),
    responses(
        (status = 200, description = "The keys", body = KeyList),
        (status = 404, description = "No such team of this account", body = ErrorBody)))]
pub(crate) async fn list_keys(
    State(state): State<AppState>,
    current: CurrentUser,
    Path(id): Path<String>,
) -> Result<Json<KeyList>, ApiError> {
    let m = membership(&state, &current, &id).await?;
    let keys = team_keys(&state, &m).await?;
    Ok(Json(KeyList {
        keys: keys.iter().map(key_json).collect(),
    }))
}

/// Generates or imports a key for the team `id` (as sent): admins only; `b` is looked at
/// after the role check. Shared by the JSON API and the web UI.
pub(crate) async fn add_key(
    state: &AppState,
    current: &CurrentUser,
    id: &str,
    b: Result<NewKey, ApiError>,
) -> Result<StoredKey, ApiError> {
    let m = membership(state, current, id).await?;
    m.admin("add keys")?;
    crate::http::verified::require(state, current.user_id).await?;
    let (name, secret) = new_key(state, b?).await?;
    let key = state
        .services
        .custody
        .create_key(
            keycast_core::NewKey::generate(
                m.team.tenant_id,
                keycast_core::Holder::Team(m.team.id),
                keycast_core::KeyKind::User,
                name,
            )
            .with_secret(secret),
        )
        .await?;
    tracing::info!(team = %m.team.id, key = %key.id, "team key stored");
    Ok(key)
}

/// Generates or imports a key for the team (admins).
#[utoipa::path(post, path = "/api/teams/{id}/keys", tag = "teams", request_body = NewKey,
    params(("id" = String, Path, description = "The team id")), security(("session" = [])),
    responses(
        (status = 201, description = "Stored", body = KeyView),
        (status = 400, description = "Not a key, wrong password, or a bad combination", body = ErrorBody),
        (status = 403, description = "Not a team admin; or (with SMTP) the admin's e-mail is not verified (`email_unverified`)", body = ErrorBody),
        (status = 404, description = "No such team of this account", body = ErrorBody),
        (status = 409, description = "This key is already stored", body = ErrorBody),
        (status = 503, description = "Too many NIP-49 imports or exports at once; retry", body = ErrorBody)))]
pub(crate) async fn create_key(
    State(state): State<AppState>,
    current: CurrentUser,
    Path(id): Path<String>,
    b: Result<Json<NewKey>, JsonRejection>,
) -> Result<Response, ApiError> {
    let key = add_key(&state, &current, &id, json_body(b)).await?;
    Ok((StatusCode::CREATED, Json(key_json(&key))).into_response())
}

/// Deletes a team key with its authorizations (admins).
#[utoipa::path(delete, path = "/api/teams/{id}/keys/{key_id}", tag = "teams",
    params(("id" = String, Path, description = "The team id"),
           ("key_id" = String, Path, description = "The key id")),
    security(("session" = [])), responses(
        (status = 200, description = "Deleted; the key as it was", body = KeyView),
        (status = 403, description = "Not a team admin", body = ErrorBody),
        (status = 404, description = "No such team or key", body = ErrorBody)))]
pub(crate) async fn delete_key(
    State(state): State<AppState>,
    current: CurrentUser,
    Path((id, key_id)): Path<(String, String)>,
) -> Result<Json<KeyView>, ApiError> {
    let m = membership(&state, &current, &id).await?;
    m.admin("delete keys")?;
    let key = team_key(&state, &m, &key_id).await?;
    let deleted = crate::http::keys::delete_now(&state, key.id).await?;
    Ok(Json(key_json(&deleted)))
}
