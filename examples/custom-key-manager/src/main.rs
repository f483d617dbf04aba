//! Run with cargo run -p example-custom-key-manager
//!
//! A custom `KeyManager`: the master key is derived from a passphrase (Argon2id with a
//! stored salt) each time the process starts, so it never rests on disk. It wraps data
//! keys with XChaCha20-Poly1305 and binds the caller's AAD, as every key manager must.
//! keycast-core's conformance suite (`keycast_core::testing::key_manager`, feature
//! `testing`) checks that it keeps the trait's promises; then the engine uses it.

use std::sync::Arc;

use async_trait::async_trait;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use keycast_core::nostr::Kind;
use keycast_core::Secret32;
use keycast_core::*;
use keycast_core::{ensure_can_unwrap, fingerprint};
use rand::RngCore;
use zeroize::Zeroizing;

/// Provider name written into every envelope this manager wraps.
const PROVIDER: &str = "passphrase";

/// The master key, derived from a passphrase; wiped on drop, never printed.
struct PassphraseKeyManager {
    kek: Secret32,
    id: KekRef,
}

impl std::fmt::Debug for PassphraseKeyManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PassphraseKeyManager")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl PassphraseKeyManager {
    /// Derives the master key. `salt` is stored next to the database (it is not secret);
    /// the cost parameters are Argon2id's defaults (19 MiB, 2 passes).
    fn derive(passphrase: &str, salt: &[u8; 16]) -> Result<Self> {
        let mut kek = Zeroizing::new([0u8; 32]);
        argon2::Argon2::default()
            .hash_password_into(passphrase.as_bytes(), salt, kek.as_mut())
            .map_err(|e| Error::KeyManager(format!("argon2: {e}")))?;
        // The key id is the key's fingerprint: a wrong passphrase is a different key,
        // and is refused as one instead of failing authentication row by row.
        let id = KekRef {
            provider: PROVIDER.into(),
            key_id: fingerprint(&kek),
            version: 1,
        };
        Ok(Self { kek, id })
    }
}

#[async_trait]
impl KeyManager for PassphraseKeyManager {
    fn id(&self) -> &KekRef {
        &self.id
    }

    async fn wrap(&self, dek: &Secret32, aad: &[u8]) -> Result<Wrapped> {
        let mut nonce = [0u8; 24];
        rand::thread_rng().fill_bytes(&mut nonce);
        let cipher = XChaCha20Poly1305::new(self.kek.as_ref().into());
        let sealed = cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: dek.as_ref(),
                    aad,
                },
            )
            .map_err(|_| Error::KeyManager("wrap failed".into()))?;
        Ok(Wrapped {
            kek: self.id.clone(),
            blob: [nonce.as_slice(), &sealed].concat(),
        })
    }

    async fn unwrap(&self, wrapped: &Wrapped, aad: &[u8]) -> Result<Secret32> {
        ensure_can_unwrap(self, wrapped)?;
        if wrapped.blob.len() != 24 + 32 + 16 {
            return Err(Error::Envelope("wrapped key has the wrong length".into()));
        }
        let (nonce, sealed) = wrapped.blob.split_at(24);
        let cipher = XChaCha20Poly1305::new(self.kek.as_ref().into());
        let dek = Zeroizing::new(
            cipher
                .decrypt(XNonce::from_slice(nonce), Payload { msg: sealed, aad })
                .map_err(|_| Error::Envelope("wrapped key does not open under this AAD".into()))?,
        );
        let mut out = Zeroizing::new([0u8; 32]);
        out.copy_from_slice(&dek); // 72-byte blob: 24 nonce + 32 key + 16 tag
        Ok(out)
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let salt: [u8; 16] = rand::random();
    let km = Arc::new(PassphraseKeyManager::derive(
        "correct horse battery staple",
        &salt,
    )?);
    keycast_core::testing::key_manager::run(km.clone()).await;
    println!("conformance: the passphrase key manager keeps every KeyManager promise");

    // The engine on top of it: a key sealed under the passphrase, and a signature.
    let store = Arc::new(MemoryKeyStore::new());
    let tenant = Tenant::new(TenantName::parse("example")?);
    store.create_tenant(&tenant).await?;
    let custody = Custody::builder(store.clone(), km).build()?;
    let key = custody
        .create_key(NewKey::generate(
            tenant.id,
            Holder::Service,
            KeyKind::User,
            Label::parse("main")?,
        ))
        .await?;
    let note = custody
        .sign_event(
            Caller::Owner(key.id),
            EventTemplate::new(Kind::TextNote, "sealed by a passphrase"),
        )
        .await?;
    println!(
        "signed {} with a key sealed under a passphrase-derived master key",
        note.id
    );

    // A restart with the right passphrase opens it; a wrong one is a different key.
    let again = Arc::new(PassphraseKeyManager::derive(
        "correct horse battery staple",
        &salt,
    )?);
    let restarted = Custody::builder(store.clone(), again).build()?;
    assert_eq!(restarted.public_key_of(key.id).await?, key.pubkey);
    let wrong = Arc::new(PassphraseKeyManager::derive("Tr0ub4dor&3", &salt)?);
    let refused = Custody::builder(store, wrong).build()?;
    match refused.public_key_of(key.id).await {
        Err(e) => println!("a wrong passphrase is refused: {e}"),
        Ok(_) => return Err(Error::Internal("a wrong passphrase opened the key".into())),
    }
    Ok(())
}
