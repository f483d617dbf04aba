//! The browser side of an account session: the `keycast_session` cookie holds a real
//! session token (the same store as the API's bearer sessions), and forms carry a CSRF
//! token derived from it.

use axum::http::{header, HeaderMap, HeaderValue};
use keycast_core::{BearerSecret, SecretDigest};

use crate::http::accounts::{session_user, CurrentUser, SESSION_TTL};
use crate::http::{ApiError, AppState, ClientAddr};
use crate::Config;

/// The cookie's name.
pub(crate) const COOKIE: &str = "keycast_session";

/// The session token in the `Cookie` header(s), if any.
pub(crate) fn token(headers: &HeaderMap) -> Option<BearerSecret> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.trim())
        .filter(|v| !v.is_empty() && v.len() <= 256)
        .map(BearerSecret::from_presented)
}

/// The logged-in account and its token; `None` without a usable session.
pub(crate) async fn current(
    state: &AppState,
    tenant: keycast_core::TenantId,
    headers: &HeaderMap,
) -> Result<Option<(CurrentUser, BearerSecret)>, ApiError> {
    let Some(token) = token(headers) else {
        return Ok(None);
    };
    match session_user(state, tenant, token.digest()).await {
        Ok(user) => Ok(Some((user, token))),
        Err(e) if e.status == axum::http::StatusCode::UNAUTHORIZED => Ok(None),
        Err(e) => Err(e),
    }
}

/// `Set-Cookie` for a new session: script cannot read it, other sites' subrequests and
/// form posts do not carry it, and it is HTTPS-only when the server is.
pub(crate) fn set_cookie(config: &Config, token: &BearerSecret) -> Option<HeaderValue> {
    cookie(config, token.expose(), SESSION_TTL.as_secs())
}

/// `Set-Cookie` that makes the browser drop the session cookie (same attributes, so it
/// replaces it).
pub(crate) fn clear_cookie(config: &Config) -> Option<HeaderValue> {
    cookie(config, "", 0)
}

fn cookie(config: &Config, value: &str, max_age: u64) -> Option<HeaderValue> {
    let secure = if config.public_url.starts_with("https:") {
        "; Secure"
    } else {
        ""
    };
    HeaderValue::from_str(&format!(
        "{COOKIE}={value}; HttpOnly; SameSite=Lax; Path=/; Max-Age={max_age}{secure}"
    ))
    .ok()
}

/// Whether a browser says the request came from another site. A login form has no session
/// to bind a CSRF token to yet, and a cross-site login would put the victim in the
/// attacker's account; clients that send no `Sec-Fetch-Site` are not browsers.
pub(crate) fn cross_site(headers: &HeaderMap) -> bool {
    headers
        .get("sec-fetch-site")
        .is_some_and(|v| !matches!(v.as_bytes(), b"same-origin" | b"none"))
}

/// The login form that `headers` came with, posted by `client`: a form another site sent
/// is refused (403 `cross_site`), then the account login (same limits as the API), and a
/// 303 to `back` that sets the session cookie. Shared by every login form.
pub(crate) async fn log_in(
    state: &AppState,
    tenant: keycast_core::TenantId,
    headers: &HeaderMap,
    client: &ClientAddr,
    (email, password): (&str, zeroize::Zeroizing<String>),
    back: &str,
) -> Result<axum::response::Response, ApiError> {
    if cross_site(headers) {
        return Err(ApiError::new(
            axum::http::StatusCode::FORBIDDEN,
            "cross_site",
            "This form was sent from another site; log in here instead.",
        ));
    }
    let (token, _) =
        crate::http::accounts::password_login(state, tenant, client, email, password).await?;
    let mut response = super::params::see_other(back);
    if let Some(cookie) = set_cookie(&state.services.config, &token) {
        response.headers_mut().insert(header::SET_COOKIE, cookie);
    }
    Ok(response)
}

/// The sentence a login form shows for a refused login, or `None` when the refusal is
/// not about the login (then it is an error page).
pub(crate) fn refusal_message(e: &ApiError) -> Option<String> {
    use axum::http::StatusCode;
    Some(match (e.status, e.code) {
        (StatusCode::UNAUTHORIZED, _) => "Wrong e-mail or password.".to_owned(),
        (StatusCode::FORBIDDEN, "cross_site") => e.message.clone(),
        (StatusCode::TOO_MANY_REQUESTS, _) => format!(
            "Too many login attempts; try again in {} seconds.",
            e.retry_after.unwrap_or(1)
        ),
        (StatusCode::SERVICE_UNAVAILABLE, "overloaded") => {
            "The server is busy; try again in a few seconds.".to_owned()
        }
        _ => return None,
    })
}

/// A login page for refusal `e`, with its `Retry-After`.
pub(crate) fn refused_page(
    e: &ApiError,
    page: impl FnOnce(axum::http::StatusCode, &str) -> axum::response::Response,
) -> Option<axum::response::Response> {
    let message = refusal_message(e)?;
    let mut response = page(e.status, &message);
    crate::http::error::set_retry_after(&mut response, e.status, e.retry_after);
    Some(response)
}

/// The account's own keys (kind `User`), for a consent page to offer.
pub(crate) async fn user_keys(
    state: &AppState,
    user: &CurrentUser,
) -> Result<Vec<keycast_core::StoredKey>, ApiError> {
    let keys = state
        .services
        .store
        .list_keys(user.tenant_id, Some(user.user_id))
        .await?;
    Ok(keys
        .into_iter()
        .filter(|k| k.kind == keycast_core::KeyKind::User)
        .collect())
}

/// The CSRF token of a session: hex SHA-256 of `"csrf:" ‖ session token`. A page can
/// show it without revealing the session, and another site cannot know it.
pub(crate) fn csrf(session: &BearerSecret) -> String {
    let digest = SecretDigest::of(format!("csrf:{}", session.expose()).as_bytes());
    hex::encode(digest.as_bytes())
}

/// Whether `presented` is the session's CSRF token (constant-time comparison).
pub(crate) fn csrf_ok(session: &BearerSecret, presented: Option<&str>) -> bool {
    let Some(bytes) = presented.and_then(|s| <[u8; 32] as hex::FromHex>::from_hex(s).ok()) else {
        return false;
    };
    let expected = SecretDigest::of(format!("csrf:{}", session.expose()).as_bytes());
    SecretDigest::from_bytes(bytes) == expected
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cookie_is_found_among_others() {
        let mut h = HeaderMap::new();
        h.append(
            header::COOKIE,
            HeaderValue::from_static("a=1; keycast_session=abc ; b=2"),
        );
        assert_eq!(token(&h).map(|t| t.expose().to_owned()), Some("abc".into()));
        let mut h = HeaderMap::new();
        h.append(
            header::COOKIE,
            HeaderValue::from_static("keycast_sessionx=1; x=keycast_session"),
        );
        assert!(token(&h).is_none());
    }

    #[test]
    fn only_browsers_saying_another_site_are_cross_site() {
        let with = |v: &'static str| {
            let mut h = HeaderMap::new();
            h.insert("sec-fetch-site", HeaderValue::from_static(v));
            cross_site(&h)
        };
        assert!(!cross_site(&HeaderMap::new()));
        assert!(!with("same-origin") && !with("none"));
        assert!(with("cross-site") && with("same-site"));
    }

    #[test]
    fn refused_logins_are_pages_with_the_wait() {
        use axum::http::StatusCode;
        let page = |status: StatusCode, message: &str| {
            let mut r = axum::response::Response::new(axum::body::Body::from(message.to_owned()));
            *r.status_mut() = status;
            r
        };
        let busy = ApiError::from(keycast_core::Error::Overloaded);
        let r = refused_page(&busy, page).expect("a page");
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(r.headers()[header::RETRY_AFTER], "1");
        let slow = ApiError::new(StatusCode::TOO_MANY_REQUESTS, "too_many_requests", "x")
            .retry_after(std::time::Duration::from_millis(2500));
        assert_eq!(
            refusal_message(&slow).as_deref(),
            Some("Too many login attempts; try again in 3 seconds.")
        );
        let r = refused_page(&slow, page).expect("a page");
        assert_eq!(r.headers()[header::RETRY_AFTER], "3");
        let wrong = ApiError::unauthorized("x");
        assert_eq!(
            refusal_message(&wrong).as_deref(),
            Some("Wrong e-mail or password.")
        );
        assert!(refused_page(&wrong, page)
            .is_some_and(|r| !r.headers().contains_key(header::RETRY_AFTER)));
        let broken = ApiError::from(keycast_core::Error::Internal("db".into()));
        assert!(
            refused_page(&broken, page).is_none(),
            "an error page instead"
        );
    }

    #[test]
    fn csrf_tokens_are_bound_to_the_session() {
        let a = BearerSecret::generate();
        let b = BearerSecret::generate();
        assert!(csrf_ok(&a, Some(&csrf(&a))));
        assert!(csrf_ok(&a, Some(&csrf(&a).to_uppercase())));
        assert!(!csrf_ok(&a, Some(&csrf(&b))));
        assert!(!csrf_ok(&a, None));
        assert!(!csrf_ok(&a, Some("")));
        assert!(!csrf_ok(&a, Some("00")));
        assert!(!csrf_ok(&a, Some(&"zz".repeat(32))));
        assert!(!csrf_ok(&a, Some(&"é".repeat(32))));
        assert!(!csrf(&a).contains(a.expose()));
    }
}
