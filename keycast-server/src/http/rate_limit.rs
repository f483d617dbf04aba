//! A rate limit keyed by something a request names (a client address, an account, a mail
//! recipient): a governor GCRA limiter in this process, and in a cluster also a fixed
//! window counted once for every instance in Redis. Over either, the request is refused
//! with 429 and `Retry-After`.

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::http::StatusCode;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use super::ApiError;
use crate::cluster::login_limits::{now_ms, window_index, SharedLoginLimits};

/// Checks between sweeps of keys whose budget has refilled, so the limiter's memory
/// follows the keys in use rather than every key ever seen.
const SWEEP_EVERY: u64 = 4096;

/// `per` events per `period` for each key, with bursts up to `per`.
#[derive(Debug)]
pub(crate) struct KeyedLimit {
    /// Names the limit in Redis keys.
    what: &'static str,
    per: u32,
    period: Duration,
    local: DefaultKeyedRateLimiter<String>,
    shared: Option<SharedLoginLimits>,
    checks: AtomicU64,
}

impl KeyedLimit {
    pub(crate) fn new(
        what: &'static str,
        per: u32,
        period: Duration,
        shared: Option<SharedLoginLimits>,
    ) -> Self {
        let burst = NonZeroU32::new(per).unwrap_or(NonZeroU32::MIN);
        let interval = (period / burst.get()).max(Duration::from_nanos(1));
        // `with_period` refuses only a zero interval, which `max` rules out.
        let quota = Quota::with_period(interval).map_or_else(
            || Quota::per_second(NonZeroU32::MIN),
            |q| q.allow_burst(burst),
        );
        Self {
            what,
            per: burst.get(),
            period,
            local: RateLimiter::keyed(quota),
            shared,
            checks: AtomicU64::new(0),
        }
    }

    /// Counts an event for `key`; how long to wait when it is over the limit.
    pub(crate) async fn check(&self, key: &str) -> Result<(), Duration> {
        if self.checks.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
            self.local.retain_recent();
        }
        if let Err(not_until) = self.local.check_key(&key.to_owned()) {
            return Err(not_until.wait_time_from(DefaultClock::default().now()));
        }
        if let Some(shared) = &self.shared {
            if let Some(n) = shared.count(self.what, key, self.period).await {
                if n > u64::from(self.per) {
                    return Err(until_window_ends(self.period));
                }
            }
        }
        Ok(())
    }

    /// [`KeyedLimit::check`] as the API's 429 with `message`.
    pub(crate) async fn admit(&self, key: &str, message: &str) -> Result<(), ApiError> {
        self.check(key)
            .await
            .map_err(|wait| too_many(message, wait))
    }
}

/// What remains of the current fixed window of length `window`.
pub(crate) fn until_window_ends(window: Duration) -> Duration {
    let now = now_ms();
    let len = u64::try_from(window.as_millis()).unwrap_or(u64::MAX).max(1);
    let end = (window_index(now, window) + 1).saturating_mul(len);
    Duration::from_millis(end.saturating_sub(now))
}

/// 429 `too_many_requests` with `Retry-After` (whole seconds, at least 1).
pub(crate) fn too_many(message: &str, wait: Duration) -> ApiError {
    ApiError::new(StatusCode::TOO_MANY_REQUESTS, "too_many_requests", message).retry_after(wait)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn each_key_gets_its_own_budget_and_the_wait_is_told() {
        let limit = KeyedLimit::new("test", 3, Duration::from_secs(3600), None);
        for _ in 0..3 {
            assert!(limit.check("a").await.is_ok());
        }
        let wait = limit.check("a").await.expect_err("over");
        assert!(
            wait > Duration::from_secs(1100) && wait <= Duration::from_secs(1200),
            "one of three per hour: {wait:?}"
        );
        assert!(limit.check("b").await.is_ok(), "another key");
        let e = limit.admit("a", "slow down").await.expect_err("over");
        assert_eq!(e.status, StatusCode::TOO_MANY_REQUESTS);
        assert!(e.retry_after.is_some_and(|s| s >= 1100));
    }

    #[test]
    fn the_window_end_is_within_the_window() {
        let left = until_window_ends(Duration::from_secs(60));
        assert!(left <= Duration::from_secs(60));
    }
}
