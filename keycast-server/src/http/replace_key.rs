//! `POST /api/keys/{id}/danger/replace`: "change the account key". The key keeps its id
//! and name and gets a new secret (brought, or generated); every app authorized for the
//! old secret is revoked, and the owner is told by mail. Like export, it takes the account
//! password and a code mailed for this purpose (`POST /api/auth/confirm/request` with
//! `{"action":"replace_key"}`). The old secret is gone: export it first to keep it.

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use keycast_core::nostr::ToBech32;
use keycast_core::EmailPurpose;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::accounts::CurrentUser;
use super::error::{json_body, ErrorBody};
use super::export::owner_confirms;
use super::keys::{imported_secret, key_json, owned, KeyView};
use super::{ApiError, AppState, ClientAddr};

/// The new secret (none: generate one) and the proof that the owner asks.
// No `Debug`: it holds passwords, a code and maybe a secret key.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(missing_debug_implementations)]
pub(crate) struct Replace {
    /// The account's password.
    #[schema(value_type = String, format = Password, max_length = 1024)]
    account_password: Zeroizing<String>,
    /// The code mailed by `POST /api/auth/confirm/request` (`{"action":"replace_key"}`).
    #[schema(value_type = String, format = Password, max_length = 256)]
    email_code: Zeroizing<String>,
    /// The new key as an nsec or 64 hex characters; or
    #[schema(value_type = Option<String>, format = Password)]
    nsec: Option<Zeroizing<String>>,
    /// the new key as a NIP-49 `ncryptsec1…`, with `ncryptsec_password`. Neither: generate.
    ncryptsec: Option<String>,
    /// The ncryptsec's password.
    #[schema(value_type = Option<String>, format = Password)]
    ncryptsec_password: Option<Zeroizing<String>>,
}

/// A key with its new secret.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct Replaced {
    /// The key, with its new pubkey.
    key: KeyView,
    /// Hex pubkey it had.
    old_pubkey: String,
    /// Authorizations of the old secret, now revoked.
    #[schema(value_type = Vec<String>)]
    revoked: Vec<keycast_core::AuthorizationId>,
    /// Whether the notice reached the mail server (the replacement stands either way).
    notified: bool,
}

/// Replaces one of the account's keys with a new secret and revokes its authorizations.
#[utoipa::path(post, path = "/api/keys/{id}/danger/replace", tag = "keys", params(("id" = String, Path, description = "The key id")),
    request_body = Replace, security(("session" = [])), responses(
        (status = 200, description = "Replaced", body = Replaced),
        (status = 400, description = "Not a key, the current key, or an unknown, used or expired code", body = ErrorBody),
        (status = 403, description = "Wrong account password", body = ErrorBody),
        (status = 404, description = "No such key of this account", body = ErrorBody),
        (status = 409, description = "The new key is already stored here", body = ErrorBody),
        (status = 429, description = "Too many password tries from this address; see Retry-After", body = ErrorBody),
        (status = 503, description = "Too many NIP-49 imports at once; retry", body = ErrorBody)))]
pub(crate) async fn danger_replace(
    State(state): State<AppState>,
    current: CurrentUser,
    client: ClientAddr,
    Path(id): Path<String>,
    b: Result<Json<Replace>, JsonRejection>,
) -> Result<Json<Replaced>, ApiError> {
    let key = owned(&state, &current, &id).await?;
    let b = json_body(b)?;
    let names = ["nsec", "ncryptsec", "ncryptsec_password"];
    let secret = imported_secret(&state, names, b.nsec, b.ncryptsec, b.ncryptsec_password).await?;
    // Checked before the code is spent; the pubkey is a scalar multiplication, off the runtime.
    if let Some(s) = secret.clone() {
        let pubkey =
            tokio::task::spawn_blocking(move || keycast_core::nostr::Keys::new(s).public_key())
                .await
                .map_err(|e| {
                    ApiError::from(keycast_core::Error::Internal(format!("pubkey task: {e}")))
                })?;
        if pubkey == key.pubkey {
            return Err(ApiError::bad_request("this is the key's current secret"));
        }
    }
    let purpose = EmailPurpose::ConfirmReplaceKey;
    let owner = owner_confirms(
        &state,
        (&current, &client),
        b.account_password,
        &b.email_code,
        purpose,
    )
    .await?;
    let replaced = match state
        .services
        .custody
        .danger_replace_key(key.id, secret)
        .await
    {
        Ok(r) => r,
        Err(keycast_core::Error::AlreadyExists { .. }) => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "already_exists",
                "this key is already stored here",
            ))
        }
        Err(e) => return Err(e.into()),
    };
    if let Some(bunker) = &state.bunker {
        if let Err(e) = bunker.refresh_subscription().await {
            tracing::warn!(error = %e, "cannot refresh the NIP-46 subscription now; the change feed will");
        }
    }
    tracing::warn!(key = %key.id, user = %current.user_id, revoked = replaced.revoked.len(), "key replaced");
    let notified = notify(&state, &owner, &replaced).await;
    Ok(Json(Replaced {
        key: key_json(&replaced.key),
        old_pubkey: replaced.old_pubkey.to_hex(),
        revoked: replaced.revoked,
        notified,
    }))
}

/// Tells the owner what changed; false (and a warning) when the mail cannot go out.
async fn notify(
    state: &AppState,
    owner: &keycast_core::User,
    replaced: &keycast_core::ReplacedKey,
) -> bool {
    let Some(email) = &owner.email else {
        return false;
    };
    let npub = |p: &keycast_core::nostr::PublicKey| p.to_bech32().unwrap_or_else(|_| p.to_hex());
    let body = format!(
        "The key \"{}\" of your keycast account was replaced.\n\n\
         Old: {}\nNew: {}\n\n\
         {} app authorization(s) of the old key were revoked; connect the apps again to use \
         the new key. If it was not you, change your password now.\n",
        replaced.key.name.as_str(),
        npub(&replaced.old_pubkey),
        npub(&replaced.key.pubkey),
        replaced.revoked.len()
    );
    match state
        .services
        .mailer
        .send(email.as_str(), "Your key was replaced", body)
        .await
    {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!(error = %e, "cannot send the key-replacement notice");
            false
        }
    }
}
