//! `/ui/teams`: the account's teams and a form to create one, and each team's page
//! (`page`) with the forms that change it (`members`, `keys`, `grants`). Every check of
//! who may do what, and every write, is the teams JSON API's (`http::teams`); a form only
//! gathers its fields, so the API and the UI cannot disagree. Admin forms are shown to
//! admins only, but a member who posts one anyway gets the API's 403, as a page.

mod grants;
mod keys;
mod members;
mod page;

use axum::extract::rejection::FormRejection;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Form, Router};
use keycast_core::{Team, TeamId, TeamRole};
use serde::Deserialize;

use super::sessions::when;
use super::{failure, layout, malformed, params, Signed};
use crate::http::oauth::page::escape;
use crate::http::teams::{create_team, my_teams};
use crate::http::{ApiError, AppState};

/// The list of teams, and the nav bar entry of every team page.
const TEAMS: &str = "/ui/teams";

/// The team routes.
pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route(TEAMS, get(list).post(create))
        .route("/ui/teams/{id}", get(page::show))
        .route("/ui/teams/{id}/members", post(members::set))
        .route(
            "/ui/teams/{id}/members/{user}/remove",
            post(members::remove),
        )
        .route("/ui/teams/{id}/leave", post(members::leave))
        .route("/ui/teams/{id}/keys", post(keys::add))
        .route("/ui/teams/{id}/connect", post(grants::connect))
        .route(
            "/ui/teams/{id}/authorizations/{authorization}/revoke",
            post(grants::revoke),
        )
}

/// The team page's path. `id` is the team id as sent; only a parsed id is put back in a
/// URL (anything else was refused before, so this falls back to the list).
fn team_path(id: &str) -> String {
    match id.parse::<TeamId>() {
        Ok(id) => format!("{TEAMS}/{id}"),
        Err(_) => TEAMS.to_owned(),
    }
}

/// A refusal of the teams API as a page with its status: the API's message as a
/// sentence, and that nothing changed (the API checks everything before writing).
/// Server failures are the usual 503 page.
fn refused(e: ApiError) -> Response {
    if !e.status.is_client_error() {
        return failure(e);
    }
    layout::error(
        e.status,
        &format!("{} Nothing was changed.", sentence(&e.message)),
    )
}

/// `message` with a capital first letter and a full stop.
fn sentence(message: &str) -> String {
    let mut chars = message.trim().chars();
    let Some(first) = chars.next() else {
        return "That was refused.".to_owned();
    };
    let mut out: String = first.to_uppercase().chain(chars).collect();
    if !out.ends_with(['.', '!', '?']) {
        out.push('.');
    }
    out
}

/// A 400 for a form field the UI checks itself, as an API error, so it goes through
/// [`refused`] like the API's own.
fn bad(message: &str) -> ApiError {
    ApiError::bad_request(message)
}

/// The new-team form.
#[derive(Debug, Deserialize)]
pub(super) struct NewTeamForm {
    csrf: Option<String>,
    name: Option<String>,
}

fn render(teams: &[(Team, TeamRole)], csrf: &str) -> String {
    let mut body = String::from(
        "<h1>Teams</h1><p>A team shares keys: its admins add members, keys and connections; \
         its members see the team's keys and the connections made for them.</p>",
    );
    if teams.is_empty() {
        body.push_str("<p id=\"no-teams\">You are not in any team yet.</p>");
    } else {
        let rows: String = teams
            .iter()
            .map(|(t, role)| {
                format!(
                    "<tr data-id=\"{id}\"><td><a href=\"{TEAMS}/{id}\">{name}</a></td>\
                     <td>{role}</td><td>{created}</td></tr>",
                    id = escape(&t.id.to_string()),
                    name = escape(t.name.as_str()),
                    role = role.as_str(),
                    created = when(t.created_at),
                )
            })
            .collect();
        body.push_str(&format!(
            "<table id=\"teams\"><thead><tr><th>Team</th><th>Your role</th><th>Created</th>\
             </tr></thead><tbody>{rows}</tbody></table>"
        ));
    }
    body.push_str(&format!(
        "<h2>New team</h2><p>You will be its first admin.</p>\
         <form id=\"new-team\" method=\"post\" action=\"{TEAMS}\">\
         <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
         <label for=\"team-name\">Name</label>\
         <input id=\"team-name\" name=\"name\" required maxlength=\"100\" placeholder=\"Operations\">\
         <button type=\"submit\">Create team</button></form>",
        csrf = escape(csrf),
    ));
    body
}

/// `GET /ui/teams`.
pub(super) async fn list(State(state): State<AppState>, signed: Signed) -> Response {
    match my_teams(&state, &signed.user).await {
        Ok(teams) => {
            let csrf = signed.csrf();
            layout::page(
                StatusCode::OK,
                "Teams",
                TEAMS,
                &csrf,
                &render(&teams, &csrf),
            )
        }
        Err(e) => failure(e),
    }
}

/// `POST /ui/teams`: the new team's page, or an error page and no team.
pub(super) async fn create(
    State(state): State<AppState>,
    signed: Signed,
    form: Result<Form<NewTeamForm>, FormRejection>,
) -> Response {
    let Ok(Form(form)) = form else {
        return malformed();
    };
    if let Some(refused) = signed.csrf_refusal(form.csrf.as_deref()) {
        return refused;
    }
    let Some(name) = form.name.as_deref().filter(|n| !n.trim().is_empty()) else {
        return refused(bad("Enter a name for the team."));
    };
    match create_team(&state, &signed.user, name).await {
        Ok(team) => params::see_other(&format!("{TEAMS}/{}", team.id)),
        Err(e) => refused(e),
    }
}

#[cfg(test)]
mod tests {
    use keycast_core::testing::fixtures::label;
    use keycast_core::TenantId;

    use super::*;

    #[test]
    fn refusals_read_as_sentences() {
        assert_eq!(sentence("no such team"), "No such team.");
        assert_eq!(sentence("Enter a name."), "Enter a name.");
        assert_eq!(sentence("  "), "That was refused.");
    }

    #[test]
    fn only_parsed_team_ids_go_back_into_a_url() {
        let id = TeamId::random();
        assert_eq!(team_path(&id.to_string()), format!("/ui/teams/{id}"));
        assert_eq!(team_path("x\r\nSet-Cookie: a=b"), "/ui/teams");
    }

    #[test]
    fn the_list_links_each_team_escaped_with_the_role() {
        let team = Team::new(TenantId::random(), label("<Ops & co>"));
        let html = render(&[(team.clone(), TeamRole::Member)], "tok");
        assert!(
            html.contains(&format!("href=\"/ui/teams/{}\"", team.id)),
            "{html}"
        );
        assert!(
            html.contains("&lt;Ops &amp; co&gt;") && !html.contains("<Ops"),
            "{html}"
        );
        assert!(html.contains("<td>member</td>"), "{html}");
        assert!(html.contains("value=\"tok\""), "{html}");
        assert!(render(&[], "tok").contains("You are not in any team yet."));
    }
}
