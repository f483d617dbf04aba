//! KeyManager: the master key (KEK) that wraps per-secret data keys (DEKs).

use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::crypto::secret::Secret32;
use crate::error::{Error, Result};

/// Names one version of one master key at one provider.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct KekRef {
    /// Backend name: `local`, `aws`, `gcp`, `vault`, `insecure-test`.
    pub provider: String,
    /// Provider-specific key identity (fingerprint, ARN, resource name, transit key name).
    pub key_id: String,
    /// Key version, for providers that version keys in place (Vault, GCP). 1 otherwise.
    pub version: u32,
}

/// A DEK wrapped by a KEK, as stored in the envelope columns.
#[derive(Clone, PartialEq, Eq)]
pub struct Wrapped {
    /// Which KEK produced `blob`.
    pub kek: KekRef,
    /// Provider-specific ciphertext of the DEK.
    pub blob: Vec<u8>,
}

impl Debug for Wrapped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wrapped")
            .field("kek", &self.kek)
            .field("blob_len", &self.blob.len())
            .finish()
    }
}

/// The check every `unwrap` starts with: refuse blobs of a KEK this manager does not hold.
pub fn ensure_can_unwrap(km: &(impl KeyManager + ?Sized), wrapped: &Wrapped) -> Result<()> {
    if km.can_unwrap(&wrapped.kek) {
        Ok(())
    } else {
        Err(unknown_kek(&wrapped.kek))
    }
}

/// The error for a blob of a master key this manager (or keyring) does not hold. It is a
/// key-manager failure, not a missing record: the row exists, and reporting it as missing
/// would tell apps their authorization is gone when the operator lost a master key.
pub fn unknown_kek(kek: &KekRef) -> Error {
    Error::KeyManager(format!(
        "no configured master key can unwrap this row: it was wrapped by {}/{} v{}",
        kek.provider, kek.key_id, kek.version
    ))
}

/// A key id for a master key held as bytes: the first 8 bytes of its SHA-256, in hex.
pub fn fingerprint(key: &Secret32) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(key.as_ref())[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Wraps and unwraps 32-byte data keys under a master key that never leaves the provider.
///
/// Promises:
/// - `unwrap(wrap(dek, aad), aad) == dek`; any other `aad` fails with [`Error::Envelope`]
///   or [`Error::KeyManager`].
/// - It never sees a Nostr secret key, only DEKs.
///
/// Errors: [`Error::Unavailable`] when the provider cannot be reached (retryable),
/// [`Error::KeyManager`] when `wrapped.kek` is not a key this manager holds (see
/// [`unknown_kek`]) or when the provider refuses.
///
/// Concurrency: called from many tasks at once; implementations must be `Sync` and must not
/// serialise unrelated calls.
#[async_trait]
pub trait KeyManager: Send + Sync + Debug + 'static {
    /// The KEK version new wraps use.
    fn id(&self) -> &KekRef;

    /// Whether this manager can unwrap blobs made under `kek` (same provider and key, any
    /// version it still holds).
    fn can_unwrap(&self, kek: &KekRef) -> bool {
        let me = self.id();
        me.provider == kek.provider && me.key_id == kek.key_id
    }

    /// Wraps `dek`, binding `aad` (the provider's associated data or encryption context).
    async fn wrap(&self, dek: &Secret32, aad: &[u8]) -> Result<Wrapped>;

    /// Recovers the DEK. Fails unless `aad` equals the one used to wrap.
    async fn unwrap(&self, wrapped: &Wrapped, aad: &[u8]) -> Result<Secret32>;

    /// Re-wraps under the current version. The default unwraps then wraps, which keeps `aad`.
    async fn rewrap(&self, wrapped: &Wrapped, aad: &[u8]) -> Result<Wrapped> {
        let dek = self.unwrap(wrapped, aad).await?;
        self.wrap(&dek, aad).await
    }
}

/// One primary KeyManager for new wraps, plus older ones kept for unwrap only.
///
/// This is how master-key rotation and provider migration work: make the new manager
/// primary, keep the old one, and rewrap rows in the background.
#[derive(Debug, Clone)]
pub struct Keyring {
    primary: Arc<dyn KeyManager>,
    older: Vec<Arc<dyn KeyManager>>,
}

impl Keyring {
    /// A keyring with a single manager.
    pub fn new(primary: Arc<dyn KeyManager>) -> Self {
        Self {
            primary,
            older: Vec::new(),
        }
    }

    /// Adds a manager that can still unwrap old rows but is never used for new wraps.
    pub fn with_older(mut self, km: Arc<dyn KeyManager>) -> Self {
        self.older.push(km);
        self
    }

    /// True when a row wrapped under `kek` should be rewrapped by rotation.
    pub fn needs_rewrap(&self, kek: &KekRef) -> bool {
        kek != self.primary.id()
    }

    fn manager_for(&self, kek: &KekRef) -> Result<&Arc<dyn KeyManager>> {
        std::iter::once(&self.primary)
            .chain(self.older.iter())
            .find(|km| km.can_unwrap(kek))
            .ok_or_else(|| unknown_kek(kek))
    }
}

#[async_trait]
impl KeyManager for Keyring {
    fn id(&self) -> &KekRef {
        self.primary.id()
    }

    fn can_unwrap(&self, kek: &KekRef) -> bool {
        self.manager_for(kek).is_ok()
    }

    async fn wrap(&self, dek: &Secret32, aad: &[u8]) -> Result<Wrapped> {
        self.primary.wrap(dek, aad).await
    }

    async fn unwrap(&self, wrapped: &Wrapped, aad: &[u8]) -> Result<Secret32> {
        self.manager_for(&wrapped.kek)?.unwrap(wrapped, aad).await
    }

    async fn rewrap(&self, wrapped: &Wrapped, aad: &[u8]) -> Result<Wrapped> {
        let owner = self.manager_for(&wrapped.kek)?;
        if Arc::ptr_eq(owner, &self.primary) {
            return self.primary.rewrap(wrapped, aad).await;
        }
        let dek = owner.unwrap(wrapped, aad).await?;
        self.primary.wrap(&dek, aad).await
    }
}
