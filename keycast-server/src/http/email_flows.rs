//! E-mail flows: verifying an account's address, and resetting a forgotten password.
//!
//! Each sends a single-use token to the account's address (only its SHA-256 digest is
//! stored); verification tokens last 24 hours, reset tokens one hour. A new code of a
//! purpose makes the account's older ones of that purpose useless (the store keeps one).
//! Every sender is under the mail budgets ([`super::mail_limits`]): over them, 429 with
//! `Retry-After` and nothing is sent. Forgot-password answers the same whether or not the
//! address has an account (its budget counts the address either way), and sends in the
//! background (so a slow or failing relay is not a tell either). A reset sets the new
//! password and ends every session of the account; with `revoke_apps` it also revokes
//! every app authorization, and the address it came from becomes one the login limits
//! know the account by.

use std::time::Duration;

use axum::extract::rejection::JsonRejection;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use keycast_core::nostr::Timestamp;
use keycast_core::{BearerSecret, Email, EmailPurpose, EmailToken, User};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::accounts::CurrentUser;
use super::client_addr::ClientAddr;
use super::error::{json_body, ErrorBody};
use super::tenant::HostTenant;
use super::{ApiError, AppState};
use crate::passwords;

/// How long a verification token lasts.
pub const VERIFY_TTL: Duration = Duration::from_secs(24 * 3600);
/// How long a password-reset token lasts.
pub const RESET_TTL: Duration = Duration::from_secs(3600);
/// How long a confirmation code for a sensitive action lasts.
pub const CONFIRM_TTL: Duration = Duration::from_secs(600);
/// Longest token accepted (a generated one is 64 hex characters).
const MAX_TOKEN_LEN: usize = 256;

/// A token from a message.
// No `Debug`: it holds a token.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(missing_debug_implementations)]
pub(crate) struct TokenBody {
    /// The token as the message showed it.
    #[schema(value_type = String, format = Password, max_length = 256)]
    token: Zeroizing<String>,
}

/// An address that forgot its password.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Forgot {
    /// The account's e-mail address.
    #[schema(format = Email, max_length = 254)]
    email: String,
}

/// A reset token and the new password.
// No `Debug`: it holds a token and a password.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(missing_debug_implementations)]
pub(crate) struct Reset {
    /// The token from the message.
    #[schema(value_type = String, format = Password, max_length = 256)]
    token: Zeroizing<String>,
    /// At least 10 characters; at most 1024 bytes.
    #[schema(value_type = String, format = Password, min_length = 10, max_length = 1024)]
    password: Zeroizing<String>,
    /// Also revoke every app authorization of the account (its bunker connections and
    /// RPC tokens), in the same step: for when someone else may have had the account.
    #[serde(default)]
    revoke_apps: bool,
}

/// What happened.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct Done {
    /// A sentence for the user.
    status: String,
}

/// The account's address, now verified.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct Verified {
    /// Unix seconds of the (first) verification.
    email_verified_at: u64,
}

/// A new password is set.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct PasswordReset {
    /// Sessions of the account that were ended.
    sessions_ended: u64,
    /// App authorizations revoked (with `revoke_apps`).
    apps_revoked: u64,
}

pub(crate) fn invalid_token() -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        "invalid_token",
        "the token is unknown, used, expired, or for something else",
    )
}

/// Sends the logged-in account a verification token.
#[utoipa::path(post, path = "/api/auth/email/verify/request", tag = "accounts",
    security(("session" = [])), responses(
        (status = 202, description = "Sent", body = Done),
        (status = 400, description = "The account has no e-mail address", body = ErrorBody),
        (status = 429, description = "Too many messages for this account or address; see Retry-After", body = ErrorBody),
        (status = 503, description = "Mail cannot be sent now; retry", body = ErrorBody)))]
pub(crate) async fn request_verification(
    State(state): State<AppState>,
    current: CurrentUser,
) -> Result<Response, ApiError> {
    mail_token(
        &state,
        &current,
        EmailPurpose::VerifyEmail,
        VERIFY_TTL,
        "Verify your e-mail address",
        |token| {
            format!(
                "Your keycast verification code:\n\n    {token}\n\nIt works once, for 24 hours \
                 (POST /api/auth/email/verify). If you did not ask for it, ignore this message.\n"
            )
        },
    )
    .await?;
    Ok(accepted("a verification code is on its way"))
}

/// A sensitive action to confirm by e-mail.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Confirm {
    /// `export_key` or `replace_key`: the code `POST /api/keys/{id}/danger/export` or
    /// `…/danger/replace` asks for.
    #[schema(value_type = ConfirmAction)]
    action: String,
}

/// Actions a mailed code confirms (documentation of `action`).
#[derive(utoipa::ToSchema)]
#[schema(rename_all = "snake_case")]
#[allow(dead_code)]
pub(crate) enum ConfirmAction {
    ExportKey,
    ReplaceKey,
}

/// Mails the logged-in account a code confirming a sensitive action (10 minutes, once).
#[utoipa::path(post, path = "/api/auth/confirm/request", tag = "accounts", request_body = Confirm,
    security(("session" = [])), responses(
        (status = 202, description = "Sent", body = Done),
        (status = 400, description = "Unknown action, or the account has no e-mail address", body = ErrorBody),
        (status = 429, description = "Too many messages for this account or address; see Retry-After", body = ErrorBody),
        (status = 503, description = "Mail cannot be sent now; retry", body = ErrorBody)))]
pub(crate) async fn request_confirmation(
    State(state): State<AppState>,
    current: CurrentUser,
    body: Result<Json<Confirm>, JsonRejection>,
) -> Result<Response, ApiError> {
    let (purpose, what) = match json_body(body)?.action.as_str() {
        "export_key" => (EmailPurpose::ConfirmExport, "export a key"),
        "replace_key" => (EmailPurpose::ConfirmReplaceKey, "replace a key"),
        other => {
            return Err(ApiError::bad_request(format!(
                "action: {other:?} is not export_key or replace_key"
            )))
        }
    };
    let subject = format!("Confirm: {what}");
    mail_token(&state, &current, purpose, CONFIRM_TTL, &subject, |token| {
        format!(
            "Someone logged in to your keycast account asked to {what}. The code:\n\n    {token}\n\n\
             It works once, for 10 minutes, together with your password. If it was not you, \
             change your password now.\n"
        )
    })
    .await?;
    Ok(accepted("a confirmation code is on its way"))
}

/// Issues a token of `purpose` for the logged-in account and mails it at once, with the
/// body `write` makes around it, within the mail budgets (429 otherwise, nothing issued
/// or sent); a failure to send is a 503 the caller may retry.
async fn mail_token(
    state: &AppState,
    current: &CurrentUser,
    purpose: EmailPurpose,
    ttl: Duration,
    subject: &str,
    write: impl FnOnce(&str) -> String,
) -> Result<(), ApiError> {
    let user = state.services.store.get_user(current.user_id).await?;
    let Some(email) = user.email.clone() else {
        return Err(ApiError::bad_request("this account has no e-mail address"));
    };
    state.mail_limits.for_account(user.id, &email).await?;
    let token = issue(state, &user, purpose, ttl).await?;
    state
        .services
        .mailer
        .send(email.as_str(), subject, write(token.expose()))
        .await
        .map_err(|e| {
            tracing::warn!(error = %e, "cannot send an account message");
            ApiError::from(keycast_core::Error::Unavailable("mail".into()))
        })
}

/// Redeems a verification token.
#[utoipa::path(post, path = "/api/auth/email/verify", tag = "accounts", request_body = TokenBody,
    responses(
        (status = 200, description = "Verified", body = Verified),
        (status = 400, description = "Unknown, used or expired token", body = ErrorBody)))]
pub(crate) async fn verify(
    State(state): State<AppState>,
    HostTenant(tenant): HostTenant,
    body: Result<Json<TokenBody>, JsonRejection>,
) -> Result<Json<Verified>, ApiError> {
    let b = json_body(body)?;
    let token = redeem(&state, tenant, &b.token, EmailPurpose::VerifyEmail).await?;
    let store = &state.services.store;
    store
        .mark_email_verified(token.user_id, Timestamp::now())
        .await?;
    let at = store
        .email_verified_at(token.user_id)
        .await?
        .unwrap_or_default();
    tracing::info!(user = %token.user_id, "e-mail verified");
    Ok(Json(Verified {
        email_verified_at: at.as_secs(),
    }))
}

/// Sends a password-reset token if the address has an account here; the same answer
/// either way.
#[utoipa::path(post, path = "/api/auth/password/forgot", tag = "accounts", request_body = Forgot,
    responses(
        (status = 202, description = "Sent if the address has an account", body = Done),
        (status = 400, description = "Not an e-mail address", body = ErrorBody),
        (status = 429, description = "Too many requests from this client or for this address (whether or not it has an account); see Retry-After", body = ErrorBody)))]
pub(crate) async fn forgot(
    State(state): State<AppState>,
    HostTenant(tenant): HostTenant,
    client: ClientAddr,
    body: Result<Json<Forgot>, JsonRejection>,
) -> Result<Response, ApiError> {
    let email = Email::parse(&json_body(body)?.email)?;
    // Before looking the address up, so the answer is the same for unknown ones.
    state.mail_limits.for_anyone(&client, &email).await?;
    let user = match state
        .services
        .store
        .find_user_by_email(tenant, &email)
        .await
    {
        Ok(u) => Some(u),
        Err(keycast_core::Error::NotFound { .. }) => None,
        Err(e) => return Err(e.into()),
    };
    if let Some(user) = user {
        let token = issue(&state, &user, EmailPurpose::ResetPassword, RESET_TTL).await?;
        let mailer = state.services.mailer.clone();
        let body = format!(
            "Someone asked to reset the password of your keycast account. The code:\n\n    {}\n\n\
             It works once, for one hour (POST /api/auth/password/reset), and ends every \
             session of the account. If someone else may have used your account, also \
             revoke every app session with it (\"revoke_apps\": true): each app then has \
             to be connected again. If you did not ask for this, ignore this message.\n",
            token.expose()
        );
        tokio::spawn(async move {
            if let Err(e) = mailer
                .send(email.as_str(), "Reset your password", body)
                .await
            {
                tracing::warn!(error = %e, "cannot send a password-reset message");
            }
        });
    }
    Ok(accepted(
        "if this address has an account here, a reset code is on its way",
    ))
}

/// Sets a new password with a reset token, ending every session of the account, and with
/// `revoke_apps` revoking every app authorization too.
#[utoipa::path(post, path = "/api/auth/password/reset", tag = "accounts", request_body = Reset,
    responses(
        (status = 200, description = "The new password is set", body = PasswordReset),
        (status = 400, description = "Weak password, or unknown, used or expired token", body = ErrorBody),
        (status = 429, description = "Too many attempts from this address; see Retry-After", body = ErrorBody),
        (status = 503, description = "Too many password hashes at once; see Retry-After", body = ErrorBody)))]
pub(crate) async fn reset(
    State(state): State<AppState>,
    HostTenant(tenant): HostTenant,
    client: ClientAddr,
    body: Result<Json<Reset>, JsonRejection>,
) -> Result<Json<PasswordReset>, ApiError> {
    let b = json_body(body)?;
    // Checked before the token is spent, so a weak choice can be corrected.
    passwords::check_strength(&b.password).map_err(ApiError::bad_request)?;
    // Hashing is the expensive part: the same per-address budget as logins.
    state.login_guard.attempt(&client).await?;
    let hash = state.passwords.hash(b.password).await?;
    let token = redeem(&state, tenant, &b.token, EmailPurpose::ResetPassword).await?;
    let revoke_apps_at = b.revoke_apps.then(Timestamp::now);
    let replaced = state
        .services
        .store
        .replace_password(token.user_id, &hash, revoke_apps_at)
        .await?;
    for id in &replaced.revoked {
        state.services.custody.invalidate_authorization(*id);
    }
    // The code proves the mailbox: the login limits know the account at this address now.
    let user = state.services.store.get_user(token.user_id).await?;
    if let Some(email) = &user.email {
        let account = super::login_guard::account_key(tenant, email.as_str());
        state.login_guard.succeeded(&account, &client).await;
    }
    tracing::info!(
        user = %token.user_id,
        sessions_ended = replaced.sessions_ended,
        apps_revoked = replaced.revoked.len(),
        "password reset"
    );
    Ok(Json(PasswordReset {
        sessions_ended: replaced.sessions_ended,
        apps_revoked: replaced.revoked.len() as u64,
    }))
}

fn accepted(status: &str) -> Response {
    (
        StatusCode::ACCEPTED,
        Json(Done {
            status: status.to_owned(),
        }),
    )
        .into_response()
}

/// Stores a fresh token for `user`; returns it to be mailed.
async fn issue(
    state: &AppState,
    user: &User,
    purpose: EmailPurpose,
    ttl: Duration,
) -> Result<BearerSecret, ApiError> {
    let secret = BearerSecret::generate();
    let now = Timestamp::now();
    let token = EmailToken {
        digest: secret.digest(),
        tenant_id: user.tenant_id,
        user_id: user.id,
        purpose,
        expires_at: Timestamp::from(now.as_secs() + ttl.as_secs()),
        created_at: now,
    };
    state.services.store.insert_email_token(&token).await?;
    Ok(secret)
}

/// Spends a presented token of `purpose` issued in `tenant`.
pub(crate) async fn redeem(
    state: &AppState,
    tenant: keycast_core::TenantId,
    presented: &str,
    purpose: EmailPurpose,
) -> Result<EmailToken, ApiError> {
    let presented = presented.trim();
    if presented.is_empty() || presented.len() > MAX_TOKEN_LEN {
        return Err(invalid_token());
    }
    let digest = BearerSecret::from_presented(presented).digest();
    match state
        .services
        .store
        .consume_email_token(&digest, purpose, Timestamp::now())
        .await
    {
        Ok(t) if t.tenant_id == tenant => Ok(t),
        Ok(_) | Err(keycast_core::Error::NotFound { .. } | keycast_core::Error::Expired) => {
            Err(invalid_token())
        }
        Err(e) => Err(e.into()),
    }
}
