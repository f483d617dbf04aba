//! Transport crypto with bunker keys: opening NIP-46 requests and sealing and signing
//! replies. These are not custody operations on a user's key, so they are not audited;
//! they refuse any key that is not a bunker key.

use nostr::nips::nip04;
use nostr::{Event, EventBuilder, Keys, Kind, PublicKey, Tag, Timestamp};

use super::{ops, Custody, LoadedKey};
use crate::error::{Error, Result};
use crate::ids::KeyId;
use crate::model::key::KeyKind;

/// Which encryption a NIP-46 message used; replies use the same.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportScheme {
    /// NIP-04 (`base64?iv=base64`), legacy.
    Nip04,
    /// NIP-44 v2.
    Nip44,
}

impl TransportScheme {
    /// NIP-04 content always carries `?iv=`; anything else is treated as NIP-44.
    pub fn detect(content: &str) -> Self {
        if content.contains("?iv=") {
            TransportScheme::Nip04
        } else {
            TransportScheme::Nip44
        }
    }
}

/// The pool job of [`Custody::transport_open`]: decrypts `content` from `peer` with the
/// bunker's `keys`, in the scheme [`TransportScheme::detect`] reads off it.
pub(crate) fn open_payload(
    convs: Option<&ops::ConvCache>,
    bunker: KeyId,
    keys: &Keys,
    peer: &PublicKey,
    content: &str,
) -> Result<(TransportScheme, String)> {
    let scheme = TransportScheme::detect(content);
    let plain = match scheme {
        TransportScheme::Nip04 => ops::nip04_decrypt(keys, peer, content)?,
        TransportScheme::Nip44 => {
            let ck = ops::conversation_key(convs, bunker, keys, peer)?;
            ops::nip44_decrypt(&ck, content)?
        }
    };
    Ok((scheme, plain))
}

/// How to answer a NIP-46 request whose operation succeeds, in the operation's own pool
/// job ([`Custody::handle_sealed`]): the reply's plaintext is built from the operation's
/// response, encrypted to `peer` in `scheme` and signed with the bunker key `bunker`, so the
/// request costs one hop to the crypto pool and back instead of two.
pub struct ReplySeal {
    /// The bunker key (the authorization's) that signs the reply.
    pub bunker: KeyId,
    /// The client the reply is encrypted to.
    pub peer: PublicKey,
    /// The encryption the request used.
    pub scheme: TransportScheme,
    /// The reply's plaintext for the operation's response (runs on the crypto pool).
    pub build: BuildReply,
}

/// Builds a reply's plaintext from an operation's response ([`ReplySeal::build`]).
pub type BuildReply = Box<dyn FnOnce(&crate::model::request::Response) -> Result<String> + Send>;

impl std::fmt::Debug for ReplySeal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplySeal")
            .field("bunker", &self.bunker)
            .field("peer", &self.peer)
            .field("scheme", &self.scheme)
            .finish_non_exhaustive()
    }
}

/// A pool job's sealing of `reply`: encrypted to `peer` in `scheme`, in a kind-24133 event
/// signed with the bunker's `keys`.
pub(crate) fn seal(
    convs: Option<&ops::ConvCache>,
    bunker: KeyId,
    keys: &Keys,
    peer: PublicKey,
    scheme: TransportScheme,
    reply: &str,
) -> Result<Event> {
    let content = match scheme {
        TransportScheme::Nip04 => nip04::encrypt(keys.secret_key(), &peer, reply)
            .map_err(|e| Error::invalid("pubkey", e.to_string()))?,
        TransportScheme::Nip44 => {
            let ck = ops::conversation_key(convs, bunker, keys, &peer)?;
            ops::nip44_encrypt(&ck, reply)?
        }
    };
    EventBuilder::new(Kind::NostrConnect, content)
        .tag(Tag::public_key(peer))
        .custom_created_at(Timestamp::now())
        .sign_with_keys(keys)
        .map_err(|e| Error::Internal(format!("signing reply failed: {e}")))
}

impl Custody {
    pub(super) async fn bunker_key(&self, bunker: KeyId) -> Result<std::sync::Arc<LoadedKey>> {
        let key = self.signing_key(bunker).await?;
        if key.kind != KeyKind::Bunker {
            return Err(Error::Denied("transport crypto needs a bunker key".into()));
        }
        Ok(key)
    }

    /// Verifies a received event's id and signature on the crypto pool.
    pub async fn verify_event(&self, event: Event) -> Result<Event> {
        self.inner
            .pool
            .run(move || event.verify().map(|()| event))
            .await?
            .map_err(|_| Error::invalid("event", "bad id or signature"))
    }

    /// Decrypts a request sent by `peer` to the bunker key, in whichever scheme it used.
    pub async fn transport_open(
        &self,
        bunker: KeyId,
        peer: PublicKey,
        content: String,
    ) -> Result<(TransportScheme, String)> {
        let key = self.bunker_key(bunker).await?;
        let convs = self.inner.conversations.clone();
        self.inner
            .pool
            .run(move || open_payload(convs.as_ref(), bunker, &key.keys, &peer, &content))
            .await?
    }

    /// Encrypts `reply` to `peer` and signs the kind-24133 event with the bunker key, in one
    /// pool job.
    pub async fn transport_reply(
        &self,
        bunker: KeyId,
        peer: PublicKey,
        scheme: TransportScheme,
        reply: String,
    ) -> Result<Event> {
        let key = self.bunker_key(bunker).await?;
        let convs = self.inner.conversations.clone();
        self.inner
            .pool
            .run(move || seal(convs.as_ref(), bunker, &key.keys, peer, scheme, &reply))
            .await?
    }
}
