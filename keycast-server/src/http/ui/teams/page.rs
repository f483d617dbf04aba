//! `GET /ui/teams/{id}`: a team's members, keys and the connections (authorizations) on
//! its keys. Admins get the forms that change them; a member sees the team, its keys and
//! the connections made for it, and can leave. A non-member gets a 404 page.

use std::collections::HashMap;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use keycast_core::nostr::ToBech32;
use keycast_core::{Activity, Authorization, StoredKey, TeamMember, TeamRole, User, UserId};

use super::super::preset::Presets;
use super::super::sessions::{row, table};
use super::super::{failure, layout, Signed};
use super::TEAMS;
use crate::http::accounts::CurrentUser;
use crate::http::oauth::page::{escape, key_options, key_summary};
use crate::http::teams::{members_of, membership, team_keys, visible_authorizations, Membership};
use crate::http::{ApiError, AppState};

/// Everything a team page shows, as the store has it.
pub(super) struct View<'a> {
    pub(super) m: &'a Membership,
    /// The account looking.
    pub(super) me: UserId,
    pub(super) members: &'a [(TeamMember, User)],
    pub(super) keys: &'a [StoredKey],
    pub(super) authorizations: &'a [(Authorization, Activity)],
    /// The e-mail of each account an authorization was made for, former members too.
    pub(super) emails: &'a HashMap<UserId, String>,
    pub(super) csrf: &'a str,
}

impl View<'_> {
    fn admin(&self) -> bool {
        self.m.role == TeamRole::Admin
    }

    /// `/ui/teams/{id}` followed by `rest`.
    fn path(&self, rest: &str) -> String {
        format!("{TEAMS}/{}{rest}", self.m.team.id)
    }

    /// The hidden CSRF field every form starts with.
    fn csrf_field(&self) -> String {
        format!(
            "<input type=\"hidden\" name=\"csrf\" value=\"{}\">",
            escape(self.csrf)
        )
    }
}

/// An account's e-mail, or what stands in for it (plain text).
fn email_of(user: &User) -> String {
    user.email
        .as_ref()
        .map_or_else(|| "(no e-mail)".to_owned(), |e| e.as_str().to_owned())
}

fn role_options(selected: TeamRole) -> String {
    [TeamRole::Member, TeamRole::Admin]
        .iter()
        .map(|r| {
            let mark = if *r == selected { " selected" } else { "" };
            format!("<option value=\"{0}\"{mark}>{0}</option>", r.as_str())
        })
        .collect()
}

fn member_row(v: &View, member: &TeamMember, user: &User) -> String {
    let email = email_of(user);
    let you = if member.user_id == v.me { " (you)" } else { "" };
    let actions = if !v.admin() {
        String::new()
    } else {
        // Roles change by e-mail, as in the API; an account without one keeps its role.
        let change = user.email.as_ref().map_or_else(String::new, |e| {
            format!(
                "<form method=\"post\" action=\"{action}\" class=\"change-role\">{csrf}\
                 <input type=\"hidden\" name=\"email\" value=\"{email}\">\
                 <select name=\"role\" aria-label=\"Role of {email}\">{options}</select>\
                 <button type=\"submit\">Change role</button></form>",
                action = escape(&v.path("/members")),
                csrf = v.csrf_field(),
                email = escape(e.as_str()),
                options = role_options(member.role),
            )
        });
        let remove = if member.user_id == v.me {
            String::new()
        } else {
            format!(
                "<form method=\"post\" action=\"{action}\" class=\"remove-member\">{csrf}\
                 <button type=\"submit\" aria-label=\"Remove {email}\">Remove</button></form>",
                action = escape(&v.path(&format!("/members/{}/remove", member.user_id))),
                csrf = v.csrf_field(),
                email = escape(&email),
            )
        };
        format!("<td>{change}{remove}</td>")
    };
    format!(
        "<tr data-user=\"{id}\"><td>{email}{you}</td><td>{role}</td>{actions}</tr>",
        id = escape(&member.user_id.to_string()),
        email = escape(&email),
        role = member.role.as_str(),
    )
}

fn members_section(v: &View) -> String {
    let rows: String = v
        .members
        .iter()
        .map(|(member, user)| member_row(v, member, user))
        .collect();
    let actions = if v.admin() { "<th>Change</th>" } else { "" };
    let mut out = format!(
        "<h2>Members</h2><table id=\"members\"><thead><tr><th>E-mail</th><th>Role</th>\
         {actions}</tr></thead><tbody>{rows}</tbody></table>"
    );
    if v.admin() {
        out.push_str(&format!(
            "<h3>Add a member</h3><form id=\"add-member\" method=\"post\" action=\"{action}\">\
             {csrf}<label for=\"member-email\">E-mail of an account on this server</label>\
             <input type=\"email\" id=\"member-email\" name=\"email\" required>\
             <label for=\"member-role\">Role</label>\
             <select id=\"member-role\" name=\"role\">{options}</select>\
             <button type=\"submit\">Add member</button></form>",
            action = escape(&v.path("/members")),
            csrf = v.csrf_field(),
            options = role_options(TeamRole::Member),
        ));
    }
    out.push_str(&format!(
        "<form id=\"leave\" method=\"post\" action=\"{action}\">{csrf}\
         <button type=\"submit\">Leave team</button></form>",
        action = escape(&v.path("/leave")),
        csrf = v.csrf_field(),
    ));
    out
}

fn keys_section(v: &View) -> String {
    let mut out = String::from("<h2>Keys</h2>");
    if v.keys.is_empty() {
        out.push_str("<p id=\"no-team-keys\">The team has no keys yet.</p>");
    } else {
        let rows: String = v
            .keys
            .iter()
            .map(|k| {
                format!(
                    "<tr data-id=\"{id}\"><td>{name}</td><td><code>{npub}</code></td></tr>",
                    id = escape(&k.id.to_string()),
                    name = escape(k.name.as_str()),
                    npub = escape(&k.pubkey.to_bech32().unwrap_or_default()),
                )
            })
            .collect();
        out.push_str(&format!(
            "<table id=\"team-keys\"><thead><tr><th>Name</th><th>npub</th></tr></thead>\
             <tbody>{rows}</tbody></table>"
        ));
    }
    if v.admin() {
        out.push_str(&format!(
            "<form id=\"add-key\" method=\"post\" action=\"{action}\">{csrf}\
             <label for=\"key-name\">Name of a new generated key</label>\
             <input id=\"key-name\" name=\"name\" required maxlength=\"100\" placeholder=\"shared\">\
             <button type=\"submit\">Add a generated key</button></form>",
            action = escape(&v.path("/keys")),
            csrf = v.csrf_field(),
        ));
    }
    out
}

fn authorizations_section(v: &View) -> String {
    let intro = if v.admin() {
        "Every bunker connection on the team's keys."
    } else {
        "The bunker connections on the team's keys made for you."
    };
    let mut out = format!("<h2>Connections</h2><p>{intro}</p>");
    if v.authorizations.is_empty() {
        out.push_str("<p id=\"no-team-authorizations\">None yet.</p>");
    } else {
        let names: HashMap<_, _> = v.keys.iter().map(|k| (k.id, key_summary(k))).collect();
        let rows: String = v
            .authorizations
            .iter()
            .map(|(a, activity)| {
                let key = names
                    .get(&a.key_id)
                    .cloned()
                    .unwrap_or_else(|| a.key_id.to_string());
                let whom = match v.emails.get(&a.user_id) {
                    _ if a.user_id == v.me => "you".to_owned(),
                    Some(email) => email.clone(),
                    None => "a deleted account".to_owned(),
                };
                let revoke = v.path(&format!("/authorizations/{}/revoke", a.id));
                row(a, activity, &key, Some(&whom), &revoke, v.csrf)
            })
            .collect();
        out.push_str(&table("team-authorizations", true, &rows));
    }
    if v.admin() && !v.keys.is_empty() {
        out.push_str(&connect_form(v));
    }
    out
}

/// The admin's form for a connection on a team key, for itself or a member.
fn connect_form(v: &View) -> String {
    let emails: String = v
        .members
        .iter()
        .filter(|(m, _)| m.user_id != v.me)
        .filter_map(|(_, u)| u.email.as_ref())
        .map(|e| format!("<option value=\"{}\">", escape(e.as_str())))
        .collect();
    format!(
        "<h3>New connection</h3><p>A <code>bunker://</code> URI for an app, on a team key, \
         for you or a member; its URI and token are shown to you once, to hand on.</p>\
         <form id=\"new-connection\" method=\"post\" action=\"{action}\">{csrf}\
         <label for=\"key_id\">Team key</label><select id=\"key_id\" name=\"key_id\">{keys}</select>\
         <label for=\"label\">Label</label>\
         <input id=\"label\" name=\"label\" required maxlength=\"100\" placeholder=\"Notes app\">\
         <label for=\"member\">For the member with the e-mail (empty: for you)</label>\
         <input type=\"email\" id=\"member\" name=\"member\" list=\"member-emails\">\
         <datalist id=\"member-emails\">{emails}</datalist>{preset}\
         <button type=\"submit\">Create connection</button></form>",
        action = escape(&v.path("/connect")),
        csrf = v.csrf_field(),
        keys = key_options(v.keys),
        preset = Presets::Team.fields(),
    )
}

/// The page body.
pub(super) fn render(v: &View) -> String {
    let role = if v.admin() { "an admin" } else { "a member" };
    format!(
        "<h1>Team {name}</h1><p>You are {role} of this team. <a href=\"{TEAMS}\">All your \
         teams</a>.</p>{members}{keys}{authorizations}",
        name = escape(v.m.team.name.as_str()),
        members = members_section(v),
        keys = keys_section(v),
        authorizations = authorizations_section(v),
    )
}

/// The e-mails of the members, and of any other account an authorization was made for
/// (a former member's revoked ones stay listed for admins).
async fn emails(
    state: &AppState,
    members: &[(TeamMember, User)],
    authorizations: &[(Authorization, Activity)],
) -> Result<HashMap<UserId, String>, ApiError> {
    let mut out: HashMap<UserId, String> = members
        .iter()
        .map(|(m, u)| (m.user_id, email_of(u)))
        .collect();
    for (a, _) in authorizations {
        if out.contains_key(&a.user_id) {
            continue;
        }
        match state.services.store.get_user(a.user_id).await {
            Ok(u) => {
                out.insert(a.user_id, email_of(&u));
            }
            Err(keycast_core::Error::NotFound { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(out)
}

async fn load(
    state: &AppState,
    current: &CurrentUser,
    m: &Membership,
    csrf: &str,
) -> Result<String, ApiError> {
    let members = members_of(state, m).await?;
    let keys = team_keys(state, m).await?;
    let authorizations = visible_authorizations(state, current, m).await?;
    let emails = emails(state, &members, &authorizations).await?;
    Ok(render(&View {
        m,
        me: current.user_id,
        members: &members,
        keys: &keys,
        authorizations: &authorizations,
        emails: &emails,
        csrf,
    }))
}

/// `GET /ui/teams/{id}`.
pub(super) async fn show(
    State(state): State<AppState>,
    signed: Signed,
    Path(id): Path<String>,
) -> Response {
    let m = match membership(&state, &signed.user, &id).await {
        Ok(m) => m,
        Err(e) if e.status == StatusCode::NOT_FOUND => {
            return layout::error(StatusCode::NOT_FOUND, "There is no such team of yours.")
        }
        Err(e) => return failure(e),
    };
    let csrf = signed.csrf();
    match load(&state, &signed.user, &m, &csrf).await {
        Ok(body) => {
            let title = format!("Team {}", m.team.name.as_str());
            layout::page(StatusCode::OK, &title, TEAMS, &csrf, &body)
        }
        Err(e) => failure(e),
    }
}

#[cfg(test)]
mod tests {
    use keycast_core::nostr::Timestamp;
    use keycast_core::testing::fixtures::{authorization, key, label, user};
    use keycast_core::{Email, KeyKind, PolicyId, Team, TenantId};

    use super::*;

    struct Fixture {
        m: Membership,
        members: Vec<(TeamMember, User)>,
        keys: Vec<StoredKey>,
        authorizations: Vec<(Authorization, Activity)>,
        emails: HashMap<UserId, String>,
    }

    /// A team with an admin and a member (`<bob>@example.org`), one key and one
    /// authorization for each, seen by `role` (the admin, or the member).
    fn fixture(role: TeamRole) -> (Fixture, UserId) {
        let tenant = TenantId::random();
        let team = Team::new(tenant, label("<Ops>"));
        let mut people = Vec::new();
        for (email, r) in [
            ("ann@example.org", TeamRole::Admin),
            ("<bob>@example.org", TeamRole::Member),
        ] {
            let mut u = user(tenant);
            u.email = Email::parse(email).ok();
            let m = TeamMember {
                team_id: team.id,
                user_id: u.id,
                role: r,
                added_at: Timestamp::from(1_700_000_000),
            };
            people.push((m, u));
        }
        let mut k = key(tenant, None, KeyKind::User);
        k.team = Some(team.id);
        k.name = label("shared");
        let bunker = key(tenant, None, KeyKind::Bunker);
        let auths = people
            .iter()
            .map(|(m, _)| {
                let mut a =
                    authorization(tenant, m.user_id, k.id, &bunker, PolicyId::random(), None);
                a.label = label(&format!("app of {}", m.role.as_str()));
                (a, Activity::default())
            })
            .collect();
        let me = people
            .iter()
            .find(|(m, _)| m.role == role)
            .expect("viewer")
            .0
            .user_id;
        let emails = people
            .iter()
            .map(|(m, u)| (m.user_id, email_of(u)))
            .collect();
        let f = Fixture {
            m: Membership { team, role },
            members: people,
            keys: vec![k],
            authorizations: auths,
            emails,
        };
        (f, me)
    }

    fn view(f: &Fixture, me: UserId) -> String {
        render(&View {
            m: &f.m,
            me,
            members: &f.members,
            keys: &f.keys,
            authorizations: &f.authorizations,
            emails: &f.emails,
            csrf: "tok",
        })
    }

    #[test]
    fn admins_get_every_form_with_the_csrf_token() {
        let (f, me) = fixture(TeamRole::Admin);
        let html = view(&f, me);
        for form in [
            "id=\"add-member\"",
            "id=\"add-key\"",
            "id=\"new-connection\"",
            "id=\"leave\"",
        ] {
            assert!(html.contains(form), "{form}: {html}");
        }
        assert_eq!(html.matches("class=\"change-role\"").count(), 2, "{html}");
        assert_eq!(
            html.matches("class=\"remove-member\"").count(),
            1,
            "not oneself: {html}"
        );
        assert_eq!(html.matches("Revoke</button>").count(), 2, "{html}");
        assert_eq!(
            html.matches("<form").count(),
            html.matches("name=\"csrf\" value=\"tok\"").count()
        );
        assert!(
            html.contains(&format!("action=\"/ui/teams/{}/connect\"", f.m.team.id)),
            "{html}"
        );
        assert!(
            html.contains("<option value=\"&lt;bob&gt;@example.org\">"),
            "{html}"
        );
    }

    #[test]
    fn members_see_no_admin_form_and_everything_is_escaped() {
        let (f, me) = fixture(TeamRole::Member);
        let html = view(&f, me);
        for form in [
            "add-member",
            "add-key",
            "new-connection",
            "change-role",
            "remove-member",
            "<select",
        ] {
            assert!(!html.contains(form), "{form}: {html}");
        }
        assert!(html.contains("id=\"leave\""), "{html}");
        assert!(
            html.contains("Team &lt;Ops&gt;") && !html.contains("<Ops>"),
            "{html}"
        );
        assert!(html.contains("&lt;bob&gt;@example.org (you)"), "{html}");
        assert!(!html.contains("<bob>"), "{html}");
        let npub = f.keys[0].pubkey.to_bech32().expect("npub");
        assert!(html.contains(&format!("<code>{npub}</code>")), "{html}");
    }

    #[test]
    fn authorizations_say_for_whom_and_deleted_accounts_are_named_so() {
        let (mut f, me) = fixture(TeamRole::Admin);
        let html = view(&f, me);
        assert!(
            html.contains("<td>you</td>") && html.contains("<td>&lt;bob&gt;@example.org</td>"),
            "{html}"
        );
        f.emails.clear();
        f.members.retain(|(m, _)| m.user_id == me);
        let html = view(&f, me);
        assert!(html.contains("<td>a deleted account</td>"), "{html}");
    }
}
