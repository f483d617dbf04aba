//! The KeyStore conformance suite. Call [`run`] with a fresh or shared store.

use std::collections::BTreeSet;
use std::sync::Arc;

use nostr::{EventId, Timestamp};

use super::fixtures::*;
use crate::crypto::secret::{BearerSecret, SecretDigest};
use crate::error::Error;
use crate::ids::{AuthorizationId, KeyId, PolicyId, TenantId, UserId};
use crate::model::account::{Tenant, User};
use crate::model::audit::{Activity, AuditAction, AuditFilter, AuditRecord, Outcome};
use crate::model::authorization::Authorization;
use crate::model::change::Changed;
use crate::model::key::{KeyKind, StoredKey};
use crate::model::names::{Email, TenantHost, Username};
use crate::model::policy::Permission;
use crate::model::request::Method;
use crate::model::token::{ApiToken, EmailPurpose, EmailToken, OAuthCode, Session};
use crate::traits::key_store::KeyStore;

/// Runs every check.
pub async fn run(store: Arc<dyn KeyStore>) {
    tenants(&store).await;
    tenant_hosts(&store).await;
    users(&store).await;
    accounts(&store).await;
    email_flows(&store).await;
    keys(&store).await;
    rewrap_support(&store).await;
    policies(&store).await;
    authorizations(&store).await;
    connect_secrets(&store).await;
    use_counters(&store).await;
    change_feed(&store).await;
    tokens(&store).await;
    oauth_codes(&store).await;
    key_deletion(&store).await;
    super::teams::teams(&store).await;
    super::teams::key_replacement(&store).await;
    audit(&store).await;
    extreme_values(&store).await;
}

/// A tenant with a user, a user key, a bunker key and a full-access policy.
#[derive(Debug)]
pub struct World {
    pub tenant: Tenant,
    pub user: User,
    pub key: StoredKey,
    pub bunker: StoredKey,
    pub policy_id: PolicyId,
}

pub async fn world(store: &Arc<dyn KeyStore>) -> World {
    let tenant = tenant();
    store.create_tenant(&tenant).await.unwrap();
    let user = user(tenant.id);
    store.create_user(&user).await.unwrap();
    let key = key(tenant.id, Some(user.id), KeyKind::User);
    store.insert_key(&key).await.unwrap();
    let bunker = super::fixtures::key(tenant.id, Some(user.id), KeyKind::Bunker);
    store.insert_key(&bunker).await.unwrap();
    let p = policy(tenant.id, vec![Permission::FullAccess]);
    store.insert_policy(&p).await.unwrap();
    World {
        tenant,
        user,
        key,
        bunker,
        policy_id: p.id,
    }
}

impl World {
    /// Inserts a new bunker key and an authorization on the world's key.
    pub async fn authorization(
        &self,
        store: &Arc<dyn KeyStore>,
        secret: Option<SecretDigest>,
    ) -> Authorization {
        let bunker = key(self.tenant.id, Some(self.user.id), KeyKind::Bunker);
        store.insert_key(&bunker).await.unwrap();
        let a = authorization(
            self.tenant.id,
            self.user.id,
            self.key.id,
            &bunker,
            self.policy_id,
            secret,
        );
        store.insert_authorization(&a).await.unwrap();
        a
    }
}

fn assert_not_found<T: std::fmt::Debug>(r: crate::Result<T>, ctx: &str) {
    assert!(
        matches!(r, Err(Error::NotFound { .. })),
        "{ctx}: expected NotFound, got {r:?}"
    );
}

fn assert_exists<T: std::fmt::Debug>(r: crate::Result<T>, ctx: &str) {
    assert!(
        matches!(r, Err(Error::AlreadyExists { .. })),
        "{ctx}: expected AlreadyExists, got {r:?}"
    );
}

pub async fn tenants(store: &Arc<dyn KeyStore>) {
    let t = tenant();
    store.create_tenant(&t).await.unwrap();
    assert_eq!(
        store.get_tenant(t.id).await.unwrap(),
        t,
        "tenant round trip"
    );
    let mut same_name = tenant();
    same_name.name = t.name.clone();
    assert_exists(
        store.create_tenant(&same_name).await,
        "duplicate tenant name",
    );
    assert_exists(store.create_tenant(&t).await, "duplicate tenant id");
    assert_not_found(store.get_tenant(TenantId::random()).await, "missing tenant");
    assert_eq!(store.find_tenant(&t.name).await.unwrap(), t, "by name");
    assert_not_found(store.find_tenant(&tenant().name).await, "missing name");
    let listed = store.list_tenants().await.unwrap();
    assert!(listed.contains(&t), "listed");
    assert!(
        listed
            .windows(2)
            .all(|w| w[0].name.as_str() < w[1].name.as_str()),
        "tenants ordered by name"
    );
}

pub async fn tenant_hosts(store: &Arc<dyn KeyStore>) {
    let (a, b) = (tenant(), tenant());
    store.create_tenant(&a).await.unwrap();
    store.create_tenant(&b).await.unwrap();
    let host = |t: &Tenant, n: u8| TenantHost::parse(&format!("h{n}.{}.example", t.name)).unwrap();
    let (a1, a2, b1) = (host(&a, 1), host(&a, 2), host(&b, 1));
    store.add_tenant_host(&a2, a.id).await.unwrap();
    store.add_tenant_host(&a1, a.id).await.unwrap();
    store.add_tenant_host(&b1, b.id).await.unwrap();
    assert_exists(
        store.add_tenant_host(&a1, a.id).await,
        "the same host twice",
    );
    assert_exists(
        store.add_tenant_host(&a1, b.id).await,
        "another tenant's host",
    );
    assert_not_found(
        store
            .add_tenant_host(&host(&b, 9), TenantId::random())
            .await,
        "a host for a missing tenant",
    );
    let all = store.list_tenant_hosts().await.unwrap();
    for pair in [(a1.clone(), a.id), (a2.clone(), a.id), (b1.clone(), b.id)] {
        assert!(all.contains(&pair), "{pair:?} listed");
    }
    assert!(
        !all.iter().any(|(h, _)| h == &host(&b, 9)),
        "refused host not stored"
    );
    assert!(all.windows(2).all(|w| w[0].0 < w[1].0), "hosts ordered");
    assert!(store.remove_tenant_host(&a1).await.unwrap(), "removed");
    assert!(
        !store.remove_tenant_host(&a1).await.unwrap(),
        "removed twice"
    );
    store.add_tenant_host(&a1, b.id).await.unwrap();
    let all = store.list_tenant_hosts().await.unwrap();
    assert!(all.contains(&(a1, b.id)), "a freed host can move");
    assert!(all.contains(&(a2, a.id)), "the other host stays");
}

pub async fn users(store: &Arc<dyn KeyStore>) {
    let t = tenant();
    store.create_tenant(&t).await.unwrap();
    let u = user(t.id);
    store.create_user(&u).await.unwrap();
    assert_eq!(store.get_user(u.id).await.unwrap(), u, "user round trip");
    assert_eq!(
        store.find_user(t.id, &u.username).await.unwrap(),
        u,
        "find by username"
    );

    let mut dup = user(t.id);
    dup.username = u.username.clone();
    assert_exists(
        store.create_user(&dup).await,
        "duplicate username in tenant",
    );

    let other = tenant();
    store.create_tenant(&other).await.unwrap();
    let mut elsewhere = user(other.id);
    elsewhere.username = u.username.clone();
    store.create_user(&elsewhere).await.unwrap();
    assert_eq!(
        store.find_user(other.id, &u.username).await.unwrap().id,
        elsewhere.id,
        "usernames are scoped by tenant"
    );

    let mut no_password = user(t.id);
    no_password.password_hash = None;
    store.create_user(&no_password).await.unwrap();
    assert_eq!(store.get_user(no_password.id).await.unwrap(), no_password);

    assert_not_found(store.get_user(UserId::random()).await, "missing user");
    let nobody = Username::parse(&format!("nobody-{}", suffix())).unwrap();
    assert_not_found(store.find_user(t.id, &nobody).await, "missing username");
    let orphan = user(TenantId::random());
    assert_not_found(store.create_user(&orphan).await, "user of a missing tenant");

    store.delete_user(no_password.id).await.unwrap();
    assert_not_found(store.get_user(no_password.id).await, "deleted user");
    assert_not_found(store.delete_user(no_password.id).await, "deleted twice");
    let owner = key(t.id, Some(u.id), KeyKind::User);
    store.insert_key(&owner).await.unwrap();
    assert!(
        matches!(store.delete_user(u.id).await, Err(Error::Conflict(_))),
        "a user who owns a key stays"
    );
    assert_eq!(store.get_user(u.id).await.unwrap(), u, "unchanged");
}

/// E-mailed tokens (single-use, per purpose, expiring), e-mail verification, and a new
/// password ending every session.
pub async fn email_flows(store: &Arc<dyn KeyStore>) {
    let t = tenant();
    store.create_tenant(&t).await.unwrap();
    let u = user(t.id);
    store.create_user(&u).await.unwrap();
    let now = Timestamp::now();
    let later = |secs: u64| Timestamp::from(now.as_secs() + secs);
    let token = |purpose, expires_at| EmailToken {
        digest: BearerSecret::generate().digest(),
        tenant_id: t.id,
        user_id: u.id,
        purpose,
        expires_at,
        created_at: now,
    };

    let verify = token(EmailPurpose::VerifyEmail, later(3600));
    store.insert_email_token(&verify).await.unwrap();
    assert_exists(store.insert_email_token(&verify).await, "same token twice");
    assert_not_found(
        store
            .consume_email_token(&verify.digest, EmailPurpose::ResetPassword, now)
            .await,
        "another purpose",
    );
    assert_eq!(
        store
            .consume_email_token(&verify.digest, EmailPurpose::VerifyEmail, now)
            .await
            .unwrap(),
        verify,
        "still usable after the wrong purpose was tried"
    );
    assert_not_found(
        store
            .consume_email_token(&verify.digest, EmailPurpose::VerifyEmail, now)
            .await,
        "single use",
    );
    let stale = token(EmailPurpose::ResetPassword, later(60));
    store.insert_email_token(&stale).await.unwrap();
    assert!(
        matches!(
            store
                .consume_email_token(&stale.digest, EmailPurpose::ResetPassword, later(60))
                .await,
            Err(Error::Expired)
        ),
        "expired at expires_at"
    );
    assert_not_found(
        store
            .consume_email_token(&stale.digest, EmailPurpose::ResetPassword, now)
            .await,
        "an expired token is gone",
    );
    let mut orphan = token(EmailPurpose::VerifyEmail, later(60));
    orphan.user_id = UserId::random();
    assert!(
        store.insert_email_token(&orphan).await.is_err(),
        "token of a missing user"
    );

    assert_eq!(store.email_verified_at(u.id).await.unwrap(), None);
    store.mark_email_verified(u.id, now).await.unwrap();
    store.mark_email_verified(u.id, later(5)).await.unwrap();
    assert_eq!(
        store.email_verified_at(u.id).await.unwrap(),
        Some(now),
        "first time kept"
    );
    assert_not_found(
        store.email_verified_at(UserId::random()).await,
        "missing user",
    );
    assert_not_found(
        store.mark_email_verified(UserId::random(), now).await,
        "missing user",
    );

    let session = |user: &User| Session {
        digest: BearerSecret::generate().digest(),
        tenant_id: t.id,
        user_id: user.id,
        expires_at: later(3600),
        created_at: now,
    };
    let bystander = user(t.id);
    store.create_user(&bystander).await.unwrap();
    let (s1, s2, other) = (session(&u), session(&u), session(&bystander));
    for s in [&s1, &s2, &other] {
        store.insert_session(s).await.unwrap();
    }
    let hash =
        crate::PasswordHash::parse("$argon2id$v=19$m=19456,t=2,p=1$bmV3$bmV3aGFzaA").unwrap();
    let replaced = store.replace_password(u.id, &hash, None).await.unwrap();
    assert_eq!((replaced.sessions_ended, replaced.revoked.len()), (2, 0));
    assert_eq!(
        store.get_user(u.id).await.unwrap().password_hash,
        Some(hash.clone())
    );
    assert_not_found(store.find_session(&s1.digest).await, "sessions end");
    assert_not_found(store.find_session(&s2.digest).await, "sessions end");
    store
        .find_session(&other.digest)
        .await
        .expect("another user's session stays");
    assert_not_found(
        store.replace_password(UserId::random(), &hash, None).await,
        "missing user",
    );
    one_live_code_per_purpose(store).await;
    reset_revoking_apps(store).await;
}

/// Issuing an e-mailed code deletes the user's older codes of the same purpose (and no
/// others); concurrent issues leave exactly one live.
pub async fn one_live_code_per_purpose(store: &Arc<dyn KeyStore>) {
    let t = tenant();
    store.create_tenant(&t).await.unwrap();
    let (u, other) = (user(t.id), user(t.id));
    store.create_user(&u).await.unwrap();
    store.create_user(&other).await.unwrap();
    let now = Timestamp::now();
    let code = |user: &User, purpose| EmailToken {
        digest: BearerSecret::generate().digest(),
        tenant_id: t.id,
        user_id: user.id,
        purpose,
        expires_at: Timestamp::from(now.as_secs() + 600),
        created_at: now,
    };
    let first = code(&u, EmailPurpose::ConfirmExport);
    let reset = code(&u, EmailPurpose::ResetPassword);
    let others = code(&other, EmailPurpose::ConfirmExport);
    for c in [&first, &reset, &others] {
        store.insert_email_token(c).await.unwrap();
    }
    let second = code(&u, EmailPurpose::ConfirmExport);
    store.insert_email_token(&second).await.unwrap();
    assert_exists(
        store.insert_email_token(&second).await,
        "the same code twice",
    );
    let consume = |c: &EmailToken| {
        let (digest, purpose) = (c.digest, c.purpose);
        async move { store.consume_email_token(&digest, purpose, now).await }
    };
    assert_not_found(
        consume(&first).await,
        "an older code of the purpose is gone",
    );
    assert_eq!(consume(&second).await.unwrap(), second, "the newest works");
    assert_eq!(
        consume(&reset).await.unwrap(),
        reset,
        "another purpose stays"
    );
    assert_eq!(
        consume(&others).await.unwrap(),
        others,
        "another user's stays"
    );

    let racing: Vec<EmailToken> = (0..8)
        .map(|_| code(&u, EmailPurpose::VerifyEmail))
        .collect();
    let tasks: Vec<_> = racing
        .iter()
        .cloned()
        .map(|c| {
            let store = store.clone();
            tokio::spawn(async move { store.insert_email_token(&c).await })
        })
        .collect();
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    let mut live = 0;
    for c in &racing {
        live += usize::from(consume(c).await.is_ok());
    }
    assert_eq!(live, 1, "concurrent issues leave exactly one live code");
}

/// A password replacement asked to revoke apps revokes every active authorization made for
/// the user, in the same step, and nobody else's.
pub async fn reset_revoking_apps(store: &Arc<dyn KeyStore>) {
    let w = world(store).await;
    let (a1, a2, gone) = (
        w.authorization(store, None).await,
        w.authorization(store, None).await,
        w.authorization(store, None).await,
    );
    let early = Timestamp::from(1_000);
    store.revoke_authorization(gone.id, early).await.unwrap();
    let bystander = world(store).await;
    let theirs = bystander.authorization(store, None).await;
    let cursor = store.latest_change().await.unwrap();
    let hash =
        crate::PasswordHash::parse("$argon2id$v=19$m=19456,t=2,p=1$bmV3$bmV3aGFzaA").unwrap();
    let at = Timestamp::from(2_000);
    let replaced = store
        .replace_password(w.user.id, &hash, Some(at))
        .await
        .unwrap();
    let mut revoked = replaced.revoked.clone();
    revoked.sort();
    let mut expected = vec![a1.id, a2.id];
    expected.sort();
    assert_eq!(revoked, expected, "the active ones, not the revoked one");
    for id in &expected {
        let a = store.get_authorization(*id).await.unwrap();
        assert_eq!(a.revoked_at, Some(at));
    }
    assert_eq!(
        store.get_authorization(gone.id).await.unwrap().revoked_at,
        Some(early),
        "the first revocation is kept"
    );
    assert_eq!(
        store.get_authorization(theirs.id).await.unwrap().revoked_at,
        None,
        "another user's stays"
    );
    let changes = store.changes_since(cursor, 100).await.unwrap();
    for id in &expected {
        assert!(
            changes
                .iter()
                .any(|c| c.what == Changed::Authorization(*id)),
            "{id} is in the change feed: {changes:?}"
        );
    }
}

/// Login e-mails (unique per tenant, found regardless of case) and sessions.
pub async fn accounts(store: &Arc<dyn KeyStore>) {
    let t = tenant();
    store.create_tenant(&t).await.unwrap();
    let email = Email::parse("Ann@Example.org").unwrap();
    let ann = user(t.id).with_email(email.clone());
    store.create_user(&ann).await.unwrap();
    let found = store
        .find_user_by_email(t.id, &Email::parse("ann@example.ORG").unwrap())
        .await
        .unwrap();
    assert_eq!(found, ann, "found by e-mail, any case");
    assert_eq!(
        store.get_user(ann.id).await.unwrap().email,
        Some(email.clone())
    );
    assert_exists(
        store
            .create_user(&user(t.id).with_email(email.clone()))
            .await,
        "same e-mail in one tenant",
    );
    store.create_user(&user(t.id)).await.unwrap();
    store
        .create_user(&user(t.id))
        .await
        .expect("many users without e-mail");
    let other = tenant();
    store.create_tenant(&other).await.unwrap();
    store
        .create_user(&user(other.id).with_email(email.clone()))
        .await
        .expect("the same e-mail in another tenant");
    assert_not_found(
        store
            .find_user_by_email(t.id, &Email::parse("bob@example.org").unwrap())
            .await,
        "unknown e-mail",
    );

    let secret = BearerSecret::generate();
    let session = Session {
        digest: secret.digest(),
        tenant_id: t.id,
        user_id: ann.id,
        expires_at: Timestamp::from(Timestamp::now().as_secs() + 3600),
        created_at: Timestamp::now(),
    };
    store.insert_session(&session).await.unwrap();
    assert_eq!(store.find_session(&secret.digest()).await.unwrap(), session);
    assert_exists(store.insert_session(&session).await, "same session twice");
    let mut orphan = session.clone();
    orphan.digest = BearerSecret::generate().digest();
    orphan.user_id = UserId::random();
    assert!(
        store.insert_session(&orphan).await.is_err(),
        "session of a missing user"
    );
    assert_not_found(
        store.find_session(&BearerSecret::generate().digest()).await,
        "unknown session",
    );
    assert!(store.delete_session(&secret.digest()).await.unwrap());
    assert!(!store.delete_session(&secret.digest()).await.unwrap());
    assert_not_found(store.find_session(&secret.digest()).await, "after logout");
}

pub async fn keys(store: &Arc<dyn KeyStore>) {
    let w = world(store).await;
    assert_eq!(
        store.get_key(w.key.id).await.unwrap(),
        w.key,
        "key row round trip, envelope included"
    );
    assert_exists(store.insert_key(&w.key).await, "duplicate key id");
    assert_not_found(store.get_key(KeyId::random()).await, "missing key");

    let mut same_pubkey = key(w.tenant.id, None, KeyKind::User);
    same_pubkey.pubkey = w.key.pubkey;
    assert_exists(
        store.insert_key(&same_pubkey).await,
        "duplicate pubkey in a tenant",
    );
    let other = tenant();
    store.create_tenant(&other).await.unwrap();
    let mut elsewhere = key(other.id, None, KeyKind::User);
    elsewhere.pubkey = w.key.pubkey;
    store.insert_key(&elsewhere).await.unwrap();
    assert_not_found(
        store
            .insert_key(&key(TenantId::random(), None, KeyKind::User))
            .await,
        "key of a missing tenant",
    );

    let ownerless = key(w.tenant.id, None, KeyKind::User);
    store.insert_key(&ownerless).await.unwrap();
    let all: BTreeSet<KeyId> = store
        .list_keys(w.tenant.id, None)
        .await
        .unwrap()
        .iter()
        .map(|k| k.id)
        .collect();
    assert_eq!(
        all,
        [w.key.id, w.bunker.id, ownerless.id].into(),
        "list by tenant"
    );
    let mine: BTreeSet<KeyId> = store
        .list_keys(w.tenant.id, Some(w.user.id))
        .await
        .unwrap()
        .iter()
        .map(|k| k.id)
        .collect();
    assert_eq!(mine, [w.key.id, w.bunker.id].into(), "list by owner");
    assert!(store
        .list_keys(TenantId::random(), None)
        .await
        .unwrap()
        .is_empty());
    let renamed = store
        .rename_key(w.key.id, &crate::Label::parse("renamed ✓").unwrap())
        .await
        .unwrap();
    assert_eq!(renamed.name.as_str(), "renamed ✓");
    assert_eq!(
        renamed.envelope, w.key.envelope,
        "renaming leaves the secret alone"
    );
    assert_eq!(store.get_key(w.key.id).await.unwrap(), renamed);
    assert_not_found(
        store
            .rename_key(KeyId::random(), &crate::Label::parse("x").unwrap())
            .await,
        "rename a missing key",
    );
}

/// Paging by KEK and compare-and-set replacement of wrapped DEKs (master-key rotation).
pub async fn rewrap_support(store: &Arc<dyn KeyStore>) {
    let t = tenant();
    store.create_tenant(&t).await.unwrap();
    let old = key(t.id, None, KeyKind::User).envelope.wrapped_dek.kek;
    let new = crate::traits::key_manager::KekRef {
        provider: "suite".into(),
        key_id: format!("new-{}", suffix()),
        version: 1,
    };
    let mut mine = Vec::new();
    for _ in 0..5 {
        let mut k = key(t.id, None, KeyKind::User);
        k.envelope.wrapped_dek.kek = old.clone();
        store.insert_key(&k).await.unwrap();
        mine.push(k);
    }
    mine.sort_by_key(|k| k.id);
    // Page through everything not on `new`; our five rows appear in id order.
    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let page = store.keys_not_wrapped_by(&new, cursor, 2).await.unwrap();
        if page.is_empty() {
            break;
        }
        assert!(page.len() <= 2, "limit respected");
        assert!(
            page.windows(2).all(|w| w[0].id < w[1].id),
            "ascending id order"
        );
        cursor = page.last().map(|k| k.id);
        seen.extend(
            page.into_iter()
                .filter(|k| k.tenant_id == t.id)
                .map(|k| k.id),
        );
    }
    assert_eq!(
        seen,
        mine.iter().map(|k| k.id).collect::<Vec<_>>(),
        "paging sees every row once"
    );

    let wrapped = crate::traits::key_manager::Wrapped {
        kek: new.clone(),
        blob: vec![1, 2, 3, 4],
    };
    assert!(store
        .replace_wrapped_dek(mine[0].id, &old, &wrapped)
        .await
        .unwrap());
    let after = store.get_key(mine[0].id).await.unwrap();
    assert_eq!(after.envelope.wrapped_dek, wrapped, "wrapped DEK replaced");
    assert_eq!(
        after.envelope.ciphertext, mine[0].envelope.ciphertext,
        "ciphertext untouched"
    );
    assert_eq!(
        after.envelope.nonce, mine[0].envelope.nonce,
        "nonce untouched"
    );
    assert!(
        !store
            .replace_wrapped_dek(mine[0].id, &old, &wrapped)
            .await
            .unwrap(),
        "compare-and-set refuses a row no longer on the expected KEK"
    );
    let in_use = store.master_keys_in_use().await.unwrap();
    let count = |kek: &crate::traits::key_manager::KekRef| {
        in_use.iter().find(|(k, _)| k == kek).map(|(_, n)| *n)
    };
    assert_eq!(count(&old), Some(4), "master keys in use: {in_use:?}");
    assert_eq!(count(&new), Some(1), "master keys in use: {in_use:?}");
    let remaining: Vec<KeyId> = store
        .keys_not_wrapped_by(&new, None, 10_000)
        .await
        .unwrap()
        .into_iter()
        .filter(|k| k.tenant_id == t.id)
        .map(|k| k.id)
        .collect();
    assert_eq!(remaining.len(), 4);
    assert!(!remaining.contains(&mine[0].id));
    assert_not_found(
        store
            .replace_wrapped_dek(KeyId::random(), &old, &wrapped)
            .await,
        "replace on a missing key",
    );
}

pub async fn policies(store: &Arc<dyn KeyStore>) {
    let t = tenant();
    store.create_tenant(&t).await.unwrap();
    let every_kind = vec![
        Permission::AllowedKinds {
            kinds: [0, 1, 30023].into(),
        },
        Permission::ContentFilter {
            deny_words: vec!["spam".into()],
            deny_patterns: vec!["(?i)buy now".into()],
        },
        Permission::EncryptToSelf,
        Permission::DecryptOnly,
        Permission::Expiry {
            not_after: Timestamp::from(4_000_000_000),
        },
        Permission::MaxUses { max: 10 },
        Permission::RateLimit { per_minute: 60 },
        Permission::FullAccess,
    ];
    let p = policy(t.id, every_kind);
    store.insert_policy(&p).await.unwrap();
    assert_eq!(
        store.get_policy(p.id).await.unwrap(),
        p,
        "policy round trip with every permission"
    );
    assert_exists(store.insert_policy(&p).await, "duplicate policy id");
    assert_not_found(store.get_policy(PolicyId::random()).await, "missing policy");

    let mut edit = p.clone();
    edit.permissions = vec![Permission::DecryptOnly];
    let updated = store.update_policy(&edit).await.unwrap();
    assert_eq!(updated.version, p.version + 1, "update bumps the version");
    assert_eq!(updated.permissions, vec![Permission::DecryptOnly]);
    assert_eq!(store.get_policy(p.id).await.unwrap(), updated);
    let stale = store.update_policy(&edit).await;
    assert!(
        matches!(stale, Err(Error::Conflict(_))),
        "stale update must conflict, got {stale:?}"
    );
    assert_eq!(
        store.get_policy(p.id).await.unwrap(),
        updated,
        "a failed update changes nothing"
    );

    // Owned policies: listed per owner, deletable only while unused.
    let w = world(store).await;
    let mine = policy(w.tenant.id, vec![Permission::DecryptOnly]).owned_by(w.user.id);
    store.insert_policy(&mine).await.unwrap();
    assert_eq!(
        store.get_policy(mine.id).await.unwrap().owner,
        Some(w.user.id)
    );
    let owned = store
        .list_policies(w.tenant.id, Some(w.user.id))
        .await
        .unwrap();
    assert_eq!(owned, vec![mine.clone()], "only the owner's");
    let all = store.list_policies(w.tenant.id, None).await.unwrap();
    assert_eq!(
        all.len(),
        2,
        "the world's tenant-wide policy and the owned one"
    );
    assert!(store
        .list_policies(t.id, Some(w.user.id))
        .await
        .unwrap()
        .is_empty());
    let used = w.authorization(store, None).await;
    let in_use = store.delete_policy(used.policy_id).await;
    assert!(matches!(in_use, Err(Error::Conflict(_))), "{in_use:?}");
    assert!(
        store.get_policy(used.policy_id).await.is_ok(),
        "still there"
    );
    store.delete_policy(mine.id).await.unwrap();
    assert_not_found(store.get_policy(mine.id).await, "deleted policy");
    assert_not_found(store.delete_policy(mine.id).await, "deleting twice");
}

pub async fn authorizations(store: &Arc<dyn KeyStore>) {
    let w = world(store).await;
    let a = authorization(
        w.tenant.id,
        w.user.id,
        w.key.id,
        &w.bunker,
        w.policy_id,
        None,
    );
    store.insert_authorization(&a).await.unwrap();
    assert_eq!(
        store.get_authorization(a.id).await.unwrap(),
        a,
        "authorization round trip"
    );
    assert_eq!(
        store
            .find_authorization_by_bunker(&a.bunker_pubkey)
            .await
            .unwrap(),
        a,
        "lookup by bunker"
    );
    assert_not_found(
        store.get_authorization(AuthorizationId::random()).await,
        "missing authorization",
    );
    assert_not_found(
        store.find_authorization_by_bunker(&pubkey()).await,
        "unknown bunker",
    );

    // Several clients come back in the order they connected, by id and by bunker.
    let clients_bunker = key(w.tenant.id, Some(w.user.id), KeyKind::Bunker);
    store.insert_key(&clients_bunker).await.unwrap();
    let mut with_clients = authorization(
        w.tenant.id,
        w.user.id,
        w.key.id,
        &clients_bunker,
        w.policy_id,
        None,
    );
    with_clients.client_pubkeys = vec![pubkey(), pubkey(), pubkey()];
    store.insert_authorization(&with_clients).await.unwrap();
    assert_eq!(
        store.get_authorization(with_clients.id).await.unwrap(),
        with_clients,
        "clients by id"
    );
    assert_eq!(
        store
            .find_authorization_by_bunker(&with_clients.bunker_pubkey)
            .await
            .unwrap(),
        with_clients,
        "clients by bunker"
    );

    let mut same_bunker = a.clone();
    same_bunker.id = AuthorizationId::random();
    assert_exists(
        store.insert_authorization(&same_bunker).await,
        "duplicate bunker pubkey",
    );

    let dangling_bunker = key(w.tenant.id, Some(w.user.id), KeyKind::Bunker);
    store.insert_key(&dangling_bunker).await.unwrap();
    let dangling = authorization(
        w.tenant.id,
        w.user.id,
        w.key.id,
        &dangling_bunker,
        PolicyId::random(),
        None,
    );
    assert_not_found(
        store.insert_authorization(&dangling).await,
        "authorization with a missing policy",
    );

    let expired = {
        let bunker = key(w.tenant.id, Some(w.user.id), KeyKind::Bunker);
        store.insert_key(&bunker).await.unwrap();
        let mut e = authorization(w.tenant.id, w.user.id, w.key.id, &bunker, w.policy_id, None);
        e.expires_at = Some(Timestamp::from(1_000));
        store.insert_authorization(&e).await.unwrap();
        e
    };
    let b = w.authorization(store, None).await;
    let listed: Vec<AuthorizationId> = store
        .list_authorizations(w.tenant.id, Some(w.user.id))
        .await
        .unwrap()
        .iter()
        .map(|x| x.id)
        .collect();
    for id in [a.id, expired.id, b.id] {
        assert!(listed.contains(&id), "list_authorizations misses {id}");
    }

    let revoked = store
        .revoke_authorization(b.id, Timestamp::from(1_800_000_000))
        .await
        .unwrap();
    assert_eq!(revoked.revoked_at, Some(Timestamp::from(1_800_000_000)));
    assert!(revoked.version > b.version, "revocation bumps the version");
    assert_eq!(
        store.get_authorization(b.id).await.unwrap(),
        revoked,
        "a revocation returns the authorization as stored"
    );
    let again = store
        .revoke_authorization(b.id, Timestamp::from(1_900_000_000))
        .await
        .unwrap();
    assert_eq!(
        again.revoked_at, revoked.revoked_at,
        "revoking twice keeps the first time"
    );
    assert_eq!(store.get_authorization(b.id).await.unwrap(), again);
    assert_not_found(
        store
            .revoke_authorization(AuthorizationId::random(), Timestamp::now())
            .await,
        "revoke missing",
    );

    // Revoking as the owner: another user's, another tenant's or a missing one is
    // NotFound and changes nothing; the owner's comes back with its clients in order.
    let stranger = user(w.tenant.id);
    store.create_user(&stranger).await.unwrap();
    let at = Timestamp::from(1_800_000_000);
    for (tenant, owner, id, ctx) in [
        (w.tenant.id, stranger.id, with_clients.id, "another user's"),
        (
            TenantId::random(),
            w.user.id,
            with_clients.id,
            "another tenant's",
        ),
        (w.tenant.id, w.user.id, AuthorizationId::random(), "missing"),
    ] {
        assert_not_found(
            store.revoke_authorization_of(tenant, owner, id, at).await,
            ctx,
        );
    }
    assert_eq!(
        store.get_authorization(with_clients.id).await.unwrap(),
        with_clients,
        "a refused revocation changes nothing"
    );
    let owned = store
        .revoke_authorization_of(w.tenant.id, w.user.id, with_clients.id, at)
        .await
        .unwrap();
    assert_eq!(owned.revoked_at, Some(at));
    assert_eq!(
        owned.client_pubkeys, with_clients.client_pubkeys,
        "a revocation returns the clients in connect order"
    );
    assert_eq!(
        store.get_authorization(with_clients.id).await.unwrap(),
        owned
    );
    assert_not_found(
        store
            .revoke_authorization_of(w.tenant.id, stranger.id, with_clients.id, at)
            .await,
        "another user's, already revoked",
    );
    let again = store
        .revoke_authorization_of(w.tenant.id, w.user.id, with_clients.id, Timestamp::now())
        .await
        .unwrap();
    assert_eq!(
        again, owned,
        "revoking twice as the owner keeps the first time"
    );

    let now = Timestamp::now();
    let active: Vec<AuthorizationId> = store
        .list_active_authorizations(now, None, u32::MAX)
        .await
        .unwrap()
        .iter()
        .map(|x| x.id)
        .collect();
    assert!(
        active.windows(2).all(|w| w[0] < w[1]),
        "active list not in ascending id order"
    );
    // Paged one at a time, the same list.
    let mut paged = Vec::new();
    let mut after = None;
    loop {
        let page = store
            .list_active_authorizations(now, after, 1)
            .await
            .unwrap();
        assert!(page.len() <= 1, "a page holds more than its limit");
        let Some(last) = page.last() else { break };
        after = Some(last.id);
        paged.push(last.id);
    }
    assert_eq!(paged, active, "paging the active list");
    assert!(
        active.contains(&a.id),
        "active list misses a live authorization"
    );
    assert!(
        !active.contains(&b.id),
        "active list holds a revoked authorization"
    );
    assert!(
        !active.contains(&expired.id),
        "active list holds an expired authorization"
    );

    let client = pubkey();
    let secret = BearerSecret::generate();
    let c = w.authorization(store, Some(secret.digest())).await;
    store
        .redeem_connect_secret(c.id, &secret.digest(), client)
        .await
        .unwrap();
    assert!(
        store.remove_client(c.id, &client).await.unwrap(),
        "logout of a connected client"
    );
    assert!(
        !store.remove_client(c.id, &client).await.unwrap(),
        "logout twice"
    );
    assert!(!store
        .get_authorization(c.id)
        .await
        .unwrap()
        .has_client(&client));
}

pub async fn connect_secrets(store: &Arc<dyn KeyStore>) {
    let w = world(store).await;
    let secret = BearerSecret::generate();
    let a = w.authorization(store, Some(secret.digest())).await;
    let client = pubkey();

    let wrong = store
        .redeem_connect_secret(a.id, &BearerSecret::generate().digest(), client)
        .await;
    assert!(
        matches!(wrong, Err(Error::Conflict(_))),
        "wrong secret: {wrong:?}"
    );
    assert_eq!(
        store.get_authorization(a.id).await.unwrap(),
        a,
        "a failed redeem changes nothing"
    );

    let ok = store
        .redeem_connect_secret(a.id, &secret.digest(), client)
        .await
        .unwrap();
    assert!(ok.has_client(&client));
    assert_eq!(ok.connect_secret, None, "the secret is single-use");
    assert!(ok.version > a.version);

    let again = store
        .redeem_connect_secret(a.id, &secret.digest(), client)
        .await
        .unwrap();
    assert_eq!(
        again.client_pubkeys,
        vec![client],
        "reconnect is idempotent"
    );
    let other = store
        .redeem_connect_secret(a.id, &secret.digest(), pubkey())
        .await;
    assert!(
        matches!(other, Err(Error::Conflict(_))),
        "reuse by another client: {other:?}"
    );

    // Racing redeemers: exactly one wins.
    let secret = BearerSecret::generate();
    let b = w.authorization(store, Some(secret.digest())).await;
    let digest = secret.digest();
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move { store.redeem_connect_secret(b.id, &digest, pubkey()).await })
        })
        .collect();
    let mut wins = 0;
    for t in tasks {
        if t.await.unwrap().is_ok() {
            wins += 1;
        }
    }
    assert_eq!(
        wins, 1,
        "a connect secret must be redeemed exactly once under races"
    );
    assert_not_found(
        store
            .redeem_connect_secret(AuthorizationId::random(), &digest, client)
            .await,
        "redeem on a missing authorization",
    );
}

pub async fn use_counters(store: &Arc<dyn KeyStore>) {
    let w = world(store).await;
    let a = w.authorization(store, None).await;
    for i in 0..3 {
        assert!(
            store.try_consume_use(a.id, 3).await.unwrap(),
            "use {i} of 3"
        );
    }
    assert!(
        !store.try_consume_use(a.id, 3).await.unwrap(),
        "the fourth use of 3"
    );
    assert_eq!(store.get_authorization(a.id).await.unwrap().uses, 3);

    let b = w.authorization(store, None).await;
    let tasks: Vec<_> = (0..24)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move { store.try_consume_use(b.id, 5).await.unwrap() })
        })
        .collect();
    let mut granted = 0;
    for t in tasks {
        granted += usize::from(t.await.unwrap());
    }
    assert_eq!(granted, 5, "max uses must hold under concurrent callers");
    assert_not_found(
        store.try_consume_use(AuthorizationId::random(), 1).await,
        "uses of a missing authorization",
    );
}

/// The change feed names every authorization and policy write that caches must see, in
/// order, and nothing for writes that change nothing (or only use counters).
pub async fn change_feed(store: &Arc<dyn KeyStore>) {
    let start = store.latest_change().await.unwrap();
    assert!(
        store.changes_since(start, 100).await.unwrap().is_empty(),
        "nothing after the latest"
    );
    let w = world(store).await;
    let secret = BearerSecret::generate();
    let a = w.authorization(store, Some(secret.digest())).await;
    let client = pubkey();
    store
        .redeem_connect_secret(a.id, &secret.digest(), client)
        .await
        .unwrap();
    // Idempotent reconnect, use counting, removing an unknown client, a failed redeem:
    // no entries.
    store
        .redeem_connect_secret(a.id, &secret.digest(), client)
        .await
        .unwrap();
    store.try_consume_use(a.id, 10).await.unwrap();
    assert!(!store.remove_client(a.id, &pubkey()).await.unwrap());
    let _ = store
        .redeem_connect_secret(a.id, &BearerSecret::generate().digest(), pubkey())
        .await;
    store.remove_client(a.id, &client).await.unwrap();
    let mut p = store.get_policy(w.policy_id).await.unwrap();
    p.permissions = vec![Permission::AllowedKinds {
        kinds: BTreeSet::from([1]),
    }];
    store.update_policy(&p).await.unwrap();
    store
        .revoke_authorization(a.id, Timestamp::now())
        .await
        .unwrap();
    store
        .revoke_authorization(a.id, Timestamp::now())
        .await
        .unwrap();

    let feed = store.changes_since(start, 100).await.unwrap();
    let what: Vec<Changed> = feed.iter().map(|c| c.what).collect();
    use Changed::{Authorization as A, Policy as P};
    assert_eq!(
        what,
        vec![A(a.id), A(a.id), A(a.id), P(w.policy_id), A(a.id)],
        "insert, connect, logout, policy update, revoke (once)"
    );
    assert!(
        feed.windows(2).all(|p| p[0].seq < p[1].seq),
        "increasing: {feed:?}"
    );
    assert!(feed[0].seq > start);
    let latest = store.latest_change().await.unwrap();
    assert_eq!(latest, feed[4].seq);
    assert_eq!(
        store.changes_since(feed[1].seq, 2).await.unwrap(),
        feed[2..4]
    );
    assert!(store.changes_since(latest, 100).await.unwrap().is_empty());
}

pub async fn tokens(store: &Arc<dyn KeyStore>) {
    let w = world(store).await;
    let a = w.authorization(store, None).await;
    let token = ApiToken {
        digest: BearerSecret::generate().digest(),
        tenant_id: w.tenant.id,
        authorization_id: a.id,
        expires_at: Some(Timestamp::from(4_000_000_000)),
        created_at: Timestamp::from(1_700_000_000),
    };
    store.insert_token(&token).await.unwrap();
    assert_eq!(
        store.find_token(&token.digest).await.unwrap(),
        token,
        "token round trip"
    );
    assert_exists(store.insert_token(&token).await, "duplicate token digest");
    assert_not_found(
        store.find_token(&BearerSecret::generate().digest()).await,
        "unknown token",
    );
    let mut dangling = token.clone();
    dangling.digest = BearerSecret::generate().digest();
    dangling.authorization_id = AuthorizationId::random();
    assert_not_found(
        store.insert_token(&dangling).await,
        "token for a missing authorization",
    );
}

pub async fn oauth_codes(store: &Arc<dyn KeyStore>) {
    let w = world(store).await;
    let a = w.authorization(store, None).await;
    let code = |expires_at: u64| OAuthCode {
        digest: BearerSecret::generate().digest(),
        tenant_id: w.tenant.id,
        user_id: w.user.id,
        authorization_id: a.id,
        client_id: "suite-client".into(),
        redirect_uri: "https://app.example.com/callback?x=1".into(),
        code_challenge: "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM".into(),
        expires_at: Timestamp::from(expires_at),
        created_at: Timestamp::from(1_700_000_000),
    };
    let c = code(4_000_000_000);
    store.insert_oauth_code(&c).await.unwrap();
    assert_exists(store.insert_oauth_code(&c).await, "duplicate code digest");
    let now = Timestamp::from(1_800_000_000);
    assert_eq!(
        store.consume_oauth_code(&c.digest, now).await.unwrap(),
        c,
        "code round trip"
    );
    assert_not_found(
        store.consume_oauth_code(&c.digest, now).await,
        "a code is single-use",
    );
    assert_not_found(
        store
            .consume_oauth_code(&BearerSecret::generate().digest(), now)
            .await,
        "unknown code",
    );

    let expired = code(1_000);
    store.insert_oauth_code(&expired).await.unwrap();
    let r = store.consume_oauth_code(&expired.digest, now).await;
    assert!(matches!(r, Err(Error::Expired)), "expired code: {r:?}");
    assert_not_found(
        store.consume_oauth_code(&expired.digest, now).await,
        "an expired code is gone",
    );

    let mut dangling = code(4_000_000_000);
    dangling.authorization_id = AuthorizationId::random();
    assert_not_found(
        store.insert_oauth_code(&dangling).await,
        "code for a missing authorization",
    );

    let raced = code(4_000_000_000);
    store.insert_oauth_code(&raced).await.unwrap();
    let digest = raced.digest;
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move { store.consume_oauth_code(&digest, now).await })
        })
        .collect();
    let mut wins = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(got) => {
                assert_eq!(got, raced);
                wins += 1;
            }
            Err(Error::NotFound { .. }) => {}
            Err(e) => panic!("racing consumer got {e:?}"),
        }
    }
    assert_eq!(
        wins, 1,
        "an OAuth code must be consumed exactly once under races"
    );
}

/// Deleting a key takes its authorizations (named in the change feed), their tokens,
/// codes and bunker keys with it; policies, audit records and other keys stay.
pub async fn key_deletion(store: &Arc<dyn KeyStore>) {
    let w = world(store).await;
    let other = key(w.tenant.id, Some(w.user.id), KeyKind::User);
    store.insert_key(&other).await.unwrap();
    let other_bunker = key(w.tenant.id, Some(w.user.id), KeyKind::Bunker);
    store.insert_key(&other_bunker).await.unwrap();
    let bystander = authorization(
        w.tenant.id,
        w.user.id,
        other.id,
        &other_bunker,
        w.policy_id,
        None,
    );
    store.insert_authorization(&bystander).await.unwrap();

    let secret = BearerSecret::generate();
    let live = w.authorization(store, Some(secret.digest())).await;
    store
        .redeem_connect_secret(live.id, &secret.digest(), pubkey())
        .await
        .unwrap();
    let revoked = w.authorization(store, None).await;
    store
        .revoke_authorization(revoked.id, Timestamp::now())
        .await
        .unwrap();
    let token = ApiToken {
        digest: BearerSecret::generate().digest(),
        tenant_id: w.tenant.id,
        authorization_id: live.id,
        expires_at: None,
        created_at: Timestamp::from(1_700_000_000),
    };
    store.insert_token(&token).await.unwrap();
    let code = OAuthCode {
        digest: BearerSecret::generate().digest(),
        tenant_id: w.tenant.id,
        user_id: w.user.id,
        authorization_id: revoked.id,
        client_id: "suite-client".into(),
        redirect_uri: "https://app.example.com/callback".into(),
        code_challenge: "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM".into(),
        expires_at: Timestamp::from(4_000_000_000),
        created_at: Timestamp::from(1_700_000_000),
    };
    store.insert_oauth_code(&code).await.unwrap();
    let record = AuditRecord {
        at: Timestamp::from(1_700_000_001),
        tenant_id: w.tenant.id,
        user_id: Some(w.user.id),
        key_id: w.key.id,
        authorization_id: Some(live.id),
        action: Method::SignEvent.into(),
        event_kind: Some(1),
        event_id: None,
        outcome: Outcome::Allowed,
    };
    store
        .append_audit(std::slice::from_ref(&record))
        .await
        .unwrap();
    let start = store.latest_change().await.unwrap();

    let deleted = store.delete_key(w.key.id).await.unwrap();
    assert_eq!(deleted, w.key, "answers the deleted row");
    assert_not_found(store.get_key(w.key.id).await, "a deleted key");
    let keys: BTreeSet<KeyId> = store
        .list_keys(w.tenant.id, None)
        .await
        .unwrap()
        .iter()
        .map(|k| k.id)
        .collect();
    assert_eq!(
        keys,
        [w.bunker.id, other.id, other_bunker.id].into(),
        "the key and its authorizations' bunker keys are gone, nothing else"
    );
    for a in [&live, &revoked] {
        assert_not_found(store.get_authorization(a.id).await, "its authorization");
        assert_not_found(
            store.find_authorization_by_bunker(&a.bunker_pubkey).await,
            "its authorization by bunker",
        );
    }
    assert_not_found(store.find_token(&token.digest).await, "its token");
    assert_not_found(
        store
            .consume_oauth_code(&code.digest, Timestamp::from(1_800_000_000))
            .await,
        "its OAuth code",
    );
    let feed = store.changes_since(start, 100).await.unwrap();
    let changed: BTreeSet<AuthorizationId> = feed
        .iter()
        .filter_map(|c| match c.what {
            Changed::Authorization(id) => Some(id),
            _ => None,
        })
        .collect();
    assert_eq!(
        changed,
        [live.id, revoked.id].into(),
        "the feed names every deleted authorization, revoked ones too"
    );
    let keys_gone: BTreeSet<KeyId> = feed
        .iter()
        .filter_map(|c| match c.what {
            Changed::Key(id) => Some(id),
            _ => None,
        })
        .collect();
    assert_eq!(
        keys_gone,
        [w.key.id, live.bunker_key_id, revoked.bunker_key_id].into(),
        "the feed names the deleted key and its authorizations' bunker keys"
    );
    assert!(
        feed.iter()
            .all(|c| matches!(c.what, Changed::Authorization(_) | Changed::Key(_))),
        "nothing else changed: {feed:?}"
    );
    let remaining: Vec<AuthorizationId> = store
        .list_authorizations(w.tenant.id, None)
        .await
        .unwrap()
        .iter()
        .map(|a| a.id)
        .collect();
    assert_eq!(remaining, vec![bystander.id]);
    assert_eq!(
        store.get_authorization(bystander.id).await.unwrap(),
        bystander,
        "another key's authorization is untouched"
    );
    assert_eq!(store.get_key(other.id).await.unwrap(), other);
    store.get_policy(w.policy_id).await.unwrap();
    let kept = store
        .list_audit(&AuditFilter {
            tenant_id: w.tenant.id,
            key_id: Some(w.key.id),
            authorization_id: None,
            limit: 10,
        })
        .await
        .unwrap();
    assert_eq!(kept, vec![record], "audit history survives");
    assert_not_found(store.delete_key(w.key.id).await, "a second delete");
    assert_not_found(store.delete_key(KeyId::random()).await, "a missing key");

    // A bunker key takes the one authorization it serves with it.
    let start = store.latest_change().await.unwrap();
    store.delete_key(other_bunker.id).await.unwrap();
    assert_not_found(
        store.get_authorization(bystander.id).await,
        "the authorization of a deleted bunker key",
    );
    assert_eq!(store.get_key(other.id).await.unwrap(), other);
    let feed = store.changes_since(start, 100).await.unwrap();
    assert_eq!(
        feed.iter().map(|c| c.what).collect::<Vec<_>>(),
        vec![
            Changed::Authorization(bystander.id),
            Changed::Key(other_bunker.id)
        ]
    );
}

/// Values at the edge of what a backend can hold are stored exactly or refused with
/// `InvalidInput`, never truncated.
pub async fn extreme_values(store: &Arc<dyn KeyStore>) {
    let w = world(store).await;
    let bunker = key(w.tenant.id, Some(w.user.id), KeyKind::Bunker);
    store.insert_key(&bunker).await.unwrap();
    let mut a = authorization(w.tenant.id, w.user.id, w.key.id, &bunker, w.policy_id, None);
    a.expires_at = Some(Timestamp::from(u64::MAX));
    match store.insert_authorization(&a).await {
        Ok(()) => assert_eq!(
            store.get_authorization(a.id).await.unwrap(),
            a,
            "u64::MAX expiry"
        ),
        Err(Error::InvalidInput { .. }) => assert_not_found(
            store.get_authorization(a.id).await,
            "a refused insert stores nothing",
        ),
        Err(e) => panic!("u64::MAX expiry: {e:?}"),
    }
    let mut long = policy(
        w.tenant.id,
        vec![Permission::ContentFilter {
            deny_words: vec!["ß".repeat(2_000)],
            deny_patterns: vec![],
        }],
    );
    long.name = label(&"ü".repeat(100));
    store.insert_policy(&long).await.unwrap();
    assert_eq!(
        store.get_policy(long.id).await.unwrap(),
        long,
        "multi-byte text round trip"
    );
}

pub async fn audit(store: &Arc<dyn KeyStore>) {
    let w = world(store).await;
    let a = w.authorization(store, None).await;
    let record = |i: u64, auth: Option<AuthorizationId>, outcome: Outcome| AuditRecord {
        at: Timestamp::from(1_700_000_000 + i),
        tenant_id: w.tenant.id,
        user_id: Some(w.user.id),
        key_id: w.key.id,
        authorization_id: auth,
        action: Method::SignEvent.into(),
        event_kind: Some(1),
        event_id: Some(EventId::all_zeros()),
        outcome,
    };
    let batch = vec![
        record(1, None, Outcome::Allowed),
        record(
            2,
            Some(a.id),
            Outcome::Denied("event kind 4 is not allowed".into()),
        ),
        record(3, Some(a.id), Outcome::Failed("invalid_ciphertext".into())),
        record(4, Some(a.id), Outcome::NeedsApproval),
    ];
    store.append_audit(&batch).await.unwrap();
    store.append_audit(&[]).await.unwrap();

    let filter = AuditFilter {
        tenant_id: w.tenant.id,
        key_id: None,
        authorization_id: None,
        limit: 100,
    };
    let all = store.list_audit(&filter).await.unwrap();
    let expected: Vec<AuditRecord> = batch.iter().rev().cloned().collect();
    assert_eq!(all, expected, "audit round trip, newest first");

    let by_auth = store
        .list_audit(&AuditFilter {
            authorization_id: Some(a.id),
            limit: 2,
            ..filter.clone()
        })
        .await
        .unwrap();
    assert_eq!(
        by_auth,
        expected[..2].to_vec(),
        "filter by authorization with a limit"
    );
    let other_key = store
        .list_audit(&AuditFilter {
            key_id: Some(KeyId::random()),
            ..filter.clone()
        })
        .await
        .unwrap();
    assert!(other_key.is_empty());
    let other_tenant = store
        .list_audit(&AuditFilter {
            tenant_id: TenantId::random(),
            ..filter
        })
        .await
        .unwrap();
    assert!(other_tenant.is_empty(), "audit is scoped by tenant");

    // Every kind of action reads back as itself: the owner's actions on the key and each
    // request method.
    let actions = [
        AuditAction::ExportKey,
        AuditAction::DeleteKey,
        AuditAction::ReplaceKey,
        Method::GetPublicKey.into(),
        Method::Nip44Encrypt.into(),
        Method::Nip04Decrypt.into(),
    ];
    let other = world(store).await;
    let owned: Vec<AuditRecord> = (0u64..)
        .zip(actions)
        .map(|(i, action)| AuditRecord {
            tenant_id: other.tenant.id,
            key_id: other.key.id,
            user_id: Some(other.user.id),
            authorization_id: None,
            action,
            event_kind: None,
            event_id: None,
            ..record(20 + i, None, Outcome::Allowed)
        })
        .collect();
    store.append_audit(&owned).await.unwrap();
    let read = store
        .list_audit(&AuditFilter {
            tenant_id: other.tenant.id,
            key_id: None,
            authorization_id: None,
            limit: 100,
        })
        .await
        .unwrap();
    assert_eq!(
        read,
        owned.iter().rev().cloned().collect::<Vec<_>>(),
        "actions round trip"
    );

    let mut second_sign = record(9, Some(a.id), Outcome::Allowed);
    second_sign.at = Timestamp::from(1_700_000_003);
    store.append_audit(&[second_sign]).await.unwrap();
    assert_eq!(
        store.authorization_activity(a.id).await.unwrap(),
        Activity {
            last_used_at: Some(Timestamp::from(1_700_000_004)),
            signatures: 1,
        },
        "activity: latest call of any outcome, allowed signatures only"
    );
    assert_eq!(
        store
            .authorization_activity(AuthorizationId::random())
            .await
            .unwrap(),
        Activity::default()
    );
}
