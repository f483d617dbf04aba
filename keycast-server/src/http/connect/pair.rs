//! Approving a `nostrconnect://` URI: the bunker admits it (the account's pairing rate,
//! the URI's relays: policy and caps) before anything is made, then a policy from its
//! `perms`, then [`keycast_nip46::Bunker::pair_admitted`]; a failure takes back what was
//! made.

use std::sync::Arc;
use std::time::Duration;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;
use keycast_core::{Authorization, KeyId, Label, NewAuthorization, Policy, PolicyId};
use keycast_nip46::{Bunker, NostrConnectUri};

use crate::http::accounts::CurrentUser;
use crate::http::oauth::scope::Scope;
use crate::http::{ApiError, AppState};

/// The label of the policy and authorization: the app's name (cut to what a label may
/// hold), else `nostrconnect`.
fn label(uri: &NostrConnectUri) -> Result<Label, ApiError> {
    let name: Option<String> = uri.name.as_deref().map(|n| {
        n.chars()
            .filter(|c| !c.is_control())
            .take(100)
            .collect::<String>()
    });
    match name.as_deref().map(Label::parse) {
        Some(Ok(label)) => Ok(label),
        _ => Ok(Label::parse("nostrconnect")?),
    }
}

/// Why a pairing was refused, as the connect page shows it: an [`ApiError`], and for
/// 429 how long to wait (`Retry-After`).
#[derive(Debug)]
pub(crate) struct Refusal {
    error: ApiError,
    retry_after: Option<Duration>,
}

impl From<ApiError> for Refusal {
    fn from(error: ApiError) -> Self {
        Self {
            error,
            retry_after: None,
        }
    }
}

impl From<keycast_core::Error> for Refusal {
    fn from(e: keycast_core::Error) -> Self {
        ApiError::from(e).into()
    }
}

impl Refusal {
    /// The error page, with `Retry-After` when there is one.
    pub(crate) fn into_page(self) -> Response {
        let mut page = super::failure(self.error);
        if let Some(wait) = self.retry_after {
            let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            page.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds.max(1)));
        }
        page
    }
}

/// Has the bunker admit the URI for this account (nothing is made when it refuses),
/// creates the policy the URI's `perms` map to (exactly as an OAuth scope with the same
/// words; no perms is full access, as a NIP-46 `connect` without perms) and pairs.
pub(crate) async fn approve(
    state: &AppState,
    bunker: &Bunker,
    uri: &NostrConnectUri,
    user: &CurrentUser,
    key_id: KeyId,
) -> Result<Arc<Authorization>, Refusal> {
    let s = &state.services;
    let permit = match bunker
        .admit_pairing(uri, user.tenant_id, user.user_id)
        .await
    {
        Ok(permit) => permit,
        Err(e) => {
            tracing::info!(client = %uri.client, error = %e, "nostrconnect pairing refused");
            return Err(pair_error(e));
        }
    };
    let label = label(uri)?;
    let scope = Scope::from_perms(uri.perms.iter().cloned());
    let policy =
        Policy::new(user.tenant_id, label.clone(), scope.permissions())?.owned_by(user.user_id);
    s.store.insert_policy(&policy).await?;
    let new = NewAuthorization {
        tenant_id: user.tenant_id,
        user_id: user.user_id,
        key_id,
        policy_id: policy.id,
        label,
        relays: uri.relays.clone(),
        expires_at: None,
    };
    match bunker.pair_admitted(permit, uri, new).await {
        Ok(auth) => {
            tracing::info!(authorization = %auth.id, client = %uri.client, "nostrconnect paired");
            Ok(auth)
        }
        Err(e) => {
            tracing::warn!(client = %uri.client, error = %e, "nostrconnect pairing failed");
            undo(state, user, policy.id).await;
            Err(pair_error(e))
        }
    }
}

/// The bunker's refusals as clear 4xx answers (the crate's messages carry no secrets).
fn pair_error(e: keycast_nip46::Error) -> Refusal {
    use keycast_nip46::Error as E;
    let message = e.to_string();
    let error = match e {
        E::Custody(e) => e.into(),
        E::Relay { reason } => ApiError::new(
            StatusCode::BAD_GATEWAY,
            "relay",
            format!("cannot reach the app through its relays: {reason}"),
        ),
        E::RelayRefused { .. } => ApiError::new(
            StatusCode::BAD_REQUEST,
            "relay_refused",
            format!("this server does not connect to that app's relay: {message}"),
        ),
        E::TooManyRelays { .. } => {
            ApiError::new(StatusCode::BAD_REQUEST, "too_many_relays", message)
        }
        E::AccountRelays { .. } => ApiError::new(StatusCode::CONFLICT, "too_many_relays", message),
        E::RateLimited { retry_after } => {
            return Refusal {
                error: ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "rate_limited",
                    format!("{message}; nothing was connected"),
                ),
                retry_after: Some(retry_after),
            }
        }
        _ => ApiError::bad_request(message),
    };
    error.into()
}

/// Pairing can fail after the authorization was made (binding, relays, subscription).
/// There is no deleting an authorization, so any made under the fresh policy is revoked;
/// the policy goes when nothing refers to it.
async fn undo(state: &AppState, user: &CurrentUser, policy: PolicyId) {
    let s = &state.services;
    match s
        .store
        .list_authorizations(user.tenant_id, Some(user.user_id))
        .await
    {
        Ok(all) => {
            let half_made: Vec<_> = all
                .iter()
                .filter(|a| a.policy_id == policy && a.revoked_at.is_none())
                .map(|a| a.id)
                .collect();
            for id in &half_made {
                if let Err(e) = s.custody.revoke_authorization(*id).await {
                    tracing::warn!(authorization = %id, error = %e, "cannot revoke a half-made nostrconnect authorization");
                }
            }
            // The pairing failed, so no successful write nudges the change feed: do it.
            s.changes.local.notify_one();
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot look for a half-made nostrconnect authorization")
        }
    }
    match s.store.delete_policy(policy).await {
        Ok(()) | Err(keycast_core::Error::Conflict(_)) => {}
        Err(e) => {
            tracing::warn!(%policy, error = %e, "cannot delete the policy of a failed pairing")
        }
    }
}

#[cfg(test)]
mod tests {
    use keycast_core::nostr::Keys;

    use super::*;

    fn uri(query: &str) -> NostrConnectUri {
        let pk = Keys::generate().public_key().to_hex();
        NostrConnectUri::parse(&format!("nostrconnect://{pk}?relay=wss://r.example{query}"))
            .expect("uri")
    }

    #[test]
    fn the_label_is_the_app_name_or_nostrconnect() {
        let l = |q: &str| label(&uri(q)).expect("label").as_str().to_owned();
        assert_eq!(l("&name=Notes"), "Notes");
        assert_eq!(l(""), "nostrconnect");
        assert_eq!(l("&name=a%07b"), "ab");
        assert_eq!(l(&format!("&name={}", "x".repeat(300))), "x".repeat(100));
    }
}
