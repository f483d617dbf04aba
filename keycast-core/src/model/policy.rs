//! Policies and their permissions. Every permission of a policy must allow a request (AND).
//!
//! | permission       | sign_event                     | nip44/nip04 encrypt        | nip44/nip04 decrypt     | get_public_key |
//! |------------------|--------------------------------|----------------------------|-------------------------|----------------|
//! | `full_access`    | allow                          | allow                      | allow                   | allow          |
//! | `allowed_kinds`  | kind must be listed            | allow                      | allow                   | allow          |
//! | `content_filter` | content must not match         | plaintext must not match   | allow (plaintext unseen)| allow          |
//! | `encrypt_to_self`| allow                          | peer must be the key itself| peer must be the key    | allow          |
//! | `decrypt_only`   | deny                           | deny                       | allow                   | allow          |
//! | `expiry`         | deny at/after `not_after`      | same                       | same                    | same           |
//! | `max_uses`       | each call uses one             | same                       | same                    | free           |
//! | `rate_limit`     | each call takes a token        | same                       | same                    | free           |
//! | `require_approval`| waits for a person's decision | same                       | same                    | allow          |
//! | unrecognized     | deny                           | deny                       | deny                    | deny           |
//!
//! Evaluation fails closed: a permission that cannot be parsed or evaluated denies.

use std::collections::BTreeSet;

use nostr::Timestamp;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::ids::{PolicyId, TeamId, TenantId, UserId};
use crate::model::names::Label;

/// Longest content-filter pattern accepted, in bytes. Keeps regex compilation bounded.
pub(crate) const MAX_PATTERN_LEN: usize = 512;

/// One rule of a policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
#[non_exhaustive]
pub enum Permission {
    /// Allows everything (the neutral element of AND; a policy must say it explicitly).
    FullAccess,
    /// Only these event kinds may be signed.
    AllowedKinds {
        /// Allowed kinds.
        kinds: BTreeSet<u16>,
    },
    /// Signed content and encrypted plaintext must not contain these words (case-insensitive)
    /// nor match these regular expressions.
    ContentFilter {
        /// Case-insensitive substrings to refuse.
        #[serde(default)]
        deny_words: Vec<String>,
        /// Regular expressions (Rust `regex` syntax) to refuse.
        #[serde(default)]
        deny_patterns: Vec<String>,
    },
    /// Encryption and decryption only with the key's own pubkey as peer.
    EncryptToSelf,
    /// Only decryption (and `get_public_key`).
    DecryptOnly,
    /// Nothing is allowed at or after `not_after` (unix seconds).
    Expiry {
        /// Last valid instant, exclusive.
        not_after: Timestamp,
    },
    /// At most `max` uses over the authorization's life.
    MaxUses {
        /// Total uses allowed.
        max: u64,
    },
    /// Every call but `get_public_key` waits for a person's decision, one request at a
    /// time (NIP-46 `auth_url`; HTTP RPC answers 403 with the link). Needs an
    /// [`crate::ApprovalDesk`] on the authorizer; without one it denies.
    RequireApproval,
    /// At most `per_minute` uses per minute per authorization, with that burst.
    RateLimit {
        /// Sustained rate and burst size.
        per_minute: u32,
    },
    /// A stored permission this build cannot understand. Always denies.
    #[serde(skip)]
    Unrecognized {
        /// The stored JSON, kept for operators.
        raw: String,
    },
}

impl Permission {
    /// Decodes a stored permission without failing: anything unparseable becomes
    /// [`Permission::Unrecognized`], which denies.
    pub fn from_stored_json(json: &str) -> Self {
        serde_json::from_str(json).unwrap_or_else(|_| Permission::Unrecognized {
            raw: json.to_owned(),
        })
    }

    /// The JSON to store. An [`Permission::Unrecognized`] permission is written back as the
    /// JSON it was read from, so storing a policy never loses what a newer build wrote.
    pub fn to_stored_value(&self) -> serde_json::Value {
        match self {
            Permission::Unrecognized { raw } => {
                serde_json::from_str(raw).unwrap_or_else(|_| serde_json::Value::String(raw.clone()))
            }
            // Serializing a known variant cannot fail; Null would read back as Unrecognized.
            known => serde_json::to_value(known).unwrap_or(serde_json::Value::Null),
        }
    }

    /// Checks that the permission can be evaluated: non-empty kinds, compilable patterns,
    /// positive limits.
    pub fn validate(&self) -> Result<()> {
        match self {
            Permission::AllowedKinds { kinds } if kinds.is_empty() => Err(Error::invalid(
                "permission",
                "allowed_kinds needs at least one kind",
            )),
            Permission::ContentFilter {
                deny_words,
                deny_patterns,
            } => {
                if deny_words.iter().any(|w| w.is_empty()) {
                    return Err(Error::invalid(
                        "permission",
                        "content_filter words must not be empty",
                    ));
                }
                for p in deny_patterns {
                    compile_pattern(p)?;
                }
                Ok(())
            }
            Permission::MaxUses { max: 0 } => {
                Err(Error::invalid("permission", "max_uses must be positive"))
            }
            Permission::RateLimit { per_minute: 0 } => Err(Error::invalid(
                "permission",
                "rate_limit per_minute must be positive",
            )),
            Permission::Unrecognized { .. } => {
                Err(Error::invalid("permission", "unrecognized permission"))
            }
            _ => Ok(()),
        }
    }
}

/// Compiles a content-filter pattern with a size bound.
pub(crate) fn compile_pattern(p: &str) -> Result<regex::Regex> {
    if p.len() > MAX_PATTERN_LEN {
        return Err(Error::invalid(
            "permission",
            "content_filter pattern too long",
        ));
    }
    regex::RegexBuilder::new(p)
        .size_limit(1 << 20)
        .build()
        .map_err(|e| Error::invalid("permission", format!("bad content_filter pattern: {e}")))
}

/// A named set of permissions, scoped to a tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Identity.
    pub id: PolicyId,
    /// Owning tenant.
    pub tenant_id: TenantId,
    /// The account that made it and may edit it; `None` for tenant-wide policies made by
    /// operators.
    pub owner: Option<UserId>,
    /// The team it belongs to, if any (then it has no `owner`).
    pub team: Option<TeamId>,
    /// Human name.
    pub name: Label,
    /// All must allow.
    pub permissions: Vec<Permission>,
    /// Bumped on every update; caches compare it.
    pub version: u64,
}

impl Policy {
    /// A validated new policy. An empty permission list is refused: say `full_access`.
    pub fn new(tenant_id: TenantId, name: Label, permissions: Vec<Permission>) -> Result<Self> {
        if permissions.is_empty() {
            return Err(Error::invalid(
                "policy",
                "needs at least one permission; use full_access to allow everything",
            ));
        }
        for p in &permissions {
            p.validate()?;
        }
        Ok(Self {
            id: PolicyId::random(),
            tenant_id,
            owner: None,
            team: None,
            name,
            permissions,
            version: 1,
        })
    }

    /// The same policy, owned by `user`.
    pub fn owned_by(mut self, user: UserId) -> Self {
        self.owner = Some(user);
        self
    }

    /// The same policy, belonging to `team`.
    pub fn for_team(mut self, team: TeamId) -> Self {
        self.team = Some(team);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_json_parses_or_fails_closed() {
        assert_eq!(
            Permission::from_stored_json(r#"{"type":"allowed_kinds","kinds":[1,7]}"#),
            Permission::AllowedKinds {
                kinds: [1, 7].into()
            }
        );
        assert_eq!(
            Permission::from_stored_json(r#"{"type":"full_access"}"#),
            Permission::FullAccess
        );
        for bad in [
            r#"{"type":"teleport"}"#,
            r#"{"type":"allowed_kinds","kinds":"all"}"#,
            r#"{"type":"content_filter","deny_word":["x"]}"#,
            "not json",
        ] {
            assert!(
                matches!(
                    Permission::from_stored_json(bad),
                    Permission::Unrecognized { .. }
                ),
                "{bad} parsed"
            );
        }
    }

    #[test]
    fn policy_new_validates() {
        let t = TenantId::random();
        let name = Label::parse("p").expect("label");
        assert!(Policy::new(t, name.clone(), vec![]).is_err());
        assert!(Policy::new(t, name.clone(), vec![Permission::MaxUses { max: 0 }]).is_err());
        assert!(Policy::new(
            t,
            name.clone(),
            vec![Permission::RateLimit { per_minute: 0 }]
        )
        .is_err());
        assert!(Policy::new(
            t,
            name.clone(),
            vec![Permission::AllowedKinds {
                kinds: BTreeSet::new()
            }]
        )
        .is_err());
        let bad_regex = Permission::ContentFilter {
            deny_words: vec![],
            deny_patterns: vec!["(".into()],
        };
        assert!(Policy::new(t, name.clone(), vec![bad_regex]).is_err());
        assert!(Policy::new(t, name, vec![Permission::FullAccess]).is_ok());
    }
}
