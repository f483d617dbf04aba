//! Per-e-mail login rate limit and lockout. Each instance counts in memory; in a cluster
//! the same counts are also kept in Redis ([`SharedLoginLimits`]), so a load balancer
//! spreading attempts over N instances does not multiply the budget by N. When Redis
//! fails, the instance's own limits still apply.

use std::num::NonZeroU32;
use std::time::Duration;

use axum::http::StatusCode;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use super::ApiError;
use crate::cluster::login_limits::SharedLoginLimits;

/// Attempts per e-mail a minute.
pub const PER_MINUTE: u32 = 10;
/// Consecutive failures that lock an e-mail.
pub const LOCK_AFTER: u32 = 10;
/// How long a locked e-mail stays locked.
pub const LOCKED_FOR: Duration = Duration::from_secs(15 * 60);

/// Login rate limit and lockout.
#[derive(Debug)]
pub struct LoginGuard {
    rate: DefaultKeyedRateLimiter<String>,
    failures: moka::sync::Cache<String, u32>,
    shared: Option<SharedLoginLimits>,
}

impl Default for LoginGuard {
    fn default() -> Self {
        let per_minute = NonZeroU32::new(PER_MINUTE).unwrap_or(NonZeroU32::MIN);
        Self {
            rate: RateLimiter::keyed(Quota::per_minute(per_minute)),
            failures: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(LOCKED_FOR)
                .build(),
            shared: None,
        }
    }
}

/// What the limits count by: an account's login name within its tenant (an e-mail is a
/// different account in each tenant).
pub(crate) fn account_key(tenant: keycast_core::TenantId, login: &str) -> String {
    format!("{tenant}/{login}")
}

impl LoginGuard {
    /// Limits shared with the other instances of a cluster, on top of this one's.
    pub fn shared(shared: SharedLoginLimits) -> Self {
        Self {
            shared: Some(shared),
            ..Self::default()
        }
    }

    pub(crate) async fn admit(&self, email: &str) -> Result<(), ApiError> {
        let locked = self.failures.get(email).is_some_and(|n| n >= LOCK_AFTER);
        let mut refused = locked || self.rate.check_key(&email.to_owned()).is_err();
        if let (false, Some(shared)) = (refused, &self.shared) {
            refused = !shared.admit(email, PER_MINUTE, LOCK_AFTER).await;
        }
        if refused {
            return Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_attempts",
                "too many login attempts; try again later",
            ));
        }
        Ok(())
    }

    pub(crate) async fn failed(&self, email: &str) {
        let n = self.failures.get(email).unwrap_or(0).saturating_add(1);
        self.failures.insert(email.to_owned(), n);
        if let Some(shared) = &self.shared {
            shared.failed(email, LOCKED_FOR).await;
        }
    }

    pub(crate) async fn succeeded(&self, email: &str) {
        self.failures.invalidate(email);
        if let Some(shared) = &self.shared {
            shared.succeeded(email).await;
        }
    }
}
