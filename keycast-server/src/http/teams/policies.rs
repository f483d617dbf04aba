//! A team's policies: members list them; admins create, edit and delete them (deleting
//! one an authorization uses is refused). Edits reach running apps at once, as for an
//! account's own policies.

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use keycast_core::{Label, Permission, Policy, PolicyId};
use serde::Deserialize;

use super::{membership, Membership};
use crate::http::accounts::CurrentUser;
use crate::http::authorizations::not_found;
use crate::http::error::{json_body, ErrorBody};
use crate::http::policies::{edit, policy_json, PolicyBody, PolicyList, PolicyView};
use crate::http::{ApiError, AppState};

/// A team policy to create.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct TeamPolicyBody {
    /// 1–100 characters, no control characters.
    #[schema(min_length = 1, max_length = 100)]
    name: String,
    /// Every rule must allow a request (AND); at least one rule.
    #[schema(value_type = Vec<crate::http::openapi::PermissionDoc>)]
    permissions: Vec<Permission>,
}

/// The team's policies (members and admins).
#[utoipa::path(get, path = "/api/teams/{id}/policies", tag = "teams",
    params(("id" = String, Path, description = "The team id")), security(("session" = [])),
    responses(
        (status = 200, description = "The policies", body = PolicyList),
        (status = 404, description = "No such team of this account", body = ErrorBody)))]
pub(crate) async fn list_policies(
    State(state): State<AppState>,
    current: CurrentUser,
    Path(id): Path<String>,
) -> Result<Json<PolicyList>, ApiError> {
    let m = membership(&state, &current, &id).await?;
    let all = state.services.store.list_team_policies(m.team.id).await?;
    Ok(Json(PolicyList {
        policies: all.iter().map(policy_json).collect(),
    }))
}

/// Creates a team policy (admins).
#[utoipa::path(post, path = "/api/teams/{id}/policies", tag = "teams", request_body = TeamPolicyBody,
    params(("id" = String, Path, description = "The team id")), security(("session" = [])),
    responses(
        (status = 201, description = "Created", body = PolicyView),
        (status = 400, description = "Invalid name or permissions", body = ErrorBody),
        (status = 403, description = "Not a team admin", body = ErrorBody),
        (status = 404, description = "No such team of this account", body = ErrorBody)))]
pub(crate) async fn create_policy(
    State(state): State<AppState>,
    current: CurrentUser,
    Path(id): Path<String>,
    b: Result<Json<TeamPolicyBody>, JsonRejection>,
) -> Result<Response, ApiError> {
    let m = membership(&state, &current, &id).await?;
    m.admin("create policies")?;
    let b = json_body(b)?;
    let policy =
        Policy::new(m.team.tenant_id, Label::parse(&b.name)?, b.permissions)?.for_team(m.team.id);
    state.services.store.insert_policy(&policy).await?;
    Ok((StatusCode::CREATED, Json(policy_json(&policy))).into_response())
}

/// The team policy `id`; 404 for anything else.
pub(crate) async fn team_policy(
    state: &AppState,
    m: &Membership,
    id: &str,
) -> Result<Policy, ApiError> {
    let id: PolicyId = id.parse().map_err(|_| not_found("policy of this team"))?;
    match state.services.store.get_policy(id).await {
        Ok(p) if p.team == Some(m.team.id) => Ok(p),
        Ok(_) | Err(keycast_core::Error::NotFound { .. }) => Err(not_found("policy of this team")),
        Err(e) => Err(e.into()),
    }
}

/// Replaces a team policy's name and rules (admins); send the `version` read.
#[utoipa::path(put, path = "/api/teams/{id}/policies/{policy_id}", tag = "teams", request_body = PolicyBody,
    params(("id" = String, Path, description = "The team id"),
           ("policy_id" = String, Path, description = "The policy id")),
    security(("session" = [])), responses(
        (status = 200, description = "The updated policy", body = PolicyView),
        (status = 400, description = "Invalid name or permissions", body = ErrorBody),
        (status = 403, description = "Not a team admin", body = ErrorBody),
        (status = 404, description = "No such team or team policy", body = ErrorBody),
        (status = 409, description = "`version` is not the stored one", body = ErrorBody)))]
pub(crate) async fn replace_policy(
    State(state): State<AppState>,
    current: CurrentUser,
    Path((id, policy_id)): Path<(String, String)>,
    b: Result<Json<PolicyBody>, JsonRejection>,
) -> Result<Json<PolicyView>, ApiError> {
    let m = membership(&state, &current, &id).await?;
    m.admin("edit policies")?;
    let stored = team_policy(&state, &m, &policy_id).await?;
    Ok(Json(policy_json(
        &edit(&state, stored, json_body(b)?).await?,
    )))
}

/// Deletes a team policy no authorization uses (admins).
#[utoipa::path(delete, path = "/api/teams/{id}/policies/{policy_id}", tag = "teams",
    params(("id" = String, Path, description = "The team id"),
           ("policy_id" = String, Path, description = "The policy id")),
    security(("session" = [])), responses(
        (status = 204, description = "Deleted"),
        (status = 403, description = "Not a team admin", body = ErrorBody),
        (status = 404, description = "No such team or team policy", body = ErrorBody),
        (status = 409, description = "An authorization uses it", body = ErrorBody)))]
pub(crate) async fn delete_policy(
    State(state): State<AppState>,
    current: CurrentUser,
    Path((id, policy_id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let m = membership(&state, &current, &id).await?;
    m.admin("delete policies")?;
    let policy = team_policy(&state, &m, &policy_id).await?;
    state.services.store.delete_policy(policy.id).await?;
    Ok(StatusCode::NO_CONTENT)
}
