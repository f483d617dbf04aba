//! Against account pre-hijacking: someone registers a victim's e-mail before the victim
//! does, plants a key and an app, and waits for the victim to take the account over
//! (by password reset) and use the planted key. So where mail really goes out (SMTP is
//! configured), an account must have proved its address before it creates or imports a
//! key (including one brought at registration) or an authorization is made for it (API,
//! web UI, OAuth, `/connect`, team grants; the admin making a team grant must have
//! proved its own too): 403 `email_unverified`, and nothing is created.
//!
//! Without SMTP (development: mail is written to `<data dir>/mail/`), nobody can receive
//! mail at a victim's address anyway, and the check is off.

use axum::http::StatusCode;
use keycast_core::UserId;

use super::{ApiError, AppState};

/// Whether keys and authorizations need a verified e-mail here.
pub(crate) fn required(state: &AppState) -> bool {
    state.services.config.smtp_url.is_some()
}

/// The refusal.
pub(crate) fn unverified() -> ApiError {
    ApiError::new(
        StatusCode::FORBIDDEN,
        "email_unverified",
        "verify this account's e-mail address first (POST /api/auth/email/verify/request, \
         then /api/auth/email/verify with the mailed code); nothing was created",
    )
}

/// `Ok` when `user` may hold keys and authorizations; [`unverified`] otherwise.
pub(crate) async fn require(state: &AppState, user: UserId) -> Result<(), ApiError> {
    if !required(state) {
        return Ok(());
    }
    match state.services.store.email_verified_at(user).await? {
        Some(_) => Ok(()),
        None => Err(unverified()),
    }
}
