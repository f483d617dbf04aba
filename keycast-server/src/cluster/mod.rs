//! Cluster mode: many instances on one Postgres, coordinating through Redis (design §6).
//!
//! - [`ring::HashRing`]: the consistent hashring that names each bunker pubkey's owner.
//! - [`membership::Membership`]: registration with a TTL heartbeat, join/leave
//!   announcements and periodic re-reads, kept in a [`view::ClusterView`].
//! - [`router::ClusterRouter`]: the engine's `RequestRouter`, with a `SET NX` claim per
//!   NIP-46 request so each is handled once while views of the ring differ.
//! - [`invalidation`]: change-feed positions over pub/sub, so writes reach every
//!   instance's caches at once; the feed poll is the safety net.
//! - [`login_limits`]: login attempt and failure counts shared by all instances.
//! - [`settings`]: the configuration.
//!
//! Redis holds member ids, claims (request event ids), feed positions and login counters
//! under hashed e-mails: never a secret.

pub mod invalidation;
pub mod login_limits;
pub mod membership;
mod pubsub;
pub mod ring;
pub mod router;
pub mod settings;
pub mod view;

use std::sync::Arc;
use std::time::Duration;

use keycast_core::RequestRouter;
use serde::Serialize;
use tokio::sync::Mutex;
use tokio::task::JoinHandle;

use crate::error::Result;
use crate::fence::FenceSignals;
use invalidation::Announcer;
use login_limits::SharedLoginLimits;
use membership::{Membership, MembershipConfig};
use router::ClusterRouter;
use settings::ClusterSettings;
use view::ClusterView;

/// This instance's part in the cluster.
pub struct Cluster {
    membership: Mutex<Option<Membership>>,
    view: Arc<ClusterView>,
    router: Arc<ClusterRouter>,
    announcer: Announcer,
    client: redis::Client,
    redis: redis::aio::ConnectionManager,
    prefix: String,
    period: Duration,
    listener: std::sync::Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("node", self.view.me())
            .finish_non_exhaustive()
    }
}

/// What readiness reports about the cluster.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ClusterStatus {
    /// This instance's id.
    pub node: String,
    /// Members in this instance's ring.
    pub members: usize,
    /// Whether this instance is registered (false before start-up ends and while stopping).
    pub registered: bool,
    /// Whether Redis failed lately; the last ring is kept meanwhile.
    pub redis_trouble: bool,
}

impl Cluster {
    /// Connects to Redis and follows the members, without joining yet (see
    /// [`Cluster::register`]). Fails with a clear error when Redis cannot be reached.
    /// `claim_ttl` is how long a request's claim is kept (the bunker's replay window).
    pub async fn connect(settings: &ClusterSettings, claim_ttl: Duration) -> Result<Self> {
        let config = MembershipConfig {
            redis_url: settings.redis_url.clone(),
            prefix: settings.prefix.clone(),
            node: settings.node.clone(),
            ttl: settings.ttl,
        };
        let period = config.period();
        let membership = Membership::connect(config).await?;
        let view = membership.view().clone();
        let router = Arc::new(ClusterRouter::new(
            view.clone(),
            membership.redis(),
            &settings.prefix,
            claim_ttl,
        ));
        Ok(Self {
            announcer: Announcer::new(membership.redis(), &settings.prefix),
            client: membership.client().clone(),
            redis: membership.redis(),
            membership: Mutex::new(Some(membership)),
            view,
            router,
            prefix: settings.prefix.clone(),
            period,
            listener: std::sync::Mutex::new(None),
        })
    }

    /// Login counters shared with the other instances.
    pub fn login_limits(&self) -> SharedLoginLimits {
        SharedLoginLimits::new(self.redis.clone(), &self.prefix)
    }

    /// The engine's router.
    pub fn router(&self) -> Arc<dyn RequestRouter> {
        self.router.clone()
    }

    /// Announces the change-feed positions this instance finds.
    pub fn announcer(&self) -> Announcer {
        self.announcer.clone()
    }

    /// Wakes the fence when another instance announces changes this one has not read.
    pub fn follow_changes(&self, signals: FenceSignals) {
        let task = invalidation::listen(self.client.clone(), &self.prefix, signals);
        if let Some(old) = self
            .listener
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .replace(task)
        {
            old.abort();
        }
    }

    /// Joins: the others hand this instance its share. Call once it listens on the relays.
    pub async fn register(&self) -> Result<()> {
        match &*self.membership.lock().await {
            Some(m) => m.register().await,
            None => Ok(()),
        }
    }

    /// Deregisters, so the others take this instance's share at once. It keeps answering
    /// its old share (the others' claims settle any overlap) until it stops; stop no
    /// sooner than [`Cluster::handover`] later, so an instance that missed the
    /// announcement has re-read the members by then.
    pub async fn leave(&self) {
        if let Some(m) = self.membership.lock().await.take() {
            if let Err(e) = m.leave().await {
                tracing::warn!(error = %e, "could not deregister; the others take over when this instance's registration expires");
            }
        }
        if let Some(task) = self
            .listener
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            task.abort();
        }
    }

    /// How long after [`Cluster::leave`] this instance should still answer.
    pub fn handover(&self) -> Duration {
        self.period + Duration::from_millis(500)
    }

    /// For readiness and metrics.
    pub fn status(&self) -> ClusterStatus {
        ClusterStatus {
            node: self.view.me().0.clone(),
            members: self.view.ring().members().len(),
            registered: self.view.registered(),
            redis_trouble: self.view.troubled(),
        }
    }
}
