//! The custody engine end to end over the in-memory backends.

use std::sync::Arc;
use std::time::Duration;

use keycast_core::envelope;
use keycast_core::nostr::nips::{nip04, nip44};
use keycast_core::nostr::{Keys, Kind, Tag, Tags, Timestamp};
use keycast_core::*;

pub(crate) struct Fixture {
    pub(crate) store: Arc<MemoryKeyStore>,
    pub(crate) km: Arc<InsecureTestKeyManager>,
    pub(crate) custody: Custody,
    pub(crate) tenant: Tenant,
    pub(crate) user: User,
    pub(crate) key: StoredKey,
    pub(crate) secret: Keys,
}

async fn fixture_with(km: InsecureTestKeyManager, cfg: CustodyConfig) -> Fixture {
    let store = Arc::new(MemoryKeyStore::new());
    let km = Arc::new(km);
    let custody = Custody::builder(store.clone(), km.clone())
        .config(cfg)
        .build()
        .expect("engine");
    let tenant = Tenant::new(
        TenantName::parse(&format!("t{}", KeyId::random().as_uuid().simple())).expect("name"),
    );
    store.create_tenant(&tenant).await.expect("tenant");
    let user = User::new(tenant.id, Username::parse("alice").expect("name"), None);
    store.create_user(&user).await.expect("user");
    let secret = Keys::generate();
    let key = custody
        .create_key(
            NewKey::generate(
                tenant.id,
                Holder::User(user.id),
                KeyKind::User,
                Label::parse("main").expect("label"),
            )
            .with_secret(secret.secret_key().clone()),
        )
        .await
        .expect("key");
    Fixture {
        store,
        km,
        custody,
        tenant,
        user,
        key,
        secret,
    }
}

pub(crate) async fn fixture() -> Fixture {
    fixture_with(InsecureTestKeyManager::new(), CustodyConfig::default()).await
}

impl Fixture {
    fn owner(&self) -> Caller {
        Caller::Owner(self.key.id)
    }

    async fn authorize(&self, permissions: Vec<Permission>) -> Authorization {
        self.authorize_with_secret(permissions).await.0
    }

    /// An authorization under a policy of its own, with its connect secret.
    pub(crate) async fn authorize_with_secret(
        &self,
        permissions: Vec<Permission>,
    ) -> (Authorization, BearerSecret) {
        let policy = Policy::new(
            self.tenant.id,
            Label::parse("p").expect("label"),
            permissions,
        )
        .expect("policy");
        self.store.insert_policy(&policy).await.expect("policy");
        self.custody
            .create_authorization(NewAuthorization {
                tenant_id: self.tenant.id,
                user_id: self.user.id,
                key_id: self.key.id,
                policy_id: policy.id,
                label: Label::parse("app").expect("label"),
                relays: vec![],
                expires_at: None,
            })
            .await
            .expect("authorization")
    }

    async fn audit(&self) -> Vec<AuditRecord> {
        self.store
            .list_audit(&AuditFilter {
                tenant_id: self.tenant.id,
                key_id: Some(self.key.id),
                authorization_id: None,
                limit: 1000,
            })
            .await
            .expect("audit")
    }
}

#[tokio::test]
async fn signs_verifiable_events_and_preserves_fields() {
    let f = fixture().await;
    let tags = Tags::from_list(vec![
        Tag::parse([
            "e",
            "5c83da77af1dec6d7289834998ad7aafbd9e2191396d75ec3cc27f5a77226f36",
            "",
            "root",
        ])
        .expect("tag"),
        Tag::parse(["t", "nostr"]).expect("tag"),
        Tag::parse(["t", "nostr"]).expect("tag"),
        Tag::parse(["custom", "a", "b", "c"]).expect("tag"),
    ]);
    let template = EventTemplate {
        pubkey: None,
        created_at: Some(Timestamp::from(1_234_567)),
        kind: Kind::TextNote,
        tags: tags.clone(),
        content: "héllo \u{1F600}\n\t\"quoted\" \\ \u{1}\u{7f} </script> ".into(),
    };
    let event = f
        .custody
        .sign_event(f.owner(), template.clone())
        .await
        .expect("sign");
    event.verify().expect("nostr verifies the signature and id");
    assert_eq!(event.pubkey, f.key.pubkey, "pubkey filled in");
    assert_eq!(event.created_at, Timestamp::from(1_234_567));
    assert_eq!(event.kind, Kind::TextNote);
    assert_eq!(
        event.tags.to_vec(),
        tags.to_vec(),
        "tags kept in order, duplicates included"
    );
    assert_eq!(event.content, template.content);

    let own = EventTemplate {
        pubkey: Some(f.key.pubkey),
        ..template.clone()
    };
    assert_eq!(
        f.custody
            .sign_event(f.owner(), own)
            .await
            .expect("sign")
            .pubkey,
        f.key.pubkey
    );

    let before = Timestamp::now();
    let now = f
        .custody
        .sign_event(f.owner(), EventTemplate::new(Kind::TextNote, "now"))
        .await
        .expect("sign");
    assert!(
        now.created_at >= before,
        "missing created_at is filled with now"
    );
}

#[tokio::test]
async fn template_json_from_a_client_signs() {
    let f = fixture().await;
    let json = format!(
        r#"{{"kind":7,"content":"+","tags":[["e","abc"]],"created_at":1700000000,"pubkey":"{}","id":"ignored"}}"#,
        f.key.pubkey.to_hex()
    );
    let t = EventTemplate::from_json(&json).expect("parse");
    let e = f.custody.sign_event(f.owner(), t).await.expect("sign");
    e.verify().expect("valid");
    assert_eq!(e.created_at.as_secs(), 1_700_000_000);
}

#[tokio::test]
async fn refuses_a_foreign_pubkey_and_audits_it() {
    let f = fixture().await;
    let t = EventTemplate {
        pubkey: Some(Keys::generate().public_key()),
        ..EventTemplate::new(Kind::TextNote, "x")
    };
    assert_eq!(
        f.custody.sign_event(f.owner(), t).await,
        Err(Error::ForeignPubkey)
    );
    let audit = f.audit().await;
    assert_eq!(audit.len(), 1);
    assert!(matches!(audit[0].outcome, Outcome::Denied(_)));
}

#[tokio::test]
async fn nip44_interoperates_with_the_nostr_crate() {
    let f = fixture().await;
    let peer = Keys::generate();
    let ct = f
        .custody
        .nip44_encrypt(f.owner(), peer.public_key(), "secret message ✓".into())
        .await
        .expect("encrypt");
    let plain = nip44::decrypt(peer.secret_key(), &f.key.pubkey, &ct).expect("nostr decrypts ours");
    assert_eq!(plain, "secret message ✓");

    let theirs = nip44::encrypt(
        peer.secret_key(),
        &f.key.pubkey,
        "reply",
        nip44::Version::V2,
    )
    .expect("encrypt");
    let got = f
        .custody
        .nip44_decrypt(f.owner(), peer.public_key(), theirs)
        .await
        .expect("we decrypt theirs");
    assert_eq!(got, "reply");
}

#[tokio::test]
async fn nip04_interoperates_with_the_nostr_crate() {
    let f = fixture().await;
    let peer = Keys::generate();
    let ct = f
        .custody
        .nip04_encrypt(f.owner(), peer.public_key(), "legacy dm".into())
        .await
        .expect("encrypt");
    assert!(ct.contains("?iv="));
    assert_eq!(
        nip04::decrypt(peer.secret_key(), &f.key.pubkey, &ct).expect("decrypt"),
        "legacy dm"
    );
    let theirs = nip04::encrypt(peer.secret_key(), &f.key.pubkey, "back").expect("encrypt");
    let got = f
        .custody
        .nip04_decrypt(f.owner(), peer.public_key(), theirs)
        .await
        .expect("decrypt");
    assert_eq!(got, "back");
}

#[tokio::test]
async fn bad_input_gets_typed_errors_and_changes_nothing() {
    let f = fixture().await;
    let peer = Keys::generate();
    let valid = nip44::encrypt(peer.secret_key(), &f.key.pubkey, "hi", nip44::Version::V2)
        .expect("encrypt");
    let mut raw =
        nostr::base64::Engine::decode(&nostr::base64::engine::general_purpose::STANDARD, &valid)
            .expect("b64");
    let b64 = |bytes: &[u8]| {
        nostr::base64::Engine::encode(&nostr::base64::engine::general_purpose::STANDARD, bytes)
    };
    let wrong_version = {
        let mut v = raw.clone();
        v[0] = 1;
        b64(&v)
    };
    let bad_mac = {
        let n = raw.len();
        raw[n - 1] ^= 1;
        b64(&raw)
    };
    let short = b64(&raw[..40]);

    assert!(matches!(
        parse_pubkey("npub1notakey"),
        Err(Error::InvalidInput { what: "pubkey", .. })
    ));
    assert!(matches!(
        parse_pubkey("abcd"),
        Err(Error::InvalidInput { .. })
    ));

    let big = "x".repeat(f.custody.config().max_content_bytes + 1);
    let r = f
        .custody
        .sign_event(f.owner(), EventTemplate::new(Kind::TextNote, big))
        .await;
    assert!(
        matches!(
            r,
            Err(Error::InvalidInput {
                what: "content",
                ..
            })
        ),
        "{r:?}"
    );

    let pk = peer.public_key();
    let cases: Vec<(&str, Request)> = vec![
        (
            "nip44 wrong version byte",
            Request::Nip44Decrypt {
                peer: pk,
                ciphertext: wrong_version,
            },
        ),
        (
            "nip44 bad MAC",
            Request::Nip44Decrypt {
                peer: pk,
                ciphertext: bad_mac,
            },
        ),
        (
            "nip44 bad base64",
            Request::Nip44Decrypt {
                peer: pk,
                ciphertext: "!!!not base64!!!".into(),
            },
        ),
        (
            "nip44 too short",
            Request::Nip44Decrypt {
                peer: pk,
                ciphertext: short,
            },
        ),
        (
            "nip44 empty",
            Request::Nip44Decrypt {
                peer: pk,
                ciphertext: String::new(),
            },
        ),
        (
            "nip44 future version",
            Request::Nip44Decrypt {
                peer: pk,
                ciphertext: "#unsupported".into(),
            },
        ),
        (
            "nip44 too long",
            Request::Nip44Decrypt {
                peer: pk,
                ciphertext: "A".repeat(200_000),
            },
        ),
        (
            "nip04 without iv",
            Request::Nip04Decrypt {
                peer: pk,
                ciphertext: "aGVsbG8=".into(),
            },
        ),
        (
            "nip04 bad iv",
            Request::Nip04Decrypt {
                peer: pk,
                ciphertext: "aGVsbG8=?iv=short".into(),
            },
        ),
        (
            "nip04 bad base64",
            Request::Nip04Decrypt {
                peer: pk,
                ciphertext: "%%%?iv=AAAAAAAAAAAAAAAAAAAAAA==".into(),
            },
        ),
    ];
    for (name, req) in cases {
        let r = f.custody.handle(f.owner(), req).await;
        assert!(
            matches!(r, Err(Error::InvalidCiphertext(_))),
            "{name}: {r:?}"
        );
    }
    let r = f.custody.nip44_encrypt(f.owner(), pk, String::new()).await;
    assert!(
        matches!(r, Err(Error::InvalidInput { .. })),
        "empty nip44 plaintext: {r:?}"
    );
    let r = f
        .custody
        .nip44_encrypt(f.owner(), pk, "x".repeat(65_536))
        .await;
    assert!(
        matches!(r, Err(Error::InvalidInput { .. })),
        "oversized nip44 plaintext: {r:?}"
    );

    // Nothing above touched the store except audit records of authorized-but-failed calls.
    assert!(f
        .audit()
        .await
        .iter()
        .all(|r| r.outcome != Outcome::Allowed));
    assert_eq!(
        f.store
            .list_keys(f.tenant.id, None)
            .await
            .expect("keys")
            .len(),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_cold_requests_share_one_unwrap() {
    let f = fixture_with(
        InsecureTestKeyManager::new().with_latency(Duration::from_millis(50)),
        CustodyConfig::default(),
    )
    .await;
    let tasks: Vec<_> = (0..100)
        .map(|i| {
            let c = f.custody.clone();
            let caller = f.owner();
            tokio::spawn(async move {
                c.sign_event(caller, EventTemplate::new(Kind::TextNote, format!("{i}")))
                    .await
            })
        })
        .collect();
    for t in tasks {
        t.await
            .expect("join")
            .expect("sign")
            .verify()
            .expect("valid");
    }
    assert_eq!(
        f.km.unwrap_calls(),
        1,
        "100 concurrent cold requests, one unwrap"
    );
    let s = f.custody.stats();
    assert_eq!(s.key_cache_hits + s.key_cache_misses, 100);
    assert_eq!(f.audit().await.len(), 100, "one audit record per signature");

    f.custody.get_public_key(f.owner()).await.expect("warm");
    assert_eq!(f.km.unwrap_calls(), 1, "warm calls never unwrap");
    f.custody.invalidate_key(f.key.id);
    f.custody
        .get_public_key(f.owner())
        .await
        .expect("cold again");
    assert_eq!(f.km.unwrap_calls(), 2);
}

#[tokio::test]
async fn a_key_that_decrypts_to_another_pubkey_is_refused() {
    let f = fixture().await;
    let impostor = Keys::generate();
    let id = KeyId::random();
    // Another tenant's row, bound to f.key's pubkey but holding the impostor's secret.
    let other = Tenant::new(TenantName::parse("impostor").expect("name"));
    f.store.create_tenant(&other).await.expect("tenant");
    let binding = EnvelopeBinding {
        key_id: id,
        pubkey: f.key.pubkey,
        tenant_id: other.id,
    };
    let secret = Secret32::new(impostor.secret_key().to_secret_bytes());
    let env = envelope::seal(f.km.as_ref(), &binding, &secret)
        .await
        .expect("seal");
    let row = StoredKey {
        id,
        tenant_id: other.id,
        owner: None,
        envelope: env,
        ..f.key.clone()
    };
    f.store.insert_key(&row).await.expect("insert");
    let r = f
        .custody
        .sign_event(Caller::Owner(id), EventTemplate::new(Kind::TextNote, "x"))
        .await;
    assert_eq!(r, Err(Error::KeyMismatch));
    // A failed load is not cached: the next call tries again and fails again.
    let r = f.custody.get_public_key(Caller::Owner(id)).await;
    assert_eq!(r, Err(Error::KeyMismatch));
    // Counted, and flagged for readiness until a key opens again.
    let stats = f.custody.stats();
    assert_eq!((stats.key_open_failures, stats.keys_unopenable), (2, true));
    f.custody
        .get_public_key(f.owner())
        .await
        .expect("a good key");
    let stats = f.custody.stats();
    assert_eq!((stats.key_open_failures, stats.keys_unopenable), (2, false));
}

#[tokio::test]
async fn a_missing_master_key_is_a_key_manager_error_not_a_missing_record() {
    let f = fixture().await;
    let auth = f.authorize(vec![Permission::FullAccess]).await;
    // The same store under another master key: what a regenerated key file looks like.
    let other = Custody::builder(f.store.clone(), Arc::new(InsecureTestKeyManager::new()))
        .build()
        .expect("engine");
    let r = other.get_public_key(Caller::Authorization(auth.id)).await;
    assert!(matches!(r, Err(Error::KeyManager(_))), "{r:?}");
    assert!(other.stats().keys_unopenable);
}

#[tokio::test]
async fn the_engine_checks_who_holds_the_key() {
    let f = fixture().await;
    let alices = f.authorize(vec![Permission::FullAccess]).await;
    let bob = User::new(f.tenant.id, Username::parse("bob").expect("name"), None);
    f.store.create_user(&bob).await.expect("user");
    let bobs_key = f
        .custody
        .create_key(NewKey::generate(
            f.tenant.id,
            Holder::User(bob.id),
            KeyKind::User,
            Label::parse("bob").expect("label"),
        ))
        .await
        .expect("key");
    let mut alices_policy = Policy::new(
        f.tenant.id,
        Label::parse("alice's").expect("label"),
        vec![Permission::FullAccess],
    )
    .expect("policy");
    alices_policy.owner = Some(f.user.id);
    f.store.insert_policy(&alices_policy).await.expect("policy");
    let new = |user: UserId, key: KeyId, policy: PolicyId| NewAuthorization {
        tenant_id: f.tenant.id,
        user_id: user,
        key_id: key,
        policy_id: policy,
        label: Label::parse("x").expect("label"),
        relays: vec![],
        expires_at: None,
    };
    let before = f
        .store
        .list_authorizations(f.tenant.id, None)
        .await
        .expect("list");

    // An embedding app's mistake: Bob on Alice's key, or Bob with Alice's policy.
    let r = f
        .custody
        .create_authorization(new(bob.id, f.key.id, alices.policy_id))
        .await;
    assert_eq!(r.err(), Some(Error::NotFound { what: "key" }));
    let r = f
        .custody
        .create_authorization(new(bob.id, bobs_key.id, alices_policy.id))
        .await;
    assert_eq!(r.err(), Some(Error::NotFound { what: "policy" }));
    let after = f
        .store
        .list_authorizations(f.tenant.id, None)
        .await
        .expect("list");
    assert_eq!(before.len(), after.len(), "nothing was created");

    // A row pointed at Alice's key for Bob (written past the engine) never signs.
    let mut forged = f.store.get_authorization(alices.id).await.expect("get");
    forged.id = AuthorizationId::random();
    forged.bunker_pubkey = Keys::generate().public_key();
    forged.user_id = bob.id;
    f.store.insert_authorization(&forged).await.expect("insert");
    let r = f
        .custody
        .sign_event(
            Caller::Authorization(forged.id),
            EventTemplate::new(Kind::TextNote, "as alice"),
        )
        .await;
    assert!(matches!(r, Err(Error::Denied(_))), "{r:?}");
    let r = f
        .custody
        .authorization_by_bunker(forged.bunker_pubkey)
        .await;
    assert!(matches!(r, Err(Error::Denied(_))), "{r:?}");

    // Team keys: members may, others may not; leaving the team ends it.
    let team = Team::new(f.tenant.id, Label::parse("ops").expect("label"));
    f.store.create_team(&team, f.user.id).await.expect("team");
    let team_key = f
        .custody
        .create_key(NewKey::generate(
            f.tenant.id,
            Holder::Team(team.id),
            KeyKind::User,
            Label::parse("t").expect("label"),
        ))
        .await
        .expect("team key");
    assert_eq!(team_key.holder(), Holder::Team(team.id));
    // A team holds user keys only; a refused key is not stored.
    let keys_before = f
        .store
        .list_keys(f.tenant.id, None)
        .await
        .expect("keys")
        .len();
    let bunker = NewKey::generate(
        f.tenant.id,
        Holder::Team(team.id),
        KeyKind::Bunker,
        Label::parse("b").expect("label"),
    );
    let r = f.custody.create_key(bunker).await;
    assert!(matches!(r, Err(Error::InvalidInput { .. })), "{r:?}");
    let keys_after = f
        .store
        .list_keys(f.tenant.id, None)
        .await
        .expect("keys")
        .len();
    assert_eq!(keys_after, keys_before);
    let r = f
        .custody
        .create_authorization(new(bob.id, team_key.id, alices.policy_id))
        .await;
    assert_eq!(r.err(), Some(Error::NotFound { what: "key" }));
    f.store
        .set_team_member(team.id, bob.id, TeamRole::Member)
        .await
        .expect("member");
    let (granted, _) = f
        .custody
        .create_authorization(new(bob.id, team_key.id, alices.policy_id))
        .await
        .expect("a member may");
    f.custody
        .get_public_key(Caller::Authorization(granted.id))
        .await
        .expect("signs for a member");
}

#[tokio::test]
async fn authorizations_enforce_policy_revocation_and_expiry() {
    let f = fixture().await;
    let auth = f
        .authorize(vec![Permission::AllowedKinds { kinds: [1].into() }])
        .await;
    let app = Caller::Authorization(auth.id);
    f.custody
        .sign_event(app, EventTemplate::new(Kind::TextNote, "ok"))
        .await
        .expect("kind 1 allowed");
    let r = f
        .custody
        .sign_event(app, EventTemplate::new(Kind::Metadata, "{}"))
        .await;
    assert!(matches!(r, Err(Error::Denied(_))), "{r:?}");

    let audit = f.audit().await;
    assert_eq!(audit.len(), 2);
    assert!(matches!(audit[0].outcome, Outcome::Denied(_)));
    assert_eq!(audit[0].event_kind, Some(0));
    assert_eq!(audit[1].outcome, Outcome::Allowed);
    assert_eq!(audit[1].authorization_id, Some(auth.id));
    assert_eq!(audit[1].user_id, Some(f.user.id));
    assert!(audit[1].event_id.is_some());

    f.custody
        .revoke_authorization(auth.id)
        .await
        .expect("revoke");
    let r = f
        .custody
        .sign_event(app, EventTemplate::new(Kind::TextNote, "after"))
        .await;
    assert_eq!(r, Err(Error::Revoked));

    let expiring = f.authorize(vec![Permission::FullAccess]).await;
    let mut stored = f.store.get_authorization(expiring.id).await.expect("get");
    stored.expires_at = Some(Timestamp::from(1_000));
    // Re-insert under a new id with the past expiry (the store has no update; this models
    // an authorization created with an expiry that has since passed).
    stored.id = AuthorizationId::random();
    stored.bunker_pubkey = Keys::generate().public_key();
    f.store.insert_authorization(&stored).await.expect("insert");
    let r = f
        .custody
        .get_public_key(Caller::Authorization(stored.id))
        .await;
    assert_eq!(r, Err(Error::Expired));

    let r = f
        .custody
        .get_public_key(Caller::Authorization(AuthorizationId::random()))
        .await;
    assert!(matches!(r, Err(Error::NotFound { .. })), "{r:?}");
}

#[tokio::test]
async fn a_sealed_reply_is_the_operations_answer_encrypted_and_signed_by_the_bunker() {
    let f = fixture().await;
    let auth = f
        .authorize(vec![Permission::AllowedKinds { kinds: [1].into() }])
        .await;
    let app = Caller::Authorization(auth.id);
    let client = Keys::generate();
    let seal = |scheme| ReplySeal {
        bunker: auth.bunker_key_id,
        peer: client.public_key(),
        scheme,
        build: Box::new(|response: &Response| match response {
            Response::Event(e) => Ok(format!("signed {}", e.id)),
            _ => Err(Error::Internal("not an event".into())),
        }),
    };
    for scheme in [TransportScheme::Nip44, TransportScheme::Nip04] {
        let request = Request::SignEvent(EventTemplate::new(Kind::TextNote, "sealed"));
        let (response, sealed) = f
            .custody
            .handle_sealed(app, request, seal(scheme))
            .await
            .expect("allowed");
        let Response::Event(signed) = response else {
            panic!("not an event: {response:?}");
        };
        assert_eq!(signed.pubkey, f.secret.public_key());
        let reply = sealed.expect("sealed");
        reply.verify().expect("the reply's signature");
        assert_eq!(
            reply.pubkey, auth.bunker_pubkey,
            "signed with the bunker key"
        );
        assert_eq!(reply.kind, Kind::NostrConnect);
        assert_eq!(reply.tags.public_keys().next(), Some(&client.public_key()));
        let plain = match scheme {
            TransportScheme::Nip44 => {
                nip44::decrypt(client.secret_key(), &auth.bunker_pubkey, &reply.content)
                    .expect("NIP-44 for the client")
            }
            TransportScheme::Nip04 => {
                nip04::decrypt(client.secret_key(), &auth.bunker_pubkey, &reply.content)
                    .expect("NIP-04 for the client")
            }
        };
        assert_eq!(plain, format!("signed {}", signed.id));
    }

    // A refusal is the outer error, audited, and nothing is sealed.
    let request = Request::SignEvent(EventTemplate::new(Kind::Metadata, "{}"));
    let refused = f
        .custody
        .handle_sealed(app, request, seal(TransportScheme::Nip44))
        .await;
    assert!(matches!(refused, Err(Error::Denied(_))), "{refused:?}");
    // A reply that cannot be built is the inner error; the operation still ran and is
    // audited as allowed.
    let request = Request::GetPublicKey;
    let (response, sealed) = f
        .custody
        .handle_sealed(app, request, seal(TransportScheme::Nip44))
        .await
        .expect("allowed");
    assert_eq!(response, Response::PublicKey(f.secret.public_key()));
    assert!(matches!(sealed, Err(Error::Internal(_))), "{sealed:?}");
    let audit = f.audit().await;
    assert_eq!(audit.len(), 4, "{audit:?}");
    assert!(matches!(audit[0].outcome, Outcome::Allowed));
    assert!(matches!(audit[1].outcome, Outcome::Denied(_)));

    // The seal signs only with a bunker key: the user's own key is refused before anything
    // runs.
    let mut with_user_key = seal(TransportScheme::Nip44);
    with_user_key.bunker = f.key.id;
    let request = Request::SignEvent(EventTemplate::new(Kind::TextNote, "no"));
    let r = f.custody.handle_sealed(app, request, with_user_key).await;
    assert!(matches!(r, Err(Error::Denied(_))), "{r:?}");
    assert_eq!(f.audit().await.len(), 4, "nothing ran");
}

#[tokio::test]
async fn authorizations_cannot_use_bunker_keys_or_other_tenants_keys() {
    let f = fixture().await;
    let auth = f.authorize(vec![Permission::FullAccess]).await;
    let mut bad = f.store.get_authorization(auth.id).await.expect("get");
    bad.id = AuthorizationId::random();
    bad.bunker_pubkey = Keys::generate().public_key();
    bad.key_id = auth.bunker_key_id;
    f.store.insert_authorization(&bad).await.expect("insert");
    let r = f
        .custody
        .get_public_key(Caller::Authorization(bad.id))
        .await;
    assert!(matches!(r, Err(Error::Denied(_))), "{r:?}");

    let other = fixture().await;
    let r = f
        .custody
        .create_authorization(NewAuthorization {
            tenant_id: f.tenant.id,
            user_id: f.user.id,
            key_id: other.key.id,
            policy_id: auth.policy_id,
            label: Label::parse("x").expect("label"),
            relays: vec![],
            expires_at: None,
        })
        .await;
    assert!(matches!(r, Err(Error::NotFound { .. })), "{r:?}");
}

#[tokio::test]
async fn create_authorization_issues_a_single_use_connect_secret() {
    let f = fixture().await;
    let auth = f.authorize(vec![Permission::FullAccess]).await;
    let bunker = f
        .store
        .get_key(auth.bunker_key_id)
        .await
        .expect("bunker key");
    assert_eq!(bunker.kind, KeyKind::Bunker);
    assert_eq!(bunker.pubkey, auth.bunker_pubkey);
    assert_ne!(
        auth.bunker_pubkey, f.key.pubkey,
        "bunker key differs from the user key"
    );
    assert!(auth.connect_secret.is_some());
    // The bunker key can sign (NIP-46 replies) through an owner call.
    let e = f
        .custody
        .sign_event(
            Caller::Owner(bunker.id),
            EventTemplate::new(Kind::NostrConnect, "{}"),
        )
        .await
        .expect("sign");
    assert_eq!(e.pubkey, auth.bunker_pubkey);
}

#[tokio::test]
async fn conversation_keys_are_cached_and_results_match_uncached() {
    let with_cache = fixture().await;
    let peer = Keys::generate();
    for i in 0..3 {
        let ct = with_cache
            .custody
            .nip44_encrypt(with_cache.owner(), peer.public_key(), format!("m{i}"))
            .await
            .expect("encrypt");
        assert_eq!(
            nip44::decrypt(peer.secret_key(), &with_cache.key.pubkey, &ct).expect("decrypt"),
            format!("m{i}")
        );
    }
    let cfg = CustodyConfig {
        conversation_cache_capacity: 0,
        ..CustodyConfig::default()
    };
    let without = fixture_with(InsecureTestKeyManager::new(), cfg).await;
    let ct = without
        .custody
        .nip44_encrypt(without.owner(), peer.public_key(), "uncached".into())
        .await
        .expect("encrypt");
    assert_eq!(
        nip44::decrypt(peer.secret_key(), &without.key.pubkey, &ct).expect("decrypt"),
        "uncached"
    );
}

#[tokio::test]
async fn debug_output_never_shows_secrets() {
    let f = fixture().await;
    f.custody.get_public_key(f.owner()).await.expect("load");
    let hex_secret = f.secret.secret_key().to_secret_hex();
    for shown in [
        format!("{:?}", f.custody),
        format!("{:?}", f.key),
        format!("{:?}", f.secret),
    ] {
        assert!(
            !shown.contains(&hex_secret),
            "secret in Debug output: {shown}"
        );
    }
    let (_, connect_secret) = f
        .custody
        .create_authorization(NewAuthorization {
            tenant_id: f.tenant.id,
            user_id: f.user.id,
            key_id: f.key.id,
            policy_id: f.authorize(vec![Permission::FullAccess]).await.policy_id,
            label: Label::parse("x").expect("label"),
            relays: vec![],
            expires_at: None,
        })
        .await
        .expect("authorization");
    assert!(!format!("{connect_secret:?}").contains(connect_secret.expose()));
}

#[tokio::test]
async fn building_outside_a_runtime_is_a_clear_error() {
    let r = std::thread::spawn(|| {
        Custody::builder(
            Arc::new(MemoryKeyStore::new()),
            Arc::new(InsecureTestKeyManager::new()),
        )
        .build()
    })
    .join()
    .expect("thread");
    assert!(
        matches!(r, Err(Error::Internal(ref m)) if m.contains("Tokio runtime")),
        "{r:?}"
    );
}
