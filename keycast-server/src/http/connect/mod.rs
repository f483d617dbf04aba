//! The `nostrconnect_url` of `/.well-known/nostr.json`: a page where the user approves a
//! client's `nostrconnect://` URI (NIP-46, client-initiated).
//!
//! 1. `GET /connect?uri=<nostrconnect>` (encoded or not, see [`query`]). A URI that does
//!    not parse gets an error page.
//! 2. Without a session, a login form (`POST /connect/login`: the account login with its
//!    limits; a form another site posted is refused), which sets the `keycast_session`
//!    cookie and comes back.
//! 3. The consent page names the app (as it names itself), its key and relays, and says
//!    in words what its `perms` allow, with the OAuth scope's wording and policy mapping.
//! 4. `POST /connect` (CSRF token bound to the session): Deny ends it, nothing is sent.
//!    Approve creates the policy and has the bunker pair with the client, which sends it
//!    the `connect` reply; there is nothing to redirect to.
//!
//! The URI carries the client's connect secret: it is never logged (requests log only
//! their path), and only the client pubkey is.

mod pair;
mod query;
mod view;

use axum::extract::rejection::FormRejection;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::Form;
use keycast_core::BearerSecret;
use keycast_nip46::NostrConnectUri;
use serde::Deserialize;
use zeroize::Zeroizing;

use super::accounts::CurrentUser;
use super::oauth::{page, params, session};
use super::{ApiError, AppState, ClientAddr, HostTenant};

/// The login form. No `Debug`: it holds a password (and the URI's secret).
#[derive(Deserialize)]
#[allow(missing_debug_implementations)]
pub(crate) struct LoginForm {
    uri: Option<String>,
    email: Option<String>,
    password: Option<Zeroizing<String>>,
}

/// The consent form. No `Debug`: the URI holds the client's secret.
#[derive(Deserialize)]
#[allow(missing_debug_implementations)]
pub(crate) struct DecisionForm {
    uri: Option<String>,
    key_id: Option<String>,
    csrf: Option<String>,
    decision: Option<String>,
}

/// An error as a page. Internal failures are said plainly (the detail is in the log) and
/// as "try again later", not as a bare 500.
fn failure(e: ApiError) -> Response {
    if e.status == StatusCode::INTERNAL_SERVER_ERROR {
        return page::error(
            StatusCode::SERVICE_UNAVAILABLE,
            "this server could not finish the request; nothing was connected. Try again later.",
        );
    }
    page::error(e.status, &e.message)
}

/// The URI, or why it cannot be used (for [`unusable`]).
fn parsed(text: Option<&str>) -> Result<NostrConnectUri, String> {
    let Some(text) = text.filter(|t| !t.is_empty()) else {
        return Err(
            "there is no nostrconnect:// URI: the app should open /connect?uri=nostrconnect://…"
                .to_owned(),
        );
    };
    NostrConnectUri::parse(text)
        .map_err(|e| format!("the app's nostrconnect:// URI cannot be used: {e}"))
}

fn unusable(why: String) -> Response {
    page::error(StatusCode::BAD_REQUEST, &why)
}

fn no_bunker() -> Response {
    page::error(
        StatusCode::SERVICE_UNAVAILABLE,
        "the NIP-46 service is not running on this server, so it cannot connect apps \
         through nostrconnect:// URIs",
    )
}

fn malformed() -> Response {
    page::error(
        StatusCode::BAD_REQUEST,
        "the form is malformed (a field is repeated or not valid UTF-8)",
    )
}

/// `GET /connect?uri=…`: the login form or the consent page.
pub(crate) async fn connect_page(
    State(state): State<AppState>,
    HostTenant(tenant): HostTenant,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    let text = query::uri(raw.as_deref());
    let uri = match parsed(text.as_deref()) {
        Ok(u) => u,
        Err(why) => return unusable(why),
    };
    let text = text.unwrap_or_default();
    if state.bunker.is_none() {
        return no_bunker();
    }
    match session::current(&state, tenant, &headers).await {
        Err(e) => failure(e),
        Ok(None) => view::login(StatusCode::OK, &text, &uri, None),
        Ok(Some((user, token))) => consent(&state, &text, &uri, &user, &token).await,
    }
}

async fn consent(
    state: &AppState,
    text: &str,
    uri: &NostrConnectUri,
    user: &CurrentUser,
    token: &BearerSecret,
) -> Response {
    match session::user_keys(state, user).await {
        Ok(keys) => view::consent(text, uri, &keys, &session::csrf(token)),
        Err(e) => failure(e),
    }
}

/// `POST /connect/login`: logs in (same limits as the API; a form another site posted is
/// refused) and goes back to the consent page.
pub(crate) async fn connect_login(
    State(state): State<AppState>,
    HostTenant(tenant): HostTenant,
    client: ClientAddr,
    headers: HeaderMap,
    form: Result<Form<LoginForm>, FormRejection>,
) -> Response {
    let Ok(Form(form)) = form else {
        return malformed();
    };
    let uri = match parsed(form.uri.as_deref()) {
        Ok(u) => u,
        Err(why) => return unusable(why),
    };
    let text = form.uri.as_deref().unwrap_or_default();
    let (Some(email), Some(password)) = (form.email.as_deref(), form.password) else {
        return view::login(
            StatusCode::BAD_REQUEST,
            text,
            &uri,
            Some("Enter your e-mail and password."),
        );
    };
    let back = format!("/connect?{}", params::query(&[("uri", text)]));
    match session::log_in(&state, tenant, &headers, &client, (email, password), &back).await {
        Ok(response) => response,
        Err(e) => session::refused_page(&e, |status, message| {
            view::login(status, text, &uri, Some(message))
        })
        .unwrap_or_else(|| failure(e)),
    }
}

/// `POST /connect`: the user's decision.
pub(crate) async fn connect_decision(
    State(state): State<AppState>,
    HostTenant(tenant): HostTenant,
    headers: HeaderMap,
    form: Result<Form<DecisionForm>, FormRejection>,
) -> Response {
    let Ok(Form(form)) = form else {
        return malformed();
    };
    let text = form.uri.as_deref().unwrap_or_default();
    let (user, token) = match session::current(&state, tenant, &headers).await {
        Err(e) => return failure(e),
        Ok(None) => {
            return match parsed(Some(text)) {
                Ok(uri) => view::login(
                    StatusCode::UNAUTHORIZED,
                    text,
                    &uri,
                    Some("Your session ended; log in again."),
                ),
                Err(why) => unusable(why),
            }
        }
        Ok(Some(found)) => found,
    };
    if !session::csrf_ok(&token, form.csrf.as_deref()) {
        return page::error(
            StatusCode::FORBIDDEN,
            "the form did not come from this server's connect page (missing or wrong CSRF token)",
        );
    }
    let uri = match parsed(Some(text)) {
        Ok(u) => u,
        Err(why) => return unusable(why),
    };
    match form.decision.as_deref() {
        Some("approve") => {}
        Some("deny") => {
            tracing::info!(client = %uri.client, "nostrconnect request declined");
            return view::declined(&uri);
        }
        _ => return page::error(StatusCode::BAD_REQUEST, "choose Approve or Deny"),
    }
    let Some(bunker) = state.bunker.as_deref() else {
        return no_bunker();
    };
    let Some(key_id) = form.key_id.as_deref() else {
        return page::error(StatusCode::BAD_REQUEST, "choose one of your keys");
    };
    let key = match super::keys::owned(&state, &user, key_id).await {
        Ok(k) => k,
        Err(e) if e.status == StatusCode::NOT_FOUND => {
            return page::error(StatusCode::BAD_REQUEST, "that key is not one of yours")
        }
        Err(e) => return failure(e),
    };
    // Before anything is written or sent (see `verified`).
    if let Err(e) = super::verified::require(&state, user.user_id).await {
        return failure(e);
    }
    match pair::approve(&state, bunker, &uri, &user, key.id).await {
        Ok(_) => view::connected(&uri, &key),
        Err(refusal) => refusal.into_page(),
    }
}
