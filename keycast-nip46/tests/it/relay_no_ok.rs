//! The bunker through nostr-rs-relay 0.8.12, with its default limits.
//!
//! It never sends `OK` for ephemeral events (kinds 20000–29999, so for every NIP-46
//! request and reply): it only broadcasts them to subscribers. Requests must still be
//! answered without stalling. And it caps a connection at 32 subscriptions and a message
//! at its `max_ws_message_bytes`: 20,000 active authorizations must still all be heard.
//!
//! Found by hand: kinds 24133 and 20001 get neither `OK` nor `NOTICE` (waited 5 s), kind 1
//! gets `OK`. The test checks it again rather than assuming it: an ephemeral event followed
//! by a kind-1 event on one connection gets only the kind-1 `OK` (the relay writes events in
//! order, so a kind-24133 `OK` would have come first). rust-nostr's `NostrConnect` client
//! waits for the `OK` of each request it sends: here its `get_public_key` failed with a
//! timeout after 30 s although the bunker had answered, so the raw client below publishes
//! without waiting.
//!
//! Needs `KEYCAST_TEST_NOSTR_RS_RELAY_BIN` (scripts/test installs the relay and sets it).
//! Without it the test prints that it was skipped.

use crate::common;

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use keycast_core::nostr::nips::nip44;
use keycast_core::nostr::{
    Event, EventBuilder, EventId, Filter, JsonUtil, Keys, Kind, PublicKey, RelayUrl, Tag,
};
use keycast_core::AuthorizationId;
use keycast_nip46::BunkerUri;
use keycast_test_support::eventually;
use nostr_sdk::prelude::{Client, ClientMessage, RelayMessage, RelayPoolNotification};

/// Per request, and for the relay to come up; generous for a loaded 2-core machine.
const WAIT: Duration = Duration::from_secs(10);
const SIGN_REQUESTS: usize = 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_are_answered_through_a_relay_that_never_sends_ok_for_them() {
    let Some(bin) = relay_bin() else { return };
    let relay = Relay::start(&bin, "").await;

    // The premise: kind-1 events get an OK, kind-24133 events none.
    let mut probe = RawClient::new(&relay.url, Keys::generate().public_key()).await;
    let ephemeral = probe.request(r#"{"id":"probe","method":"ping","params":[]}"#);
    let note = EventBuilder::text_note("probe")
        .sign_with_keys(&probe.keys)
        .expect("sign");
    probe.send(&ephemeral).await;
    probe.send(&note).await;
    let oks = probe.oks_until(note.id).await;
    assert!(
        !oks.contains(&ephemeral.id),
        "nostr-rs-relay sent OK for kind 24133; this test would prove nothing"
    );
    probe.client.shutdown().await;

    let s = common::setup_on(relay.url.clone()).await;
    eventually(Duration::from_secs(30), "the bunker connected", || async {
        s.bunker.connected_relays().await > 0
    })
    .await;
    let mut c = RawClient::new(&relay.url, s.bunker_pubkey).await;

    let connect = serde_json::json!({
        "id": "c", "method": "connect", "params": [s.bunker_pubkey.to_hex(), s.secret],
    });
    c.send(&c.request(&connect.to_string())).await;
    assert_eq!(c.reply("c").await["result"], "ack");
    c.send(&c.request(r#"{"id":"pk","method":"get_public_key","params":[]}"#))
        .await;
    assert_eq!(c.reply("pk").await["result"], s.user.to_hex());

    // All at once, so a worker held up waiting for an OK would delay the rest.
    for i in 0..SIGN_REQUESTS {
        let template = serde_json::json!({
            "kind": 1, "content": format!("note {i}"), "tags": [], "created_at": 1_700_000_000,
        });
        let req = serde_json::json!({
            "id": format!("s{i}"), "method": "sign_event", "params": [template.to_string()],
        });
        c.send(&c.request(&req.to_string())).await;
    }
    for i in 0..SIGN_REQUESTS {
        let reply = c.reply(&format!("s{i}")).await;
        let signed = reply["result"]
            .as_str()
            .unwrap_or_else(|| panic!("{reply}"));
        let event = Event::from_json(signed).expect("signed event");
        event.verify().expect("signature verifies");
        assert_eq!(event.pubkey, s.user);
        assert_eq!(event.content, format!("note {i}"));
    }

    // `processed` is bumped just after the reply is handed to the relay.
    let expected = 2 + SIGN_REQUESTS as u64;
    eventually(WAIT, "every request processed", || async {
        s.bunker.stats().processed >= expected
    })
    .await;
    let stats = s.bunker.stats();
    assert_eq!(stats.processed, expected, "{stats:?}");
    assert_eq!(stats.replies_refused, 0, "{stats:?}");
    c.client.shutdown().await;
    s.bunker.shutdown().await;
}

/// Active authorizations in the scale test, and how many of them clients connect to.
const SCALE: usize = 20_000;
const SAMPLED: usize = 200;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_thousand_authorizations_are_all_heard_through_real_relay_limits() {
    let Some(bin) = relay_bin() else { return };
    // Its defaults, then strfry's default message cap.
    for limits in [
        "",
        "max_ws_message_bytes = 131072\nmax_ws_frame_bytes = 131072",
    ] {
        let relay = Relay::start(&bin, limits).await;
        let s = common::setup_on(relay.url.clone()).await;
        // The setup's authorization is the oldest; the rest are stored before the bunker
        // compares again, as at a start: a random SAMPLED - 2 of them real (their bunker
        // keys held by the engine), the others stored rows with fresh bunker keys.
        let mut rng = rand::thread_rng();
        let real: std::collections::BTreeSet<usize> =
            rand::seq::index::sample(&mut rng, SCALE - 2, SAMPLED - 2)
                .into_iter()
                .map(|i| i + 1)
                .collect();
        let mut sampled = vec![(s.bunker_pubkey, s.secret.clone())];
        for i in 1..SCALE - 1 {
            if real.contains(&i) {
                sampled.push(real_authorization(&s).await.1);
            } else {
                common::store_authorization(&s).await;
            }
        }
        s.bunker.refresh_subscription().await.expect("refresh");
        // The newest, made while the bunker runs: heard once `cover` returns.
        let (newest, uri) = real_authorization(&s).await;
        assert!(s.bunker.cover(newest).await.expect("cover"), "{limits}");
        sampled.push(uri);
        let stats = s.bunker.stats();
        assert_eq!(
            stats.subscribed_authorizations, SCALE,
            "{limits}: {stats:?}"
        );

        // Every sampled authorization answers a connect.
        let mut c = ManyClients::new(&relay.url, &sampled).await;
        c.connect_all().await;
        let stats = s.bunker.stats();
        assert_eq!(stats.reqs_refused, 0, "{limits}: {stats:?}");
        // 20,000 keys at about 480 a REQ, 20 REQs a connection: three connections.
        assert_eq!(stats.extra_lanes, 2, "{limits}: {stats:?}");
        c.client.shutdown().await;
        s.bunker.shutdown().await;
    }
}

/// A real authorization on the setup's key: its id, and its bunker key and secret.
async fn real_authorization(s: &common::Setup) -> (AuthorizationId, (PublicKey, String)) {
    let extra = common::add_authorization(s).await;
    let uri = BunkerUri::parse(&extra.uri).expect("uri");
    (extra.id, (uri.signer, uri.secret.expect("secret")))
}

/// One connection, one client key per bunker: sends every `connect` at once and waits for
/// every answer.
struct ManyClients {
    client: Client,
    url: RelayUrl,
    /// Per client key: its keys, the bunker and the connect secret.
    clients: HashMap<PublicKey, (Keys, PublicKey, String)>,
    notifications: tokio::sync::broadcast::Receiver<RelayPoolNotification>,
}

impl ManyClients {
    async fn new(url: &RelayUrl, bunkers: &[(PublicKey, String)]) -> Self {
        let client = Client::default();
        client.add_relay(url.clone()).await.expect("relay");
        client.connect().await;
        client.wait_for_connection(WAIT).await;
        let notifications = client.notifications();
        let clients: HashMap<PublicKey, (Keys, PublicKey, String)> = bunkers
            .iter()
            .map(|(bunker, secret)| {
                let keys = Keys::generate();
                (keys.public_key(), (keys, *bunker, secret.clone()))
            })
            .collect();
        let filter = Filter::new()
            .kind(Kind::NostrConnect)
            .pubkeys(clients.keys().copied());
        client.subscribe(filter, None).await.expect("subscribe");
        Self {
            client,
            url: url.clone(),
            clients,
            notifications,
        }
    }

    async fn connect_all(&mut self) {
        for (keys, bunker, secret) in self.clients.values() {
            let json = serde_json::json!({
                "id": keys.public_key().to_hex(), "method": "connect",
                "params": [bunker.to_hex(), secret],
            });
            let content = nip44::encrypt(
                keys.secret_key(),
                bunker,
                json.to_string(),
                nip44::Version::V2,
            )
            .expect("nip44");
            let event = EventBuilder::new(Kind::NostrConnect, content)
                .tag(Tag::public_key(*bunker))
                .sign_with_keys(keys)
                .expect("sign");
            self.client
                .send_msg_to([self.url.clone()], ClientMessage::event(event))
                .await
                .expect("sent to the relay");
        }
        let mut waiting: std::collections::BTreeSet<PublicKey> =
            self.clients.keys().copied().collect();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while !waiting.is_empty() {
            let next = tokio::time::timeout_at(deadline, self.notifications.recv()).await;
            let Ok(Ok(RelayPoolNotification::Event { event, .. })) = next else {
                assert!(
                    next.is_ok(),
                    "{} of {} connects unanswered",
                    waiting.len(),
                    self.clients.len()
                );
                continue;
            };
            let Some(to) = event.tags.public_keys().next().copied() else {
                continue;
            };
            let Some((keys, bunker, _)) = self.clients.get(&to) else {
                continue;
            };
            assert_eq!(&event.pubkey, bunker);
            let plain =
                nip44::decrypt(keys.secret_key(), bunker, &event.content).expect("nip44 reply");
            let reply: serde_json::Value = serde_json::from_str(&plain).expect("reply json");
            assert_eq!(reply["result"], "ack", "{reply}");
            waiting.remove(&to);
        }
    }
}

/// A nostr-rs-relay 0.8.12 binary (scripts/test installs it).
fn relay_bin() -> Option<PathBuf> {
    keycast_test_support::require_service("KEYCAST_TEST_NOSTR_RS_RELAY_BIN").map(PathBuf::from)
}

/// A nostr-rs-relay process on a free port, with its config and database in a temp dir
/// that is removed on drop (after the process is killed).
struct Relay {
    url: RelayUrl,
    process: tokio::process::Child,
    dir: PathBuf,
}

impl Relay {
    /// Runs the relay with `limits` as its `[limits]` section (empty: its defaults).
    ///
    /// nostr-rs-relay takes a port number from its config and cannot be handed a socket or
    /// report a port it picked, so it gets one that was free a moment ago.
    async fn start(bin: &std::path::Path, limits: &str) -> Self {
        let port = keycast_test_support::closed_port();
        let dir = std::env::temp_dir().join(format!(
            "keycast-nostr-rs-relay-{}-{port}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        // Defaults leave rate limits off; only where it runs and stores is set.
        let config = format!(
            "[database]\ndata_directory = {data:?}\n\n\
             [network]\naddress = \"127.0.0.1\"\nport = {port}\n\n[limits]\n{limits}\n",
            data = dir.display().to_string(),
        );
        std::fs::write(dir.join("config.toml"), config).expect("config");
        let log = std::fs::File::create(dir.join("relay.log")).expect("log");
        let process = tokio::process::Command::new(bin)
            .arg("--config")
            .arg(dir.join("config.toml"))
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", bin.display()));
        let relay = Self {
            url: RelayUrl::parse(&format!("ws://127.0.0.1:{port}")).expect("url"),
            process,
            dir,
        };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            assert!(
                tokio::time::Instant::now() < deadline,
                "nostr-rs-relay did not listen on {port}; log: {}",
                std::fs::read_to_string(relay.dir.join("relay.log")).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        relay
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        // Kill before removing the database it has open (kill_on_drop alone runs later).
        let _ = self.process.start_kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A NIP-46 client that publishes without waiting for `OK` and collects replies by id.
struct RawClient {
    keys: Keys,
    client: Client,
    bunker: PublicKey,
    notifications: tokio::sync::broadcast::Receiver<RelayPoolNotification>,
    url: RelayUrl,
    replies: HashMap<String, serde_json::Value>,
}

impl RawClient {
    async fn new(url: &RelayUrl, bunker: PublicKey) -> Self {
        let keys = Keys::generate();
        let client = Client::default();
        client.add_relay(url.clone()).await.expect("relay");
        client.connect().await;
        client.wait_for_connection(WAIT).await;
        let notifications = client.notifications();
        let filter = Filter::new()
            .kind(Kind::NostrConnect)
            .pubkey(keys.public_key());
        client.subscribe(filter, None).await.expect("subscribe");
        Self {
            keys,
            client,
            bunker,
            notifications,
            url: url.clone(),
            replies: HashMap::new(),
        }
    }

    fn request(&self, json: &str) -> Event {
        let content = nip44::encrypt(
            self.keys.secret_key(),
            &self.bunker,
            json,
            nip44::Version::V2,
        )
        .expect("nip44");
        EventBuilder::new(Kind::NostrConnect, content)
            .tag(Tag::public_key(self.bunker))
            .sign_with_keys(&self.keys)
            .expect("sign")
    }

    async fn send(&self, event: &Event) {
        self.client
            .send_msg_to([self.url.clone()], ClientMessage::event(event.clone()))
            .await
            .expect("sent to the relay");
    }

    async fn next(&mut self, deadline: tokio::time::Instant, what: &str) -> RelayPoolNotification {
        tokio::time::timeout_at(deadline, self.notifications.recv())
            .await
            .unwrap_or_else(|_| panic!("no {what} within {WAIT:?}"))
            .expect("notifications open")
    }

    /// The ids of the `OK`s received up to and including the one for `last`.
    async fn oks_until(&mut self, last: EventId) -> Vec<EventId> {
        let deadline = tokio::time::Instant::now() + WAIT;
        let mut oks = Vec::new();
        loop {
            if let RelayPoolNotification::Message {
                message: RelayMessage::Ok { event_id, .. },
                ..
            } = self.next(deadline, "OK for a kind-1 event").await
            {
                oks.push(event_id);
                if event_id == last {
                    return oks;
                }
            }
        }
    }

    /// The decrypted reply with `id`, waiting at most [`WAIT`] from now.
    async fn reply(&mut self, id: &str) -> serde_json::Value {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            if let Some(reply) = self.replies.remove(id) {
                return reply;
            }
            let what = format!("reply to {id}");
            let RelayPoolNotification::Event { event, .. } = self.next(deadline, &what).await
            else {
                continue;
            };
            if event.pubkey != self.bunker {
                continue;
            }
            let plain = nip44::decrypt(self.keys.secret_key(), &self.bunker, &event.content)
                .expect("nip44 reply");
            let reply: serde_json::Value = serde_json::from_str(&plain).expect("reply json");
            let key = reply["id"].as_str().expect("reply id").to_owned();
            self.replies.insert(key, reply);
        }
    }
}
