//! A team page's connection forms: an admin creates one on a team key for itself or a
//! member (the result page shows its URI, QR code and token once, like the account's own
//! connect page), and Revoke buttons on the connections the API lets the account revoke.

use axum::extract::rejection::FormRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Form;
use keycast_core::Permission;
use serde::Deserialize;

use super::super::issued::{self, Back};
use super::super::preset::Presets;
use super::super::{layout, malformed, params, CsrfForm, Signed};
use super::{bad, refused, team_path, TEAMS};
use crate::http::teams::{grant, revoke_grant, TeamGrant};
use crate::http::{ApiError, AppState};

/// The new-connection form; all optional so a missing field gets a message.
#[derive(Debug, Deserialize)]
pub(super) struct ConnectionForm {
    csrf: Option<String>,
    key_id: Option<String>,
    label: Option<String>,
    /// The member's e-mail; empty for the admin itself.
    member: Option<String>,
    /// `full` or `kinds`.
    preset: Option<String>,
    /// For `kinds`: comma-separated event kinds.
    kinds: Option<String>,
}

/// The API's grant for `form`, or what is missing or wrong in the UI's own fields (the
/// key, the member and the label's content are the API's to check).
fn body(form: ConnectionForm) -> Result<TeamGrant, ApiError> {
    let Some(key_id) = form.key_id.filter(|k| !k.is_empty()) else {
        return Err(bad("Choose one of the team's keys."));
    };
    let Some(label) = form.label.filter(|l| !l.trim().is_empty()) else {
        return Err(bad(
            "Enter a label, so the connection can be told from others.",
        ));
    };
    let permissions = Presets::Team
        .permissions(form.preset.as_deref(), form.kinds.as_deref())
        .map_err(|m| bad(&m))?;
    Ok(TeamGrant {
        key_id,
        policy_id: None,
        permissions: Some(permissions),
        label: Some(label),
        expires_at: None,
        member: form.member.filter(|m| !m.trim().is_empty()),
    })
}

/// `POST /ui/teams/{id}/connect`: the one page with the new connection's credentials.
pub(super) async fn connect(
    State(state): State<AppState>,
    signed: Signed,
    Path(id): Path<String>,
    form: Result<Form<ConnectionForm>, FormRejection>,
) -> Response {
    let Ok(Form(form)) = form else {
        return malformed();
    };
    if let Some(refused) = signed.csrf_refusal(form.csrf.as_deref()) {
        return refused;
    }
    let body = body(form);
    let (full, member) = match &body {
        Ok(b) => (
            matches!(b.permissions.as_deref(), Some([Permission::FullAccess])),
            b.member.clone(),
        ),
        Err(_) => (false, None),
    };
    match grant(&state, &signed.user, &id, body).await {
        Ok(issued) => {
            tracing::info!(authorization = %issued.authorization.id, "team connection created in the web UI");
            let path = team_path(&id);
            let back = Back {
                path: &path,
                text: "Back to the team",
            };
            let csrf = signed.csrf();
            layout::page(
                StatusCode::CREATED,
                "Connection created",
                TEAMS,
                &csrf,
                &issued::body(&issued, full, member.as_deref(), &back),
            )
        }
        Err(e) => refused(e),
    }
}

/// `POST /ui/teams/{id}/authorizations/{authorization}/revoke`: admins any, members those
/// made for them; then back to the team page.
pub(super) async fn revoke(
    State(state): State<AppState>,
    signed: Signed,
    Path((id, authorization)): Path<(String, String)>,
    form: Result<Form<CsrfForm>, FormRejection>,
) -> Response {
    let Ok(Form(form)) = form else {
        return malformed();
    };
    if let Some(refused) = signed.csrf_refusal(form.csrf.as_deref()) {
        return refused;
    }
    match revoke_grant(&state, &signed.user, &id, &authorization).await {
        Ok(_) => (state.applied_here(), params::see_other(&team_path(&id))).into_response(),
        Err(e) => refused(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(fields: &[(&str, &str)]) -> ConnectionForm {
        let get = |name: &str| {
            fields
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        };
        ConnectionForm {
            csrf: None,
            key_id: get("key_id"),
            label: get("label"),
            member: get("member"),
            preset: get("preset"),
            kinds: get("kinds"),
        }
    }

    #[test]
    fn the_form_becomes_the_apis_grant() {
        let b = body(form(&[
            ("key_id", "k"),
            ("label", "Notes"),
            ("member", " "),
            ("preset", "full"),
        ]))
        .expect("grant");
        assert_eq!(b.key_id, "k");
        assert_eq!(b.member, None, "empty: for the admin");
        assert_eq!(b.permissions, Some(vec![Permission::FullAccess]));
        let b = body(form(&[
            ("key_id", "k"),
            ("label", "Notes"),
            ("member", "bob@example.org"),
            ("preset", "kinds"),
            ("kinds", "1"),
        ]))
        .expect("grant");
        assert_eq!(b.member.as_deref(), Some("bob@example.org"));
        for bad in [
            &[("label", "A"), ("preset", "full")][..],
            &[("key_id", "k"), ("label", " "), ("preset", "full")],
            &[("key_id", "k"), ("label", "A")],
            &[
                ("key_id", "k"),
                ("label", "A"),
                ("preset", "kinds"),
                ("kinds", "x"),
            ],
        ] {
            let e = body(form(bad)).expect_err("refused");
            assert_eq!(e.status, StatusCode::BAD_REQUEST, "{bad:?}");
        }
    }
}
