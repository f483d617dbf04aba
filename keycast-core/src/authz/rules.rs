//! Stateless evaluation of one permission against one request.

use crate::model::policy::{compile_pattern, Permission};
use crate::model::request::{Method, Request};
use crate::traits::authorizer::AuthContext;

/// The verdict of the stateless part of a permission.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RuleVerdict {
    /// This permission allows the request (possibly subject to stateful limits).
    Allow,
    /// This permission refuses, with a reason.
    Deny(String),
}

fn deny(reason: impl Into<String>) -> RuleVerdict {
    RuleVerdict::Deny(reason.into())
}

/// Evaluates the stateless part of `perm`. Stateful limits (max uses, rate) allow here and
/// are enforced by the caller afterwards, so a denied request consumes nothing.
///
/// `regex_for` returns a compiled pattern or `None` if it does not compile (the caller caches).
pub(crate) fn evaluate(
    perm: &Permission,
    ctx: &AuthContext<'_>,
    req: &Request,
    regex_for: &dyn Fn(&str) -> Option<std::sync::Arc<regex::Regex>>,
) -> RuleVerdict {
    let method = req.method();
    match perm {
        // Stateful: the authorizer applies these once every stateless rule allowed.
        Permission::FullAccess
        | Permission::MaxUses { .. }
        | Permission::RateLimit { .. }
        | Permission::RequireApproval => RuleVerdict::Allow,
        Permission::AllowedKinds { kinds } => match req {
            Request::SignEvent(t) if !kinds.contains(&t.kind.as_u16()) => {
                deny(format!("event kind {} is not allowed", t.kind.as_u16()))
            }
            _ => RuleVerdict::Allow,
        },
        Permission::ContentFilter {
            deny_words,
            deny_patterns,
        } => {
            // Compile first, whatever the operation: a broken filter denies everything.
            let mut patterns = Vec::with_capacity(deny_patterns.len());
            for p in deny_patterns {
                match regex_for(p) {
                    Some(re) => patterns.push(re),
                    None => return deny("content filter pattern cannot be evaluated"),
                }
            }
            if deny_words.iter().any(String::is_empty) {
                return deny("content filter has an empty word");
            }
            let Some(text) = req.outgoing_text() else {
                return RuleVerdict::Allow;
            };
            let lower = text.to_lowercase();
            if deny_words.iter().any(|w| lower.contains(&w.to_lowercase())) {
                return deny("content contains a blocked word");
            }
            if patterns.iter().any(|re| re.is_match(text)) {
                return deny("content matches a blocked pattern");
            }
            RuleVerdict::Allow
        }
        Permission::EncryptToSelf => match req.peer() {
            Some(peer) if *peer != ctx.key_pubkey => {
                deny("encryption is only allowed to the key itself")
            }
            _ => RuleVerdict::Allow,
        },
        Permission::DecryptOnly => match method {
            Method::GetPublicKey | Method::Nip44Decrypt | Method::Nip04Decrypt => {
                RuleVerdict::Allow
            }
            _ => deny(format!("{} is not allowed: decrypt only", method.as_str())),
        },
        Permission::Expiry { not_after } => {
            if ctx.now >= *not_after {
                deny("policy has expired")
            } else {
                RuleVerdict::Allow
            }
        }
        Permission::Unrecognized { .. } => {
            deny("policy has a permission this server does not understand")
        }
    }
}

/// Compiles a pattern for [`evaluate`] without caching.
pub(crate) fn compile_uncached(p: &str) -> Option<std::sync::Arc<regex::Regex>> {
    compile_pattern(p).ok().map(std::sync::Arc::new)
}
