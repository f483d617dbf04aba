//! End to end through an in-process relay with rust-nostr's own NIP-46 client.

use std::sync::Arc;
use std::time::Duration;

use keycast_core::nostr::nips::{nip04, nip44};
use keycast_core::nostr::{EventBuilder, Keys, Kind, NostrSigner, RelayUrl, Timestamp};
use keycast_core::*;
use keycast_nip46::{Bunker, BunkerConfig, BunkerUri};
use nostr_connect::prelude::{NostrConnect, NostrConnectURI};
use nostr_relay_builder::MockRelay;

struct Setup {
    _relay: MockRelay,
    bunker: Bunker,
    uri: String,
    user: keycast_core::nostr::PublicKey,
}

async fn setup() -> Setup {
    let relay = MockRelay::run().await.expect("relay");
    let url: RelayUrl = relay.url().await;
    let store = Arc::new(MemoryKeyStore::new());
    let custody = Custody::builder(store.clone(), Arc::new(InsecureTestKeyManager::new()))
        .build()
        .expect("engine");
    let tenant = Tenant::new(TenantName::parse("relay").expect("name"));
    store.create_tenant(&tenant).await.expect("tenant");
    let user = User::new(tenant.id, Username::parse("alice").expect("name"), None);
    store.create_user(&user).await.expect("user");
    let key = custody
        .create_key(
            tenant.id,
            Some(user.id),
            KeyKind::User,
            Label::parse("main").expect("label"),
            None,
        )
        .await
        .expect("key");
    let policy = Policy::new(
        tenant.id,
        Label::parse("all").expect("label"),
        vec![Permission::FullAccess],
    )
    .expect("policy");
    store.insert_policy(&policy).await.expect("policy");
    let (auth, secret) = custody
        .create_authorization(NewAuthorization {
            tenant_id: tenant.id,
            user_id: user.id,
            key_id: key.id,
            policy_id: policy.id,
            label: Label::parse("app").expect("label"),
            relays: vec![url.clone()],
            expires_at: None,
        })
        .await
        .expect("authorization");
    let bunker = Bunker::start(custody, BunkerConfig::new(vec![url.clone()]))
        .await
        .expect("bunker");
    let uri = BunkerUri {
        signer: auth.bunker_pubkey,
        relays: vec![url],
        secret: Some(secret.expose().to_owned()),
    }
    .to_uri()
    .expect("uri");
    Setup {
        _relay: relay,
        bunker,
        uri,
        user: key.pubkey,
    }
}

fn client(uri: &str) -> NostrConnect {
    let uri = NostrConnectURI::parse(uri).expect("bunker uri");
    NostrConnect::new(uri, Keys::generate(), Duration::from_secs(10), None).expect("client")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_nostr_client_uses_every_method() {
    let s = setup().await;
    let signer = client(&s.uri);

    assert_eq!(
        signer.get_public_key().await.expect("get_public_key"),
        s.user
    );

    let unsigned = EventBuilder::text_note("hello through nip-46")
        .custom_created_at(Timestamp::from(1_700_000_000))
        .build(s.user);
    let event = signer.sign_event(unsigned).await.expect("sign_event");
    event.verify().expect("valid");
    assert_eq!(event.pubkey, s.user);
    assert_eq!(event.kind, Kind::TextNote);
    assert_eq!(event.created_at.as_secs(), 1_700_000_000);

    let peer = Keys::generate();
    let ct = signer
        .nip44_encrypt(&peer.public_key(), "n44")
        .await
        .expect("nip44_encrypt");
    assert_eq!(
        nip44::decrypt(peer.secret_key(), &s.user, &ct).expect("decrypt"),
        "n44"
    );
    let back =
        nip44::encrypt(peer.secret_key(), &s.user, "back", nip44::Version::V2).expect("encrypt");
    assert_eq!(
        signer
            .nip44_decrypt(&peer.public_key(), &back)
            .await
            .expect("nip44_decrypt"),
        "back"
    );
    let ct = signer
        .nip04_encrypt(&peer.public_key(), "n04")
        .await
        .expect("nip04_encrypt");
    assert_eq!(
        nip04::decrypt(peer.secret_key(), &s.user, &ct).expect("decrypt"),
        "n04"
    );

    let stats = s.bunker.stats();
    assert!(stats.processed >= 6, "{stats:?}");
    assert_eq!(stats.panics, 0);
    assert_eq!(stats.queue_dropped, 0);
    assert!(s.bunker.connected_relays().await >= 1);
    s.bunker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_client_cannot_reuse_the_secret() {
    let s = setup().await;
    let first = client(&s.uri);
    assert_eq!(first.get_public_key().await.expect("first client"), s.user);
    let second = NostrConnect::new(
        NostrConnectURI::parse(&s.uri).expect("uri"),
        Keys::generate(),
        Duration::from_secs(3),
        None,
    )
    .expect("client");
    assert!(
        second.get_public_key().await.is_err(),
        "the connect secret is single-use"
    );
    s.bunker.shutdown().await;
}
