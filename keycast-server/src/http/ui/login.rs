//! `GET`/`POST /ui/login` and `POST /ui/logout`.

use axum::extract::rejection::FormRejection;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::Form;
use serde::Deserialize;
use zeroize::Zeroizing;

use super::{failure, malformed, params, session, to_login, CsrfForm, Signed, HOME, LOGIN};
use crate::http::oauth::page;
use crate::http::{AppState, ClientAddr, HostTenant};

/// The login form. No `Debug`: it holds a password.
#[derive(Deserialize)]
#[allow(missing_debug_implementations)]
pub(super) struct LoginForm {
    email: Option<String>,
    password: Option<Zeroizing<String>>,
}

fn login_page(status: StatusCode, message: Option<&str>) -> Response {
    page::login_form_headed(status, "Log in to keycast", LOGIN, "", message)
}

/// `GET /ui/login`: the form, or the home page when already logged in.
pub(super) async fn form(
    State(state): State<AppState>,
    HostTenant(tenant): HostTenant,
    headers: HeaderMap,
) -> Response {
    match session::current(&state, tenant, &headers).await {
        Ok(Some(_)) => params::see_other(HOME),
        Ok(None) => login_page(StatusCode::OK, None),
        Err(e) => failure(e),
    }
}

/// `POST /ui/login`: the account login (same limits as the API; a form another site
/// posted is refused).
pub(super) async fn submit(
    State(state): State<AppState>,
    HostTenant(tenant): HostTenant,
    client: ClientAddr,
    headers: HeaderMap,
    form: Result<Form<LoginForm>, FormRejection>,
) -> Response {
    let Ok(Form(form)) = form else {
        return malformed();
    };
    let (Some(email), Some(password)) = (form.email.as_deref(), form.password) else {
        return login_page(
            StatusCode::BAD_REQUEST,
            Some("Enter your e-mail and password."),
        );
    };
    match session::log_in(&state, tenant, &headers, &client, (email, password), HOME).await {
        Ok(response) => response,
        Err(e) => session::refused_page(&e, |status, message| login_page(status, Some(message)))
            .unwrap_or_else(|| failure(e)),
    }
}

/// `POST /ui/logout`: ends the session in the store (so the cookie is dead even if the
/// browser kept it) and clears the cookie.
pub(super) async fn logout(
    State(state): State<AppState>,
    signed: Signed,
    form: Result<Form<CsrfForm>, FormRejection>,
) -> Response {
    let Ok(Form(form)) = form else {
        return malformed();
    };
    if let Some(refused) = signed.csrf_refusal(form.csrf.as_deref()) {
        return refused;
    }
    match state
        .services
        .store
        .delete_session(&signed.user.session)
        .await
    {
        Ok(_) => to_login(&state),
        Err(e) => failure(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use axum::body::to_bytes;

    use super::*;

    #[tokio::test]
    async fn the_login_page_posts_to_itself_and_escapes_its_message() {
        let r = login_page(StatusCode::UNAUTHORIZED, Some("<x>"));
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        let bytes = to_bytes(r.into_body(), 1 << 20).await.expect("body");
        let html = String::from_utf8(bytes.to_vec()).expect("utf-8");
        assert!(html.contains("action=\"/ui/login\""), "{html}");
        assert!(
            html.contains("&lt;x&gt;") && !html.contains("<x>"),
            "{html}"
        );
    }
}
