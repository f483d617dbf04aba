//! Approving a `nostrconnect://` URI: a policy from its `perms`, then
//! [`keycast_nip46::Bunker::pair`]; a failure takes back what was made.

use std::sync::Arc;

use axum::http::StatusCode;
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

/// Creates the policy the URI's `perms` map to (exactly as an OAuth scope with the same
/// words; no perms is full access, as a NIP-46 `connect` without perms) and pairs.
pub(crate) async fn approve(
    state: &AppState,
    bunker: &Bunker,
    uri: &NostrConnectUri,
    user: &CurrentUser,
    key_id: KeyId,
) -> Result<Arc<Authorization>, ApiError> {
    let s = &state.services;
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
    match bunker.pair(uri, new).await {
        Ok(auth) => {
            tracing::info!(authorization = %auth.id, client = %uri.client, "nostrconnect paired");
            Ok(auth)
        }
        Err(e) => {
            tracing::warn!(client = %uri.client, error = %e, "nostrconnect pairing failed");
            undo(state, bunker, user, policy.id).await;
            Err(pair_error(e))
        }
    }
}

fn pair_error(e: keycast_nip46::Error) -> ApiError {
    match e {
        keycast_nip46::Error::Custody(e) => e.into(),
        keycast_nip46::Error::Relay { reason } => ApiError::new(
            StatusCode::BAD_GATEWAY,
            "relay",
            format!("cannot reach the app through its relays: {reason}"),
        ),
        // The crate's messages carry no secrets.
        other => ApiError::bad_request(other.to_string()),
    }
}

/// Pairing can fail after the authorization was made (binding, relays, subscription).
/// There is no deleting an authorization, so any made under the fresh policy is revoked;
/// the policy goes when nothing refers to it.
async fn undo(state: &AppState, bunker: &Bunker, user: &CurrentUser, policy: PolicyId) {
    let s = &state.services;
    match s
        .store
        .list_authorizations(user.tenant_id, Some(user.user_id))
        .await
    {
        Ok(all) => {
            for a in all
                .iter()
                .filter(|a| a.policy_id == policy && a.revoked_at.is_none())
            {
                if let Err(e) = s.custody.revoke_authorization(a.id).await {
                    tracing::warn!(authorization = %a.id, error = %e, "cannot revoke a half-made nostrconnect authorization");
                }
            }
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
    let _ = bunker.refresh_subscription().await;
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
