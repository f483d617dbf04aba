//! The `/connect` pages: login form, consent page, declined and connected. They use the
//! OAuth pages' frame (security headers, CSP, no script) and escape every value.

use axum::http::StatusCode;
use axum::response::Response;
use keycast_core::nostr::ToBech32;
use keycast_core::StoredKey;
use keycast_nip46::NostrConnectUri;

use crate::http::oauth::page::{self, escape, html, key_options, FULL_ACCESS};
use crate::http::oauth::scope::Scope;

/// The app's name from the URI's metadata, for headings.
pub(crate) fn app_name(uri: &NostrConnectUri) -> &str {
    uri.name.as_deref().unwrap_or("An app")
}

fn hidden_uri(text: &str) -> String {
    format!(
        "<input type=\"hidden\" name=\"uri\" value=\"{}\">",
        escape(text)
    )
}

fn list(items: &[String]) -> String {
    items
        .iter()
        .map(|i| format!("<li>{}</li>", escape(i)))
        .collect()
}

/// The login form; it posts the URI back with the credentials to `/connect/login`.
pub(crate) fn login(
    status: StatusCode,
    text: &str,
    uri: &NostrConnectUri,
    message: Option<&str>,
) -> Response {
    page::login_form(
        status,
        app_name(uri),
        "/connect/login",
        &hidden_uri(text),
        message,
    )
}

/// Who asks, from where, what it may do in words, which key, Approve or Deny.
pub(crate) fn consent(
    text: &str,
    uri: &NostrConnectUri,
    keys: &[StoredKey],
    csrf: &str,
) -> Response {
    let scope = Scope::from_perms(uri.perms.iter().cloned());
    let npub = uri
        .client
        .to_bech32()
        .unwrap_or_else(|_| uri.client.to_hex());
    let relays: Vec<String> = uri.relays.iter().map(ToString::to_string).collect();
    let mut body = format!(
        "<h1>{app} wants to use one of your Nostr keys</h1>",
        app = escape(app_name(uri))
    );
    if let Some(url) = &uri.url {
        body.push_str(&format!(
            "<p>It gives its website as <code>{}</code> (not verified).</p>",
            escape(url.as_str())
        ));
    }
    body.push_str(&format!(
        "<p>It connects as <code>{}</code> through:</p><ul>{}</ul>",
        escape(&npub),
        list(&relays)
    ));
    if scope.is_empty() {
        body.push_str(
            "<p>It did not say what it needs. As with a NIP-46 connection that names no \
             permissions, approving gives it full access.</p>",
        );
    } else {
        let asked = scope.requested_words();
        if !asked.is_empty() {
            body.push_str(&format!("<p>It asks to:</p><ul>{}</ul>", list(&asked)));
        }
        let extra = scope.extra_words();
        if !extra.is_empty() {
            body.push_str(&format!(
                "<p>Keycast cannot limit it that narrowly; it will also be able to:</p><ul>{}</ul>",
                list(&extra)
            ));
        }
        let unsupported = scope.unsupported();
        if !unsupported.is_empty() {
            body.push_str(&format!(
                "<p>It also asked for methods keycast does not offer; they will be refused:</p><ul>{}</ul>",
                list(&unsupported)
            ));
        }
    }
    if scope.full_access() {
        body.push_str(FULL_ACCESS);
    }
    body.push_str("<p>You can revoke the access at any time.</p>");
    let buttons = if keys.is_empty() {
        "<p class=\"error\">You have no keys yet. Create one, then come back.</p>\
         <button type=\"submit\" name=\"decision\" value=\"deny\">Deny</button>"
            .to_owned()
    } else {
        format!(
            "<label for=\"key_id\">Key</label><select id=\"key_id\" name=\"key_id\">{}</select>\
             <button type=\"submit\" name=\"decision\" value=\"approve\">Approve</button>\
             <button type=\"submit\" name=\"decision\" value=\"deny\">Deny</button>",
            key_options(keys)
        )
    };
    body.push_str(&format!(
        "<form method=\"post\" action=\"/connect\">{hidden}\
         <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">{buttons}</form>",
        hidden = hidden_uri(text),
        csrf = escape(csrf),
    ));
    html(StatusCode::OK, "Connect app", &body, None)
}

/// After Deny: NIP-46 has no refusal message for this flow, so the app simply never
/// hears back.
pub(crate) fn declined(uri: &NostrConnectUri) -> Response {
    let body = format!(
        "<h1>Request declined</h1><p>{} was not connected and got nothing from this server. \
         You can close this page.</p>",
        escape(app_name(uri))
    );
    html(StatusCode::OK, "Request declined", &body, None)
}

/// After Approve: the app has been sent its `connect` reply.
pub(crate) fn connected(uri: &NostrConnectUri, key: &StoredKey) -> Response {
    let npub = key
        .pubkey
        .to_bech32()
        .unwrap_or_else(|_| key.pubkey.to_hex());
    let body = format!(
        "<h1>Connected — return to the app</h1><p>{app} can now use your key \
         <strong>{name}</strong> (<code>{npub}</code>). Go back to the app; it has been told.</p>\
         <p>You can revoke the access at any time.</p>",
        app = escape(app_name(uri)),
        name = escape(key.name.as_str()),
        npub = escape(&npub),
    );
    html(StatusCode::OK, "Connected", &body, None)
}

#[cfg(test)]
mod tests {
    use axum::body::to_bytes;
    use keycast_core::nostr::Keys;

    use super::*;

    async fn text(r: Response) -> String {
        let bytes = to_bytes(r.into_body(), 1 << 20).await.expect("body");
        String::from_utf8(bytes.to_vec()).expect("utf-8")
    }

    fn uri(query: &str) -> NostrConnectUri {
        let pk = Keys::generate().public_key().to_hex();
        NostrConnectUri::parse(&format!(
            "nostrconnect://{pk}?relay=wss://r.example&{query}"
        ))
        .expect("uri")
    }

    #[tokio::test]
    async fn consent_escapes_and_words_the_request() {
        let u = uri("name=%3Cb%3E&perms=sign_event:1,get_relays&secret=s3cr3t");
        let page = text(consent("<\"uri\">", &u, &[], "tok")).await;
        assert!(page.contains("&lt;b&gt; wants to use"), "{page}");
        assert!(!page.contains("<b>"), "{page}");
        assert!(page.contains("value=\"&lt;&quot;uri&quot;&gt;\""), "{page}");
        assert!(
            page.contains("Sign events of kind 1 (short text notes)"),
            "{page}"
        );
        assert!(page.contains("<li>get_relays</li>"), "{page}");
        assert!(!page.contains("Full access"), "{page}");
    }

    #[tokio::test]
    async fn no_perms_is_full_access_in_bold() {
        let page = text(consent("x", &uri("secret=s"), &[], "tok")).await;
        assert!(page.contains("did not say what it needs"), "{page}");
        assert!(page.contains("<strong>Full access"), "{page}");
        assert!(page.contains("An app wants to use"), "{page}");
    }
}
