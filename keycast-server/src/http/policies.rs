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
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::accounts::CurrentUser;
use super::error::{json_body, ErrorBody};
use super::{ApiError, AppState};

/// A policy to create, or the new contents of one.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct PolicyBody {
    /// A label: 1–100 characters, no control characters.
    #[schema(min_length = 1, max_length = 100)]
    name: String,
    /// Every rule must allow a request (AND); at least one rule.
    #[schema(value_type = Vec<super::openapi::PermissionDoc>)]
    permissions: Vec<Permission>,
    /// For updates: the version read; a mismatch is 409.
    version: Option<u64>,
}

/// A stored policy.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct PolicyView {
    /// Its id.
    #[schema(value_type = String)]
    id: PolicyId,
    /// Its label.
    name: String,
    /// Its rules.
    #[schema(value_type = Vec<super::openapi::PermissionDoc>)]
    permissions: Vec<Value>,
    /// Bumped by every edit; send it back with a replacement.
    version: u64,
}

/// The account's policies.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct PolicyList {
    /// Oldest first.
    pub(crate) policies: Vec<PolicyView>,
}

pub(crate) fn policy_json(p: &Policy) -> PolicyView {
    PolicyView {
        id: p.id,
        name: p.name.as_str().to_owned(),
        permissions: p
            .permissions
            .iter()
            .map(Permission::to_stored_value)
            .collect(),
        version: p.version,
    }
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

/// Creates a policy owned by the current account.
#[utoipa::path(post, path = "/api/policies", tag = "policies", request_body = PolicyBody,
    security(("session" = [])), responses(
        (status = 201, description = "Created", body = PolicyView),
        (status = 400, description = "Invalid name or permissions", body = ErrorBody),
        (status = 401, description = "Not logged in", body = ErrorBody)))]
pub(crate) async fn create(
    State(state): State<AppState>,
    current: CurrentUser,
    b: Result<Json<PolicyBody>, JsonRejection>,
) -> Result<Response, ApiError> {
    let b = json_body(b)?;
    let policy = Policy::new(current.tenant_id, Label::parse(&b.name)?, b.permissions)?
        .owned_by(current.user_id);
    state.services.store.insert_policy(&policy).await?;
    Ok((StatusCode::CREATED, Json(policy_json(&policy))).into_response())
}

/// The current account's policies.
#[utoipa::path(get, path = "/api/policies", tag = "policies", security(("session" = [])),
    responses(
        (status = 200, description = "The policies", body = PolicyList),
        (status = 401, description = "Not logged in", body = ErrorBody)))]
pub(crate) async fn list(
    State(state): State<AppState>,
    current: CurrentUser,
) -> Result<Json<PolicyList>, ApiError> {
    let all = state
        .services
        .store
        .list_policies(current.tenant_id, Some(current.user_id))
        .await?;
    Ok(Json(PolicyList {
        policies: all.iter().map(policy_json).collect(),
    }))
}

/// One of the current account's policies.
#[utoipa::path(get, path = "/api/policies/{id}", tag = "policies", params(("id" = String, Path, description = "The policy id")),
    security(("session" = [])), responses(
        (status = 200, description = "The policy", body = PolicyView),
        (status = 401, description = "Not logged in", body = ErrorBody),
        (status = 404, description = "No such policy of this account", body = ErrorBody)))]
pub(crate) async fn get(
    State(state): State<AppState>,
    current: CurrentUser,
    Path(id): Path<String>,
) -> Result<Json<PolicyView>, ApiError> {
    Ok(Json(policy_json(&owned(&state, &current, &id).await?)))
}

/// Replaces a policy's name and rules; running apps see the change at once.
#[utoipa::path(put, path = "/api/policies/{id}", tag = "policies", params(("id" = String, Path, description = "The policy id")),
    request_body = PolicyBody, security(("session" = [])), responses(
        (status = 200, description = "The updated policy", body = PolicyView),
        (status = 400, description = "Invalid name or permissions", body = ErrorBody),
        (status = 401, description = "Not logged in", body = ErrorBody),
        (status = 404, description = "No such policy of this account", body = ErrorBody),
        (status = 409, description = "`version` is not the stored one", body = ErrorBody)))]
pub(crate) async fn replace(
    State(state): State<AppState>,
    current: CurrentUser,
    Path(id): Path<String>,
    b: Result<Json<PolicyBody>, JsonRejection>,
) -> Result<Json<PolicyView>, ApiError> {
    let stored = owned(&state, &current, &id).await?;
    Ok(Json(policy_json(
        &edit(&state, stored, json_body(b)?).await?,
    )))
}

/// Replaces `stored`'s name and rules with `b`'s (the caller checked who may); running
/// apps see the change at once. Shared with team policies.
pub(crate) async fn edit(
    state: &AppState,
    stored: Policy,
    b: PolicyBody,
) -> Result<Policy, ApiError> {
    // Validates like a new one; keeps identity, holder and (unless given) version.
    let fresh = Policy::new(stored.tenant_id, Label::parse(&b.name)?, b.permissions)?;
    let edit = Policy {
        name: fresh.name,
        permissions: fresh.permissions,
        version: b.version.unwrap_or(stored.version),
        ..stored
    };
    Ok(state.services.custody.update_policy(&edit).await?)
}

/// Deletes a policy no authorization uses.
#[utoipa::path(delete, path = "/api/policies/{id}", tag = "policies", params(("id" = String, Path, description = "The policy id")),
    security(("session" = [])), responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "Not logged in", body = ErrorBody),
        (status = 404, description = "No such policy of this account", body = ErrorBody),
        (status = 409, description = "An authorization uses it", body = ErrorBody)))]
pub(crate) async fn delete(
    State(state): State<AppState>,
    current: CurrentUser,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let policy = owned(&state, &current, &id).await?;
    state.services.store.delete_policy(policy.id).await?;
    Ok(StatusCode::NO_CONTENT)
}
