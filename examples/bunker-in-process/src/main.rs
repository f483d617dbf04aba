//! Run with cargo run -p example-bunker-in-process
//!
//! A single-user NIP-46 bunker inside an app: the key is sealed under a local master-key
//! file and served on the relays in `KEYCAST_RELAYS` (comma-separated). Without that
//! variable it runs its own in-process relay, signs one event through rust-nostr's NIP-46
//! client to show the round trip, and exits.

use std::sync::Arc;
use std::time::Duration;

use keycast_core::nostr::{EventBuilder, Keys, NostrSigner, RelayUrl};
use keycast_kms::LocalKeyManager;
use keycast_nip46::SingleUserBunker;
use nostr_connect::prelude::{NostrConnect, NostrConnectURI};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let relays: Vec<RelayUrl> = match std::env::var("KEYCAST_RELAYS") {
        Ok(list) => list
            .split(',')
            .map(|r| RelayUrl::parse(r.trim()))
            .collect::<Result<_, _>>()?,
        Err(_) => Vec::new(),
    };
    let demo = relays.is_empty();
    let relay = nostr_relay_builder::MockRelay::run().await?;
    let relays = if demo {
        vec![relay.url().await]
    } else {
        relays
    };

    // The master key lives in a file only this user can read; the Nostr key is sealed by it.
    let master = std::env::temp_dir().join(format!("keycast-example-{}.key", std::process::id()));
    let key_manager = Arc::new(LocalKeyManager::open_or_create(&master)?);
    let user_key = Keys::generate();
    let served =
        SingleUserBunker::start(user_key.secret_key().clone(), key_manager, relays).await?;
    println!("bunker URI: {}", served.uri);

    if demo {
        let app = NostrConnect::new(
            NostrConnectURI::parse(&served.uri)?,
            Keys::generate(),
            Duration::from_secs(10),
            None,
        )?;
        let unsigned = EventBuilder::text_note("signed by an in-process keycast bunker")
            .build(user_key.public_key());
        let event = app.sign_event(unsigned).await?;
        event.verify()?;
        println!("signed event {} as {}", event.id, event.pubkey);
        app.shutdown().await;
    } else {
        println!("serving; press Ctrl-C to stop");
        tokio::signal::ctrl_c().await?;
    }
    served.bunker.shutdown().await;
    std::fs::remove_file(&master)?;
    Ok(())
}
