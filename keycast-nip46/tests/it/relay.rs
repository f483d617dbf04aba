//! End to end through an in-process relay with rust-nostr's own NIP-46 client.

use crate::common;

use std::time::Duration;

use common::{client, setup};
use keycast_core::nostr::nips::{nip04, nip44};
use keycast_core::nostr::{EventBuilder, Keys, Kind, NostrSigner, Timestamp};
use nostr_connect::prelude::{NostrConnect, NostrConnectURI};

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
