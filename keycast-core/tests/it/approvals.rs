//! `require_approval` through the engine: a request waits at the desk until a person
//! decides, runs once when approved, is refused when not, and the key's other limits
//! still apply after approval.

use std::sync::Arc;
use std::time::Duration;

use keycast_core::nostr::{Keys, Kind};
use keycast_core::*;

struct World {
    store: Arc<MemoryKeyStore>,
    custody: Custody,
    desk: Arc<ApprovalDesk>,
    tenant: Tenant,
    user: User,
    key: StoredKey,
}

async fn world() -> World {
    let store = Arc::new(MemoryKeyStore::new());
    let desk = Arc::new(ApprovalDesk::new(
        "https://k.example/ui/approvals",
        Duration::from_secs(60),
    ));
    let authorizer = PolicyAuthorizer::new(store.clone()).with_approvals(desk.clone());
    let custody = Custody::builder(store.clone(), Arc::new(InsecureTestKeyManager::new()))
        .authorizer(Arc::new(authorizer))
        .build()
        .expect("engine");
    let tenant = Tenant::new(TenantName::parse("approvals").expect("name"));
    store.create_tenant(&tenant).await.expect("tenant");
    let user = User::new(tenant.id, Username::parse("ann").expect("name"), None);
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
    }
}

impl World {
    async fn authorize(&self, permissions: Vec<Permission>) -> AuthorizationId {
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
                relays: Vec::new(),
                expires_at: None,
            })
            .await
            .expect("authorization");
        auth.id
    }

    async fn sign(
        &self,
        auth: AuthorizationId,
        content: &str,
    ) -> Result<keycast_core::nostr::Event> {
        self.custody
            .sign_event(
                Caller::Authorization(auth),
                EventTemplate::new(Kind::TextNote, content),
            )
            .await
    }
}

#[tokio::test]
async fn a_request_runs_once_a_person_approved_it_and_never_when_refused() {
    let w = world().await;
    let auth = w
        .authorize(vec![Permission::FullAccess, Permission::RequireApproval])
        .await;
    let url = format!("https://k.example/ui/approvals/{auth}");
    assert_eq!(
        w.sign(auth, "hello").await,
        Err(Error::NeedsApproval(url.clone()))
    );
    assert_eq!(
        w.sign(auth, "hello").await,
        Err(Error::NeedsApproval(url)),
        "still waiting"
    );
    let pk = w.custody.get_public_key(Caller::Authorization(auth)).await;
    assert!(pk.is_ok(), "get_public_key needs no approval: {pk:?}");

    let waiting = w.desk.waiting(auth);
    assert_eq!(waiting.len(), 1);
    assert!(waiting[0].summary.contains("hello"), "{waiting:?}");
    assert!(w.desk.decide(auth, &waiting[0].id, true));
    match w.sign(auth, "hello").await {
        Ok(e) => {
            assert_eq!(e.content, "hello");
            assert_eq!(e.pubkey, w.key.pubkey);
        }
        other => panic!("approved request did not sign: {other:?}"),
    }
    assert!(
        matches!(w.sign(auth, "hello").await, Err(Error::NeedsApproval(_))),
        "an approval is used once"
    );

    let id = w.desk.waiting(auth)[0].id.clone();
    assert!(w.desk.decide(auth, &id, false));
    assert!(matches!(w.sign(auth, "hello").await, Err(Error::Denied(_))));
}

#[tokio::test]
async fn other_rules_still_apply_and_a_desk_is_required() {
    let w = world().await;
    let auth = w
        .authorize(vec![
            Permission::AllowedKinds { kinds: [7].into() },
            Permission::RequireApproval,
        ])
        .await;
    // A kind the policy refuses is denied outright, never put before a person.
    assert!(matches!(w.sign(auth, "x").await, Err(Error::Denied(_))));
    assert!(w.desk.waiting(auth).is_empty());

    // An engine whose authorizer has no desk denies rather than allows.
    let store = Arc::new(MemoryKeyStore::new());
    let custody = Custody::builder(store.clone(), Arc::new(InsecureTestKeyManager::new()))
        .authorizer(Arc::new(PolicyAuthorizer::new(store.clone())))
        .build()
        .expect("engine");
    let bare = World {
        store,
        custody,
        desk: w.desk.clone(),
        tenant: w.tenant.clone(),
        user: w.user.clone(),
        key: w.key.clone(),
    };
    bare.store
        .create_tenant(&bare.tenant)
        .await
        .expect("tenant");
    bare.store.create_user(&bare.user).await.expect("user");
    let key = bare
        .custody
        .create_key(
            NewKey::generate(
                bare.tenant.id,
                Holder::User(bare.user.id),
                KeyKind::User,
                Label::parse("k").expect("label"),
            )
            .with_secret(Keys::generate().secret_key().clone()),
        )
        .await
        .expect("key");
    let bare = World { key, ..bare };
    let auth = bare
        .authorize(vec![Permission::FullAccess, Permission::RequireApproval])
        .await;
    assert!(matches!(bare.sign(auth, "x").await, Err(Error::Denied(_))));
}
