//! The envelope that protects every stored secret (user keys and bunker keys).
//!
//! A fresh random DEK per row is wrapped by the KEK with AAD `"keycast/v1/dek" ‖ key_uuid`;
//! the secret is sealed with XChaCha20-Poly1305 under the DEK with AAD
//! `"keycast/v1" ‖ key_uuid ‖ pubkey ‖ len ‖ tenant_uuid ‖ format_version`.
//!
//! The secret's AAD deliberately does not bind the KEK's provider or key id: rotation and
//! provider migration rewrap only the DEK and must leave the ciphertext untouched. The KEK
//! identity is bound where it matters, in the wrap itself.

use std::fmt;

use nostr::PublicKey;

use crate::crypto::aead::{self, NONCE_LEN};
use crate::crypto::secret::{random_secret32, Secret32};
use crate::error::{Error, Result};
use crate::ids::{KeyId, TenantId};
use crate::traits::key_manager::{KeyManager, Wrapped};

/// The only format version this build writes and reads.
pub const FORMAT_VERSION: u16 = 1;

const DEK_AAD_PREFIX: &[u8] = b"keycast/v1/dek";
const SECRET_AAD_PREFIX: &[u8] = b"keycast/v1";

/// What a ciphertext is bound to. Moving it to another row, pubkey or tenant fails to open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EnvelopeBinding {
    /// The row's key id.
    pub key_id: KeyId,
    /// The pubkey recorded beside the row.
    pub pubkey: PublicKey,
    /// The tenant the row belongs to.
    pub tenant_id: TenantId,
}

impl EnvelopeBinding {
    /// AAD given to the KeyManager when wrapping this row's DEK.
    pub fn dek_aad(&self) -> Vec<u8> {
        [DEK_AAD_PREFIX, self.key_id.as_bytes()].concat()
    }

    /// AAD for the secret's own AEAD.
    pub fn secret_aad(&self, format_version: u16) -> Vec<u8> {
        let tenant = self.tenant_id.as_bytes();
        let mut aad = Vec::with_capacity(SECRET_AAD_PREFIX.len() + 16 + 32 + 4 + 16 + 2);
        aad.extend_from_slice(SECRET_AAD_PREFIX);
        aad.extend_from_slice(self.key_id.as_bytes());
        aad.extend_from_slice(&self.pubkey.to_bytes());
        aad.extend_from_slice(&(tenant.len() as u32).to_be_bytes());
        aad.extend_from_slice(tenant);
        aad.extend_from_slice(&format_version.to_be_bytes());
        aad
    }
}

/// A sealed secret, stored as columns.
#[derive(Clone, PartialEq, Eq)]
pub struct Envelope {
    /// Format of this row; see [`FORMAT_VERSION`].
    pub format_version: u16,
    /// The DEK, wrapped by the KEK named inside.
    pub wrapped_dek: Wrapped,
    /// XChaCha20-Poly1305 nonce.
    pub nonce: [u8; NONCE_LEN],
    /// Secret ciphertext with its tag.
    pub ciphertext: Vec<u8>,
}

impl fmt::Debug for Envelope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Envelope")
            .field("format_version", &self.format_version)
            .field("kek", &self.wrapped_dek.kek)
            .finish_non_exhaustive()
    }
}

/// Seals a 32-byte secret for the row described by `binding`.
///
/// The KeyManager call is async; the AEAD is a single 32-byte block and cheap.
pub async fn seal(
    km: &dyn KeyManager,
    binding: &EnvelopeBinding,
    secret: &Secret32,
) -> Result<Envelope> {
    let dek = random_secret32();
    let wrapped_dek = km.wrap(&dek, &binding.dek_aad()).await?;
    let (nonce, ciphertext) =
        aead::seal(&dek, &binding.secret_aad(FORMAT_VERSION), secret.as_ref())?;
    Ok(Envelope {
        format_version: FORMAT_VERSION,
        wrapped_dek,
        nonce,
        ciphertext,
    })
}

/// Unwraps the envelope's DEK. The I/O half of opening.
pub async fn unwrap_dek(
    km: &dyn KeyManager,
    binding: &EnvelopeBinding,
    env: &Envelope,
) -> Result<Secret32> {
    check_version(env)?;
    km.unwrap(&env.wrapped_dek, &binding.dek_aad()).await
}

/// Opens the secret with an unwrapped DEK. The CPU half of opening; run it off the runtime.
pub fn open_with_dek(
    dek: &Secret32,
    binding: &EnvelopeBinding,
    env: &Envelope,
) -> Result<Secret32> {
    check_version(env)?;
    let plain = aead::open(
        dek,
        &binding.secret_aad(env.format_version),
        &env.nonce,
        &env.ciphertext,
    )?;
    let bytes: [u8; 32] = plain
        .as_slice()
        .try_into()
        .map_err(|_| Error::Envelope("secret is not 32 bytes".into()))?;
    Ok(Secret32::new(bytes))
}

/// Opens in one call (unwrap, then AEAD). For CLIs and tests; the engine splits the halves.
pub async fn open(
    km: &dyn KeyManager,
    binding: &EnvelopeBinding,
    env: &Envelope,
) -> Result<Secret32> {
    let dek = unwrap_dek(km, binding, env).await?;
    open_with_dek(&dek, binding, env)
}

fn check_version(env: &Envelope) -> Result<()> {
    if env.format_version != FORMAT_VERSION {
        return Err(Error::UnsupportedFormat(env.format_version));
    }
    Ok(())
}
