//! A single-user bunker in a few lines, for apps that embed keycast.

use std::sync::Arc;

use keycast_core::nostr::{RelayUrl, SecretKey};
use keycast_core::{
    Custody, Holder, KeyKind, KeyManager, KeyStore, Label, MemoryKeyStore, NewAuthorization,
    NewKey, Permission, Policy, Tenant, TenantName, User, Username,
};

use crate::protocol::uri::BunkerUri;
use crate::service::{Bunker, BunkerConfig};
use crate::Result;

/// A running bunker for one key, with everything kept in memory except the key manager
/// (bring a [`keycast_core::KeyManager`], e.g. a local master-key file).
#[derive(Debug)]
pub struct SingleUserBunker {
    /// The service; shut it down when done.
    pub bunker: Bunker,
    /// The engine, for direct use by the embedding app.
    pub custody: Custody,
    /// Give this to the app that should sign: `bunker://…?relay=…&secret=…`.
    pub uri: String,
}

impl SingleUserBunker {
    /// Stores `secret` (sealed under `key_manager`), authorizes one app with full access
    /// and starts serving it on `relays`.
    pub async fn start(
        secret: SecretKey,
        key_manager: Arc<dyn KeyManager>,
        relays: Vec<RelayUrl>,
    ) -> Result<Self> {
        let store = Arc::new(MemoryKeyStore::new());
        let custody = Custody::builder(store.clone(), key_manager).build()?;
        let tenant = Tenant::new(TenantName::parse("local")?);
        store.create_tenant(&tenant).await?;
        let user = User::new(tenant.id, Username::parse("owner")?, None);
        store.create_user(&user).await?;
        let key = custody
            .create_key(
                NewKey::generate(
                    tenant.id,
                    Holder::User(user.id),
                    KeyKind::User,
                    Label::parse("main")?,
                )
                .with_secret(secret),
            )
            .await?;
        let policy = Policy::new(
            tenant.id,
            Label::parse("full access")?,
            vec![Permission::FullAccess],
        )?;
        store.insert_policy(&policy).await?;
        let (auth, connect_secret) = custody
            .create_authorization(NewAuthorization {
                tenant_id: tenant.id,
                user_id: user.id,
                key_id: key.id,
                policy_id: policy.id,
                label: Label::parse("app")?,
                relays: relays.clone(),
                expires_at: None,
            })
            .await?;
        let uri = BunkerUri {
            signer: auth.bunker_pubkey,
            relays: relays.clone(),
            secret: Some(connect_secret.expose().to_owned()),
        }
        .to_uri()?;
        let bunker = Bunker::start(custody.clone(), BunkerConfig::new(relays)).await?;
        Ok(Self {
            bunker,
            custody,
            uri,
        })
    }
}
