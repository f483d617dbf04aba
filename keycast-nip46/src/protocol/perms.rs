//! The NIP-46 `perms` string (`connect` param 3, `nostrconnect://` `perms=`): a
//! comma-separated list of `method[:param]`, e.g. `sign_event:1,nip44_encrypt`.
//!
//! # Mapping onto keycast policy permissions
//!
//! A keycast policy is an AND of [`Permission`]s, and the current enum cannot say
//! everything a `perms` string can. [`to_policy`] returns the closest policy that allows
//! everything requested, plus the [`Gap`]s where it allows more:
//!
//! | requested                                  | permissions                     | gaps |
//! |--------------------------------------------|---------------------------------|------|
//! | `sign_event` (no kind)                     | no kind restriction             | none |
//! | only `sign_event:<k>` entries              | `AllowedKinds { k… }`           | none |
//! | no `sign_event`, but some encrypt          | no kind restriction (an empty `AllowedKinds` is invalid) | [`Gap::SigningAllowed`] |
//! | only decrypt methods (no sign, no encrypt) | `DecryptOnly`                   | none |
//! | encrypt without decrypt                    | —                               | [`Gap::DecryptAllowed`] |
//! | decrypt and sign, no encrypt               | —                               | [`Gap::EncryptAllowed`] |
//! | no encrypt/decrypt at all                  | —                               | [`Gap::CryptoAllowed`] |
//! | only one of nip04/nip44                    | —                               | [`Gap::OtherSchemeAllowed`] |
//! | `get_public_key`, `ping`, `connect`, `switch_relays`, `logout` | nothing: always allowed | none |
//! | a method this build does not know          | nothing                         | [`Gap::UnknownMethod`] |
//!
//! If nothing restricts, the result is `[FullAccess]` (a policy must say it explicitly).
//! Callers that refuse gaps can show them to the user or deny the connection.

use std::collections::BTreeSet;

use keycast_core::Permission;

use crate::protocol::error::{Error, Result};

/// Longest `perms` string accepted, in bytes.
pub const MAX_PERMS_BYTES: usize = 4096;

/// A method named in `perms`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum PermMethod {
    /// `connect`
    Connect,
    /// `get_public_key`
    GetPublicKey,
    /// `sign_event`
    SignEvent,
    /// `ping`
    Ping,
    /// `nip04_encrypt`
    Nip04Encrypt,
    /// `nip04_decrypt`
    Nip04Decrypt,
    /// `nip44_encrypt`
    Nip44Encrypt,
    /// `nip44_decrypt`
    Nip44Decrypt,
    /// `switch_relays`
    SwitchRelays,
    /// `logout`
    Logout,
    /// A well-formed name this build does not know (clients ask for e.g. `get_relays`);
    /// kept rather than refused so one extra entry does not break pairing.
    Other(String),
}

impl PermMethod {
    fn from_name(name: &str) -> Self {
        match name {
            "connect" => PermMethod::Connect,
            "get_public_key" => PermMethod::GetPublicKey,
            "sign_event" => PermMethod::SignEvent,
            "ping" => PermMethod::Ping,
            "nip04_encrypt" => PermMethod::Nip04Encrypt,
            "nip04_decrypt" => PermMethod::Nip04Decrypt,
            "nip44_encrypt" => PermMethod::Nip44Encrypt,
            "nip44_decrypt" => PermMethod::Nip44Decrypt,
            "switch_relays" => PermMethod::SwitchRelays,
            "logout" => PermMethod::Logout,
            other => PermMethod::Other(other.to_owned()),
        }
    }
}

/// One `method[:kind]` entry.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PermEntry {
    /// The method.
    pub method: PermMethod,
    /// The event kind, only for `sign_event:<kind>`.
    pub kind: Option<u16>,
}

/// Parses a `perms` string. Whitespace around entries and empty entries (`a,,b`, a
/// trailing comma) are tolerated; anything else malformed is refused.
pub fn parse(perms: &str) -> Result<Vec<PermEntry>> {
    if perms.len() > MAX_PERMS_BYTES {
        return Err(invalid(perms, "perms string too long"));
    }
    let mut out = Vec::new();
    for raw in perms.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let (name, param) = match raw.split_once(':') {
            Some((n, p)) => (n, Some(p)),
            None => (raw, None),
        };
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        {
            return Err(invalid(
                raw,
                "method must be lowercase letters, digits or _",
            ));
        }
        let method = PermMethod::from_name(name);
        let kind = match (param, &method) {
            (None, _) => None,
            (Some(k), PermMethod::SignEvent) => Some(
                k.parse::<u16>()
                    .map_err(|_| invalid(raw, "sign_event kind must be 0 to 65535"))?,
            ),
            (Some(_), _) => return Err(invalid(raw, "only sign_event takes a parameter")),
        };
        out.push(PermEntry { method, kind });
    }
    Ok(out)
}

fn invalid(entry: &str, reason: &'static str) -> Error {
    Error::InvalidPerms {
        entry: entry.chars().take(64).collect(),
        reason,
    }
}

/// Where the policy from [`to_policy`] allows more than was requested.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Gap {
    /// Signing was not requested but cannot be denied without also denying encryption.
    SigningAllowed,
    /// Encryption was requested without decryption; decryption is allowed too.
    DecryptAllowed,
    /// Decryption was requested with signing but without encryption; encryption is allowed.
    EncryptAllowed,
    /// No encrypt/decrypt method was requested; both are allowed.
    CryptoAllowed,
    /// Only one of NIP-04/NIP-44 was requested; permissions do not tell them apart.
    OtherSchemeAllowed,
    /// A method this build does not know; nothing maps to it.
    UnknownMethod(String),
}

/// The policy permissions for a `perms` list, and what they allow beyond it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyMapping {
    /// Never empty; `[FullAccess]` when nothing restricts.
    pub permissions: Vec<Permission>,
    /// Sorted, without duplicates.
    pub gaps: Vec<Gap>,
}

/// Maps `perms` entries onto keycast permissions; see the module docs for the table.
pub fn to_policy(entries: &[PermEntry]) -> PolicyMapping {
    let has = |m: PermMethod| entries.iter().any(|e| e.method == m);
    let sign_any = entries
        .iter()
        .any(|e| e.method == PermMethod::SignEvent && e.kind.is_none());
    let kinds: BTreeSet<u16> = entries
        .iter()
        .filter(|e| e.method == PermMethod::SignEvent)
        .filter_map(|e| e.kind)
        .collect();
    let sign = sign_any || !kinds.is_empty();
    let (enc04, enc44) = (has(PermMethod::Nip04Encrypt), has(PermMethod::Nip44Encrypt));
    let (dec04, dec44) = (has(PermMethod::Nip04Decrypt), has(PermMethod::Nip44Decrypt));
    let (enc, dec) = (enc04 || enc44, dec04 || dec44);

    let mut permissions = Vec::new();
    let mut gaps = BTreeSet::new();
    if !sign && !enc && dec {
        permissions.push(Permission::DecryptOnly);
    } else {
        if !sign_any && !kinds.is_empty() {
            permissions.push(Permission::AllowedKinds { kinds });
        }
        if !sign {
            gaps.insert(Gap::SigningAllowed);
        }
        match (enc, dec) {
            (false, false) => {
                gaps.insert(Gap::CryptoAllowed);
            }
            (true, false) => {
                gaps.insert(Gap::DecryptAllowed);
            }
            (false, true) => {
                gaps.insert(Gap::EncryptAllowed);
            }
            (true, true) => {}
        }
    }
    if (enc || dec) && ((enc04 || dec04) != (enc44 || dec44)) {
        gaps.insert(Gap::OtherSchemeAllowed);
    }
    for e in entries {
        if let PermMethod::Other(name) = &e.method {
            gaps.insert(Gap::UnknownMethod(name.clone()));
        }
    }
    if permissions.is_empty() {
        permissions.push(Permission::FullAccess);
    }
    PolicyMapping {
        permissions,
        gaps: gaps.into_iter().collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_kinds_become_allowed_kinds() {
        let m = to_policy(
            &parse("sign_event:1, sign_event:7,nip44_encrypt,nip44_decrypt").unwrap_or_default(),
        );
        assert_eq!(
            m.permissions,
            vec![Permission::AllowedKinds {
                kinds: [1, 7].into_iter().collect()
            }]
        );
        // Only NIP-44 was asked for, but permissions cannot tell the schemes apart.
        assert_eq!(m.gaps, vec![Gap::OtherSchemeAllowed]);
    }
}
