//! The cluster's RequestRouter against a real Redis (`KEYCAST_TEST_REDIS_URL`): the core
//! router conformance suite, one claim winner per request id among instances, and the
//! fall-back to the ring when Redis is gone.

use crate::common;

use std::sync::Arc;
use std::time::Duration;

use keycast_core::nostr::EventId;
use keycast_core::{NodeId, RequestRouter, Route, RoutingKey};
use keycast_server::cluster::membership::{Membership, MembershipConfig};
use keycast_server::cluster::router::ClusterRouter;

fn prefix() -> String {
    format!("keycast-test-{}", uuid::Uuid::new_v4().simple())
}

async fn instance(url: &str, prefix: &str, node: &str) -> (Membership, Arc<ClusterRouter>) {
    let m = Membership::join(MembershipConfig {
        redis_url: url.to_owned(),
        prefix: prefix.to_owned(),
        node: NodeId(node.to_owned()),
        ttl: Duration::from_secs(10),
    })
    .await
    .expect("join");
    let router = Arc::new(ClusterRouter::new(
        m.view().clone(),
        m.redis(),
        prefix,
        Duration::from_secs(60),
    ));
    (m, router)
}

fn event_id(n: u8) -> EventId {
    let mut bytes = [0u8; 32];
    bytes[..16].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    bytes[31] = n;
    EventId::from_byte_array(bytes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conforms_and_grants_each_request_to_one_instance() {
    let Some(url) = common::cluster::redis_url() else {
        return;
    };
    let p = prefix();
    let (a, router_a) = instance(&url, &p, "a").await;
    let (b, router_b) = instance(&url, &p, "b").await;
    keycast_core::testing::router::run(router_a.clone()).await;
    let key = RoutingKey(keycast_core::nostr::Keys::generate().public_key());
    for n in 0..50 {
        let id = event_id(n);
        let (x, y) = tokio::join!(router_a.claim(&key, &id), router_b.claim(&key, &id));
        assert!(
            x ^ y,
            "request {n}: exactly one instance may claim it ({x}, {y})"
        );
        assert!(
            !router_a.claim(&key, &id).await,
            "a claim is not granted again"
        );
    }
    a.leave().await.expect("leave");
    b.leave().await.expect("leave");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_redis_the_owner_by_the_last_ring_decides_alone() {
    let Some(mut redis) = common::redis::PrivateRedis::start() else {
        return;
    };
    let p = prefix();
    let (a, router) = instance(&redis.url(), &p, "a").await;
    let key = RoutingKey(keycast_core::nostr::Keys::generate().public_key());
    assert_eq!(
        router.route(&key),
        Route::Local,
        "the only member owns everything"
    );
    let id = event_id(1);
    assert!(router.claim(&key, &id).await);
    assert!(!router.claim(&key, &id).await);
    redis.down();
    // Claims fail: the ring decides (this is the owner), and routing turns untrusted.
    assert!(router.claim(&key, &event_id(2)).await);
    assert!(a.view().troubled());
    assert_eq!(router.epoch(), None);
    drop(a);
}
