//! Teams: accounts of one tenant sharing keys and policies.
//!
//! Who may do what (anyone else gets 404, as if the team did not exist):
//!
//! | call                                    | member                | admin |
//! |-----------------------------------------|-----------------------|-------|
//! | `GET /api/teams/{id}` (with members)    | yes                   | yes   |
//! | `PUT /api/teams/{id}/members`           | 403                   | yes   |
//! | `DELETE /api/teams/{id}/members/{user}` | only itself (leave)   | yes   |
//! | `GET /api/teams/{id}/keys`, `policies`  | yes                   | yes   |
//! | `POST /api/teams/{id}/keys`, `policies` | 403                   | yes   |
//! | `PUT`/`DELETE …/policies/{policy}`      | 403                   | yes   |
//! | `DELETE /api/teams/{id}/keys/{key}`     | 403                   | yes   |
//! | `GET /api/teams/{id}/authorizations`    | those made for it     | all   |
//! | `POST /api/teams/{id}/authorizations`   | 403                   | yes   |
//! | `DELETE …/authorizations/{id}`          | those made for it     | all   |
//!
//! Any account may create a team and becomes its first admin. A team always keeps one
//! admin. Removing a member revokes the authorizations made for it on the team's keys.

mod grants;
mod keys;
mod members;
mod policies;

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use keycast_core::{Label, Team, TeamId, TeamMember, TeamRole, User, UserId};
use serde::{Deserialize, Serialize};

use super::accounts::CurrentUser;
use super::error::{json_body, ErrorBody};
use super::{ApiError, AppState};

pub(crate) use grants::{
    __path_create_authorization, __path_list_authorizations, __path_revoke_authorization,
    create_authorization, list_authorizations, revoke_authorization,
};
pub(crate) use policies::{
    __path_create_policy, __path_delete_policy, __path_list_policies, __path_replace_policy,
    create_policy, delete_policy, list_policies, replace_policy,
};
// The work of the handlers, shared with the web UI (`ui::teams`), which must not check
// roles or input differently.
pub(crate) use grants::{grant, revoke_grant, visible_authorizations, TeamGrant};
pub(crate) use keys::{
    __path_create_key, __path_delete_key, __path_list_keys, create_key, delete_key, list_keys,
};
pub(crate) use keys::{add_key, team_keys};
pub(crate) use members::{__path_put_member, __path_remove_member, put_member, remove_member};
pub(crate) use members::{remove, set_member, MemberBody};

/// A team to create.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewTeam {
    /// 1–100 characters, no control characters; unique in the tenant.
    #[schema(min_length = 1, max_length = 100)]
    name: String,
}

/// A team, with the current account's role in it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct TeamView {
    /// Its id.
    #[schema(value_type = String)]
    id: TeamId,
    /// Its name.
    name: String,
    /// `admin` or `member`.
    role: &'static str,
    /// Unix seconds.
    created_at: u64,
}

/// The current account's teams.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct TeamList {
    /// By name.
    teams: Vec<TeamView>,
}

/// A team with its members.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct TeamDetail {
    #[serde(flatten)]
    team: TeamView,
    /// Longest-standing first.
    members: Vec<MemberView>,
}

/// One member of a team.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct MemberView {
    /// The account.
    #[schema(value_type = String)]
    user_id: UserId,
    /// Its e-mail address, if it has one.
    email: Option<String>,
    /// `admin` or `member`.
    role: &'static str,
    /// Unix seconds: when it joined.
    added_at: u64,
}

fn team_json(t: &Team, role: TeamRole) -> TeamView {
    TeamView {
        id: t.id,
        name: t.name.as_str().to_owned(),
        role: role.as_str(),
        created_at: t.created_at.as_secs(),
    }
}

/// A team and the current account's role in it.
pub(crate) struct Membership {
    pub(crate) team: Team,
    pub(crate) role: TeamRole,
}

impl Membership {
    /// Ok for admins; 403 for members, naming what only admins may do.
    pub(crate) fn admin(&self, what: &str) -> Result<(), ApiError> {
        match self.role {
            TeamRole::Admin => Ok(()),
            TeamRole::Member => Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                format!("only team admins may {what}"),
            )),
        }
    }
}

fn no_team() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such team")
}

/// The team `id` and the current account's role in it; 404 when the account is not a
/// member (or the id is malformed, or the team is another tenant's).
pub(crate) async fn membership(
    state: &AppState,
    current: &CurrentUser,
    id: &str,
) -> Result<Membership, ApiError> {
    let id: TeamId = id.parse().map_err(|_| no_team())?;
    let store = &state.services.store;
    let Some(role) = store.team_role(id, current.user_id).await? else {
        return Err(no_team());
    };
    let team = store.get_team(id).await?;
    if team.tenant_id != current.tenant_id {
        return Err(no_team());
    }
    Ok(Membership { team, role })
}

/// The current account's teams (of this tenant), by name, with its role in each.
pub(crate) async fn my_teams(
    state: &AppState,
    current: &CurrentUser,
) -> Result<Vec<(Team, TeamRole)>, ApiError> {
    let mut teams = state.services.store.list_teams(current.user_id).await?;
    teams.retain(|(t, _)| t.tenant_id == current.tenant_id);
    Ok(teams)
}

/// The current account's teams.
#[utoipa::path(get, path = "/api/teams", tag = "teams", security(("session" = [])),
    responses(
        (status = 200, description = "The teams", body = TeamList),
        (status = 401, description = "Not logged in", body = ErrorBody)))]
pub(crate) async fn list(
    State(state): State<AppState>,
    current: CurrentUser,
) -> Result<Json<TeamList>, ApiError> {
    let teams = my_teams(&state, &current).await?;
    Ok(Json(TeamList {
        teams: teams.iter().map(|(t, r)| team_json(t, *r)).collect(),
    }))
}

/// Creates the team `name` (as sent) with the current account as its first admin: 400
/// for a bad name, 409 when the tenant has a team of that name.
pub(crate) async fn create_team(
    state: &AppState,
    current: &CurrentUser,
    name: &str,
) -> Result<Team, ApiError> {
    let team = Team::new(current.tenant_id, Label::parse(name)?);
    match state
        .services
        .store
        .create_team(&team, current.user_id)
        .await
    {
        Ok(()) => {}
        Err(keycast_core::Error::AlreadyExists { .. }) => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "already_exists",
                "a team with this name exists",
            ))
        }
        Err(e) => return Err(e.into()),
    }
    tracing::info!(team = %team.id, user = %current.user_id, "team created");
    Ok(team)
}

/// Creates a team; the current account is its first admin.
#[utoipa::path(post, path = "/api/teams", tag = "teams", request_body = NewTeam,
    security(("session" = [])), responses(
        (status = 201, description = "Created", body = TeamView),
        (status = 400, description = "Bad name", body = ErrorBody),
        (status = 409, description = "A team of this tenant has the name", body = ErrorBody)))]
pub(crate) async fn create(
    State(state): State<AppState>,
    current: CurrentUser,
    b: Result<Json<NewTeam>, JsonRejection>,
) -> Result<Response, ApiError> {
    let team = create_team(&state, &current, &json_body(b)?.name).await?;
    Ok((StatusCode::CREATED, Json(team_json(&team, TeamRole::Admin))).into_response())
}

/// The members of `m`'s team with their accounts, longest-standing first.
pub(crate) async fn members_of(
    state: &AppState,
    m: &Membership,
) -> Result<Vec<(TeamMember, User)>, ApiError> {
    let store = &state.services.store;
    let mut members = Vec::new();
    for member in store.list_team_members(m.team.id).await? {
        let user = store.get_user(member.user_id).await?;
        members.push((member, user));
    }
    Ok(members)
}

/// A team with its members.
#[utoipa::path(get, path = "/api/teams/{id}", tag = "teams",
    params(("id" = String, Path, description = "The team id")), security(("session" = [])),
    responses(
        (status = 200, description = "The team", body = TeamDetail),
        (status = 404, description = "No such team of this account", body = ErrorBody)))]
pub(crate) async fn get(
    State(state): State<AppState>,
    current: CurrentUser,
    Path(id): Path<String>,
) -> Result<Json<TeamDetail>, ApiError> {
    let m = membership(&state, &current, &id).await?;
    let members = members_of(&state, &m)
        .await?
        .iter()
        .map(|(member, user)| members::member_json(member, user))
        .collect();
    Ok(Json(TeamDetail {
        team: team_json(&m.team, m.role),
        members,
    }))
}
