//! Writes that cached values depend on, made through the engine: the next request here
//! sees them without the caller forgetting anything.

use keycast_core::nostr::{Keys, Kind, PublicKey};
use keycast_core::*;

use super::engine::{fixture, Fixture};

/// Whether the engine's (possibly cached) copy of `auth` has `client`.
async fn connected(f: &Fixture, auth: AuthorizationId, client: &PublicKey) -> bool {
    let auth = f.custody.authorization(auth).await.expect("authorization");
    auth.has_client(client)
}

/// An app's authorization and a client not connected to it, whose absence the engine has
/// cached.
async fn unconnected(f: &Fixture) -> (Authorization, BearerSecret, PublicKey) {
    let (auth, secret) = f.authorize_with_secret(vec![Permission::FullAccess]).await;
    let client = Keys::generate().public_key();
    assert!(!connected(f, auth.id, &client).await);
    (auth, secret, client)
}

#[tokio::test]
async fn a_policy_update_applies_to_the_next_request() {
    let f = fixture().await;
    let kinds = |k: u16| vec![Permission::AllowedKinds { kinds: [k].into() }];
    let (auth, _) = f.authorize_with_secret(kinds(1)).await;
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
    let (auth, secret, client) = unconnected(&f).await;
    f.custody
        .redeem_connect_secret(auth.id, &secret.digest(), client)
        .await
        .expect("connect");
    assert!(connected(&f, auth.id, &client).await);

    // The secret was single use: another client cannot redeem it, and nothing changes.
    let other = Keys::generate().public_key();
    let again = f
        .custody
        .redeem_connect_secret(auth.id, &secret.digest(), other)
        .await;
    assert!(matches!(again, Err(Error::Conflict(_))), "{again:?}");
    assert!(connected(&f, auth.id, &client).await);
    assert!(!connected(&f, auth.id, &other).await);

    let logout = f.custody.remove_client(auth.id, &client).await;
    assert_eq!(logout, Ok(true));
    assert!(!connected(&f, auth.id, &client).await);
    assert_eq!(f.custody.remove_client(auth.id, &client).await, Ok(false));
}

#[tokio::test]
async fn reload_reads_past_the_cache() {
    let f = fixture().await;
    let (auth, secret, client) = unconnected(&f).await;
    // Another instance connects the client: this one's copy is stale until reloaded.
    f.store
        .redeem_connect_secret(auth.id, &secret.digest(), client)
        .await
        .expect("connect elsewhere");
    assert!(!connected(&f, auth.id, &client).await, "still cached");
    let fresh = f.custody.reload_authorization(auth.id).await;
    assert!(fresh.expect("reload").has_client(&client));
    assert!(connected(&f, auth.id, &client).await);
}
