//! Row shapes shared by both dialects, and their conversion to and from domain types.
//!
//! Columns use types both drivers map the same way: UUID, bytes, text and 64-bit integers.
//! Every decode is checked; a row that does not decode is `Error::Corrupt`, never a panic.

use keycast_core::nostr::{EventId, PublicKey, RelayUrl, Timestamp};
use keycast_core::{
    ApiToken, AuditAction, AuditRecord, Authorization, AuthorizationId, Envelope, Error, KekRef,
    KeyId, KeyKind, Label, OAuthCode, Outcome, PasswordHash, Permission, Policy, PolicyId, Result,
    SecretDigest, StoredKey, Team, TeamId, TeamMember, TeamRole, Tenant, TenantId, TenantName,
    User, UserId, Username, Wrapped,
};
use uuid::Uuid;

fn corrupt(what: &str) -> Error {
    Error::Corrupt(format!("stored {what} is invalid"))
}

/// Unix seconds to the signed column type; refuses times past 2^63.
pub(crate) fn ts(t: Timestamp) -> Result<i64> {
    i64::try_from(t.as_secs()).map_err(|_| Error::invalid("time", "beyond 2^63 seconds"))
}

pub(crate) fn opt_ts(t: Option<Timestamp>) -> Result<Option<i64>> {
    t.map(ts).transpose()
}

pub(crate) fn count(n: u64, what: &'static str) -> Result<i64> {
    i64::try_from(n).map_err(|_| Error::invalid(what, "beyond 2^63"))
}

pub(crate) fn from_ts(v: i64) -> Result<Timestamp> {
    u64::try_from(v)
        .map(Timestamp::from)
        .map_err(|_| corrupt("time"))
}

fn from_count(v: i64, what: &str) -> Result<u64> {
    u64::try_from(v).map_err(|_| corrupt(what))
}

fn pubkey(bytes: &[u8]) -> Result<PublicKey> {
    let pk = PublicKey::from_slice(bytes).map_err(|_| corrupt("pubkey"))?;
    pk.xonly().map_err(|_| corrupt("pubkey"))?;
    Ok(pk)
}

fn digest(bytes: &[u8]) -> Result<SecretDigest> {
    SecretDigest::from_slice(bytes).map_err(|_| corrupt("digest"))
}

pub(crate) fn relays_json(relays: &[RelayUrl]) -> String {
    serde_json::Value::from(
        relays
            .iter()
            .map(|r| r.as_str().to_owned())
            .collect::<Vec<_>>(),
    )
    .to_string()
}

fn relays(json: &str) -> Result<Vec<RelayUrl>> {
    let list: Vec<String> = serde_json::from_str(json).map_err(|_| corrupt("relay list"))?;
    list.iter()
        .map(|r| RelayUrl::parse(r).map_err(|_| corrupt("relay url")))
        .collect()
}

pub(crate) fn permissions_json(perms: &[Permission]) -> Result<String> {
    Ok(serde_json::Value::from(
        perms
            .iter()
            .map(Permission::to_stored_value)
            .collect::<Vec<_>>(),
    )
    .to_string())
}

/// Decodes permissions one by one; anything unreadable becomes `Unrecognized` (denies).
fn permissions(json: &str) -> Vec<Permission> {
    match serde_json::from_str::<Vec<serde_json::Value>>(json) {
        Ok(values) => values
            .iter()
            .map(|v| Permission::from_stored_json(&v.to_string()))
            .collect(),
        Err(_) => vec![Permission::from_stored_json(json)],
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct TenantRow {
    id: Uuid,
    name: String,
    created_at: i64,
}

impl TryFrom<TenantRow> for Tenant {
    type Error = Error;
    fn try_from(r: TenantRow) -> Result<Self> {
        Ok(Tenant {
            id: TenantId::from_uuid(r.id),
            name: TenantName::parse(&r.name).map_err(|_| corrupt("tenant name"))?,
            created_at: from_ts(r.created_at)?,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct UserRow {
    id: Uuid,
    tenant_id: Uuid,
    username: String,
    password_hash: Option<String>,
    email: Option<String>,
    created_at: i64,
}

impl TryFrom<UserRow> for User {
    type Error = Error;
    fn try_from(r: UserRow) -> Result<Self> {
        Ok(User {
            id: UserId::from_uuid(r.id),
            tenant_id: TenantId::from_uuid(r.tenant_id),
            username: Username::parse(&r.username).map_err(|_| corrupt("username"))?,
            password_hash: r
                .password_hash
                .map(|h| PasswordHash::parse(&h).map_err(|_| corrupt("password hash")))
                .transpose()?,
            email: r
                .email
                .map(|e| keycast_core::Email::parse(&e).map_err(|_| corrupt("email")))
                .transpose()?,
            created_at: from_ts(r.created_at)?,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct SessionRow {
    digest: Vec<u8>,
    tenant_id: Uuid,
    user_id: Uuid,
    expires_at: i64,
    created_at: i64,
}

impl TryFrom<SessionRow> for keycast_core::Session {
    type Error = Error;
    fn try_from(r: SessionRow) -> Result<Self> {
        Ok(Self {
            digest: digest(&r.digest)?,
            tenant_id: TenantId::from_uuid(r.tenant_id),
            user_id: UserId::from_uuid(r.user_id),
            expires_at: from_ts(r.expires_at)?,
            created_at: from_ts(r.created_at)?,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct EmailTokenRow {
    digest: Vec<u8>,
    tenant_id: Uuid,
    user_id: Uuid,
    purpose: String,
    expires_at: i64,
    created_at: i64,
}

impl TryFrom<EmailTokenRow> for keycast_core::EmailToken {
    type Error = Error;
    fn try_from(r: EmailTokenRow) -> Result<Self> {
        Ok(Self {
            digest: digest(&r.digest)?,
            tenant_id: TenantId::from_uuid(r.tenant_id),
            user_id: UserId::from_uuid(r.user_id),
            purpose: keycast_core::EmailPurpose::parse(&r.purpose)
                .ok_or_else(|| corrupt("e-mail token purpose"))?,
            expires_at: from_ts(r.expires_at)?,
            created_at: from_ts(r.created_at)?,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct KeyRow {
    id: Uuid,
    tenant_id: Uuid,
    owner_id: Option<Uuid>,
    team_id: Option<Uuid>,
    kind: String,
    pubkey: Vec<u8>,
    name: String,
    format_version: i64,
    kek_provider: String,
    kek_key_id: String,
    kek_version: i64,
    wrapped_dek: Vec<u8>,
    nonce: Vec<u8>,
    ciphertext: Vec<u8>,
    created_at: i64,
}

impl TryFrom<KeyRow> for StoredKey {
    type Error = Error;
    fn try_from(r: KeyRow) -> Result<Self> {
        Ok(StoredKey {
            id: KeyId::from_uuid(r.id),
            tenant_id: TenantId::from_uuid(r.tenant_id),
            owner: r.owner_id.map(UserId::from_uuid),
            team: r.team_id.map(TeamId::from_uuid),
            kind: KeyKind::parse(&r.kind).map_err(|_| corrupt("key kind"))?,
            pubkey: pubkey(&r.pubkey)?,
            name: Label::parse(&r.name).map_err(|_| corrupt("key name"))?,
            envelope: Envelope {
                format_version: u16::try_from(r.format_version)
                    .map_err(|_| corrupt("format version"))?,
                wrapped_dek: Wrapped {
                    kek: KekRef {
                        provider: r.kek_provider,
                        key_id: r.kek_key_id,
                        version: u32::try_from(r.kek_version)
                            .map_err(|_| corrupt("kek version"))?,
                    },
                    blob: r.wrapped_dek,
                },
                nonce: r
                    .nonce
                    .as_slice()
                    .try_into()
                    .map_err(|_| corrupt("nonce"))?,
                ciphertext: r.ciphertext,
            },
            created_at: from_ts(r.created_at)?,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct TeamRow {
    id: Uuid,
    tenant_id: Uuid,
    name: String,
    created_at: i64,
}

impl TryFrom<TeamRow> for Team {
    type Error = Error;
    fn try_from(r: TeamRow) -> Result<Self> {
        Ok(Team {
            id: TeamId::from_uuid(r.id),
            tenant_id: TenantId::from_uuid(r.tenant_id),
            name: Label::parse(&r.name).map_err(|_| corrupt("team name"))?,
            created_at: from_ts(r.created_at)?,
        })
    }
}

/// A team with one account's role in it (`list_teams`).
#[derive(sqlx::FromRow)]
pub(crate) struct TeamWithRoleRow {
    #[sqlx(flatten)]
    team: TeamRow,
    role: String,
}

impl TryFrom<TeamWithRoleRow> for (Team, TeamRole) {
    type Error = Error;
    fn try_from(r: TeamWithRoleRow) -> Result<Self> {
        let role = TeamRole::parse(&r.role).map_err(|_| corrupt("team role"))?;
        Ok((r.team.try_into()?, role))
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct TeamMemberRow {
    team_id: Uuid,
    user_id: Uuid,
    role: String,
    added_at: i64,
}

impl TryFrom<TeamMemberRow> for TeamMember {
    type Error = Error;
    fn try_from(r: TeamMemberRow) -> Result<Self> {
        Ok(TeamMember {
            team_id: TeamId::from_uuid(r.team_id),
            user_id: UserId::from_uuid(r.user_id),
            role: TeamRole::parse(&r.role).map_err(|_| corrupt("team role"))?,
            added_at: from_ts(r.added_at)?,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct PolicyRow {
    id: Uuid,
    tenant_id: Uuid,
    owner_id: Option<Uuid>,
    team_id: Option<Uuid>,
    name: String,
    permissions: String,
    version: i64,
}

impl TryFrom<PolicyRow> for Policy {
    type Error = Error;
    fn try_from(r: PolicyRow) -> Result<Self> {
        Ok(Policy {
            id: PolicyId::from_uuid(r.id),
            tenant_id: TenantId::from_uuid(r.tenant_id),
            owner: r.owner_id.map(UserId::from_uuid),
            team: r.team_id.map(TeamId::from_uuid),
            name: Label::parse(&r.name).map_err(|_| corrupt("policy name"))?,
            permissions: permissions(&r.permissions),
            version: from_count(r.version, "policy version")?,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct AuthorizationRow {
    pub(crate) id: Uuid,
    tenant_id: Uuid,
    user_id: Uuid,
    key_id: Uuid,
    bunker_key_id: Uuid,
    bunker_pubkey: Vec<u8>,
    connect_secret: Option<Vec<u8>>,
    relays: String,
    policy_id: Uuid,
    label: String,
    expires_at: Option<i64>,
    revoked_at: Option<i64>,
    uses: i64,
    version: i64,
    created_at: i64,
}

/// One row of an authorization left-joined with its clients: the authorization's columns
/// and one client (none when it has no clients).
#[derive(sqlx::FromRow)]
pub(crate) struct AuthorizationClientRow {
    #[sqlx(flatten)]
    pub(crate) authorization: AuthorizationRow,
    pub(crate) client_pubkey: Option<Vec<u8>>,
}

impl AuthorizationClientRow {
    /// The authorization of `rows` (all of one authorization, in connect order);
    /// `NotFound` when there are none.
    pub(crate) fn collect(rows: Vec<Self>) -> Result<Authorization> {
        let mut clients = Vec::with_capacity(rows.len());
        let mut authorization = None;
        for row in rows {
            if let Some(client_pubkey) = row.client_pubkey {
                clients.push(ClientRow {
                    authorization_id: row.authorization.id,
                    client_pubkey,
                });
            }
            authorization.get_or_insert(row.authorization);
        }
        authorization
            .ok_or(keycast_core::Error::NotFound {
                what: "authorization",
            })?
            .into_domain(&clients)
    }
}

/// An authorization row with its clients aggregated into one column (comma-separated
/// hex public keys in connect order; `NULL` when it has none).
#[derive(sqlx::FromRow)]
pub(crate) struct AuthorizationClientsRow {
    #[sqlx(flatten)]
    authorization: AuthorizationRow,
    clients_hex: Option<String>,
}

impl AuthorizationClientsRow {
    pub(crate) fn into_domain(self) -> Result<Authorization> {
        let clients = self
            .clients_hex
            .as_deref()
            .unwrap_or_default()
            .split(',')
            .filter(|h| !h.is_empty())
            .map(|h| {
                let pk = PublicKey::from_hex(h).map_err(|_| corrupt("pubkey"))?;
                Ok(ClientRow {
                    authorization_id: self.authorization.id,
                    client_pubkey: pk.to_bytes().to_vec(),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        self.authorization.into_domain(&clients)
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct ClientRow {
    pub(crate) authorization_id: Uuid,
    pub(crate) client_pubkey: Vec<u8>,
}

impl AuthorizationRow {
    /// Builds the authorization with its connected clients (already in connect order).
    pub(crate) fn into_domain(self, clients: &[ClientRow]) -> Result<Authorization> {
        Ok(Authorization {
            id: AuthorizationId::from_uuid(self.id),
            tenant_id: TenantId::from_uuid(self.tenant_id),
            user_id: UserId::from_uuid(self.user_id),
            key_id: KeyId::from_uuid(self.key_id),
            bunker_key_id: KeyId::from_uuid(self.bunker_key_id),
            bunker_pubkey: pubkey(&self.bunker_pubkey)?,
            connect_secret: self.connect_secret.as_deref().map(digest).transpose()?,
            relays: relays(&self.relays)?,
            policy_id: PolicyId::from_uuid(self.policy_id),
            label: Label::parse(&self.label).map_err(|_| corrupt("authorization label"))?,
            expires_at: self.expires_at.map(from_ts).transpose()?,
            revoked_at: self.revoked_at.map(from_ts).transpose()?,
            client_pubkeys: clients
                .iter()
                .filter(|c| c.authorization_id == self.id)
                .map(|c| pubkey(&c.client_pubkey))
                .collect::<Result<_>>()?,
            uses: from_count(self.uses, "use count")?,
            version: from_count(self.version, "authorization version")?,
            created_at: from_ts(self.created_at)?,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct TokenRow {
    digest: Vec<u8>,
    tenant_id: Uuid,
    authorization_id: Uuid,
    expires_at: Option<i64>,
    created_at: i64,
}

impl TryFrom<TokenRow> for ApiToken {
    type Error = Error;
    fn try_from(r: TokenRow) -> Result<Self> {
        Ok(ApiToken {
            digest: digest(&r.digest)?,
            tenant_id: TenantId::from_uuid(r.tenant_id),
            authorization_id: AuthorizationId::from_uuid(r.authorization_id),
            expires_at: r.expires_at.map(from_ts).transpose()?,
            created_at: from_ts(r.created_at)?,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct OAuthCodeRow {
    digest: Vec<u8>,
    tenant_id: Uuid,
    user_id: Uuid,
    authorization_id: Uuid,
    client_id: String,
    redirect_uri: String,
    code_challenge: String,
    expires_at: i64,
    created_at: i64,
}

impl TryFrom<OAuthCodeRow> for OAuthCode {
    type Error = Error;
    fn try_from(r: OAuthCodeRow) -> Result<Self> {
        Ok(OAuthCode {
            digest: digest(&r.digest)?,
            tenant_id: TenantId::from_uuid(r.tenant_id),
            user_id: UserId::from_uuid(r.user_id),
            authorization_id: AuthorizationId::from_uuid(r.authorization_id),
            client_id: r.client_id,
            redirect_uri: r.redirect_uri,
            code_challenge: r.code_challenge,
            expires_at: from_ts(r.expires_at)?,
            created_at: from_ts(r.created_at)?,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct ChangeRow {
    seq: i64,
    entity: String,
    entity_id: Uuid,
}

impl TryFrom<ChangeRow> for keycast_core::Change {
    type Error = Error;

    fn try_from(r: ChangeRow) -> Result<Self> {
        use keycast_core::{AuthorizationId, Changed, PolicyId};
        let what = match r.entity.as_str() {
            "authorization" => Changed::Authorization(AuthorizationId::from_uuid(r.entity_id)),
            "policy" => Changed::Policy(PolicyId::from_uuid(r.entity_id)),
            "key" => Changed::Key(KeyId::from_uuid(r.entity_id)),
            _ => return Err(corrupt("change entity")),
        };
        let seq = u64::try_from(r.seq).map_err(|_| corrupt("change seq"))?;
        Ok(Self { seq, what })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct AuditRow {
    at: i64,
    tenant_id: Uuid,
    user_id: Option<Uuid>,
    key_id: Uuid,
    authorization_id: Option<Uuid>,
    method: String,
    event_kind: Option<i64>,
    event_id: Option<Vec<u8>>,
    outcome: String,
    detail: Option<String>,
}

pub(crate) fn activity(last_at: Option<i64>, signatures: i64) -> Result<keycast_core::Activity> {
    Ok(keycast_core::Activity {
        last_used_at: last_at.map(from_ts).transpose()?,
        signatures: from_count(signatures, "signature count")?,
    })
}

pub(crate) fn outcome_parts(o: &Outcome) -> (&'static str, Option<&str>) {
    (o.as_str(), o.detail())
}

impl TryFrom<AuditRow> for AuditRecord {
    type Error = Error;
    fn try_from(r: AuditRow) -> Result<Self> {
        let detail = r.detail.unwrap_or_default();
        Ok(AuditRecord {
            at: from_ts(r.at)?,
            tenant_id: TenantId::from_uuid(r.tenant_id),
            user_id: r.user_id.map(UserId::from_uuid),
            key_id: KeyId::from_uuid(r.key_id),
            authorization_id: r.authorization_id.map(AuthorizationId::from_uuid),
            action: AuditAction::parse(&r.method).map_err(|_| corrupt("audit method"))?,
            event_kind: r
                .event_kind
                .map(|k| u16::try_from(k).map_err(|_| corrupt("event kind")))
                .transpose()?,
            event_id: r
                .event_id
                .map(|id| EventId::from_slice(&id).map_err(|_| corrupt("event id")))
                .transpose()?,
            outcome: match r.outcome.as_str() {
                "allowed" => Outcome::Allowed,
                "denied" => Outcome::Denied(detail),
                "needs_approval" => Outcome::NeedsApproval,
                "failed" => Outcome::Failed(detail),
                _ => return Err(corrupt("audit outcome")),
            },
        })
    }
}
