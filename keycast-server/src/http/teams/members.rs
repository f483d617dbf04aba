//! Team membership: admins add accounts (by e-mail) and change roles; admins remove
//! members, and members may leave. Removal revokes what was authorized for the member on
//! the team's keys.

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use keycast_core::{Email, TeamMember, TeamRole, User, UserId};
use serde::{Deserialize, Serialize};

use super::{membership, MemberView};
use crate::http::accounts::CurrentUser;
use crate::http::error::{json_body, ErrorBody};
use crate::http::{ApiError, AppState};

/// An account to add, or a member whose role changes.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct MemberBody {
    /// The account's e-mail address (an account of this tenant).
    pub(crate) email: String,
    /// `admin` or `member`.
    #[schema(value_type = MemberRole)]
    pub(crate) role: String,
}

/// Team roles (documentation of `role`).
#[derive(utoipa::ToSchema)]
#[schema(rename_all = "lowercase")]
#[allow(dead_code)]
pub(crate) enum MemberRole {
    Admin,
    Member,
}

/// A member removed.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct Removed {
    /// Authorizations on the team's keys made for it, now revoked.
    revoked: u64,
}

pub(crate) fn member_json(m: &TeamMember, user: &User) -> MemberView {
    MemberView {
        user_id: m.user_id,
        email: user.email.as_ref().map(|e| e.as_str().to_owned()),
        role: m.role.as_str(),
        added_at: m.added_at.as_secs(),
    }
}

fn last_admin(e: keycast_core::Error) -> ApiError {
    match e {
        keycast_core::Error::Conflict(_) => ApiError::new(
            StatusCode::CONFLICT,
            "last_admin",
            "a team needs at least one admin; make another member admin first",
        ),
        e => e.into(),
    }
}

/// Adds an account to the team `id` (as sent), or changes a member's role: admins only.
/// `b` is looked at only after the role check, so a member is refused with 403 whatever
/// it sent. Shared by the JSON API and the web UI.
pub(crate) async fn set_member(
    state: &AppState,
    current: &CurrentUser,
    id: &str,
    b: Result<MemberBody, ApiError>,
) -> Result<(TeamMember, User), ApiError> {
    let m = membership(state, current, id).await?;
    m.admin("add members or change roles")?;
    let b = b?;
    let email = Email::parse(&b.email)?;
    let role = TeamRole::parse(&b.role)?;
    // The answer tells whether the e-mail has an account here (see docs/SECURITY.md):
    // each look-up counts against the admin's budget.
    state.login_guard.lookup(current.user_id).await?;
    let store = &state.services.store;
    let user = match store.find_user_by_email(current.tenant_id, &email).await {
        Ok(u) => u,
        Err(keycast_core::Error::NotFound { .. }) => {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                "no account with this e-mail here",
            ))
        }
        Err(e) => return Err(e.into()),
    };
    let member = store
        .set_team_member(m.team.id, user.id, role)
        .await
        .map_err(last_admin)?;
    tracing::info!(team = %m.team.id, user = %user.id, role = role.as_str(), "team member set");
    Ok((member, user))
}

/// Adds an account to the team, or changes a member's role (admins only).
#[utoipa::path(put, path = "/api/teams/{id}/members", tag = "teams", request_body = MemberBody,
    params(("id" = String, Path, description = "The team id")), security(("session" = [])),
    responses(
        (status = 200, description = "The member", body = MemberView),
        (status = 400, description = "Bad e-mail or role", body = ErrorBody),
        (status = 403, description = "Not a team admin", body = ErrorBody),
        (status = 404, description = "No such team of this account, or no such account here", body = ErrorBody),
        (status = 409, description = "The team would have no admin", body = ErrorBody),
        (status = 429, description = "Too many e-mail look-ups by this account; see Retry-After", body = ErrorBody)))]
pub(crate) async fn put_member(
    State(state): State<AppState>,
    current: CurrentUser,
    Path(id): Path<String>,
    b: Result<Json<MemberBody>, JsonRejection>,
) -> Result<Json<MemberView>, ApiError> {
    let (member, user) = set_member(&state, &current, &id, json_body(b)).await?;
    Ok(Json(member_json(&member, &user)))
}

/// Removes the member `user_id` from the team `id` (both as sent): admins anyone, a
/// member only itself (leaving). Revokes what was authorized for it on the team's keys,
/// at once here; answers how many. Shared by the JSON API and the web UI.
pub(crate) async fn remove(
    state: &AppState,
    current: &CurrentUser,
    id: &str,
    user_id: &str,
) -> Result<u64, ApiError> {
    let m = membership(state, current, id).await?;
    let no_member = || ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such member");
    let user: UserId = user_id.parse().map_err(|_| no_member())?;
    if user != current.user_id {
        m.admin("remove other members")?;
    }
    let revoked = match state
        .services
        .store
        .remove_team_member(m.team.id, user, keycast_core::nostr::Timestamp::now())
        .await
    {
        Err(keycast_core::Error::NotFound { .. }) => return Err(no_member()),
        other => other.map_err(last_admin)?,
    };
    // Refused here at once; the NIP-46 subscription and other instances follow the change
    // feed (nudged after the response).
    for id in &revoked {
        state.services.custody.invalidate_authorization(*id);
    }
    let revoked = revoked.len() as u64;
    tracing::info!(team = %m.team.id, user = %user, revoked, "team member removed");
    Ok(revoked)
}

/// Removes a member (admins), or leaves the team (a member removing itself).
#[utoipa::path(delete, path = "/api/teams/{id}/members/{user_id}", tag = "teams",
    params(("id" = String, Path, description = "The team id"),
           ("user_id" = String, Path, description = "The member's account id")),
    security(("session" = [])), responses(
        (status = 200, description = "Removed", body = Removed),
        (status = 403, description = "Not a team admin (members may only remove themselves)", body = ErrorBody),
        (status = 404, description = "No such team of this account, or no such member", body = ErrorBody),
        (status = 409, description = "The team would have no admin", body = ErrorBody)))]
pub(crate) async fn remove_member(
    State(state): State<AppState>,
    current: CurrentUser,
    Path((id, user_id)): Path<(String, String)>,
) -> Result<Json<Removed>, ApiError> {
    let revoked = remove(&state, &current, &id, &user_id).await?;
    Ok(Json(Removed { revoked }))
}
