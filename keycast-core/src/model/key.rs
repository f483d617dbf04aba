//! Stored keys: one envelope row per secret.

use nostr::{PublicKey, SecretKey, Timestamp};

use crate::crypto::envelope::{Envelope, EnvelopeBinding};
use crate::ids::{KeyId, TeamId, TenantId, UserId};
use crate::model::names::Label;

/// What a stored key is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyKind {
    /// A user's Nostr identity key; apps sign with it.
    User,
    /// An authorization's bunker key; it only signs NIP-46 replies.
    Bunker,
}

impl KeyKind {
    /// Stable name for storage.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyKind::User => "user",
            KeyKind::Bunker => "bunker",
        }
    }

    /// Parses the storage name.
    pub fn parse(s: &str) -> crate::Result<Self> {
        match s {
            "user" => Ok(KeyKind::User),
            "bunker" => Ok(KeyKind::Bunker),
            _ => Err(crate::Error::invalid(
                "key kind",
                "expected 'user' or 'bunker'",
            )),
        }
    }
}

/// Who holds a key: whoever may use it and manage it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Holder {
    /// One account of the key's tenant (for a bunker key, its authorization's account).
    User(UserId),
    /// A team of the key's tenant: its members use it, its admins manage it.
    Team(TeamId),
    /// Nobody: a key of the service itself (see [`crate::Custody::ensure_key`]).
    Service,
}

impl Holder {
    /// The holding account, if one holds it.
    pub fn owner(self) -> Option<UserId> {
        match self {
            Holder::User(u) => Some(u),
            _ => None,
        }
    }

    /// The holding team, if one holds it.
    pub fn team(self) -> Option<TeamId> {
        match self {
            Holder::Team(t) => Some(t),
            _ => None,
        }
    }
}

/// A key to create ([`crate::Custody::create_key`]).
#[non_exhaustive]
pub struct NewKey {
    /// The tenant it belongs to.
    pub tenant_id: TenantId,
    /// Who holds it. A team holds user keys only.
    pub holder: Holder,
    /// What it is for.
    pub kind: KeyKind,
    /// Human label.
    pub label: Label,
    /// The secret to import; `None` generates one.
    pub secret: Option<SecretKey>,
}

impl NewKey {
    /// A key generated in custody.
    pub fn generate(tenant_id: TenantId, holder: Holder, kind: KeyKind, label: Label) -> Self {
        Self {
            tenant_id,
            holder,
            kind,
            label,
            secret: None,
        }
    }

    /// The same, with `secret` imported instead of generated (`None` keeps generating).
    #[must_use]
    pub fn with_secret(mut self, secret: impl Into<Option<SecretKey>>) -> Self {
        self.secret = secret.into();
        self
    }
}

impl std::fmt::Debug for NewKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewKey")
            .field("tenant_id", &self.tenant_id)
            .field("holder", &self.holder)
            .field("kind", &self.kind)
            .field("label", &self.label)
            .field("imported", &self.secret.is_some())
            .finish()
    }
}

/// An envelope row plus the metadata needed to find and check it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredKey {
    /// Identity; bound into the envelope.
    pub id: KeyId,
    /// Owning tenant; bound into the envelope.
    pub tenant_id: TenantId,
    /// The user who owns the key, if any (bunker keys have the authorization's user).
    pub owner: Option<UserId>,
    /// The team that holds the key, if any (then it has no `owner`).
    pub team: Option<TeamId>,
    /// What the key is for.
    pub kind: KeyKind,
    /// The public key; bound into the envelope and re-derived after every unwrap.
    pub pubkey: PublicKey,
    /// Human label.
    pub name: Label,
    /// The sealed secret.
    pub envelope: Envelope,
    /// Creation time.
    pub created_at: Timestamp,
}

impl StoredKey {
    /// Who holds it ([`StoredKey::owner`] or [`StoredKey::team`]; never both).
    pub fn holder(&self) -> Holder {
        match (self.owner, self.team) {
            (Some(owner), _) => Holder::User(owner),
            (None, Some(team)) => Holder::Team(team),
            (None, None) => Holder::Service,
        }
    }

    /// What this row's envelope is bound to.
    pub fn binding(&self) -> EnvelopeBinding {
        EnvelopeBinding {
            key_id: self.id,
            pubkey: self.pubkey,
            tenant_id: self.tenant_id,
        }
    }
}
