//! The `scope` of an authorization request: NIP-46 `perms` entries separated by spaces
//! (commas work too), e.g. `get_public_key sign_event:1 nip44_encrypt nip44_decrypt`.
//!
//! The policy is keycast-nip46's `perms` mapping, so OAuth and `nostrconnect://` pairing
//! grant the same for the same words. Where keycast's permissions cannot hold an app to
//! exactly what it asked (the mapping's gaps), the consent page says what it can also do.
//!
//! A missing or empty scope is refused (`invalid_scope`, RFC 6749 §3.3) rather than given
//! a default: the narrowest request, `get_public_key`, maps to full access (no keycast
//! permission allows only reading the public key), and granting that to an app that did
//! not ask would be silent full access.

use std::collections::BTreeSet;

use keycast_core::Permission;
use keycast_nip46::perms;
use keycast_nip46::{Gap, PermEntry, PermMethod, PolicyMapping};

/// Longest scope accepted, in bytes.
pub(crate) const MAX_SCOPE_BYTES: usize = 1024;

/// A parsed, understood scope.
#[derive(Debug, Clone)]
pub(crate) struct Scope {
    /// Sorted, without duplicates.
    entries: Vec<PermEntry>,
    mapping: PolicyMapping,
}

impl Scope {
    /// Parses `scope`; the error is an `error_description`.
    pub(crate) fn parse(scope: Option<&str>) -> Result<Self, String> {
        let scope = scope.unwrap_or("");
        if scope.len() > MAX_SCOPE_BYTES {
            return Err(format!("scope is longer than {MAX_SCOPE_BYTES} bytes"));
        }
        let mut entries = BTreeSet::new();
        for token in scope.split(' ').filter(|t| !t.is_empty()) {
            let parsed = perms::parse(token).map_err(|e| format!("scope: {e}"))?;
            for entry in parsed {
                if let PermMethod::Other(name) = &entry.method {
                    let name: String = name.chars().take(64).collect();
                    return Err(format!("scope: unknown permission {name:?}"));
                }
                entries.insert(entry);
            }
        }
        if entries.is_empty() {
            return Err(
                "scope is required: name the permissions the app needs, e.g. \
                 \"get_public_key sign_event:1 nip44_encrypt nip44_decrypt\""
                    .into(),
            );
        }
        Ok(Self::from_perms(entries))
    }

    /// The `perms` of a `nostrconnect://` URI as they are: unlike a scope, none at all
    /// (full access, as a NIP-46 `connect` without perms) and unknown methods (listed by
    /// [`Self::unsupported`]) are accepted, so one odd entry does not block pairing.
    pub(crate) fn from_perms(entries: impl IntoIterator<Item = PermEntry>) -> Self {
        let entries: Vec<PermEntry> = entries
            .into_iter()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let mapping = perms::to_policy(&entries);
        Self { entries, mapping }
    }

    /// Whether nothing was asked for.
    pub(crate) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Methods asked for that keycast does not know (it answers them with an error).
    pub(crate) fn unsupported(&self) -> Vec<String> {
        self.entries
            .iter()
            .filter_map(|e| match &e.method {
                PermMethod::Other(name) => Some(name.chars().take(64).collect()),
                _ => None,
            })
            .collect()
    }

    /// The policy permissions to create.
    pub(crate) fn permissions(&self) -> Vec<Permission> {
        self.mapping.permissions.clone()
    }

    /// Whether the policy allows everything.
    pub(crate) fn full_access(&self) -> bool {
        self.mapping.permissions == [Permission::FullAccess]
    }

    /// What the app asked for, one plain sentence each.
    pub(crate) fn requested_words(&self) -> Vec<String> {
        let has = |m: PermMethod| self.entries.iter().any(|e| e.method == m);
        let mut out = Vec::new();
        if has(PermMethod::GetPublicKey) {
            out.push("See your public key (who you are on Nostr)".to_owned());
        }
        let kinds: Vec<u16> = self
            .entries
            .iter()
            .filter(|e| e.method == PermMethod::SignEvent)
            .filter_map(|e| e.kind)
            .collect();
        let sign_any = self
            .entries
            .iter()
            .any(|e| e.method == PermMethod::SignEvent && e.kind.is_none());
        if sign_any {
            out.push(
                "Sign events of any kind (notes, reactions, profile and follow-list changes, anything)"
                    .to_owned(),
            );
        } else {
            out.extend(kinds.iter().map(|k| match kind_name(*k) {
                Some(name) => format!("Sign events of kind {k} ({name})"),
                None => format!("Sign events of kind {k}"),
            }));
        }
        for (nip, enc, dec, note) in [
            (
                "NIP-44",
                PermMethod::Nip44Encrypt,
                PermMethod::Nip44Decrypt,
                "",
            ),
            (
                "NIP-04",
                PermMethod::Nip04Encrypt,
                PermMethod::Nip04Decrypt,
                " (older direct messages)",
            ),
        ] {
            let verb = match (has(enc), has(dec)) {
                (true, true) => "Encrypt and decrypt",
                (true, false) => "Encrypt",
                (false, true) => "Decrypt",
                (false, false) => continue,
            };
            out.push(format!("{verb} messages with {nip}{note}"));
        }
        let session = [
            PermMethod::Connect,
            PermMethod::Ping,
            PermMethod::SwitchRelays,
            PermMethod::Logout,
        ];
        if session.into_iter().any(has) {
            out.push("Keep a NIP-46 connection (connect, ping, switch relays, log out)".to_owned());
        }
        out
    }

    /// What the app will also be able to do because keycast cannot restrict it further.
    pub(crate) fn extra_words(&self) -> Vec<String> {
        self.mapping
            .gaps
            .iter()
            .filter(|gap| !matches!(gap, Gap::UnknownMethod(_)))
            .map(|gap| {
                match gap {
                    Gap::SigningAllowed => "Sign events of any kind",
                    Gap::CryptoAllowed => "Encrypt and decrypt messages with NIP-44 and NIP-04",
                    Gap::DecryptAllowed => "Decrypt messages",
                    Gap::EncryptAllowed => "Encrypt messages",
                    Gap::OtherSchemeAllowed => {
                        "Use both NIP-44 and NIP-04, not only the one it asked for"
                    }
                    _ => "More than it asked for, in ways keycast cannot limit",
                }
                .to_owned()
            })
            .collect()
    }
}

/// The scope an authorization's policy grants, at most (content filters, limits and
/// encrypt-to-self narrow it further but have no scope words).
pub(crate) fn granted(permissions: &[Permission]) -> String {
    let decrypt_only = permissions.contains(&Permission::DecryptOnly);
    let mut kinds: Option<BTreeSet<u16>> = None;
    for p in permissions {
        if let Permission::AllowedKinds { kinds: k } = p {
            kinds = Some(match kinds {
                None => k.clone(),
                Some(prev) => prev.intersection(k).copied().collect(),
            });
        }
    }
    let mut out = vec!["get_public_key".to_owned()];
    if !decrypt_only {
        match kinds {
            None => out.push("sign_event".to_owned()),
            Some(kinds) => out.extend(kinds.iter().map(|k| format!("sign_event:{k}"))),
        }
        out.push("nip04_encrypt".to_owned());
        out.push("nip44_encrypt".to_owned());
    }
    out.push("nip04_decrypt".to_owned());
    out.push("nip44_decrypt".to_owned());
    out.join(" ")
}

/// Common event kinds, for the consent page.
fn kind_name(kind: u16) -> Option<&'static str> {
    Some(match kind {
        0 => "profile metadata",
        1 => "short text notes",
        3 => "follow list",
        4 => "encrypted direct messages, NIP-04",
        5 => "deletion requests",
        6 => "reposts",
        7 => "reactions",
        13 => "seals",
        14 => "private chat messages",
        16 => "generic reposts",
        1059 => "gift wraps",
        1984 => "reports",
        9734 => "zap requests",
        10000 => "mute list",
        10002 => "relay list",
        22242 => "relay authentication",
        24133 => "Nostr Connect messages",
        27235 => "HTTP authentication, NIP-98",
        30023 => "long-form articles",
        30078 => "application data",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_name_what_was_asked_and_what_comes_with_it() {
        let s = Scope::parse(Some(
            "sign_event:1  nip44_encrypt nip44_decrypt get_public_key sign_event:1",
        ))
        .expect("scope");
        assert_eq!(
            s.requested_words(),
            vec![
                "See your public key (who you are on Nostr)",
                "Sign events of kind 1 (short text notes)",
                "Encrypt and decrypt messages with NIP-44",
            ]
        );
        assert_eq!(
            s.extra_words(),
            vec!["Use both NIP-44 and NIP-04, not only the one it asked for"]
        );
        assert_eq!(
            s.permissions(),
            vec![Permission::AllowedKinds { kinds: [1].into() }]
        );
        assert!(!s.full_access());
        assert_eq!(
            granted(&s.permissions()),
            "get_public_key sign_event:1 nip04_encrypt nip44_encrypt nip04_decrypt nip44_decrypt"
        );
    }

    #[test]
    fn the_public_key_alone_is_full_access_and_says_so() {
        let s = Scope::parse(Some("get_public_key")).expect("scope");
        assert!(s.full_access());
        assert_eq!(
            s.extra_words(),
            vec![
                "Sign events of any kind",
                "Encrypt and decrypt messages with NIP-44 and NIP-04"
            ]
        );
        let d = Scope::parse(Some("nip44_decrypt")).expect("scope");
        assert_eq!(
            granted(&d.permissions()),
            "get_public_key nip04_decrypt nip44_decrypt"
        );
    }

    #[test]
    fn nostrconnect_perms_may_be_empty_or_unknown() {
        let none = Scope::from_perms([]);
        assert!(none.is_empty() && none.full_access());
        let entries = perms::parse("get_relays,sign_event:1,sign_event:1").expect("perms");
        let s = Scope::from_perms(entries);
        assert_eq!(s.unsupported(), vec!["get_relays"]);
        assert!(!s.extra_words().iter().any(|w| w.contains("More than")));
        assert_eq!(
            s.permissions(),
            vec![Permission::AllowedKinds { kinds: [1].into() }]
        );
    }

    #[test]
    fn bad_scopes_are_refused() {
        for bad in [
            None,
            Some(""),
            Some("   "),
            Some("sign_event:x"),
            Some("sign_event:70000"),
            Some("get_relays"),
            Some("Sign_Event"),
            Some("<script>"),
            Some("nip44_encrypt:1"),
        ] {
            assert!(Scope::parse(bad).is_err(), "{bad:?}");
        }
        assert!(
            Scope::parse(Some(&"ping ".repeat(300))).is_err(),
            "too long"
        );
    }
}
