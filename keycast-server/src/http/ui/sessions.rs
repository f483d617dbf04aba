//! `GET /ui`: the account's app sessions (authorizations), and
//! `POST /ui/sessions/{id}/revoke`.

use std::collections::HashMap;

use axum::extract::rejection::FormRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Form;
use keycast_core::nostr::Timestamp;
use keycast_core::{Activity, Authorization, KeyId, StoredKey};

use super::{failure, layout, malformed, params, session, CsrfForm, Signed, HOME};
use crate::http::authorizations::{revoke_owned, with_activity};
use crate::http::oauth::page::{escape, key_summary};
use crate::http::AppState;

/// A time for a table cell, in UTC.
pub(super) fn when(t: Timestamp) -> String {
    t.to_human_datetime().replace('T', " ").replace('Z', " UTC")
}

/// One authorization as a table row: label, `key` and, when given, `whom` it was made for
/// (plain text), then created, last activity, signatures and its status, with a Revoke
/// form posting to `revoke` while it is not revoked.
pub(super) fn row(
    a: &Authorization,
    activity: &Activity,
    key: &str,
    whom: Option<&str>,
    revoke: &str,
    csrf: &str,
) -> String {
    let last = activity
        .last_used_at
        .map(when)
        .unwrap_or_else(|| "never".into());
    let state = match a.expires_at {
        Some(t) if t <= Timestamp::now() => format!("Expired {}", when(t)),
        _ => "Active".to_owned(),
    };
    let (class, status) = match a.revoked_at {
        Some(t) => (" class=\"revoked\"", format!("Revoked {}", when(t))),
        None => (
            "",
            format!(
                "{state}<form method=\"post\" action=\"{revoke}\">\
                 <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
                 <button type=\"submit\" aria-label=\"Revoke {label}\">Revoke</button></form>",
                revoke = escape(revoke),
                csrf = escape(csrf),
                label = escape(a.label.as_str()),
            ),
        ),
    };
    let whom = whom.map_or_else(String::new, |w| format!("<td>{}</td>", escape(w)));
    format!(
        "<tr{class} data-id=\"{id}\"><td>{label}</td><td>{key}</td>{whom}<td>{created}</td>\
         <td>{last}</td><td>{signatures}</td><td>{status}</td></tr>",
        id = escape(&a.id.to_string()),
        label = escape(a.label.as_str()),
        key = escape(key),
        created = when(a.created_at),
        signatures = activity.signatures,
    )
}

/// A table of [`row`]s with the HTML id `id`; `whom` adds the "For" column.
pub(super) fn table(id: &str, whom: bool, rows: &str) -> String {
    format!(
        "<table id=\"{id}\"><thead><tr><th>Label</th><th>Key</th>{whom}<th>Created</th>\
         <th>Last activity</th><th>Signatures</th><th>Status</th></tr></thead>\
         <tbody>{rows}</tbody></table>",
        id = escape(id),
        whom = if whom { "<th>For</th>" } else { "" },
    )
}

/// The sessions table (or a line saying there are none) for `csrf`'s session.
fn render(all: &[(Authorization, Activity)], keys: &[StoredKey], csrf: &str) -> String {
    let mut body = String::from(
        "<h1>App sessions</h1><p>Apps you connected to your keys. Revoking one cuts it off \
         at once. <a href=\"/ui/connect/new\">Connect a new app</a>.</p>",
    );
    if all.is_empty() {
        body.push_str("<p id=\"no-sessions\">No app is connected yet.</p>");
        return body;
    }
    let names: HashMap<KeyId, String> = keys.iter().map(|k| (k.id, key_summary(k))).collect();
    let rows: String = all
        .iter()
        .map(|(a, activity)| {
            let key = names
                .get(&a.key_id)
                .cloned()
                .unwrap_or_else(|| a.key_id.to_string());
            let revoke = format!("/ui/sessions/{}/revoke", a.id);
            row(a, activity, &key, None, &revoke, csrf)
        })
        .collect();
    body.push_str(&table("sessions", false, &rows));
    body
}

/// `GET /ui`.
pub(super) async fn page(State(state): State<AppState>, signed: Signed) -> Response {
    let all = match with_activity(&state, &signed.user).await {
        Ok(all) => all,
        Err(e) => return failure(e),
    };
    let keys = match session::user_keys(&state, &signed.user).await {
        Ok(keys) => keys,
        Err(e) => return failure(e),
    };
    let csrf = signed.csrf();
    let mut body = render(&all, &keys, &csrf);
    // Requests held for this account's decision (their apps' `auth_url`) come first.
    let counts = state.services.approvals.waiting_counts();
    let waiting: String = all
        .iter()
        .filter(|(a, _)| a.revoked_at.is_none())
        .filter_map(|(a, _)| counts.get(&a.id).map(|n| (a, *n)))
        .map(|(a, n)| {
            format!(
                "<p class=\"warn\"><a href=\"/ui/approvals/{id}\">{n} request(s) of {label} \
                 wait for your approval</a></p>",
                id = a.id,
                label = escape(a.label.as_str()),
            )
        })
        .collect();
    body.insert_str(0, &waiting);
    layout::page(StatusCode::OK, "App sessions", HOME, &csrf, &body)
}

/// `POST /ui/sessions/{id}/revoke`: revoked at once, then back to the list.
pub(super) async fn revoke(
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
    match revoke_owned(&state, &signed.user, &id).await {
        Ok(_) => (state.applied_here(), params::see_other(HOME)).into_response(),
        Err(e) if e.status == StatusCode::NOT_FOUND => layout::error(
            StatusCode::NOT_FOUND,
            "There is no such app session of yours. Nothing was changed.",
        ),
        Err(e) => failure(e),
    }
}

#[cfg(test)]
mod tests {
    use keycast_core::nostr::Keys;
    use keycast_core::{AuthorizationId, Label, PolicyId, TenantId, UserId};

    use super::*;

    fn authorization(label: &str, revoked: bool) -> Authorization {
        Authorization {
            id: AuthorizationId::random(),
            tenant_id: TenantId::random(),
            user_id: UserId::random(),
            key_id: KeyId::random(),
            bunker_key_id: KeyId::random(),
            bunker_pubkey: Keys::generate().public_key(),
            connect_secret: None,
            relays: Vec::new(),
            policy_id: PolicyId::random(),
            label: Label::parse(label).expect("label"),
            expires_at: None,
            revoked_at: revoked.then(|| Timestamp::from(1_700_000_600)),
            client_pubkeys: Vec::new(),
            uses: 0,
            version: 1,
            created_at: Timestamp::from(1_700_000_000),
        }
    }

    #[test]
    fn active_sessions_get_a_revoke_button_and_revoked_ones_say_so() {
        let active = authorization("<Notes>", false);
        let gone = authorization("Old", true);
        let used = Activity {
            last_used_at: Some(Timestamp::from(1_700_000_300)),
            signatures: 7,
        };
        let html = render(
            &[(active.clone(), used), (gone, Activity::default())],
            &[],
            "tok",
        );
        assert!(
            html.contains("&lt;Notes&gt;") && !html.contains("<Notes>"),
            "{html}"
        );
        assert_eq!(html.matches("Revoke</button>").count(), 1, "{html}");
        assert!(
            html.contains(&format!("action=\"/ui/sessions/{}/revoke\"", active.id)),
            "{html}"
        );
        assert!(html.contains("2023-11-14 22:18:20 UTC"), "{html}");
        assert!(html.contains("<td>7</td>"), "{html}");
        assert!(html.contains("Revoked 2023-11-14 22:23:20 UTC"), "{html}");
        assert!(html.contains("<td>never</td>"), "{html}");
        assert!(html.contains("value=\"tok\""), "{html}");
    }

    #[test]
    fn no_sessions_is_said_in_words() {
        assert!(render(&[], &[], "tok").contains("No app is connected yet."));
    }
}
