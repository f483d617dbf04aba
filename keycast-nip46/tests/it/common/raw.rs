//! A raw NIP-46 client for tests that need hand-made requests.

use std::time::Duration;

use keycast_core::nostr::nips::{nip04, nip44};
use keycast_core::nostr::{Event, EventBuilder, Filter, Keys, Kind, PublicKey, Tag, Timestamp};
use nostr_sdk::prelude::{Client, RelayPoolNotification};

/// A raw NIP-46 client: sends hand-made requests and reads the bunker's replies.
pub struct RawClient {
    pub keys: Keys,
    pub client: Client,
    pub bunker: PublicKey,
    pub replies: tokio::sync::broadcast::Receiver<RelayPoolNotification>,
}

impl RawClient {
    pub async fn new(url: &keycast_core::nostr::RelayUrl, bunker: PublicKey) -> Self {
        Self::with_keys(url, bunker, Keys::generate()).await
    }

    pub async fn with_keys(
        url: &keycast_core::nostr::RelayUrl,
        bunker: PublicKey,
        keys: Keys,
    ) -> Self {
        let client = Client::default();
        client.add_relay(url.clone()).await.expect("relay");
        client.connect().await;
        let replies = client.notifications();
        let filter = Filter::new()
            .kind(Kind::NostrConnect)
            .pubkey(keys.public_key());
        client.subscribe(filter, None).await.expect("subscribe");
        Self {
            keys,
            client,
            bunker,
            replies,
        }
    }

    pub fn request(&self, json: &str, created_at: Timestamp, nip04_scheme: bool) -> Event {
        let content = if nip04_scheme {
            nip04::encrypt(self.keys.secret_key(), &self.bunker, json).expect("nip04")
        } else {
            nip44::encrypt(
                self.keys.secret_key(),
                &self.bunker,
                json,
                nip44::Version::V2,
            )
            .expect("nip44")
        };
        EventBuilder::new(Kind::NostrConnect, content)
            .tag(Tag::public_key(self.bunker))
            .custom_created_at(created_at)
            .sign_with_keys(&self.keys)
            .expect("sign")
    }

    pub async fn send(&self, event: &Event) {
        self.client
            .send_event(event)
            .await
            .expect("relay accepts the request");
    }

    /// The next reply's JSON and whether it came back as NIP-04, or `None` on timeout.
    pub async fn reply(&mut self, wait: Duration) -> Option<(serde_json::Value, bool)> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let n = tokio::time::timeout_at(deadline, self.replies.recv())
                .await
                .ok()?
                .ok()?;
            if let RelayPoolNotification::Event { event, .. } = n {
                if event.pubkey != self.bunker {
                    continue;
                }
                let legacy = event.content.contains("?iv=");
                let plain = if legacy {
                    nip04::decrypt(self.keys.secret_key(), &self.bunker, &event.content)
                        .expect("nip04 reply")
                } else {
                    nip44::decrypt(self.keys.secret_key(), &self.bunker, &event.content)
                        .expect("nip44 reply")
                };
                return Some((serde_json::from_str(&plain).expect("reply json"), legacy));
            }
        }
    }
}
