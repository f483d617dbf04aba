//! Accounts: register and log in with e-mail and password, sessions with hashed tokens,
//! logout, and the current user.
//!
//! Logins and registrations are limited per client address, and failures slow down
//! further attempts per e-mail and address, with a per-e-mail budget across addresses
//! ([`super::login_guard`]): 429 with `Retry-After`. Failures are counted whether or not
//! the account exists, so answers do not reveal it. Every password hash and check runs
//! on the bounded [`crate::passwords::PasswordHashing`]: 503 with `Retry-After` when it is
//! full.
//!
//! Registration answers 409 for an e-mail that has an account: see docs/SECURITY.md for
//! why that answer is kept, and the per-address registration limit that bounds probing.

use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use keycast_core::nostr::Timestamp;
use keycast_core::{BearerSecret, Email, Session, User, UserId, Username};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::client_addr::ClientAddr;
use super::error::{bearer_digest, json_body, ErrorBody};
use super::tenant::HostTenant;
use super::{ApiError, AppState};
use crate::passwords;

/// How long a session lasts.
pub const SESSION_TTL: Duration = Duration::from_secs(7 * 24 * 3600);
/// An e-mail address and password.
// No `Debug`: it holds a password.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(missing_debug_implementations)]
pub(crate) struct Credentials {
    /// The account's e-mail address.
    #[schema(format = Email, max_length = 254)]
    email: String,
    /// At least 10 characters when registering; at most 1024 bytes.
    #[schema(value_type = String, format = Password, min_length = 1, max_length = 1024)]
    password: Zeroizing<String>,
}

/// A registration: the credentials, and optionally the account's own key to bring (an
/// nsec or 64 hex characters in `nsec`, or a NIP-49 `ncryptsec` with its
/// `ncryptsec_password`), stored as its first key, named `main`.
// No `Debug`: it holds a password and maybe a secret key.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(missing_debug_implementations)]
pub(crate) struct Registration {
    /// The account's e-mail address.
    #[schema(format = Email, max_length = 254)]
    email: String,
    /// At least 10 characters; at most 1024 bytes.
    #[schema(value_type = String, format = Password, min_length = 10, max_length = 1024)]
    password: Zeroizing<String>,
    /// A secret key to bring: nsec or 64 hex characters.
    #[schema(value_type = Option<String>, format = Password)]
    nsec: Option<Zeroizing<String>>,
    /// A NIP-49 `ncryptsec1…` to bring, with `ncryptsec_password`.
    ncryptsec: Option<String>,
    /// The ncryptsec's password.
    #[schema(value_type = Option<String>, format = Password)]
    ncryptsec_password: Option<Zeroizing<String>>,
}

/// A new account, with the key it brought.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct Registered {
    #[serde(flatten)]
    account: Account,
    /// The key brought at registration, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    key: Option<super::keys::KeyView>,
}

/// An account.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct Account {
    /// Its id.
    #[schema(value_type = String)]
    id: UserId,
    /// Its e-mail address.
    email: Option<String>,
    /// Unix seconds when the address was verified (`POST /api/auth/email/verify`).
    email_verified_at: Option<u64>,
    /// Unix seconds.
    created_at: u64,
}

/// A new session.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct LoginAnswer {
    /// Send as `Authorization: Bearer <token>`; shown once.
    token: String,
    /// Unix seconds.
    expires_at: u64,
}

/// Creates an account (when registration is open), with the key it brings if any. A bad
/// key, or one already stored in this tenant, creates nothing.
#[utoipa::path(post, path = "/api/auth/register", tag = "accounts", request_body = Registration,
    responses(
        (status = 201, description = "Registered", body = Registered),
        (status = 400, description = "Bad e-mail, weak password, or not a usable key", body = ErrorBody),
        (status = 403, description = "Registration is closed; or (with SMTP) a key was brought before the e-mail is verified (`email_unverified`)", body = ErrorBody),
        (status = 409, description = "The e-mail has an account, or the key is stored already", body = ErrorBody),
        (status = 429, description = "Too many registrations from this address; see Retry-After", body = ErrorBody),
        (status = 503, description = "Too many password hashes or NIP-49 imports at once; see Retry-After", body = ErrorBody)))]
pub(crate) async fn register(
    State(state): State<AppState>,
    HostTenant(tenant): HostTenant,
    client: ClientAddr,
    body: Result<Json<Registration>, JsonRejection>,
) -> Result<Response, ApiError> {
    if !state.services.config.registration_open {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "registration_closed",
            "registration is closed on this server",
        ));
    }
    let r = json_body(body)?;
    let email = Email::parse(&r.email)?;
    passwords::check_strength(&r.password).map_err(ApiError::bad_request)?;
    state.login_guard.register(&client).await?;
    let brings_key = r.nsec.is_some() || r.ncryptsec.is_some() || r.ncryptsec_password.is_some();
    if brings_key && super::verified::required(&state) {
        // A new account has not proved its address yet (see `verified`).
        return Err(super::verified::unverified());
    }
    let names = ["nsec", "ncryptsec", "ncryptsec_password"];
    let secret =
        super::keys::imported_secret(&state, names, r.nsec, r.ncryptsec, r.ncryptsec_password)
            .await?;
    let hash = state.passwords.hash(r.password).await?;
    // The username is internal for e-mail accounts: unique and free of personal data.
    let username = Username::parse(&format!("u-{}", uuid::Uuid::new_v4().simple()))?;
    let user = User::new(tenant, username, Some(hash)).with_email(email);
    match state.services.store.create_user(&user).await {
        Ok(()) => {}
        Err(keycast_core::Error::AlreadyExists { .. }) => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "already_exists",
                "an account with this e-mail exists",
            ))
        }
        Err(e) => return Err(e.into()),
    }
    let key = match secret {
        None => None,
        Some(secret) => Some(brought_key(&state, &user, secret).await?),
    };
    state.counters.registrations.fetch_add(1, Ordering::Relaxed);
    tracing::info!(user = %user.id, brought_key = key.is_some(), "account registered");
    let answer = Registered {
        account: account_json(&user),
        key: key.as_ref().map(super::keys::key_json),
    };
    Ok((StatusCode::CREATED, Json(answer)).into_response())
}

/// Stores the key a registration brought; on failure the new account is removed again,
/// so the registration changes nothing.
async fn brought_key(
    state: &AppState,
    user: &User,
    secret: keycast_core::nostr::SecretKey,
) -> Result<keycast_core::StoredKey, ApiError> {
    let name = keycast_core::Label::parse("main")?;
    let created = state
        .services
        .custody
        .create_key(
            keycast_core::NewKey::generate(
                user.tenant_id,
                keycast_core::Holder::User(user.id),
                keycast_core::KeyKind::User,
                name,
            )
            .with_secret(secret),
        )
        .await;
    match created {
        Ok(key) => Ok(key),
        Err(e) => {
            if let Err(undo) = state.services.store.delete_user(user.id).await {
                tracing::error!(user = %user.id, error = %undo, "cannot remove the account of a failed registration");
            }
            Err(match e {
                keycast_core::Error::AlreadyExists { .. } => ApiError::new(
                    StatusCode::CONFLICT,
                    "already_exists",
                    "this key is already stored here",
                ),
                e => e.into(),
            })
        }
    }
}

/// Logs in: a session token for the account API.
#[utoipa::path(post, path = "/api/auth/login", tag = "accounts", request_body = Credentials,
    responses(
        (status = 200, description = "Logged in", body = LoginAnswer),
        (status = 401, description = "Wrong e-mail or password", body = ErrorBody),
        (status = 429, description = "Too many attempts from this address, or failures for this e-mail; see Retry-After", body = ErrorBody),
        (status = 503, description = "Too many password checks at once; see Retry-After", body = ErrorBody)))]
pub(crate) async fn login(
    State(state): State<AppState>,
    HostTenant(tenant): HostTenant,
    client: ClientAddr,
    body: Result<Json<Credentials>, JsonRejection>,
) -> Result<Json<LoginAnswer>, ApiError> {
    let c = json_body(body)?;
    let (secret, session) = password_login(&state, tenant, &client, &c.email, c.password).await?;
    Ok(Json(LoginAnswer {
        token: secret.expose().to_owned(),
        expires_at: session.expires_at.as_secs(),
    }))
}

/// Checks an e-mail and password of `tenant` from `client` under the login limits and
/// opens a session; shared by the JSON login and the login forms.
pub(crate) async fn password_login(
    state: &AppState,
    tenant: keycast_core::TenantId,
    client: &ClientAddr,
    email: &str,
    password: Zeroizing<String>,
) -> Result<(BearerSecret, Session), ApiError> {
    let refused = || ApiError::unauthorized("wrong e-mail or password");
    let Ok(email) = Email::parse(email) else {
        state
            .counters
            .login_failures
            .fetch_add(1, Ordering::Relaxed);
        return Err(refused());
    };
    let limited = super::login_guard::account_key(tenant, email.as_str());
    state.login_guard.admit(&limited, client).await?;
    if password.len() > passwords::MAX_BYTES {
        state
            .counters
            .login_failures
            .fetch_add(1, Ordering::Relaxed);
        return Err(refused());
    }
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
    let hash = user.as_ref().and_then(|u| u.password_hash.clone());
    let matches = state.passwords.verify(password, hash).await?;
    let (true, Some(user)) = (matches, user) else {
        state.login_guard.failed(&limited, client).await;
        state
            .counters
            .login_failures
            .fetch_add(1, Ordering::Relaxed);
        return Err(refused());
    };
    state.login_guard.succeeded(&limited, client).await;
    let secret = BearerSecret::generate();
    let now = Timestamp::now();
    let session = Session {
        digest: secret.digest(),
        tenant_id: user.tenant_id,
        user_id: user.id,
        expires_at: Timestamp::from(now.as_secs() + SESSION_TTL.as_secs()),
        created_at: now,
    };
    state.services.store.insert_session(&session).await?;
    state.counters.logins.fetch_add(1, Ordering::Relaxed);
    tracing::info!(user = %user.id, "logged in");
    Ok((secret, session))
}

/// Ends the current session.
#[utoipa::path(post, path = "/api/auth/logout", tag = "accounts", security(("session" = [])),
    responses(
        (status = 204, description = "Logged out"),
        (status = 401, description = "Not logged in", body = ErrorBody)))]
pub(crate) async fn logout(
    State(state): State<AppState>,
    current: CurrentUser,
) -> Result<StatusCode, ApiError> {
    state
        .services
        .store
        .delete_session(&current.session)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The logged-in account.
#[utoipa::path(get, path = "/api/me", tag = "accounts", security(("session" = [])),
    responses(
        (status = 200, description = "The account", body = Account),
        (status = 401, description = "Not logged in", body = ErrorBody)))]
pub(crate) async fn me(
    State(state): State<AppState>,
    current: CurrentUser,
) -> Result<Json<Account>, ApiError> {
    let store = &state.services.store;
    let user = store.get_user(current.user_id).await?;
    let mut account = account_json(&user);
    account.email_verified_at = store.email_verified_at(user.id).await?.map(|t| t.as_secs());
    Ok(Json(account))
}

fn account_json(user: &User) -> Account {
    Account {
        id: user.id,
        email: user.email.as_ref().map(|e| e.as_str().to_owned()),
        email_verified_at: None,
        created_at: user.created_at.as_secs(),
    }
}

/// The account of a valid session (`Authorization: Bearer <session token>`) of the
/// request's tenant.
#[derive(Debug, Clone, Copy)]
pub struct CurrentUser {
    /// The account.
    pub user_id: UserId,
    /// Its tenant (the one the request's host is served for).
    pub tenant_id: keycast_core::TenantId,
    /// Its session's digest.
    pub session: keycast_core::SecretDigest,
}

impl FromRequestParts<AppState> for CurrentUser {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let HostTenant(tenant) = HostTenant::from_request_parts(parts, state).await?;
        let digest = bearer_digest(&parts.headers).ok_or_else(|| {
            ApiError::unauthorized("log in and send Authorization: Bearer <session token>")
                .into_response()
        })?;
        session_user(state, tenant, digest)
            .await
            .map_err(IntoResponse::into_response)
    }
}

/// The account of the session with `digest` (from a bearer header or the OAuth cookie);
/// 401 when it is unknown, ended or expired, or another tenant's (as if unknown).
pub(crate) async fn session_user(
    state: &AppState,
    tenant: keycast_core::TenantId,
    digest: keycast_core::SecretDigest,
) -> Result<CurrentUser, ApiError> {
    let session = match state.services.store.find_session(&digest).await {
        Ok(s) if s.tenant_id == tenant => s,
        Ok(_) | Err(keycast_core::Error::NotFound { .. }) => {
            return Err(ApiError::unauthorized("unknown or ended session"))
        }
        Err(e) => return Err(e.into()),
    };
    if session.expires_at <= Timestamp::now() {
        let _ = state.services.store.delete_session(&digest).await;
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "expired",
            "session expired; log in again",
        ));
    }
    Ok(CurrentUser {
        user_id: session.user_id,
        tenant_id: session.tenant_id,
        session: digest,
    })
}
