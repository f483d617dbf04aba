//! The local backend: a 32-byte master key in a file only its owner can read.

use std::io::Write;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use keycast_core::aead;
use keycast_core::{ensure_can_unwrap, fingerprint};
use keycast_core::{Error, KekRef, KeyManager, Secret32, Wrapped};

use crate::KmsError;

/// Provider name recorded in envelopes.
pub const PROVIDER: &str = "local";

/// Wraps DEKs with XChaCha20-Poly1305 under a master key read from a file.
///
/// The file holds exactly 32 random bytes. [`LocalKeyManager::open_or_create`] creates it
/// (mode 0600, exclusive create, fsynced) when missing and refuses one that is group- or
/// world-accessible or of the wrong size. The key id is a fingerprint: the first 8 bytes
/// of SHA-256(key), in hex. Its path always comes from configuration.
pub struct LocalKeyManager {
    key: Secret32,
    id: KekRef,
    path: PathBuf,
}

impl std::fmt::Debug for LocalKeyManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalKeyManager")
            .field("id", &self.id)
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl LocalKeyManager {
    /// Opens the master key at `path`, generating it first if the file does not exist.
    pub fn open_or_create(path: impl AsRef<Path>) -> Result<Self, KmsError> {
        let path = path.as_ref();
        match std::fs::symlink_metadata(path) {
            Ok(_) => Self::open(path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                create(path)?;
                Self::open(path)
            }
            Err(e) => Err(file_error(path, e.to_string())),
        }
    }

    /// Opens an existing master key; never creates one.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, KmsError> {
        let path = path.as_ref();
        let meta = std::fs::metadata(path).map_err(|e| file_error(path, e.to_string()))?;
        if !meta.is_file() {
            return Err(file_error(path, "is not a regular file".into()));
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                return Err(file_error(
                    path,
                    format!("mode {mode:o} lets others read it; run chmod 600 on it"),
                ));
            }
        }
        let bytes = zeroize::Zeroizing::new(
            std::fs::read(path).map_err(|e| file_error(path, e.to_string()))?,
        );
        let key: [u8; 32] = bytes.as_slice().try_into().map_err(|_| {
            file_error(
                path,
                format!("must hold exactly 32 bytes, holds {}", bytes.len()),
            )
        })?;
        Ok(Self::from_key(Secret32::new(key), path.to_path_buf()))
    }

    fn from_key(key: Secret32, path: PathBuf) -> Self {
        let key_id = fingerprint(&key);
        Self {
            key,
            id: KekRef {
                provider: PROVIDER.into(),
                key_id,
                version: 1,
            },
            path,
        }
    }

    /// The key file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn file_error(path: &Path, reason: String) -> KmsError {
    KmsError::KeyFile {
        path: path.display().to_string(),
        reason,
    }
}

/// Writes 32 fresh random bytes to a new 0600 file, durably.
fn create(path: &Path) -> Result<(), KmsError> {
    let err = |e: std::io::Error| file_error(path, e.to_string());
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).map_err(err)?;
    let key = keycast_core::random_secret32();
    file.write_all(key.as_ref()).map_err(err)?;
    file.sync_all().map_err(err)?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        // Persist the directory entry too, so a crash cannot lose a key already in use.
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(err)?;
    }
    tracing::info!(path = %path.display(), "generated a new local master key");
    Ok(())
}

#[async_trait]
impl KeyManager for LocalKeyManager {
    fn id(&self) -> &KekRef {
        &self.id
    }

    async fn wrap(&self, dek: &Secret32, aad: &[u8]) -> keycast_core::Result<Wrapped> {
        // One 32-byte AEAD (about a microsecond): cheaper inline than a thread hop, and only
        // on the cold path (key creation, rotation).
        Ok(Wrapped {
            kek: self.id.clone(),
            blob: aead::seal_blob(&self.key, aad, dek.as_ref())?,
        })
    }

    async fn unwrap(&self, wrapped: &Wrapped, aad: &[u8]) -> keycast_core::Result<Secret32> {
        ensure_can_unwrap(self, wrapped)?;
        let plain = aead::open_blob(&self.key, aad, &wrapped.blob).map_err(|_| {
            Error::Envelope(format!(
                "local key {}: unwrap failed (wrong key, AAD or tampered blob)",
                self.id.key_id
            ))
        })?;
        let dek: [u8; 32] = plain
            .as_slice()
            .try_into()
            .map_err(|_| Error::Envelope("wrapped DEK is not 32 bytes".into()))?;
        Ok(Secret32::new(dek))
    }
}
