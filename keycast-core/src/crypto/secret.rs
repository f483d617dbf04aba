//! Secret-carrying types. All zeroize on drop and redact themselves in `Debug`.

use std::fmt;

use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::error::{Error, Result};

/// A 32-byte data-encryption key or raw secret key, wiped on drop.
pub type Secret32 = Zeroizing<[u8; 32]>;

/// Fills a fresh [`Secret32`] from the OS-seeded CSPRNG.
pub fn random_secret32() -> Secret32 {
    let mut s = Zeroizing::new([0u8; 32]);
    rand::thread_rng().fill_bytes(s.as_mut());
    s
}

/// SHA-256 of a high-entropy secret (connect secret, API token). Stored instead of the secret.
///
/// Comparison is constant-time.
#[derive(Clone, Copy, Eq)]
pub struct SecretDigest([u8; 32]);

impl SecretDigest {
    /// Hashes `secret`.
    pub fn of(secret: &[u8]) -> Self {
        Self(Sha256::digest(secret).into())
    }
    /// Rebuilds a digest read from storage.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }
    /// Reads a digest from a 32-byte slice.
    pub fn from_slice(bytes: &[u8]) -> Result<Self> {
        <[u8; 32]>::try_from(bytes)
            .map(Self)
            .map_err(|_| Error::invalid("secret digest", "expected 32 bytes"))
    }
    /// The digest bytes, for storage.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl PartialEq for SecretDigest {
    fn eq(&self, other: &Self) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl std::hash::Hash for SecretDigest {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.hash(state)
    }
}

impl fmt::Debug for SecretDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretDigest(..)")
    }
}

/// A freshly generated bearer secret (connect secret or API token), shown to its owner once.
///
/// 32 random bytes rendered as 64 lowercase hex characters.
pub struct BearerSecret(Zeroizing<String>);

impl BearerSecret {
    /// Generates a new random secret.
    pub fn generate() -> Self {
        let bytes = random_secret32();
        Self(Zeroizing::new(
            bytes.iter().map(|b| format!("{b:02x}")).collect(),
        ))
    }
    /// Wraps a secret presented by a client so it can be digested.
    pub fn from_presented(s: &str) -> Self {
        Self(Zeroizing::new(s.to_owned()))
    }
    /// The secret text. Only for handing to its owner; never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
    /// The digest to store or look up.
    pub fn digest(&self) -> SecretDigest {
        SecretDigest::of(self.0.as_bytes())
    }
}

impl fmt::Debug for BearerSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BearerSecret(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_secrets_are_random_hex_and_redacted() {
        let a = BearerSecret::generate();
        let b = BearerSecret::generate();
        assert_eq!(a.expose().len(), 64);
        assert_ne!(a.expose(), b.expose());
        assert!(!format!("{a:?}").contains(a.expose()));
        assert_eq!(
            BearerSecret::from_presented(a.expose()).digest(),
            a.digest()
        );
        assert_ne!(a.digest(), b.digest());
    }
}
