//! Authorization codes, and how the bunker connect secret gets from the approval to the
//! token endpoint.
//!
//! The authorization is created at approval (the stored code must name it), and the
//! engine hands out its single-use connect secret only then and stores only its digest.
//! The token endpoint must return that secret in the `bunker://` URL, so the code carries
//! it sealed: `<64 hex random>.<base64url JSON {kek, blob}>`, where `blob` is the secret
//! wrapped by the keyring's primary master key with associated data naming the
//! authorization. The store keys the code by the SHA-256 of the whole text, so an altered
//! seal is an unknown code; someone who intercepts the code learns nothing from the seal.
//! This needs no server-side state beyond the stored code, so any instance (or a restarted
//! one) can redeem it.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use keycast_core::nostr::Timestamp;
use keycast_core::{
    Authorization, AuthorizationId, BearerSecret, Error, KekRef, KeyManager, Keyring, OAuthCode,
    SecretDigest, Wrapped,
};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::params::AuthRequest;

/// How long a code can be exchanged.
pub(crate) const CODE_TTL_SECS: u64 = 60;
/// Longest code text accepted at the token endpoint.
pub(crate) const MAX_CODE_LEN: usize = 4096;

const AAD: &[u8] = b"keycast/v1/oauth-connect-secret";

#[derive(Serialize, Deserialize)]
struct Seal {
    /// The authorization the code grants; the blob opens only under associated data
    /// naming it, so a seal that opens proves the code was issued for it (see
    /// [`issued_for`]). Absent from codes issued before it was added.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    auth: Option<AuthorizationId>,
    kek: KekRef,
    blob: String,
}

/// Replayed codes checked at once: each check is one unwrap (with a cloud KMS, a call),
/// so garbage shaped like a code cannot make the server call its KMS without bound.
static REPLAY_CHECKS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(4);

fn aad(authorization: AuthorizationId) -> Vec<u8> {
    [AAD, authorization.as_bytes().as_slice()].concat()
}

/// Stores a new code for `auth` and returns its text (for the redirect, never the logs).
pub(crate) async fn issue(
    store: &dyn keycast_core::KeyStore,
    keyring: &Keyring,
    auth: &Authorization,
    connect_secret: &BearerSecret,
    req: &AuthRequest,
) -> Result<Zeroizing<String>, Error> {
    let secret = <[u8; 32] as hex::FromHex>::from_hex(connect_secret.expose())
        .map_err(|_| Error::Internal("connect secret is not 64 hex characters".into()))?;
    let wrapped = keyring.wrap(&Zeroizing::new(secret), &aad(auth.id)).await?;
    let seal = serde_json::to_vec(&Seal {
        auth: Some(auth.id),
        kek: wrapped.kek,
        blob: URL_SAFE_NO_PAD.encode(&wrapped.blob),
    })
    .map_err(|e| Error::Internal(format!("code seal: {e}")))?;
    let text = Zeroizing::new(format!(
        "{}.{}",
        BearerSecret::generate().expose(),
        URL_SAFE_NO_PAD.encode(seal)
    ));
    let now = Timestamp::now();
    store
        .insert_oauth_code(&OAuthCode {
            digest: SecretDigest::of(text.as_bytes()),
            tenant_id: auth.tenant_id,
            user_id: auth.user_id,
            authorization_id: auth.id,
            client_id: req.client.id.clone(),
            redirect_uri: req.redirect_uri.clone(),
            code_challenge: req.code_challenge.clone(),
            expires_at: Timestamp::from(now.as_secs() + CODE_TTL_SECS),
            created_at: now,
        })
        .await?;
    Ok(text)
}

fn seal_of(code: &str) -> Result<Seal, Error> {
    let bad = || Error::invalid("oauth code", "no sealed connect secret");
    let (_, sealed) = code.split_once('.').ok_or_else(bad)?;
    let json = URL_SAFE_NO_PAD.decode(sealed).map_err(|_| bad())?;
    serde_json::from_slice(&json).map_err(|_| bad())
}

async fn open(
    keyring: &Keyring,
    seal: Seal,
    authorization: AuthorizationId,
) -> Result<BearerSecret, Error> {
    let wrapped = Wrapped {
        kek: seal.kek,
        blob: URL_SAFE_NO_PAD
            .decode(seal.blob)
            .map_err(|_| Error::invalid("oauth code", "no sealed connect secret"))?,
    };
    let secret = keyring.unwrap(&wrapped, &aad(authorization)).await?;
    let hex = Zeroizing::new(hex::encode(secret.as_ref()));
    Ok(BearerSecret::from_presented(&hex))
}

/// The connect secret sealed in `code` (already consumed) for `authorization`.
pub(crate) async fn connect_secret(
    keyring: &Keyring,
    authorization: AuthorizationId,
    code: &str,
) -> Result<BearerSecret, Error> {
    open(keyring, seal_of(code)?, authorization).await
}

/// The authorization a code this server issued was for, when `code` (unknown to the
/// store: used, or expired and gone) is genuine: its seal names the authorization and
/// opens under it, which only this server's master key can arrange. `None` for anything
/// else, or while too many such checks run.
pub(crate) async fn issued_for(keyring: &Keyring, code: &str) -> Option<AuthorizationId> {
    let seal = seal_of(code).ok()?;
    let authorization = seal.auth?;
    if !keyring.can_unwrap(&seal.kek) {
        return None;
    }
    let _permit = REPLAY_CHECKS.try_acquire().ok()?;
    open(keyring, seal, authorization).await.ok()?;
    Some(authorization)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[tokio::test]
    async fn the_seal_opens_only_for_its_authorization() {
        let keyring = Keyring::new(Arc::new(keycast_core::InsecureTestKeyManager::new()));
        let secret = BearerSecret::generate();
        let id = AuthorizationId::random();
        let raw = <[u8; 32] as hex::FromHex>::from_hex(secret.expose()).expect("hex");
        let wrapped = keyring
            .wrap(&Zeroizing::new(raw), &aad(id))
            .await
            .expect("wrap");
        let seal = serde_json::to_vec(&Seal {
            auth: Some(id),
            kek: wrapped.kek,
            blob: URL_SAFE_NO_PAD.encode(&wrapped.blob),
        })
        .expect("json");
        let code = format!("abc.{}", URL_SAFE_NO_PAD.encode(seal));
        let opened = connect_secret(&keyring, id, &code).await.expect("open");
        assert_eq!(opened.digest(), secret.digest());
        assert!(connect_secret(&keyring, AuthorizationId::random(), &code)
            .await
            .is_err());
        assert!(connect_secret(&keyring, id, "abc").await.is_err());
        assert!(connect_secret(&keyring, id, "abc.!!").await.is_err());
        assert_eq!(issued_for(&keyring, &code).await, Some(id));
        // A seal naming another authorization does not open under it.
        let forged = serde_json::to_vec(&Seal {
            auth: Some(AuthorizationId::random()),
            ..serde_json::from_slice(
                &URL_SAFE_NO_PAD
                    .decode(code.split_once('.').expect("dot").1)
                    .expect("b64"),
            )
            .expect("seal")
        })
        .expect("json");
        let forged = format!("abc.{}", URL_SAFE_NO_PAD.encode(forged));
        assert_eq!(issued_for(&keyring, &forged).await, None);
        assert_eq!(issued_for(&keyring, "abc.!!").await, None);
    }
}
