//! Run with cargo run -p example-cli-signer
//!
//! A command-line signer over a local SQLite store: the Nostr key is sealed in a SQLite
//! file under a master-key file in the same directory, and each run opens both, signs and
//! exits, as a shell tool would.
//!
//! ```sh
//! cargo run -p example-cli-signer -- init ~/.my-signer          # prints the npub
//! cargo run -p example-cli-signer -- sign ~/.my-signer 'hello'  # prints the signed event
//! cargo run -p example-cli-signer -- pubkey ~/.my-signer
//! ```
//!
//! Without arguments it runs all three in a temporary directory and checks the result.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use keycast_core::nostr::{Event, JsonUtil, Kind, ToBech32};
use keycast_core::{
    Caller, Custody, Error, EventTemplate, Holder, KeyKind, KeyStore, Label, NewKey, Tenant,
    TenantName,
};
use keycast_kms::LocalKeyManager;
use keycast_storage::SqliteStore;

type Fallible<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// The store and engine for the signer in `dir` (created 0700 on first use).
async fn open(dir: &Path) -> Fallible<(SqliteStore, Custody)> {
    std::fs::create_dir_all(dir)?;
    let store = SqliteStore::open(dir.join("signer.db")).await?;
    store.migrate().await?;
    let master = Arc::new(LocalKeyManager::open_or_create(dir.join("master.key"))?);
    let custody = Custody::builder(Arc::new(store.clone()), master).build()?;
    Ok((store, custody))
}

/// The one key this signer holds.
async fn the_key(store: &SqliteStore) -> Fallible<keycast_core::StoredKey> {
    let tenant = store.list_keys(tenant_id(), None).await?;
    tenant
        .into_iter()
        .next()
        .ok_or_else(|| "no key here yet: run `init` first".into())
}

/// A fixed tenant: this tool has exactly one.
fn tenant_id() -> keycast_core::TenantId {
    keycast_core::TenantId::from_uuid(uuid::Uuid::from_u128(1))
}

async fn init(dir: &Path) -> Fallible<String> {
    let (store, custody) = open(dir).await?;
    if let Ok(key) = the_key(&store).await {
        return Err(format!(
            "{} already holds {}",
            dir.display(),
            key.pubkey.to_bech32()?
        )
        .into());
    }
    let mut tenant = Tenant::new(TenantName::parse("cli")?);
    tenant.id = tenant_id();
    store.create_tenant(&tenant).await?;
    let key = custody
        .create_key(NewKey::generate(
            tenant.id,
            Holder::Service,
            KeyKind::User,
            Label::parse("cli")?,
        ))
        .await?;
    Ok(key.pubkey.to_bech32()?)
}

async fn sign(dir: &Path, content: &str) -> Fallible<Event> {
    let (store, custody) = open(dir).await?;
    let key = the_key(&store).await?;
    // The owner signs directly: this tool's user is whoever can read the directory.
    let event = custody
        .sign_event(
            Caller::Owner(key.id),
            EventTemplate::new(Kind::TextNote, content),
        )
        .await?;
    Ok(event)
}

async fn pubkey(dir: &Path) -> Fallible<String> {
    let (store, _) = open(dir).await?;
    Ok(the_key(&store).await?.pubkey.to_bech32()?)
}

async fn demo() -> Fallible<()> {
    let dir = std::env::temp_dir().join(format!("keycast-cli-signer-{}", std::process::id()));
    let npub = init(&dir).await?;
    println!("init: {npub}");
    // Each step reopens the store and master key, as separate runs would.
    let event = sign(&dir, "signed from the command line").await?;
    event.verify().map_err(|e| Error::Internal(e.to_string()))?;
    println!("sign: {}", event.as_json());
    assert_eq!(pubkey(&dir).await?, npub);
    assert_eq!(event.pubkey.to_bech32()?, npub);
    assert!(init(&dir).await.is_err(), "a second init must refuse");
    println!("pubkey: {npub}");
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

#[tokio::main]
async fn main() -> Fallible<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let dir = |i: usize| {
        args.get(i)
            .map(PathBuf::from)
            .ok_or("missing the signer directory")
    };
    let out = match args.first().map(String::as_str) {
        None => return demo().await,
        Some("init") => init(&dir(1)?).await?,
        Some("sign") => {
            let content = args.get(2).ok_or("missing the note's content")?;
            sign(&dir(1)?, content).await?.as_json()
        }
        Some("pubkey") => pubkey(&dir(1)?).await?,
        Some(other) => {
            return Err(format!("unknown command {other:?}: use init, sign or pubkey").into())
        }
    };
    println!("{out}");
    Ok(())
}
