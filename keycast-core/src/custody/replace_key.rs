//! Changing a key's secret in place: the key keeps its id, name and holder; apps
//! authorized for the old secret lose their authorizations.

use nostr::{SecretKey, Timestamp};

use super::Custody;
use crate::error::{Error, Result};
use crate::ids::{AuthorizationId, KeyId};
use crate::model::audit::AuditAction;
use crate::model::key::{KeyKind, StoredKey};

/// A replaced key and what the replacement revoked.
#[derive(Debug, Clone)]
pub struct ReplacedKey {
    /// The key with its new pubkey and envelope.
    pub key: StoredKey,
    /// The pubkey it had.
    pub old_pubkey: nostr::PublicKey,
    /// Authorizations of the old secret, now revoked.
    pub revoked: Vec<AuthorizationId>,
}

impl Custody {
    /// **Danger:** gives the user key `key_id` a new secret (`secret`, or a generated one)
    /// and revokes every authorization of the key, in one store transaction; the old
    /// secret is gone. This instance forgets the old secret at once, the others when the
    /// change feed names the key. The caller must have authenticated the owner (or a team
    /// admin). Audited; if the audit write fails the replacement stands and the error
    /// says the record is missing.
    pub async fn danger_replace_key(
        &self,
        key_id: KeyId,
        secret: Option<SecretKey>,
    ) -> Result<ReplacedKey> {
        let store = &self.inner.store;
        let old = store.get_key(key_id).await?;
        if old.kind != KeyKind::User {
            return Err(Error::Denied("only user keys can be replaced".into()));
        }
        let (pubkey, envelope) = self.seal_secret(key_id, old.tenant_id, secret).await?;
        if pubkey == old.pubkey {
            return Err(Error::invalid("key", "the new secret is the current one"));
        }
        let new = StoredKey {
            pubkey,
            envelope,
            ..old.clone()
        };
        let revoked = store.replace_key_secret(&new, Timestamp::now()).await?;
        self.forget_key(key_id);
        self.audit_owner_action(key_id, new.tenant_id, new.owner, AuditAction::ReplaceKey)
            .await?;
        Ok(ReplacedKey {
            key: new,
            old_pubkey: old.pubkey,
            revoked,
        })
    }
}
