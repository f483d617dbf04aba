//! NIP-46 replies: `{"id","result"}`, `{"id","error"}` and auth challenges.

use keycast_core::Response;
use nostr::{JsonUtil, RelayUrl};
use serde_json::{Map, Value};

/// The `result` string NIP-46 uses for a custody response: a hex pubkey, the signed
/// event's JSON, or the ciphertext or plaintext.
pub fn result_text(response: Response) -> keycast_core::Result<String> {
    Ok(match response {
        Response::PublicKey(pk) => pk.to_hex(),
        Response::Event(event) => event.as_json(),
        Response::Text(text) => text,
        _ => {
            return Err(keycast_core::Error::Internal(
                "a custody response with no NIP-46 form".into(),
            ))
        }
    })
}

/// A relay as replies name it: `wss://relay.example` for the root path, otherwise the URL
/// as parsed. Dropping every trailing slash (`as_str_without_trailing_slash`) would turn
/// `wss://relay.example/nostr/` into another URL.
fn relay_text(relay: &RelayUrl) -> &str {
    let url: &nostr::Url = relay.into();
    if url.path() == "/" && url.query().is_none() && url.fragment().is_none() {
        relay.as_str_without_trailing_slash()
    } else {
        url.as_str()
    }
}

/// A NIP-46 reply. Build with [`Nip46Response::ok`], [`Nip46Response::error`] or
/// [`Nip46Response::auth_url`]; serialise with [`Nip46Response::to_json`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nip46Response {
    /// The request id.
    pub id: String,
    /// `result`, omitted when `None`.
    pub result: Option<String>,
    /// `error`, omitted when `None`.
    pub error: Option<String>,
}

impl Nip46Response {
    /// A successful reply.
    pub fn ok(id: impl Into<String>, result: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            result: Some(result.into()),
            error: None,
        }
    }

    /// An error reply. It has no `result` at all (some clients read `result:""` as
    /// success), and an empty message is replaced because clients test `error` for
    /// truthiness.
    pub fn error(id: impl Into<String>, message: impl Into<String>) -> Self {
        let mut message = message.into();
        if message.trim().is_empty() {
            message = "error".to_owned();
        }
        Self {
            id: id.into(),
            result: None,
            error: Some(message),
        }
    }

    /// An auth challenge: `result:"auth_url"`, `error:<url>`.
    pub fn auth_url(id: impl Into<String>, url: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            result: Some("auth_url".to_owned()),
            error: Some(url.into()),
        }
    }

    /// The `switch_relays` reply: a JSON string, `"null"` when the relays stay as they are.
    pub fn switch_relays(id: impl Into<String>, relays: Option<&[RelayUrl]>) -> Self {
        let result = match relays {
            None => Value::Null,
            Some(list) => Value::Array(
                list.iter()
                    .map(|r| Value::String(relay_text(r).to_owned()))
                    .collect(),
            ),
        };
        Self::ok(id, result.to_string())
    }

    /// True for an error reply (not for an auth challenge).
    pub fn is_error(&self) -> bool {
        self.error.is_some() && self.result.is_none()
    }

    /// Whether this is an `auth_url` challenge (the client keeps waiting on the id).
    pub fn is_auth_url(&self) -> bool {
        self.result.as_deref() == Some("auth_url") && self.error.is_some()
    }

    /// The JSON text to encrypt and send.
    pub fn to_json(&self) -> String {
        let mut obj = Map::new();
        obj.insert("id".to_owned(), Value::String(self.id.clone()));
        if let Some(r) = &self.result {
            obj.insert("result".to_owned(), Value::String(r.clone()));
        }
        if let Some(e) = &self.error {
            obj.insert("error".to_owned(), Value::String(e.clone()));
        }
        // Display of a Value cannot fail, unlike serde_json::to_string.
        Value::Object(obj).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_serialise_as_nip46_expects() {
        assert_eq!(
            Nip46Response::ok("a", "ack").to_json(),
            r#"{"id":"a","result":"ack"}"#
        );
        assert_eq!(
            Nip46Response::error("a", "").to_json(),
            r#"{"error":"error","id":"a"}"#
        );
        let auth = Nip46Response::auth_url("a", "https://x.example/ok");
        assert!(!auth.is_error());
        assert_eq!(auth.result.as_deref(), Some("auth_url"));
        assert_eq!(
            Nip46Response::switch_relays("a", None).result.as_deref(),
            Some("null")
        );
    }

    /// Found by the `nip46_response` fuzz target: `wss://j///` was written as `wss://j`.
    #[test]
    fn switch_relays_names_each_relay_so_it_reads_back_the_same() {
        let relays: Vec<RelayUrl> = [
            "wss://j///",
            "wss://relay.example/nostr/",
            "wss://relay.example/",
            "ws://127.0.0.1:7777",
            "wss://relay.example/?key=a/",
        ]
        .iter()
        .map(|r| RelayUrl::parse(r).expect("relay"))
        .collect();
        let reply = Nip46Response::switch_relays("a", Some(&relays));
        let written: Vec<String> =
            serde_json::from_str(reply.result.as_deref().expect("result")).expect("JSON list");
        assert_eq!(written[2], "wss://relay.example");
        assert_eq!(written[3], "ws://127.0.0.1:7777");
        let back: Vec<RelayUrl> = written
            .iter()
            .map(|r| RelayUrl::parse(r).expect("relay"))
            .collect();
        assert_eq!(back, relays);
    }
}
