//! A relay, an engine with one authorization, and a running bunker, for relay tests.

#![allow(dead_code)]

pub mod raw;
pub mod recorder;

use std::sync::Arc;
use std::time::Duration;

use keycast_core::nostr::{Keys, RelayUrl};
use keycast_core::*;
use keycast_nip46::testing::TestRelay;
use keycast_nip46::{Bunker, BunkerConfig, BunkerUri};
use nostr_connect::prelude::{NostrConnect, NostrConnectURI};

pub struct Setup {
    pub relay: Option<TestRelay>,
    pub custody: Custody,
    pub store: Arc<MemoryKeyStore>,
    pub tenant: TenantId,
    pub user_id: UserId,
    pub key: KeyId,
    pub policy: PolicyId,
    pub auth: AuthorizationId,
    pub url: RelayUrl,
    pub bunker: Bunker,
    pub uri: String,
    pub user: keycast_core::nostr::PublicKey,
    pub bunker_pubkey: keycast_core::nostr::PublicKey,
    pub secret: String,
}

pub async fn setup() -> Setup {
    setup_with(|c| c).await
}

pub async fn setup_with(tune: impl FnOnce(BunkerConfig) -> BunkerConfig) -> Setup {
    let relay = TestRelay::with_defaults().await.expect("relay");
    let url: RelayUrl = relay.url();
    build(Some(relay), url, tune, None).await
}

/// Like [`setup_with`], with the engine deciding through `authorizer`.
pub async fn setup_authorized_by(
    authorizer: Arc<dyn Authorizer>,
    tune: impl FnOnce(BunkerConfig) -> BunkerConfig,
) -> Setup {
    let relay = TestRelay::with_defaults().await.expect("relay");
    let url: RelayUrl = relay.url();
    build(Some(relay), url, tune, Some(authorizer)).await
}

/// Everything but the relay, which the caller runs at `url`.
pub async fn setup_on(url: RelayUrl) -> Setup {
    build(None, url, |c| c, None).await
}

/// Everything but the relay, with settings tuned.
pub async fn setup_on_with(
    url: RelayUrl,
    tune: impl FnOnce(BunkerConfig) -> BunkerConfig,
) -> Setup {
    build(None, url, tune, None).await
}

async fn build(
    relay: Option<TestRelay>,
    url: RelayUrl,
    tune: impl FnOnce(BunkerConfig) -> BunkerConfig,
    authorizer: Option<Arc<dyn Authorizer>>,
) -> Setup {
    let store = Arc::new(MemoryKeyStore::new());
    let mut builder = Custody::builder(store.clone(), Arc::new(InsecureTestKeyManager::new()));
    if let Some(a) = authorizer {
        builder = builder.authorizer(a);
    }
    let custody = builder.build().expect("engine");
    let a = keycast_core::testing::fixtures::authorized_key(
        &custody,
        vec![Permission::FullAccess],
        vec![url.clone()],
    )
    .await;
    let (tenant, user, key, policy, auth, secret) =
        (a.tenant, a.user, a.key, a.policy, a.authorization, a.secret);
    let bunker = Bunker::start(custody.clone(), tune(BunkerConfig::new(vec![url.clone()])))
        .await
        .expect("bunker");
    // A request sent before the relay confirmed the key's REQ is lost (kind 24133 is not
    // stored); `start` waits for that at most `connect_timeout`, which a loaded machine
    // can pass, so tests that send at once wait for it here (on the relay set up here;
    // a caller's own relay may be meant to refuse or be down).
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while relay.is_some() && !bunker.cover(auth.id).await.expect("cover") {
        assert!(
            std::time::Instant::now() < deadline,
            "the relay never confirmed the bunker key's subscription"
        );
    }
    let uri = BunkerUri {
        signer: auth.bunker_pubkey,
        relays: vec![url.clone()],
        secret: Some(secret.expose().to_owned()),
    }
    .to_uri()
    .expect("uri");
    Setup {
        relay,
        custody,
        store,
        tenant: tenant.id,
        user_id: user.id,
        key: key.id,
        policy: policy.id,
        auth: auth.id,
        url,
        bunker,
        uri,
        user: key.pubkey,
        bunker_pubkey: auth.bunker_pubkey,
        secret: secret.expose().to_owned(),
    }
}

pub fn client(uri: &str) -> NostrConnect {
    let uri = NostrConnectURI::parse(uri).expect("bunker uri");
    NostrConnect::new(uri, Keys::generate(), Duration::from_secs(10), None).expect("client")
}

/// A second authorization on the same key, with its bunker URI.
pub struct Extra {
    pub id: AuthorizationId,
    pub uri: String,
}

pub async fn add_authorization(s: &Setup) -> Extra {
    let (auth, secret) = s
        .custody
        .create_authorization(NewAuthorization {
            tenant_id: s.tenant,
            user_id: s.user_id,
            key_id: s.key,
            policy_id: s.policy,
            label: Label::parse("second app").expect("label"),
            relays: vec![s.url.clone()],
            expires_at: None,
        })
        .await
        .expect("authorization");
    let uri = BunkerUri {
        signer: auth.bunker_pubkey,
        relays: vec![s.url.clone()],
        secret: Some(secret.expose().to_owned()),
    }
    .to_uri()
    .expect("uri");
    Extra { id: auth.id, uri }
}

/// Stores an active authorization on the setup's key with a fresh bunker key, as a big
/// deployment holds them (only its bunker key matters to the subscriptions; the engine
/// cannot answer for it).
pub async fn store_authorization(s: &Setup) -> Authorization {
    let auth = Authorization {
        id: AuthorizationId::random(),
        tenant_id: s.tenant,
        user_id: s.user_id,
        key_id: s.key,
        bunker_key_id: s.key,
        bunker_pubkey: Keys::generate().public_key(),
        connect_secret: None,
        relays: vec![s.url.clone()],
        policy_id: s.policy,
        label: Label::parse("stored").expect("label"),
        expires_at: None,
        revoked_at: None,
        client_pubkeys: Vec::new(),
        uses: 0,
        version: 1,
        created_at: keycast_core::nostr::Timestamp::now(),
    };
    s.store.insert_authorization(&auth).await.expect("insert");
    auth
}
