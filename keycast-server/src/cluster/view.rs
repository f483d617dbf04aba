//! What this instance currently believes about the cluster: the ring, how often it has
//! changed, and whether Redis has been trustworthy lately. Membership writes it; the
//! router and readiness read it.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use keycast_core::{NodeId, Route, RoutingKey};

use super::ring::HashRing;

/// Shared between membership (writer) and the router and readiness (readers).
#[derive(Debug)]
pub struct ClusterView {
    me: NodeId,
    ring: RwLock<Arc<HashRing>>,
    changes: AtomicU64,
    /// When Redis last failed us (an error, or our own member key found missing).
    trouble: Mutex<Option<Instant>>,
    /// How long after trouble routing counts as unsettled.
    settle: Duration,
    registered: AtomicBool,
}

impl ClusterView {
    /// An empty ring for `me`; after Redis trouble, routing counts as unsettled for
    /// `settle`.
    pub fn new(me: NodeId, settle: Duration) -> Arc<Self> {
        Arc::new(Self {
            me,
            ring: RwLock::new(Arc::new(HashRing::default())),
            changes: AtomicU64::new(0),
            trouble: Mutex::new(None),
            settle,
            registered: AtomicBool::new(false),
        })
    }

    /// This instance's id.
    pub fn me(&self) -> &NodeId {
        &self.me
    }

    /// The ring in force.
    pub fn ring(&self) -> Arc<HashRing> {
        self.ring.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Who owns `key` by the ring in force.
    pub fn route(&self, key: &RoutingKey) -> Route {
        self.ring
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .route(&self.me, key)
    }

    /// Whether this instance listens for `key` by the ring in force (owner or standby).
    pub fn listens(&self, key: &RoutingKey) -> bool {
        self.ring
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .listens(&self.me, key)
    }

    /// How many times the ring changed (whatever Redis's health).
    pub fn ring_changes(&self) -> u64 {
        self.changes.load(Ordering::Relaxed)
    }

    /// Installs `next` if its members differ; returns whether it did.
    pub fn set_ring(&self, next: HashRing) -> bool {
        let mut ring = self.ring.write().unwrap_or_else(|e| e.into_inner());
        if ring.members() == next.members() {
            return false;
        }
        *ring = Arc::new(next);
        self.changes.fetch_add(1, Ordering::Relaxed);
        true
    }

    /// Notes that Redis failed (or lost our registration) just now.
    pub fn trouble(&self) {
        *self.trouble.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
    }

    /// Whether Redis failed within the settle period.
    pub fn troubled(&self) -> bool {
        self.trouble
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some_and(|at| at.elapsed() < self.settle)
    }

    /// The ring-change count while routing is settled; `None` within the settle period
    /// after Redis trouble, when claims may have been skipped or lost, so requests left to
    /// others then must not be taken over later.
    pub fn epoch(&self) -> Option<u64> {
        if self.troubled() {
            return None;
        }
        Some(self.changes.load(Ordering::Relaxed))
    }

    /// Records whether this instance is in the cluster (see [`ClusterView::registered`]).
    pub fn set_registered(&self, registered: bool) {
        self.registered.store(registered, Ordering::Relaxed);
    }

    /// Whether this instance is in the cluster (joined and not leaving).
    pub fn registered(&self) -> bool {
        self.registered.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: &str) -> NodeId {
        NodeId(id.to_owned())
    }

    #[test]
    fn epoch_counts_real_ring_changes_only() {
        let view = ClusterView::new(node("a"), Duration::from_secs(60));
        assert_eq!(view.epoch(), Some(0));
        assert!(view.set_ring(HashRing::new([node("a"), node("b")])));
        assert!(!view.set_ring(HashRing::new([node("b"), node("a")])));
        assert_eq!(view.epoch(), Some(1));
    }

    #[test]
    fn trouble_withholds_the_epoch_for_the_settle_period() {
        let view = ClusterView::new(node("a"), Duration::from_millis(50));
        view.trouble();
        assert!(view.troubled());
        assert_eq!(view.epoch(), None);
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(view.epoch(), Some(0));
    }
}
