//! Validated names. Each constructor checks its input once; holders can rely on it.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// A tenant's slug: 1–63 of `a-z 0-9 . -`, as in a DNS label list.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TenantName(String);

impl TenantName {
    /// Validates and lower-cases `s`.
    pub fn parse(s: &str) -> Result<Self> {
        let s = s.trim().to_ascii_lowercase();
        let ok = (1..=63).contains(&s.len())
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-');
        if !ok {
            return Err(Error::invalid(
                "tenant name",
                "use 1-63 of a-z, 0-9, '.', '-'",
            ));
        }
        Ok(Self(s))
    }
}

/// A login name: 1–64 of `a-z 0-9 . _ -`, case-folded to lower case.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Username(String);

impl Username {
    /// Validates and lower-cases `s`.
    pub fn parse(s: &str) -> Result<Self> {
        let s = s.trim().to_ascii_lowercase();
        let ok = (1..=64).contains(&s.len())
            && s.bytes().all(|b| {
                b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-')
            });
        if !ok {
            return Err(Error::invalid(
                "username",
                "use 1-64 of a-z, 0-9, '.', '_', '-'",
            ));
        }
        Ok(Self(s))
    }
}

/// A human label for a key or an authorization: 1–100 characters, no control characters.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Label(String);

impl Label {
    /// Validates `s` after trimming surrounding white space.
    pub fn parse(s: &str) -> Result<Self> {
        let s = s.trim();
        let n = s.chars().count();
        if !(1..=100).contains(&n) || s.chars().any(char::is_control) {
            return Err(Error::invalid(
                "label",
                "use 1-100 characters, no control characters",
            ));
        }
        Ok(Self(s.to_owned()))
    }
}

macro_rules! string_newtype_impls {
    ($($name:ident),*) => {$(
        impl $name {
            /// The validated text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }
        impl TryFrom<String> for $name {
            type Error = Error;
            fn try_from(s: String) -> Result<Self> {
                Self::parse(&s)
            }
        }
        impl From<$name> for String {
            fn from(v: $name) -> String {
                v.0
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "({:?})"), self.0)
            }
        }
    )*};
}
string_newtype_impls!(TenantName, TenantHost, Username, Label);

/// A host name a tenant is served at (the `Host` header without its port): a DNS name of
/// 1–253 characters in labels of 1–63 `a-z 0-9 -` (not starting or ending with `-`), or
/// an IPv6 literal in brackets; lower-cased, and a trailing dot dropped.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TenantHost(String);

impl TenantHost {
    /// Validates and lower-cases a host name (no port).
    pub fn parse(s: &str) -> Result<Self> {
        let s = s.trim().to_ascii_lowercase();
        let s = s.strip_suffix('.').unwrap_or(&s);
        let ok = match s.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
            Some(inner) => inner.parse::<std::net::Ipv6Addr>().is_ok(),
            None => {
                (1..=253).contains(&s.len())
                    && s.split('.').all(|label| {
                        (1..=63).contains(&label.len())
                            && !label.starts_with('-')
                            && !label.ends_with('-')
                            && label
                                .bytes()
                                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                    })
            }
        };
        if !ok {
            return Err(Error::invalid(
                "host",
                "use a DNS name (labels of a-z, 0-9, '-') or a bracketed IPv6 address, without a port",
            ));
        }
        Ok(Self(s.to_owned()))
    }

    /// The host of an HTTP `Host` header or URI authority: `name[:port]` or `[v6][:port]`.
    pub fn from_authority(authority: &str) -> Result<Self> {
        let bad_port = || Error::invalid("host", "the port must be 1-5 digits");
        let port_ok = |p: &str| (1..=5).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit());
        let host = if authority.starts_with('[') {
            let end = authority.find(']').map_or(authority.len(), |i| i + 1);
            let (host, rest) = authority.split_at(end);
            match rest.strip_prefix(':') {
                Some(p) if port_ok(p) => host,
                None if rest.is_empty() => host,
                _ => return Err(bad_port()),
            }
        } else {
            match authority.split_once(':') {
                Some((host, p)) if port_ok(p) => host,
                Some(_) => return Err(bad_port()),
                None => authority,
            }
        };
        Self::parse(host)
    }
}

/// An account's e-mail address, the login name of accounts that register over HTTP:
/// at most 254 bytes, one `@` with a non-empty local part (≤ 64) and a dotted domain,
/// no white space or control characters; lower-cased, so lookups ignore case. `Debug`
/// redacts it (it identifies a person; logs must not carry it).
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Email(String);

impl Email {
    /// Validates and lower-cases `s`.
    pub fn parse(s: &str) -> Result<Self> {
        let s = s.trim().to_lowercase();
        let valid = s.len() <= 254
            && !s.chars().any(|c| c.is_whitespace() || c.is_control())
            && match s.split_once('@') {
                Some((local, domain)) => {
                    (1..=64).contains(&local.len())
                        && !domain.contains('@')
                        && domain.contains('.')
                        && !domain.starts_with('.')
                        && !domain.ends_with('.')
                        && !domain.contains("..")
                }
                None => false,
            };
        if !valid {
            return Err(Error::invalid("email", "not an e-mail address"));
        }
        Ok(Self(s))
    }

    /// The address.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Email {
    type Error = Error;
    fn try_from(s: String) -> Result<Self> {
        Self::parse(&s)
    }
}

impl From<Email> for String {
    fn from(v: Email) -> String {
        v.0
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Email(<redacted>)")
    }
}

/// A PHC-format password hash (argon2id). Produced by the server; core only carries it.
#[derive(Clone, PartialEq, Eq)]
pub struct PasswordHash(String);

impl PasswordHash {
    /// Accepts a PHC string for argon2id (`$argon2id$...`).
    pub fn parse(s: &str) -> Result<Self> {
        if !s.starts_with("$argon2id$") || s.len() > 512 {
            return Err(Error::invalid(
                "password hash",
                "expected an argon2id PHC string",
            ));
        }
        Ok(Self(s.to_owned()))
    }
    /// The PHC string, for verification.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for PasswordHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PasswordHash(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_validated_and_case_folded() {
        let e = Email::parse("  Ann.Lee+nostr@Example.ORG ").expect("valid");
        assert_eq!(e.as_str(), "ann.lee+nostr@example.org");
        assert_eq!(format!("{e:?}"), "Email(<redacted>)");
        let long_local = format!("{}@example.org", "a".repeat(65));
        let long = format!("a@{}.org", "b".repeat(250));
        for bad in [
            "",
            "no-at",
            "@example.org",
            "a@",
            "a@b",
            "a@.b",
            "a@b.",
            "a@b..c",
            "a@b@c.d",
            "a b@c.d",
            "a\u{0}@c.d",
            &long_local,
            &long,
        ] {
            assert!(Email::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn tenant_hosts_are_validated_and_ports_dropped() {
        let host = |s: &str| TenantHost::from_authority(s).map(|h| h.to_string());
        assert_eq!(host("Keys.Example.COM"), Ok("keys.example.com".into()));
        assert_eq!(
            host("keys.example.com.:8443"),
            Ok("keys.example.com".into())
        );
        assert_eq!(host("127.0.0.1:3000"), Ok("127.0.0.1".into()));
        assert_eq!(host("[::1]:3000"), Ok("[::1]".into()));
        assert_eq!(host("localhost"), Ok("localhost".into()));
        let long_label = format!("{}.example", "a".repeat(64));
        let long = ["abc"; 64].join(".");
        for bad in [
            "",
            ":80",
            "a..b",
            "-a.example",
            "a-.example",
            "a_b.example",
            "ex ample",
            "a.example:",
            "a.example:http",
            "a.example:123456",
            "[::1",
            "[nope]",
            "[::1]x",
            "ünï.example",
            &long_label,
            &long,
        ] {
            assert!(TenantHost::from_authority(bad).is_err(), "{bad:?} accepted");
        }
        assert!(
            TenantHost::parse("a.example:80").is_err(),
            "parse takes no port"
        );
    }

    #[test]
    fn names_are_validated() {
        assert_eq!(
            Username::parse(" Alice ").map(|u| u.to_string()),
            Ok("alice".into())
        );
        for bad in ["", "a b", "ünï", &"x".repeat(65)] {
            assert!(Username::parse(bad).is_err(), "{bad:?} accepted");
        }
        assert!(TenantName::parse("example.com").is_ok());
        assert!(TenantName::parse("exa_mple").is_err());
        assert!(Label::parse("My phone").is_ok());
        assert!(Label::parse("bad\nlabel").is_err());
        assert!(Label::parse("   ").is_err());
        assert!(PasswordHash::parse("plaintext").is_err());
        let h = PasswordHash::parse("$argon2id$v=19$m=19456,t=2,p=1$abc$def").expect("valid PHC");
        assert!(!format!("{h:?}").contains("argon2id"));
    }
}
