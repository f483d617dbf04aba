//! Policy semantics as a table, for any authorizer that enforces keycast policies.
//!
//! Call [`run`] with an authorizer built over `store` (it reserves max-uses there).

use std::sync::Arc;

use nostr::{Kind, PublicKey, Timestamp};

use super::fixtures::{policy, pubkey};
use super::key_store::world;
use crate::model::authorization::Authorization;
use crate::model::policy::{Permission, Policy};
use crate::model::request::{EventTemplate, Request};
use crate::traits::authorizer::{AuthContext, Authorizer, Decision};
use crate::traits::key_store::KeyStore;

/// Shorthand verdicts for the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Want {
    Allow,
    Deny,
}

fn sign(kind: u16, content: &str) -> Request {
    Request::SignEvent(EventTemplate::new(Kind::from(kind), content))
}

fn enc44(peer: PublicKey, text: &str) -> Request {
    Request::Nip44Encrypt {
        peer,
        plaintext: text.into(),
    }
}

fn dec44(peer: PublicKey) -> Request {
    Request::Nip44Decrypt {
        peer,
        ciphertext: "AgAA".into(),
    }
}

fn dec04(peer: PublicKey) -> Request {
    Request::Nip04Decrypt {
        peer,
        ciphertext: "AA==?iv=AAAAAAAAAAAAAAAAAAAAAA==".into(),
    }
}

fn enc04(peer: PublicKey, text: &str) -> Request {
    Request::Nip04Encrypt {
        peer,
        plaintext: text.into(),
    }
}

/// The stateless table: (name, permissions, request, expected). `SELF` in a request means
/// the key's own pubkey.
pub fn table(me: PublicKey) -> Vec<(&'static str, Vec<Permission>, Request, Want)> {
    use Permission as P;
    use Want::*;
    let other = pubkey();
    let kinds = |k: &[u16]| P::AllowedKinds {
        kinds: k.iter().copied().collect(),
    };
    let words = |w: &[&str]| P::ContentFilter {
        deny_words: w.iter().map(|s| s.to_string()).collect(),
        deny_patterns: vec![],
    };
    let pattern = |p: &str| P::ContentFilter {
        deny_words: vec![],
        deny_patterns: vec![p.into()],
    };
    let past = P::Expiry {
        not_after: Timestamp::from(1_000),
    };
    let future = P::Expiry {
        not_after: Timestamp::from(u64::from(u32::MAX) * 4),
    };
    let unknown = P::Unrecognized {
        raw: "{\"type\":\"teleport\"}".into(),
    };
    vec![
        (
            "full access signs",
            vec![P::FullAccess],
            sign(1, "hi"),
            Allow,
        ),
        (
            "full access encrypts",
            vec![P::FullAccess],
            enc44(other, "hi"),
            Allow,
        ),
        (
            "full access decrypts",
            vec![P::FullAccess],
            dec04(other),
            Allow,
        ),
        (
            "kinds: listed kind",
            vec![kinds(&[1, 7])],
            sign(7, "+"),
            Allow,
        ),
        (
            "kinds: unlisted kind",
            vec![kinds(&[1, 7])],
            sign(4, "x"),
            Deny,
        ),
        (
            "kinds: kind 0 unlisted",
            vec![kinds(&[1])],
            sign(0, "{}"),
            Deny,
        ),
        (
            "kinds: encrypt unaffected",
            vec![kinds(&[1])],
            enc44(other, "hi"),
            Allow,
        ),
        (
            "kinds: pubkey unaffected",
            vec![kinds(&[1])],
            Request::GetPublicKey,
            Allow,
        ),
        (
            "words: clean content",
            vec![words(&["spam"])],
            sign(1, "hello"),
            Allow,
        ),
        (
            "words: case-insensitive hit",
            vec![words(&["spam"])],
            sign(1, "SPAM here"),
            Deny,
        ),
        (
            "words: nip44 plaintext hit",
            vec![words(&["spam"])],
            enc44(other, "spam"),
            Deny,
        ),
        (
            "words: nip04 plaintext hit",
            vec![words(&["spam"])],
            enc04(other, "a spam b"),
            Deny,
        ),
        (
            "words: decrypt unaffected",
            vec![words(&["spam"])],
            dec44(other),
            Allow,
        ),
        (
            "pattern: hit",
            vec![pattern(r"(?i)buy\s+now")],
            sign(1, "Buy   now!"),
            Deny,
        ),
        (
            "pattern: miss",
            vec![pattern(r"(?i)buy\s+now")],
            sign(1, "buy later"),
            Allow,
        ),
        (
            "pattern: broken denies sign",
            vec![pattern("(")],
            sign(1, "hi"),
            Deny,
        ),
        (
            "pattern: broken denies decrypt",
            vec![pattern("(")],
            dec44(other),
            Deny,
        ),
        (
            "words: empty word fails closed",
            vec![words(&[""])],
            sign(1, "hi"),
            Deny,
        ),
        (
            "self: encrypt to self",
            vec![P::EncryptToSelf],
            enc44(me, "note"),
            Allow,
        ),
        (
            "self: encrypt to other",
            vec![P::EncryptToSelf],
            enc44(other, "note"),
            Deny,
        ),
        (
            "self: nip04 encrypt to other",
            vec![P::EncryptToSelf],
            enc04(other, "note"),
            Deny,
        ),
        (
            "self: decrypt from other",
            vec![P::EncryptToSelf],
            dec04(other),
            Deny,
        ),
        (
            "self: decrypt from self",
            vec![P::EncryptToSelf],
            dec44(me),
            Allow,
        ),
        (
            "self: sign unaffected",
            vec![P::EncryptToSelf],
            sign(1, "hi"),
            Allow,
        ),
        (
            "decrypt-only: nip44 decrypt",
            vec![P::DecryptOnly],
            dec44(other),
            Allow,
        ),
        (
            "decrypt-only: nip04 decrypt",
            vec![P::DecryptOnly],
            dec04(other),
            Allow,
        ),
        (
            "decrypt-only: pubkey",
            vec![P::DecryptOnly],
            Request::GetPublicKey,
            Allow,
        ),
        (
            "decrypt-only: sign",
            vec![P::DecryptOnly],
            sign(1, "hi"),
            Deny,
        ),
        (
            "decrypt-only: encrypt",
            vec![P::DecryptOnly],
            enc44(me, "hi"),
            Deny,
        ),
        (
            "decrypt-only: nip04 encrypt",
            vec![P::DecryptOnly],
            enc04(me, "hi"),
            Deny,
        ),
        ("expiry: future", vec![future.clone()], sign(1, "hi"), Allow),
        ("expiry: past sign", vec![past.clone()], sign(1, "hi"), Deny),
        (
            "expiry: past decrypt",
            vec![past.clone()],
            dec44(other),
            Deny,
        ),
        (
            "expiry: past pubkey",
            vec![past],
            Request::GetPublicKey,
            Deny,
        ),
        (
            "unrecognized: sign",
            vec![unknown.clone()],
            sign(1, "hi"),
            Deny,
        ),
        (
            "unrecognized: pubkey",
            vec![unknown.clone()],
            Request::GetPublicKey,
            Deny,
        ),
        (
            "unrecognized beside full access",
            vec![P::FullAccess, unknown],
            sign(1, "hi"),
            Deny,
        ),
        (
            "and: kinds + decrypt-only",
            vec![kinds(&[1]), P::DecryptOnly],
            sign(1, "hi"),
            Deny,
        ),
        (
            "and: kinds + words ok",
            vec![kinds(&[1, 7]), words(&["x"])],
            sign(7, "ok"),
            Allow,
        ),
        (
            "and: kinds + words hit",
            vec![kinds(&[1, 7]), words(&["x"])],
            sign(7, "xx"),
            Deny,
        ),
        (
            "and: kinds + words wrong kind",
            vec![kinds(&[1, 7]), words(&["x"])],
            sign(3, "ok"),
            Deny,
        ),
        (
            "and: self + decrypt-only",
            vec![P::EncryptToSelf, P::DecryptOnly],
            dec44(me),
            Allow,
        ),
        (
            "and: self + decrypt-only other",
            vec![P::EncryptToSelf, P::DecryptOnly],
            dec44(other),
            Deny,
        ),
        (
            "and: full + kinds",
            vec![P::FullAccess, kinds(&[1])],
            sign(2, "x"),
            Deny,
        ),
        (
            "and: future expiry + max uses",
            vec![future, P::MaxUses { max: 5 }],
            sign(1, "x"),
            Allow,
        ),
    ]
}

/// Runs the table, the structural rules and the stateful limits.
pub async fn run(authorizer: Arc<dyn Authorizer>, store: Arc<dyn KeyStore>) {
    policy_table(&authorizer, &store).await;
    structural(&authorizer, &store).await;
    max_uses(&authorizer, &store).await;
    rate_limit(&authorizer, &store).await;
    repeated_limits(&authorizer, &store).await;
}

async fn decide(
    authorizer: &Arc<dyn Authorizer>,
    auth: &Authorization,
    policy: Option<&Policy>,
    me: PublicKey,
    request: &Request,
) -> Decision {
    let ctx = AuthContext {
        tenant_id: auth.tenant_id,
        key_id: auth.key_id,
        key_pubkey: me,
        authorization: Some(auth),
        policy,
        now: Timestamp::now(),
    };
    authorizer.authorize(&ctx, request).await.unwrap()
}

/// A policy inserted unvalidated, as a stored row might be.
async fn stored_policy(
    store: &Arc<dyn KeyStore>,
    tenant: crate::ids::TenantId,
    perms: Vec<Permission>,
) -> Policy {
    let mut p = policy(tenant, vec![Permission::FullAccess]);
    p.permissions = perms;
    store.insert_policy(&p).await.unwrap();
    p
}

pub async fn policy_table(authorizer: &Arc<dyn Authorizer>, store: &Arc<dyn KeyStore>) {
    let w = world(store).await;
    let me = w.key.pubkey;
    for (name, perms, request, want) in table(me) {
        let p = stored_policy(store, w.tenant.id, perms).await;
        let mut auth = w.authorization(store, None).await;
        auth.policy_id = p.id;
        let got = decide(authorizer, &auth, Some(&p), me, &request).await;
        let ok = match want {
            Want::Allow => got == Decision::Allow,
            Want::Deny => matches!(got, Decision::Deny(_)),
        };
        assert!(ok, "policy case {name:?}: wanted {want:?}, got {got:?}");
    }
}

pub async fn structural(authorizer: &Arc<dyn Authorizer>, store: &Arc<dyn KeyStore>) {
    let w = world(store).await;
    let me = w.key.pubkey;
    let auth = w.authorization(store, None).await;
    let got = decide(authorizer, &auth, None, me, &sign(1, "x")).await;
    assert!(
        matches!(got, Decision::Deny(_)),
        "authorization without its policy: {got:?}"
    );

    let foreign = stored_policy(store, w.tenant.id, vec![Permission::FullAccess]).await;
    let got = decide(authorizer, &auth, Some(&foreign), me, &sign(1, "x")).await;
    assert!(
        matches!(got, Decision::Deny(_)),
        "a policy that is not the authorization's: {got:?}"
    );

    let owner = AuthContext {
        tenant_id: w.tenant.id,
        key_id: w.key.id,
        key_pubkey: me,
        authorization: None,
        policy: None,
        now: Timestamp::now(),
    };
    let got = authorizer.authorize(&owner, &sign(4, "x")).await.unwrap();
    assert_eq!(got, Decision::Allow, "owner calls are not policy-bound");
}

pub async fn max_uses(authorizer: &Arc<dyn Authorizer>, store: &Arc<dyn KeyStore>) {
    let w = world(store).await;
    let me = w.key.pubkey;
    let p = stored_policy(
        store,
        w.tenant.id,
        vec![
            Permission::AllowedKinds { kinds: [1].into() },
            Permission::MaxUses { max: 2 },
        ],
    )
    .await;
    let mut auth = w.authorization(store, None).await;
    auth.policy_id = p.id;
    assert_eq!(
        decide(authorizer, &auth, Some(&p), me, &Request::GetPublicKey).await,
        Decision::Allow
    );
    assert!(matches!(
        decide(authorizer, &auth, Some(&p), me, &sign(4, "x")).await,
        Decision::Deny(_)
    ));
    assert_eq!(
        decide(authorizer, &auth, Some(&p), me, &sign(1, "a")).await,
        Decision::Allow
    );
    assert_eq!(
        decide(authorizer, &auth, Some(&p), me, &sign(1, "b")).await,
        Decision::Allow
    );
    let third = decide(authorizer, &auth, Some(&p), me, &sign(1, "c")).await;
    assert!(
        matches!(third, Decision::Deny(_)),
        "third use of max 2: {third:?}"
    );
    assert_eq!(
        store.get_authorization(auth.id).await.unwrap().uses,
        2,
        "get_public_key and refused requests consume no uses"
    );
}

pub async fn rate_limit(authorizer: &Arc<dyn Authorizer>, store: &Arc<dyn KeyStore>) {
    let w = world(store).await;
    let me = w.key.pubkey;
    let p = stored_policy(
        store,
        w.tenant.id,
        vec![Permission::RateLimit { per_minute: 3 }],
    )
    .await;
    let mut a = w.authorization(store, None).await;
    a.policy_id = p.id;
    let mut b = w.authorization(store, None).await;
    b.policy_id = p.id;
    for i in 0..3 {
        let got = decide(authorizer, &a, Some(&p), me, &sign(1, "x")).await;
        assert_eq!(got, Decision::Allow, "request {i} within the burst");
    }
    let over = decide(authorizer, &a, Some(&p), me, &sign(1, "x")).await;
    assert!(
        matches!(over, Decision::Deny(_)),
        "request over the rate: {over:?}"
    );
    assert_eq!(
        decide(authorizer, &b, Some(&p), me, &sign(1, "x")).await,
        Decision::Allow,
        "rate limits are per authorization"
    );
}

/// Several limits of one kind act as the strictest (AND), and a request counts once.
pub async fn repeated_limits(authorizer: &Arc<dyn Authorizer>, store: &Arc<dyn KeyStore>) {
    let w = world(store).await;
    let me = w.key.pubkey;
    let p = stored_policy(
        store,
        w.tenant.id,
        vec![
            Permission::MaxUses { max: 3 },
            Permission::RateLimit { per_minute: 5 },
            Permission::MaxUses { max: 2 },
            Permission::RateLimit { per_minute: 5 },
        ],
    )
    .await;
    let mut auth = w.authorization(store, None).await;
    auth.policy_id = p.id;
    for i in 0..2 {
        let got = decide(authorizer, &auth, Some(&p), me, &sign(1, "x")).await;
        assert_eq!(got, Decision::Allow, "request {i} within max 2 and rate 5");
    }
    let third = decide(authorizer, &auth, Some(&p), me, &sign(1, "x")).await;
    assert!(
        matches!(third, Decision::Deny(_)),
        "third use of max 2: {third:?}"
    );
    assert_eq!(store.get_authorization(auth.id).await.unwrap().uses, 2);
}
