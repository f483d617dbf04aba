//! Creating keys and authorizations, revocation and cache invalidation.

use nostr::{Keys, RelayUrl, SecretKey, Timestamp};
use zeroize::Zeroizing;

use super::Custody;
use crate::crypto::envelope::{self, EnvelopeBinding};
use crate::crypto::secret::BearerSecret;
use crate::error::{Error, Result};
use crate::ids::{AuthorizationId, KeyId, PolicyId, TenantId, UserId};
use crate::model::authorization::Authorization;
use crate::model::change::{Change, Changed};
use crate::model::key::{Holder, KeyKind, NewKey, StoredKey};
use crate::model::names::Label;

/// What is needed to connect an app to a key.
#[derive(Debug, Clone)]
pub struct NewAuthorization {
    /// Tenant of the key and the policy.
    pub tenant_id: TenantId,
    /// The granting user.
    pub user_id: UserId,
    /// The user key the app may use.
    pub key_id: KeyId,
    /// The policy to enforce.
    pub policy_id: PolicyId,
    /// Human label.
    pub label: Label,
    /// Relays for NIP-46; may be empty for HTTP-only use.
    pub relays: Vec<RelayUrl>,
    /// Optional hard expiry.
    pub expires_at: Option<Timestamp>,
}

impl Custody {
    /// Stores a new key: generated here unless `new.secret` is given. The secret is
    /// sealed under the primary master key before it touches the store. The caller has
    /// checked that the holder is of the tenant and who may do this; a team holds user keys
    /// only.
    pub async fn create_key(&self, new: NewKey) -> Result<StoredKey> {
        if matches!(new.holder, Holder::Team(_)) && new.kind != KeyKind::User {
            return Err(Error::invalid("key", "a team holds user keys only"));
        }
        self.create_key_as(KeyId::random(), new).await
    }

    /// The key stored under the fixed `id`, generating it on first use: for a service's
    /// own identity key, which every instance must agree on. Racing creators converge on
    /// the row that was inserted first.
    pub async fn ensure_key(
        &self,
        id: KeyId,
        tenant_id: TenantId,
        kind: KeyKind,
        name: Label,
    ) -> Result<StoredKey> {
        match self.inner.store.get_key(id).await {
            Err(Error::NotFound { .. }) => {}
            found => return found,
        }
        let new = NewKey::generate(tenant_id, Holder::Service, kind, name);
        match self.create_key_as(id, new).await {
            Err(Error::AlreadyExists { .. }) => self.inner.store.get_key(id).await,
            created => created,
        }
    }

    async fn create_key_as(&self, id: KeyId, new: NewKey) -> Result<StoredKey> {
        let NewKey {
            tenant_id,
            holder,
            kind,
            label,
            secret,
        } = new;
        let (pubkey, envelope) = self.seal_secret(id, tenant_id, secret).await?;
        let row = StoredKey {
            id,
            tenant_id,
            owner: holder.owner(),
            team: holder.team(),
            kind,
            pubkey,
            name: label,
            envelope,
            created_at: Timestamp::now(),
        };
        self.inner.store.insert_key(&row).await?;
        Ok(row)
    }

    /// Seals `secret` (generated when `None`) for the key row `id` of `tenant_id` under the
    /// primary master key; returns its pubkey and envelope.
    pub(super) async fn seal_secret(
        &self,
        id: KeyId,
        tenant_id: TenantId,
        secret: Option<SecretKey>,
    ) -> Result<(nostr::PublicKey, crate::crypto::envelope::Envelope)> {
        let (secret, pubkey) = self
            .inner
            .pool
            .run(move || {
                let keys = secret.map_or_else(Keys::generate, Keys::new);
                (
                    Zeroizing::new(keys.secret_key().to_secret_bytes()),
                    keys.public_key(),
                )
            })
            .await?;
        let binding = EnvelopeBinding {
            key_id: id,
            pubkey,
            tenant_id,
        };
        let envelope = envelope::seal(self.inner.key_manager.as_ref(), &binding, &secret).await?;
        Ok((pubkey, envelope))
    }

    /// Creates an authorization with a fresh bunker key and a single-use connect secret.
    /// The secret is returned once, for the bunker:// URI; only its digest is stored.
    pub async fn create_authorization(
        &self,
        new: NewAuthorization,
    ) -> Result<(Authorization, BearerSecret)> {
        let store = &self.inner.store;
        let key = store.get_key(new.key_id).await?;
        // Someone else's key answers as a missing one: its existence is not the caller's
        // business either.
        if key.tenant_id != new.tenant_id
            || key.kind != KeyKind::User
            || !self.holds(&key, new.user_id).await?
        {
            return Err(Error::NotFound { what: "key" });
        }
        let policy = store.get_policy(new.policy_id).await?;
        let usable = match (policy.owner, policy.team) {
            (Some(owner), _) => owner == new.user_id,
            (None, Some(team)) => key.team == Some(team),
            // A tenant-wide policy (created by the operator, not by an account).
            (None, None) => true,
        };
        if policy.tenant_id != new.tenant_id || !usable {
            return Err(Error::NotFound { what: "policy" });
        }
        let bunker = self
            .create_key(NewKey::generate(
                new.tenant_id,
                Holder::User(new.user_id),
                KeyKind::Bunker,
                new.label.clone(),
            ))
            .await?;
        let secret = BearerSecret::generate();
        let auth = Authorization {
            id: AuthorizationId::random(),
            tenant_id: new.tenant_id,
            user_id: new.user_id,
            key_id: new.key_id,
            bunker_key_id: bunker.id,
            bunker_pubkey: bunker.pubkey,
            connect_secret: Some(secret.digest()),
            relays: new.relays,
            policy_id: new.policy_id,
            label: new.label,
            expires_at: new.expires_at,
            revoked_at: None,
            client_pubkeys: Vec::new(),
            uses: 0,
            version: 1,
            created_at: Timestamp::now(),
        };
        store.insert_authorization(&auth).await?;
        Ok((auth, secret))
    }

    /// Whether `user` holds `key`: its owner, or a member of its team. The engine checks
    /// this itself when an authorization is created and whenever one is loaded, so
    /// neither an embedding app's mistake nor a row pointed at another account's key can
    /// make one account sign with another's key.
    pub(super) async fn holds(&self, key: &StoredKey, user: UserId) -> Result<bool> {
        Ok(match (key.owner, key.team) {
            (Some(owner), _) => owner == user,
            (None, Some(team)) => self.inner.store.team_role(team, user).await?.is_some(),
            (None, None) => false,
        })
    }

    /// Deletes a key, its authorizations and their tokens ([`crate::KeyStore::delete_key`]),
    /// forgets what this instance cached for them, and audits the deletion. Other instances
    /// drop the authorizations when the change feed names them. The caller must have
    /// checked that the key may be deleted. If the audit write fails the deletion stands,
    /// and the error says the record is missing.
    pub async fn delete_key(&self, key_id: KeyId) -> Result<StoredKey> {
        let key = self.inner.store.delete_key(key_id).await?;
        self.forget_key(key_id);
        self.audit_owner_action(
            key_id,
            key.tenant_id,
            key.owner,
            crate::model::audit::AuditAction::DeleteKey,
        )
        .await?;
        Ok(key)
    }

    /// Drops a deleted (or replaced) key's secret and conversation keys, and the cached authorizations
    /// that used it with their bunker keys. A bunker key whose authorization was not cached
    /// stays until it idles out, unreachable: every path to it starts at the authorization.
    pub(super) fn forget_key(&self, key_id: KeyId) {
        let i = &self.inner;
        let gone = i
            .authorizations
            .invalidate_matching(|a| a.key_id == key_id || a.bunker_key_id == key_id);
        for a in &gone {
            i.bunkers.invalidate(&a.bunker_pubkey);
            self.forget_secret(a.bunker_key_id);
        }
        self.forget_secret(key_id);
    }

    fn forget_secret(&self, id: KeyId) {
        self.invalidate_key(id);
        if let Some(convs) = &self.inner.conversations {
            let stale: Vec<_> = convs
                .iter()
                .map(|(k, _)| *k)
                .filter(|(key, _)| *key == id)
                .collect();
            for k in &stale {
                convs.invalidate(k);
            }
        }
    }

    /// Revokes in the store, then drops this instance's cached copy so the next request
    /// sees the revocation.
    pub async fn revoke_authorization(&self, id: AuthorizationId) -> Result<Authorization> {
        let revoked = self
            .inner
            .store
            .revoke_authorization(id, Timestamp::now())
            .await?;
        self.invalidate_authorization(id);
        Ok(revoked)
    }

    /// [`Self::revoke_authorization`] only if `id` is `user`'s in `tenant` (else
    /// [`crate::Error::NotFound`], nothing changed): the ownership check and the write in
    /// one store call.
    pub async fn revoke_authorization_of(
        &self,
        tenant: TenantId,
        user: UserId,
        id: AuthorizationId,
    ) -> Result<Authorization> {
        let revoked = self
            .inner
            .store
            .revoke_authorization_of(tenant, user, id, Timestamp::now())
            .await?;
        self.invalidate_authorization(id);
        Ok(revoked)
    }

    /// **Danger:** the key's secret, leaving custody as a NIP-49 `ncryptsec` encrypted
    /// under `password` (scrypt cost `log_n`, 16 or more recommended). For owners taking
    /// their key elsewhere; the caller must have authenticated the owner. User keys only.
    /// The export is written to the audit log before the secret is returned, and fails
    /// if that write fails.
    pub async fn danger_export_ncryptsec(
        &self,
        key_id: KeyId,
        password: Zeroizing<String>,
        log_n: u8,
    ) -> Result<String> {
        if !(1..=22).contains(&log_n) {
            return Err(Error::invalid("log_n", "use 1 to 22 (16 recommended)"));
        }
        if password.is_empty() {
            return Err(Error::invalid("password", "an export needs a password"));
        }
        let ncryptsec = self
            .danger_export(key_id, move |keys| {
                use nostr::nips::nip49::{EncryptedSecretKey, KeySecurity};
                use nostr::ToBech32;
                EncryptedSecretKey::new(
                    keys.secret_key(),
                    password.as_str(),
                    log_n,
                    KeySecurity::Medium,
                )
                .map_err(|e| Error::Internal(format!("nip-49: {e}")))?
                .to_bech32()
                .map(Zeroizing::new)
                .map_err(|e| Error::Internal(format!("nip-49: {e}")))
            })
            .await?;
        Ok(ncryptsec.to_string())
    }

    /// **Danger:** the key's secret in the clear, as an `nsec`. As
    /// [`Custody::danger_export_ncryptsec`]: owners only, user keys only, audited first.
    pub async fn danger_export_nsec(&self, key_id: KeyId) -> Result<Zeroizing<String>> {
        self.danger_export(key_id, |keys| {
            use nostr::ToBech32;
            keys.secret_key()
                .to_bech32()
                .map(Zeroizing::new)
                .map_err(|e| Error::Internal(format!("nsec: {e}")))
        })
        .await
    }

    /// **Danger:** the key's secret in the clear, as the 24-word BIP-39 (English) mnemonic
    /// whose entropy is the 32 secret bytes, so the words give back this exact key (not a
    /// NIP-06 derivation). As [`Custody::danger_export_ncryptsec`]: owners only, user keys
    /// only, audited first.
    pub async fn danger_export_mnemonic(&self, key_id: KeyId) -> Result<Zeroizing<String>> {
        self.danger_export(key_id, |keys| {
            let bytes = Zeroizing::new(keys.secret_key().to_secret_bytes());
            nostr::bip39::Mnemonic::from_entropy(bytes.as_slice())
                .map(|m| Zeroizing::new(m.to_string()))
                .map_err(|e| Error::Internal(format!("bip-39: {e}")))
        })
        .await
    }

    /// The checks and the audit record every export shares, around `encode` (run off
    /// the async runtime: NIP-49's scrypt takes tens to hundreds of milliseconds).
    async fn danger_export<F>(&self, key_id: KeyId, encode: F) -> Result<Zeroizing<String>>
    where
        F: FnOnce(&nostr::Keys) -> Result<Zeroizing<String>> + Send + 'static,
    {
        let key = self.signing_key(key_id).await?;
        if key.kind != KeyKind::User {
            return Err(Error::Denied("only user keys can be exported".into()));
        }
        let keys = key.keys.clone();
        let exported = tokio::task::spawn_blocking(move || encode(&keys))
            .await
            .map_err(|e| Error::Internal(format!("export task: {e}")))??;
        self.audit_owner_action(
            key_id,
            key.tenant_id,
            key.owner,
            crate::model::audit::AuditAction::ExportKey,
        )
        .await?;
        Ok(exported)
    }

    /// Records an action the key's owner took on the key itself (no authorization).
    pub(super) async fn audit_owner_action(
        &self,
        key_id: KeyId,
        tenant_id: TenantId,
        owner: Option<UserId>,
        action: crate::model::audit::AuditAction,
    ) -> Result<()> {
        self.inner
            .audit
            .record(crate::model::audit::AuditRecord {
                at: Timestamp::now(),
                tenant_id,
                user_id: owner,
                key_id,
                authorization_id: None,
                action,
                event_kind: None,
                event_id: None,
                outcome: crate::model::audit::Outcome::Allowed,
            })
            .await
    }

    /// Forgets a cached authorization (after a change made elsewhere).
    pub fn invalidate_authorization(&self, id: AuthorizationId) {
        self.inner.authorizations.invalidate(&id);
    }

    /// Forgets a cached policy (after an update).
    pub fn invalidate_policy(&self, id: PolicyId) {
        self.inner.policies.invalidate(&id);
    }

    /// Forgets a cached decrypted key.
    pub fn invalidate_key(&self, id: KeyId) {
        self.inner.keys.invalidate(&id);
    }

    /// Forgets every cached value the change feed names ([`crate::KeyStore::changes_since`]);
    /// a reader polls the feed and passes what it finds here.
    pub fn apply_changes(&self, changes: &[Change]) {
        for change in changes {
            match change.what {
                Changed::Authorization(id) => self.invalidate_authorization(id),
                Changed::Policy(id) => self.invalidate_policy(id),
                Changed::Key(id) => self.forget_key(id),
            }
        }
    }
}
