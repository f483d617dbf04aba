//! Bearer tokens for HTTP RPC, account sessions and OAuth authorization codes. Only
//! digests are stored.

use nostr::Timestamp;

use crate::crypto::secret::SecretDigest;
use crate::ids::{AuthorizationId, TenantId, UserId};

/// An API token that acts through one authorization.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiToken {
    /// SHA-256 of the bearer secret; the lookup key.
    pub digest: SecretDigest,
    /// Owning tenant.
    pub tenant_id: TenantId,
    /// The authorization this token acts through.
    pub authorization_id: AuthorizationId,
    /// After this instant the token is refused.
    pub expires_at: Option<Timestamp>,
    /// Creation time.
    pub created_at: Timestamp,
}

/// A logged-in account's session, found by the digest of its bearer token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// SHA-256 of the session token; the lookup key.
    pub digest: SecretDigest,
    /// The account's tenant.
    pub tenant_id: TenantId,
    /// The account.
    pub user_id: UserId,
    /// The session is refused at or after this instant.
    pub expires_at: Timestamp,
    /// Login time.
    pub created_at: Timestamp,
}

/// A single-use OAuth 2.0 authorization code with its PKCE challenge (RFC 7636, S256).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthCode {
    /// SHA-256 of the code; the lookup key.
    pub digest: SecretDigest,
    /// Owning tenant.
    pub tenant_id: TenantId,
    /// The user who consented.
    pub user_id: UserId,
    /// The authorization the code grants a token for.
    pub authorization_id: AuthorizationId,
    /// The OAuth client id.
    pub client_id: String,
    /// Must match the redirect URI of the token request exactly.
    pub redirect_uri: String,
    /// BASE64URL(SHA-256(code_verifier)), 43 characters.
    pub code_challenge: String,
    /// The code is refused at or after this instant.
    pub expires_at: Timestamp,
    /// Creation time.
    pub created_at: Timestamp,
}

/// What an e-mailed token is for. A token redeems only for its own purpose.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EmailPurpose {
    /// Proves the account's e-mail address.
    VerifyEmail,
    /// Sets a new password without the old one.
    ResetPassword,
    /// Confirms a key export (with the account password).
    ConfirmExport,
    /// Confirms replacing a key's secret (with the account password).
    ConfirmReplaceKey,
}

impl EmailPurpose {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::VerifyEmail => "verify_email",
            Self::ResetPassword => "reset_password",
            Self::ConfirmExport => "confirm_export",
            Self::ConfirmReplaceKey => "confirm_replace_key",
        }
    }

    /// The purpose of a stored name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "verify_email" => Some(Self::VerifyEmail),
            "reset_password" => Some(Self::ResetPassword),
            "confirm_export" => Some(Self::ConfirmExport),
            "confirm_replace_key" => Some(Self::ConfirmReplaceKey),
            _ => None,
        }
    }
}

/// A single-use token sent to an account's e-mail address, found by its digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmailToken {
    /// SHA-256 of the token; the lookup key.
    pub digest: SecretDigest,
    /// The account's tenant.
    pub tenant_id: TenantId,
    /// The account.
    pub user_id: UserId,
    /// What it may be redeemed for.
    pub purpose: EmailPurpose,
    /// Refused at or after this instant.
    pub expires_at: Timestamp,
    /// Creation time.
    pub created_at: Timestamp,
}
