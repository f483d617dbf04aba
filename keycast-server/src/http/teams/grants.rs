//! The authorizations on a team's keys. Admins make them for an app (for themselves) or a
//! member; members see what was made for them.

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use keycast_core::{
    Activity, Authorization, AuthorizationId, Email, Label, Permission, Policy, TeamRole, UserId,
};
use serde::{Deserialize, Serialize};

use super::policies::team_policy;
use super::{keys::team_key, membership, Membership};
use crate::http::accounts::CurrentUser;
use crate::http::authorizations::{
    activity_json, activity_of, authorization_json, created_json, future_expiry, issue, not_found,
    revoke_now, AuthorizationActivity, AuthorizationView, CreatedAuthorization, Granted, Issued,
    RevokedView,
};
use crate::http::error::{json_body, ErrorBody};
use crate::http::{ApiError, AppState};

/// An authorization on a team key to create.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct TeamGrant {
    /// One of the team's keys.
    pub(crate) key_id: String,
    /// One of the team's policies; or
    pub(crate) policy_id: Option<String>,
    /// inline permissions, which become a team policy (default: full access).
    #[schema(value_type = Option<Vec<crate::http::openapi::PermissionDoc>>)]
    pub(crate) permissions: Option<Vec<Permission>>,
    /// A label for the app (default `app`).
    pub(crate) label: Option<String>,
    /// Unix seconds.
    pub(crate) expires_at: Option<u64>,
    /// The e-mail of the member it is for (default: the admin making it).
    pub(crate) member: Option<String>,
}

/// An authorization on a team key, with whom it was made for.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct TeamAuthorization {
    #[serde(flatten)]
    activity: AuthorizationActivity,
    /// The account it was made for.
    #[schema(value_type = String)]
    user_id: UserId,
}

/// Authorizations on the team's keys.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct TeamAuthorizationList {
    /// Oldest first, revoked ones included.
    authorizations: Vec<TeamAuthorization>,
}

/// The authorizations on `m`'s team keys the current account may see, oldest first with
/// their activity: all of them for admins, those made for it for members. Shared by the
/// JSON API and the web UI.
pub(crate) async fn visible_authorizations(
    state: &AppState,
    current: &CurrentUser,
    m: &Membership,
) -> Result<Vec<(Authorization, Activity)>, ApiError> {
    let mut all = state
        .services
        .store
        .list_team_authorizations(m.team.id)
        .await?;
    if m.role != TeamRole::Admin {
        all.retain(|a| a.user_id == current.user_id);
    }
    activity_of(state, all).await
}

/// Authorizations on the team's keys: all of them for admins, those made for the member
/// otherwise.
#[utoipa::path(get, path = "/api/teams/{id}/authorizations", tag = "teams",
    params(("id" = String, Path, description = "The team id")), security(("session" = [])),
    responses(
        (status = 200, description = "The authorizations", body = TeamAuthorizationList),
        (status = 404, description = "No such team of this account", body = ErrorBody)))]
pub(crate) async fn list_authorizations(
    State(state): State<AppState>,
    current: CurrentUser,
    Path(id): Path<String>,
) -> Result<Json<TeamAuthorizationList>, ApiError> {
    let m = membership(&state, &current, &id).await?;
    let authorizations = visible_authorizations(&state, &current, &m)
        .await?
        .iter()
        .map(|(a, activity)| TeamAuthorization {
            activity: activity_json(a, activity),
            user_id: a.user_id,
        })
        .collect();
    Ok(Json(TeamAuthorizationList { authorizations }))
}

/// Authorizes an app on a key of the team `id` (as sent), for the admin or a member:
/// admins only; `b` is looked at after the role check, and everything in it before
/// anything is written. Shared by the JSON API and the web UI.
pub(crate) async fn grant(
    state: &AppState,
    current: &CurrentUser,
    id: &str,
    b: Result<TeamGrant, ApiError>,
) -> Result<Issued, ApiError> {
    let m = membership(state, current, id).await?;
    m.admin("create authorizations")?;
    crate::http::verified::require(state, current.user_id).await?;
    let b = b?;
    let key = team_key(state, &m, &b.key_id).await?;
    let label = Label::parse(b.label.as_deref().unwrap_or("app"))?;
    let expires_at = future_expiry(b.expires_at)?;
    let grantee = match &b.member {
        None => current.user_id,
        Some(email) => team_member(state, &m, &Email::parse(email)?).await?,
    };
    let policy = match (b.policy_id, b.permissions) {
        (Some(_), Some(_)) => {
            return Err(ApiError::bad_request(
                "send policy_id or permissions, not both",
            ))
        }
        (Some(id), None) => Granted::Existing(team_policy(state, &m, &id).await?),
        (None, permissions) => {
            let permissions = permissions.unwrap_or_else(|| vec![Permission::FullAccess]);
            Granted::Fresh(
                Policy::new(m.team.tenant_id, label.clone(), permissions)?.for_team(m.team.id),
            )
        }
    };
    let grantee = (m.team.tenant_id, grantee);
    let key_id = key.id;
    let issued = issue(state, grantee, key, policy, label, expires_at).await?;
    tracing::info!(team = %m.team.id, key = %key_id, for_user = %grantee.1, "team authorization created");
    Ok(issued)
}

/// Authorizes an app on a team key, for the admin or for a member (admins). The bunker URI
/// and token are shown once, to the admin, who hands them on.
#[utoipa::path(post, path = "/api/teams/{id}/authorizations", tag = "teams", request_body = TeamGrant,
    params(("id" = String, Path, description = "The team id")), security(("session" = [])),
    responses(
        (status = 201, description = "Created; the URI and token are shown once", body = CreatedAuthorization),
        (status = 400, description = "Invalid label, permissions, expiry or e-mail", body = ErrorBody),
        (status = 403, description = "Not a team admin; or (with SMTP) the admin's or the member's e-mail is not verified (`email_unverified`)", body = ErrorBody),
        (status = 404, description = "No such team, team key, team policy or member", body = ErrorBody)))]
pub(crate) async fn create_authorization(
    State(state): State<AppState>,
    current: CurrentUser,
    Path(id): Path<String>,
    b: Result<Json<TeamGrant>, JsonRejection>,
) -> Result<Response, ApiError> {
    let issued = grant(&state, &current, &id, json_body(b)).await?;
    Ok((StatusCode::CREATED, Json(created_json(issued))).into_response())
}

/// The member of `m`'s team with `email`; 404 for anyone else.
async fn team_member(state: &AppState, m: &Membership, email: &Email) -> Result<UserId, ApiError> {
    let store = &state.services.store;
    let user = match store.find_user_by_email(m.team.tenant_id, email).await {
        Ok(u) => u,
        Err(keycast_core::Error::NotFound { .. }) => return Err(not_found("member of this team")),
        Err(e) => return Err(e.into()),
    };
    match store.team_role(m.team.id, user.id).await? {
        Some(_) => Ok(user.id),
        None => Err(not_found("member of this team")),
    }
}

/// Revokes the authorization `authorization_id` on a key of the team `id` (both as sent):
/// admins any, members those made for them; anything else is 404. Shared by the JSON API
/// and the web UI.
pub(crate) async fn revoke_grant(
    state: &AppState,
    current: &CurrentUser,
    id: &str,
    authorization_id: &str,
) -> Result<Authorization, ApiError> {
    let m = membership(state, current, id).await?;
    let id: AuthorizationId = authorization_id
        .parse()
        .map_err(|_| not_found("authorization"))?;
    let store = &state.services.store;
    let auth = match store.get_authorization(id).await {
        Ok(a) => a,
        Err(keycast_core::Error::NotFound { .. }) => return Err(not_found("authorization")),
        Err(e) => return Err(e.into()),
    };
    // On a key of this team, and (for members) made for the caller.
    let on_team_key =
        matches!(store.get_key(auth.key_id).await, Ok(k) if k.team == Some(m.team.id));
    let allowed = m.role == TeamRole::Admin || auth.user_id == current.user_id;
    if !on_team_key || !allowed {
        return Err(not_found("authorization"));
    }
    revoke_now(state, id).await
}

/// Revokes an authorization on a team key: admins any, members those made for them.
#[utoipa::path(delete, path = "/api/teams/{id}/authorizations/{authorization_id}", tag = "teams",
    params(("id" = String, Path, description = "The team id"),
           ("authorization_id" = String, Path, description = "The authorization id")),
    security(("session" = [])), responses(
        (status = 200, description = "Revoked", body = AuthorizationView),
        (status = 404, description = "No such team, or no such authorization this account may revoke", body = ErrorBody)))]
pub(crate) async fn revoke_authorization(
    State(state): State<AppState>,
    current: CurrentUser,
    Path((id, authorization_id)): Path<(String, String)>,
) -> Result<RevokedView, ApiError> {
    let revoked = revoke_grant(&state, &current, &id, &authorization_id).await?;
    Ok((state.applied_here(), Json(authorization_json(&revoked))))
}
