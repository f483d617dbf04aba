//! An in-process KeyStore. Complete and correct, but nothing survives the process.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, MutexGuard};

use async_trait::async_trait;
use nostr::{PublicKey, Timestamp};

use crate::crypto::secret::SecretDigest;
use crate::error::{Error, Result};
use crate::ids::{AuthorizationId, KeyId, PolicyId, TeamId, TenantId, UserId};
use crate::model::account::{Tenant, User};
use crate::model::audit::{Activity, AuditAction, AuditFilter, AuditRecord, Outcome};
use crate::model::authorization::Authorization;
use crate::model::change::{Change, Changed};
use crate::model::key::StoredKey;
use crate::model::names::{Email, Label, PasswordHash, TenantHost, TenantName, Username};
use crate::model::policy::Policy;
use crate::model::request::Method;
use crate::model::team::{Team, TeamMember, TeamRole};
use crate::model::token::{ApiToken, EmailPurpose, EmailToken, OAuthCode, Session};
use crate::traits::key_manager::{KekRef, Wrapped};
use crate::traits::key_store::{KeyStore, PasswordReplaced};

/// A [`KeyStore`] in a mutex-guarded set of maps, for tests, examples and benchmarks.
#[derive(Debug, Default)]
pub struct MemoryKeyStore {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
pub(super) struct Inner {
    pub(super) tenants: HashMap<TenantId, Tenant>,
    tenant_hosts: BTreeMap<TenantHost, TenantId>,
    pub(super) users: HashMap<UserId, User>,
    pub(super) keys: HashMap<KeyId, StoredKey>,
    pub(super) policies: HashMap<PolicyId, Policy>,
    pub(super) authorizations: HashMap<AuthorizationId, Authorization>,
    pub(super) teams: HashMap<TeamId, Team>,
    pub(super) team_members: super::teams::Members,
    tokens: HashMap<SecretDigest, ApiToken>,
    oauth_codes: HashMap<SecretDigest, OAuthCode>,
    sessions: HashMap<SecretDigest, Session>,
    email_tokens: HashMap<SecretDigest, EmailToken>,
    email_verified: HashMap<UserId, Timestamp>,
    audit: Vec<AuditRecord>,
    changes: Vec<Change>,
}

impl Inner {
    /// Appends to the change feed (the SQL stores do it with triggers).
    pub(super) fn changed(&mut self, what: Changed) {
        let seq = self.changes.last().map_or(1, |c| c.seq + 1);
        self.changes.push(Change { seq, what });
    }
}

impl MemoryKeyStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of audit records held (for tests).
    pub fn audit_len(&self) -> usize {
        self.lock().audit.len()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave a map half-updated: every mutation
        // below is a single insert or field write after all checks. So poisoning is ignored.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn not_found<T>(what: &'static str) -> impl FnOnce() -> Result<T> {
    move || Err(Error::NotFound { what })
}

fn sorted_by_created<T: Clone>(
    items: impl Iterator<Item = T>,
    created: impl Fn(&T) -> Timestamp,
) -> Vec<T> {
    let mut v: Vec<T> = items.collect();
    v.sort_by_key(|x| created(x));
    v
}

impl Inner {
    fn authorization_mut(&mut self, id: AuthorizationId) -> Result<&mut Authorization> {
        self.authorizations.get_mut(&id).ok_or(Error::NotFound {
            what: "authorization",
        })
    }
}

#[async_trait]
impl KeyStore for MemoryKeyStore {
    async fn create_tenant(&self, tenant: &Tenant) -> Result<()> {
        let mut g = self.lock();
        if g.tenants.contains_key(&tenant.id) || g.tenants.values().any(|t| t.name == tenant.name) {
            return Err(Error::AlreadyExists { what: "tenant" });
        }
        g.tenants.insert(tenant.id, tenant.clone());
        Ok(())
    }

    async fn get_tenant(&self, id: TenantId) -> Result<Tenant> {
        self.lock()
            .tenants
            .get(&id)
            .cloned()
            .map_or_else(not_found("tenant"), Ok)
    }

    async fn find_tenant(&self, name: &TenantName) -> Result<Tenant> {
        self.lock()
            .tenants
            .values()
            .find(|t| &t.name == name)
            .cloned()
            .map_or_else(not_found("tenant"), Ok)
    }

    async fn list_tenants(&self) -> Result<Vec<Tenant>> {
        let mut all: Vec<Tenant> = self.lock().tenants.values().cloned().collect();
        all.sort_by(|a, b| a.name.as_str().cmp(b.name.as_str()));
        Ok(all)
    }

    async fn add_tenant_host(&self, host: &TenantHost, tenant: TenantId) -> Result<()> {
        let mut g = self.lock();
        if !g.tenants.contains_key(&tenant) {
            return Err(Error::NotFound { what: "tenant" });
        }
        if g.tenant_hosts.contains_key(host) {
            return Err(Error::AlreadyExists {
                what: "tenant host",
            });
        }
        g.tenant_hosts.insert(host.clone(), tenant);
        Ok(())
    }

    async fn remove_tenant_host(&self, host: &TenantHost) -> Result<bool> {
        Ok(self.lock().tenant_hosts.remove(host).is_some())
    }

    async fn list_tenant_hosts(&self) -> Result<Vec<(TenantHost, TenantId)>> {
        Ok(self
            .lock()
            .tenant_hosts
            .iter()
            .map(|(h, t)| (h.clone(), *t))
            .collect())
    }

    async fn create_user(&self, user: &User) -> Result<()> {
        let mut g = self.lock();
        if !g.tenants.contains_key(&user.tenant_id) {
            return Err(Error::NotFound { what: "tenant" });
        }
        let taken = g.users.values().any(|u| {
            u.id == user.id
                || (u.tenant_id == user.tenant_id
                    && (u.username == user.username
                        || (u.email.is_some() && u.email == user.email)))
        });
        if taken {
            return Err(Error::AlreadyExists { what: "user" });
        }
        g.users.insert(user.id, user.clone());
        Ok(())
    }

    async fn delete_user(&self, id: UserId) -> Result<()> {
        let mut g = self.lock();
        if !g.users.contains_key(&id) {
            return Err(Error::NotFound { what: "user" });
        }
        let referred = g.keys.values().any(|k| k.owner == Some(id))
            || g.sessions.values().any(|s| s.user_id == id)
            || g.policies.values().any(|p| p.owner == Some(id))
            || g.authorizations.values().any(|a| a.user_id == id)
            || g.oauth_codes.values().any(|c| c.user_id == id)
            || g.team_members.values().any(|m| m.user_id == id);
        if referred {
            return Err(Error::Conflict("the user still owns records".into()));
        }
        g.users.remove(&id);
        Ok(())
    }

    async fn get_user(&self, id: UserId) -> Result<User> {
        self.lock()
            .users
            .get(&id)
            .cloned()
            .map_or_else(not_found("user"), Ok)
    }

    async fn find_user(&self, tenant: TenantId, username: &Username) -> Result<User> {
        self.lock()
            .users
            .values()
            .find(|u| u.tenant_id == tenant && &u.username == username)
            .cloned()
            .map_or_else(not_found("user"), Ok)
    }

    async fn find_user_by_email(&self, tenant: TenantId, email: &Email) -> Result<User> {
        self.lock()
            .users
            .values()
            .find(|u| u.tenant_id == tenant && u.email.as_ref() == Some(email))
            .cloned()
            .map_or_else(not_found("user"), Ok)
    }

    async fn insert_session(&self, session: &Session) -> Result<()> {
        let mut g = self.lock();
        if !g.users.contains_key(&session.user_id) {
            return Err(Error::NotFound { what: "user" });
        }
        if g.sessions.contains_key(&session.digest) {
            return Err(Error::AlreadyExists { what: "session" });
        }
        g.sessions.insert(session.digest, session.clone());
        Ok(())
    }

    async fn find_session(&self, digest: &SecretDigest) -> Result<Session> {
        self.lock()
            .sessions
            .get(digest)
            .cloned()
            .map_or_else(not_found("session"), Ok)
    }

    async fn delete_session(&self, digest: &SecretDigest) -> Result<bool> {
        Ok(self.lock().sessions.remove(digest).is_some())
    }

    async fn replace_password(
        &self,
        user: UserId,
        hash: &PasswordHash,
        revoke_apps_at: Option<Timestamp>,
    ) -> Result<PasswordReplaced> {
        let mut g = self.lock();
        let u = g
            .users
            .get_mut(&user)
            .ok_or(Error::NotFound { what: "user" })?;
        u.password_hash = Some(hash.clone());
        let before = g.sessions.len();
        g.sessions.retain(|_, s| s.user_id != user);
        let sessions_ended = (before - g.sessions.len()) as u64;
        let revoked = match revoke_apps_at {
            Some(at) => g.revoke_where(at, |a| a.user_id == user),
            None => Vec::new(),
        };
        Ok(PasswordReplaced {
            sessions_ended,
            revoked,
        })
    }

    async fn mark_email_verified(&self, user: UserId, at: Timestamp) -> Result<()> {
        let mut g = self.lock();
        if !g.users.contains_key(&user) {
            return Err(Error::NotFound { what: "user" });
        }
        g.email_verified.entry(user).or_insert(at);
        Ok(())
    }

    async fn email_verified_at(&self, user: UserId) -> Result<Option<Timestamp>> {
        let g = self.lock();
        if !g.users.contains_key(&user) {
            return Err(Error::NotFound { what: "user" });
        }
        Ok(g.email_verified.get(&user).copied())
    }

    async fn insert_email_token(&self, token: &EmailToken) -> Result<()> {
        let mut g = self.lock();
        if !g.users.contains_key(&token.user_id) {
            return Err(Error::NotFound { what: "user" });
        }
        if g.email_tokens.contains_key(&token.digest) {
            return Err(Error::AlreadyExists {
                what: "email token",
            });
        }
        g.email_tokens
            .retain(|_, t| t.user_id != token.user_id || t.purpose != token.purpose);
        g.email_tokens.insert(token.digest, token.clone());
        Ok(())
    }

    async fn consume_email_token(
        &self,
        digest: &SecretDigest,
        purpose: EmailPurpose,
        now: Timestamp,
    ) -> Result<EmailToken> {
        let mut g = self.lock();
        let missing = Error::NotFound {
            what: "email token",
        };
        if g.email_tokens
            .get(digest)
            .is_none_or(|t| t.purpose != purpose)
        {
            return Err(missing);
        }
        let token = g.email_tokens.remove(digest).ok_or(missing)?;
        if now >= token.expires_at {
            return Err(Error::Expired);
        }
        Ok(token)
    }

    async fn rename_key(&self, id: KeyId, name: &Label) -> Result<StoredKey> {
        let mut g = self.lock();
        let key = g.keys.get_mut(&id).ok_or(Error::NotFound { what: "key" })?;
        key.name = name.clone();
        Ok(key.clone())
    }

    async fn delete_key(&self, id: KeyId) -> Result<StoredKey> {
        let mut g = self.lock();
        let key = g.keys.remove(&id).ok_or(Error::NotFound { what: "key" })?;
        let doomed: Vec<(AuthorizationId, KeyId)> = g
            .authorizations
            .values()
            .filter(|a| a.key_id == id || a.bunker_key_id == id)
            .map(|a| (a.id, a.bunker_key_id))
            .collect();
        for (auth, bunker) in &doomed {
            // Removed rather than revoked first: the feed entry is what readers see.
            g.authorizations.remove(auth);
            g.keys.remove(bunker);
            g.changed(Changed::Authorization(*auth));
            if *bunker != id {
                g.changed(Changed::Key(*bunker));
            }
        }
        g.changed(Changed::Key(id));
        let gone = |a: &AuthorizationId| doomed.iter().any(|(d, _)| d == a);
        g.tokens.retain(|_, t| !gone(&t.authorization_id));
        g.oauth_codes.retain(|_, c| !gone(&c.authorization_id));
        Ok(key)
    }

    async fn insert_key(&self, key: &StoredKey) -> Result<()> {
        let mut g = self.lock();
        if !g.tenants.contains_key(&key.tenant_id) {
            return Err(Error::NotFound { what: "tenant" });
        }
        if key.team.is_some_and(|t| !g.teams.contains_key(&t)) {
            return Err(Error::NotFound { what: "team" });
        }
        let taken = g
            .keys
            .values()
            .any(|k| k.id == key.id || (k.tenant_id == key.tenant_id && k.pubkey == key.pubkey));
        if taken {
            return Err(Error::AlreadyExists { what: "key" });
        }
        g.keys.insert(key.id, key.clone());
        Ok(())
    }

    async fn get_key(&self, id: KeyId) -> Result<StoredKey> {
        self.lock()
            .keys
            .get(&id)
            .cloned()
            .map_or_else(not_found("key"), Ok)
    }

    async fn list_keys(&self, tenant: TenantId, owner: Option<UserId>) -> Result<Vec<StoredKey>> {
        let g = self.lock();
        let it = g
            .keys
            .values()
            .filter(|k| k.tenant_id == tenant && owner.is_none_or(|o| k.owner == Some(o)))
            .cloned();
        Ok(sorted_by_created(it, |k| k.created_at))
    }

    async fn keys_not_wrapped_by(
        &self,
        current: &KekRef,
        after: Option<KeyId>,
        limit: u32,
    ) -> Result<Vec<StoredKey>> {
        let g = self.lock();
        let mut keys: Vec<StoredKey> = g
            .keys
            .values()
            .filter(|k| &k.envelope.wrapped_dek.kek != current && after.is_none_or(|a| k.id > a))
            .cloned()
            .collect();
        keys.sort_by_key(|k| k.id);
        keys.truncate(limit as usize);
        Ok(keys)
    }

    async fn master_keys_in_use(&self) -> Result<Vec<(KekRef, u64)>> {
        let g = self.lock();
        let mut used: Vec<(KekRef, u64)> = Vec::new();
        for k in g.keys.values() {
            let kek = &k.envelope.wrapped_dek.kek;
            match used.iter_mut().find(|(known, _)| known == kek) {
                Some((_, n)) => *n += 1,
                None => used.push((kek.clone(), 1)),
            }
        }
        Ok(used)
    }

    async fn replace_wrapped_dek(
        &self,
        id: KeyId,
        expected: &KekRef,
        new: &Wrapped,
    ) -> Result<bool> {
        let mut g = self.lock();
        let key = g.keys.get_mut(&id).ok_or(Error::NotFound { what: "key" })?;
        if &key.envelope.wrapped_dek.kek != expected {
            return Ok(false);
        }
        key.envelope.wrapped_dek = new.clone();
        Ok(true)
    }

    async fn replace_key_secret(
        &self,
        key: &StoredKey,
        at: Timestamp,
    ) -> Result<Vec<AuthorizationId>> {
        self.lock().replace_key_secret(key, at)
    }

    async fn create_team(&self, team: &Team, admin: UserId) -> Result<()> {
        self.lock().create_team(team, admin)
    }

    async fn get_team(&self, id: TeamId) -> Result<Team> {
        self.lock().team(id).cloned()
    }

    async fn list_teams(&self, user: UserId) -> Result<Vec<(Team, TeamRole)>> {
        Ok(self.lock().list_teams(user))
    }

    async fn team_role(&self, team: TeamId, user: UserId) -> Result<Option<TeamRole>> {
        Ok(self.lock().team_members.get(&(team, user)).map(|m| m.role))
    }

    async fn list_team_members(&self, team: TeamId) -> Result<Vec<TeamMember>> {
        Ok(self.lock().team_members_of(team))
    }

    async fn set_team_member(
        &self,
        team: TeamId,
        user: UserId,
        role: TeamRole,
    ) -> Result<TeamMember> {
        self.lock().set_team_member(team, user, role)
    }

    async fn remove_team_member(
        &self,
        team: TeamId,
        user: UserId,
        at: Timestamp,
    ) -> Result<Vec<AuthorizationId>> {
        self.lock().remove_team_member(team, user, at)
    }

    async fn list_team_keys(&self, team: TeamId) -> Result<Vec<StoredKey>> {
        Ok(self.lock().team_keys(team))
    }

    async fn list_team_policies(&self, team: TeamId) -> Result<Vec<Policy>> {
        Ok(self.lock().team_policies(team))
    }

    async fn list_team_authorizations(&self, team: TeamId) -> Result<Vec<Authorization>> {
        Ok(self.lock().team_authorizations(team))
    }

    async fn insert_policy(&self, policy: &Policy) -> Result<()> {
        let mut g = self.lock();
        if !g.tenants.contains_key(&policy.tenant_id) {
            return Err(Error::NotFound { what: "tenant" });
        }
        if policy.team.is_some_and(|t| !g.teams.contains_key(&t)) {
            return Err(Error::NotFound { what: "team" });
        }
        if g.policies.contains_key(&policy.id) {
            return Err(Error::AlreadyExists { what: "policy" });
        }
        g.policies.insert(policy.id, policy.clone());
        Ok(())
    }

    async fn get_policy(&self, id: PolicyId) -> Result<Policy> {
        self.lock()
            .policies
            .get(&id)
            .cloned()
            .map_or_else(not_found("policy"), Ok)
    }

    async fn list_policies(&self, tenant: TenantId, owner: Option<UserId>) -> Result<Vec<Policy>> {
        let g = self.lock();
        let mut list: Vec<Policy> = g
            .policies
            .values()
            .filter(|p| p.tenant_id == tenant && owner.is_none_or(|o| p.owner == Some(o)))
            .cloned()
            .collect();
        list.sort_by_key(|p| *p.id.as_uuid());
        Ok(list)
    }

    async fn delete_policy(&self, id: PolicyId) -> Result<()> {
        let mut g = self.lock();
        if g.authorizations.values().any(|a| a.policy_id == id) {
            return Err(Error::Conflict(
                "the policy is used by authorizations".into(),
            ));
        }
        g.policies
            .remove(&id)
            .map(|_| ())
            .ok_or(Error::NotFound { what: "policy" })
    }

    async fn update_policy(&self, policy: &Policy) -> Result<Policy> {
        let mut g = self.lock();
        let stored = g
            .policies
            .get_mut(&policy.id)
            .ok_or(Error::NotFound { what: "policy" })?;
        if stored.version != policy.version || stored.tenant_id != policy.tenant_id {
            return Err(Error::Conflict("policy was changed concurrently".into()));
        }
        stored.name = policy.name.clone();
        stored.permissions = policy.permissions.clone();
        stored.version += 1;
        let stored = stored.clone();
        g.changed(Changed::Policy(stored.id));
        Ok(stored)
    }

    async fn insert_authorization(&self, auth: &Authorization) -> Result<()> {
        let mut g = self.lock();
        for (what, ok) in [
            ("tenant", g.tenants.contains_key(&auth.tenant_id)),
            ("key", g.keys.contains_key(&auth.key_id)),
            ("key", g.keys.contains_key(&auth.bunker_key_id)),
            ("policy", g.policies.contains_key(&auth.policy_id)),
        ] {
            if !ok {
                return Err(Error::NotFound { what });
            }
        }
        let taken = g
            .authorizations
            .values()
            .any(|a| a.id == auth.id || a.bunker_pubkey == auth.bunker_pubkey);
        if taken {
            return Err(Error::AlreadyExists {
                what: "authorization",
            });
        }
        g.authorizations.insert(auth.id, auth.clone());
        g.changed(Changed::Authorization(auth.id));
        Ok(())
    }

    async fn get_authorization(&self, id: AuthorizationId) -> Result<Authorization> {
        self.lock()
            .authorizations
            .get(&id)
            .cloned()
            .map_or_else(not_found("authorization"), Ok)
    }

    async fn find_authorization_by_bunker(&self, bunker: &PublicKey) -> Result<Authorization> {
        self.lock()
            .authorizations
            .values()
            .find(|a| &a.bunker_pubkey == bunker)
            .cloned()
            .map_or_else(not_found("authorization"), Ok)
    }

    async fn list_authorizations(
        &self,
        tenant: TenantId,
        user: Option<UserId>,
    ) -> Result<Vec<Authorization>> {
        let g = self.lock();
        let it = g
            .authorizations
            .values()
            .filter(|a| a.tenant_id == tenant && user.is_none_or(|u| a.user_id == u))
            .cloned();
        Ok(sorted_by_created(it, |a| a.created_at))
    }

    async fn list_active_authorizations(
        &self,
        now: Timestamp,
        after: Option<AuthorizationId>,
        limit: u32,
    ) -> Result<Vec<Authorization>> {
        // Only the page is cloned: cloning every remaining row per page made paging
        // through N authorizations quadratic (8 s to start a bunker on 100k).
        let g = self.lock();
        let mut active: Vec<&Authorization> = g
            .authorizations
            .values()
            .filter(|a| a.check_active(now).is_ok() && after.is_none_or(|x| a.id > x))
            .collect();
        let limit = (limit as usize).min(active.len());
        if limit < active.len() {
            active.select_nth_unstable_by_key(limit, |a| a.id);
            active.truncate(limit);
        }
        active.sort_unstable_by_key(|a| a.id);
        Ok(active.into_iter().cloned().collect())
    }

    async fn revoke_authorization(
        &self,
        id: AuthorizationId,
        at: Timestamp,
    ) -> Result<Authorization> {
        let mut g = self.lock();
        let a = g.authorization_mut(id)?;
        let newly = a.revoked_at.is_none();
        if newly {
            a.revoked_at = Some(at);
            a.version += 1;
        }
        let a = a.clone();
        if newly {
            g.changed(Changed::Authorization(id));
        }
        Ok(a)
    }

    async fn redeem_connect_secret(
        &self,
        id: AuthorizationId,
        secret: &SecretDigest,
        client: PublicKey,
    ) -> Result<Authorization> {
        let mut g = self.lock();
        let a = g.authorization_mut(id)?;
        if a.has_client(&client) {
            return Ok(a.clone());
        }
        if a.connect_secret.as_ref() != Some(secret) {
            return Err(Error::Conflict(
                "connect secret is wrong or already used".into(),
            ));
        }
        a.connect_secret = None;
        a.client_pubkeys.push(client);
        a.version += 1;
        let a = a.clone();
        g.changed(Changed::Authorization(id));
        Ok(a)
    }

    async fn remove_client(&self, id: AuthorizationId, client: &PublicKey) -> Result<bool> {
        let mut g = self.lock();
        let a = g.authorization_mut(id)?;
        let before = a.client_pubkeys.len();
        a.client_pubkeys.retain(|c| c != client);
        let removed = a.client_pubkeys.len() != before;
        if removed {
            a.version += 1;
            g.changed(Changed::Authorization(id));
        }
        Ok(removed)
    }

    async fn try_consume_use(&self, id: AuthorizationId, max: u64) -> Result<bool> {
        let mut g = self.lock();
        let a = g.authorization_mut(id)?;
        if a.uses >= max {
            return Ok(false);
        }
        a.uses += 1;
        Ok(true)
    }

    async fn insert_token(&self, token: &ApiToken) -> Result<()> {
        let mut g = self.lock();
        if !g.authorizations.contains_key(&token.authorization_id) {
            return Err(Error::NotFound {
                what: "authorization",
            });
        }
        if g.tokens.contains_key(&token.digest) {
            return Err(Error::AlreadyExists { what: "token" });
        }
        g.tokens.insert(token.digest, token.clone());
        Ok(())
    }

    async fn find_token(&self, digest: &SecretDigest) -> Result<ApiToken> {
        self.lock()
            .tokens
            .get(digest)
            .cloned()
            .map_or_else(not_found("token"), Ok)
    }

    async fn insert_oauth_code(&self, code: &OAuthCode) -> Result<()> {
        let mut g = self.lock();
        if !g.authorizations.contains_key(&code.authorization_id) {
            return Err(Error::NotFound {
                what: "authorization",
            });
        }
        if g.oauth_codes.contains_key(&code.digest) {
            return Err(Error::AlreadyExists { what: "oauth code" });
        }
        g.oauth_codes.insert(code.digest, code.clone());
        Ok(())
    }

    async fn consume_oauth_code(&self, digest: &SecretDigest, now: Timestamp) -> Result<OAuthCode> {
        let code = self
            .lock()
            .oauth_codes
            .remove(digest)
            .ok_or(Error::NotFound { what: "oauth code" })?;
        if now >= code.expires_at {
            return Err(Error::Expired);
        }
        Ok(code)
    }

    async fn append_audit(&self, records: &[AuditRecord]) -> Result<()> {
        self.lock().audit.extend_from_slice(records);
        Ok(())
    }

    async fn list_audit(&self, filter: &AuditFilter) -> Result<Vec<AuditRecord>> {
        let g = self.lock();
        Ok(g.audit
            .iter()
            .rev()
            .filter(|r| {
                r.tenant_id == filter.tenant_id
                    && filter.key_id.is_none_or(|k| r.key_id == k)
                    && filter
                        .authorization_id
                        .is_none_or(|a| r.authorization_id == Some(a))
            })
            .take(filter.limit as usize)
            .cloned()
            .collect())
    }

    async fn changes_since(&self, after: u64, limit: u32) -> Result<Vec<Change>> {
        let g = self.lock();
        let start = g.changes.partition_point(|c| c.seq <= after);
        Ok(g.changes[start..]
            .iter()
            .take(limit as usize)
            .copied()
            .collect())
    }

    async fn latest_change(&self) -> Result<u64> {
        Ok(self.lock().changes.last().map_or(0, |c| c.seq))
    }

    async fn authorization_activity(&self, id: AuthorizationId) -> Result<Activity> {
        let g = self.lock();
        let mine = g.audit.iter().filter(|r| r.authorization_id == Some(id));
        let mut activity = Activity::default();
        for r in mine {
            activity.last_used_at = activity.last_used_at.max(Some(r.at));
            if r.action == AuditAction::Request(Method::SignEvent) && r.outcome == Outcome::Allowed
            {
                activity.signatures += 1;
            }
        }
        Ok(activity)
    }
}
