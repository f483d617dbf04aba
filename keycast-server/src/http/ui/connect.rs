//! `GET`/`POST /ui/connect/new`: a new bunker connection (authorization) for one of the
//! account's keys, with a permission preset. The result page is the only place its
//! `bunker://` URI and RPC token are ever shown (the page is not cached).

use std::collections::BTreeSet;

use axum::extract::rejection::FormRejection;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::Form;
use keycast_core::Permission;
use serde::Deserialize;

use super::{failure, layout, malformed, qr, session, Signed};
use crate::http::authorizations::{authorize, Issued, PolicyChoice};
use crate::http::oauth::page::{escape, key_options, key_summary, FULL_ACCESS};
use crate::http::AppState;

const PATH: &str = "/ui/connect/new";

/// The form's fields, all optional so a missing one gets a message, not a rejection.
#[derive(Debug, Deserialize)]
pub(super) struct NewConnection {
    csrf: Option<String>,
    key_id: Option<String>,
    label: Option<String>,
    /// `full` or `kinds`.
    preset: Option<String>,
    /// For `kinds`: comma-separated event kinds.
    kinds: Option<String>,
}

/// The event kinds in `text` (comma-separated, spaces allowed), or what is wrong.
fn kinds(text: &str) -> Result<BTreeSet<u16>, String> {
    let mut out = BTreeSet::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let kind = part.parse().map_err(|_| {
            let shown: String = part.chars().take(20).collect();
            format!(
                "\u{201c}{shown}\u{201d} is not an event kind (a whole number from 0 to 65535)."
            )
        })?;
        out.insert(kind);
    }
    if out.is_empty() {
        return Err("List at least one event kind to allow, such as 1 for short notes.".into());
    }
    Ok(out)
}

/// The permissions of a preset.
fn permissions(preset: Option<&str>, kind_list: Option<&str>) -> Result<Vec<Permission>, String> {
    match preset {
        Some("full") => Ok(vec![Permission::FullAccess]),
        Some("approve") => Ok(vec![Permission::FullAccess, Permission::RequireApproval]),
        Some("kinds") => Ok(vec![Permission::AllowedKinds {
            kinds: kinds(kind_list.unwrap_or(""))?,
        }]),
        _ => Err(
            "Choose what the app may do: full access, ask you each time, or only some event kinds."
                .into(),
        ),
    }
}

fn form_body(keys: &[keycast_core::StoredKey], csrf: &str) -> String {
    let intro = "<h1>New bunker connection</h1><p>A <code>bunker://</code> URI lets a NIP-46 \
                 app use one of your keys without ever seeing it.</p>";
    if keys.is_empty() {
        return format!(
            "{intro}<p class=\"error\">You have no keys yet. Create one \
             (<code>POST /api/keys</code>), then come back.</p>"
        );
    }
    format!(
        "{intro}<form method=\"post\" action=\"{PATH}\">\
         <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
         <label for=\"key_id\">Key</label><select id=\"key_id\" name=\"key_id\">{options}</select>\
         <label for=\"label\">Label</label>\
         <input id=\"label\" name=\"label\" required maxlength=\"100\" placeholder=\"Notes app on my phone\">\
         <fieldset><legend>The app may</legend>\
         <p><input type=\"radio\" id=\"preset-full\" name=\"preset\" value=\"full\" checked>\
         <label class=\"choice\" for=\"preset-full\">do everything: sign any event, encrypt and decrypt</label></p>\
         <p><input type=\"radio\" id=\"preset-approve\" name=\"preset\" value=\"approve\">\
         <label class=\"choice\" for=\"preset-approve\">ask me each time: every request waits \
         until I approve it here</label></p>\
         <p><input type=\"radio\" id=\"preset-kinds\" name=\"preset\" value=\"kinds\">\
         <label class=\"choice\" for=\"preset-kinds\">sign only the event kinds below \
         (encrypting and decrypting stay allowed)</label></p>\
         <label for=\"kinds\">Event kinds, comma-separated</label>\
         <input id=\"kinds\" name=\"kinds\" placeholder=\"1, 7\" inputmode=\"numeric\"></fieldset>\
         <button type=\"submit\">Create connection</button></form>",
        csrf = escape(csrf),
        options = key_options(keys),
    )
}

/// `GET /ui/connect/new`.
pub(super) async fn form(State(state): State<AppState>, signed: Signed) -> Response {
    match session::user_keys(&state, &signed.user).await {
        Ok(keys) => {
            let csrf = signed.csrf();
            let body = form_body(&keys, &csrf);
            layout::page(StatusCode::OK, "New bunker connection", PATH, &csrf, &body)
        }
        Err(e) => failure(e),
    }
}

/// The one page that shows the URI (text and QR code) and token; `full` adds the
/// full-access warning.
fn created(issued: &Issued, full: bool) -> String {
    let a = &issued.authorization;
    let uri = issued.bunker_uri.as_str();
    let qr = qr::svg(uri, "QR code of the bunker URI").map_or_else(
        || "<p>The URI is too long for a QR code; copy it instead.</p>".to_owned(),
        |svg| format!("<figure class=\"qr\" id=\"bunker-qr\">{svg}</figure>"),
    );
    format!(
        "<h1>Connection created</h1><p class=\"warn\"><strong>Shown once:</strong> copy the URI \
         or scan the code now. This page cannot be shown again; if you lose it, revoke the \
         session and create a new one.</p>\
         <p><strong>{label}</strong> may use <strong>{key}</strong>.</p>{full}\
         <h2>bunker:// URI</h2><p>Paste it into your Nostr app, or scan:</p>\
         <p><code id=\"bunker-uri\">{uri}</code></p>{qr}\
         <h2>HTTP RPC token</h2><p>For <code>POST /api/nostr</code> with \
         <code>Authorization: Bearer &lt;token&gt;</code>:</p>\
         <p><code id=\"rpc-token\">{token}</code></p>\
         <p><a href=\"/ui\">Back to your app sessions</a></p>",
        label = escape(a.label.as_str()),
        key = escape(&key_summary(&issued.key)),
        full = if full { FULL_ACCESS } else { "" },
        uri = escape(uri),
        token = escape(issued.token.expose()),
    )
}

/// `POST /ui/connect/new`: every field is checked before anything is written.
pub(super) async fn create(
    State(state): State<AppState>,
    signed: Signed,
    form: Result<Form<NewConnection>, FormRejection>,
) -> Response {
    let Ok(Form(form)) = form else {
        return malformed();
    };
    if let Some(refused) = signed.csrf_refusal(form.csrf.as_deref()) {
        return refused;
    }
    let bad = |message: &str| {
        layout::error(
            StatusCode::BAD_REQUEST,
            &format!("{message} Nothing was created."),
        )
    };
    let Some(key_id) = form.key_id.as_deref().filter(|k| !k.is_empty()) else {
        return bad("Choose one of your keys.");
    };
    let Some(label) = form.label.as_deref().filter(|l| !l.trim().is_empty()) else {
        return bad("Enter a label, so you can tell this app's session from others.");
    };
    let permissions = match permissions(form.preset.as_deref(), form.kinds.as_deref()) {
        Ok(p) => p,
        Err(message) => return bad(&message),
    };
    let full = permissions == [Permission::FullAccess];
    let policy = PolicyChoice::Permissions(permissions);
    match authorize(&state, &signed.user, key_id, label, policy, None).await {
        Ok(issued) => {
            tracing::info!(authorization = %issued.authorization.id, "bunker connection created in the web UI");
            let csrf = signed.csrf();
            layout::page(
                StatusCode::CREATED,
                "Connection created",
                PATH,
                &csrf,
                &created(&issued, full),
            )
        }
        Err(e) if e.status == StatusCode::NOT_FOUND => bad("That key is not one of yours."),
        Err(e) if e.status.is_client_error() => bad(&e.message),
        Err(e) => failure(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_are_comma_separated_numbers() {
        assert_eq!(kinds("1, 7,30023,1"), Ok(BTreeSet::from([1, 7, 30023])));
        assert_eq!(kinds(" 0 ,65535,"), Ok(BTreeSet::from([0, 65535])));
        for bad in ["", " , ", "1 7", "65536", "-1", "x", "1.5", "0x10"] {
            assert!(kinds(bad).is_err(), "{bad:?}");
        }
        let long = kinds(&"9".repeat(500)).expect_err("too big");
        assert!(long.chars().count() < 100, "{long}");
    }

    #[test]
    fn presets_map_to_permissions() {
        assert_eq!(
            permissions(Some("full"), Some("ignored")),
            Ok(vec![Permission::FullAccess])
        );
        assert_eq!(
            permissions(Some("kinds"), Some("1,7")),
            Ok(vec![Permission::AllowedKinds {
                kinds: BTreeSet::from([1, 7])
            }])
        );
        assert_eq!(
            permissions(Some("approve"), None),
            Ok(vec![Permission::FullAccess, Permission::RequireApproval])
        );
        assert!(permissions(Some("kinds"), None).is_err());
        assert!(permissions(Some("admin"), Some("1")).is_err());
        assert!(permissions(None, None).is_err());
    }
}
