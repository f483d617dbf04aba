//! `GET /oauth/authorize` (login form or consent page), `POST /oauth/login` and
//! `POST /oauth/authorize` (the user's decision).

use axum::extract::rejection::{FormRejection, QueryRejection};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Form;
use keycast_core::{Label, Policy};
use serde::Deserialize;
use zeroize::Zeroizing;

use super::params::{self, AuthParams, AuthRequest};
use super::{code, page, session};
use crate::http::accounts::CurrentUser;
use crate::http::{ApiError, AppState, ClientAddr, HostTenant};

/// The fields of the login and consent forms: the request again, plus what the user
/// entered. No `Debug`: it holds a password.
#[derive(Deserialize)]
#[allow(missing_debug_implementations)]
pub(crate) struct AuthForm {
    response_type: Option<String>,
    client_id: Option<String>,
    redirect_uri: Option<String>,
    code_challenge: Option<String>,
    code_challenge_method: Option<String>,
    state: Option<String>,
    scope: Option<String>,
    email: Option<String>,
    password: Option<Zeroizing<String>>,
    key_id: Option<String>,
    csrf: Option<String>,
    decision: Option<String>,
}

impl AuthForm {
    fn params(&self) -> AuthParams {
        AuthParams {
            response_type: self.response_type.clone(),
            client_id: self.client_id.clone(),
            redirect_uri: self.redirect_uri.clone(),
            code_challenge: self.code_challenge.clone(),
            code_challenge_method: self.code_challenge_method.clone(),
            state: self.state.clone(),
            scope: self.scope.clone(),
        }
    }
}

/// Why a request cannot go on: an error page while the client or redirect URI is
/// unproven, a redirect with the error after.
enum Refusal {
    Page(String),
    Redirect(params::ErrorRedirect),
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        match self {
            Refusal::Page(message) => page::error(StatusCode::BAD_REQUEST, &message),
            Refusal::Redirect(r) => r.into_response(),
        }
    }
}

fn checked(state: &AppState, p: &AuthParams) -> Result<AuthRequest, Refusal> {
    let (client, redirect_uri) =
        params::client_and_redirect(&state.services.config, p).map_err(Refusal::Page)?;
    params::check(p, client, redirect_uri).map_err(Refusal::Redirect)
}

/// A store failure as a page (the message is safe: `ApiError` keeps internals out).
fn failure(e: ApiError) -> Response {
    page::error(e.status, &e.message)
}

fn malformed(what: &str) -> Response {
    page::error(
        StatusCode::BAD_REQUEST,
        &format!("the {what} is malformed (a parameter is repeated or not valid UTF-8)"),
    )
}

pub(crate) async fn authorize_page(
    State(state): State<AppState>,
    HostTenant(tenant): HostTenant,
    headers: HeaderMap,
    query: Result<Query<AuthParams>, QueryRejection>,
) -> Response {
    let Ok(Query(p)) = query else {
        return malformed("query");
    };
    let req = match checked(&state, &p) {
        Ok(r) => r,
        Err(refusal) => return refusal.into_response(),
    };
    match session::current(&state, tenant, &headers).await {
        Err(e) => failure(e),
        Ok(None) => page::login(StatusCode::OK, &req, None),
        Ok(Some((user, token))) => consent(&state, &req, &user, &token).await,
    }
}

async fn consent(
    state: &AppState,
    req: &AuthRequest,
    user: &CurrentUser,
    token: &keycast_core::BearerSecret,
) -> Response {
    match session::user_keys(state, user).await {
        Ok(keys) => page::consent(req, &keys, &session::csrf(token)),
        Err(e) => failure(e),
    }
}

/// `POST /oauth/login`: the account login (same limits as the API; a form another site
/// posted is refused).
pub(crate) async fn login(
    State(state): State<AppState>,
    HostTenant(tenant): HostTenant,
    client: ClientAddr,
    headers: HeaderMap,
    form: Result<Form<AuthForm>, FormRejection>,
) -> Response {
    let Ok(Form(form)) = form else {
        return malformed("form");
    };
    let req = match checked(&state, &form.params()) {
        Ok(r) => r,
        Err(refusal) => return refusal.into_response(),
    };
    let (Some(email), Some(password)) = (form.email.as_deref(), form.password) else {
        return page::login(
            StatusCode::BAD_REQUEST,
            &req,
            Some("Enter your e-mail and password."),
        );
    };
    let back = req.authorize_path();
    match session::log_in(&state, tenant, &headers, &client, (email, password), &back).await {
        Ok(response) => response,
        Err(e) => session::refused_page(&e, |status, message| {
            page::login(status, &req, Some(message))
        })
        .unwrap_or_else(|| failure(e)),
    }
}

pub(crate) async fn authorize_decision(
    State(state): State<AppState>,
    HostTenant(tenant): HostTenant,
    headers: HeaderMap,
    form: Result<Form<AuthForm>, FormRejection>,
) -> Response {
    let Ok(Form(form)) = form else {
        return malformed("form");
    };
    let p = form.params();
    // Client and redirect URI first: nothing may go to an unchecked URI.
    if let Err(e) = params::client_and_redirect(&state.services.config, &p) {
        return page::error(StatusCode::BAD_REQUEST, &e);
    }
    let (user, token) = match session::current(&state, tenant, &headers).await {
        Err(e) => return failure(e),
        Ok(None) => {
            return match checked(&state, &p) {
                Ok(req) => page::login(
                    StatusCode::UNAUTHORIZED,
                    &req,
                    Some("Your session ended; log in again."),
                ),
                Err(refusal) => refusal.into_response(),
            }
        }
        Ok(Some(found)) => found,
    };
    if !session::csrf_ok(&token, form.csrf.as_deref()) {
        return page::error(
            StatusCode::FORBIDDEN,
            "the form did not come from this server's consent page (missing or wrong CSRF token)",
        );
    }
    let req = match checked(&state, &p) {
        Ok(r) => r,
        Err(refusal) => return refusal.into_response(),
    };
    match form.decision.as_deref() {
        Some("approve") => {}
        Some("deny") => {
            return params::ErrorRedirect {
                redirect_uri: req.redirect_uri.clone(),
                error: "access_denied",
                description: "the user denied the request".into(),
                state: req.state.clone(),
            }
            .into_response()
        }
        _ => return page::error(StatusCode::BAD_REQUEST, "choose Approve or Deny"),
    }
    let Some(key_id) = form.key_id.as_deref() else {
        return page::error(StatusCode::BAD_REQUEST, "choose one of your keys");
    };
    let key = match crate::http::keys::owned(&state, &user, key_id).await {
        Ok(k) => k,
        Err(e) if e.status == StatusCode::NOT_FOUND => {
            return page::error(StatusCode::BAD_REQUEST, "that key is not one of yours")
        }
        Err(e) => return failure(e),
    };
    match approve(&state, &req, &user, key.id).await {
        Ok(code) => req.redirect_with(&[("code", code.as_str())]),
        Err(e) => failure(e),
    }
}

/// The policy from the scope, the authorization, and a code for it. A failure part-way
/// removes what was made, so a refused approval leaves nothing behind.
async fn approve(
    state: &AppState,
    req: &AuthRequest,
    user: &CurrentUser,
    key_id: keycast_core::KeyId,
) -> Result<Zeroizing<String>, ApiError> {
    // Before anything is written (see `verified`).
    crate::http::verified::require(state, user.user_id).await?;
    let s = &state.services;
    let label = Label::parse(&req.client.name)?;
    let policy =
        Policy::new(user.tenant_id, label.clone(), req.scope.permissions())?.owned_by(user.user_id);
    s.store.insert_policy(&policy).await?;
    let (auth, secret) =
        match crate::http::authorizations::connect_key(state, user, key_id, policy.id, label, None)
            .await
        {
            Ok(created) => created,
            Err(e) => {
                let _ = s.store.delete_policy(policy.id).await;
                return Err(e);
            }
        };
    match code::issue(s.store.as_ref(), &s.keyring, &auth, &secret, req).await {
        Ok(code) => {
            tracing::info!(authorization = %auth.id, client = %req.client.id, "oauth code issued");
            Ok(code)
        }
        Err(e) => {
            let _ = s.custody.revoke_authorization(auth.id).await;
            Err(e.into())
        }
    }
}
