//! The account's web UI under `/ui`: server-rendered pages with no script and nothing
//! loaded from elsewhere (the OAuth pages' frame and CSP), so there is no build step.
//!
//! - `login`: `GET`/`POST /ui/login` (the account login with its limits;
//!   sets the `keycast_session` cookie the OAuth and connect pages use too; refused when
//!   the browser's `Sec-Fetch-Site` says another site posted it) and
//!   `POST /ui/logout` (ends the session in the store and clears the cookie).
//! - `sessions`: `GET /ui`, the account's app sessions (authorizations) with their
//!   activity, and `POST /ui/sessions/{id}/revoke`.
//! - `approvals`: `GET`/`POST /ui/approvals/{id}`, where a `require_approval`
//!   authorization's waiting requests are approved or refused (its NIP-46 `auth_url`).
//! - `connect`: `GET`/`POST /ui/connect/new`, a new bunker connection with a permission
//!   preset (`preset`); the result page (`issued`) shows its `bunker://` URI (as text and
//!   an inline SVG QR code, `qr`) and RPC token once.
//! - `teams`: `GET`/`POST /ui/teams` (the account's teams with its role; create one) and
//!   `GET /ui/teams/{id}` (members, team keys, the connections on them) with the forms
//!   `POST /ui/teams/{id}/{members, members/{user}/remove, leave, keys, connect,
//!   authorizations/{id}/revoke}`. Admins see every form; a member sees the keys and the
//!   connections made for it, and may leave or revoke those. A non-member gets a 404 page,
//!   a member posting an admin form the API's 403, the last admin stepping down its 409.
//!
//! Every page but the login form needs a session ([`Signed`]; without one, a 303 to the
//! login form) and every form a CSRF token bound to it. Bad input gets an error page with
//! a 4xx status before anything is written; internal failures are a 503 page. The work
//! itself, with every role check, is the JSON API's
//! (`authorizations::{authorize, with_activity, revoke_owned}`, and for teams
//! `teams::{my_teams, create_team, members_of, set_member, remove, team_keys, add_key,
//! visible_authorizations, grant, revoke_grant}`), so the UI cannot check differently.

mod approvals;
mod connect;
mod issued;
mod layout;
mod login;
mod preset;
mod qr;
mod sessions;
mod teams;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::response::Response;
use axum::routing::{any, get, post};
use axum::Router;
use keycast_core::BearerSecret;

use super::accounts::CurrentUser;
use super::oauth::{params, session};
use super::{ApiError, AppState, HostTenant};

/// A form that carries only the CSRF token (logout, revoke, leave, remove).
#[derive(Debug, serde::Deserialize)]
pub(crate) struct CsrfForm {
    csrf: Option<String>,
}

/// Where a page without a session sends the browser.
const LOGIN: &str = "/ui/login";
/// The page after logging in.
const HOME: &str = "/ui";

/// The `/ui` routes.
pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route(HOME, get(sessions::page))
        .route("/ui/sessions/{id}/revoke", post(sessions::revoke))
        .route("/ui/connect/new", get(connect::form).post(connect::create))
        .route(
            "/ui/approvals/{id}",
            get(approvals::page).post(approvals::submit),
        )
        .route(LOGIN, get(login::form).post(login::submit))
        .route("/ui/logout", post(login::logout))
        .merge(teams::routes())
        .route("/ui/{*rest}", any(not_found))
}

/// The logged-in account of a `/ui` request and its session token (for CSRF). Without a
/// usable session the request is answered with a 303 to the login form, which also
/// drops a stale cookie.
#[derive(Debug)]
pub(crate) struct Signed {
    user: CurrentUser,
    token: BearerSecret,
}

impl Signed {
    /// The CSRF token for this session's forms.
    fn csrf(&self) -> String {
        session::csrf(&self.token)
    }

    /// A 403 page, unless `presented` is this session's CSRF token.
    fn csrf_refusal(&self, presented: Option<&str>) -> Option<Response> {
        if session::csrf_ok(&self.token, presented) {
            return None;
        }
        Some(layout::error(
            StatusCode::FORBIDDEN,
            "The form did not come from this server's pages (missing or wrong CSRF token). \
             Nothing was changed; reload the page and try again.",
        ))
    }
}

impl FromRequestParts<AppState> for Signed {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let HostTenant(tenant) = HostTenant::from_request_parts(parts, state).await?;
        match session::current(state, tenant, &parts.headers).await {
            Ok(Some((user, token))) => Ok(Self { user, token }),
            Ok(None) => Err(to_login(state)),
            Err(e) => Err(failure(e)),
        }
    }
}

/// A 303 to the login form that clears the session cookie.
fn to_login(state: &AppState) -> Response {
    let mut response = params::see_other(LOGIN);
    if let Some(clear) = session::clear_cookie(&state.services.config) {
        response.headers_mut().insert(header::SET_COOKIE, clear);
    }
    response
}

/// An API error as a page. Every server-side failure is a 503 "try again later" (the
/// detail is in the log, never on the page), so the UI never answers a bare 5xx.
fn failure(e: ApiError) -> Response {
    if e.status.is_server_error() {
        return layout::error(
            StatusCode::SERVICE_UNAVAILABLE,
            "This server could not finish the request. Try again later.",
        );
    }
    layout::error(e.status, &e.message)
}

/// A form body axum could not read (wrong content type, a field repeated or not UTF-8).
fn malformed() -> Response {
    layout::error(
        StatusCode::BAD_REQUEST,
        "The form is malformed (a field is repeated or not valid UTF-8). Nothing was changed.",
    )
}

async fn not_found() -> Response {
    layout::error(StatusCode::NOT_FOUND, "There is no such page.")
}
