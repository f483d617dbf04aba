//! The append-only audit log: one record per custody call.

use nostr::{EventId, Timestamp};

use crate::ids::{AuthorizationId, KeyId, TenantId, UserId};
use crate::model::request::Method;

/// What an audit record is about: a request to use the key (through an authorization or by
/// its owner), or an action on the key itself that only its owner takes through the
/// engine's admin calls and that no request can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum AuditAction {
    /// A custody request.
    Request(Method),
    /// `export_key`: the owner took the secret out ([`crate::Custody::danger_export_nsec`]
    /// and the other exports).
    ExportKey,
    /// `delete_key`: the key and its authorizations were deleted.
    DeleteKey,
    /// `replace_key`: the key got a new secret and its authorizations were revoked.
    ReplaceKey,
}

impl AuditAction {
    /// The stored name: a request's NIP-46 method name, or the action's.
    pub fn as_str(self) -> &'static str {
        match self {
            AuditAction::Request(m) => m.as_str(),
            AuditAction::ExportKey => "export_key",
            AuditAction::DeleteKey => "delete_key",
            AuditAction::ReplaceKey => "replace_key",
        }
    }

    /// Reads a stored name.
    pub fn parse(s: &str) -> crate::error::Result<Self> {
        Ok(match s {
            "export_key" => AuditAction::ExportKey,
            "delete_key" => AuditAction::DeleteKey,
            "replace_key" => AuditAction::ReplaceKey,
            other => AuditAction::Request(Method::parse(other)?),
        })
    }
}

impl From<Method> for AuditAction {
    fn from(m: Method) -> Self {
        AuditAction::Request(m)
    }
}

/// How a call ended.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Outcome {
    /// Authorized and performed.
    Allowed,
    /// Refused by the authorizer, revocation or expiry; the reason is recorded.
    Denied(String),
    /// Waiting for a human approval.
    NeedsApproval,
    /// Authorized but failed (bad ciphertext, key mismatch, ...); the error kind is recorded.
    Failed(String),
}

impl Outcome {
    /// Short stable name for storage and metrics.
    pub fn as_str(&self) -> &'static str {
        match self {
            Outcome::Allowed => "allowed",
            Outcome::Denied(_) => "denied",
            Outcome::NeedsApproval => "needs_approval",
            Outcome::Failed(_) => "failed",
        }
    }

    /// The recorded reason, if any.
    pub fn detail(&self) -> Option<&str> {
        match self {
            Outcome::Denied(r) | Outcome::Failed(r) => Some(r),
            Outcome::Allowed | Outcome::NeedsApproval => None,
        }
    }
}

/// Who did what with which key, and how it ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    /// When.
    pub at: Timestamp,
    /// Tenant of the key.
    pub tenant_id: TenantId,
    /// The user acting or owning the authorization.
    pub user_id: Option<UserId>,
    /// Which key.
    pub key_id: KeyId,
    /// Through which authorization (`None` for owner calls).
    pub authorization_id: Option<AuthorizationId>,
    /// What happened: a request answered, or an owner's action on the key.
    pub action: AuditAction,
    /// Kind of the signed event.
    pub event_kind: Option<u16>,
    /// Id of the signed event.
    pub event_id: Option<EventId>,
    /// The decision.
    pub outcome: Outcome,
}

/// Which audit records to list, newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditFilter {
    /// Tenant to read.
    pub tenant_id: TenantId,
    /// Only this key.
    pub key_id: Option<KeyId>,
    /// Only this authorization.
    pub authorization_id: Option<AuthorizationId>,
    /// At most this many.
    pub limit: u32,
}

/// What an authorization has been used for, derived from the audit log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Activity {
    /// Time of the latest audited call through it, allowed or not.
    pub last_used_at: Option<Timestamp>,
    /// Events signed through it (allowed `sign_event` calls).
    pub signatures: u64,
}
