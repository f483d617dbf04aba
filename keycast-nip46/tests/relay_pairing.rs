//! The client-initiated flow: keycast accepts a `nostrconnect://` URI and answers first.

mod common;

use std::time::Duration;

use common::raw::RawClient;
use keycast_core::nostr::{Keys, Timestamp};
use keycast_core::{Label, NewAuthorization};
use keycast_nip46::NostrConnectUri;
use nostr_relay_builder::MockRelay;

const WAIT: Duration = Duration::from_secs(5);

fn new_authorization(s: &common::Setup) -> NewAuthorization {
    NewAuthorization {
        tenant_id: s.tenant,
        user_id: s.user_id,
        key_id: s.key,
        policy_id: s.policy,
        label: Label::parse("scanned app").expect("label"),
        relays: vec![s.url.clone()],
        expires_at: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scanned_client_on_its_own_relay_is_answered_and_served() {
    let s = common::setup().await;
    // The client listens on a relay the bunker was not configured with.
    let theirs = MockRelay::run().await.expect("client relay");
    let their_url = theirs.url().await;
    let app = Keys::generate();
    let uri = NostrConnectUri::parse(&format!(
        "nostrconnect://{}?relay={}&secret=s3cr3t&perms=sign_event:1,nip44_encrypt&name=Scanned",
        app.public_key().to_hex(),
        their_url
    ))
    .expect("uri");
    // Listening before pairing: the connect reply is the first message.
    let mut c = RawClient::with_keys(&their_url, s.bunker_pubkey, app.clone()).await;

    let auth = s
        .bunker
        .pair(&uri, new_authorization(&s))
        .await
        .expect("pair");
    assert_eq!(auth.relays, vec![their_url.clone()], "the client's relays");
    assert!(auth.has_client(&app.public_key()), "the client is bound");
    assert_ne!(auth.bunker_pubkey, s.user, "a bunker key, not the user key");
    c.bunker = auth.bunker_pubkey;

    let (reply, legacy) = c.reply(WAIT).await.expect("connect reply");
    assert_eq!(reply["result"], "s3cr3t", "echoes the client's secret");
    assert!(!legacy, "NIP-44");

    for (id, method, expected) in [
        ("p1", "ping", "pong".to_owned()),
        ("g1", "get_public_key", s.user.to_hex()),
    ] {
        let json = format!(r#"{{"id":"{id}","method":"{method}","params":[]}}"#);
        c.send(&c.request(&json, Timestamp::now(), false)).await;
        let (reply, _) = c.reply(WAIT).await.expect("served on the client's relay");
        assert_eq!(reply["id"], id);
        assert_eq!(reply["result"], expected.as_str());
    }

    // Another key sending to the same bunker was never paired.
    let mut stranger = RawClient::new(&their_url, auth.bunker_pubkey).await;
    stranger
        .send(&stranger.request(
            r#"{"id":"x1","method":"get_public_key","params":[]}"#,
            Timestamp::now(),
            false,
        ))
        .await;
    let (reply, _) = stranger.reply(WAIT).await.expect("refusal");
    assert!(reply.get("result").is_none(), "{reply}");
    assert!(reply["error"].is_string());

    let relays = s.bunker.relay_states().await;
    assert_eq!(
        relays.len(),
        2,
        "configured relay and the client's: {relays:?}"
    );
    s.bunker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_older_client_without_a_secret_gets_ack() {
    let s = common::setup().await;
    let app = Keys::generate();
    let uri = NostrConnectUri::parse(&format!(
        r#"nostrconnect://{}?relay={}&metadata={{"name":"Old app"}}"#,
        app.public_key().to_hex(),
        s.url
    ))
    .expect("uri");
    assert_eq!(uri.name.as_deref(), Some("Old app"));
    let mut c = RawClient::with_keys(&s.url, s.bunker_pubkey, app).await;
    let auth = s
        .bunker
        .pair(&uri, new_authorization(&s))
        .await
        .expect("pair");
    c.bunker = auth.bunker_pubkey;
    let (reply, _) = c.reply(WAIT).await.expect("connect reply");
    assert_eq!(reply["result"], "ack");
    s.bunker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pairing_with_a_key_that_is_not_ours_changes_nothing() {
    let s = common::setup().await;
    let uri = NostrConnectUri::parse(&format!(
        "nostrconnect://{}?relay={}&secret=x",
        Keys::generate().public_key().to_hex(),
        s.url
    ))
    .expect("uri");
    let mut new = new_authorization(&s);
    new.key_id = keycast_core::KeyId::random();
    let before = s
        .custody
        .store()
        .list_active_authorizations(Timestamp::now())
        .await
        .expect("list")
        .len();
    assert!(s.bunker.pair(&uri, new).await.is_err());
    let after = s
        .custody
        .store()
        .list_active_authorizations(Timestamp::now())
        .await
        .expect("list")
        .len();
    assert_eq!(before, after);
    s.bunker.shutdown().await;
}
