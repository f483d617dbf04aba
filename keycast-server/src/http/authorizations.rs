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
use keycast_core::{
    Activity, Authorization, AuthorizationId, Label, NewAuthorization, Permission, Policy,
};
use keycast_nip46::BunkerUri;
use serde::{Deserialize, Serialize};

use super::accounts::CurrentUser;
use super::error::{json_body, ErrorBody};
use super::{ApiError, AppState, AppliedHere};

/// An app authorization to create.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewAuthorizationBody {
    /// One of the account's keys.
    key_id: String,
    /// A label for the app (default `app`).
    label: Option<String>,
    /// One of the account's policies; or
    policy_id: Option<String>,
    /// inline permissions, which get a policy of their own (default: full access).
    #[schema(value_type = Option<Vec<super::openapi::PermissionDoc>>)]
    permissions: Option<Vec<Permission>>,
    /// Unix seconds.
    expires_at: Option<u64>,
}

pub(crate) fn not_found(what: &'static str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("no such {what}"),
    )
}

/// An app authorization: one key, one policy, its own bunker key.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct AuthorizationView {
    /// Its id.
    #[schema(value_type = String)]
    id: AuthorizationId,
    /// The key it signs with.
    #[schema(value_type = String)]
    key_id: keycast_core::KeyId,
    /// The app's label.
    label: String,
    /// Hex pubkey the app talks to over NIP-46.
    bunker_pubkey: String,
    /// NIP-46 client keys connected.
    clients: usize,
    /// Unix seconds.
    created_at: u64,
    /// Unix seconds, if it expires.
    expires_at: Option<u64>,
    /// Unix seconds, once revoked.
    revoked_at: Option<u64>,
}

/// A new authorization with its credentials, shown once.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct CreatedAuthorization {
    #[serde(flatten)]
    authorization: AuthorizationView,
    /// For NIP-46 clients.
    bunker_uri: String,
    /// For HTTP RPC: `Authorization: Bearer <token>`.
    token: String,
}

/// The account's authorizations.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct AuthorizationList {
    /// Oldest first, revoked ones included.
    authorizations: Vec<AuthorizationActivity>,
}

/// An authorization (an app session) with what it has been used for, from the audit log.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct AuthorizationActivity {
    #[serde(flatten)]
    authorization: AuthorizationView,
    /// Unix seconds of the latest call through it, allowed or refused; absent if none.
    last_used_at: Option<u64>,
    /// Events signed through it.
    signatures: u64,
}

pub(crate) fn authorization_json(a: &Authorization) -> AuthorizationView {
    AuthorizationView {
        id: a.id,
        key_id: a.key_id,
        label: a.label.as_str().to_owned(),
        bunker_pubkey: a.bunker_pubkey.to_hex(),
        clients: a.client_pubkeys.len(),
        created_at: a.created_at.as_secs(),
        expires_at: a.expires_at.map(|t| t.as_secs()),
        revoked_at: a.revoked_at.map(|t| t.as_secs()),
    }
}

/// Authorizes an app to use one of the account's keys: a bunker:// URI and an RPC token.
#[utoipa::path(post, path = "/api/authorizations", tag = "authorizations",
    request_body = NewAuthorizationBody, security(("session" = [])), responses(
        (status = 201, description = "Created; the URI and token are shown once", body = CreatedAuthorization),
        (status = 400, description = "Invalid label, permissions or expiry", body = ErrorBody),
        (status = 403, description = "With SMTP configured: the account's e-mail is not verified yet (`email_unverified`)", body = ErrorBody),
        (status = 404, description = "No such key or policy of this account", body = ErrorBody)))]
pub(crate) async fn create(
    State(state): State<AppState>,
    current: CurrentUser,
    b: Result<Json<NewAuthorizationBody>, JsonRejection>,
) -> Result<Response, ApiError> {
    let b = json_body(b)?;
    let policy = match (b.policy_id, b.permissions) {
        (Some(_), Some(_)) => {
            return Err(ApiError::bad_request(
                "send policy_id or permissions, not both",
            ))
        }
        (Some(id), None) => PolicyChoice::Existing(id),
        (None, permissions) => {
            PolicyChoice::Permissions(permissions.unwrap_or_else(|| vec![Permission::FullAccess]))
        }
    };
    let label = b.label.as_deref().unwrap_or("app");
    let issued = authorize(&state, &current, &b.key_id, label, policy, b.expires_at).await?;
    Ok((StatusCode::CREATED, Json(created_json(issued))).into_response())
}

/// The answer to a created authorization (its credentials, shown once).
pub(crate) fn created_json(issued: Issued) -> CreatedAuthorization {
    CreatedAuthorization {
        authorization: authorization_json(&issued.authorization),
        bunker_uri: issued.bunker_uri,
        token: issued.token.expose().to_owned(),
    }
}

/// An expiry from a request: in the future, or 400.
pub(crate) fn future_expiry(expires_at: Option<u64>) -> Result<Option<Timestamp>, ApiError> {
    let expires_at = expires_at.map(Timestamp::from);
    if expires_at.is_some_and(|t| t <= Timestamp::now()) {
        return Err(ApiError::bad_request("expires_at is in the past"));
    }
    Ok(expires_at)
}

/// Where a new authorization's policy comes from.
pub(crate) enum PolicyChoice {
    /// One of the account's policies, by its id as sent.
    Existing(String),
    /// Permissions that get a policy of their own.
    Permissions(Vec<Permission>),
}

/// A new authorization with its credentials, to be shown once. No `Debug`: it holds them.
#[allow(missing_debug_implementations)]
pub(crate) struct Issued {
    pub(crate) authorization: Authorization,
    /// The account's key it signs with.
    pub(crate) key: keycast_core::StoredKey,
    /// Carries the single-use connect secret.
    pub(crate) bunker_uri: String,
    /// For HTTP RPC.
    pub(crate) token: keycast_core::BearerSecret,
}

/// Authorizes an app to use the account's key `key_id` (as sent): checks the key, label,
/// expiry and policy before writing anything, then makes the policy (if new), the
/// authorization and an RPC token. Shared by the JSON API and the web UI.
pub(crate) async fn authorize(
    state: &AppState,
    current: &CurrentUser,
    key_id: &str,
    label: &str,
    policy: PolicyChoice,
    expires_at: Option<u64>,
) -> Result<Issued, ApiError> {
    let key = super::keys::owned(state, current, key_id).await?;
    let label = Label::parse(label)?;
    let expires_at = future_expiry(expires_at)?;
    let policy = match policy {
        PolicyChoice::Existing(id) => {
            Granted::Existing(super::policies::owned(state, current, &id).await?)
        }
        PolicyChoice::Permissions(permissions) => Granted::Fresh(
            Policy::new(current.tenant_id, label.clone(), permissions)?.owned_by(current.user_id),
        ),
    };
    let grantee = (current.tenant_id, current.user_id);
    issue(state, grantee, key, policy, label, expires_at).await
}

/// The policy a new authorization enforces: one already stored, or a new one that
/// [`issue`] stores first (and removes again if the authorization cannot be made).
pub(crate) enum Granted {
    /// Stored already.
    Existing(Policy),
    /// To store.
    Fresh(Policy),
}

/// Makes the authorization of `key` for `grantee` (tenant, account) under `policy`, and its
/// RPC token; the caller checked who may. Shared with team grants. The grantee must have
/// a verified e-mail where that is required ([`super::verified`]).
pub(crate) async fn issue(
    state: &AppState,
    grantee: (keycast_core::TenantId, keycast_core::UserId),
    key: keycast_core::StoredKey,
    policy: Granted,
    label: Label,
    expires_at: Option<Timestamp>,
) -> Result<Issued, ApiError> {
    super::verified::require(state, grantee.1).await?;
    let s = &state.services;
    let (policy, fresh) = match policy {
        Granted::Existing(p) => (p, false),
        Granted::Fresh(p) => {
            s.store.insert_policy(&p).await?;
            (p, true)
        }
    };
    let (auth, secret) =
        match connect_key_for(state, grantee, key.id, policy.id, label, expires_at).await {
            Ok(created) => created,
            Err(e) => {
                if fresh {
                    let _ = s.store.delete_policy(policy.id).await;
                }
                return Err(e);
            }
        };
    let token = match s.issue_token(&auth, expires_at).await {
        Ok(token) => token,
        Err(e) => {
            // Nobody got its credentials: take it back rather than leave it unusable.
            let _ = s.custody.revoke_authorization(auth.id).await;
            return Err(e.into());
        }
    };
    let bunker_uri = bunker_uri(&auth, &secret)?;
    Ok(Issued {
        authorization: auth,
        key,
        bunker_uri,
        token,
    })
}

/// Creates the authorization of `key_id` under `policy_id` (a fresh bunker key and a
/// single-use connect secret) and has the bunker listen for it; shared with OAuth approval.
/// The account must have a verified e-mail where that is required ([`super::verified`]).
pub(crate) async fn connect_key(
    state: &AppState,
    user: &CurrentUser,
    key_id: keycast_core::KeyId,
    policy_id: keycast_core::PolicyId,
    label: Label,
    expires_at: Option<Timestamp>,
) -> Result<(Authorization, keycast_core::BearerSecret), ApiError> {
    super::verified::require(state, user.user_id).await?;
    let grantee = (user.tenant_id, user.user_id);
    connect_key_for(state, grantee, key_id, policy_id, label, expires_at).await
}

/// [`connect_key`] for any account of the tenant (a team admin grants a member).
async fn connect_key_for(
    state: &AppState,
    (tenant_id, user_id): (keycast_core::TenantId, keycast_core::UserId),
    key_id: keycast_core::KeyId,
    policy_id: keycast_core::PolicyId,
    label: Label,
    expires_at: Option<Timestamp>,
) -> Result<(Authorization, keycast_core::BearerSecret), ApiError> {
    let created = state
        .services
        .custody
        .create_authorization(NewAuthorization {
            tenant_id,
            user_id,
            key_id,
            policy_id,
            label,
            relays: state.services.config.bunker_relays(),
            expires_at,
        })
        .await?;
    // The URI is handed out only once the relays confirmed its key's subscription, so a
    // client that connects at once is heard.
    if let Some(bunker) = &state.bunker {
        if let Err(e) = bunker.cover(created.0.id).await {
            tracing::warn!(error = %e, "cannot update the NIP-46 subscription now; the change feed will");
        }
    }
    Ok(created)
}

/// The `bunker://` URI of `auth` on its relays, carrying its connect secret.
pub(crate) fn bunker_uri(
    auth: &Authorization,
    secret: &keycast_core::BearerSecret,
) -> Result<String, ApiError> {
    BunkerUri {
        signer: auth.bunker_pubkey,
        relays: auth.relays.clone(),
        secret: Some(secret.expose().to_owned()),
    }
    .to_uri()
    .map_err(|e| ApiError::from(keycast_core::Error::Internal(e.to_string())))
}

/// The account's authorizations (its app sessions), each with its last activity and the
/// number of events it signed.
#[utoipa::path(get, path = "/api/authorizations", tag = "authorizations",
    security(("session" = [])), responses(
        (status = 200, description = "The authorizations", body = AuthorizationList)))]
pub(crate) async fn list(
    State(state): State<AppState>,
    current: CurrentUser,
) -> Result<Json<AuthorizationList>, ApiError> {
    let authorizations = with_activity(&state, &current)
        .await?
        .iter()
        .map(|(a, activity)| activity_json(a, activity))
        .collect();
    Ok(Json(AuthorizationList { authorizations }))
}

pub(crate) fn activity_json(a: &Authorization, activity: &Activity) -> AuthorizationActivity {
    AuthorizationActivity {
        authorization: authorization_json(a),
        last_used_at: activity.last_used_at.map(|t| t.as_secs()),
        signatures: activity.signatures,
    }
}

/// The account's authorizations, oldest first, each with its activity from the audit log.
pub(crate) async fn with_activity(
    state: &AppState,
    current: &CurrentUser,
) -> Result<Vec<(Authorization, Activity)>, ApiError> {
    let all = state
        .services
        .store
        .list_authorizations(current.tenant_id, Some(current.user_id))
        .await?;
    activity_of(state, all).await
}

/// Each authorization with its activity from the audit log.
pub(crate) async fn activity_of(
    state: &AppState,
    all: Vec<Authorization>,
) -> Result<Vec<(Authorization, Activity)>, ApiError> {
    let mut out = Vec::with_capacity(all.len());
    for a in all {
        let activity = state.services.store.authorization_activity(a.id).await?;
        out.push((a, activity));
    }
    Ok(out)
}

/// Revokes an authorization: refused at once here, on other instances within 250 ms.
#[utoipa::path(delete, path = "/api/authorizations/{id}", tag = "authorizations",
    params(("id" = String, Path, description = "The authorization id")),
    security(("session" = [])), responses(
        (status = 200, description = "Revoked", body = AuthorizationView),
        (status = 404, description = "No such authorization of this account", body = ErrorBody)))]
pub(crate) async fn revoke(
    State(state): State<AppState>,
    current: CurrentUser,
    Path(id): Path<String>,
) -> Result<RevokedView, ApiError> {
    let revoked = revoke_owned(&state, &current, &id).await?;
    Ok((state.applied_here(), Json(authorization_json(&revoked))))
}

/// A revocation's answer: the authorization as it is now, marked [`AppliedHere`] outside a
/// cluster.
pub(crate) type RevokedView = (
    Option<axum::Extension<AppliedHere>>,
    Json<AuthorizationView>,
);

/// Revokes the account's authorization `id` (as sent); another account's is 404 and
/// nothing changes. The ownership check is part of the store's write.
/// Shared by the JSON API and the web UI.
pub(crate) async fn revoke_owned(
    state: &AppState,
    current: &CurrentUser,
    id: &str,
) -> Result<Authorization, ApiError> {
    let id: AuthorizationId = id.parse().map_err(|_| not_found("authorization"))?;
    let revoked = match state
        .services
        .custody
        .revoke_authorization_of(current.tenant_id, current.user_id, id)
        .await
    {
        Ok(a) => a,
        Err(keycast_core::Error::NotFound { .. }) => return Err(not_found("authorization")),
        Err(e) => return Err(e.into()),
    };
    revoked_here(state, id);
    Ok(revoked)
}

/// The current account's authorization `id` (as sent); 404 for anything else.
pub(crate) async fn owned(
    state: &AppState,
    current: &CurrentUser,
    id: &str,
) -> Result<Authorization, ApiError> {
    let id: AuthorizationId = id.parse().map_err(|_| not_found("authorization"))?;
    match state.services.store.get_authorization(id).await {
        Ok(a) if a.user_id == current.user_id && a.tenant_id == current.tenant_id => Ok(a),
        Ok(_) | Err(keycast_core::Error::NotFound { .. }) => Err(not_found("authorization")),
        Err(e) => Err(e.into()),
    }
}

/// Revokes `id` (the caller checked who may). Refused here at once (the engine's cache
/// forgets it); the NIP-46 subscription lets go of its bunker key when the change feed is
/// next read (at once in a cluster, else at the next poll: the response is
/// [`AppliedHere`]); told of the revocation here, it does not read the authorization again.
pub(crate) async fn revoke_now(
    state: &AppState,
    id: AuthorizationId,
) -> Result<Authorization, ApiError> {
    let revoked = state.services.custody.revoke_authorization(id).await?;
    revoked_here(state, id);
    Ok(revoked)
}

/// Tells this instance's NIP-46 service of a revocation it made, so the change feed's
/// copy of it needs no second read.
fn revoked_here(state: &AppState, id: AuthorizationId) {
    if let Some(bunker) = &state.bunker {
        bunker.authorization_revoked(id);
    }
    tracing::info!(authorization = %id, "authorization revoked");
}
