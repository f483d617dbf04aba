//! `GET`/`POST /ui/connect/new`: a new bunker connection (authorization) for one of the
//! account's keys, with a permission preset. The result page is the only place its
//! `bunker://` URI and RPC token are ever shown (the page is not cached).

use axum::extract::rejection::FormRejection;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::Form;
use keycast_core::Permission;
use serde::Deserialize;

use super::issued::{self, Back};
use super::preset::Presets;
use super::{failure, layout, malformed, session, Signed};
use crate::http::authorizations::{authorize, PolicyChoice};
use crate::http::oauth::page::{escape, key_options};
use crate::http::AppState;

const PATH: &str = "/ui/connect/new";

/// Where the result page links back to.
const BACK: Back = Back {
    path: "/ui",
    text: "Back to your app sessions",
};

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
         {preset}\
         <button type=\"submit\">Create connection</button></form>",
        csrf = escape(csrf),
        options = key_options(keys),
        preset = Presets::Own.fields(),
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
    let permissions = match Presets::Own.permissions(form.preset.as_deref(), form.kinds.as_deref())
    {
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
                &issued::body(&issued, full, None, &BACK),
            )
        }
        Err(e) if e.status == StatusCode::NOT_FOUND => bad("That key is not one of yours."),
        // Pre-hijacking (see `http::verified`): the API's 403, as a page.
        Err(e) if e.code == "email_unverified" => layout::error(e.status, &e.message),
        Err(e) if e.status.is_client_error() => bad(&e.message),
        Err(e) => failure(e),
    }
}
