//! Writes that cached values depend on, made through the engine: the next request here
//! sees them without the caller forgetting anything.

use keycast_core::nostr::{Keys, Kind};
use keycast_core::*;

use super::engine::{fixture, Fixture};

/// An authorization under a policy of its own, with its connect secret.
async fn authorization(f: &Fixture, permissions: Vec<Permission>) -> (Authorization, BearerSecret) {
    let policy =
        Policy::new(f.tenant.id, Label::parse("p").expect("label"), permissions).expect("policy");
    f.store.insert_policy(&policy).await.expect("policy");
    f.custody
        .create_authorization(NewAuthorization {
            tenant_id: f.tenant.id,
            user_id: f.user.id,
            key_id: f.key.id,
            policy_id: policy.id,
            label: Label::parse("app").expect("label"),
            relays: vec![],
            expires_at: None,
        })
        .await
        .expect("authorization")
}

#[tokio::test]
async fn a_policy_update_applies_to_the_next_request() {
    let f = fixture().await;
    let kinds = |k: u16| vec![Permission::AllowedKinds { kinds: [k].into() }];
    let (auth, _) = authorization(&f, kinds(1)).await;
    let app = Caller::Authorization(auth.id);
    let sign = |kind: Kind| f.custody.sign_event(app, EventTemplate::new(kind, "x"));
    sign(Kind::TextNote).await.expect("kind 1 allowed");
    assert!(matches!(sign(Kind::Metadata).await, Err(Error::Denied(_))));

    let stored = f.store.get_policy(auth.policy_id).await.expect("policy");
    let edit = Policy {
        permissions: kinds(0),
        ..stored.clone()
    };
    let updated = f.custody.update_policy(&edit).await.expect("update");
    assert_eq!(updated.version, stored.version + 1);
    sign(Kind::Metadata).await.expect("kind 0 allowed now");
    assert!(matches!(sign(Kind::TextNote).await, Err(Error::Denied(_))));

    // A stale version is a conflict and changes nothing.
    let stale = Policy {
        permissions: kinds(1),
        ..stored
    };
    assert!(matches!(
        f.custody.update_policy(&stale).await,
        Err(Error::Conflict(_))
    ));
    sign(Kind::Metadata).await.expect("still kind 0");
    assert!(matches!(sign(Kind::TextNote).await, Err(Error::Denied(_))));
}

#[tokio::test]
async fn connect_and_logout_are_seen_at_once() {
    let f = fixture().await;
    let (auth, secret) = authorization(&f, vec![Permission::FullAccess]).await;
    let client = Keys::generate().public_key();
    // Cached before the connect.
    assert!(!f
        .custody
        .authorization(auth.id)
        .await
        .expect("auth")
        .has_client(&client));

    f.custody
        .redeem_connect_secret(auth.id, &secret.digest(), client)
        .await
        .expect("connect");
    assert!(f
        .custody
        .authorization(auth.id)
        .await
        .expect("auth")
        .has_client(&client));

    // The secret was single use: another client cannot redeem it, and nothing changes.
    let other = Keys::generate().public_key();
    let again = f
        .custody
        .redeem_connect_secret(auth.id, &secret.digest(), other)
        .await;
    assert!(matches!(again, Err(Error::Conflict(_))), "{again:?}");
    let now = f.custody.authorization(auth.id).await.expect("auth");
    assert!(now.has_client(&client) && !now.has_client(&other));

    assert!(f
        .custody
        .remove_client(auth.id, &client)
        .await
        .expect("logout"));
    assert!(!f
        .custody
        .authorization(auth.id)
        .await
        .expect("auth")
        .has_client(&client));
    assert!(!f
        .custody
        .remove_client(auth.id, &client)
        .await
        .expect("again"));
}

#[tokio::test]
async fn reload_reads_past_the_cache() {
    let f = fixture().await;
    let (auth, secret) = authorization(&f, vec![Permission::FullAccess]).await;
    let client = Keys::generate().public_key();
    assert!(!f
        .custody
        .authorization(auth.id)
        .await
        .expect("auth")
        .has_client(&client));
    // Another instance connects the client: this one's copy is stale until reloaded.
    f.store
        .redeem_connect_secret(auth.id, &secret.digest(), client)
        .await
        .expect("connect elsewhere");
    assert!(!f
        .custody
        .authorization(auth.id)
        .await
        .expect("cached")
        .has_client(&client));
    let fresh = f
        .custody
        .reload_authorization(auth.id)
        .await
        .expect("reload");
    assert!(fresh.has_client(&client));
    assert!(f
        .custody
        .authorization(auth.id)
        .await
        .expect("auth")
        .has_client(&client));
}
