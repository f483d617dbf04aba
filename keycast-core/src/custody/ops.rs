//! The CPU-bound operations. Everything here runs on the crypto pool, never on the runtime.

use std::sync::Arc;

use nostr::nips::nip44::v2::{self, ConversationKey};
use nostr::nips::{nip04, nip44};
use nostr::secp256k1::{Message, SECP256K1};
use nostr::{Event, EventId, Keys, PublicKey, SecretKey, Timestamp};
use zeroize::Zeroizing;

use crate::crypto::envelope::{self, Envelope, EnvelopeBinding};
use crate::crypto::secret::Secret32;
use crate::error::{Error, Result};
use crate::model::request::EventTemplate;

/// Longest base64 NIP-44 v2 payload: version + nonce + 65536 padded bytes + MAC.
pub const NIP44_MAX_B64: usize = (1usize + 32 + 2 + 65536 + 32).div_ceil(3) * 4;
/// Largest NIP-44 plaintext we encrypt: the spec allows 65535 bytes, but nostr 0.44's
/// encoder refuses anything over 65536 − 128; the check here gives that limit its clear
/// message instead of the encoder's.
pub const NIP44_MAX_PLAINTEXT: usize = 65_536 - 128;

/// A cached NIP-44 conversation key; zeroized when the last holder drops it.
pub(crate) struct ConvKey(Zeroizing<[u8; 32]>);

impl std::fmt::Debug for ConvKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ConvKey(<redacted>)")
    }
}

impl ConvKey {
    fn derive(keys: &Keys, peer: &PublicKey) -> Result<Self> {
        let ck = ConversationKey::derive(keys.secret_key(), peer)
            .map_err(|e| Error::invalid("pubkey", format!("cannot derive a shared key: {e}")))?;
        let bytes: [u8; 32] = ck
            .as_bytes()
            .try_into()
            .map_err(|_| Error::Internal("conversation key is not 32 bytes".into()))?;
        Ok(Self(Zeroizing::new(bytes)))
    }

    fn get(&self) -> ConversationKey {
        ConversationKey::new(*self.0)
    }
}

/// Looks up or derives the conversation key for (key, peer).
pub(crate) type ConvCache = moka::sync::Cache<(crate::ids::KeyId, PublicKey), Arc<ConvKey>>;

pub(crate) fn conversation_key(
    cache: Option<&ConvCache>,
    key_id: crate::ids::KeyId,
    keys: &Keys,
    peer: &PublicKey,
) -> Result<Arc<ConvKey>> {
    match cache {
        Some(c) => c
            .try_get_with((key_id, *peer), || {
                ConvKey::derive(keys, peer).map(Arc::new)
            })
            .map_err(|e| (*e).clone()),
        None => ConvKey::derive(keys, peer).map(Arc::new),
    }
}

/// Opens an envelope and checks the secret against the stored pubkey.
pub(crate) fn open_key(dek: &Secret32, binding: &EnvelopeBinding, env: &Envelope) -> Result<Keys> {
    let secret = envelope::open_with_dek(dek, binding, env)?;
    let sk = SecretKey::from_slice(secret.as_ref())
        .map_err(|_| Error::Envelope("stored secret is not a valid secp256k1 key".into()))?;
    let keys = Keys::new(sk);
    if keys.public_key() != binding.pubkey {
        return Err(Error::KeyMismatch);
    }
    Ok(keys)
}

/// Signs a template with `keys`; the caller has already refused a foreign pubkey.
///
/// The id is the SHA-256 of the NIP-01 serialization `[0,pubkey,created_at,kind,tags,content]`,
/// written straight from the fields with serde_json (byte-identical to the `nostr` crate's
/// own computation, which builds an intermediate JSON value first).
pub(crate) fn sign(keys: &Keys, t: EventTemplate, now: Timestamp) -> Result<Event> {
    use nostr::hashes::{sha256, Hash};
    let pubkey = keys.public_key();
    let created_at = t.created_at.unwrap_or(now);
    let mut canonical = Vec::with_capacity(160 + t.content.len());
    serde_json::to_writer(
        &mut canonical,
        &(0u8, &pubkey, created_at, t.kind, &t.tags, &t.content),
    )
    .map_err(|e| Error::Internal(format!("cannot serialize event: {e}")))?;
    let id = EventId::from_byte_array(sha256::Hash::hash(&canonical).to_byte_array());
    let sig = keys.sign_schnorr_with_ctx(
        SECP256K1,
        &Message::from_digest(id.to_bytes()),
        &mut rand::thread_rng(),
    );
    Ok(Event::new(
        id, pubkey, created_at, t.kind, t.tags, t.content, sig,
    ))
}

pub(crate) fn nip44_encrypt(ck: &ConvKey, plaintext: &str) -> Result<String> {
    use nostr::base64::Engine;
    let payload = v2::encrypt_to_bytes(&ck.get(), plaintext.as_bytes())
        .map_err(|e| Error::invalid("plaintext", e.to_string()))?;
    Ok(nostr::base64::engine::general_purpose::STANDARD.encode(payload))
}

pub(crate) fn nip44_decrypt(ck: &ConvKey, payload_b64: &str) -> Result<String> {
    use nostr::base64::Engine;
    if payload_b64.starts_with('#') {
        return Err(Error::InvalidCiphertext(
            "unsupported NIP-44 version".into(),
        ));
    }
    let payload = nostr::base64::engine::general_purpose::STANDARD
        .decode(payload_b64)
        .map_err(|_| Error::InvalidCiphertext("payload is not valid base64".into()))?;
    match payload.first() {
        Some(&v) if v == nip44::Version::V2.as_u8() => {}
        Some(v) => {
            return Err(Error::InvalidCiphertext(format!(
                "unknown NIP-44 version {v}"
            )))
        }
        None => return Err(Error::InvalidCiphertext("empty payload".into())),
    }
    let plain = Zeroizing::new(
        v2::decrypt_to_bytes(&ck.get(), &payload)
            .map_err(|e| Error::InvalidCiphertext(e.to_string()))?,
    );
    String::from_utf8(plain.to_vec())
        .map_err(|_| Error::InvalidCiphertext("plaintext is not UTF-8".into()))
}

pub(crate) fn nip04_encrypt(keys: &Keys, peer: &PublicKey, plaintext: &str) -> Result<String> {
    nip04::encrypt(keys.secret_key(), peer, plaintext)
        .map_err(|e| Error::invalid("pubkey", e.to_string()))
}

pub(crate) fn nip04_decrypt(keys: &Keys, peer: &PublicKey, payload: &str) -> Result<String> {
    nip04::decrypt(keys.secret_key(), peer, payload)
        .map_err(|e| Error::InvalidCiphertext(e.to_string()))
}
