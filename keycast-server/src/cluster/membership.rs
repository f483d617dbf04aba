//! Cluster membership in Redis: each instance keeps a key `<prefix>:member:<id>` alive
//! with a TTL (Redis's clock decides expiry, so instance clocks need not agree) and its id
//! in the set `<prefix>:members`, announces joins and leaves on the channel
//! `<prefix>:membership`, and re-reads the whole member set on every announcement and every
//! TTL/4, which repairs missed messages. A read is one script that returns the ids in the
//! set whose keys are alive and drops the others, so it costs the members, not the
//! keyspace (a `SCAN` walked every claim key too: one per NIP-46 request for the replay
//! window, thousands of round trips a read under load). A killed member's
//! share therefore moves within 1.25 × TTL: its key expires at most one TTL after its last
//! heartbeat, and every survivor re-reads within TTL/4 of that.
//!
//! The ring lives in a [`ClusterView`]. When Redis cannot be reached the last ring stays in
//! force, the loops retry, and the view records the trouble. Redis holds member ids only,
//! never a secret.

use std::sync::Arc;
use std::time::Duration;

use keycast_core::{NodeId, Route, RoutingKey};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::AsyncCommands;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use super::pubsub::{self, Heard};
use super::ring::HashRing;
use super::view::ClusterView;
use crate::error::{Result, ServerError};

/// How long one Redis exchange of the membership may take.
const REDIS_TIMEOUT: Duration = Duration::from_secs(1);

/// How an instance joins.
#[derive(Debug, Clone)]
pub struct MembershipConfig {
    /// `redis://…` of the shared Redis.
    pub redis_url: String,
    /// Namespace of this cluster's keys and channels.
    pub prefix: String,
    /// This instance's stable id.
    pub node: NodeId,
    /// How long a silent member stays in the ring; heartbeats and re-reads come every TTL/4.
    pub ttl: Duration,
}

impl MembershipConfig {
    /// The heartbeat and re-read period.
    pub fn period(&self) -> Duration {
        self.ttl / 4
    }
}

/// A connected instance: its view of the ring, kept current in the background.
pub struct Membership {
    view: Arc<ClusterView>,
    client: redis::Client,
    redis: ConnectionManager,
    names: Names,
    channel: String,
    ttl_ms: u64,
    reread: Arc<Notify>,
    tasks: Vec<JoinHandle<()>>,
}

/// A cluster error naming the Redis host but not the URL, which may carry a password.
pub(crate) fn cluster_error(url: &str, what: &str, e: impl std::fmt::Display) -> ServerError {
    let host = url.rsplit('@').next().unwrap_or(url);
    ServerError::Cluster(format!("{what} (Redis at {host}): {e}"))
}

/// A connection that gives up quickly: callers keep their last state and retry.
pub(crate) async fn connect(url: &str) -> Result<(redis::Client, ConnectionManager)> {
    let client = redis::Client::open(url).map_err(|e| cluster_error(url, "bad Redis URL", e))?;
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Duration::from_secs(1))
        .set_response_timeout(Duration::from_secs(1))
        .set_number_of_retries(2)
        .set_max_delay(1000);
    let redis = tokio::time::timeout(
        Duration::from_secs(5),
        client.get_connection_manager_with_config(config),
    )
    .await
    .map_err(|_| cluster_error(url, "cannot connect", "no answer within 5 s"))?
    .map_err(|e| cluster_error(url, "cannot connect", e))?;
    Ok((client, redis))
}

/// Where a cluster's membership lives in Redis.
#[derive(Debug, Clone)]
struct Names {
    /// `<prefix>:members`: the ids of members that registered and did not expire yet.
    index: String,
    /// `<prefix>:member:`, the start of each member's key.
    member_prefix: String,
}

impl Names {
    fn new(prefix: &str) -> Self {
        Self {
            index: format!("{prefix}:members"),
            member_prefix: format!("{prefix}:member:"),
        }
    }

    fn member(&self, node: &NodeId) -> String {
        format!("{}{}", self.member_prefix, node.0)
    }
}

/// Returns the ids in the index whose member keys are alive, and removes the others from
/// it, atomically: a member that heartbeats again adds itself back.
const READ_MEMBERS: &str = r"
local alive = {}
for _, id in ipairs(redis.call('SMEMBERS', KEYS[1])) do
    if redis.call('EXISTS', ARGV[1] .. id) == 1 then
        alive[#alive + 1] = id
    else
        redis.call('SREM', KEYS[1], id)
    end
end
return alive
";

/// The ids of the members whose keys are alive now.
async fn read_members(
    redis: &mut ConnectionManager,
    names: &Names,
) -> redis::RedisResult<Vec<NodeId>> {
    let ids: Vec<String> = redis::cmd("EVAL")
        .arg(READ_MEMBERS)
        .arg(1)
        .arg(&names.index)
        .arg(&names.member_prefix)
        .query_async(redis)
        .await?;
    Ok(ids.into_iter().map(NodeId).collect())
}

/// Refreshes this instance's key and its place in the index; returns whether the key was
/// still there.
async fn heartbeat(
    redis: &mut ConnectionManager,
    names: &Names,
    node: &NodeId,
    ttl_ms: u64,
) -> redis::RedisResult<bool> {
    let (previous, _added): (Option<String>, i64) = redis::pipe()
        .atomic()
        .set_options(
            names.member(node),
            1,
            redis::SetOptions::default()
                .with_expiration(redis::SetExpiry::PX(ttl_ms))
                .get(true),
        )
        .sadd(&names.index, &node.0)
        .query_async(redis)
        .await?;
    Ok(previous.is_some())
}

impl std::fmt::Debug for Membership {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Membership")
            .field("node", self.view.me())
            .field("members", &self.view.ring().members().len())
            .finish_non_exhaustive()
    }
}

impl Membership {
    /// Connects, reads the members and starts following them, without joining: this
    /// instance routes by the others' ring until [`Membership::register`]. Fails with a
    /// clear error when Redis cannot be reached: cluster mode does not start without it.
    pub async fn connect(config: MembershipConfig) -> Result<Self> {
        let url = config.redis_url.clone();
        let (client, mut redis) = connect(&url).await?;
        let names = Names::new(&config.prefix);
        let members = read_members(&mut redis, &names)
            .await
            .map_err(|e| cluster_error(&url, "cannot read members", e))?;
        // Trouble withholds the routing epoch for two TTLs: long enough for every member to
        // re-register and every ring to settle after a Redis restart.
        let view = ClusterView::new(config.node.clone(), config.ttl * 2);
        view.set_ring(HashRing::new(members));
        let channel = format!("{}:membership", config.prefix);
        let ttl_ms = u64::try_from(config.ttl.as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        let reread = Arc::new(Notify::new());
        let (heard, troubled) = (reread.clone(), view.clone());
        let tasks = vec![
            tokio::spawn(pubsub::follow(
                client.clone(),
                channel.clone(),
                move |event| match event {
                    Heard::Lost => troubled.trouble(),
                    Heard::Subscribed | Heard::Message(_) => heard.notify_one(),
                },
            )),
            tokio::spawn(maintain(
                redis.clone(),
                config.clone(),
                names.clone(),
                ttl_ms,
                reread.clone(),
                view.clone(),
            )),
        ];
        Ok(Self {
            view,
            client,
            redis,
            names,
            channel,
            ttl_ms,
            reread,
            tasks,
        })
    }

    /// Registers this instance and announces it; the others give it its share at once.
    pub async fn register(&self) -> Result<()> {
        let mut redis = self.redis.clone();
        heartbeat(&mut redis, &self.names, self.view.me(), self.ttl_ms)
            .await
            .map_err(|e| ServerError::Cluster(format!("cannot register: {e}")))?;
        // Until the next read, route as a member: the others count us from now on.
        self.view.set_registered(true);
        let _: () = redis
            .publish(&self.channel, format!("join {}", self.view.me().0))
            .await
            .map_err(|e| ServerError::Cluster(format!("cannot announce joining: {e}")))?;
        let mut members = self.view.ring().members().to_vec();
        members.push(self.view.me().clone());
        self.view.set_ring(HashRing::new(members));
        self.reread.notify_one();
        tracing::info!(node = %self.view.me().0, "joined the cluster");
        Ok(())
    }

    /// [`Membership::connect`] then [`Membership::register`].
    pub async fn join(config: MembershipConfig) -> Result<Self> {
        let m = Self::connect(config).await?;
        m.register().await?;
        Ok(m)
    }

    /// What this instance believes; shared with the router and readiness.
    pub fn view(&self) -> &Arc<ClusterView> {
        &self.view
    }

    /// A client of the same Redis, for other channels.
    pub fn client(&self) -> &redis::Client {
        &self.client
    }

    /// A connection to the same Redis.
    pub fn redis(&self) -> ConnectionManager {
        self.redis.clone()
    }

    /// The ring as this instance sees it now.
    pub fn ring(&self) -> Arc<HashRing> {
        self.view.ring()
    }

    /// Whether this instance or another answers `key`.
    pub fn route(&self, key: &RoutingKey) -> Route {
        self.view.route(key)
    }

    /// Deregisters and announces it, so the others take over this instance's share at
    /// once; then stops the background work. The view keeps the last ring, so this
    /// instance goes on answering its old share (claims settle the overlap) until it stops.
    pub async fn leave(mut self) -> Result<()> {
        self.stop();
        self.view.set_registered(false);
        let mut redis = self.redis.clone();
        let gone = async {
            let _: () = redis::pipe()
                .atomic()
                .del(self.names.member(self.view.me()))
                .srem(&self.names.index, &self.view.me().0)
                .query_async(&mut redis)
                .await?;
            redis
                .publish::<_, _, ()>(&self.channel, format!("leave {}", self.view.me().0))
                .await
        };
        tokio::time::timeout(REDIS_TIMEOUT, gone)
            .await
            .map_err(|_| ServerError::Cluster("cannot deregister: no answer within 1 s".into()))?
            .map_err(|e| ServerError::Cluster(format!("cannot deregister: {e}")))?;
        tracing::info!(node = %self.view.me().0, "left the cluster");
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

/// Every period: heartbeat (once registered) and re-read the members; also re-reads on
/// every announcement. Errors keep the last ring and mark the view troubled.
///
/// While troubled, members are added but none is removed: after a Redis restart the others
/// re-register within a period, and an instance that dropped them meanwhile would claim
/// their share while they, cut off from claims a moment earlier, still answer it.
async fn maintain(
    mut redis: ConnectionManager,
    config: MembershipConfig,
    names: Names,
    ttl_ms: u64,
    reread: Arc<Notify>,
    view: Arc<ClusterView>,
) {
    let mut tick = tokio::time::interval(config.period());
    let mut failing = false;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = reread.notified() => {}
        }
        let registered = view.registered();
        // Bounded: a connection that is reconnecting can hold a command for seconds, and
        // the trouble must show at once.
        let result = tokio::time::timeout(REDIS_TIMEOUT, async {
            let kept = if registered {
                heartbeat(&mut redis, &names, view.me(), ttl_ms).await?
            } else {
                true
            };
            Ok::<_, redis::RedisError>((kept, read_members(&mut redis, &names).await?))
        })
        .await
        .unwrap_or_else(|_| {
            Err(redis::RedisError::from((
                redis::ErrorKind::IoError,
                "no answer within 1 s",
            )))
        });
        match result {
            Ok((kept, mut members)) => {
                if failing {
                    tracing::info!("cluster membership readable again");
                    failing = false;
                }
                if !kept {
                    // Our key was gone although we heartbeat: Redis lost its data (a
                    // restart) or we were cut off for a TTL. Claims may be gone too.
                    tracing::warn!("this instance's cluster registration was lost; restored");
                    view.trouble();
                }
                if registered {
                    members.push(view.me().clone());
                }
                if view.troubled() {
                    members.extend(view.ring().members().iter().cloned());
                }
                let next = HashRing::new(members);
                let count = next.members().len();
                if view.set_ring(next) {
                    tracing::info!(members = count, "cluster ring changed");
                }
            }
            Err(e) => {
                view.trouble();
                if !failing {
                    tracing::warn!(error = %e, "cannot reach Redis for cluster membership; keeping the last ring");
                    failing = true;
                }
            }
        }
    }
}
