//! `POST /api/keys/{id}/danger/export`: a key leaves custody, as an `nsec`, a NIP-49
//! `ncryptsec` or a 24-word BIP-39 mnemonic. It takes the account password and a code
//! mailed for this purpose (`POST /api/auth/confirm/request` with `{"action":
//! "export_key"}`), so a stolen session alone cannot take a key. Password tries count
//! against the login limits; every export is audited by the engine before
//! the secret is returned.

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use keycast_core::EmailPurpose;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::accounts::CurrentUser;
use super::error::{json_body, ErrorBody};
use super::keys::{owned, scrypt_slot, MAX_LOG_N};
use super::{ApiError, AppState, ClientAddr};
use crate::passwords;

/// What to export, and the proof that the owner asks.
// No `Debug`: it holds passwords and a code.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(missing_debug_implementations)]
pub(crate) struct Export {
    /// `ncryptsec` (default), `nsec` or `mnemonic`.
    #[schema(value_type = Option<ExportFormat>)]
    format: Option<String>,
    /// The account's password.
    #[schema(value_type = String, format = Password, max_length = 1024)]
    account_password: Zeroizing<String>,
    /// The code mailed by `POST /api/auth/confirm/request` (`{"action":"export_key"}`).
    #[schema(value_type = String, format = Password, max_length = 256)]
    email_code: Zeroizing<String>,
    /// `ncryptsec` only: encrypts the export; at least 10 characters.
    #[schema(value_type = Option<String>, format = Password)]
    password: Option<Zeroizing<String>>,
    /// `ncryptsec` only: scrypt cost, 2^log_n: 1 to 18 (default 16).
    #[schema(minimum = 1, maximum = 18)]
    log_n: Option<u8>,
}

/// Export formats (documentation of `format`).
#[derive(utoipa::ToSchema)]
#[schema(rename_all = "lowercase")]
#[allow(dead_code)]
pub(crate) enum ExportFormat {
    Ncryptsec,
    Nsec,
    Mnemonic,
}

/// An exported key.
#[derive(Serialize, utoipa::ToSchema)]
#[allow(missing_debug_implementations)]
pub(crate) struct Exported {
    /// The format of `exported`.
    format: &'static str,
    /// The key: `nsec1…`, `ncryptsec1…`, or 24 words.
    exported: String,
}

enum Format {
    Ncryptsec(Zeroizing<String>, u8),
    Nsec,
    Mnemonic,
}

/// The format asked for, with its settings checked.
fn format(b: &mut Export) -> Result<Format, ApiError> {
    let plain_only = |name: &str, b: &Export| {
        if b.password.is_some() || b.log_n.is_some() {
            return Err(ApiError::bad_request(format!(
                "password and log_n are for ncryptsec; {name} is not encrypted"
            )));
        }
        Ok(())
    };
    match b.format.as_deref().unwrap_or("ncryptsec") {
        "ncryptsec" => {
            let password = b
                .password
                .take()
                .ok_or_else(|| ApiError::bad_request("password: an ncryptsec export needs one"))?;
            if password.chars().count() < passwords::MIN_LEN {
                return Err(ApiError::bad_request(format!(
                    "password must have at least {} characters",
                    passwords::MIN_LEN
                )));
            }
            let log_n = b.log_n.unwrap_or(16);
            if !(1..=MAX_LOG_N).contains(&log_n) {
                return Err(ApiError::bad_request(format!(
                    "log_n: use 1 to {MAX_LOG_N} (16 recommended; nostr clients refuse more than {MAX_LOG_N})"
                )));
            }
            Ok(Format::Ncryptsec(password, log_n))
        }
        "nsec" => plain_only("nsec", b).map(|()| Format::Nsec),
        "mnemonic" => plain_only("mnemonic", b).map(|()| Format::Mnemonic),
        other => Err(ApiError::bad_request(format!(
            "format: {other:?} is not one of ncryptsec, nsec, mnemonic"
        ))),
    }
}

/// Exports one of the account's keys. Audited; the path says what it is.
#[utoipa::path(post, path = "/api/keys/{id}/danger/export", tag = "keys", params(("id" = String, Path, description = "The key id")),
    request_body = Export, security(("session" = [])), responses(
        (status = 200, description = "The key", body = Exported),
        (status = 400, description = "Bad format or settings, or an unknown, used or expired code", body = ErrorBody),
        (status = 403, description = "Wrong account password", body = ErrorBody),
        (status = 404, description = "No such key of this account", body = ErrorBody),
        (status = 429, description = "Too many password tries from this address; see Retry-After", body = ErrorBody),
        (status = 503, description = "Too many NIP-49 imports or exports, or password checks, at once; retry", body = ErrorBody)))]
pub(crate) async fn danger_export(
    State(state): State<AppState>,
    current: CurrentUser,
    client: ClientAddr,
    Path(id): Path<String>,
    b: Result<Json<Export>, JsonRejection>,
) -> Result<Json<Exported>, ApiError> {
    let key = owned(&state, &current, &id).await?;
    let mut b = json_body(b)?;
    let format = format(&mut b)?;
    // Taken first, so a busy server answers 503 before the code is spent.
    let _slot = match format {
        Format::Ncryptsec(..) => Some(scrypt_slot(&state)?),
        Format::Nsec | Format::Mnemonic => None,
    };
    owner_confirms(
        &state,
        (&current, &client),
        b.account_password,
        &b.email_code,
        EmailPurpose::ConfirmExport,
    )
    .await?;
    let custody = &state.services.custody;
    let (name, exported) = match format {
        Format::Ncryptsec(password, log_n) => {
            let n = custody
                .danger_export_ncryptsec(key.id, password, log_n)
                .await?;
            ("ncryptsec", Zeroizing::new(n))
        }
        Format::Nsec => ("nsec", custody.danger_export_nsec(key.id).await?),
        Format::Mnemonic => ("mnemonic", custody.danger_export_mnemonic(key.id).await?),
    };
    tracing::warn!(key = %key.id, user = %current.user_id, format = name, "key exported");
    Ok(Json(Exported {
        format: name,
        exported: exported.to_string(),
    }))
}

/// The owner's proof for a `danger` call: the account password (under the login limits,
/// from `client`), then the code mailed for `purpose`, spent only now, once the rest of
/// the request is known to be good. Answers the account.
pub(crate) async fn owner_confirms(
    state: &AppState,
    (current, client): (&CurrentUser, &ClientAddr),
    password: Zeroizing<String>,
    code: &str,
    purpose: EmailPurpose,
) -> Result<keycast_core::User, ApiError> {
    let user = check_account_password(state, current, client, password).await?;
    let code = super::email_flows::redeem(state, current.tenant_id, code, purpose).await?;
    if code.user_id != current.user_id {
        return Err(super::email_flows::invalid_token());
    }
    Ok(user)
}

/// The account password, under the login limits.
async fn check_account_password(
    state: &AppState,
    current: &CurrentUser,
    client: &ClientAddr,
    password: Zeroizing<String>,
) -> Result<keycast_core::User, ApiError> {
    let user = state.services.store.get_user(current.user_id).await?;
    let login = user
        .email
        .as_ref()
        .map_or(user.username.as_str(), |e| e.as_str());
    let limited = super::login_guard::account_key(current.tenant_id, login);
    state.login_guard.admit(&limited, client).await?;
    let matches = password.len() <= passwords::MAX_BYTES
        && state
            .passwords
            .verify(password, user.password_hash.clone())
            .await?;
    if !matches {
        state.login_guard.failed(&limited, client).await;
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "wrong_password",
            "the account password is wrong",
        ));
    }
    state.login_guard.succeeded(&limited, client).await;
    Ok(user)
}
