//! The page that shows a new bunker connection's credentials, the only time they are
//! ever shown (the page is not cached): its `bunker://` URI as text and QR code, and its
//! RPC token. Both the account's connect page and a team's page end here.

use super::qr;
use crate::http::authorizations::Issued;
use crate::http::oauth::page::{escape, key_summary, FULL_ACCESS};

/// Where the page links back to: path and link text (plain text, escaped here).
pub(super) struct Back<'a> {
    pub(super) path: &'a str,
    pub(super) text: &'a str,
}

/// The page body for `issued`: `full` adds the full-access warning; `for_whom` (an
/// e-mail, plain text) says whom an admin should hand it to.
pub(super) fn body(issued: &Issued, full: bool, for_whom: Option<&str>, back: &Back) -> String {
    let a = &issued.authorization;
    let uri = issued.bunker_uri.as_str();
    let qr = qr::svg(uri, "QR code of the bunker URI").map_or_else(
        || "<p>The URI is too long for a QR code; copy it instead.</p>".to_owned(),
        |svg| format!("<figure class=\"qr\" id=\"bunker-qr\">{svg}</figure>"),
    );
    let handed = for_whom.map_or_else(String::new, |email| {
        format!(
            "<p id=\"for-whom\">It was made for <strong>{}</strong>: hand them the URI or \
             the code yourself.</p>",
            escape(email)
        )
    });
    format!(
        "<h1>Connection created</h1><p class=\"warn\"><strong>Shown once:</strong> copy the URI \
         or scan the code now. This page cannot be shown again; if you lose it, revoke the \
         session and create a new one.</p>\
         <p><strong>{label}</strong> may use <strong>{key}</strong>.</p>{handed}{full}\
         <h2>bunker:// URI</h2><p>Paste it into your Nostr app, or scan:</p>\
         <p><code id=\"bunker-uri\">{uri}</code></p>{qr}\
         <h2>HTTP RPC token</h2><p>For <code>POST /api/nostr</code> with \
         <code>Authorization: Bearer &lt;token&gt;</code>:</p>\
         <p><code id=\"rpc-token\">{token}</code></p>\
         <p><a href=\"{back_path}\">{back_text}</a></p>",
        label = escape(a.label.as_str()),
        key = escape(&key_summary(&issued.key)),
        full = if full { FULL_ACCESS } else { "" },
        uri = escape(uri),
        token = escape(issued.token.expose()),
        back_path = escape(back.path),
        back_text = escape(back.text),
    )
}
