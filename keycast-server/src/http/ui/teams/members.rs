//! The member forms of a team page: add a member or change a role (one form, as the API's
//! `PUT …/members`), remove a member, leave. The API decides who may.

use axum::extract::rejection::FormRejection;
use axum::extract::{Path, State};
use axum::response::Response;
use axum::Form;
use keycast_core::UserId;
use serde::Deserialize;

use super::super::{malformed, params, CsrfForm, Signed};
use super::{bad, refused, team_path, TEAMS};
use crate::http::teams::{self, MemberBody};
use crate::http::{ApiError, AppState};

/// Add a member, or change a member's role.
#[derive(Debug, Deserialize)]
pub(super) struct MemberForm {
    csrf: Option<String>,
    email: Option<String>,
    /// `admin` or `member`.
    role: Option<String>,
}

/// The API's body for `form`, or what is missing.
fn body(form: MemberForm) -> Result<MemberBody, ApiError> {
    let Some(email) = form.email.filter(|e| !e.trim().is_empty()) else {
        return Err(bad(
            "Enter the e-mail address of an account on this server.",
        ));
    };
    let Some(role) = form.role.filter(|r| !r.is_empty()) else {
        return Err(bad("Choose a role: admin or member."));
    };
    Ok(MemberBody { email, role })
}

/// `POST /ui/teams/{id}/members`: back to the team page.
pub(super) async fn set(
    State(state): State<AppState>,
    signed: Signed,
    Path(id): Path<String>,
    form: Result<Form<MemberForm>, FormRejection>,
) -> Response {
    let Ok(Form(form)) = form else {
        return malformed();
    };
    if let Some(refused) = signed.csrf_refusal(form.csrf.as_deref()) {
        return refused;
    }
    match teams::set_member(&state, &signed.user, &id, body(form)).await {
        Ok(_) => params::see_other(&team_path(&id)),
        Err(e) => refused(e),
    }
}

/// Removes `user` (as sent) and answers the page to go to: the team's, or the list of
/// teams when the account removed itself.
async fn removed(state: &AppState, signed: &Signed, id: &str, user: &str) -> Response {
    match teams::remove(state, &signed.user, id, user).await {
        Ok(_) if user.parse::<UserId>().ok() == Some(signed.user.user_id) => {
            params::see_other(TEAMS)
        }
        Ok(_) => params::see_other(&team_path(id)),
        Err(e) => refused(e),
    }
}

/// `POST /ui/teams/{id}/members/{user}/remove` (admins).
pub(super) async fn remove(
    State(state): State<AppState>,
    signed: Signed,
    Path((id, user)): Path<(String, String)>,
    form: Result<Form<CsrfForm>, FormRejection>,
) -> Response {
    let Ok(Form(form)) = form else {
        return malformed();
    };
    if let Some(refused) = signed.csrf_refusal(form.csrf.as_deref()) {
        return refused;
    }
    removed(&state, &signed, &id, &user).await
}

/// `POST /ui/teams/{id}/leave`: the account removes itself (the last admin cannot).
pub(super) async fn leave(
    State(state): State<AppState>,
    signed: Signed,
    Path(id): Path<String>,
    form: Result<Form<CsrfForm>, FormRejection>,
) -> Response {
    let Ok(Form(form)) = form else {
        return malformed();
    };
    if let Some(refused) = signed.csrf_refusal(form.csrf.as_deref()) {
        return refused;
    }
    let me = signed.user.user_id.to_string();
    removed(&state, &signed, &id, &me).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(email: Option<&str>, role: Option<&str>) -> MemberForm {
        MemberForm {
            csrf: None,
            email: email.map(str::to_owned),
            role: role.map(str::to_owned),
        }
    }

    #[test]
    fn missing_fields_are_named_and_the_rest_is_the_apis_to_check() {
        for (email, role) in [
            (None, Some("member")),
            (Some("  "), Some("member")),
            (Some("a@b.c"), None),
            (Some("a@b.c"), Some("")),
        ] {
            let e = body(form(email, role)).expect_err("refused");
            assert_eq!(e.status, axum::http::StatusCode::BAD_REQUEST);
        }
        // A bad address or role goes on: the API refuses it with its own message.
        let b = body(form(Some("not an address"), Some("owner"))).expect("passed on");
        assert_eq!(
            (b.email.as_str(), b.role.as_str()),
            ("not an address", "owner")
        );
    }
}
