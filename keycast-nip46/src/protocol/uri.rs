//! Connection URIs: `bunker://` (issued by keycast) and `nostrconnect://` (scanned from a
//! client).

use std::fmt;

use keycast_core::parse_pubkey;
use nostr::nips::nip46::NostrConnectURI;
use nostr::{PublicKey, RelayUrl, Url};
use serde::Deserialize;

use crate::protocol::error::{Error, Result};
use crate::protocol::perms::{self, PermEntry};

/// Longest URI accepted, in bytes (QR codes and deep links are far shorter).
pub(crate) const MAX_URI_BYTES: usize = 8192;

fn invalid(reason: impl Into<String>) -> Error {
    Error::InvalidUri {
        reason: reason.into(),
    }
}

/// `bunker://<signer-pubkey-hex>?relay=…&secret=…`. The signer key is the one replies are
/// signed with; it may differ from the user key (clients learn that via `get_public_key`).
#[derive(Clone, PartialEq, Eq)]
pub struct BunkerUri {
    /// The bunker's own key, which signs the kind 24133 replies.
    pub signer: PublicKey,
    /// Relays the bunker listens on.
    pub relays: Vec<RelayUrl>,
    /// Single-use connect secret.
    pub secret: Option<String>,
}

impl BunkerUri {
    /// Renders the URI with nostr's formatter. That formatter does not percent-encode, so
    /// the secret is limited to unreserved characters and the result must parse back to
    /// the same value (a relay URL with its own query would otherwise corrupt ours).
    pub fn to_uri(&self) -> Result<String> {
        if self.relays.is_empty() {
            return Err(invalid("a bunker URI needs at least one relay"));
        }
        // Only URL-unreserved characters: anything else would be written raw and break
        // copy-paste and QR scanning even where a parser happens to recover it.
        let unreserved = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | '~');
        if let Some(secret) = &self.secret {
            if secret.is_empty() || !secret.chars().all(unreserved) {
                return Err(invalid("secret must be non-empty A-Z a-z 0-9 - . _ ~"));
            }
        }
        let uri = NostrConnectURI::Bunker {
            remote_signer_public_key: self.signer,
            relays: self.relays.clone(),
            secret: self.secret.clone(),
        }
        .to_string();
        match Self::parse(&uri) {
            Ok(back) if back == *self => Ok(uri),
            _ => Err(invalid(
                "relay or secret needs characters a bunker URI cannot carry",
            )),
        }
    }

    /// Parses with nostr's parser, which handles `bunker://` fully.
    pub fn parse(uri: &str) -> Result<Self> {
        if uri.len() > MAX_URI_BYTES {
            return Err(invalid("URI too long"));
        }
        match NostrConnectURI::parse(uri).map_err(|e| invalid(e.to_string()))? {
            NostrConnectURI::Bunker {
                remote_signer_public_key,
                relays,
                secret,
            } => Ok(Self {
                signer: remote_signer_public_key,
                relays,
                secret,
            }),
            NostrConnectURI::Client { .. } => Err(invalid("not a bunker:// URI")),
        }
    }
}

impl fmt::Debug for BunkerUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BunkerUri")
            .field("signer", &self.signer)
            .field("relays", &self.relays)
            .field("secret", &self.secret.as_ref().map(|_| "[REDACTED]"))
            .finish()
    }
}

/// A client-initiated `nostrconnect://<client-pubkey>?relay=…&secret=…&perms=…&name=…`
/// `&url=…&image=…`, or the older `…?relay=…&metadata={"name","url","icons"}` form.
///
/// Parsed here because nostr 0.44's `NostrConnectURI` requires `metadata` and ignores
/// `secret`, `perms`, `name`, `url` and `image`, which current clients send instead.
#[derive(Clone, PartialEq, Eq)]
pub struct NostrConnectUri {
    /// The client's key: requests come from it, replies go to it.
    pub client: PublicKey,
    /// Relays the client listens on; at least one.
    pub relays: Vec<RelayUrl>,
    /// The secret the `connect` reply must carry. Older clients send none.
    pub secret: Option<String>,
    /// Requested permissions; empty when none were given.
    pub perms: Vec<PermEntry>,
    /// App name, for display.
    pub name: Option<String>,
    /// App website, for display.
    pub url: Option<Url>,
    /// App icon, for display.
    pub image: Option<Url>,
}

#[derive(Deserialize)]
struct LegacyMetadata {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    icons: Option<Vec<String>>,
}

/// Parses a relay URL that reads back as itself from its text, the form stored and sent.
/// `RelayUrl::parse` alone accepts e.g. `wss:/x/y://z` as `wss://x/y://z`, which it then
/// refuses to parse again (two `://`): an authorization stored with it could not be read.
pub(crate) fn parse_relay(s: &str) -> Result<RelayUrl> {
    let relay = RelayUrl::parse(s).map_err(|e| invalid(format!("relay: {e}")))?;
    match RelayUrl::parse(relay.as_str()) {
        Ok(back) if back == relay => Ok(relay),
        _ => Err(invalid(format!(
            "relay: {:?} does not read back as itself",
            relay.as_str()
        ))),
    }
}

/// Display-only links: an unparseable one is dropped rather than blocking pairing.
fn display_url(s: &str) -> Option<Url> {
    Url::parse(s)
        .ok()
        .filter(|u| matches!(u.scheme(), "https" | "http"))
}

fn non_empty(s: &str) -> Option<String> {
    let s = s.trim();
    (!s.is_empty()).then(|| s.to_owned())
}

impl NostrConnectUri {
    /// Parses a `nostrconnect://` URI. Explicit `name`/`url`/`image` win over `metadata`.
    pub fn parse(uri: &str) -> Result<Self> {
        if uri.len() > MAX_URI_BYTES {
            return Err(invalid("URI too long"));
        }
        let url = Url::parse(uri.trim()).map_err(|e| invalid(e.to_string()))?;
        if url.scheme() != "nostrconnect" {
            return Err(invalid("not a nostrconnect:// URI"));
        }
        let host = url
            .host_str()
            .ok_or_else(|| invalid("missing client pubkey"))?;
        let client = parse_pubkey(host).map_err(|e| invalid(e.to_string()))?;
        let mut out = Self {
            client,
            relays: Vec::new(),
            secret: None,
            perms: Vec::new(),
            name: None,
            url: None,
            image: None,
        };
        let mut legacy: Option<LegacyMetadata> = None;
        for (key, value) in url.query_pairs() {
            match key.as_ref() {
                "relay" => {
                    let relay = parse_relay(value.trim())?;
                    if !out.relays.contains(&relay) {
                        out.relays.push(relay);
                    }
                }
                "secret" => out.secret = non_empty(&value),
                "perms" => out.perms = perms::parse(&value)?,
                "name" => out.name = non_empty(&value),
                "url" => out.url = display_url(&value),
                "image" => out.image = display_url(&value),
                "metadata" => {
                    legacy = Some(
                        serde_json::from_str(&value)
                            .map_err(|e| invalid(format!("metadata: {e}")))?,
                    );
                }
                // Unknown keys are ignored so that future spec additions do not break us.
                _ => {}
            }
        }
        if let Some(meta) = legacy {
            out.name = out
                .name
                .or_else(|| meta.name.as_deref().and_then(non_empty));
            out.url = out
                .url
                .or_else(|| meta.url.as_deref().and_then(display_url));
            out.image = out.image.or_else(|| {
                meta.icons
                    .as_deref()
                    .and_then(|i| i.first())
                    .and_then(|s| display_url(s))
            });
        }
        if out.relays.is_empty() {
            return Err(invalid("a nostrconnect URI needs at least one relay"));
        }
        Ok(out)
    }
}

impl fmt::Debug for NostrConnectUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NostrConnectUri")
            .field("client", &self.client)
            .field("relays", &self.relays)
            .field("secret", &self.secret.as_ref().map(|_| "[REDACTED]"))
            .field("perms", &self.perms)
            .field("name", &self.name)
            .field("url", &self.url)
            .field("image", &self.image)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by the `nip46_response` fuzz target: `RelayUrl::parse` takes `wss:/x/y://z` as
    /// `wss://x/y://z`, which does not parse again, so pairing would store a relay that
    /// makes the authorization's row unreadable.
    #[test]
    fn relays_that_do_not_read_back_are_refused() {
        let pk = "79be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798";
        for relay in [
            "wss:/x/y://z",
            "wss:%2Fx%2Fy%3A%2F%2Fz",
            "wss:'/r.example://relay.example",
        ] {
            let uri = format!("nostrconnect://{pk}?relay={relay}");
            assert!(
                matches!(NostrConnectUri::parse(&uri), Err(Error::InvalidUri { .. })),
                "{uri}"
            );
        }
        assert!(parse_relay("wss:/x/y://z").is_err());
        for ok in [
            "wss://relay.example",
            "ws://77rs//",
            "wss://relay.example/nostr/",
        ] {
            let relay = parse_relay(ok).expect(ok);
            assert_eq!(RelayUrl::parse(relay.as_str()).as_ref(), Ok(&relay));
        }
    }
}
