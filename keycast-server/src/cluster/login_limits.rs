//! Login attempt and failure counts shared by a cluster's instances in Redis. Keys hold a
//! SHA-256 of the e-mail, never the address. Every call is bounded; on a Redis failure the
//! answer is "admit" and the instance's own limits decide alone.

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

async fn bounded<T>(
    what: &str,
    call: impl std::future::Future<Output = redis::RedisResult<T>>,
) -> Option<T> {
    match tokio::time::timeout(TIMEOUT, call).await {
        Ok(Ok(v)) => Some(v),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "cannot {what} in Redis; this instance's login limits apply alone");
            None
        }
        Err(_) => {
            tracing::warn!(
                "cannot {what} in Redis within 300 ms; this instance's login limits apply alone"
            );
            None
        }
    }
}

impl SharedLoginLimits {
    /// Counts under `<prefix>:login:…` in `redis`.
    pub fn new(redis: ConnectionManager, prefix: &str) -> Self {
        Self {
            redis,
            prefix: prefix.to_owned(),
        }
    }

    fn key(&self, email: &str, what: &str) -> String {
        let digest = Sha256::digest(email.as_bytes());
        let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
        format!("{}:login:{hex}:{what}", self.prefix)
    }

    /// Counts an attempt in this minute's window; whether it is within `per_minute` and
    /// the e-mail has fewer than `lock_after` failures in a row.
    pub async fn admit(&self, email: &str, per_minute: u32, lock_after: u32) -> bool {
        let minute = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() / 60);
        let window = self.key(email, &format!("rate:{minute}"));
        let failures = self.key(email, "failures");
        let mut redis = self.redis.clone();
        let mut pipe = redis::pipe();
        pipe.get(&failures)
            .incr(&window, 1)
            .expire(&window, 120)
            .ignore();
        let counts: Option<(Option<u32>, u32)> =
            bounded("count a login attempt", pipe.query_async(&mut redis)).await;
        match counts {
            Some((failed, attempts)) => failed.unwrap_or(0) < lock_after && attempts <= per_minute,
            None => true,
        }
    }

    /// Counts a failure; the count lapses `locked_for` after the last one.
    pub async fn failed(&self, email: &str, locked_for: Duration) {
        let key = self.key(email, "failures");
        let ms = i64::try_from(locked_for.as_millis()).unwrap_or(i64::MAX);
        let mut redis = self.redis.clone();
        let mut pipe = redis::pipe();
        pipe.incr(&key, 1).ignore().pexpire(&key, ms).ignore();
        let _: Option<()> = bounded("count a login failure", pipe.query_async(&mut redis)).await;
    }

    /// Clears the failures after a successful login.
    pub async fn succeeded(&self, email: &str) {
        let key = self.key(email, "failures");
        let mut redis = self.redis.clone();
        let mut pipe = redis::pipe();
        pipe.del(&key).ignore();
        let _: Option<()> = bounded("clear login failures", pipe.query_async(&mut redis)).await;
    }
}
