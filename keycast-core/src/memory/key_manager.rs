//! A KeyManager whose master key lives in process memory. For tests and examples only.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;

use crate::crypto::aead;
use crate::crypto::secret::{random_secret32, Secret32};
use crate::error::{Error, Result};
use crate::traits::key_manager::{ensure_can_unwrap, fingerprint, KekRef, KeyManager, Wrapped};

/// Provider name recorded in envelopes it wraps.
pub(crate) const PROVIDER: &str = "insecure-test";

/// Wraps DEKs with XChaCha20-Poly1305 under a random in-memory key.
///
/// **Insecure by design**: the master key dies with the process and is not protected from
/// anything. It exists so tests and examples need no KMS. It counts unwraps and can add
/// latency, which tests and benches use to observe single-flight loading and cold paths.
pub struct InsecureTestKeyManager {
    key: Secret32,
    id: KekRef,
    unwraps: AtomicU64,
    latency: Duration,
}

impl std::fmt::Debug for InsecureTestKeyManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InsecureTestKeyManager")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl Default for InsecureTestKeyManager {
    fn default() -> Self {
        Self::new()
    }
}

impl InsecureTestKeyManager {
    /// A manager with a fresh random master key.
    pub fn new() -> Self {
        Self::from_key(random_secret32())
    }

    /// A manager with a given master key (to simulate a restart with the same key).
    pub fn from_key(key: Secret32) -> Self {
        let key_id = fingerprint(&key);
        Self {
            key,
            id: KekRef {
                provider: PROVIDER.into(),
                key_id,
                version: 1,
            },
            unwraps: AtomicU64::new(0),
            latency: Duration::ZERO,
        }
    }

    /// Adds a delay to every wrap and unwrap, like a network KMS.
    pub fn with_latency(mut self, latency: Duration) -> Self {
        self.latency = latency;
        self
    }

    /// How many unwraps were attempted so far.
    pub fn unwrap_calls(&self) -> u64 {
        self.unwraps.load(Ordering::Relaxed)
    }

    async fn simulate_latency(&self) {
        if !self.latency.is_zero() {
            tokio::time::sleep(self.latency).await;
        }
    }
}

#[async_trait]
impl KeyManager for InsecureTestKeyManager {
    fn id(&self) -> &KekRef {
        &self.id
    }

    async fn wrap(&self, dek: &Secret32, aad: &[u8]) -> Result<Wrapped> {
        self.simulate_latency().await;
        Ok(Wrapped {
            kek: self.id.clone(),
            blob: aead::seal_blob(&self.key, aad, dek.as_ref())?,
        })
    }

    async fn unwrap(&self, wrapped: &Wrapped, aad: &[u8]) -> Result<Secret32> {
        self.unwraps.fetch_add(1, Ordering::Relaxed);
        ensure_can_unwrap(self, wrapped)?;
        self.simulate_latency().await;
        let plain = aead::open_blob(&self.key, aad, &wrapped.blob)?;
        let dek: [u8; 32] = plain
            .as_slice()
            .try_into()
            .map_err(|_| Error::Envelope("wrapped DEK is not 32 bytes".into()))?;
        Ok(Secret32::new(dek))
    }
}
