//! `POST /ui/teams/{id}/keys`: an admin adds a generated key to the team. (Importing a
//! secret stays with the JSON API: a page should not carry an nsec.)

use axum::extract::rejection::FormRejection;
use axum::extract::{Path, State};
use axum::response::Response;
use axum::Form;
use serde::Deserialize;

use super::super::{malformed, params, Signed};
use super::{bad, refused, team_path};
use crate::http::keys::NewKey;
use crate::http::teams::add_key;
use crate::http::AppState;

/// The new key's name.
#[derive(Debug, Deserialize)]
pub(super) struct KeyForm {
    csrf: Option<String>,
    name: Option<String>,
}

/// Back to the team page, where the key is listed with its npub.
pub(super) async fn add(
    State(state): State<AppState>,
    signed: Signed,
    Path(id): Path<String>,
    form: Result<Form<KeyForm>, FormRejection>,
) -> Response {
    let Ok(Form(form)) = form else {
        return malformed();
    };
    if let Some(refused) = signed.csrf_refusal(form.csrf.as_deref()) {
        return refused;
    }
    let body = match form.name.filter(|n| !n.trim().is_empty()) {
        Some(name) => Ok(NewKey::generated(name)),
        None => Err(bad("Enter a name for the key.")),
    };
    match add_key(&state, &signed.user, &id, body).await {
        Ok(_) => params::see_other(&team_path(&id)),
        Err(e) => refused(e),
    }
}
