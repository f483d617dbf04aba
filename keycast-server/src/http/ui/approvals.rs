//! `GET /ui/approvals/{id}`: the page a NIP-46 `auth_url` points at. It lists the
//! requests of the account's authorization `id` waiting for a decision, each with
//! Approve and Refuse buttons (`POST /ui/approvals/{id}`). The work is
//! `http::approvals`'s.

use axum::extract::rejection::FormRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::Form;
use keycast_core::{Authorization, WaitingRequest};
use serde::Deserialize;

use super::{failure, layout, malformed, params, Signed};
use crate::http::approvals::{decide, waiting};
use crate::http::oauth::page::escape;
use crate::http::AppState;

/// A decision form.
#[derive(Debug, Deserialize)]
pub(crate) struct DecisionForm {
    csrf: Option<String>,
    request: Option<String>,
    decision: Option<String>,
}

fn render(auth: &Authorization, waiting: &[WaitingRequest], csrf: &str) -> String {
    let mut body = format!(
        "<h1>Requests waiting for you</h1><p>The app <strong>{}</strong> asks to use your \
         key. Each request runs only if you approve it, once.</p>",
        escape(auth.label.as_str())
    );
    if waiting.is_empty() {
        body.push_str("<p id=\"none-waiting\">Nothing waits for your decision now.</p>");
        return body;
    }
    let action = format!("/ui/approvals/{}", auth.id);
    let rows: String = waiting
        .iter()
        .map(|w| {
            format!(
                "<tr data-request=\"{id}\"><td>{summary}</td><td>\
                 <form method=\"post\" action=\"{action}\">\
                 <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
                 <input type=\"hidden\" name=\"request\" value=\"{id}\">\
                 <button type=\"submit\" name=\"decision\" value=\"approve\">Approve</button>\
                 <button type=\"submit\" name=\"decision\" value=\"refuse\">Refuse</button>\
                 </form></td></tr>",
                id = escape(&w.id),
                summary = escape(&w.summary),
                action = escape(&action),
                csrf = escape(csrf),
            )
        })
        .collect();
    body.push_str(&format!(
        "<table id=\"waiting\"><thead><tr><th>Request</th><th>Decision</th></tr></thead>\
         <tbody>{rows}</tbody></table>"
    ));
    body
}

/// `GET /ui/approvals/{id}`.
pub(super) async fn page(
    State(state): State<AppState>,
    signed: Signed,
    Path(id): Path<String>,
) -> Response {
    let (auth, waiting) = match waiting(&state, &signed.user, &id).await {
        Ok(found) => found,
        Err(e) if e.status == StatusCode::NOT_FOUND => {
            return layout::error(
                StatusCode::NOT_FOUND,
                "There is no such app session of yours.",
            )
        }
        Err(e) => return failure(e),
    };
    let csrf = signed.csrf();
    let body = render(&auth, &waiting, &csrf);
    layout::page(StatusCode::OK, "Approvals", "", &csrf, &body)
}

/// `POST /ui/approvals/{id}`: decides one request, then back to the list.
pub(super) async fn submit(
    State(state): State<AppState>,
    signed: Signed,
    Path(id): Path<String>,
    form: Result<Form<DecisionForm>, FormRejection>,
) -> Response {
    let Ok(Form(form)) = form else {
        return malformed();
    };
    if let Some(refused) = signed.csrf_refusal(form.csrf.as_deref()) {
        return refused;
    }
    let approve = match form.decision.as_deref() {
        Some("approve") => true,
        Some("refuse") => false,
        _ => {
            return layout::error(
                StatusCode::BAD_REQUEST,
                "Choose Approve or Refuse. Nothing was changed.",
            )
        }
    };
    let request = form.request.unwrap_or_default();
    match decide(&state, &signed.user, &id, &request, approve).await {
        Ok(()) => params::see_other(&format!("/ui/approvals/{id}")),
        Err(e) if e.status == StatusCode::NOT_FOUND => layout::error(
            StatusCode::NOT_FOUND,
            "That request no longer waits (it was decided already, or it expired). \
             Nothing was changed.",
        ),
        Err(e) => failure(e),
    }
}

#[cfg(test)]
mod tests {
    use keycast_core::nostr::{Keys, RelayUrl, Timestamp};
    use keycast_core::{AuthorizationId, KeyId, Label, PolicyId, TenantId, UserId};

    use super::*;

    fn authorization(label: &str) -> Authorization {
        Authorization {
            id: AuthorizationId::random(),
            tenant_id: TenantId::random(),
            user_id: UserId::random(),
            key_id: KeyId::random(),
            bunker_key_id: KeyId::random(),
            bunker_pubkey: Keys::generate().public_key(),
            connect_secret: None,
            relays: vec![RelayUrl::parse("ws://127.0.0.1:1").expect("relay")],
            policy_id: PolicyId::random(),
            label: Label::parse(label).expect("label"),
            expires_at: None,
            revoked_at: None,
            client_pubkeys: Vec::new(),
            uses: 0,
            version: 1,
            created_at: Timestamp::now(),
        }
    }

    #[test]
    fn each_waiting_request_gets_both_buttons_and_everything_is_escaped() {
        let auth = authorization("<b>app</b>");
        let waiting = vec![WaitingRequest {
            id: "ab".repeat(32),
            summary: "sign a note (kind 1); content: <script>x</script>; no tags".into(),
            asked_at: Timestamp::now(),
        }];
        let html = render(&auth, &waiting, "tok");
        assert!(html.contains("value=\"approve\"") && html.contains("value=\"refuse\""));
        assert!(html.contains(&"ab".repeat(32)));
        assert!(
            !html.contains("<script>") && !html.contains("<b>app"),
            "{html}"
        );
        assert!(render(&auth, &[], "tok").contains("none-waiting"));
    }
}
