//! The conformance suites, run against the always-local implementations.

use std::sync::Arc;

use keycast_core::testing;
use keycast_core::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_key_store() {
    testing::key_store::run(Arc::new(MemoryKeyStore::new())).await;
}

#[tokio::test]
async fn insecure_test_key_manager() {
    testing::key_manager::run(Arc::new(InsecureTestKeyManager::new())).await;
}

#[tokio::test]
async fn keyring_with_an_older_manager() {
    let old = Arc::new(InsecureTestKeyManager::new());
    let ring =
        Arc::new(Keyring::new(Arc::new(InsecureTestKeyManager::new())).with_older(old.clone()));
    testing::key_manager::run(ring.clone()).await;

    // Rows wrapped by the old manager still open, and rewrap moves them to the primary.
    let dek = Secret32::new([5u8; 32]);
    let w = old.wrap(&dek, b"aad").await.expect("wrap");
    assert!(ring.needs_rewrap(&w.kek));
    assert_eq!(*ring.unwrap(&w, b"aad").await.expect("unwrap"), [5u8; 32]);
    let moved = ring.rewrap(&w, b"aad").await.expect("rewrap");
    assert_eq!(&moved.kek, ring.id());
    assert!(!ring.needs_rewrap(&moved.kek));
    assert_eq!(
        *ring.unwrap(&moved, b"aad").await.expect("unwrap"),
        [5u8; 32]
    );
}

#[tokio::test]
async fn policy_authorizer() {
    let store: Arc<dyn KeyStore> = Arc::new(MemoryKeyStore::new());
    testing::authorizer::run(Arc::new(PolicyAuthorizer::new(store.clone())), store).await;
}

#[tokio::test]
async fn local_router() {
    testing::router::run(Arc::new(LocalRouter)).await;
    assert_eq!(
        LocalRouter.route(&RoutingKey(testing::fixtures::pubkey())),
        Route::Local
    );
}

#[tokio::test]
async fn allow_all_allows_what_policies_refuse() {
    let store: Arc<dyn KeyStore> = Arc::new(MemoryKeyStore::new());
    let w = testing::key_store::world(&store).await;
    let auth = w.authorization(&store, None).await;
    let ctx = AuthContext {
        tenant_id: w.tenant.id,
        key_id: w.key.id,
        key_pubkey: w.key.pubkey,
        authorization: Some(&auth),
        policy: None,
        now: nostr::Timestamp::now(),
    };
    let got = AllowAll.authorize(&ctx, &Request::GetPublicKey).await;
    assert_eq!(got, Ok(Decision::Allow));
}
