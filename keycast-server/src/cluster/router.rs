//! The cluster's [`RequestRouter`]: the ring decides each bunker's owner, and a Redis
//! `SET NX PX` on the request's event id lets exactly one instance handle each request.
//!
//! Claims are taken for every request, not only while the ring changes: an instance cannot
//! know that another has not yet seen a join, and a stale owner answering without a claim
//! while the new one answers with one would answer twice. The cost is one Redis round trip
//! per NIP-46 request, measured in BENCHMARKS.md.
//!
//! When Redis fails, the claim falls back to the ring alone (the last ring, the same on
//! every instance cut off from Redis), so requests are still answered once by their owner;
//! the view is marked troubled, and Redis is not asked again for a second, so an outage
//! does not add a timeout to every request.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use keycast_core::nostr::EventId;
use keycast_core::{RequestRouter, Route, RoutingKey};
use redis::aio::ConnectionManager;

use super::view::ClusterView;

/// How long a claim may take before the ring alone decides.
const CLAIM_TIMEOUT: Duration = Duration::from_millis(300);
/// How long Redis is left alone after a failed claim.
const BACKOFF: Duration = Duration::from_secs(1);

/// Routes by the ring in `view`; claims in Redis.
pub struct ClusterRouter {
    view: Arc<ClusterView>,
    redis: ConnectionManager,
    claim_prefix: String,
    claim_ttl_ms: u64,
    resting_until: Mutex<Option<Instant>>,
}

impl std::fmt::Debug for ClusterRouter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterRouter")
            .field("node", self.view.me())
            .field("members", &self.view.ring().members().len())
            .finish_non_exhaustive()
    }
}

impl ClusterRouter {
    /// `claim_ttl` must cover every moment at which another instance could still pick the
    /// same request up: the bunker's replay window (`max_age + max_skew`).
    pub fn new(
        view: Arc<ClusterView>,
        redis: ConnectionManager,
        prefix: &str,
        claim_ttl: Duration,
    ) -> Self {
        Self {
            view,
            redis,
            claim_prefix: format!("{prefix}:claim:"),
            claim_ttl_ms: u64::try_from(claim_ttl.as_millis())
                .unwrap_or(u64::MAX)
                .max(1),
            resting_until: Mutex::new(None),
        }
    }

    fn resting(&self) -> bool {
        self.resting_until
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some_and(|until| Instant::now() < until)
    }

    fn failed(&self, why: &dyn std::fmt::Display) {
        self.view.trouble();
        let mut resting = self.resting_until.lock().unwrap_or_else(|e| e.into_inner());
        if resting.is_none_or(|until| Instant::now() >= until) {
            tracing::warn!(error = %why, "cannot claim NIP-46 requests in Redis; the last ring decides alone");
        }
        *resting = Some(Instant::now() + BACKOFF);
    }
}

#[async_trait]
impl RequestRouter for ClusterRouter {
    fn route(&self, key: &RoutingKey) -> Route {
        self.view.route(key)
    }

    async fn claim(&self, key: &RoutingKey, request: &EventId) -> bool {
        // Undecided (Redis failed or rests): the ring decides alone.
        self.try_claim(key, request).await.unwrap_or(true)
    }

    async fn try_claim(&self, _key: &RoutingKey, request: &EventId) -> Option<bool> {
        if self.resting() {
            return None;
        }
        let mut redis = self.redis.clone();
        let mut cmd = redis::cmd("SET");
        cmd.arg(format!("{}{}", self.claim_prefix, request.to_hex()))
            .arg(&self.view.me().0)
            .arg("NX")
            .arg("PX")
            .arg(self.claim_ttl_ms);
        let set = cmd.query_async::<Option<String>>(&mut redis);
        match tokio::time::timeout(CLAIM_TIMEOUT, set).await {
            Ok(Ok(won)) => Some(won.is_some()),
            Ok(Err(e)) => {
                self.failed(&e);
                None
            }
            Err(_) => {
                self.failed(&"no answer within 300 ms");
                None
            }
        }
    }

    fn epoch(&self) -> Option<u64> {
        self.view.epoch()
    }

    fn listens(&self, key: &RoutingKey) -> bool {
        self.view.listens(key)
    }

    fn listening_epoch(&self) -> u64 {
        self.view.ring_changes()
    }
}
