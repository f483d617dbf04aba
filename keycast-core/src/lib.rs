//! # keycast-core
//!
//! The custody engine of keycast and everything it is built from. This crate does no I/O
//! of its own and depends on no other keycast crate.
//!
//! - **Domain types** with validated constructors: ids ([`TenantId`], [`KeyId`], ...),
//!   names ([`Username`], [`Label`]), [`Authorization`], [`Policy`] and [`Permission`],
//!   and a [`Request`]/[`Response`] per operation.
//! - **The four traits**, held as `Arc<dyn …>`: [`KeyStore`] (persistence), [`KeyManager`]
//!   (the master key that wraps data keys; a [`Keyring`] holds several for rotation),
//!   [`Authorizer`] (policy decisions) and [`RequestRouter`] (which instance handles a request).
//! - **The envelope** ([`envelope`]) that seals every stored secret.
//! - **The engine**, [`Custody`]: `get_public_key`, `sign_event`, `nip44_*`, `nip04_*`,
//!   with a key cache, single-flight cold loads, a conversation-key cache, a bounded crypto
//!   pool and a group-commit audit writer.
//! - **Always-local implementations** for tests and examples: [`MemoryKeyStore`],
//!   [`InsecureTestKeyManager`], [`AllowAll`], [`PolicyAuthorizer`], [`LocalRouter`].
//! - **Conformance suites** in `testing` (feature `testing`) that every backend runs.
//!
//! ```
//! # async fn demo() -> keycast_core::Result<()> {
//! use std::sync::Arc;
//! use keycast_core::*;
//!
//! let store = Arc::new(MemoryKeyStore::new());
//! let custody = Custody::builder(store.clone(), Arc::new(InsecureTestKeyManager::new())).build()?;
//! let tenant = Tenant::new(TenantName::parse("example")?);
//! store.create_tenant(&tenant).await?;
//! let key = custody
//!     .create_key(NewKey::generate(tenant.id, Holder::Service, KeyKind::User, Label::parse("main")?))
//!     .await?;
//! let event = custody
//!     .sign_event(Caller::Owner(key.id), EventTemplate::new(nostr::Kind::TextNote, "hello"))
//!     .await?;
//! assert_eq!(event.pubkey, key.pubkey);
//! # Ok(()) }
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(demo()).unwrap();
//! ```

#![warn(unreachable_pub)]

// Modules are private: every public item has one path, at the root or in one of the small
// public modules below (`envelope`, `aead`, `testing`, `nostr`).
mod authz;
mod crypto;
mod custody;
mod error;
// The cargo-fuzz entry points: only with the `fuzzing` feature (and in unit tests, which
// run one of them), so release builds do not carry them.
#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
pub mod fuzzing;
mod ids;
mod memory;
mod model;
mod traits;

#[cfg(feature = "testing")]
pub mod testing;

pub use authz::allow_all::AllowAll;
pub use authz::approvals::{ApprovalDesk, WaitingRequest};
pub use authz::policy::PolicyAuthorizer;
pub use crypto::envelope::{Envelope, EnvelopeBinding};
pub use crypto::secret::{random_secret32, BearerSecret, Secret32, SecretDigest};
pub use custody::{
    BuildAnswer, BuildReply, Caller, Custody, CustodyBuilder, CustodyConfig, CustodyStats,
    Interpret, Interpreted, NewAuthorization, ReplacedKey, ReplySeal, TransportAnswer,
    TransportRequest, TransportScheme,
};
pub use custody::{NIP44_MAX_B64, NIP44_MAX_PLAINTEXT};
pub use error::{Error, Result};
pub use ids::{AuthorizationId, KeyId, PolicyId, TeamId, TenantId, UserId};
pub use memory::key_manager::InsecureTestKeyManager;
pub use memory::key_store::MemoryKeyStore;
pub use model::account::{Tenant, User};
pub use model::audit::{Activity, AuditAction, AuditFilter, AuditRecord, Outcome};
pub use model::authorization::Authorization;
pub use model::change::{Change, Changed};
pub use model::key::{Holder, KeyKind, NewKey, StoredKey};
pub use model::names::{Email, Label, PasswordHash, TenantHost, TenantName, Username};
pub use model::policy::{Permission, Policy};
pub use model::request::{parse_pubkey, EventTemplate, Method, Request, Response};
pub use model::team::{Team, TeamMember, TeamRole};
pub use model::token::{ApiToken, EmailPurpose, EmailToken, OAuthCode, Session};
pub use traits::authorizer::{AuthContext, Authorizer, Decision};
pub use traits::key_manager::{
    ensure_can_unwrap, fingerprint, unknown_kek, KekRef, KeyManager, Keyring, Wrapped,
};
pub use traits::key_store::{KeyStore, PasswordReplaced};
pub use traits::router::{LocalRouter, NodeId, RequestRouter, Route, RoutingKey};

/// Sealing and opening stored secrets (the envelope format; ARCHITECTURE.md), for key
/// managers and tools that check rows. [`Envelope`] and [`EnvelopeBinding`] are at the root.
pub mod envelope {
    pub use crate::crypto::envelope::{open, open_with_dek, seal, unwrap_dek, FORMAT_VERSION};
}

/// XChaCha20-Poly1305 with a random nonce, as one blob (nonce ‖ ciphertext ‖ tag): what a
/// local key-encryption key wraps data keys with.
pub mod aead {
    pub use crate::crypto::aead::{open_blob, seal_blob};
}

/// The `nostr` crate this build uses, so embedders match its types.
pub use nostr;
