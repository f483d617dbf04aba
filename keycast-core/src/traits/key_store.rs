//! KeyStore: persistence for everything keycast keeps.

use std::fmt::Debug;

use async_trait::async_trait;
use nostr::{PublicKey, Timestamp};

use crate::crypto::secret::SecretDigest;
use crate::error::Result;
use crate::ids::{AuthorizationId, KeyId, PolicyId, TeamId, TenantId, UserId};
use crate::model::account::{Tenant, User};
use crate::model::audit::{Activity, AuditFilter, AuditRecord};
use crate::model::authorization::Authorization;
use crate::model::change::Change;
use crate::model::key::StoredKey;
use crate::model::names::{Email, Label, PasswordHash, TenantHost, TenantName, Username};
use crate::model::policy::Policy;
use crate::model::team::{Team, TeamMember, TeamRole};
use crate::model::token::{ApiToken, EmailPurpose, EmailToken, OAuthCode, Session};
use crate::traits::key_manager::{KekRef, Wrapped};

/// What [`KeyStore::replace_password`] ended.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PasswordReplaced {
    /// Sessions of the user that were deleted.
    pub sessions_ended: u64,
    /// Authorizations of the user that were revoked (none unless asked).
    pub revoked: Vec<AuthorizationId>,
}

/// Durable storage of tenants, users, envelope rows, authorizations, policies, API tokens
/// and the audit log. It is the authority for revocation.
///
/// Errors:
/// - [`crate::Error::NotFound`] when a looked-up record does not exist;
/// - [`crate::Error::AlreadyExists`] when an insert collides with a unique key (id,
///   username or e-mail within a tenant, tenant name, tenant host, key pubkey within a tenant, bunker pubkey,
///   token or code digest);
/// - [`crate::Error::InvalidInput`] when a value cannot be stored (e.g. a time beyond 2^63 s);
/// - [`crate::Error::Corrupt`] when a stored row cannot be decoded;
/// - [`crate::Error::Conflict`] when a precondition fails (stale version, used secret);
/// - [`crate::Error::Unavailable`] when the backing store cannot be reached.
///
/// A failed call changes nothing. Calls that touch several rows are atomic.
///
/// Concurrency: shared by every task of every instance. Each method is atomic on its own;
/// `redeem_connect_secret` and `try_consume_use` must stay correct under concurrent callers
/// on many instances (conditional updates, not read-modify-write).
#[async_trait]
pub trait KeyStore: Send + Sync + Debug + 'static {
    /// Inserts a tenant. Names are unique.
    async fn create_tenant(&self, tenant: &Tenant) -> Result<()>;
    /// Reads a tenant.
    async fn get_tenant(&self, id: TenantId) -> Result<Tenant>;
    /// Finds a tenant by name.
    async fn find_tenant(&self, name: &TenantName) -> Result<Tenant>;
    /// Every tenant, ordered by name.
    async fn list_tenants(&self) -> Result<Vec<Tenant>>;
    /// Serves `tenant` at `host`. A host belongs to at most one tenant: `AlreadyExists`
    /// when it is taken (by any tenant), `NotFound` when the tenant does not exist.
    async fn add_tenant_host(&self, host: &TenantHost, tenant: TenantId) -> Result<()>;
    /// Stops serving any tenant at `host`; returns whether it was mapped.
    async fn remove_tenant_host(&self, host: &TenantHost) -> Result<bool>;
    /// Every host mapping, ordered by host.
    async fn list_tenant_hosts(&self) -> Result<Vec<(TenantHost, TenantId)>>;

    /// Inserts a user. Usernames are unique per tenant.
    async fn create_user(&self, user: &User) -> Result<()>;
    /// Reads a user.
    async fn get_user(&self, id: UserId) -> Result<User>;
    /// Deletes a user that nothing refers to (no keys, sessions, policies, authorizations
    /// or codes): `Conflict` otherwise, `NotFound` when missing. Undoes a registration
    /// whose next step failed.
    async fn delete_user(&self, id: UserId) -> Result<()>;
    /// Finds a user by name within a tenant.
    async fn find_user(&self, tenant: TenantId, username: &Username) -> Result<User>;
    /// Finds a user by login e-mail within a tenant. E-mails are unique per tenant.
    async fn find_user_by_email(&self, tenant: TenantId, email: &Email) -> Result<User>;

    /// Stores a session by digest.
    async fn insert_session(&self, session: &Session) -> Result<()>;
    /// Looks a session up by digest (expired ones too; the caller checks `expires_at`).
    async fn find_session(&self, digest: &SecretDigest) -> Result<Session>;
    /// Deletes a session (logout); returns whether it existed.
    async fn delete_session(&self, digest: &SecretDigest) -> Result<bool>;
    /// Sets a user's password hash and ends all the user's sessions, in one step; with
    /// `revoke_apps_at`, also revokes at that time every authorization made for the user
    /// (on its own keys and on team keys) that is not revoked yet, in the same step (a
    /// reset can shut out whoever had the account's apps). Returns what ended.
    async fn replace_password(
        &self,
        user: UserId,
        hash: &PasswordHash,
        revoke_apps_at: Option<Timestamp>,
    ) -> Result<PasswordReplaced>;
    /// Records that the user proved their e-mail address at `at` (idempotent; the first
    /// time is kept).
    async fn mark_email_verified(&self, user: UserId, at: Timestamp) -> Result<()>;
    /// When the user proved their e-mail address, if they did.
    async fn email_verified_at(&self, user: UserId) -> Result<Option<Timestamp>>;

    /// Stores an e-mailed token by digest, and in the same transaction deletes the user's
    /// other tokens of the same purpose: at most one code per purpose is live, so a newer
    /// mail makes older ones useless. Concurrent inserts for one user and purpose leave
    /// exactly one. `AlreadyExists` (and nothing deleted) when the digest is taken.
    async fn insert_email_token(&self, token: &EmailToken) -> Result<()>;
    /// Redeems a token once: removes and returns it. `NotFound` when unknown, used or
    /// for another purpose (left unused then); `Expired` (and removed) at or after its
    /// `expires_at`.
    async fn consume_email_token(
        &self,
        digest: &SecretDigest,
        purpose: EmailPurpose,
        now: Timestamp,
    ) -> Result<EmailToken>;

    /// Inserts an envelope row.
    async fn insert_key(&self, key: &StoredKey) -> Result<()>;
    /// Reads an envelope row (the cold-load read).
    async fn get_key(&self, id: KeyId) -> Result<StoredKey>;
    /// Renames a key; returns the stored key.
    async fn rename_key(&self, id: KeyId, name: &Label) -> Result<StoredKey>;
    /// Deletes a key and everything that exists only to use it, in one transaction;
    /// returns the deleted row. Missing: [`crate::Error::NotFound`].
    ///
    /// Every authorization of the key (as its `key_id`, or as its `bunker_key_id` when a
    /// bunker key is deleted) first gets its version bumped (and `revoked_at` set if unset),
    /// so the change feed names each one, then it is deleted with its API tokens, OAuth
    /// codes, connected clients and its own bunker key. Policies (they belong to users),
    /// the audit log and the change feed are kept. A reader of the feed that reloads such
    /// an authorization gets [`crate::Error::NotFound`].
    async fn delete_key(&self, id: KeyId) -> Result<StoredKey>;
    /// Lists a tenant's keys, optionally of one owner, oldest first.
    async fn list_keys(&self, tenant: TenantId, owner: Option<UserId>) -> Result<Vec<StoredKey>>;
    /// Keys (all tenants) whose DEK is not wrapped under exactly `current`, in ascending id
    /// order, starting after `after`, at most `limit`. Master-key rotation pages through this.
    async fn keys_not_wrapped_by(
        &self,
        current: &KekRef,
        after: Option<KeyId>,
        limit: u32,
    ) -> Result<Vec<StoredKey>>;
    /// Every master key (KEK) that wraps a stored row, with how many rows it wraps (all
    /// tenants, any order). A server checks this at start, so it never runs, or generates
    /// a master key, over rows that none of its configured master keys can open.
    async fn master_keys_in_use(&self) -> Result<Vec<(KekRef, u64)>>;
    /// Gives the user key `key.id` a new secret: its pubkey and envelope become `key`'s
    /// (id, tenant, owner, team and name stay), and every authorization of the key is
    /// revoked at `at` (version bumped), in one transaction. Returns the authorizations it
    /// revoked. The change feed names the key, so every process drops the old secret.
    /// Missing (or another tenant's, or not a user key): [`crate::Error::NotFound`]; the new
    /// pubkey already stored in the tenant: [`crate::Error::AlreadyExists`].
    async fn replace_key_secret(
        &self,
        key: &StoredKey,
        at: Timestamp,
    ) -> Result<Vec<AuthorizationId>>;
    /// Replaces a key's wrapped DEK only if it is still wrapped under `expected`
    /// (compare-and-set). Returns whether it replaced; the secret ciphertext is untouched.
    async fn replace_wrapped_dek(
        &self,
        id: KeyId,
        expected: &KekRef,
        new: &Wrapped,
    ) -> Result<bool>;

    /// Inserts a policy.
    async fn insert_policy(&self, policy: &Policy) -> Result<()>;
    /// Reads a policy.
    async fn get_policy(&self, id: PolicyId) -> Result<Policy>;
    /// Lists a tenant's policies, optionally only those `owner` made, in id order.
    async fn list_policies(&self, tenant: TenantId, owner: Option<UserId>) -> Result<Vec<Policy>>;
    /// Deletes a policy no authorization uses; one in use is [`crate::Error::Conflict`].
    async fn delete_policy(&self, id: PolicyId) -> Result<()>;
    /// Replaces a policy's name and permissions if `policy.version` is the stored version;
    /// returns the stored policy with its version bumped. Otherwise [`crate::Error::Conflict`].
    async fn update_policy(&self, policy: &Policy) -> Result<Policy>;

    /// Creates `team` with `admin` (an account of its tenant) as its first admin, in one
    /// transaction. Its name already used in the tenant: [`crate::Error::AlreadyExists`].
    async fn create_team(&self, team: &Team, admin: UserId) -> Result<()>;
    /// Reads a team.
    async fn get_team(&self, id: TeamId) -> Result<Team>;
    /// The teams `user` belongs to, with its role in each, by name.
    async fn list_teams(&self, user: UserId) -> Result<Vec<(Team, TeamRole)>>;
    /// `user`'s role in `team`; `None` when it is not a member.
    async fn team_role(&self, team: TeamId, user: UserId) -> Result<Option<TeamRole>>;
    /// The members of `team`, longest-standing first.
    async fn list_team_members(&self, team: TeamId) -> Result<Vec<TeamMember>>;
    /// Adds `user` to `team` as `role`, or changes its role. A user of another tenant:
    /// [`crate::Error::NotFound`]; a change that leaves the team without an admin:
    /// [`crate::Error::Conflict`]. Concurrent changes to one team are serialised.
    async fn set_team_member(
        &self,
        team: TeamId,
        user: UserId,
        role: TeamRole,
    ) -> Result<TeamMember>;
    /// Removes `user` from `team` and revokes at `at` every authorization made for it on
    /// the team's keys, in one transaction; returns those it revoked. Not a member:
    /// [`crate::Error::NotFound`]; the last admin: [`crate::Error::Conflict`].
    async fn remove_team_member(
        &self,
        team: TeamId,
        user: UserId,
        at: Timestamp,
    ) -> Result<Vec<AuthorizationId>>;
    /// The team's keys, oldest first.
    async fn list_team_keys(&self, team: TeamId) -> Result<Vec<StoredKey>>;
    /// The team's policies, in id order.
    async fn list_team_policies(&self, team: TeamId) -> Result<Vec<Policy>>;
    /// Every authorization on the team's keys, oldest first, revoked ones included.
    async fn list_team_authorizations(&self, team: TeamId) -> Result<Vec<Authorization>>;

    /// Inserts an authorization. Its bunker pubkey is unique.
    async fn insert_authorization(&self, auth: &Authorization) -> Result<()>;
    /// Reads an authorization.
    async fn get_authorization(&self, id: AuthorizationId) -> Result<Authorization>;
    /// Finds the authorization whose bunker key is `bunker` (the NIP-46 lookup).
    async fn find_authorization_by_bunker(&self, bunker: &PublicKey) -> Result<Authorization>;
    /// Lists a tenant's authorizations, optionally of one user, oldest first.
    async fn list_authorizations(
        &self,
        tenant: TenantId,
        user: Option<UserId>,
    ) -> Result<Vec<Authorization>>;
    /// Authorizations neither revoked nor expired at `now`, in ascending id order, starting
    /// after `after`, at most `limit` (NIP-46 subscriptions page through every one).
    async fn list_active_authorizations(
        &self,
        now: Timestamp,
        after: Option<AuthorizationId>,
        limit: u32,
    ) -> Result<Vec<Authorization>>;
    /// Marks revoked at `at` and bumps the version. Revoking twice keeps the first time.
    async fn revoke_authorization(
        &self,
        id: AuthorizationId,
        at: Timestamp,
    ) -> Result<Authorization>;
    /// [`Self::revoke_authorization`] only if `id` is `user`'s in `tenant`; any other
    /// authorization is [`crate::Error::NotFound`] and nothing changes. Ownership never
    /// changes, so reading it first is safe; a store may check it in the write itself.
    async fn revoke_authorization_of(
        &self,
        tenant: TenantId,
        user: UserId,
        id: AuthorizationId,
        at: Timestamp,
    ) -> Result<Authorization> {
        let a = self.get_authorization(id).await?;
        if a.tenant_id != tenant || a.user_id != user {
            return Err(crate::Error::NotFound {
                what: "authorization",
            });
        }
        self.revoke_authorization(id, at).await
    }
    /// Connects `client`. If `client` is already connected this succeeds and changes nothing
    /// (reconnects are idempotent). Otherwise `secret` must match the unredeemed connect
    /// secret, which is then cleared (single use); a mismatch or used secret is
    /// [`crate::Error::Conflict`].
    async fn redeem_connect_secret(
        &self,
        id: AuthorizationId,
        secret: &SecretDigest,
        client: PublicKey,
    ) -> Result<Authorization>;
    /// Disconnects `client` (NIP-46 `logout`). Returns whether it was connected.
    async fn remove_client(&self, id: AuthorizationId, client: &PublicKey) -> Result<bool>;
    /// Atomically reserves one use if fewer than `max` were used; returns whether it did.
    async fn try_consume_use(&self, id: AuthorizationId, max: u64) -> Result<bool>;

    /// Stores an API token by digest.
    async fn insert_token(&self, token: &ApiToken) -> Result<()>;
    /// Looks a token up by digest.
    async fn find_token(&self, digest: &SecretDigest) -> Result<ApiToken>;

    /// Stores an OAuth authorization code by digest.
    async fn insert_oauth_code(&self, code: &OAuthCode) -> Result<()>;
    /// Takes a code: returns it and deletes it in one atomic step, so of many concurrent
    /// callers exactly one gets it. Unknown or already used: [`crate::Error::NotFound`].
    /// Expired at `now`: [`crate::Error::Expired`] (and the code is gone).
    async fn consume_oauth_code(&self, digest: &SecretDigest, now: Timestamp) -> Result<OAuthCode>;

    /// Entries of the change feed after `after`, in `seq` order, at most `limit`. Every
    /// write that changes an authorization (insert, revoke, connect, logout) or a policy
    /// appends one in the same transaction; so does deleting its key ([`Self::delete_key`]).
    async fn changes_since(&self, after: u64, limit: u32) -> Result<Vec<Change>>;
    /// The highest `seq` in the feed (0 when empty): where a new reader starts.
    async fn latest_change(&self) -> Result<u64>;

    /// Appends audit records, all or none.
    async fn append_audit(&self, records: &[AuditRecord]) -> Result<()>;
    /// Reads audit records, newest first.
    async fn list_audit(&self, filter: &AuditFilter) -> Result<Vec<AuditRecord>>;
    /// Last activity and signature count of an authorization, from the audit log (so the
    /// signing path never writes an activity column). Unused: `Activity::default()`.
    async fn authorization_activity(&self, id: AuthorizationId) -> Result<Activity>;
}
