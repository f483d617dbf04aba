//! Subscription updates and relay loss.

mod common;

use std::time::Duration;

use keycast_core::nostr::{Keys, NostrSigner};
use nostr_connect::prelude::{NostrConnect, NostrConnectURI};
use nostr_relay_builder::prelude::{LocalRelay, RelayBuilder};

fn client_with(uri: &str, keys: &Keys, timeout: Duration) -> NostrConnect {
    NostrConnect::new(
        NostrConnectURI::parse(uri).expect("uri"),
        keys.clone(),
        timeout,
        None,
    )
    .expect("client")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_service_survives_a_relay_restart_on_the_same_port() {
    // A relay on a fixed free port, so it can come back at the same address.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let relay = LocalRelay::new(RelayBuilder::default().port(port));
    relay.run().await.expect("relay");
    let s = common::setup_on(relay.url().await).await;
    let app = Keys::generate();
    let signer = client_with(&s.uri, &app, Duration::from_secs(10));
    assert_eq!(signer.get_public_key().await.expect("before"), s.user);
    signer.shutdown().await;

    relay.shutdown();
    drop(relay);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let again = LocalRelay::new(RelayBuilder::default().port(port));
    again.run().await.expect("relay restarts on the same port");

    // Same client key: the reconnect is idempotent although the secret is spent.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(45);
    loop {
        let signer = client_with(&s.uri, &app, Duration::from_secs(5));
        match signer.get_public_key().await {
            Ok(pk) => {
                assert_eq!(pk, s.user);
                break;
            }
            Err(e) => assert!(
                tokio::time::Instant::now() < deadline,
                "never served again: {e}"
            ),
        }
        signer.shutdown().await;
    }
    assert!(s.bunker.connected_relays().await >= 1);
    s.bunker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_authorizations_are_served_after_a_refresh_and_revoked_ones_are_not() {
    let s = common::setup().await;
    let second = common::add_authorization(&s).await;
    s.bunker.refresh_subscription().await.expect("refresh");
    let app = Keys::generate();
    let signer = client_with(&second.uri, &app, Duration::from_secs(10));
    assert_eq!(
        signer.get_public_key().await.expect("new authorization"),
        s.user
    );
    signer.shutdown().await;

    s.custody
        .revoke_authorization(second.id)
        .await
        .expect("revoke");
    s.bunker.refresh_subscription().await.expect("refresh");
    let signer = client_with(&second.uri, &app, Duration::from_secs(3));
    assert!(
        signer.get_public_key().await.is_err(),
        "revoked authorizations are not served"
    );
    s.bunker.shutdown().await;
}
