//! Run with cargo run -p example-custom-authorizer
//!
//! A custom `Authorizer`: apps may sign only notes (kind 1) and reactions (kind 7), and
//! only during office hours, 09:00 to 17:00 UTC. It runs after the authorization's own
//! policy (the stock `PolicyAuthorizer`), so both must allow: an embedder adds rules, it
//! does not have to re-implement the policy table.

use std::ops::Range;
use std::sync::Arc;

use async_trait::async_trait;
use keycast_core::nostr::{Kind, Timestamp};
use keycast_core::*;

/// Notes and reactions in office hours; everything else as the inner authorizer decides.
#[derive(Debug)]
struct OfficeHours {
    inner: Arc<dyn Authorizer>,
    kinds: Vec<u16>,
    /// UTC hours, end excluded.
    hours: Range<u64>,
}

impl OfficeHours {
    /// This example's own rule, pure so it can be shown at any time of day.
    fn rule(&self, request: &Request, now: Timestamp) -> Decision {
        let hour = now.as_secs() % 86_400 / 3_600;
        if !self.hours.contains(&hour) {
            return Decision::Deny(format!(
                "outside office hours ({:02}:00-{:02}:00 UTC)",
                self.hours.start, self.hours.end
            ));
        }
        match request {
            Request::SignEvent(t) if !self.kinds.contains(&t.kind.as_u16()) => {
                Decision::Deny(format!("kind {} is not allowed here", t.kind.as_u16()))
            }
            _ => Decision::Allow,
        }
    }
}

#[async_trait]
impl Authorizer for OfficeHours {
    async fn authorize(&self, ctx: &AuthContext<'_>, request: &Request) -> Result<Decision> {
        // The owner calling through the library is not an app: only the policy applies.
        if ctx.authorization.is_some() {
            let mine = self.rule(request, ctx.now);
            if mine != Decision::Allow {
                return Ok(mine);
            }
        }
        self.inner.authorize(ctx, request).await
    }
}

/// Seconds since the epoch at `hour`:00 UTC on 14 November 2023.
fn at(hour: u64) -> Timestamp {
    Timestamp::from(1_699_920_000 + hour * 3_600)
}

#[tokio::main]
async fn main() -> Result<()> {
    let store = Arc::new(MemoryKeyStore::new());
    let office = Arc::new(OfficeHours {
        inner: Arc::new(PolicyAuthorizer::new(store.clone())),
        kinds: vec![1, 7],
        hours: 9..17,
    });
    let custody = Custody::builder(store.clone(), Arc::new(InsecureTestKeyManager::new()))
        .authorizer(office.clone())
        .build()?;

    let tenant = Tenant::new(TenantName::parse("example")?);
    store.create_tenant(&tenant).await?;
    let user = User::new(tenant.id, Username::parse("alice")?, None);
    store.create_user(&user).await?;
    let key = custody
        .create_key(NewKey::generate(
            tenant.id,
            Holder::User(user.id),
            KeyKind::User,
            Label::parse("main")?,
        ))
        .await?;
    let policy = Policy::new(
        tenant.id,
        Label::parse("full access")?,
        vec![Permission::FullAccess],
    )?;
    store.insert_policy(&policy).await?;
    let (auth, _) = custody
        .create_authorization(NewAuthorization {
            tenant_id: tenant.id,
            user_id: user.id,
            key_id: key.id,
            policy_id: policy.id,
            label: Label::parse("social app")?,
            relays: vec![],
            expires_at: None,
        })
        .await?;

    // The rule at fixed times of day.
    let note = |kind: u16| Request::SignEvent(EventTemplate::new(Kind::from(kind), "x"));
    for (kind, hour) in [(1, 10), (7, 16), (0, 10), (1, 8), (1, 17)] {
        let decision = office.rule(&note(kind), at(hour));
        println!("kind {kind} at {hour:02}:00 UTC: {decision:?}");
        let allowed = [1, 7].contains(&kind) && (9..17).contains(&hour);
        assert_eq!(decision == Decision::Allow, allowed);
    }

    // And through the engine, now: an app gets exactly what the rule says.
    let app = Caller::Authorization(auth.id);
    let now = Timestamp::now();
    let expected = office.rule(&note(1), now);
    match custody
        .sign_event(app, EventTemplate::new(Kind::TextNote, "hello"))
        .await
    {
        Ok(event) => {
            assert_eq!(expected, Decision::Allow);
            println!("signed a note now ({}): {}", now.as_secs(), event.id);
        }
        Err(Error::Denied(reason)) => {
            assert_ne!(expected, Decision::Allow);
            println!("refused a note now: {reason}");
        }
        Err(e) => return Err(e),
    }
    // Kind 0 is refused at any hour; the key's owner is not an app and is not limited.
    let metadata = custody
        .sign_event(app, EventTemplate::new(Kind::Metadata, "{}"))
        .await;
    assert!(matches!(metadata, Err(Error::Denied(_))), "{metadata:?}");
    custody
        .sign_event(
            Caller::Owner(key.id),
            EventTemplate::new(Kind::Metadata, "{}"),
        )
        .await?;
    println!("kind 0: refused for the app, signed for the owner");
    Ok(())
}
