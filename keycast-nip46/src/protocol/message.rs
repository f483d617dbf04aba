//! NIP-46 requests (`{"id","method","params"}`) and responses (`{"id","result","error"}`),
//! as they appear after decryption.

use std::fmt;

use keycast_core::{parse_pubkey, EventTemplate, Request};
use nostr::PublicKey;
use serde_json::{Map, Value};

use crate::protocol::error::{Error, Result};

/// Largest decrypted request accepted, in bytes. NIP-44 caps plaintext at 65 535 bytes, but
/// NIP-04 has no cap; big contact lists signed over NIP-04 stay well below this.
pub const MAX_REQUEST_BYTES: usize = 512 * 1024;

/// Longest request id accepted. The id is echoed in the reply, so a huge one would let a
/// client amplify traffic; real clients send short random strings.
pub const MAX_ID_BYTES: usize = 256;

/// A parsed NIP-46 request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nip46Request {
    /// Echoed in the reply.
    pub id: String,
    /// What the client asks for.
    pub command: Command,
}

/// A NIP-46 method with its typed params.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Command {
    /// `connect [remote, secret?, perms?]`.
    Connect {
        /// First param as sent. Clients send the signer pubkey, the user pubkey or `""`;
        /// check it with [`connect_target_ok`].
        remote: String,
        /// Connection secret; `None` when absent, null or empty.
        secret: Option<String>,
        /// Raw `perms` string; `None` when absent, null or empty. Parse with
        /// [`crate::protocol::perms::parse`].
        perms: Option<String>,
    },
    /// `get_public_key []`.
    GetPublicKey,
    /// `sign_event [template-json]`.
    SignEvent(EventTemplate),
    /// `ping []`.
    Ping,
    /// `nip04_encrypt [peer, plaintext]`.
    Nip04Encrypt {
        /// Recipient.
        peer: PublicKey,
        /// Message.
        plaintext: String,
    },
    /// `nip04_decrypt [peer, ciphertext]`.
    Nip04Decrypt {
        /// Sender.
        peer: PublicKey,
        /// `base64?iv=base64`.
        ciphertext: String,
    },
    /// `nip44_encrypt [peer, plaintext]`.
    Nip44Encrypt {
        /// Recipient.
        peer: PublicKey,
        /// Message.
        plaintext: String,
    },
    /// `nip44_decrypt [peer, ciphertext]`.
    Nip44Decrypt {
        /// Sender.
        peer: PublicKey,
        /// Base64 payload.
        ciphertext: String,
    },
    /// `switch_relays []`.
    SwitchRelays,
    /// `logout []`.
    Logout,
    /// Any other method; kept so an error reply can still be sent with the id.
    Unknown(String),
}

impl Command {
    /// Parses a method and its params as NIP-46 sends them (used by HTTP RPC, which has
    /// the same methods without the envelope). Unknown methods give [`Command::Unknown`].
    pub fn parse(method: &str, params: &[Value]) -> Result<Self> {
        parse_command("", method, params)
    }

    /// The custody operation this command asks for, or the command back when it is about
    /// the session (`connect`, `ping`, `switch_relays`, `logout`) or unknown.
    pub fn into_request(self) -> std::result::Result<Request, Box<Command>> {
        Ok(match self {
            Command::GetPublicKey => Request::GetPublicKey,
            Command::SignEvent(t) => Request::SignEvent(t),
            Command::Nip04Encrypt { peer, plaintext } => Request::Nip04Encrypt { peer, plaintext },
            Command::Nip04Decrypt { peer, ciphertext } => {
                Request::Nip04Decrypt { peer, ciphertext }
            }
            Command::Nip44Encrypt { peer, plaintext } => Request::Nip44Encrypt { peer, plaintext },
            Command::Nip44Decrypt { peer, ciphertext } => {
                Request::Nip44Decrypt { peer, ciphertext }
            }
            other => return Err(Box::new(other)),
        })
    }

    /// The NIP-46 method name (for `Unknown`, the name as sent).
    pub fn method(&self) -> &str {
        match self {
            Command::Connect { .. } => "connect",
            Command::GetPublicKey => "get_public_key",
            Command::SignEvent(_) => "sign_event",
            Command::Ping => "ping",
            Command::Nip04Encrypt { .. } => "nip04_encrypt",
            Command::Nip04Decrypt { .. } => "nip04_decrypt",
            Command::Nip44Encrypt { .. } => "nip44_encrypt",
            Command::Nip44Decrypt { .. } => "nip44_decrypt",
            Command::SwitchRelays => "switch_relays",
            Command::Logout => "logout",
            Command::Unknown(m) => m,
        }
    }
}

impl fmt::Debug for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            // EventTemplate's Debug already hides content.
            Command::SignEvent(t) => f.debug_tuple("SignEvent").field(t).finish(),
            Command::Unknown(m) => f.debug_tuple("Unknown").field(m).finish(),
            // Secrets, messages and peers are not for logs; show the method only.
            other => f.write_str(other.method()),
        }
    }
}

/// Whether the first `connect` param names this bunker. Real clients send the signer
/// pubkey (per spec), the user pubkey, or `""`; all three are accepted. Hex or `npub`.
pub fn connect_target_ok(remote: &str, signer: &PublicKey, user: &PublicKey) -> bool {
    if remote.trim().is_empty() {
        return true;
    }
    match parse_pubkey(remote) {
        Ok(pk) => pk == *signer || pk == *user,
        Err(_) => false,
    }
}

impl Nip46Request {
    /// Parses a decrypted request.
    ///
    /// Written here rather than with `nostr::nips::nip46::NostrConnectMessage`, which
    /// rejects a `connect` whose first param is `""` or not a pubkey, and an unknown method
    /// without giving back the id; real clients need both (design §10).
    pub fn parse(json: &str) -> Result<Self> {
        if json.len() > MAX_REQUEST_BYTES {
            return Err(Error::TooLarge {
                len: json.len(),
                max: MAX_REQUEST_BYTES,
            });
        }
        let value: Value = serde_json::from_str(json).map_err(|e| Error::Malformed {
            id: None,
            reason: format!("not JSON: {e}"),
        })?;
        let Value::Object(obj) = value else {
            return Err(malformed(None, "not a JSON object"));
        };
        let id = read_id(&obj)?;
        let method = match obj.get("method") {
            Some(Value::String(m)) => m.as_str(),
            _ => return Err(malformed(Some(&id), "method must be a string")),
        };
        let params: &[Value] = match obj.get("params") {
            Some(Value::Array(p)) => p,
            // Lenient: a missing or null `params` is read as `[]`.
            None | Some(Value::Null) => &[],
            Some(_) => return Err(malformed(Some(&id), "params must be an array")),
        };
        let command = parse_command(&id, method, params)?;
        Ok(Self { id, command })
    }
}

fn malformed(id: Option<&str>, reason: &str) -> Error {
    Error::Malformed {
        id: id.map(str::to_owned),
        reason: reason.to_owned(),
    }
}

fn read_id(obj: &Map<String, Value>) -> Result<String> {
    match obj.get("id") {
        Some(Value::String(id)) if id.is_empty() => Err(malformed(None, "id is empty")),
        Some(Value::String(id)) if id.len() > MAX_ID_BYTES => {
            Err(malformed(None, "id is too long"))
        }
        Some(Value::String(id)) => Ok(id.clone()),
        // A numeric id would come back as a string and not match the client's; no reply.
        _ => Err(malformed(None, "id must be a string")),
    }
}

/// Reads the params of one known method.
struct Params<'a> {
    id: &'a str,
    method: &'static str,
    params: &'a [Value],
}

impl<'a> Params<'a> {
    fn invalid(&self, reason: impl Into<String>) -> Error {
        Error::InvalidParams {
            id: self.id.to_owned(),
            method: self.method,
            reason: reason.into(),
        }
    }

    fn arity(&self, min: usize, max: usize) -> Result<()> {
        let n = self.params.len();
        if n < min || n > max {
            let want = if min == max {
                format!("{min}")
            } else {
                format!("{min} to {max}")
            };
            return Err(self.invalid(format!("expected {want} params, got {n}")));
        }
        Ok(())
    }

    fn string(&self, i: usize) -> Result<&'a str> {
        match self.params.get(i) {
            Some(Value::String(s)) => Ok(s),
            _ => Err(self.invalid(format!("param {i} must be a string"))),
        }
    }

    /// An optional string param: absent, null and `""` are all `None`.
    fn opt_string(&self, i: usize) -> Result<Option<String>> {
        match self.params.get(i) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if s.is_empty() => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(self.invalid(format!("param {i} must be a string"))),
        }
    }

    fn argument(&self, source: keycast_core::Error) -> Error {
        Error::InvalidArgument {
            id: self.id.to_owned(),
            method: self.method,
            source,
        }
    }

    fn peer_and_text(&self) -> Result<(PublicKey, String)> {
        self.arity(2, 2)?;
        let peer = parse_pubkey(self.string(0)?).map_err(|e| self.argument(e))?;
        Ok((peer, self.string(1)?.to_owned()))
    }

    fn template(&self) -> Result<EventTemplate> {
        self.arity(1, 1)?;
        let parsed = match self.params.first() {
            Some(Value::String(s)) => EventTemplate::from_json(s),
            // Lenient: a few clients send the template as an object instead of a string.
            Some(obj @ Value::Object(_)) => EventTemplate::from_json(&obj.to_string()),
            _ => return Err(self.invalid("param 0 must be an event template JSON string")),
        };
        parsed.map_err(|e| self.argument(e))
    }
}

fn parse_command(id: &str, method: &str, params: &[Value]) -> Result<Command> {
    let Some(name) = known_method(method) else {
        return Ok(Command::Unknown(method.to_owned()));
    };
    let p = Params {
        id,
        method: name,
        params,
    };
    Ok(match name {
        "connect" => {
            p.arity(1, 3)?;
            Command::Connect {
                remote: p.string(0)?.to_owned(),
                secret: p.opt_string(1)?,
                perms: p.opt_string(2)?,
            }
        }
        "sign_event" => Command::SignEvent(p.template()?),
        "nip04_encrypt" => {
            let (peer, plaintext) = p.peer_and_text()?;
            Command::Nip04Encrypt { peer, plaintext }
        }
        "nip04_decrypt" => {
            let (peer, ciphertext) = p.peer_and_text()?;
            Command::Nip04Decrypt { peer, ciphertext }
        }
        "nip44_encrypt" => {
            let (peer, plaintext) = p.peer_and_text()?;
            Command::Nip44Encrypt { peer, plaintext }
        }
        "nip44_decrypt" => {
            let (peer, ciphertext) = p.peer_and_text()?;
            Command::Nip44Decrypt { peer, ciphertext }
        }
        no_params => {
            p.arity(0, 0)?;
            match no_params {
                "get_public_key" => Command::GetPublicKey,
                "ping" => Command::Ping,
                "switch_relays" => Command::SwitchRelays,
                _ => Command::Logout,
            }
        }
    })
}

/// The known method names, as `'static` strings for error values.
fn known_method(method: &str) -> Option<&'static str> {
    const KNOWN: [&str; 10] = [
        "connect",
        "get_public_key",
        "sign_event",
        "ping",
        "nip04_encrypt",
        "nip04_decrypt",
        "nip44_encrypt",
        "nip44_decrypt",
        "switch_relays",
        "logout",
    ];
    KNOWN.into_iter().find(|k| *k == method)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_plaintext() {
        let req = Nip46Request::parse(
            r#"{"id":"1","method":"nip44_encrypt","params":["79be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798","secret words"]}"#,
        );
        let shown = format!("{req:?}");
        assert!(shown.contains("nip44_encrypt"), "{shown}");
        assert!(!shown.contains("secret words"), "{shown}");
    }
}
