//! Property tests of the request path with hostile input: arbitrary and multibyte text,
//! oversized content, deep nesting, and well-shaped requests with wrong params.
//!
//! Every input ends one of three ways, never in a panic:
//! - it parses and the handler answers with its id (a result only where one is due);
//! - it does not parse but an id can be read: `Error::reply` answers with that id;
//! - no id can be read (or it is too large to read): nothing to answer, it is dropped.
//!
//! Inputs that crash the cargo-fuzz targets in `fuzz/` belong at the end of this file, as
//! fixed cases (none so far).

use std::sync::{Arc, OnceLock};

use keycast_core::nostr::nips::nip19::ToBech32;
use keycast_core::nostr::nips::{nip04, nip44};
use keycast_core::nostr::{Event, JsonUtil, Keys, PublicKey, RelayUrl};
use keycast_core::testing::fixtures::authorized_key;
use keycast_core::NIP44_MAX_PLAINTEXT;
use keycast_core::{AuthorizationId, Custody, InsecureTestKeyManager, MemoryKeyStore, Permission};
use keycast_nip46::{
    connect_target_ok, Command, Error, Nip46Request, Nip46Response, RequestHandler,
};
use keycast_nip46::{MAX_ID_BYTES, MAX_REQUEST_BYTES};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use serde_json::{json, Map, Value};

const RELAY: &str = "wss://relay.example.com";

/// The largest NIP-44 plaintext nostr 0.44.8 encrypts (`MAX_SUPPORTED_PLAINTEXT_SIZE` in
/// its `nip44/v2.rs`), below the spec's (and keycast's `NIP44_MAX_PLAINTEXT`) 65 535 bytes.
/// Plaintexts between the two get an error reply; a ciphertext would be fine as well.
const NOSTR_NIP44_MAX: usize = 65_536 - 128;

// ---------------------------------------------------------------------------------------
// Fixture: one engine for the whole file, a fresh authorization per case where the case
// may change session state.
// ---------------------------------------------------------------------------------------

struct Fixture {
    rt: tokio::runtime::Runtime,
    custody: Custody,
    handler: RequestHandler,
    /// An independent party: encrypts to the user and decrypts what the user encrypts.
    peer: Keys,
}

/// One authorization with its (single-use) connect secret.
struct Session {
    auth: AuthorizationId,
    bunker: PublicKey,
    user: PublicKey,
    secret: String,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        // Multi-threaded so that tests running in parallel can all `block_on` it.
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let custody = rt
            .block_on(async {
                Custody::builder(
                    Arc::new(MemoryKeyStore::new()),
                    Arc::new(InsecureTestKeyManager::new()),
                )
                .build()
            })
            .expect("engine");
        Fixture {
            handler: RequestHandler::new(custody.clone()),
            custody,
            rt,
            peer: Keys::generate(),
        }
    })
}

impl Fixture {
    fn session(&self) -> Session {
        let relays = vec![RelayUrl::parse(RELAY).expect("relay")];
        let a = self.rt.block_on(authorized_key(
            &self.custody,
            vec![Permission::FullAccess],
            relays,
        ));
        Session {
            auth: a.authorization.id,
            bunker: a.authorization.bunker_pubkey,
            user: a.key.pubkey,
            secret: a.secret.expose().to_owned(),
        }
    }

    fn handle(&self, s: &Session, client: &Keys, request: Nip46Request) -> Nip46Response {
        self.rt
            .block_on(self.handler.handle(s.auth, client.public_key(), request))
    }

    /// A new client bound to `s` with its connect secret (which this uses up).
    fn bind(&self, s: &Session) -> Keys {
        let client = Keys::generate();
        let request = parse_ok(&request_json(
            "bind",
            "connect",
            json!([s.bunker.to_hex(), s.secret]),
        ));
        assert_eq!(
            self.handle(s, &client, request),
            Nip46Response::ok("bind", "ack"),
            "binding a client"
        );
        client
    }

    /// A session with a bound client, shared by the properties that never unbind it.
    fn shared() -> &'static (Session, Keys) {
        static SHARED: OnceLock<(Session, Keys)> = OnceLock::new();
        SHARED.get_or_init(|| {
            let fix = fixture();
            let s = fix.session();
            let client = fix.bind(&s);
            (s, client)
        })
    }

    fn max_content(&self) -> usize {
        self.custody.config().max_content_bytes
    }
}

fn request_json(id: &str, method: &str, params: Value) -> String {
    json!({"id": id, "method": method, "params": params}).to_string()
}

fn parse_ok(json: &str) -> Nip46Request {
    Nip46Request::parse(json).expect("valid request")
}

fn fail(msg: String) -> TestCaseError {
    TestCaseError::fail(msg)
}

/// Generated text. Its `Debug` abbreviates long values, so that a failing case with a
/// megabyte of content still prints readably (length, distinct characters, a prefix).
#[derive(Clone, PartialEq, Eq)]
struct Txt(String);

impl std::fmt::Debug for Txt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.0.len() <= 160 {
            return write!(f, "{:?}", self.0);
        }
        let mut distinct: Vec<char> = self.0.chars().collect();
        distinct.sort_unstable();
        distinct.dedup();
        distinct.truncate(16);
        let prefix: String = self.0.chars().take(32).collect();
        write!(
            f,
            "Txt {{ bytes: {}, chars: {:?}, prefix: {:?} }}",
            self.0.len(),
            distinct.into_iter().collect::<String>(),
            prefix
        )
    }
}

// ---------------------------------------------------------------------------------------
// Checks shared by the properties.
// ---------------------------------------------------------------------------------------

/// A reply answers `id` with exactly one of `result` / `error`, and survives serialisation.
/// (`auth_url` replies carry both, but a `FullAccess` policy never asks for approval.)
fn check_shape(id: &str, r: &Nip46Response) -> Result<(), TestCaseError> {
    prop_assert_eq!(r.id.as_str(), id, "reply id");
    prop_assert!(
        r.result.is_some() != r.error.is_some(),
        "exactly one of result/error: {:?}",
        r
    );
    if let Some(e) = &r.error {
        prop_assert!(!e.trim().is_empty(), "empty error message");
        // A panic on the crypto pool is caught and becomes "internal error: crypto task
        // panicked"; input must never get that far.
        prop_assert!(!e.starts_with("internal error"), "internal error: {}", e);
    }
    let wire: Value = serde_json::from_str(&r.to_json()).map_err(|e| fail(e.to_string()))?;
    prop_assert_eq!(wire["id"].as_str(), Some(id), "serialised reply id");
    Ok(())
}

/// A parse error answers the id it names, and only that id.
fn check_parse_error(e: &Error) -> Result<(), TestCaseError> {
    match (e.reply(), e.request_id()) {
        (Some(reply), Some(id)) => {
            prop_assert!(reply.is_error(), "{:?}", reply);
            check_shape(id, &reply)?;
        }
        (None, None) => {}
        (reply, id) => {
            return Err(fail(format!(
                "reply {reply:?} and request id {id:?} disagree"
            )))
        }
    }
    Ok(())
}

/// Runs a parsed request from an unbound client, then from a bound one, on `s` (a fresh
/// authorization whose secret is unused), and checks each reply against what the method
/// must answer.
fn run_request(fix: &Fixture, s: &Session, req: &Nip46Request) -> Result<(), TestCaseError> {
    let stranger = Keys::generate();
    let r = fix.handle(s, &stranger, req.clone());
    check_shape(&req.id, &r)?;
    let binds = matches!(
        &req.command,
        Command::Connect { remote, secret: Some(secret), .. }
            if *secret == s.secret && connect_target_ok(remote, &s.bunker, &s.user)
    );
    let bound = if binds {
        prop_assert_eq!(&r, &Nip46Response::ok(req.id.clone(), "ack"));
        stranger
    } else {
        prop_assert!(
            r.result.is_none(),
            "unbound client got a result for {:?}: {:?}",
            req.command,
            r
        );
        fix.bind(s)
    };
    let r = fix.handle(s, &bound, req.clone());
    check_shape(&req.id, &r)?;
    check_bound_reply(fix, s, &bound, req, &r)
}

fn check_bound_reply(
    fix: &Fixture,
    s: &Session,
    client: &Keys,
    req: &Nip46Request,
    r: &Nip46Response,
) -> Result<(), TestCaseError> {
    let id = req.id.clone();
    let peer = fix.peer.public_key();
    match &req.command {
        Command::Ping => prop_assert_eq!(r, &Nip46Response::ok(id, "pong")),
        Command::GetPublicKey => prop_assert_eq!(r, &Nip46Response::ok(id, s.user.to_hex())),
        Command::SwitchRelays => {
            prop_assert_eq!(r, &Nip46Response::ok(id, format!("[\"{RELAY}\"]")))
        }
        Command::Connect { remote, .. } => {
            if connect_target_ok(remote, &s.bunker, &s.user) {
                prop_assert_eq!(r, &Nip46Response::ok(id, "ack"), "bound clients reconnect");
            } else {
                prop_assert!(r.is_error(), "connect naming another signer: {:?}", r);
            }
        }
        Command::Logout => {
            prop_assert_eq!(r, &Nip46Response::ok(id, "ack"));
            let after = fix.handle(s, client, parse_ok(&request_json("p", "ping", json!([]))));
            prop_assert!(after.is_error(), "logout ends the session: {:?}", after);
        }
        Command::Unknown(_) => {
            let e = r.error.as_deref().unwrap_or_default();
            prop_assert!(e.contains("unknown method"), "{:?}", r);
        }
        Command::SignEvent(t) => {
            let cfg = fix.custody.config();
            let due = t.content.len() <= cfg.max_content_bytes
                && t.tags.len() <= cfg.max_tags
                && t.pubkey.is_none_or(|p| p == s.user);
            if !due {
                prop_assert!(r.is_error(), "refused template signed: {:?}", t);
                return Ok(());
            }
            let event = signed_event(r)?;
            prop_assert_eq!(event.pubkey, s.user);
            prop_assert_eq!(event.kind, t.kind);
            prop_assert_eq!(event.content.as_bytes(), t.content.as_bytes());
            prop_assert_eq!(event.tags.to_vec(), t.tags.clone().to_vec());
            if let Some(at) = t.created_at {
                prop_assert_eq!(event.created_at, at);
            }
        }
        Command::Nip44Encrypt {
            peer: to,
            plaintext,
        } => {
            let len = plaintext.len();
            if len == 0 || len > NIP44_MAX_PLAINTEXT || (len > NOSTR_NIP44_MAX && r.is_error()) {
                prop_assert!(r.is_error(), "NIP-44 out of range: {} bytes", len);
            } else {
                let ct = r.result.as_deref().ok_or_else(|| fail(format!("{r:?}")))?;
                if *to == peer {
                    let back = nip44::decrypt(fix.peer.secret_key(), &s.user, ct)
                        .map_err(|e| fail(format!("peer cannot decrypt: {e}")))?;
                    prop_assert_eq!(back.as_bytes(), plaintext.as_bytes());
                }
            }
        }
        Command::Nip04Encrypt {
            peer: to,
            plaintext,
        } => {
            if plaintext.len() > fix.max_content() {
                prop_assert!(r.is_error(), "NIP-04 too large: {} bytes", plaintext.len());
            } else {
                let ct = r.result.as_deref().ok_or_else(|| fail(format!("{r:?}")))?;
                if *to == peer {
                    let back = nip04::decrypt(fix.peer.secret_key(), &s.user, ct)
                        .map_err(|e| fail(format!("peer cannot decrypt: {e}")))?;
                    prop_assert_eq!(back.as_bytes(), plaintext.as_bytes());
                }
            }
        }
        Command::Nip44Decrypt {
            peer: from,
            ciphertext,
        } => {
            // nostr's own decryption is the reference. Other peers: the MAC cannot match.
            let reference = if *from == peer {
                nip44::decrypt(fix.peer.secret_key(), &s.user, ciphertext).ok()
            } else {
                None
            };
            match reference {
                Some(p) => prop_assert_eq!(r, &Nip46Response::ok(id, p)),
                None => prop_assert!(r.is_error(), "forged NIP-44 accepted: {:?}", r),
            }
        }
        // NIP-04 has no MAC: a wrong key may decrypt to garbage, so only the right peer
        // has a definite answer.
        Command::Nip04Decrypt {
            peer: from,
            ciphertext,
        } if *from == peer => {
            let too_big = ciphertext.len() > fix.max_content() * 4 / 3 + 64;
            match nip04::decrypt(fix.peer.secret_key(), &s.user, ciphertext) {
                Ok(p) if !too_big => prop_assert_eq!(r, &Nip46Response::ok(id, p)),
                _ => prop_assert!(r.is_error(), "{:?}", r),
            }
        }
        // NIP-04 from other peers, and methods added later: the shape checks still apply.
        _ => {}
    }
    Ok(())
}

/// The `result` of a signing reply, read back from the wire form, as a verified event.
fn signed_event(r: &Nip46Response) -> Result<Event, TestCaseError> {
    let wire: Value = serde_json::from_str(&r.to_json()).map_err(|e| fail(e.to_string()))?;
    let json = wire["result"]
        .as_str()
        .ok_or_else(|| fail(format!("no result: {:?}", r.error)))?;
    let event = Event::from_json(json).map_err(|e| fail(format!("not an event: {e}")))?;
    event
        .verify()
        .map_err(|e| fail(format!("event does not verify: {e}")))?;
    Ok(event)
}

// ---------------------------------------------------------------------------------------
// Strategies.
// ---------------------------------------------------------------------------------------

/// Pieces that stress UTF-8 handling and JSON escaping.
const PIECES: &[&str] = &[
    "a",
    " ",
    "中文",
    "日本語",
    "한국어",
    "😀",
    "👩\u{200D}💻",
    "🏳\u{FE0F}\u{200D}🌈",
    "e\u{301}",
    "\u{301}",
    "\u{FFFD}",
    "\0",
    "\u{200F}",
    "\u{202E}",
    "\u{FEFF}",
    "\u{10FFFF}",
    "\u{E000}",
    "𝕏",
    "ß",
    "İ",
    "\u{2028}",
    "\u{7F}",
    "\u{1B}",
    "\"",
    "\\",
    "\n",
    "\t",
    "}",
    "]",
    "{\"",
    "?iv=",
    "%",
    "#",
];

fn pieces(n: std::ops::Range<usize>) -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(PIECES), n).prop_map(|v| v.concat())
}

/// Short text, mostly multibyte.
fn multibyte() -> impl Strategy<Value = Txt> {
    prop_oneof!["\\PC*", any::<String>(), pieces(0..48),].prop_map(Txt)
}

fn multibyte_string() -> impl Strategy<Value = String> {
    multibyte().prop_map(|t| t.0)
}

/// `chunk` repeated to about `target` bytes, cut on a char boundary at or below it.
fn fill(chunk: &str, target: usize) -> String {
    let mut s = chunk.repeat(target / chunk.len().max(1) + 1);
    let mut cut = target.min(s.len());
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    s.truncate(cut);
    s
}

/// 100 KiB to 2 MiB of multibyte text: under the content limit, between it and the request
/// limit, and beyond the request limit.
fn oversized() -> impl Strategy<Value = Txt> {
    let size = prop_oneof![
        100 * 1024..256 * 1024usize,
        256 * 1024..512 * 1024usize,
        512 * 1024..=2 * 1024 * 1024usize,
    ];
    (pieces(1..8), size).prop_map(|(chunk, n)| Txt(fill(&chunk, n)))
}

/// Deep `[[[[…` (and `{"a":{"a":…`), bare or where the request has its params or template.
fn nested() -> impl Strategy<Value = String> {
    (1usize..=150_000, any::<bool>(), any::<bool>(), 0usize..4).prop_map(
        |(depth, close, objects, place)| {
            let (open, shut) = if objects { ("{\"a\":", "}") } else { ("[", "]") };
            let mut inner = open.repeat(depth);
            if close {
                inner.push('1');
                inner.push_str(&shut.repeat(depth));
            }
            match place {
                0 => inner,
                1 => format!(r#"{{"id":"deep","method":"sign_event","params":{inner}}}"#),
                2 => format!(r#"{{"id":"deep","method":"sign_event","params":[{{"kind":1,"content":"","x":{inner}}}]}}"#),
                _ => format!(r#"{{"id":{inner},"method":"ping"}}"#),
            }
        },
    )
}

/// A valid request cut short or with a multibyte piece spliced in somewhere.
fn broken_json() -> impl Strategy<Value = String> {
    let base = prop::sample::select(vec![
        r#"{"id":"1","method":"ping","params":[]}"#,
        r#"{"id":"ü","method":"sign_event","params":["{\"kind\":1,\"content\":\"hé\",\"tags\":[]}"]}"#,
        r#"{"id":"x","method":"connect","params":["","secret","sign_event:1"]}"#,
        r#"{"id":"日本","method":"nip44_encrypt","params":["79be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798","中文"]}"#,
        r#"{"id":"y","method":"nip04_decrypt","params":["79be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798","AAAA?iv=AAAAAAAAAAAAAAAAAAAAAA=="]}"#,
    ]);
    (
        base,
        any::<prop::sample::Index>(),
        pieces(0..4),
        any::<bool>(),
    )
        .prop_map(|(base, at, piece, cut)| {
            let mut s = base.to_owned();
            let mut i = at.index(s.len() + 1);
            while !s.is_char_boundary(i) {
                i -= 1;
            }
            if cut {
                s.truncate(i);
            }
            s.insert_str(i, &piece);
            s
        })
}

const METHODS: &[&str] = &[
    "connect",
    "get_public_key",
    "sign_event",
    "ping",
    "nip04_encrypt",
    "nip04_decrypt",
    "nip44_encrypt",
    "nip44_decrypt",
    "switch_relays",
    "logout",
    // Not NIP-46 methods of this signer.
    "get_relays",
    "Ping",
    "ping ",
    "",
    "sign_event\0",
    "签名",
];

/// A param, resolved against the session when the request is built.
#[derive(Debug, Clone)]
enum Arg {
    Text(Txt),
    Bunker,
    User,
    UserNpub,
    Peer,
    PeerNpub,
    /// The peer's hex with whitespace around it.
    PeerPadded,
    /// 64 hex characters that are not a curve point.
    OffCurve,
    /// The session's connect secret.
    Secret,
    Template(Template, bool),
    /// A NIP-44 payload from the peer to the user.
    Nip44(String),
    /// A NIP-04 payload from the peer to the user.
    Nip04(String),
    Json(Value),
}

#[derive(Debug, Clone)]
struct Template {
    kind: Value,
    content: Txt,
    tags: Vec<Vec<String>>,
    created_at: Option<Value>,
    pubkey: Option<Box<Arg>>,
}

impl Arg {
    fn resolve(&self, fix: &Fixture, s: &Session) -> Value {
        let peer = fix.peer.public_key();
        let npub = |pk: PublicKey| pk.to_bech32().unwrap_or_default();
        match self {
            Arg::Text(t) => Value::String(t.0.clone()),
            Arg::Bunker => Value::String(s.bunker.to_hex()),
            Arg::User => Value::String(s.user.to_hex()),
            Arg::UserNpub => Value::String(npub(s.user)),
            Arg::Peer => Value::String(peer.to_hex()),
            Arg::PeerNpub => Value::String(npub(peer)),
            Arg::PeerPadded => Value::String(format!(" \t{}\n", peer.to_hex())),
            Arg::OffCurve => Value::String("f".repeat(64)),
            Arg::Secret => Value::String(s.secret.clone()),
            Arg::Template(t, as_object) => {
                let mut obj = Map::new();
                obj.insert("kind".into(), t.kind.clone());
                obj.insert("content".into(), Value::String(t.content.0.clone()));
                obj.insert("tags".into(), json!(t.tags));
                if let Some(at) = &t.created_at {
                    obj.insert("created_at".into(), at.clone());
                }
                if let Some(pk) = &t.pubkey {
                    obj.insert("pubkey".into(), pk.resolve(fix, s));
                }
                let obj = Value::Object(obj);
                if *as_object {
                    obj
                } else {
                    Value::String(obj.to_string())
                }
            }
            Arg::Nip44(p) => Value::String(
                nip44::encrypt(fix.peer.secret_key(), &s.user, p, nip44::Version::V2)
                    .unwrap_or_else(|_| p.clone()),
            ),
            Arg::Nip04(p) => Value::String(
                nip04::encrypt(fix.peer.secret_key(), &s.user, p).unwrap_or_else(|_| p.clone()),
            ),
            Arg::Json(v) => v.clone(),
        }
    }
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        multibyte_string().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec((pieces(0..3), inner), 0..4)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

fn pubkey_arg() -> impl Strategy<Value = Arg> {
    prop_oneof![
        4 => Just(Arg::Peer),
        1 => Just(Arg::PeerNpub),
        1 => Just(Arg::PeerPadded),
        1 => Just(Arg::User),
        1 => Just(Arg::Bunker),
        1 => Just(Arg::OffCurve),
        1 => multibyte().prop_map(Arg::Text),
        1 => json_value().prop_map(Arg::Json),
    ]
}

fn template() -> impl Strategy<Value = Template> {
    let kind = prop_oneof![
        24 => any::<u16>().prop_map(Value::from),
        1 => Just(json!(70_000)),
        1 => Just(json!(-1)),
        1 => Just(json!("1")),
        1 => Just(json!(1.5)),
    ];
    let created_at = prop::option::of(prop_oneof![
        12 => any::<u32>().prop_map(Value::from),
        1 => any::<u64>().prop_map(Value::from),
        1 => Just(json!(-5)),
        1 => Just(json!("1700000000")),
    ]);
    let pubkey = prop::option::weighted(
        0.2,
        prop_oneof![
            Just(Arg::User),
            Just(Arg::Peer),
            Just(Arg::OffCurve),
            Just(Arg::Text(Txt(String::new()))),
            multibyte().prop_map(Arg::Text),
        ],
    );
    let content = prop_oneof![8 => multibyte(), 1 => oversized()];
    // Mostly non-empty tags; an empty one is invalid.
    let tag = prop_oneof![
        12 => prop::collection::vec(multibyte_string(), 1..4),
        1 => Just(Vec::new()),
    ];
    let tags = prop::collection::vec(tag, 0..5);
    (kind, content, tags, created_at, pubkey).prop_map(
        |(kind, content, tags, created_at, pubkey)| Template {
            kind,
            content,
            tags,
            created_at,
            pubkey: pubkey.map(Box::new),
        },
    )
}

fn any_arg() -> impl Strategy<Value = Arg> {
    prop_oneof![
        4 => multibyte().prop_map(Arg::Text),
        1 => pubkey_arg(),
        1 => Just(Arg::Secret),
        1 => (template(), any::<bool>()).prop_map(|(t, o)| Arg::Template(t, o)),
        1 => pieces(1..8).prop_map(Arg::Nip44),
        1 => pieces(0..8).prop_map(Arg::Nip04),
        2 => json_value().prop_map(Arg::Json),
    ]
}

/// Params that fit `method` most of the time, so that many requests get past the parser.
fn params_for(method: &'static str) -> BoxedStrategy<Vec<Arg>> {
    let text = || prop_oneof![6 => multibyte(), 1 => oversized()].prop_map(Arg::Text);
    match method {
        "connect" => {
            let target = prop_oneof![
                Just(Arg::Bunker),
                Just(Arg::User),
                Just(Arg::UserNpub),
                Just(Arg::Text(Txt(String::new()))),
                Just(Arg::Peer),
                multibyte().prop_map(Arg::Text),
            ];
            let secret = prop_oneof![
                4 => Just(Arg::Secret),
                1 => Just(Arg::Text(Txt(String::new()))),
                1 => Just(Arg::Json(Value::Null)),
                1 => multibyte().prop_map(Arg::Text),
                1 => json_value().prop_map(Arg::Json),
            ];
            let perms = prop_oneof![
                Just(Arg::Text(Txt("sign_event:1,nip44_encrypt".into()))),
                "[a-z_:0-9,]{0,40}".prop_map(|s| Arg::Text(Txt(s))),
                multibyte().prop_map(Arg::Text),
            ];
            (target, secret, perms, 0usize..4)
                .prop_map(|(t, s, p, n)| vec![t, s, p].into_iter().take(n).collect())
                .boxed()
        }
        "sign_event" => (template(), any::<bool>())
            .prop_map(|(t, o)| vec![Arg::Template(t, o)])
            .boxed(),
        "nip44_encrypt" | "nip04_encrypt" => {
            (pubkey_arg(), text()).prop_map(|(p, t)| vec![p, t]).boxed()
        }
        "nip44_decrypt" => {
            let ct = prop_oneof![
                3 => pieces(1..16).prop_map(Arg::Nip44),
                1 => multibyte().prop_map(Arg::Text),
                1 => "[A-Za-z0-9+/=]{0,200}".prop_map(|s| Arg::Text(Txt(s))),
            ];
            (pubkey_arg(), ct).prop_map(|(p, c)| vec![p, c]).boxed()
        }
        "nip04_decrypt" => {
            let ct = prop_oneof![
                3 => pieces(0..16).prop_map(Arg::Nip04),
                1 => multibyte().prop_map(Arg::Text),
                1 => "[A-Za-z0-9+/=]{0,64}\\?iv=[A-Za-z0-9+/=]{0,30}".prop_map(|s| Arg::Text(Txt(s))),
            ];
            (pubkey_arg(), ct).prop_map(|(p, c)| vec![p, c]).boxed()
        }
        _ => Just(Vec::new()).boxed(),
    }
}

#[derive(Debug, Clone)]
enum Params {
    Missing,
    Raw(Value),
    Args(Vec<Arg>),
}

/// `{"id","method","params"}` with each part usually right and sometimes wrong.
#[derive(Debug, Clone)]
struct Shaped {
    id: Option<Value>,
    method: Option<Value>,
    params: Params,
}

fn request_id() -> impl Strategy<Value = Option<Value>> {
    prop_oneof![
        12 => "\\PC{1,16}".prop_map(|s| Some(Value::String(s))),
        8 => pieces(1..12).prop_map(|s| Some(Value::String(s))),
        1 => multibyte_string().prop_map(|s| Some(Value::String(s))),
        1 => Just(Some(json!(""))),
        // Exactly at the limit, in two-byte characters, and one byte over it.
        1 => Just(Some(Value::String("é".repeat(MAX_ID_BYTES / 2)))),
        1 => Just(Some(Value::String(format!("a{}", "é".repeat(MAX_ID_BYTES / 2))))),
        1 => pieces(60..200).prop_map(|s| Some(Value::String(s))),
        1 => json_value().prop_map(Some),
        1 => Just(None),
    ]
}

fn shaped_request() -> impl Strategy<Value = Shaped> {
    let method = prop::sample::select(METHODS);
    let params = method.prop_flat_map(|m| {
        let fitting = params_for(m).prop_map(Params::Args);
        let random = prop::collection::vec(any_arg(), 0..4).prop_map(Params::Args);
        let wrong = prop_oneof![
            Just(Params::Missing),
            Just(Params::Raw(Value::Null)),
            json_value().prop_map(Params::Raw),
        ];
        (Just(m), prop_oneof![12 => fitting, 2 => random, 1 => wrong])
    });
    let method_value = prop_oneof![
        24 => Just(None::<Value>),
        1 => json_value().prop_map(Some),
        1 => Just(Some(Value::Null)),
    ];
    (request_id(), params, method_value, any::<bool>()).prop_map(
        |(id, (m, params), wrong_method, drop_method)| Shaped {
            id,
            method: match (wrong_method, drop_method) {
                (Some(v), _) => Some(v),
                (None, true) if m == "ping" => None,
                (None, _) => Some(Value::String(m.to_owned())),
            },
            params,
        },
    )
}

impl Shaped {
    fn to_json(&self, fix: &Fixture, s: &Session) -> String {
        let mut obj = Map::new();
        if let Some(id) = &self.id {
            obj.insert("id".into(), id.clone());
        }
        if let Some(m) = &self.method {
            obj.insert("method".into(), m.clone());
        }
        match &self.params {
            Params::Missing => {}
            Params::Raw(v) => {
                obj.insert("params".into(), v.clone());
            }
            Params::Args(args) => {
                let v = args.iter().map(|a| a.resolve(fix, s)).collect();
                obj.insert("params".into(), Value::Array(v));
            }
        }
        Value::Object(obj).to_string()
    }

    /// The id a reply must carry, when the request has a usable one.
    fn usable_id(&self) -> Option<&str> {
        match &self.id {
            Some(Value::String(id)) if !id.is_empty() && id.len() <= MAX_ID_BYTES => Some(id),
            _ => None,
        }
    }
}

// ---------------------------------------------------------------------------------------
// Properties.
// ---------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Any text at all: parsed and answered, answered with an error, or dropped.
    #[test]
    fn arbitrary_text_is_answered_or_dropped(text in prop_oneof![
        3 => multibyte(),
        1 => oversized(),
        2 => nested().prop_map(Txt),
        3 => broken_json().prop_map(Txt),
    ]) {
        let fix = fixture();
        let text = text.0;
        match Nip46Request::parse(&text) {
            Err(e) => {
                check_parse_error(&e)?;
                if text.len() > MAX_REQUEST_BYTES {
                    prop_assert!(matches!(e, Error::TooLarge { .. }), "{e:?}");
                }
            }
            Ok(req) => run_request(fix, &fix.session(), &req)?,
        }
    }

    /// Well-shaped requests with right and wrong ids, methods and params: a usable id is
    /// always answered, and each method answers what it must, to bound clients only.
    #[test]
    fn shaped_requests_are_answered_with_their_id(shaped in shaped_request()) {
        let fix = fixture();
        let s = fix.session();
        let json = shaped.to_json(fix, &s);
        match Nip46Request::parse(&json) {
            Err(e) => {
                check_parse_error(&e)?;
                if let Some(id) = shaped.usable_id() {
                    if json.len() <= MAX_REQUEST_BYTES {
                        prop_assert_eq!(e.request_id(), Some(id), "{}", e);
                    }
                }
            }
            Ok(req) => {
                prop_assert!(json.len() <= MAX_REQUEST_BYTES);
                prop_assert_eq!(Some(req.id.as_str()), shaped.usable_id());
                let method = shaped.method.as_ref().and_then(Value::as_str);
                prop_assert_eq!(Some(req.command.method()), method);
                run_request(fix, &s, &req)?;
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// Multibyte content and tags are signed byte for byte, the event verifies with nostr,
    /// and what is too large is refused with the request id or (beyond the request limit)
    /// dropped.
    #[test]
    fn sign_event_keeps_multibyte_text_exactly(
        content in prop_oneof![4 => multibyte(), 1 => oversized()],
        tags in prop::collection::vec(prop::collection::vec(multibyte_string(), 1..4), 0..6),
        kind in any::<u16>(),
        created_at in prop::option::of(0u64..=u64::from(u32::MAX)),
        id in "\\PC{1,16}",
        as_object in any::<bool>(),
    ) {
        let fix = fixture();
        let (s, client) = Fixture::shared();
        let mut template = json!({"kind": kind, "content": content.0, "tags": tags});
        if let Some(at) = created_at {
            template["created_at"] = json!(at);
        }
        let param = if as_object { template } else { Value::String(template.to_string()) };
        let json = request_json(&id, "sign_event", json!([param]));
        let req = match Nip46Request::parse(&json) {
            Ok(req) => req,
            Err(e) => {
                prop_assert!(json.len() > MAX_REQUEST_BYTES, "valid template refused: {e}");
                prop_assert!(matches!(e, Error::TooLarge { .. }), "{e:?}");
                prop_assert!(e.reply().is_none());
                return Ok(());
            }
        };
        let r = fix.handle(s, client, req);
        check_shape(&id, &r)?;
        if content.0.len() > fix.max_content() {
            prop_assert!(r.is_error(), "oversized content signed");
            prop_assert!(r.error.as_deref().is_some_and(|e| e.contains("content")), "{:?}", r.error);
            return Ok(());
        }
        let event = signed_event(&r)?;
        prop_assert_eq!(event.pubkey, s.user);
        prop_assert_eq!(event.content.as_bytes(), content.0.as_bytes());
        let signed_tags: Vec<Vec<String>> =
            event.tags.iter().map(|t| t.as_slice().to_vec()).collect();
        prop_assert_eq!(signed_tags, tags);
        prop_assert_eq!(event.kind.as_u16(), kind);
        if let Some(at) = created_at {
            prop_assert_eq!(event.created_at.as_secs(), at);
        }
    }

    /// Encryption of any text: an error reply, or a ciphertext the peer decrypts to exactly
    /// the same bytes.
    #[test]
    fn encrypted_text_round_trips_or_is_refused(
        plaintext in prop_oneof![
            4 => multibyte(),
            1 => (pieces(1..6), 65_000usize..66_000).prop_map(|(c, n)| Txt(fill(&c, n))),
            1 => oversized(),
        ],
        use_nip44 in any::<bool>(),
        npub in any::<bool>(),
        id in "\\PC{1,16}",
    ) {
        let fix = fixture();
        let (s, client) = Fixture::shared();
        let peer = if npub {
            fix.peer.public_key().to_bech32().unwrap_or_default()
        } else {
            fix.peer.public_key().to_hex()
        };
        let method = if use_nip44 { "nip44_encrypt" } else { "nip04_encrypt" };
        let plaintext = plaintext.0;
        let json = request_json(&id, method, json!([peer, plaintext]));
        let req = match Nip46Request::parse(&json) {
            Ok(req) => req,
            Err(e) => {
                prop_assert!(json.len() > MAX_REQUEST_BYTES, "valid request refused: {e}");
                prop_assert!(matches!(e, Error::TooLarge { .. }), "{e:?}");
                return Ok(());
            }
        };
        let r = fix.handle(s, client, req);
        check_shape(&id, &r)?;
        let len = plaintext.len();
        let (must_encrypt, may_encrypt) = if use_nip44 {
            ((1..=NOSTR_NIP44_MAX).contains(&len), (1..=NIP44_MAX_PLAINTEXT).contains(&len))
        } else {
            (len <= fix.max_content(), len <= fix.max_content())
        };
        if !may_encrypt || (!must_encrypt && r.is_error()) {
            prop_assert!(r.is_error(), "{} bytes accepted by {}", len, method);
            return Ok(());
        }
        let ct = r.result.as_deref().ok_or_else(|| fail(format!("{len} bytes refused: {r:?}")))?;
        let back = if use_nip44 {
            nip44::decrypt(fix.peer.secret_key(), &s.user, ct).map_err(|e| e.to_string())
        } else {
            nip04::decrypt(fix.peer.secret_key(), &s.user, ct).map_err(|e| e.to_string())
        };
        let back = back.map_err(|e| fail(format!("peer cannot decrypt: {e}")))?;
        prop_assert_eq!(back.as_bytes(), plaintext.as_bytes());
    }
}

// ---------------------------------------------------------------------------------------
// Fixed extremes, checked every run rather than by chance.
// ---------------------------------------------------------------------------------------

#[test]
fn hundred_thousand_deep_nesting_is_dropped() {
    for json in [
        "[".repeat(100_000),
        format!("{}{}", "[".repeat(100_000), "]".repeat(100_000)),
        format!(
            r#"{{"id":"deep","method":"sign_event","params":{}}}"#,
            "[".repeat(100_000)
        ),
        format!(
            r#"{{"id":"deep","method":"ping","params":[{}1{}]}}"#,
            // 80 000 levels: 100 000 would exceed the request size limit.
            "{\"a\":".repeat(80_000),
            "}".repeat(80_000)
        ),
    ] {
        let e = Nip46Request::parse(&json).expect_err("nesting beyond serde's limit");
        assert!(matches!(e, Error::Malformed { id: None, .. }), "{e:?}");
        assert_eq!(e.reply(), None);
    }
}

#[test]
fn request_and_id_limits_are_exact() {
    let fix = fixture();
    let (s, client) = Fixture::shared();
    // A ping padded to exactly the request limit is answered; one byte more is dropped.
    let base = r#"{"id":"edge","method":"ping","pad":""}"#;
    let at_limit = base.replacen(
        r#""pad":"""#,
        &format!(
            r#""pad":"{}""#,
            "é".repeat((MAX_REQUEST_BYTES - base.len()) / 2)
        ),
        1,
    );
    assert_eq!(at_limit.len(), MAX_REQUEST_BYTES);
    let r = fix.handle(s, client, parse_ok(&at_limit));
    assert_eq!(r, Nip46Response::ok("edge", "pong"));
    let over = at_limit.replacen("edge", "edge!", 1);
    assert!(matches!(
        Nip46Request::parse(&over),
        Err(Error::TooLarge { len, .. }) if len == MAX_REQUEST_BYTES + 1
    ));

    // An id of exactly MAX_ID_BYTES multibyte bytes is echoed; longer ids get no reply.
    let id = "é".repeat(MAX_ID_BYTES / 2);
    let r = fix.handle(s, client, parse_ok(&request_json(&id, "ping", json!([]))));
    assert_eq!(r, Nip46Response::ok(id.clone(), "pong"));
    let e = Nip46Request::parse(&request_json(&format!("{id}a"), "ping", json!([])))
        .expect_err("id too long");
    assert_eq!(e.reply(), None);
}

#[test]
fn nip44_plaintext_limits_in_multibyte_text() {
    let fix = fixture();
    let (s, client) = Fixture::shared();
    let peer = fix.peer.public_key().to_hex();
    let encrypt = |plaintext: &str| {
        fix.handle(
            s,
            client,
            parse_ok(&request_json(
                "n",
                "nip44_encrypt",
                json!([peer, plaintext]),
            )),
        )
    };
    // Exact byte lengths ending in a 3-byte character, so any cut inside it would show.
    let sized = |len: usize| {
        let mut text = "é".repeat((len - 3) / 2);
        if (len - 3) % 2 == 1 {
            text.push('a');
        }
        text.push('中');
        assert_eq!(text.len(), len);
        text
    };

    let largest = sized(NOSTR_NIP44_MAX);
    let r = encrypt(&largest);
    let ct = r.result.as_deref().expect("ciphertext");
    assert_eq!(
        nip44::decrypt(fix.peer.secret_key(), &s.user, ct).expect("peer decrypts"),
        largest
    );
    // One byte over: refused by keycast's own check, with its message.
    assert_eq!(
        NIP44_MAX_PLAINTEXT, NOSTR_NIP44_MAX,
        "keycast's limit is nostr's"
    );
    let r = encrypt(&sized(NOSTR_NIP44_MAX + 1));
    assert_eq!(r.id, "n");
    assert!(
        r.error
            .as_deref()
            .is_some_and(|e| e.contains("1 to 65408 bytes")),
        "{r:?}"
    );
    for text in [String::new(), sized(NIP44_MAX_PLAINTEXT + 1)] {
        let r = encrypt(&text);
        assert!(r.is_error() && r.id == "n", "{r:?}");
    }
}
