//! The floor of a NIP-46 request (issue 21): what a perfect bunker with no I/O, no queues
//! and no threads must still spend on one request, measured with nostr 0.44 in a tight loop
//! on one thread. Shared by `nip46_floor` (the floor alone) and `hot_path` (the floor in
//! the same run as the server it is compared with).
//!
//! Per request, from the relay's frame to the reply's frame:
//! 1. parse the relay message (`["EVENT", sub, event]`);
//! 2. verify the request event's id and signature;
//! 3. NIP-44 decrypt its content with a cached conversation key;
//! 4. parse the NIP-46 request (and, for `sign_event`, its event template);
//! 5. do the work: build and sign the user's event (`sign_event`), or NIP-44 encrypt to the
//!    named peer with a cached conversation key (`nip44_encrypt`);
//! 6. NIP-44 encrypt the reply;
//! 7. build and sign the reply event;
//! 8. serialize the `["EVENT", reply]` frame.
//!
//! The frames are made before the clock starts (each request distinct, as a client's would
//! be). Time is this thread's CPU time (`CLOCK_THREAD_CPUTIME_ID`), so other load on the
//! box does not count.

use std::time::Duration;

use nostr::base64::engine::general_purpose::STANDARD as BASE64;
use nostr::base64::Engine;
use nostr::nips::nip44::v2::{self, ConversationKey};
use nostr::{
    ClientMessage, Event, EventBuilder, JsonUtil, Keys, Kind, PublicKey, RelayMessage, Tag,
    Timestamp,
};
use serde::Deserialize;

/// A NIP-46 request as it comes out of the decrypted content.
#[derive(Deserialize)]
struct Request {
    id: String,
    method: String,
    params: Vec<String>,
}

/// A `sign_event` template.
#[derive(Deserialize)]
struct Template {
    kind: u16,
    content: String,
    tags: Vec<Vec<String>>,
    created_at: u64,
}

/// The two requests the floor is measured for.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Method {
    /// Sign a kind 1 note with the user's key.
    SignEvent,
    /// Encrypt a message to a peer with NIP-44.
    Nip44Encrypt,
}

/// Everything a bunker holds warm: its key, the user's key, the conversation keys.
struct Bunker {
    bunker: Keys,
    user: Keys,
    /// With the client (requests and replies).
    client_ck: ConversationKey,
    /// With the peer a `nip44_encrypt` names.
    peer_ck: ConversationKey,
}

fn encrypt(ck: &ConversationKey, plaintext: &str) -> String {
    BASE64.encode(v2::encrypt_to_bytes(ck, plaintext.as_bytes()).expect("encrypt"))
}

fn decrypt(ck: &ConversationKey, payload: &str) -> String {
    let bytes = BASE64.decode(payload).expect("base64");
    String::from_utf8(v2::decrypt_to_bytes(ck, &bytes).expect("decrypt")).expect("utf-8")
}

/// The client's request frames, as a relay would send them.
fn frames(
    client: &Keys,
    bunker: &PublicKey,
    peer: &PublicKey,
    method: Method,
    requests: usize,
) -> Vec<String> {
    let ck = ConversationKey::derive(client.secret_key(), bunker).expect("conversation key");
    (0..requests)
        .map(|i| {
            let (name, params) = match method {
                Method::SignEvent => {
                    let template = serde_json::json!({
                        "kind": 1,
                        "content": format!("note number {i} from the floor bench"),
                        "tags": [["t", "keycast"]],
                        "created_at": 1_700_000_000 + i,
                    });
                    ("sign_event", vec![template.to_string()])
                }
                Method::Nip44Encrypt => (
                    "nip44_encrypt",
                    vec![peer.to_hex(), format!("secret message number {i}")],
                ),
            };
            let request =
                serde_json::json!({"id": format!("req-{i}"), "method": name, "params": params});
            let event = EventBuilder::new(Kind::NostrConnect, encrypt(&ck, &request.to_string()))
                .tag(Tag::public_key(*bunker))
                .sign_with_keys(client)
                .expect("sign request");
            RelayMessage::event(nostr::SubscriptionId::new("keycast-0"), event).as_json()
        })
        .collect()
}

/// One request, frame in, frame out: the floor's steps 1–8.
fn answer(b: &Bunker, frame: &str) -> String {
    let RelayMessage::Event { event, .. } = RelayMessage::from_json(frame).expect("relay message")
    else {
        panic!("not an EVENT frame");
    };
    let event: Event = event.into_owned();
    event.verify().expect("request signature");
    let request: Request =
        serde_json::from_str(&decrypt(&b.client_ck, &event.content)).expect("request");
    let result = match request.method.as_str() {
        "sign_event" => {
            let t: Template = serde_json::from_str(&request.params[0]).expect("template");
            let tags = t
                .tags
                .iter()
                .map(|tag| Tag::parse(tag).expect("tag"))
                .collect::<Vec<_>>();
            EventBuilder::new(Kind::from(t.kind), t.content)
                .tags(tags)
                .custom_created_at(Timestamp::from(t.created_at))
                .sign_with_keys(&b.user)
                .expect("sign")
                .as_json()
        }
        "nip44_encrypt" => encrypt(&b.peer_ck, &request.params[1]),
        other => panic!("unexpected method {other}"),
    };
    let reply = serde_json::json!({"id": request.id, "result": result}).to_string();
    let reply = EventBuilder::new(Kind::NostrConnect, encrypt(&b.client_ck, &reply))
        .tag(Tag::public_key(event.pubkey))
        .sign_with_keys(&b.bunker)
        .expect("sign reply");
    ClientMessage::event(reply).as_json()
}

/// Median CPU time per request over the rounds.
fn per_request(b: &Bunker, frames: &[String], rounds: usize) -> Duration {
    let mut times: Vec<Duration> = (0..rounds)
        .map(|_| {
            let start = crate::thread_cpu();
            for f in frames {
                std::hint::black_box(answer(b, std::hint::black_box(f)));
            }
            (crate::thread_cpu() - start) / u32::try_from(frames.len()).unwrap_or(u32::MAX)
        })
        .collect();
    times.sort();
    times[times.len() / 2]
}

/// Checks that a reply frame carries a correct answer to the request it came from.
fn check(b: &Bunker, client: &Keys, method: Method, reply: &str) {
    let ClientMessage::Event(reply) = ClientMessage::from_json(reply).expect("client message")
    else {
        panic!("not an EVENT frame");
    };
    reply.verify().expect("reply signature");
    assert_eq!(reply.pubkey, b.bunker.public_key());
    let ck = ConversationKey::derive(client.secret_key(), &b.bunker.public_key()).expect("ck");
    let answer: serde_json::Value =
        serde_json::from_str(&decrypt(&ck, &reply.content)).expect("reply json");
    let result = answer["result"].as_str().expect("result");
    match method {
        Method::SignEvent => {
            let signed = Event::from_json(result).expect("signed event");
            signed.verify().expect("user signature");
            assert_eq!(signed.pubkey, b.user.public_key());
        }
        Method::Nip44Encrypt => {
            assert!(decrypt(&b.peer_ck, result).starts_with("secret message number"));
        }
    }
}

impl Method {
    /// The NIP-46 method name.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::SignEvent => "sign_event",
            Self::Nip44Encrypt => "nip44_encrypt",
        }
    }
}

/// A warm bunker (its key, the user's, cached conversation keys) and the client and
/// peer its requests come from and name.
pub struct Floor {
    bunker: Bunker,
    client: Keys,
    peer: Keys,
}

impl std::fmt::Debug for Floor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Floor")
            .field("bunker", &self.bunker.bunker.public_key())
            .field("client", &self.client.public_key())
            .finish_non_exhaustive()
    }
}

impl Default for Floor {
    fn default() -> Self {
        Self::new()
    }
}

impl Floor {
    /// Fresh random keys.
    ///
    /// # Panics
    /// Never in practice: a conversation key of two valid keys always derives.
    #[must_use]
    pub fn new() -> Self {
        let (client, peer, bunker, user) = (
            Keys::generate(),
            Keys::generate(),
            Keys::generate(),
            Keys::generate(),
        );
        let bunker = Bunker {
            client_ck: ConversationKey::derive(bunker.secret_key(), &client.public_key())
                .expect("ck"),
            peer_ck: ConversationKey::derive(user.secret_key(), &peer.public_key()).expect("ck"),
            bunker,
            user,
        };
        Self {
            bunker,
            client,
            peer,
        }
    }

    /// The median over `rounds` of this thread's CPU time per request, answering
    /// `requests` distinct `method` requests per round; the first replies are checked
    /// to be correct answers first.
    ///
    /// # Panics
    /// If a reply is not a correct answer to its request.
    #[must_use]
    pub fn measure(&self, method: Method, requests: usize, rounds: usize) -> Duration {
        let b = &self.bunker;
        let frames = frames(
            &self.client,
            &b.bunker.public_key(),
            &self.peer.public_key(),
            method,
            requests,
        );
        for f in frames.iter().take(3) {
            check(b, &self.client, method, &answer(b, f));
        }
        per_request(b, &frames, rounds)
    }
}
