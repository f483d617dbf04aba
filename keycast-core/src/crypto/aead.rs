//! XChaCha20-Poly1305 with random 24-byte nonces: the one AEAD keycast uses at rest.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore;
use zeroize::Zeroizing;

use crate::error::{Error, Result};

/// Nonce length of XChaCha20-Poly1305.
pub(crate) const NONCE_LEN: usize = 24;
/// Authentication tag length.
pub(crate) const TAG_LEN: usize = 16;

/// Encrypts `msg` under `key` with a fresh random nonce. Returns `(nonce, ciphertext‖tag)`.
pub(crate) fn seal(key: &[u8; 32], aad: &[u8], msg: &[u8]) -> Result<([u8; NONCE_LEN], Vec<u8>)> {
    let mut nonce = [0u8; NONCE_LEN];
    rand::thread_rng().fill_bytes(&mut nonce);
    let ct = XChaCha20Poly1305::new(key.into())
        .encrypt(XNonce::from_slice(&nonce), Payload { msg, aad })
        .map_err(|_| Error::Internal("AEAD encryption failed".into()))?;
    Ok((nonce, ct))
}

/// Decrypts and authenticates. Any tampering, wrong key or wrong AAD gives [`Error::Envelope`].
pub(crate) fn open(
    key: &[u8; 32],
    aad: &[u8],
    nonce: &[u8; NONCE_LEN],
    ct: &[u8],
) -> Result<Zeroizing<Vec<u8>>> {
    XChaCha20Poly1305::new(key.into())
        .decrypt(XNonce::from_slice(nonce), Payload { msg: ct, aad })
        .map(Zeroizing::new)
        .map_err(|_| Error::Envelope("authentication failed".into()))
}

/// Seals into one blob `nonce ‖ ciphertext ‖ tag`, the layout key managers store.
pub fn seal_blob(key: &[u8; 32], aad: &[u8], msg: &[u8]) -> Result<Vec<u8>> {
    let (nonce, ct) = seal(key, aad, msg)?;
    let mut blob = Vec::with_capacity(NONCE_LEN + ct.len());
    blob.extend_from_slice(&nonce);
    blob.extend_from_slice(&ct);
    Ok(blob)
}

/// Opens a blob made by [`seal_blob`].
pub fn open_blob(key: &[u8; 32], aad: &[u8], blob: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
    if blob.len() < NONCE_LEN + TAG_LEN {
        return Err(Error::Envelope("blob too short".into()));
    }
    let (nonce, ct) = blob.split_at(NONCE_LEN);
    let nonce: &[u8; NONCE_LEN] = nonce
        .try_into()
        .map_err(|_| Error::Envelope("bad nonce".into()))?;
    open(key, aad, nonce, ct)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blob_round_trip_and_tamper_detection() {
        let key = [7u8; 32];
        let blob = seal_blob(&key, b"aad", b"hello").expect("seal");
        assert_eq!(
            open_blob(&key, b"aad", &blob).expect("open").as_slice(),
            b"hello"
        );
        assert!(open_blob(&key, b"other", &blob).is_err());
        assert!(open_blob(&[8u8; 32], b"aad", &blob).is_err());
        let mut flipped = blob.clone();
        flipped[30] ^= 1;
        assert!(open_blob(&key, b"aad", &flipped).is_err());
        assert!(open_blob(&key, b"aad", &blob[..10]).is_err());
    }
}
