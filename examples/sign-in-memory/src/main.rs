//! Run with cargo run -p example-sign-in-memory
//!
//! Embeds the custody engine with in-memory backends: stores a key, connects an app to it
//! under a kind-1-only policy, signs through that authorization, and shows a refusal.

use std::sync::Arc;

use keycast_core::nostr::{Kind, PublicKey};
use keycast_core::*;

#[tokio::main]
async fn main() -> Result<()> {
    let store = Arc::new(MemoryKeyStore::new());
    let custody =
        Custody::builder(store.clone(), Arc::new(InsecureTestKeyManager::new())).build()?;

    let tenant = Tenant::new(TenantName::parse("example")?);
    store.create_tenant(&tenant).await?;
    let user = User::new(tenant.id, Username::parse("alice")?, None);
    store.create_user(&user).await?;
    let key = custody
        .create_key(NewKey::generate(
            tenant.id,
            Holder::User(user.id),
            KeyKind::User,
            Label::parse("alice main")?,
        ))
        .await?;
    println!("stored key {} with pubkey {}", key.id, key.pubkey);

    let policy = Policy::new(
        tenant.id,
        Label::parse("notes only")?,
        vec![Permission::AllowedKinds { kinds: [1].into() }],
    )?;
    store.insert_policy(&policy).await?;
    let (auth, _connect_secret) = custody
        .create_authorization(NewAuthorization {
            tenant_id: tenant.id,
            user_id: user.id,
            key_id: key.id,
            policy_id: policy.id,
            label: Label::parse("demo app")?,
            relays: vec![],
            expires_at: None,
        })
        .await?;
    let app = Caller::Authorization(auth.id);

    let note = custody
        .sign_event(
            app,
            EventTemplate::new(Kind::TextNote, "hello from keycast"),
        )
        .await?;
    note.verify().map_err(|e| Error::Internal(e.to_string()))?;
    println!("signed kind-1 event {}", note.id);

    match custody
        .sign_event(app, EventTemplate::new(Kind::Metadata, "{}"))
        .await
    {
        Err(Error::Denied(reason)) => println!("kind 0 refused as expected: {reason}"),
        other => {
            return Err(Error::Internal(format!(
                "expected a refusal, got {other:?}"
            )))
        }
    }

    let peer: PublicKey = key.pubkey;
    let ct = custody
        .nip44_encrypt(app, peer, "note to self".into())
        .await?;
    println!("nip44 to self: {} bytes of ciphertext", ct.len());
    Ok(())
}
