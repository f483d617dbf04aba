//! Requests of a `require_approval` authorization waiting for the account's decision:
//! list them and approve or refuse each (`/api/authorizations/{id}/approvals`; the web
//! UI's `/ui/approvals/{id}` page, the `auth_url` NIP-46 clients open, does the same).
//! A decision re-runs the NIP-46 requests held for the authorization, so each client gets
//! its result (or the refusal) under its request id; an HTTP RPC client sends the same
//! request again.
//!
//! Only the account the authorization was made for decides; anyone else gets 404.
//! Waiting requests live in this instance's memory (see `keycast_core::ApprovalDesk`).

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use keycast_core::{Authorization, WaitingRequest};
use serde::{Deserialize, Serialize};

use super::accounts::CurrentUser;
use super::authorizations::{not_found, owned as own_authorization};
use super::error::{json_body, ErrorBody};
use super::{ApiError, AppState};

/// A decision.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct DecisionBody {
    /// `true` runs the request once; `false` refuses it.
    approve: bool,
}

/// A request waiting for a decision.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct WaitingView {
    /// Names it in a decision.
    id: String,
    /// What it would do.
    summary: String,
    /// Unix seconds: when it was first asked.
    asked_at: u64,
}

/// The waiting requests of an authorization.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct WaitingList {
    /// Oldest first.
    approvals: Vec<WaitingView>,
}

/// A decision taken.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct Decided {
    /// What was decided.
    approved: bool,
}

/// The requests of the current account's authorization `id` waiting now.
pub(crate) async fn waiting(
    state: &AppState,
    current: &CurrentUser,
    id: &str,
) -> Result<(Authorization, Vec<WaitingRequest>), ApiError> {
    let auth = own_authorization(state, current, id).await?;
    let waiting = state.services.approvals.waiting(auth.id);
    Ok((auth, waiting))
}

/// Decides the waiting request `request` of the current account's authorization `id`
/// and re-runs the NIP-46 requests held for it.
pub(crate) async fn decide(
    state: &AppState,
    current: &CurrentUser,
    id: &str,
    request: &str,
    approve: bool,
) -> Result<(), ApiError> {
    let auth = own_authorization(state, current, id).await?;
    if !state.services.approvals.decide(auth.id, request, approve) {
        return Err(not_found("waiting request (decided already, or expired)"));
    }
    if let Some(bunker) = &state.bunker {
        bunker.resume_approvals(auth.id).await;
    }
    tracing::info!(authorization = %auth.id, approve, "approval decided");
    Ok(())
}

/// Requests of one of the account's authorizations waiting for its decision.
#[utoipa::path(get, path = "/api/authorizations/{id}/approvals", tag = "authorizations",
    params(("id" = String, Path, description = "The authorization id")),
    security(("session" = [])), responses(
        (status = 200, description = "The waiting requests", body = WaitingList),
        (status = 404, description = "No such authorization of this account", body = ErrorBody)))]
pub(crate) async fn list(
    State(state): State<AppState>,
    current: CurrentUser,
    Path(id): Path<String>,
) -> Result<Json<WaitingList>, ApiError> {
    let (_, waiting) = waiting(&state, &current, &id).await?;
    Ok(Json(WaitingList {
        approvals: waiting
            .into_iter()
            .map(|w| WaitingView {
                id: w.id,
                summary: w.summary,
                asked_at: w.asked_at.as_secs(),
            })
            .collect(),
    }))
}

/// Approves or refuses one waiting request.
#[utoipa::path(post, path = "/api/authorizations/{id}/approvals/{request}", tag = "authorizations",
    params(("id" = String, Path, description = "The authorization id"),
           ("request" = String, Path, description = "The waiting request's id")),
    request_body = DecisionBody, security(("session" = [])), responses(
        (status = 200, description = "Decided", body = Decided),
        (status = 404, description = "No such authorization of this account, or no such waiting request", body = ErrorBody)))]
pub(crate) async fn decide_one(
    State(state): State<AppState>,
    current: CurrentUser,
    Path((id, request)): Path<(String, String)>,
    b: Result<Json<DecisionBody>, JsonRejection>,
) -> Result<(StatusCode, Json<Decided>), ApiError> {
    let approve = json_body(b)?.approve;
    decide(&state, &current, &id, &request, approve).await?;
    Ok((StatusCode::OK, Json(Decided { approved: approve })))
}
