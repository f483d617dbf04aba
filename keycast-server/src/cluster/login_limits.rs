//! Login, registration and mail counts shared by a cluster's instances in Redis, so a load
//! balancer spreading attempts over N instances does not multiply any budget by N. Keys
//! hold SHA-256 prefixes of e-mails and client addresses, never the values. Every call is
//! bounded; on a Redis failure the answer is "nothing counted" and the instance's own
//! counts decide alone.
//!
//! Keys under `<prefix>:login:`:
//! - `<account>:<address>:failures`: a hash `n` (failures in a row), `last` (unix ms of
//!   the latest), lapsing a while after the latest;
//! - `<account>:window:<n>`: the account's failures in fixed window `n`, from anywhere;
//! - `<account>:known:<address>`: the account logged in (or reset its password) from
//!   that address;
//! - `count:<what>:<key>:<n>`: events of a rate limit in fixed window `n`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use redis::aio::ConnectionManager;
use sha2::{Digest, Sha256};

/// How long one call may take.
const TIMEOUT: Duration = Duration::from_millis(300);

/// The shared counters.
#[derive(Clone)]
pub struct SharedLoginLimits {
    redis: ConnectionManager,
    prefix: String,
}

impl std::fmt::Debug for SharedLoginLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedLoginLimits")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

/// What the cluster knows of one account and client address.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SharedFailures {
    /// Failures in a row from this address.
    pub failures: u32,
    /// Unix ms of the latest.
    pub last_failure_ms: u64,
    /// The account's failures in the current window, from every address.
    pub account_failures: u32,
    /// Whether the account logged in (or reset its password) from this address.
    pub known: bool,
}

async fn bounded<T>(
    what: &str,
    call: impl std::future::Future<Output = redis::RedisResult<T>>,
) -> Option<T> {
    match tokio::time::timeout(TIMEOUT, call).await {
        Ok(Ok(v)) => Some(v),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "cannot {what} in Redis; this instance's limits apply alone");
            None
        }
        Err(_) => {
            tracing::warn!(
                "cannot {what} in Redis within 300 ms; this instance's limits apply alone"
            );
            None
        }
    }
}

/// Unix milliseconds now.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The fixed window of length `window` that `ms` falls in.
pub fn window_index(ms: u64, window: Duration) -> u64 {
    let len = u64::try_from(window.as_millis()).unwrap_or(u64::MAX).max(1);
    ms / len
}

fn digest(value: &str) -> String {
    let digest = Sha256::digest(value.as_bytes());
    digest[..16].iter().map(|b| format!("{b:02x}")).collect()
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl SharedLoginLimits {
    /// Counts under `<prefix>:login:…` in `redis`.
    pub fn new(redis: ConnectionManager, prefix: &str) -> Self {
        Self {
            redis,
            prefix: prefix.to_owned(),
        }
    }

    fn key(&self, account: &str, rest: &str) -> String {
        format!("{}:login:{}:{rest}", self.prefix, digest(account))
    }

    fn pair(&self, account: &str, address: &str, what: &str) -> String {
        self.key(account, &format!("{}:{what}", digest(address)))
    }

    /// Counts one event of the rate limit `what` for `key` in this fixed `window`;
    /// the count in the window so far, this one included.
    pub async fn count(&self, what: &str, key: &str, window: Duration) -> Option<u64> {
        let n = window_index(now_ms(), window);
        let name = format!("{}:login:count:{what}:{}:{n}", self.prefix, digest(key));
        let mut redis = self.redis.clone();
        let mut pipe = redis::pipe();
        pipe.incr(&name, 1)
            .pexpire(&name, millis(window * 2))
            .ignore();
        let (count,): (u64,) = bounded("count an attempt", pipe.query_async(&mut redis)).await?;
        Some(count)
    }

    /// What the cluster knows of `account` at `address`, with `window` the length of the
    /// account's failure windows.
    pub async fn view(
        &self,
        account: &str,
        address: &str,
        window: Duration,
    ) -> Option<SharedFailures> {
        let n = window_index(now_ms(), window);
        let mut redis = self.redis.clone();
        let mut pipe = redis::pipe();
        pipe.hget(self.pair(account, address, "failures"), &["n", "last"])
            .get(self.key(account, &format!("window:{n}")))
            .exists(self.key(account, &format!("known:{}", digest(address))));
        type Answer = ((Option<u32>, Option<u64>), Option<u32>, bool);
        let ((failures, last), account_failures, known): Answer =
            bounded("read login failures", pipe.query_async(&mut redis)).await?;
        Some(SharedFailures {
            failures: failures.unwrap_or(0),
            last_failure_ms: last.unwrap_or(0),
            account_failures: account_failures.unwrap_or(0),
            known,
        })
    }

    /// Counts a failure of `account` from `address` at `at_ms`: in a row for the pair
    /// (lapsing `keep` after the latest) and in the account's current `window`.
    pub async fn failed(
        &self,
        account: &str,
        address: &str,
        at_ms: u64,
        keep: Duration,
        window: Duration,
    ) {
        let pair = self.pair(account, address, "failures");
        let total = self.key(account, &format!("window:{}", window_index(at_ms, window)));
        let mut redis = self.redis.clone();
        let mut pipe = redis::pipe();
        pipe.hincr(&pair, "n", 1)
            .ignore()
            .hset(&pair, "last", at_ms)
            .ignore()
            .pexpire(&pair, millis(keep))
            .ignore()
            .incr(&total, 1)
            .ignore()
            .pexpire(&total, millis(window * 2))
            .ignore();
        let _: Option<()> = bounded("count a login failure", pipe.query_async(&mut redis)).await;
    }

    /// After a login (or a password reset) of `account` from `address`: its failures in a
    /// row are cleared and the address is known to the account for `known_for`.
    pub async fn succeeded(&self, account: &str, address: &str, known_for: Duration) {
        let known = self.key(account, &format!("known:{}", digest(address)));
        let mut redis = self.redis.clone();
        let mut pipe = redis::pipe();
        pipe.del(self.pair(account, address, "failures"))
            .ignore()
            .set(&known, 1)
            .ignore()
            .pexpire(&known, millis(known_for))
            .ignore();
        let _: Option<()> = bounded("clear login failures", pipe.query_async(&mut redis)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_are_fixed_and_digests_hide_values() {
        let minute = Duration::from_secs(60);
        assert_eq!(window_index(59_999, minute), 0);
        assert_eq!(window_index(60_000, minute), 1);
        assert_eq!(window_index(5, Duration::ZERO), 5, "no division by zero");
        let d = digest("ann@example.org");
        assert_eq!(d.len(), 32);
        assert!(!d.contains("ann"));
    }
}
