//! The parameters of an authorization request and their checks, in two steps: the client
//! and redirect URI first (failures get an error page: an unchecked URI must never receive
//! a redirect), then everything else (failures go back to the app, RFC 6749 §4.1.2.1).

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::Deserialize;

use super::scope::Scope;
use crate::oauth_clients::OAuthClient;
use crate::Config;

/// Longest `state` accepted, in bytes; it is echoed in redirects.
pub(crate) const MAX_STATE_BYTES: usize = 1024;

/// An authorization request as sent, in the query or as hidden form fields. Unknown
/// parameters are ignored (RFC 6749 §3.1); repeated ones are refused by the parser.
#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct AuthParams {
    pub(crate) response_type: Option<String>,
    pub(crate) client_id: Option<String>,
    pub(crate) redirect_uri: Option<String>,
    pub(crate) code_challenge: Option<String>,
    pub(crate) code_challenge_method: Option<String>,
    pub(crate) state: Option<String>,
    pub(crate) scope: Option<String>,
}

/// A request that passed every check.
#[derive(Debug, Clone)]
pub(crate) struct AuthRequest {
    pub(crate) client: OAuthClient,
    pub(crate) redirect_uri: String,
    /// BASE64URL(SHA-256(verifier)): 43 characters, 32 bytes.
    pub(crate) code_challenge: String,
    pub(crate) state: Option<String>,
    /// As sent (it is sent again with the forms).
    pub(crate) scope_text: String,
    pub(crate) scope: Scope,
}

/// The client and its allow-listed redirect URI; the error is for an error page.
pub(crate) fn client_and_redirect<'a>(
    config: &'a Config,
    p: &AuthParams,
) -> Result<(&'a OAuthClient, String), String> {
    let id = p
        .client_id
        .as_deref()
        .ok_or("the request has no client_id")?;
    let client = config
        .oauth_clients
        .iter()
        .find(|c| c.id == id)
        .ok_or("unknown client_id: this app is not registered with this server")?;
    let uri = p
        .redirect_uri
        .as_deref()
        .ok_or("the request has no redirect_uri")?;
    if !client.allows_redirect(uri) {
        return Err(format!(
            "the redirect_uri is not registered for {}; nothing was sent to it",
            client.name
        ));
    }
    Ok((client, uri.to_owned()))
}

/// The remaining checks; a failure is a redirect to the app with the error.
pub(crate) fn check(
    p: &AuthParams,
    client: &OAuthClient,
    redirect_uri: String,
) -> Result<AuthRequest, ErrorRedirect> {
    let state = p.state.clone().filter(|s| s.len() <= MAX_STATE_BYTES);
    let fail = |error: &'static str, description: String| ErrorRedirect {
        redirect_uri: redirect_uri.clone(),
        error,
        description,
        state: state.clone(),
    };
    if p.state.as_ref().is_some_and(|s| s.len() > MAX_STATE_BYTES) {
        return Err(fail(
            "invalid_request",
            format!("state is longer than {MAX_STATE_BYTES} bytes"),
        ));
    }
    match p.response_type.as_deref() {
        Some("code") => {}
        None => return Err(fail("invalid_request", "response_type is required".into())),
        Some(_) => {
            return Err(fail(
                "unsupported_response_type",
                "only response_type=code is supported".into(),
            ))
        }
    }
    if p.code_challenge_method.as_deref() != Some("S256") {
        return Err(fail(
            "invalid_request",
            "code_challenge_method must be S256 (PKCE; plain is not accepted)".into(),
        ));
    }
    let challenge = p.code_challenge.as_deref().unwrap_or("");
    if decode_challenge(challenge).is_none() {
        return Err(fail(
            "invalid_request",
            "code_challenge must be BASE64URL(SHA-256(code_verifier)): 43 characters".into(),
        ));
    }
    let scope = Scope::parse(p.scope.as_deref()).map_err(|e| fail("invalid_scope", e))?;
    Ok(AuthRequest {
        client: client.clone(),
        redirect_uri,
        code_challenge: challenge.to_owned(),
        state,
        scope_text: p.scope.clone().unwrap_or_default(),
        scope,
    })
}

/// The 32 bytes of an S256 challenge, if it is one.
pub(crate) fn decode_challenge(challenge: &str) -> Option<[u8; 32]> {
    if challenge.len() != 43 {
        return None;
    }
    URL_SAFE_NO_PAD
        .decode(challenge)
        .ok()
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
}

impl AuthRequest {
    /// The request's parameters, to carry in hidden fields and the return URL.
    pub(crate) fn fields(&self) -> Vec<(&'static str, &str)> {
        let mut out = vec![
            ("response_type", "code"),
            ("client_id", self.client.id.as_str()),
            ("redirect_uri", self.redirect_uri.as_str()),
            ("code_challenge", self.code_challenge.as_str()),
            ("code_challenge_method", "S256"),
            ("scope", self.scope_text.as_str()),
        ];
        if let Some(state) = &self.state {
            out.push(("state", state.as_str()));
        }
        out
    }

    /// `/oauth/authorize?…` for this request (where the login form returns to).
    pub(crate) fn authorize_path(&self) -> String {
        format!("/oauth/authorize?{}", query(&self.fields()))
    }

    /// The redirect URI with `pairs` (and `state`) appended to its query.
    pub(crate) fn redirect_with(&self, pairs: &[(&str, &str)]) -> Response {
        redirect_to(&self.redirect_uri, pairs, self.state.as_deref())
    }
}

/// An error the app receives at its redirect URI.
#[derive(Debug, Clone)]
pub(crate) struct ErrorRedirect {
    pub(crate) redirect_uri: String,
    pub(crate) error: &'static str,
    pub(crate) description: String,
    pub(crate) state: Option<String>,
}

impl IntoResponse for ErrorRedirect {
    fn into_response(self) -> Response {
        redirect_to(
            &self.redirect_uri,
            &[
                ("error", self.error),
                ("error_description", &self.description),
            ],
            self.state.as_deref(),
        )
    }
}

/// 303 to `uri` plus `pairs` and `state`, `&`-joined to a query the URI may already have.
fn redirect_to(uri: &str, pairs: &[(&str, &str)], state: Option<&str>) -> Response {
    let mut all = pairs.to_vec();
    if let Some(state) = state {
        all.push(("state", state));
    }
    let separator = if uri.contains('?') { '&' } else { '?' };
    see_other(&format!("{uri}{separator}{}", query(&all)))
}

/// 303 See Other to `location`, never cached.
pub(crate) fn see_other(location: &str) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    // Every byte of `location` is a checked URI or percent-encoded, so this cannot fail;
    // if it ever did, the answer would be a bare 303 without a target, not a panic.
    if let Ok(value) = HeaderValue::from_str(location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// `application/x-www-form-urlencoded` pairs.
pub(crate) fn query(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_are_encoded_and_appended() {
        assert_eq!(
            query(&[("state", "a b&c=d/é<")]),
            "state=a%20b%26c%3Dd%2F%C3%A9%3C"
        );
        let r = redirect_to("https://a.example/cb?x=1", &[("code", "k")], Some("s"));
        assert_eq!(r.status(), StatusCode::SEE_OTHER);
        assert_eq!(
            r.headers()[header::LOCATION],
            "https://a.example/cb?x=1&code=k&state=s"
        );
        let r = redirect_to("https://a.example/cb", &[("code", "k")], None);
        assert_eq!(r.headers()[header::LOCATION], "https://a.example/cb?code=k");
    }

    #[test]
    fn challenges_must_be_s256_shaped() {
        let good = URL_SAFE_NO_PAD.encode([7u8; 32]);
        assert!(decode_challenge(&good).is_some());
        assert!(decode_challenge(&good[..42]).is_none());
        assert!(decode_challenge(&format!("{good}A")).is_none());
        assert!(decode_challenge(&"+".repeat(43)).is_none());
    }
}
