//! `Custody::delete_key`: the key stops working at once here, and on another engine over
//! the same store as soon as it applies the change feed, even with everything cached.

use std::sync::Arc;

use keycast_core::nostr::Kind;
use keycast_core::testing::fixtures::authorized_key;
use keycast_core::{
    AuditAction, AuditFilter, Caller, Custody, Error, EventTemplate, InsecureTestKeyManager,
    KeyStore, MemoryKeyStore, Permission,
};

fn engines() -> (Arc<dyn KeyStore>, Custody, Custody) {
    let store: Arc<dyn KeyStore> = Arc::new(MemoryKeyStore::new());
    let km = Arc::new(InsecureTestKeyManager::new());
    let engine = || {
        Custody::builder(store.clone(), km.clone())
            .build()
            .expect("engine")
    };
    let (here, there) = (engine(), engine());
    (store, here, there)
}

fn note() -> EventTemplate {
    EventTemplate::new(Kind::TextNote, "hello")
}

fn assert_not_found<T: std::fmt::Debug>(r: keycast_core::Result<T>, ctx: &str) {
    assert!(
        matches!(r, Err(Error::NotFound { .. })),
        "{ctx}: expected NotFound, got {r:?}"
    );
}

/// Loads the authorization, the bunker mapping and the signing key into `custody`'s caches.
async fn warm(custody: &Custody, ak: &keycast_core::testing::fixtures::AuthorizedKey) {
    let auth = ak.authorization.id;
    custody
        .sign_event(Caller::Authorization(auth), note())
        .await
        .expect("sign before deletion");
    custody
        .authorization_by_bunker(ak.authorization.bunker_pubkey)
        .await
        .expect("bunker lookup before deletion");
    custody
        .get_public_key(Caller::Owner(ak.key.id))
        .await
        .expect("owner call before deletion");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_key_stops_working_here_and_after_the_feed_elsewhere() {
    let (store, here, there) = engines();
    let ak = authorized_key(&here, vec![Permission::FullAccess], vec![]).await;
    warm(&here, &ak).await;
    warm(&there, &ak).await;
    let start = store.latest_change().await.expect("feed");

    let deleted = here.delete_key(ak.key.id).await.expect("delete");
    assert_eq!(deleted.id, ak.key.id);
    let auth = Caller::Authorization(ak.authorization.id);
    assert_not_found(here.sign_event(auth, note()).await, "authorization here");
    assert_not_found(
        here.get_public_key(Caller::Owner(ak.key.id)).await,
        "owner call here",
    );
    assert_not_found(
        here.authorization_by_bunker(ak.authorization.bunker_pubkey)
            .await,
        "bunker lookup here",
    );

    // The other engine forgets the authorization and the key once it applies the feed.
    let changes = store.changes_since(start, 100).await.expect("feed");
    there.apply_changes(&changes);
    assert_not_found(there.sign_event(auth, note()).await, "authorization there");
    assert_not_found(
        there
            .authorization_by_bunker(ak.authorization.bunker_pubkey)
            .await,
        "bunker lookup there",
    );
    // The feed names the key too, so the other engine drops the secret it cached: even a
    // direct owner call (which no authorization guards) now has to reload, and finds none.
    assert_not_found(
        there.get_public_key(Caller::Owner(ak.key.id)).await,
        "owner call there",
    );

    let audit = store
        .list_audit(&AuditFilter {
            tenant_id: ak.tenant.id,
            key_id: Some(ak.key.id),
            authorization_id: None,
            limit: 10,
        })
        .await
        .expect("audit");
    assert_eq!(audit[0].action, AuditAction::DeleteKey, "{audit:?}");
    assert_eq!(audit[0].user_id, Some(ak.user.id));
    assert_not_found(here.delete_key(ak.key.id).await, "second delete");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_one_key_leaves_another_working() {
    let (_, custody, _) = engines();
    let doomed = authorized_key(&custody, vec![Permission::FullAccess], vec![]).await;
    let kept = authorized_key(&custody, vec![Permission::FullAccess], vec![]).await;
    warm(&custody, &doomed).await;
    warm(&custody, &kept).await;
    custody.delete_key(doomed.key.id).await.expect("delete");
    custody
        .sign_event(Caller::Authorization(kept.authorization.id), note())
        .await
        .expect("the other key still signs");
}
