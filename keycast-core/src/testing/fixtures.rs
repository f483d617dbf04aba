//! Small builders for suite data. Everything gets fresh random ids and names.

use nostr::{Keys, PublicKey, RelayUrl, Timestamp};

use crate::crypto::envelope::{Envelope, FORMAT_VERSION};
use crate::crypto::secret::SecretDigest;
use crate::ids::{AuthorizationId, KeyId, PolicyId, TenantId, UserId};
use crate::model::account::{Tenant, User};
use crate::model::authorization::Authorization;
use crate::model::key::{Holder, KeyKind, NewKey, StoredKey};
use crate::model::names::{Label, PasswordHash, TenantName, Username};
use crate::model::policy::{Permission, Policy};
use crate::traits::key_manager::{KekRef, Wrapped};

/// A short random suffix for unique names.
pub fn suffix() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..12].to_owned()
}

pub fn tenant() -> Tenant {
    Tenant::new(TenantName::parse(&format!("t-{}", suffix())).unwrap())
}

pub fn user(tenant: TenantId) -> User {
    let hash = PasswordHash::parse("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA").unwrap();
    User::new(
        tenant,
        Username::parse(&format!("u-{}", suffix())).unwrap(),
        Some(hash),
    )
}

pub fn label(s: &str) -> Label {
    Label::parse(s).unwrap()
}

/// An envelope row with plausible but meaningless bytes (stores treat them as opaque).
pub fn key(tenant: TenantId, owner: Option<UserId>, kind: KeyKind) -> StoredKey {
    let id = KeyId::random();
    StoredKey {
        id,
        tenant_id: tenant,
        owner,
        team: None,
        kind,
        pubkey: Keys::generate().public_key(),
        name: label("suite key"),
        envelope: Envelope {
            format_version: FORMAT_VERSION,
            wrapped_dek: Wrapped {
                kek: KekRef {
                    provider: "suite".into(),
                    key_id: format!("kek-{}", suffix()),
                    version: 3,
                },
                blob: (0..72u8).collect(),
            },
            nonce: [9u8; 24],
            ciphertext: (0..48u8).rev().collect(),
        },
        created_at: Timestamp::from(1_700_000_000),
    }
}

pub fn policy(tenant: TenantId, permissions: Vec<Permission>) -> Policy {
    Policy::new(tenant, label("suite policy"), permissions).unwrap()
}

pub fn authorization(
    tenant: TenantId,
    user: UserId,
    key: KeyId,
    bunker: &StoredKey,
    policy: PolicyId,
    secret: Option<SecretDigest>,
) -> Authorization {
    Authorization {
        id: AuthorizationId::random(),
        tenant_id: tenant,
        user_id: user,
        key_id: key,
        bunker_key_id: bunker.id,
        bunker_pubkey: bunker.pubkey,
        connect_secret: secret,
        relays: vec![
            RelayUrl::parse("wss://relay.example.com").unwrap(),
            RelayUrl::parse("ws://127.0.0.1:7777").unwrap(),
        ],
        policy_id: policy,
        label: label("suite app"),
        expires_at: None,
        revoked_at: None,
        client_pubkeys: Vec::new(),
        uses: 0,
        version: 1,
        created_at: Timestamp::from(1_700_000_100),
    }
}

pub fn pubkey() -> PublicKey {
    Keys::generate().public_key()
}

/// An engine over fresh in-memory backends with one generated user key in its own tenant.
/// `customize` may set the authorizer or config. Must run inside a Tokio runtime.
pub async fn memory_engine(
    customize: impl FnOnce(crate::CustodyBuilder) -> crate::CustodyBuilder,
) -> (crate::Custody, StoredKey) {
    use std::sync::Arc;
    let store = Arc::new(crate::MemoryKeyStore::new());
    let builder = crate::Custody::builder(
        store.clone(),
        Arc::new(crate::InsecureTestKeyManager::new()),
    );
    let custody = customize(builder).build().unwrap();
    let t = tenant();
    crate::KeyStore::create_tenant(store.as_ref(), &t)
        .await
        .unwrap();
    let key = custody
        .create_key(NewKey::generate(
            t.id,
            Holder::Service,
            KeyKind::User,
            label("engine key"),
        ))
        .await
        .unwrap();
    (custody, key)
}

/// Everything an app connection needs, created through an engine.
#[derive(Debug)]
pub struct AuthorizedKey {
    pub tenant: Tenant,
    pub user: User,
    pub key: StoredKey,
    pub policy: Policy,
    pub authorization: Authorization,
    pub secret: crate::BearerSecret,
}

/// A fresh tenant and user, a generated user key, a policy with `permissions` and an
/// authorization on `relays`, all created through `custody` and its store.
pub async fn authorized_key(
    custody: &crate::Custody,
    permissions: Vec<Permission>,
    relays: Vec<RelayUrl>,
) -> AuthorizedKey {
    let store = custody.store();
    let tenant = tenant();
    store.create_tenant(&tenant).await.unwrap();
    let user = user(tenant.id);
    store.create_user(&user).await.unwrap();
    let key = custody
        .create_key(NewKey::generate(
            tenant.id,
            Holder::User(user.id),
            KeyKind::User,
            label("main"),
        ))
        .await
        .unwrap();
    let policy = policy(tenant.id, permissions);
    store.insert_policy(&policy).await.unwrap();
    let (authorization, secret) = custody
        .create_authorization(crate::NewAuthorization {
            tenant_id: tenant.id,
            user_id: user.id,
            key_id: key.id,
            policy_id: policy.id,
            label: label("app"),
            relays,
            expires_at: None,
        })
        .await
        .unwrap();
    AuthorizedKey {
        tenant,
        user,
        key,
        policy,
        authorization,
        secret,
    }
}
