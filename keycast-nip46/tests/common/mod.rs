//! A relay, an engine with one authorization, and a running bunker, for relay tests.

#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use keycast_core::nostr::{Keys, RelayUrl};
use keycast_core::*;
use keycast_nip46::{Bunker, BunkerConfig, BunkerUri};
use nostr_connect::prelude::{NostrConnect, NostrConnectURI};
use nostr_relay_builder::MockRelay;

pub struct Setup {
    pub relay: MockRelay,
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
    let bunker = Bunker::start(custody, tune(BunkerConfig::new(vec![url.clone()])))
        .await
        .expect("bunker");
    let uri = BunkerUri {
        signer: auth.bunker_pubkey,
        relays: vec![url.clone()],
        secret: Some(secret.expose().to_owned()),
    }
    .to_uri()
    .expect("uri");
    Setup {
        relay,
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
