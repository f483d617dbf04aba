//! The logged-in account's app authorizations: create (one of its keys, the permissions
//! the app gets; answers the bunker:// URI and an HTTP RPC token), list, revoke.
//!
//! Each authorization gets its own policy from the permissions sent. Revocation takes
//! effect here at once and on other instances within the change feed's poll (250 ms).

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use keycast_core::nostr::Timestamp;
use keycast_core::{Authorization, AuthorizationId, Label, NewAuthorization, Permission, Policy};
use keycast_nip46::BunkerUri;
use serde::Deserialize;
use serde_json::{json, Value};

use super::accounts::CurrentUser;
use super::error::json_body;
use super::{ApiError, AppState};
use crate::services::default_tenant;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewAuthorizationBody {
    key_id: String,
    label: Option<String>,
    /// One of the account's policies; or
    policy_id: Option<String>,
    /// inline permissions, which get a policy of their own (default: full access).
    permissions: Option<Vec<Permission>>,
    /// Unix seconds.
    expires_at: Option<u64>,
}

fn not_found(what: &'static str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("no such {what}"),
    )
}

fn authorization_json(a: &Authorization) -> Value {
    json!({
        "id": a.id,
        "key_id": a.key_id,
        "label": a.label.as_str(),
        "bunker_pubkey": a.bunker_pubkey.to_hex(),
        "clients": a.client_pubkeys.len(),
        "created_at": a.created_at.as_secs(),
        "expires_at": a.expires_at.map(|t| t.as_secs()),
        "revoked_at": a.revoked_at.map(|t| t.as_secs()),
    })
}

pub(crate) async fn create(
    State(state): State<AppState>,
    current: CurrentUser,
    b: Result<Json<NewAuthorizationBody>, JsonRejection>,
) -> Result<Response, ApiError> {
    let b = json_body(b)?;
    let s = &state.services;
    let key_id = super::keys::owned(&state, &current, &b.key_id).await?.id;
    let label = Label::parse(b.label.as_deref().unwrap_or("app"))?;
    let expires_at = b.expires_at.map(Timestamp::from);
    if expires_at.is_some_and(|t| t <= Timestamp::now()) {
        return Err(ApiError::bad_request("expires_at is in the past"));
    }
    let policy = match (b.policy_id, b.permissions) {
        (Some(_), Some(_)) => {
            return Err(ApiError::bad_request(
                "send policy_id or permissions, not both",
            ))
        }
        (Some(id), None) => super::policies::owned(&state, &current, &id).await?,
        (None, permissions) => {
            let permissions = permissions.unwrap_or_else(|| vec![Permission::FullAccess]);
            let policy = Policy::new(default_tenant(), label.clone(), permissions)?
                .owned_by(current.user_id);
            s.store.insert_policy(&policy).await?;
            policy
        }
    };
    let relays = s.config.bunker_relays();
    let (auth, secret) = s
        .custody
        .create_authorization(NewAuthorization {
            tenant_id: default_tenant(),
            user_id: current.user_id,
            key_id,
            policy_id: policy.id,
            label,
            relays: relays.clone(),
            expires_at,
        })
        .await?;
    let token = s.issue_token(&auth, expires_at).await?;
    let uri = BunkerUri {
        signer: auth.bunker_pubkey,
        relays,
        secret: Some(secret.expose().to_owned()),
    }
    .to_uri()
    .map_err(|e| ApiError::from(keycast_core::Error::Internal(e.to_string())))?;
    if let Some(bunker) = &state.bunker {
        if let Err(e) = bunker.refresh_subscription().await {
            tracing::warn!(error = %e, "cannot refresh the NIP-46 subscription now; the change feed will");
        }
    }
    let mut answer = authorization_json(&auth);
    answer["bunker_uri"] = json!(uri);
    answer["token"] = json!(token.expose());
    Ok((StatusCode::CREATED, Json(answer)).into_response())
}

pub(crate) async fn list(
    State(state): State<AppState>,
    current: CurrentUser,
) -> Result<Json<Value>, ApiError> {
    let all = state
        .services
        .store
        .list_authorizations(default_tenant(), Some(current.user_id))
        .await?;
    let list: Vec<Value> = all.iter().map(authorization_json).collect();
    Ok(Json(json!({ "authorizations": list })))
}

pub(crate) async fn revoke(
    State(state): State<AppState>,
    current: CurrentUser,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let id: AuthorizationId = id.parse().map_err(|_| not_found("authorization"))?;
    match state.services.store.get_authorization(id).await {
        Ok(a) if a.user_id == current.user_id => {}
        Ok(_) | Err(keycast_core::Error::NotFound { .. }) => {
            return Err(not_found("authorization"))
        }
        Err(e) => return Err(e.into()),
    }
    let revoked = state.services.custody.revoke_authorization(id).await?;
    if let Some(bunker) = &state.bunker {
        let _ = bunker.refresh_subscription().await;
    }
    Ok(Json(authorization_json(&revoked)))
}
