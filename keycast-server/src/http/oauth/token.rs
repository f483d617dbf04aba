//! `POST /oauth/token`: a code and its PKCE verifier for an HTTP RPC token and a
//! `bunker://` URL (RFC 6749 §4.1.3, RFC 7636 §4.5).
//!
//! The code is taken from the store before anything else is checked, so it is single-use
//! whatever happens next; when a later check fails, the authorization it was for is
//! revoked too, so a stolen code leaves nothing usable behind.

use axum::extract::rejection::FormRejection;
use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Form, Json};
use keycast_core::nostr::Timestamp;
use keycast_core::{BearerSecret, OAuthCode, SecretDigest};
use serde::Deserialize;
use serde_json::json;
use zeroize::Zeroizing;

use super::{code, page, params, scope};
use crate::http::{ApiError, AppState, HostTenant};

/// The form body. No `Debug`: it holds the code and the verifier.
#[derive(Deserialize)]
#[allow(missing_debug_implementations)]
pub(crate) struct TokenForm {
    grant_type: Option<String>,
    code: Option<Zeroizing<String>>,
    redirect_uri: Option<String>,
    client_id: Option<String>,
    code_verifier: Option<Zeroizing<String>>,
}

/// An RFC 6749 §5.2 error: `{"error","error_description"}`.
#[derive(Debug)]
pub(crate) struct TokenError {
    status: StatusCode,
    error: &'static str,
    description: String,
}

impl TokenError {
    fn new(error: &'static str, description: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            error,
            description: description.into(),
        }
    }
}

impl From<ApiError> for TokenError {
    fn from(e: ApiError) -> Self {
        let error = if e.status == StatusCode::SERVICE_UNAVAILABLE {
            "temporarily_unavailable"
        } else {
            "server_error"
        };
        Self {
            status: e.status,
            error,
            description: e.message,
        }
    }
}

impl From<keycast_core::Error> for TokenError {
    fn from(e: keycast_core::Error) -> Self {
        ApiError::from(e).into()
    }
}

impl IntoResponse for TokenError {
    fn into_response(self) -> Response {
        let body = json!({"error": self.error, "error_description": self.description});
        let mut response = (self.status, page::no_store(), Json(body)).into_response();
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

pub(crate) async fn token(
    State(state): State<AppState>,
    HostTenant(tenant): HostTenant,
    form: Result<Form<TokenForm>, FormRejection>,
) -> Result<Response, TokenError> {
    let Form(form) = form.map_err(|e| {
        TokenError::new(
            "invalid_request",
            format!(
                "send a form body (application/x-www-form-urlencoded): {}",
                e.body_text()
            ),
        )
    })?;
    match form.grant_type.as_deref() {
        Some("authorization_code") => {}
        None => return Err(TokenError::new("invalid_request", "grant_type is required")),
        Some(_) => {
            return Err(TokenError::new(
                "unsupported_grant_type",
                "only grant_type=authorization_code is supported",
            ))
        }
    }
    let text = form
        .code
        .as_ref()
        .filter(|c| !c.is_empty())
        .ok_or_else(|| TokenError::new("invalid_request", "code is required"))?;
    let unknown = || TokenError::new("invalid_grant", "the code is unknown or was already used");
    if text.len() > code::MAX_CODE_LEN {
        return Err(unknown());
    }
    let digest = SecretDigest::of(text.as_bytes());
    let stored = match state
        .services
        .store
        .consume_oauth_code(&digest, Timestamp::now())
        .await
    {
        Ok(c) => c,
        Err(keycast_core::Error::NotFound { .. }) => {
            return Err(
                match code::issued_for(&state.services.keyring, text).await {
                    Some(authorization) => replayed(&state, authorization).await,
                    None => unknown(),
                },
            )
        }
        Err(keycast_core::Error::Expired) => {
            return Err(TokenError::new("invalid_grant", "the code expired"))
        }
        Err(e) => return Err(e.into()),
    };
    match exchange(&state, tenant, &form, text, &stored).await {
        Ok(response) => Ok(response),
        Err(e) => {
            // The code is spent; its authorization must not outlive a refused exchange.
            if let Err(revoke) = state
                .services
                .custody
                .revoke_authorization(stored.authorization_id)
                .await
            {
                tracing::warn!(authorization = %stored.authorization_id, error = %revoke, "cannot revoke the authorization of a refused code");
            }
            // A refusal is not a successful write: nudge the change feed here.
            state.services.changes.local.notify_one();
            tracing::info!(authorization = %stored.authorization_id, client = %stored.client_id, error = e.error, "oauth code refused; authorization revoked");
            Err(e)
        }
    }
}

/// A genuine code presented again (RFC 6749 §4.1.2): whoever holds it may not be the
/// client it was issued to, so the authorization it granted, and with it every token the
/// first exchange issued, is revoked.
async fn replayed(state: &AppState, authorization: keycast_core::AuthorizationId) -> TokenError {
    match state
        .services
        .custody
        .revoke_authorization(authorization)
        .await
    {
        Ok(_) | Err(keycast_core::Error::NotFound { .. }) => {}
        Err(e) => {
            tracing::warn!(%authorization, error = %e, "cannot revoke the authorization of a replayed code");
            return e.into();
        }
    }
    state.services.changes.local.notify_one();
    tracing::warn!(%authorization, "oauth code used twice; its authorization is revoked");
    TokenError::new(
        "invalid_grant",
        "the code was already used; the authorization it granted is revoked",
    )
}

/// Every check after the code was taken, then the token.
async fn exchange(
    state: &AppState,
    tenant: keycast_core::TenantId,
    form: &TokenForm,
    text: &str,
    stored: &OAuthCode,
) -> Result<Response, TokenError> {
    let s = &state.services;
    if stored.tenant_id != tenant {
        return Err(TokenError::new(
            "invalid_grant",
            "the code was issued at another host",
        ));
    }
    let client_id = form
        .client_id
        .as_deref()
        .ok_or_else(|| TokenError::new("invalid_request", "client_id is required"))?;
    if client_id != stored.client_id {
        return Err(TokenError::new(
            "invalid_grant",
            "the code was issued to another client",
        ));
    }
    if !s.config.oauth_clients.iter().any(|c| c.id == client_id) {
        return Err(TokenError::new(
            "invalid_client",
            "the client is no longer registered",
        ));
    }
    let redirect_uri = form
        .redirect_uri
        .as_deref()
        .ok_or_else(|| TokenError::new("invalid_request", "redirect_uri is required"))?;
    if redirect_uri != stored.redirect_uri {
        return Err(TokenError::new(
            "invalid_grant",
            "redirect_uri differs from the one the code was issued for",
        ));
    }
    let verifier = form
        .code_verifier
        .as_deref()
        .ok_or_else(|| TokenError::new("invalid_request", "code_verifier is required"))?;
    let well_formed = (43..=128).contains(&verifier.len())
        && verifier
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'));
    if !well_formed {
        return Err(TokenError::new(
            "invalid_request",
            "code_verifier must be 43-128 characters of A-Z a-z 0-9 - . _ ~",
        ));
    }
    let challenge = params::decode_challenge(&stored.code_challenge)
        .ok_or_else(|| TokenError::new("invalid_grant", "the code has no usable challenge"))?;
    // SecretDigest compares in constant time.
    if SecretDigest::of(verifier.as_bytes()) != SecretDigest::from_bytes(challenge) {
        return Err(TokenError::new(
            "invalid_grant",
            "code_verifier does not match the code_challenge",
        ));
    }

    let revoked = || TokenError::new("invalid_grant", "the authorization was revoked");
    let auth = match s.store.get_authorization(stored.authorization_id).await {
        Ok(a) => a,
        Err(keycast_core::Error::NotFound { .. }) => return Err(revoked()),
        Err(e) => return Err(e.into()),
    };
    if auth.user_id != stored.user_id || auth.check_active(Timestamp::now()).is_err() {
        return Err(revoked());
    }
    let secret = code::connect_secret(&s.keyring, auth.id, text).await?;
    if auth.connect_secret != Some(secret.digest()) {
        return Err(TokenError::new(
            "invalid_grant",
            "the authorization was already connected",
        ));
    }
    let bunker_url = crate::http::authorizations::bunker_uri(&auth, &secret)?;
    let key = s.store.get_key(auth.key_id).await?;
    let policy = s.store.get_policy(auth.policy_id).await?;
    let token: BearerSecret = s.issue_token(&auth, auth.expires_at).await?;
    tracing::info!(authorization = %auth.id, client = %stored.client_id, "oauth token issued");
    let body = json!({
        "access_token": token.expose(),
        "token_type": "Bearer",
        "bunker_url": bunker_url,
        "pubkey": key.pubkey.to_hex(),
        "scope": scope::granted(&policy.permissions),
    });
    Ok((StatusCode::OK, page::no_store(), Json(body)).into_response())
}
