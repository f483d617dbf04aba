//! RequestRouter: which instance handles a request that many instances can see.

use std::fmt::{self, Debug};

use async_trait::async_trait;
use nostr::{EventId, PublicKey};

/// What requests are routed by: the bunker pubkey, so one instance keeps a key's caches warm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RoutingKey(pub PublicKey);

/// A cluster member's stable id.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(pub String);

impl Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeId({})", self.0)
    }
}

/// Where a request goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// This instance handles it.
    Local,
    /// Another instance owns it; this one ignores it.
    Remote(NodeId),
}

/// Decides ownership of a routing key, and which one instance handles each request.
///
/// Promises: at any moment all instances that share a view of membership agree on one owner
/// per key. While views differ (a member joined or left a moment ago) more than one instance
/// may route a request `Local`; [`RequestRouter::claim`] then lets exactly one of them
/// handle it. A request is handled only after `route` said `Local` and `claim` said yes.
///
/// Concurrency: called from many tasks at once.
#[async_trait]
pub trait RequestRouter: Send + Sync + Debug + 'static {
    /// The owner of `key`. Must be cheap (it runs for every incoming NIP-46 event) and must
    /// not block: it reads a local snapshot, never the network.
    fn route(&self, key: &RoutingKey) -> Route;

    /// Whether this instance may handle `request`, which it routed `Local`: at most one
    /// instance gets `true` per request id. May use the network; called off the intake
    /// path. The single-instance answer is always yes.
    async fn claim(&self, _key: &RoutingKey, _request: &EventId) -> bool {
        true
    }

    /// [`RequestRouter::claim`], but `None` when the claim could not be decided (the
    /// shared store did not answer) instead of the fallback `claim` applies. For callers
    /// that must not act on a fallback: one that answers a key it does not own.
    async fn try_claim(&self, key: &RoutingKey, request: &EventId) -> Option<bool> {
        Some(self.claim(key, request).await)
    }

    /// A number that changes whenever ownership may have moved. A caller that skipped
    /// requests as `Remote` keeps them and re-routes them when it changes, so a request
    /// that arrived while its new owner did not yet know it owned it is still answered.
    /// `None` means routing cannot be trusted for that (claims may have been skipped):
    /// skipped requests must then be dropped, not kept.
    fn epoch(&self) -> Option<u64> {
        Some(0)
    }

    /// Whether this instance should hear requests to `key` at all: it owns it, or stands
    /// by to take it over (it would own it if its owner left), so requests that arrive
    /// while the owner is gone are kept. Instances subscribe only to these keys, so each
    /// hears its share of the stream rather than all of it. Must be cheap and not block.
    /// The single-instance answer is always yes.
    fn listens(&self, _key: &RoutingKey) -> bool {
        true
    }

    /// A number that changes whenever [`RequestRouter::listens`] may answer differently.
    fn listening_epoch(&self) -> u64 {
        0
    }
}

/// The single-instance router: everything is local.
#[derive(Debug, Default, Clone, Copy)]
pub struct LocalRouter;

#[async_trait]
impl RequestRouter for LocalRouter {
    fn route(&self, _key: &RoutingKey) -> Route {
        Route::Local
    }
}
