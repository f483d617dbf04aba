//! RequestRouter: which instance handles a request that many instances can see.

use std::fmt::{self, Debug};

use nostr::PublicKey;

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

/// Decides ownership of a routing key.
///
/// Promises: at any moment all instances that share a view of membership agree on one owner
/// per key. Must be cheap (it runs for every incoming NIP-46 event) and must not block: it
/// reads a local snapshot, never the network.
///
/// Concurrency: called from many tasks at once.
pub trait RequestRouter: Send + Sync + Debug + 'static {
    /// The owner of `key`.
    fn route(&self, key: &RoutingKey) -> Route;
}

/// The single-instance router: everything is local.
#[derive(Debug, Default, Clone, Copy)]
pub struct LocalRouter;

impl RequestRouter for LocalRouter {
    fn route(&self, _key: &RoutingKey) -> Route {
        Route::Local
    }
}
