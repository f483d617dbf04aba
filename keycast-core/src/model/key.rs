//! Stored keys: one envelope row per secret.

use nostr::{PublicKey, Timestamp};

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
    /// What this row's envelope is bound to.
    pub fn binding(&self) -> EnvelopeBinding {
        EnvelopeBinding {
            key_id: self.id,
            pubkey: self.pubkey,
            tenant_id: self.tenant_id,
        }
    }
}
