//! The append-only audit log: one record per custody call.

use nostr::{EventId, Timestamp};

use crate::ids::{AuthorizationId, KeyId, TenantId, UserId};
use crate::model::request::Method;

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
    /// Which operation.
    pub method: Method,
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
