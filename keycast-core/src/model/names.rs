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
string_newtype_impls!(TenantName, Username, Label);

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
