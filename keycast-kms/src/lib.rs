//! # keycast-kms
//!
//! [`keycast_core::KeyManager`] backends, each in its own module behind its own feature:
//!
//! - `local` (default): [`LocalKeyManager`], a 32-byte master-key file created with mode
//!   0600 on first run and refused when group- or world-readable.
//! - `aws`: AWS KMS Encrypt/Decrypt with an encryption context (module `aws`).
//! - `gcp`: Cloud KMS encrypt/decrypt with AAD and CRC32C checks (module `gcp`).
//! - `vault`: Vault/OpenBao transit with key versions (module `vault`).
//!
//! Remote backends share module `remote`: a timeout on every call, three retries of transient
//! failures (100, 200, 400 ms with jitter), typed errors naming backend and key, and
//! [`KmsObserver`] events for latency and failure metrics.
//!
//! [`rotation::rotate`] rewraps every stored DEK under a [`keycast_core::Keyring`]'s
//! primary master key, in resumable batches with compare-and-set, while the service signs.
//!
//! The envelope format itself lives in `keycast_core::envelope`, because the
//! engine opens envelopes and keycast-core may not depend on this crate.
//!
//! A data key wrapped by a local master key, and unwrapped only under the same AAD:
//!
//! ```
//! use keycast_core::random_secret32;
//! use keycast_core::KeyManager;
//! use keycast_kms::LocalKeyManager;
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let dir = tempfile::tempdir()?;
//! let kek = LocalKeyManager::open_or_create(dir.path().join("master.key"))?;
//! let dek = random_secret32();
//! let wrapped = kek.wrap(&dek, b"keycast/v1/dek:row-1").await?;
//! assert_eq!(kek.unwrap(&wrapped, b"keycast/v1/dek:row-1").await?, dek);
//! assert!(kek.unwrap(&wrapped, b"keycast/v1/dek:row-2").await.is_err());
//! # Ok::<_, Box<dyn std::error::Error>>(()) }).unwrap();
//! ```

mod error;
mod observe;
pub mod rotation;

#[cfg(feature = "local")]
mod local;
#[cfg(feature = "remote")]
pub mod remote;

#[cfg(feature = "aws")]
pub mod aws;
#[cfg(feature = "gcp")]
pub mod gcp;
#[cfg(feature = "vault")]
pub mod vault;

#[cfg(feature = "testing")]
#[doc(hidden)]
pub mod testing;

pub use error::KmsError;
#[cfg(feature = "local")]
pub use local::LocalKeyManager;
pub use observe::{CallOutcome, KmsObserver, NoopObserver};
