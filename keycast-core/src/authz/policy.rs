//! The authorizer that evaluates an authorization's policy.

use std::num::NonZeroU32;
use std::sync::Arc;

use async_trait::async_trait;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use moka::sync::Cache;

use crate::authz::approvals::ApprovalDesk;
use crate::authz::rules::{compile_uncached, evaluate, RuleVerdict};
use crate::error::Result;
use crate::ids::AuthorizationId;
use crate::model::policy::Permission;
use crate::model::request::{Method, Request};
use crate::traits::authorizer::{AuthContext, Authorizer, Decision};
use crate::traits::key_store::KeyStore;

/// Evaluates every permission of the authorization's policy; all must allow.
///
/// - Owner calls (no authorization) are allowed: the embedding app authenticated the owner.
/// - An authorization without its policy loaded, or with a policy of another tenant, is denied.
/// - Stateless rules run first; then the rate limit (in-process, per authorization), then
///   max uses (an atomic reservation in the KeyStore, so it holds across instances).
///   A request refused by an earlier rule consumes neither. Of several rate limits or
///   several max uses, the strictest applies, and a request counts once.
/// - `get_public_key` consumes neither rate nor uses.
/// - `require_approval` is asked after the stateless rules and before the limits (see
///   [`ApprovalDesk`]); without a desk it denies.
#[derive(Debug)]
pub struct PolicyAuthorizer {
    store: Arc<dyn KeyStore>,
    approvals: Option<Arc<ApprovalDesk>>,
    limiters: Cache<(AuthorizationId, u32), Arc<DefaultDirectRateLimiter>>,
    patterns: Cache<String, Option<Arc<regex::Regex>>>,
}

impl PolicyAuthorizer {
    /// `store` is used for max-uses reservations.
    pub fn new(store: Arc<dyn KeyStore>) -> Self {
        Self {
            store,
            approvals: None,
            limiters: Cache::builder()
                .max_capacity(100_000)
                .time_to_idle(std::time::Duration::from_secs(600))
                .build(),
            patterns: Cache::builder().max_capacity(10_000).build(),
        }
    }

    /// The same authorizer, holding `require_approval` requests at `desk`.
    pub fn with_approvals(mut self, desk: Arc<ApprovalDesk>) -> Self {
        self.approvals = Some(desk);
        self
    }

    fn regex_for(&self, p: &str) -> Option<Arc<regex::Regex>> {
        self.patterns.get_with_by_ref(p, || compile_uncached(p))
    }

    fn rate_ok(&self, id: AuthorizationId, per_minute: u32) -> bool {
        let Some(n) = NonZeroU32::new(per_minute) else {
            return false; // fails closed on a zero rate that slipped past validation
        };
        let limiter = self.limiters.get_with((id, per_minute), || {
            Arc::new(RateLimiter::direct(Quota::per_minute(n)))
        });
        limiter.check().is_ok()
    }
}

/// How far a decision gets without the store.
enum Early {
    Decided(Decision),
    /// Everything else allowed; the strictest max-uses permission is left.
    MaxUses(AuthorizationId, u64),
}

impl PolicyAuthorizer {
    /// The decision up to the max-uses reservation, the one step that needs the store.
    fn decide_early(&self, ctx: &AuthContext<'_>, request: &Request) -> Early {
        let Some(auth) = ctx.authorization else {
            return Early::Decided(Decision::Allow);
        };
        let Some(policy) = ctx.policy else {
            return Early::Decided(Decision::Deny("policy not available".into()));
        };
        if policy.id != auth.policy_id || policy.tenant_id != auth.tenant_id {
            return Early::Decided(Decision::Deny(
                "policy does not belong to this authorization".into(),
            ));
        }
        let regex_for = |p: &str| self.regex_for(p);
        for perm in &policy.permissions {
            if let RuleVerdict::Deny(reason) = evaluate(perm, ctx, request, &regex_for) {
                return Early::Decided(Decision::Deny(reason));
            }
        }
        if request.method() == Method::GetPublicKey {
            return Early::Decided(Decision::Allow);
        }
        // A person decides before any limit is spent on the request.
        if policy.permissions.contains(&Permission::RequireApproval) {
            let Some(desk) = &self.approvals else {
                return Early::Decided(Decision::Deny(
                    "the policy needs approvals, which this service does not take".into(),
                ));
            };
            match desk.consult(auth.id, request) {
                Some(true) => {}
                Some(false) => {
                    return Early::Decided(Decision::Deny("refused by the key's holder".into()))
                }
                None => return Early::Decided(Decision::NeedsApproval(desk.url(auth.id))),
            }
        }
        // Several rate limits or max-uses permissions act as the strictest one, as AND
        // means; checking each would take a request twice from the same limiter or counter.
        let strictest = |limit: fn(&Permission) -> Option<u64>| {
            policy.permissions.iter().filter_map(limit).min()
        };
        let rate = strictest(|p| match p {
            Permission::RateLimit { per_minute } => Some(u64::from(*per_minute)),
            _ => None,
        });
        if let Some(per_minute) = rate {
            let per_minute = u32::try_from(per_minute).unwrap_or(u32::MAX);
            if !self.rate_ok(auth.id, per_minute) {
                return Early::Decided(Decision::Deny("rate limit exceeded".into()));
            }
        }
        match strictest(|p| match p {
            Permission::MaxUses { max } => Some(*max),
            _ => None,
        }) {
            Some(max) => Early::MaxUses(auth.id, max),
            None => Early::Decided(Decision::Allow),
        }
    }

    /// Whether deciding `request` may take a step that is not to be repeated when the fast
    /// path steps aside: a max-uses reservation (in the store) or an approval (a decision
    /// is used up when consulted). Asked before anything is spent.
    fn needs_full_path(ctx: &AuthContext<'_>, request: &Request) -> bool {
        ctx.authorization.is_some()
            && request.method() != Method::GetPublicKey
            && ctx.policy.is_some_and(|p| {
                p.permissions.iter().any(|perm| {
                    matches!(
                        perm,
                        Permission::MaxUses { .. } | Permission::RequireApproval
                    )
                })
            })
    }
}

#[async_trait]
impl Authorizer for PolicyAuthorizer {
    async fn authorize(&self, ctx: &AuthContext<'_>, request: &Request) -> Result<Decision> {
        match self.decide_early(ctx, request) {
            Early::Decided(decision) => Ok(decision),
            Early::MaxUses(id, max) => Ok(if self.store.try_consume_use(id, max).await? {
                Decision::Allow
            } else {
                Decision::Deny("maximum number of uses reached".into())
            }),
        }
    }

    fn authorize_now(&self, ctx: &AuthContext<'_>, request: &Request) -> Option<Result<Decision>> {
        if Self::needs_full_path(ctx, request) {
            return None;
        }
        match self.decide_early(ctx, request) {
            Early::Decided(decision) => Some(Ok(decision)),
            // Not reached: `needs_full_path` said no max uses apply.
            Early::MaxUses(..) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    /// Found with the `policy` fuzz target's check (allowed exactly when every permission
    /// allows): two `max_uses: 1` or two `rate_limit: 1` permissions denied the first
    /// request, because each took one from the same counter or limiter.
    #[test]
    fn repeated_limits_do_not_deny_the_first_request() {
        for perms in [
            r#"[{"type":"max_uses","max":1},{"type":"max_uses","max":1}]"#,
            r#"[{"type":"rate_limit","per_minute":1},{"type":"rate_limit","per_minute":1}]"#,
            r#"[{"type":"max_uses","max":5},{"type":"rate_limit","per_minute":1},{"type":"max_uses","max":1}]"#,
        ] {
            // permissions, 0xFF, then sign_event of kind 1 with content "hi".
            let input = [perms.as_bytes(), b"\xff\x01\x01\x00\x00\x00\x00\x00hi"].concat();
            crate::fuzzing::policy(&input);
        }
    }
}
