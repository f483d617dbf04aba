//! The client-initiated flow: keycast accepts a `nostrconnect://` URI and answers first.

use crate::common;

use std::time::Duration;

use common::raw::RawClient;
use common::recorder::{until, Recorder};
use keycast_core::nostr::{Keys, PublicKey, RelayUrl, Timestamp};
use keycast_core::{Label, NewAuthorization};
use keycast_nip46::testing::TestRelay;
use keycast_nip46::{Bunker, BunkerConfig, Error, NostrConnectUri, RateLimit};

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
    // The client's relay is on loopback, which only an allow-list lets the bunker reach.
    let s = common::setup_with(|mut c| {
        c.relay_allow_list = Some(vec!["127.0.0.1".into()]);
        c
    })
    .await;
    // The client listens on a relay the bunker was not configured with.
    let theirs = TestRelay::with_defaults().await.expect("client relay");
    let their_url = theirs.url();
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
        .list_active_authorizations(Timestamp::now(), None, u32::MAX)
        .await
        .expect("list")
        .len();
    assert!(s.bunker.pair(&uri, new).await.is_err());
    let after = s
        .custody
        .store()
        .list_active_authorizations(Timestamp::now(), None, u32::MAX)
        .await
        .expect("list")
        .len();
    assert_eq!(before, after);
    s.bunker.shutdown().await;
}

fn uri_on(relays: &[&str], secret: &str) -> NostrConnectUri {
    let query: Vec<String> = relays.iter().map(|r| format!("relay={r}")).collect();
    NostrConnectUri::parse(&format!(
        "nostrconnect://{}?{}&secret={secret}",
        Keys::generate().public_key().to_hex(),
        query.join("&")
    ))
    .expect("uri")
}

async fn active_count(s: &common::Setup) -> usize {
    s.custody
        .store()
        .list_active_authorizations(Timestamp::now(), None, u32::MAX)
        .await
        .expect("list")
        .len()
}

fn allow_loopback(mut c: BunkerConfig) -> BunkerConfig {
    c.relay_allow_list = Some(vec!["127.0.0.1".into()]);
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_extra_relay_is_asked_only_for_its_own_bunker_key_and_dropped_once_unused() {
    let s = common::setup_with(allow_loopback).await;
    let other = common::add_authorization(&s).await;
    s.bunker.refresh_subscription().await.expect("refresh");
    let theirs = Recorder::start().await;
    let uri = uri_on(&[theirs.url.as_str()], "s1");
    let auth = s
        .bunker
        .pair(&uri, new_authorization(&s))
        .await
        .expect("pair");
    until(WAIT, "the client's relay gets a REQ", || {
        !theirs.subscribed_keys().is_empty()
    })
    .await;
    let other_bunker = keycast_nip46::BunkerUri::parse(&other.uri)
        .expect("uri")
        .signer;
    let only_theirs = |reqs: Vec<Vec<PublicKey>>| {
        for keys in &reqs {
            assert!(
                !keys.contains(&s.bunker_pubkey) && !keys.contains(&other_bunker),
                "another authorization's bunker key leaked: {reqs:?}"
            );
            assert_eq!(keys, &[auth.bunker_pubkey], "{reqs:?}");
        }
    };
    only_theirs(theirs.subscribed_keys());
    assert_eq!(s.bunker.relay_states().await.len(), 2);

    // A change elsewhere (another authorization revoked) re-sends nothing to it.
    let sent = theirs.subscribed_keys().len();
    s.custody
        .revoke_authorization(other.id)
        .await
        .expect("revoke");
    s.bunker.refresh_subscription().await.expect("refresh");
    assert_eq!(theirs.subscribed_keys().len(), sent);

    // After a restart the active authorization's relay is connected again, for its key.
    s.bunker.shutdown().await;
    let config = || allow_loopback(BunkerConfig::new(vec![s.url.clone()]));
    let again = Bunker::start(s.custody.clone(), config())
        .await
        .expect("restart");
    until(WAIT, "a REQ after the restart", || {
        theirs.subscribed_keys().len() > sent
    })
    .await;
    only_theirs(theirs.subscribed_keys());

    // Revoked: the relay leaves the pool and its connection is closed.
    s.custody
        .revoke_authorization(auth.id)
        .await
        .expect("revoke");
    again.refresh_subscription().await.expect("refresh");
    let states = again.relay_states().await;
    assert_eq!(states.len(), 1, "only the configured relay: {states:?}");
    assert_eq!(states[0].url, s.url);
    until(WAIT, "the connection is closed", || theirs.open() == 0).await;

    // And after another restart it is not connected at all.
    let accepted = theirs.accepted();
    again.shutdown().await;
    let third = Bunker::start(s.custody.clone(), config())
        .await
        .expect("restart");
    assert_eq!(third.relay_states().await.len(), 1);
    assert_eq!(theirs.accepted(), accepted, "never reconnected");
    third.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relays_at_internal_addresses_are_refused_at_pairing_and_never_connected() {
    // The default policy (no allow-list); pairings not rate-limited here.
    let s = common::setup_with(|mut c| {
        c.pairing_limit = RateLimit::new(1_000.0, 1_000);
        c
    })
    .await;
    let rec = Recorder::start().await;
    let before = active_count(&s).await;
    let port = rec.port;
    for relay in [
        rec.url.to_string(),
        format!("ws://localhost:{port}"),
        format!("ws://[::ffff:127.0.0.1]:{port}"),
        format!("ws://2130706433:{port}"),
        "ws://10.0.0.1:7777".to_owned(),
        "ws://169.254.169.254".to_owned(),
        "ws://[fd00:ec2::254]".to_owned(),
    ] {
        match s
            .bunker
            .pair(&uri_on(&[&relay], "s"), new_authorization(&s))
            .await
        {
            Err(Error::RelayRefused { reason, .. }) => assert!(!reason.is_empty()),
            other => panic!("{relay}: {other:?}"),
        }
    }
    assert_eq!(active_count(&s).await, before, "nothing created");
    assert_eq!(s.bunker.stats().pairings_refused, 7);

    // An authorization naming such relays anyway (made through the engine, or before
    // this policy): a literal internal address is never added; a name is tried, and
    // every address it resolves to is refused where the connection is made.
    let mut new = new_authorization(&s);
    new.relays = vec![
        rec.url.clone(),
        RelayUrl::parse(&format!("ws://localhost:{port}")).expect("url"),
    ];
    s.custody.create_authorization(new).await.expect("create");
    s.bunker.refresh_subscription().await.expect("refresh");
    let states = s.bunker.relay_states().await;
    let urls: Vec<&str> = states.iter().map(|r| r.url.as_str()).collect();
    assert!(!urls.contains(&rec.url.as_str()), "{urls:?}");
    until(WAIT, "the name tried", || {
        s.bunker.stats().relays_refused > 0 || rec.accepted() > 0
    })
    .await;
    assert_eq!(
        rec.accepted(),
        0,
        "no connection reached the loopback relay"
    );
    assert!(s.bunker.stats().relays_refused >= 1);
    s.bunker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pairing_is_capped_per_uri_and_per_account_and_rate_limited() {
    let s = common::setup_with(|c| {
        let mut c = allow_loopback(c);
        c.max_relays_per_account = 4;
        c.pairing_limit = RateLimit::new(0.001, 4);
        c
    })
    .await;
    let mut relays = Vec::new();
    for _ in 0..5 {
        relays.push(Recorder::start().await.url.to_string());
    }
    let r: Vec<&str> = relays.iter().map(String::as_str).collect();
    let before = active_count(&s).await;
    let pair = |uri: NostrConnectUri| {
        let s = &s;
        async move { s.bunker.pair(&uri, new_authorization(s)).await }
    };

    // Four relays besides the configured one (which does not count): too many.
    let mut four = r[..4].to_vec();
    four.push(s.url.as_str());
    match pair(uri_on(&four, "a")).await {
        Err(Error::TooManyRelays { relays: 4, max: 3 }) => {}
        other => panic!("{other:?}"),
    }
    pair(uri_on(&r[..3], "b")).await.expect("three relays");
    // Two more would make five distinct relays for the account: over its cap of four.
    match pair(uri_on(&r[3..5], "c")).await {
        Err(Error::AccountRelays { relays: 5, max: 4 }) => {}
        other => panic!("{other:?}"),
    }
    // One more, and one it already uses: four.
    pair(uri_on(&[r[3], r[0]], "d")).await.expect("four in all");
    // Four attempts used the account's pairings.
    match pair(uri_on(&[r[0]], "e")).await {
        Err(Error::RateLimited { retry_after }) => {
            assert!(retry_after > Duration::from_secs(60), "{retry_after:?}")
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(active_count(&s).await, before + 2, "only the two accepted");
    assert_eq!(s.bunker.stats().pairings_refused, 3);
    // Another account is not limited by this one's pairings.
    s.bunker
        .admit_pairing(
            &uri_on(&[r[0]], "f"),
            s.tenant,
            keycast_core::UserId::random(),
        )
        .await
        .expect("another account");
    s.bunker.shutdown().await;
}
