//! The RequestRouter conformance suite.

use std::sync::Arc;

use crate::traits::router::{RequestRouter, Route, RoutingKey};

/// Runs every check: routing is total and stable for a fixed membership.
pub async fn run(router: Arc<dyn RequestRouter>) {
    stable_and_total(&router);
}

pub fn stable_and_total(router: &Arc<dyn RequestRouter>) {
    for _ in 0..256 {
        let key = RoutingKey(super::fixtures::pubkey());
        let first = router.route(&key);
        for _ in 0..3 {
            assert_eq!(
                router.route(&key),
                first,
                "routing must be stable for a fixed membership"
            );
        }
        if let Route::Remote(node) = &first {
            assert!(!node.0.is_empty(), "a remote route names its node");
        }
    }
}
