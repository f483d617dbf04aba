//! Requests and responses of the custody operations.

use std::fmt;

use nostr::{Event, Kind, PublicKey, Tag, Tags, Timestamp};
use serde::Deserialize;

use crate::error::{Error, Result};

/// Parses a pubkey given as 64 hex characters or as `npub1…`, and checks that it is a
/// point on the curve (the `nostr` crate defers that check).
pub fn parse_pubkey(s: &str) -> Result<PublicKey> {
    let pk = PublicKey::parse(s.trim())
        .map_err(|_| Error::invalid("pubkey", "expected 64 hex characters or npub1…"))?;
    pk.xonly()
        .map_err(|_| Error::invalid("pubkey", "not a valid secp256k1 x-only public key"))?;
    Ok(pk)
}

/// An event to be signed. `pubkey` may be absent (it is filled in) but never foreign.
/// `created_at`, `tags` and `content` are preserved exactly; a missing `created_at` is "now".
#[derive(Clone, PartialEq, Eq)]
pub struct EventTemplate {
    /// If present, must equal the signing key's pubkey.
    pub pubkey: Option<PublicKey>,
    /// Kept as given; `None` means the time of signing.
    pub created_at: Option<Timestamp>,
    /// Event kind.
    pub kind: Kind,
    /// Kept in order, byte for byte.
    pub tags: Tags,
    /// Kept byte for byte.
    pub content: String,
}

#[derive(Deserialize)]
struct RawTemplate {
    #[serde(default)]
    pubkey: Option<String>,
    #[serde(default)]
    created_at: Option<u64>,
    kind: u16,
    #[serde(default)]
    tags: Vec<Vec<String>>,
    content: String,
}

impl EventTemplate {
    /// A template with no tags, created now.
    pub fn new(kind: Kind, content: impl Into<String>) -> Self {
        Self {
            pubkey: None,
            created_at: None,
            kind,
            tags: Tags::new(),
            content: content.into(),
        }
    }

    /// Parses the JSON a NIP-46 or HTTP client sends. `id` and `sig`, if present, are ignored:
    /// the id is recomputed from the signed fields.
    pub fn from_json(json: &str) -> Result<Self> {
        let raw: RawTemplate = serde_json::from_str(json)
            .map_err(|e| Error::invalid("event template", e.to_string()))?;
        let pubkey = match raw.pubkey.as_deref() {
            None | Some("") => None,
            Some(p) => Some(parse_pubkey(p)?),
        };
        let mut tags = Vec::with_capacity(raw.tags.len());
        for t in raw.tags {
            tags.push(Tag::parse(t).map_err(|e| Error::invalid("event tags", e.to_string()))?);
        }
        Ok(Self {
            pubkey,
            created_at: raw.created_at.map(Timestamp::from),
            kind: Kind::from(raw.kind),
            tags: Tags::from_list(tags),
            content: raw.content,
        })
    }
}

impl fmt::Debug for EventTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Content is user data: log its size, not its text.
        f.debug_struct("EventTemplate")
            .field("kind", &self.kind.as_u16())
            .field("created_at", &self.created_at)
            .field("tags", &self.tags.len())
            .field("content_len", &self.content.len())
            .finish()
    }
}

/// The operations the custody engine offers (NIP-46 method names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Method {
    /// `get_public_key`
    GetPublicKey,
    /// `sign_event`
    SignEvent,
    /// `nip44_encrypt`
    Nip44Encrypt,
    /// `nip44_decrypt`
    Nip44Decrypt,
    /// `nip04_encrypt`
    Nip04Encrypt,
    /// `nip04_decrypt`
    Nip04Decrypt,
}

impl Method {
    /// The NIP-46 method name.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::GetPublicKey => "get_public_key",
            Method::SignEvent => "sign_event",
            Method::Nip44Encrypt => "nip44_encrypt",
            Method::Nip44Decrypt => "nip44_decrypt",
            Method::Nip04Encrypt => "nip04_encrypt",
            Method::Nip04Decrypt => "nip04_decrypt",
        }
    }

    /// Parses a NIP-46 method name.
    pub fn parse(s: &str) -> Result<Self> {
        Ok(match s {
            "get_public_key" => Method::GetPublicKey,
            "sign_event" => Method::SignEvent,
            "nip44_encrypt" => Method::Nip44Encrypt,
            "nip44_decrypt" => Method::Nip44Decrypt,
            "nip04_encrypt" => Method::Nip04Encrypt,
            "nip04_decrypt" => Method::Nip04Decrypt,
            _ => return Err(Error::invalid("method", "unknown method")),
        })
    }
}

/// One custody operation with its arguments.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Request {
    /// Return the key's pubkey.
    GetPublicKey,
    /// Sign an event.
    SignEvent(EventTemplate),
    /// NIP-44 v2 encrypt `plaintext` to `peer`.
    Nip44Encrypt {
        /// Recipient.
        peer: PublicKey,
        /// Message.
        plaintext: String,
    },
    /// NIP-44 decrypt a payload from `peer`.
    Nip44Decrypt {
        /// Sender.
        peer: PublicKey,
        /// Base64 payload.
        ciphertext: String,
    },
    /// NIP-04 encrypt (legacy).
    Nip04Encrypt {
        /// Recipient.
        peer: PublicKey,
        /// Message.
        plaintext: String,
    },
    /// NIP-04 decrypt (legacy), `base64?iv=base64`.
    Nip04Decrypt {
        /// Sender.
        peer: PublicKey,
        /// Payload.
        ciphertext: String,
    },
}

impl Request {
    /// The operation's method.
    pub fn method(&self) -> Method {
        match self {
            Request::GetPublicKey => Method::GetPublicKey,
            Request::SignEvent(_) => Method::SignEvent,
            Request::Nip44Encrypt { .. } => Method::Nip44Encrypt,
            Request::Nip44Decrypt { .. } => Method::Nip44Decrypt,
            Request::Nip04Encrypt { .. } => Method::Nip04Encrypt,
            Request::Nip04Decrypt { .. } => Method::Nip04Decrypt,
        }
    }

    /// The peer of an encrypt/decrypt request.
    pub fn peer(&self) -> Option<&PublicKey> {
        match self {
            Request::Nip44Encrypt { peer, .. }
            | Request::Nip44Decrypt { peer, .. }
            | Request::Nip04Encrypt { peer, .. }
            | Request::Nip04Decrypt { peer, .. } => Some(peer),
            Request::GetPublicKey | Request::SignEvent(_) => None,
        }
    }

    /// Text that would leave under the key's name: signed content or encrypted plaintext.
    pub fn outgoing_text(&self) -> Option<&str> {
        match self {
            Request::SignEvent(t) => Some(&t.content),
            Request::Nip44Encrypt { plaintext, .. } | Request::Nip04Encrypt { plaintext, .. } => {
                Some(plaintext)
            }
            _ => None,
        }
    }
}

impl fmt::Debug for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Request::SignEvent(t) => f.debug_tuple("SignEvent").field(t).finish(),
            // Messages and peers are user data; show the method only.
            other => f.write_str(other.method().as_str()),
        }
    }
}

/// The result of a custody operation.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Response {
    /// From `get_public_key`.
    PublicKey(PublicKey),
    /// From `sign_event`.
    Event(Box<Event>),
    /// Ciphertext or plaintext from the encrypt/decrypt operations.
    Text(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_parsing_rejects_bad_input() {
        let ok = EventTemplate::from_json(
            r#"{"kind":1,"content":"hi","tags":[["t","x"]],"created_at":5}"#,
        )
        .expect("valid template");
        assert_eq!(ok.created_at, Some(Timestamp::from(5)));
        assert_eq!(ok.pubkey, None);
        for bad in [
            "",
            "[]",
            r#"{"kind":1}"#,
            r#"{"kind":"one","content":""}"#,
            r#"{"kind":70000,"content":""}"#,
            r#"{"kind":1,"content":"","pubkey":"zz"}"#,
            r#"{"kind":1,"content":"","pubkey":"ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff"}"#,
            r#"{"kind":1,"content":"","tags":[[]]}"#,
            r#"{"kind":1,"content":"","created_at":-1}"#,
        ] {
            assert!(
                matches!(
                    EventTemplate::from_json(bad),
                    Err(Error::InvalidInput { .. })
                ),
                "{bad} accepted"
            );
        }
    }

    #[test]
    fn methods_round_trip() {
        for m in [
            Method::GetPublicKey,
            Method::SignEvent,
            Method::Nip44Encrypt,
            Method::Nip44Decrypt,
            Method::Nip04Encrypt,
            Method::Nip04Decrypt,
        ] {
            assert_eq!(Method::parse(m.as_str()), Ok(m));
        }
        assert!(Method::parse("teleport").is_err());
        // The owner's actions are audit records, not requests anyone can make.
        for action in ["export_key", "delete_key", "replace_key"] {
            assert!(Method::parse(action).is_err(), "{action}");
        }
    }
}
