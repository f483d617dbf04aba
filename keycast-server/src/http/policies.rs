//! The logged-in account's policies: named permission sets its authorizations enforce.
//! Create, list, read, replace (optimistic: send the `version` you read), delete (refused
//! while an authorization uses it). Edits apply to running apps at once here and through
//! the change feed elsewhere.

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use keycast_core::{Label, Permission, Policy, PolicyId};
use serde::Deserialize;
use serde_json::{json, Value};

use super::accounts::CurrentUser;
use super::error::json_body;
use super::{ApiError, AppState};
use crate::services::default_tenant;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PolicyBody {
    name: String,
    permissions: Vec<Permission>,
    /// For updates: the version read; a mismatch is 409.
    version: Option<u64>,
}

pub(crate) fn policy_json(p: &Policy) -> Value {
    let permissions: Vec<Value> = p
        .permissions
        .iter()
        .map(Permission::to_stored_value)
        .collect();
    json!({"id": p.id, "name": p.name.as_str(), "permissions": permissions, "version": p.version})
}

/// The policy if the current account owns it; 404 otherwise.
pub(crate) async fn owned(
    state: &AppState,
    current: &CurrentUser,
    id: &str,
) -> Result<Policy, ApiError> {
    let not_found = || ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such policy");
    let id: PolicyId = id.parse().map_err(|_| not_found())?;
    match state.services.store.get_policy(id).await {
        Ok(p) if p.owner == Some(current.user_id) => Ok(p),
        Ok(_) | Err(keycast_core::Error::NotFound { .. }) => Err(not_found()),
        Err(e) => Err(e.into()),
    }
}

pub(crate) async fn create(
    State(state): State<AppState>,
    current: CurrentUser,
    b: Result<Json<PolicyBody>, JsonRejection>,
) -> Result<Response, ApiError> {
    let b = json_body(b)?;
    let policy = Policy::new(default_tenant(), Label::parse(&b.name)?, b.permissions)?
        .owned_by(current.user_id);
    state.services.store.insert_policy(&policy).await?;
    Ok((StatusCode::CREATED, Json(policy_json(&policy))).into_response())
}

pub(crate) async fn list(
    State(state): State<AppState>,
    current: CurrentUser,
) -> Result<Json<Value>, ApiError> {
    let all = state
        .services
        .store
        .list_policies(default_tenant(), Some(current.user_id))
        .await?;
    Ok(Json(
        json!({"policies": all.iter().map(policy_json).collect::<Vec<_>>()}),
    ))
}

pub(crate) async fn get(
    State(state): State<AppState>,
    current: CurrentUser,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(policy_json(&owned(&state, &current, &id).await?)))
}

pub(crate) async fn replace(
    State(state): State<AppState>,
    current: CurrentUser,
    Path(id): Path<String>,
    b: Result<Json<PolicyBody>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let stored = owned(&state, &current, &id).await?;
    let b = json_body(b)?;
    // Validates like a new one; keeps identity, owner and (unless given) version.
    let fresh = Policy::new(default_tenant(), Label::parse(&b.name)?, b.permissions)?;
    let edit = Policy {
        name: fresh.name,
        permissions: fresh.permissions,
        version: b.version.unwrap_or(stored.version),
        ..stored
    };
    let updated = state.services.store.update_policy(&edit).await?;
    state.services.custody.invalidate_policy(updated.id);
    Ok(Json(policy_json(&updated)))
}

pub(crate) async fn delete(
    State(state): State<AppState>,
    current: CurrentUser,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let policy = owned(&state, &current, &id).await?;
    state.services.store.delete_policy(policy.id).await?;
    Ok(StatusCode::NO_CONTENT)
}
