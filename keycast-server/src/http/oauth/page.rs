//! The server-rendered pages: login form, consent page and error page. Every interpolated
//! value goes through [`escape`]; pages load nothing, run no script, cannot be framed and
//! are not cached.

use axum::http::{header, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use keycast_core::StoredKey;

use super::params::AuthRequest;

/// HTML-escapes text for element content and quoted attribute values.
pub(crate) fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;max-width:32rem;margin:2rem auto;padding:0 1rem;color:#222}\
h1{font-size:1.4rem}label{display:block;margin:.8rem 0 .2rem}input,select{width:100%;padding:.4rem;box-sizing:border-box}\
button{margin:1rem .5rem 0 0;padding:.5rem 1.2rem}.error{color:#a00}.warn{background:#fff3cd;padding:.6rem}";

/// A complete page with the security headers. `redirect_origin` is added to
/// `form-action`: Chromium applies `form-action` to the redirect that follows a form
/// post, and the consent form's answer redirects to the app.
pub(crate) fn html(
    status: StatusCode,
    title: &str,
    body: &str,
    redirect_origin: Option<&str>,
) -> Response {
    styled(status, title, "", body, redirect_origin)
}

/// [`html`] with `extra_style` (a constant, never user input) after the shared style.
pub(crate) fn styled(
    status: StatusCode,
    title: &str,
    extra_style: &str,
    body: &str,
    redirect_origin: Option<&str>,
) -> Response {
    let page = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <title>{}</title><style>{STYLE}{extra_style}</style></head><body>{body}</body></html>",
        escape(title)
    );
    let form_action = match redirect_origin {
        Some(origin) => format!("'self' {origin}"),
        None => "'self'".to_owned(),
    };
    let csp = format!(
        "default-src 'none'; style-src 'unsafe-inline'; form-action {form_action}; \
         frame-ancestors 'none'; base-uri 'none'"
    );
    let mut response = (status, page).into_response();
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    if let Ok(csp) = HeaderValue::from_str(&csp) {
        h.insert(header::CONTENT_SECURITY_POLICY, csp);
    }
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

/// The warning a full-access grant gets on a consent page.
pub(crate) const FULL_ACCESS: &str =
    "<p class=\"warn\"><strong>Full access: this app will be able \
     to sign any event and encrypt and decrypt any message with the key you choose.</strong></p>";

/// An error page; it never redirects.
pub(crate) fn error(status: StatusCode, message: &str) -> Response {
    let body = format!(
        "<h1>This request cannot continue</h1><p class=\"error\">{}</p>\
         <p>Go back to the app and try again, or tell its developers.</p>",
        escape(message)
    );
    html(status, "Authorization error", &body, None)
}

fn hidden_fields(req: &AuthRequest) -> String {
    req.fields()
        .iter()
        .map(|(name, value)| {
            format!(
                "<input type=\"hidden\" name=\"{}\" value=\"{}\">",
                escape(name),
                escape(value)
            )
        })
        .collect()
}

/// The login form; it posts to `/oauth/login` with the request in hidden fields.
pub(crate) fn login(status: StatusCode, req: &AuthRequest, message: Option<&str>) -> Response {
    login_form(
        status,
        &req.client.name,
        "/oauth/login",
        &hidden_fields(req),
        message,
    )
}

/// A login form for connecting `app`, posting e-mail and password (plus `hidden`, already
/// escaped fields) to `action`; `message` is shown above it.
pub(crate) fn login_form(
    status: StatusCode,
    app: &str,
    action: &str,
    hidden: &str,
    message: Option<&str>,
) -> Response {
    let heading = format!("Log in to connect {app}");
    login_form_headed(status, &heading, action, hidden, message)
}

/// [`login_form`] under any `heading` (plain text, escaped here).
pub(crate) fn login_form_headed(
    status: StatusCode,
    heading: &str,
    action: &str,
    hidden: &str,
    message: Option<&str>,
) -> Response {
    let message = message
        .map(|m| format!("<p class=\"error\" role=\"alert\">{}</p>", escape(m)))
        .unwrap_or_default();
    let body = format!(
        "<h1>{heading}</h1>{message}\
         <form method=\"post\" action=\"{action}\">{hidden}\
         <label for=\"email\">E-mail</label>\
         <input id=\"email\" name=\"email\" type=\"email\" autocomplete=\"username\" required>\
         <label for=\"password\">Password</label>\
         <input id=\"password\" name=\"password\" type=\"password\" autocomplete=\"current-password\" required>\
         <button type=\"submit\">Log in</button></form>",
        heading = escape(heading),
        action = escape(action),
    );
    html(status, "Log in", &body, None)
}

/// The consent page: who asks, what it may do in words, which key, Approve or Deny.
pub(crate) fn consent(req: &AuthRequest, keys: &[StoredKey], csrf: &str) -> Response {
    let list = |items: Vec<String>| -> String {
        items
            .iter()
            .map(|i| format!("<li>{}</li>", escape(i)))
            .collect()
    };
    let mut body = format!(
        "<h1>{client} wants to use one of your Nostr keys</h1><p>It asks to:</p><ul>{asked}</ul>",
        client = escape(&req.client.name),
        asked = list(req.scope.requested_words()),
    );
    let extra = req.scope.extra_words();
    if !extra.is_empty() {
        body.push_str(&format!(
            "<p>Keycast cannot limit it that narrowly; it will also be able to:</p><ul>{}</ul>",
            list(extra)
        ));
    }
    if req.scope.full_access() {
        body.push_str(FULL_ACCESS);
    }
    body.push_str(&format!(
        "<p>Afterwards you will be sent to <code>{}</code>. You can revoke the access at any time.</p>",
        escape(&req.redirect_uri)
    ));
    let buttons = if keys.is_empty() {
        "<p class=\"error\">You have no keys yet. Create one, then come back.</p>\
         <button type=\"submit\" name=\"decision\" value=\"deny\">Deny</button>"
            .to_owned()
    } else {
        let options = key_options(keys);
        format!(
            "<label for=\"key_id\">Key</label><select id=\"key_id\" name=\"key_id\">{options}</select>\
             <button type=\"submit\" name=\"decision\" value=\"approve\">Approve</button>\
             <button type=\"submit\" name=\"decision\" value=\"deny\">Deny</button>"
        )
    };
    body.push_str(&format!(
        "<form method=\"post\" action=\"/oauth/authorize\">{hidden}\
         <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">{buttons}</form>",
        hidden = hidden_fields(req),
        csrf = escape(csrf),
    ));
    html(
        StatusCode::OK,
        "Authorize app",
        &body,
        Some(&form_action_source(&req.redirect_uri)),
    )
}

/// `<option>`s naming each key and the start of its npub.
pub(crate) fn key_options(keys: &[StoredKey]) -> String {
    keys.iter()
        .map(|k| {
            format!(
                "<option value=\"{}\">{}</option>",
                escape(&k.id.to_string()),
                escape(&key_summary(k))
            )
        })
        .collect()
}

/// A key's name and the start of its npub (plain text, to be escaped).
pub(crate) fn key_summary(k: &StoredKey) -> String {
    let npub = keycast_core::nostr::ToBech32::to_bech32(&k.pubkey).unwrap_or_default();
    format!("{} ({}…)", k.name.as_str(), npub.get(..16).unwrap_or(&npub))
}

/// The CSP source that lets the consent form's redirect reach `redirect_uri`: its origin,
/// or for an IPv6 literal (which CSP host sources cannot name) its scheme.
fn form_action_source(redirect_uri: &str) -> String {
    match keycast_core::nostr::Url::parse(redirect_uri) {
        Ok(url) if !url.host_str().unwrap_or("").starts_with('[') => {
            url.origin().ascii_serialization()
        }
        Ok(url) => format!("{}:", url.scheme()),
        Err(_) => "'none'".to_owned(),
    }
}

/// Headers every OAuth answer with a credential or code carries.
pub(crate) fn no_store() -> [(HeaderName, HeaderValue); 2] {
    [
        (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        (header::PRAGMA, HeaderValue::from_static("no-cache")),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_covers_markup_and_quotes() {
        assert_eq!(
            escape(r#"<script>"a" & 'b'</script>"#),
            "&lt;script&gt;&quot;a&quot; &amp; &#39;b&#39;&lt;/script&gt;"
        );
    }

    #[test]
    fn pages_carry_the_security_headers() {
        let r = error(StatusCode::BAD_REQUEST, "<b>");
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        assert!(r.headers().get(header::LOCATION).is_none());
        assert_eq!(r.headers()[header::X_FRAME_OPTIONS], "DENY");
        assert_eq!(r.headers()[header::CACHE_CONTROL], "no-store");
        let csp = r.headers()[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .expect("ascii");
        assert!(csp.starts_with("default-src 'none'"), "{csp}");
        assert!(csp.contains("form-action 'self'"), "{csp}");
    }

    #[test]
    fn the_form_action_source_is_the_redirect_origin() {
        assert_eq!(
            form_action_source("https://app.example/cb?x=1"),
            "https://app.example"
        );
        assert_eq!(
            form_action_source("http://127.0.0.1:8765/cb"),
            "http://127.0.0.1:8765"
        );
        assert_eq!(form_action_source("http://[::1]:8765/cb"), "http:");
    }
}
