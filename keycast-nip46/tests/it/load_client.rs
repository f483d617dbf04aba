//! The raw load client against a real bunker: every request answered exactly once.

#![cfg(feature = "testing")]

use crate::common;

use std::time::Duration;

use keycast_core::nostr::{Keys, PublicKey};
use keycast_nip46::testing::TestRelay;
use keycast_nip46::testing::{signed_by, LoadClient, LoadError, Reply};
use keycast_nip46::{Bunker, BunkerConfig, BunkerUri};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_sign_request_is_answered_once_by_its_bunker() {
    let s = common::setup().await;
    let mut bunkers: Vec<(PublicKey, String)> = vec![(s.bunker_pubkey, s.secret.clone())];
    for _ in 0..2 {
        let extra = common::add_authorization(&s).await;
        let uri = BunkerUri::parse(&extra.uri).expect("bunker uri");
        bunkers.push((uri.signer, uri.secret.expect("secret")));
    }
    s.bunker.refresh_subscription().await.expect("refresh");

    let load = LoadClient::start(vec![s.url.clone()], 2)
        .await
        .expect("load client");
    assert_eq!(load.clients(), 2);
    // Connect secrets are single-use, so each authorization binds one client: bunker b
    // is used by client b % 2 (client 0 serves two bunkers, client 1 one).
    for (b, (bunker, secret)) in bunkers.iter().enumerate() {
        load.connect(b % 2, *bunker, secret, Duration::from_secs(10))
            .await
            .expect("connect");
    }

    let mut sends = tokio::task::JoinSet::new();
    for n in 0..30 {
        let (load, bunker) = (load.clone(), bunkers[n % 3].0);
        sends.spawn(async move {
            let id = load.sign(n % 3 % 2, bunker, &format!("load {n}")).await;
            (id.expect("sent"), bunker)
        });
    }
    let sent: Vec<(String, PublicKey)> = sends.join_all().await;
    let ids: Vec<String> = sent.iter().map(|(id, _)| id.clone()).collect();

    let tally = load
        .wait(&ids, Duration::from_secs(20), Duration::from_millis(500))
        .await;
    assert!(tally.unanswered.is_empty(), "{:?}", tally.unanswered);
    assert!(tally.duplicated.is_empty(), "{:?}", tally.duplicated);
    assert!(tally.exactly_once());
    for (id, bunker) in &sent {
        let reply = &tally.replies[id][0];
        assert_eq!(reply.error, None, "{reply:?}");
        assert_eq!(reply.from, *bunker);
        assert_eq!(signed_by(reply), Some(s.user));
    }
    let ignored = load.ignored();
    assert_eq!(ignored.unsolicited, 0, "{ignored:?}");
    assert_eq!(ignored.undecryptable, 0, "{ignored:?}");
    assert_eq!(ignored.lagged, 0, "{ignored:?}");

    load.shutdown().await;
    s.bunker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bunker_nobody_serves_leaves_requests_unanswered() {
    let relay = TestRelay::with_defaults().await.expect("relay");
    let load = LoadClient::start(vec![relay.url()], 1)
        .await
        .expect("load client");
    let nobody = Keys::generate().public_key();

    let id = load.sign(0, nobody, "hello?").await.expect("sent");
    let tally = load
        .wait(
            std::slice::from_ref(&id),
            Duration::from_secs(1),
            Duration::ZERO,
        )
        .await;
    assert_eq!(tally.unanswered, vec![id.clone()]);
    assert!(tally.replies.is_empty());
    assert_eq!(load.wait_one(&id, Duration::from_millis(200)).await, None);
    assert!(matches!(
        load.connect(0, nobody, "secret", Duration::from_secs(1))
            .await,
        Err(LoadError::Timeout)
    ));
    load.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_one_hands_each_reply_to_its_own_waiter() {
    let s = common::setup().await;
    let load = LoadClient::start(vec![s.url.clone()], 1)
        .await
        .expect("load client");
    load.connect(0, s.bunker_pubkey, &s.secret, Duration::from_secs(10))
        .await
        .expect("connect");

    // Each request awaited by its own task, as a closed-loop benchmark does.
    let mut waiting = tokio::task::JoinSet::new();
    for n in 0..20 {
        let load = load.clone();
        let bunker = s.bunker_pubkey;
        waiting.spawn(async move {
            let id = load
                .sign(0, bunker, &format!("one {n}"))
                .await
                .expect("sent");
            let reply = load.wait_one(&id, Duration::from_secs(10)).await;
            (id, reply)
        });
    }
    let done: Vec<(String, Option<Reply>)> = waiting.join_all().await;
    for (_, reply) in &done {
        let reply = reply.as_ref().expect("answered");
        assert_eq!(reply.error, None, "{reply:?}");
        assert_eq!(reply.from, s.bunker_pubkey);
        assert_eq!(signed_by(reply), Some(s.user));
    }
    // An id already answered comes back at once, as the same reply.
    let (id, first) = &done[0];
    let again = load.wait_one(id, Duration::ZERO).await;
    assert_eq!(again.as_ref(), first.as_ref());
    // The replies are still recorded for `wait`, once each.
    let ids: Vec<String> = done.iter().map(|(id, _)| id.clone()).collect();
    let tally = load
        .wait(&ids, Duration::from_secs(1), Duration::from_millis(200))
        .await;
    assert!(tally.exactly_once(), "{tally:?}");
    assert_eq!(load.ignored().lagged, 0);

    load.shutdown().await;
    s.bunker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_serving_one_authorization_show_up_as_duplicates() {
    let s = common::setup().await;
    let load = LoadClient::start(vec![s.url.clone()], 1)
        .await
        .expect("load client");
    load.connect(0, s.bunker_pubkey, &s.secret, Duration::from_secs(10))
        .await
        .expect("connect");
    // A second instance without any routing: both answer every request.
    let twin = Bunker::start(s.custody.clone(), BunkerConfig::new(vec![s.url.clone()]))
        .await
        .expect("second bunker");

    let mut ids = Vec::new();
    for n in 0..3 {
        ids.push(
            load.sign(0, s.bunker_pubkey, &format!("twice {n}"))
                .await
                .expect("sent"),
        );
    }
    let tally = load
        .wait(&ids, Duration::from_secs(10), Duration::from_millis(500))
        .await;
    assert!(tally.unanswered.is_empty(), "{:?}", tally.unanswered);
    assert_eq!(tally.duplicated, ids);
    for id in &ids {
        let replies = &tally.replies[id];
        assert_eq!(replies.len(), 2);
        assert_ne!(replies[0].event, replies[1].event);
        assert!(replies.iter().all(|r| signed_by(r) == Some(s.user)));
    }
    load.shutdown().await;
    twin.shutdown().await;
    s.bunker.shutdown().await;
}
