//! Cluster membership in Redis: each instance keeps a key `<prefix>:member:<id>` alive
//! with a TTL (Redis's clock decides expiry, so instance clocks need not agree), announces
//! joins and leaves on the channel `<prefix>:membership`, and re-reads the whole member set
//! on every announcement and at least every TTL/2, which repairs missed messages.
//!
//! The current [`HashRing`] is published through a watch channel. When Redis cannot be
//! reached the last ring stays in force and the loops retry with backoff. Redis holds
//! member ids only, never a secret.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use keycast_core::{NodeId, Route, RoutingKey};
use redis::aio::ConnectionManager;
use redis::AsyncCommands;
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;

use super::ring::HashRing;
use crate::error::{Result, ServerError};

/// How an instance joins.
#[derive(Debug, Clone)]
pub struct MembershipConfig {
    /// `redis://…` of the shared Redis.
    pub redis_url: String,
    /// Namespace of this cluster's keys and channel.
    pub prefix: String,
    /// This instance's stable id.
    pub node: NodeId,
    /// How long a silent member stays in the ring; heartbeats come every TTL/3.
    pub ttl: Duration,
}

/// A joined instance: its view of the ring, kept current in the background.
pub struct Membership {
    node: NodeId,
    ring: watch::Receiver<Arc<HashRing>>,
    redis: ConnectionManager,
    member_key: String,
    channel: String,
    tasks: Vec<JoinHandle<()>>,
}

fn cluster_error(url: &str, what: &str, e: redis::RedisError) -> ServerError {
    // The URL may carry a password: name the host part only.
    let host = url.rsplit('@').next().unwrap_or(url);
    ServerError::Cluster(format!("{what} (Redis at {host}): {e}"))
}

/// The ids of the members whose keys are alive now.
async fn read_members(
    redis: &mut ConnectionManager,
    prefix: &str,
) -> redis::RedisResult<Vec<NodeId>> {
    let pattern = format!("{prefix}:member:*");
    let strip = format!("{prefix}:member:");
    let mut keys: Vec<String> = Vec::new();
    let mut iter: redis::AsyncIter<'_, String> = redis.scan_match(&pattern).await?;
    while let Some(key) = iter.next_item().await {
        keys.push(key?);
    }
    Ok(keys
        .into_iter()
        .filter_map(|k| k.strip_prefix(&strip).map(|id| NodeId(id.to_owned())))
        .collect())
}

impl std::fmt::Debug for Membership {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Membership")
            .field("node", &self.node)
            .field("members", &self.ring.borrow().members().len())
            .finish_non_exhaustive()
    }
}

impl Membership {
    /// Registers this instance, announces it and reads the members. Fails with a clear
    /// error when Redis cannot be reached: cluster mode does not start without it.
    pub async fn join(config: MembershipConfig) -> Result<Self> {
        let url = config.redis_url.clone();
        let client = redis::Client::open(url.as_str())
            .map_err(|e| cluster_error(&url, "bad Redis URL", e))?;
        let mut redis =
            tokio::time::timeout(Duration::from_secs(5), client.get_connection_manager())
                .await
                .map_err(|_| {
                    ServerError::Cluster(format!(
                        "Redis did not answer within 5 s ({})",
                        url.rsplit('@').next().unwrap_or(&url)
                    ))
                })?
                .map_err(|e| cluster_error(&url, "cannot connect", e))?;
        let member_key = format!("{}:member:{}", config.prefix, config.node.0);
        let channel = format!("{}:membership", config.prefix);
        let ttl_ms = u64::try_from(config.ttl.as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        let _: () = redis
            .set_options(
                &member_key,
                1,
                redis::SetOptions::default().with_expiration(redis::SetExpiry::PX(ttl_ms)),
            )
            .await
            .map_err(|e| cluster_error(&url, "cannot register", e))?;
        let _: () = redis
            .publish(&channel, format!("join {}", config.node.0))
            .await
            .map_err(|e| cluster_error(&url, "cannot announce", e))?;
        let members = read_members(&mut redis, &config.prefix)
            .await
            .map_err(|e| cluster_error(&url, "cannot read members", e))?;
        let (ring_tx, ring) = watch::channel(Arc::new(HashRing::new(members)));
        let changed = Arc::new(Notify::new());
        let tasks = vec![
            tokio::spawn(listen(client, channel.clone(), changed.clone())),
            tokio::spawn(maintain(
                redis.clone(),
                config.clone(),
                member_key.clone(),
                ttl_ms,
                changed,
                ring_tx,
            )),
        ];
        tracing::info!(node = %config.node.0, "joined the cluster");
        Ok(Self {
            node: config.node,
            ring,
            redis,
            member_key,
            channel,
            tasks,
        })
    }

    /// The ring as this instance sees it now.
    pub fn ring(&self) -> Arc<HashRing> {
        self.ring.borrow().clone()
    }

    /// Whether this instance or another answers `key`.
    pub fn route(&self, key: &RoutingKey) -> Route {
        self.ring.borrow().route(&self.node, key)
    }

    /// Waits until the ring changes (for tests and readiness).
    pub async fn changed(&mut self) {
        let _ = self.ring.changed().await;
    }

    /// Deregisters and announces it, so the others take over this instance's share at
    /// once; then stops the background work.
    pub async fn leave(mut self) -> Result<()> {
        self.stop();
        let _: () = self
            .redis
            .del(&self.member_key)
            .await
            .map_err(|e| ServerError::Cluster(format!("cannot deregister: {e}")))?;
        let _: () = self
            .redis
            .publish(&self.channel, format!("leave {}", self.node.0))
            .await
            .map_err(|e| ServerError::Cluster(format!("cannot announce leaving: {e}")))?;
        tracing::info!(node = %self.node.0, "left the cluster");
        Ok(())
    }

    fn stop(&mut self) {
        for task in self.tasks.drain(..) {
            task.abort();
        }
    }
}

impl Drop for Membership {
    /// Stops heartbeating without deregistering: the member expires after its TTL, as a
    /// crashed instance would.
    fn drop(&mut self) {
        self.stop();
    }
}

/// Follows the membership channel; each message (or a reconnect) asks for a re-read.
async fn listen(client: redis::Client, channel: String, changed: Arc<Notify>) {
    let mut backoff = Duration::from_millis(100);
    loop {
        match client.get_async_pubsub().await {
            Ok(mut pubsub) => match pubsub.subscribe(&channel).await {
                Ok(()) => {
                    backoff = Duration::from_millis(100);
                    // Messages may have been missed while disconnected.
                    changed.notify_one();
                    let mut messages = pubsub.on_message();
                    while messages.next().await.is_some() {
                        changed.notify_one();
                    }
                    tracing::warn!("cluster membership channel closed; reconnecting");
                }
                Err(e) => tracing::warn!(error = %e, "cannot subscribe to cluster membership"),
            },
            Err(e) => tracing::warn!(error = %e, "cannot reach Redis for cluster membership"),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(10));
    }
}

/// Heartbeats every TTL/3 and re-reads the members on every announcement and every TTL/2,
/// publishing a new ring when the set changes. Errors keep the last ring.
async fn maintain(
    mut redis: ConnectionManager,
    config: MembershipConfig,
    member_key: String,
    ttl_ms: u64,
    changed: Arc<Notify>,
    ring: watch::Sender<Arc<HashRing>>,
) {
    let mut heartbeat = tokio::time::interval(config.ttl / 3);
    let mut reread = tokio::time::interval(config.ttl / 2);
    loop {
        tokio::select! {
            _ = heartbeat.tick() => {
                let set: redis::RedisResult<()> = redis
                    .set_options(
                        &member_key,
                        1,
                        redis::SetOptions::default().with_expiration(redis::SetExpiry::PX(ttl_ms)),
                    )
                    .await;
                if let Err(e) = set {
                    tracing::warn!(error = %e, "cluster heartbeat failed; keeping the last ring");
                }
                continue;
            }
            _ = reread.tick() => {}
            () = changed.notified() => {}
        }
        match read_members(&mut redis, &config.prefix).await {
            Ok(members) => {
                let next = HashRing::new(members);
                if next.members() != ring.borrow().members() {
                    tracing::info!(members = next.members().len(), "cluster ring changed");
                    ring.send_replace(Arc::new(next));
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot read cluster members; keeping the last ring")
            }
        }
    }
}
