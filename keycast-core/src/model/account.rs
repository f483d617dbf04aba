//! Tenants and users.

use nostr::Timestamp;

use crate::ids::{TenantId, UserId};
use crate::model::names::{Email, PasswordHash, TenantName, Username};

/// One domain or organisation served by a deployment. All data is scoped by tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tenant {
    /// Identity.
    pub id: TenantId,
    /// Unique slug.
    pub name: TenantName,
    /// Creation time.
    pub created_at: Timestamp,
}

impl Tenant {
    /// A new tenant with a fresh id.
    pub fn new(name: TenantName) -> Self {
        Self {
            id: TenantId::random(),
            name,
            created_at: Timestamp::now(),
        }
    }
}

/// A login account. Usernames are unique per tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// Identity.
    pub id: UserId,
    /// Owning tenant.
    pub tenant_id: TenantId,
    /// Unique within the tenant.
    pub username: Username,
    /// argon2id hash; `None` for accounts that log in another way.
    pub password_hash: Option<PasswordHash>,
    /// Login e-mail of accounts registered over HTTP; unique within the tenant.
    pub email: Option<Email>,
    /// Creation time.
    pub created_at: Timestamp,
}

impl User {
    /// A new user with a fresh id.
    pub fn new(
        tenant_id: TenantId,
        username: Username,
        password_hash: Option<PasswordHash>,
    ) -> Self {
        Self {
            id: UserId::random(),
            tenant_id,
            username,
            password_hash,
            email: None,
            created_at: Timestamp::now(),
        }
    }

    /// The same user with a login e-mail.
    pub fn with_email(mut self, email: Email) -> Self {
        self.email = Some(email);
        self
    }
}
