//! `Custody::answer_transport`, the NIP-46 fast path: one crypto-pool job opens, admits,
//! runs and seals; whatever it cannot decide without I/O comes back opened, with nothing
//! spent (no audit record, no use, no rate token, no approval asked).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use keycast_core::nostr::nips::{nip04, nip44};
use keycast_core::nostr::{Keys, Kind, PublicKey};
use keycast_core::NIP44_MAX_PLAINTEXT;
use keycast_core::*;

struct World {
    store: Arc<MemoryKeyStore>,
    custody: Custody,
    desk: Arc<ApprovalDesk>,
    tenant: Tenant,
    user: User,
    key: StoredKey,
    client: Keys,
}

/// An authorizer with no fast path of its own (the trait's default).
#[derive(Debug)]
struct AsyncOnly;

#[async_trait]
impl Authorizer for AsyncOnly {
    async fn authorize(&self, _: &AuthContext<'_>, _: &Request) -> Result<Decision> {
        Ok(Decision::Allow)
    }
}

async fn world(async_only: bool) -> World {
    let store = Arc::new(MemoryKeyStore::new());
    let desk = Arc::new(ApprovalDesk::new(
        "https://k.example/ui/approvals",
        Duration::from_secs(60),
    ));
    let authorizer: Arc<dyn Authorizer> = if async_only {
        Arc::new(AsyncOnly)
    } else {
        Arc::new(PolicyAuthorizer::new(store.clone()).with_approvals(desk.clone()))
    };
    let custody = Custody::builder(store.clone(), Arc::new(InsecureTestKeyManager::new()))
        .authorizer(authorizer)
        .build()
        .expect("engine");
    let tenant = Tenant::new(TenantName::parse("fast").expect("name"));
    store.create_tenant(&tenant).await.expect("tenant");
    let user = User::new(tenant.id, Username::parse("fay").expect("name"), None);
    store.create_user(&user).await.expect("user");
    let key = custody
        .create_key(NewKey::generate(
            tenant.id,
            Holder::User(user.id),
            KeyKind::User,
            Label::parse("k").expect("label"),
        ))
        .await
        .expect("key");
    World {
        store,
        custody,
        desk,
        tenant,
        user,
        key,
        client: Keys::generate(),
    }
}

impl World {
    async fn authorize(&self, permissions: Vec<Permission>) -> Arc<Authorization> {
        let policy = Policy::new(
            self.tenant.id,
            Label::parse("p").expect("label"),
            permissions,
        )
        .expect("policy");
        self.store.insert_policy(&policy).await.expect("policy");
        let (auth, _) = self
            .custody
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
            .expect("authorization");
        Arc::new(auth)
    }

    async fn audit(&self) -> Vec<AuditRecord> {
        self.store
            .list_audit(&AuditFilter {
                tenant_id: self.tenant.id,
                key_id: Some(self.key.id),
                authorization_id: None,
                limit: 100,
            })
            .await
            .expect("audit")
    }

    /// `plaintext` as the client sends it to the authorization's bunker key.
    fn seal_request(&self, auth: &Authorization, nip04: bool, plaintext: &str) -> String {
        let secret = self.client.secret_key();
        if nip04 {
            nip04::encrypt(secret, &auth.bunker_pubkey, plaintext).expect("nip04")
        } else {
            nip44::encrypt(secret, &auth.bunker_pubkey, plaintext, nip44::Version::V2)
                .expect("nip44")
        }
    }

    /// The reply's plaintext, as the client reads it.
    fn open_reply(&self, auth: &Authorization, nip04: bool, content: &str) -> String {
        let secret = self.client.secret_key();
        if nip04 {
            nip04::decrypt(secret, &auth.bunker_pubkey, content).expect("nip04 reply")
        } else {
            nip44::decrypt(secret, &auth.bunker_pubkey, content).expect("nip44 reply")
        }
    }

    async fn answer(
        &self,
        auth: &Arc<Authorization>,
        content: String,
        interpret: Interpret,
    ) -> Result<TransportAnswer> {
        self.custody
            .answer_transport(TransportRequest {
                authorization: auth.clone(),
                peer: self.client.public_key(),
                content,
                interpret,
            })
            .await
    }
}

/// A test wire format: `sign <kind> <content>` or `nip44_decrypt <peer hex> <payload>`;
/// replies are `ok <event id or text>` or `error <message>`.
fn interpret() -> Interpret {
    Box::new(|plaintext| {
        let mut parts = plaintext.splitn(3, ' ');
        let request = match (parts.next()?, parts.next()?, parts.next()?) {
            ("sign", kind, content) => Request::SignEvent(EventTemplate::new(
                Kind::from(kind.parse::<u16>().ok()?),
                content,
            )),
            ("nip44_decrypt", peer, ciphertext) => Request::Nip44Decrypt {
                peer: PublicKey::from_hex(peer).ok()?,
                ciphertext: ciphertext.to_owned(),
            },
            _ => return None,
        };
        Some(Interpreted {
            request,
            build: Box::new(|outcome| {
                Ok(match outcome {
                    Ok(Response::Event(e)) => format!("ok {}", e.id),
                    Ok(Response::Text(t)) => format!("ok {t}"),
                    Ok(other) => format!("ok {other:?}"),
                    Err(e) => format!("error {e}"),
                })
            }),
        })
    })
}

fn never() -> Interpret {
    Box::new(|_| None)
}

#[tokio::test]
async fn one_job_answers_a_bound_clients_operation_sealed_and_audited() {
    let w = world(false).await;
    let auth = w
        .authorize(vec![Permission::AllowedKinds { kinds: [1].into() }])
        .await;
    for nip04 in [false, true] {
        let content = w.seal_request(&auth, nip04, "sign 1 fast note");
        let answer = w.answer(&auth, content, interpret()).await.expect("opened");
        let TransportAnswer::Sealed { result, reply } = answer else {
            panic!("not answered in one job: {answer:?}");
        };
        let Ok(Response::Event(signed)) = result else {
            panic!("not an event: {result:?}");
        };
        signed.verify().expect("the user's signature");
        assert_eq!(
            signed.pubkey,
            w.custody.public_key_of(w.key.id).await.expect("pk")
        );
        assert_eq!(signed.content, "fast note");
        let reply = reply.expect("sealed");
        reply.verify().expect("the reply's signature");
        assert_eq!(reply.pubkey, auth.bunker_pubkey, "signed by the bunker key");
        assert_eq!(reply.kind, Kind::NostrConnect);
        assert_eq!(
            reply.tags.public_keys().next(),
            Some(&w.client.public_key())
        );
        assert_eq!(
            w.open_reply(&auth, nip04, &reply.content),
            format!("ok {}", signed.id),
            "the reply is in the request's own scheme"
        );
    }
    let audit = w.audit().await;
    assert_eq!(audit.len(), 2, "{audit:?}");
    assert!(audit.iter().all(|r| r.outcome == Outcome::Allowed
        && r.authorization_id == Some(auth.id)
        && r.action == AuditAction::Request(Method::SignEvent)
        && r.event_id.is_some()));
}

#[tokio::test]
async fn a_failed_operation_is_answered_in_the_same_job_and_audited_as_failed() {
    let w = world(false).await;
    let auth = w.authorize(vec![Permission::FullAccess]).await;
    let peer = Keys::generate().public_key();
    let content = w.seal_request(
        &auth,
        false,
        &format!("nip44_decrypt {} bm90IGEgcGF5bG9hZA==", peer.to_hex()),
    );
    let answer = w.answer(&auth, content, interpret()).await.expect("opened");
    let TransportAnswer::Sealed { result, reply } = answer else {
        panic!("not answered in one job: {answer:?}");
    };
    let error = result.expect_err("the payload is not NIP-44");
    let reply = reply.expect("the failure is sealed too");
    assert_eq!(
        w.open_reply(&auth, false, &reply.content),
        format!("error {error}")
    );
    let audit = w.audit().await;
    assert_eq!(audit.len(), 1);
    assert!(matches!(audit[0].outcome, Outcome::Failed(_)), "{audit:?}");
}

#[tokio::test]
async fn a_reply_too_large_to_seal_is_answered_with_why() {
    let w = world(false).await;
    let auth = w.authorize(vec![Permission::FullAccess]).await;
    // The operation succeeds; its reply would be larger than NIP-44 carries.
    let interpret: Interpret = Box::new(|_| {
        Some(Interpreted {
            request: Request::SignEvent(EventTemplate::new(Kind::TextNote, "big")),
            build: Box::new(|outcome| {
                Ok(match outcome {
                    Ok(_) => "x".repeat(NIP44_MAX_PLAINTEXT + 1),
                    Err(e) => format!("error {e}"),
                })
            }),
        })
    });
    let content = w.seal_request(&auth, false, "anything");
    let answer = w.answer(&auth, content, interpret).await.expect("opened");
    let TransportAnswer::Sealed { result, reply } = answer else {
        panic!("not answered in one job: {answer:?}");
    };
    assert!(matches!(result, Ok(Response::Event(_))), "{result:?}");
    let said = w.open_reply(&auth, false, &reply.expect("the error is sealed").content);
    assert!(said.starts_with("error "), "{said}");
    let audit = w.audit().await;
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0].outcome, Outcome::Allowed, "the operation ran");
}

#[tokio::test]
async fn what_one_job_cannot_decide_comes_back_opened_with_nothing_spent() {
    let w = world(false).await;
    let opened = |answer: Result<TransportAnswer>, sent: &str| match answer {
        Ok(TransportAnswer::Opened { plaintext, .. }) => assert_eq!(plaintext, sent),
        other => panic!("expected the full path for {sent:?}: {other:?}"),
    };
    let plain = w
        .authorize(vec![Permission::AllowedKinds { kinds: [1].into() }])
        .await;
    // The caller's reading declines (a session method, say).
    let content = w.seal_request(&plain, false, "ping");
    opened(w.answer(&plain, content, never()).await, "ping");
    // The policy refuses: the full path decides again and records the refusal.
    let content = w.seal_request(&plain, false, "sign 0 {}");
    opened(w.answer(&plain, content, interpret()).await, "sign 0 {}");
    // Max uses need the store; approvals are used up when asked.
    let limited = w.authorize(vec![Permission::MaxUses { max: 5 }]).await;
    let content = w.seal_request(&limited, false, "sign 1 once");
    opened(
        w.answer(&limited, content, interpret()).await,
        "sign 1 once",
    );
    let uses = w
        .store
        .get_authorization(limited.id)
        .await
        .expect("auth")
        .uses;
    assert_eq!(uses, 0, "no use was spent");
    let approved = w.authorize(vec![Permission::RequireApproval]).await;
    let content = w.seal_request(&approved, false, "sign 1 ask");
    opened(
        w.answer(&approved, content, interpret()).await,
        "sign 1 ask",
    );
    assert!(
        w.desk.waiting(approved.id).is_empty(),
        "no approval was asked"
    );
    // A revoked authorization.
    let revoked = w.authorize(vec![Permission::FullAccess]).await;
    let revoked = Arc::new(
        w.custody
            .revoke_authorization(revoked.id)
            .await
            .expect("revoke"),
    );
    let content = w.seal_request(&revoked, false, "sign 1 late");
    opened(
        w.answer(&revoked, content, interpret()).await,
        "sign 1 late",
    );
    assert!(w.audit().await.is_empty(), "nothing ran, nothing recorded");

    // An authorizer with no fast path of its own.
    let w = world(true).await;
    let auth = w.authorize(vec![Permission::FullAccess]).await;
    let content = w.seal_request(&auth, false, "sign 1 slow");
    opened(w.answer(&auth, content, interpret()).await, "sign 1 slow");
    assert!(w.audit().await.is_empty());
}

#[tokio::test]
async fn a_request_that_cannot_be_opened_is_an_error() {
    let w = world(false).await;
    let auth = w.authorize(vec![Permission::FullAccess]).await;
    let other = Keys::generate();
    // Encrypted to another key, and not a payload at all.
    let foreign = nip44::encrypt(
        w.client.secret_key(),
        &other.public_key(),
        "sign 1 x",
        nip44::Version::V2,
    )
    .expect("nip44");
    for content in [foreign, "garbage".to_owned()] {
        let r = w.answer(&auth, content, interpret()).await;
        assert!(r.is_err(), "{r:?}");
    }
    assert!(w.audit().await.is_empty());
}
