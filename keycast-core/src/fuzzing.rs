//! Entry points for the cargo-fuzz targets in `fuzz/`. Not a public API.
//!
//! Each function takes the fuzzer's bytes, drives production code with them and panics
//! only when an invariant breaks.

use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll, Waker};

use nostr::nips::{nip04, nip44};
use nostr::{Keys, Kind, PublicKey, Timestamp};
use zeroize::Zeroizing;

use crate::authz::policy::PolicyAuthorizer;
use crate::authz::rules::{compile_uncached, evaluate, RuleVerdict};
use crate::crypto::aead::{self, NONCE_LEN};
use crate::crypto::envelope::{self, Envelope, EnvelopeBinding, FORMAT_VERSION};
use crate::custody::{open_key, open_payload, TransportScheme};
use crate::ids::{AuthorizationId, KeyId, PolicyId, TenantId};
use crate::memory::key_manager::InsecureTestKeyManager;
use crate::memory::key_store::MemoryKeyStore;
use crate::model::account::Tenant;
use crate::model::authorization::Authorization;
use crate::model::key::{KeyKind, StoredKey};
use crate::model::names::{Label, TenantName};
use crate::model::policy::{Permission, Policy};
use crate::model::request::{EventTemplate, Method, Request};
use crate::traits::authorizer::{AuthContext, Authorizer, Decision};
use crate::traits::key_manager::{KekRef, KeyManager, Wrapped};
use crate::traits::key_store::KeyStore;

/// Parses arbitrary bytes as an event template; must never panic.
pub fn event_template(data: &[u8]) {
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = EventTemplate::from_json(s);
    }
}

/// Separates the parts of a structured input; never occurs in UTF-8.
const SEP: u8 = 0xFF;

/// Runs a future that never waits (in-memory store, key manager without latency).
fn ready<F: Future>(f: F) -> F::Output {
    let mut f = std::pin::pin!(f);
    match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("an in-memory operation waited"),
    }
}

/// `n` bytes from the front of `data` (zero-padded), and the rest.
fn take(data: &[u8], n: usize) -> (Vec<u8>, &[u8]) {
    let (head, rest) = data.split_at(n.min(data.len()));
    let mut v = head.to_vec();
    v.resize(n, 0);
    (v, rest)
}

/// Fixed keys: the user or bunker key, a peer, and a third key.
fn keys() -> &'static [Keys; 3] {
    static KEYS: OnceLock<[Keys; 3]> = OnceLock::new();
    KEYS.get_or_init(|| {
        [1u8, 2, 3].map(|n| {
            let mut sk = [0u8; 32];
            sk[31] = n;
            Keys::new(nostr::SecretKey::from_slice(&sk).expect("a valid secret key"))
        })
    })
}

fn fixed_binding(pubkey: PublicKey) -> EnvelopeBinding {
    EnvelopeBinding {
        key_id: KeyId::from_uuid(uuid::Uuid::from_u128(1)),
        pubkey,
        tenant_id: TenantId::from_uuid(uuid::Uuid::from_u128(2)),
    }
}

/// Envelope decode and open, and seal→open round trips.
///
/// The input is read as stored columns: `flags`, `format_version` (2 bytes), `nonce` (24),
/// a wrapped-DEK length byte and blob, then the ciphertext. Opening it with a fixed master
/// key must fail (nobody can forge a seal), never panic. Then a secret taken from the input
/// is sealed and must open to itself, a copy with one fuzzer-chosen byte flipped must not
/// open, and the AEAD must round-trip the whole input as a message.
pub fn envelope(data: &[u8]) {
    let km = InsecureTestKeyManager::from_key(Zeroizing::new([7u8; 32]));
    let owner = keys()[0].clone();
    let binding = fixed_binding(owner.public_key());

    // Arbitrary columns: never opens.
    let (head, rest) = take(data, 1 + 2 + NONCE_LEN + 1);
    let flags = head[0];
    let format_version = u16::from_le_bytes([head[1], head[2]]);
    let nonce: [u8; NONCE_LEN] = head[3..3 + NONCE_LEN].try_into().expect("nonce length");
    let (blob, ciphertext) = rest.split_at(usize::from(head[3 + NONCE_LEN]).min(rest.len()));
    let kek = if flags & 1 == 0 {
        km.id().clone()
    } else {
        KekRef {
            provider: "other".into(),
            key_id: "other".into(),
            version: u32::from(flags),
        }
    };
    let env = Envelope {
        format_version: if flags & 2 == 0 {
            FORMAT_VERSION
        } else {
            format_version
        },
        wrapped_dek: Wrapped {
            kek,
            blob: blob.to_vec(),
        },
        nonce,
        ciphertext: ciphertext.to_vec(),
    };
    let _ = format!("{env:?}");
    assert!(ready(envelope::open(&km, &binding, &env)).is_err());
    // The engine's CPU half, with a DEK taken from the input.
    let (dek, _) = take(data, 32);
    let dek = Zeroizing::new(<[u8; 32]>::try_from(dek).expect("32 bytes"));
    assert!(envelope::open_with_dek(&dek, &binding, &env).is_err());
    assert!(open_key(&dek, &binding, &env).is_err());

    // Round trip of a secret from the input.
    let (secret, _) = take(data.get(1..).unwrap_or_default(), 32);
    let secret = Zeroizing::new(<[u8; 32]>::try_from(secret).expect("32 bytes"));
    let sealed = ready(envelope::seal(&km, &binding, &secret)).expect("seal");
    let opened = ready(envelope::open(&km, &binding, &sealed)).expect("open");
    assert_eq!(*opened, *secret);
    // As the engine opens keys: a valid secp256k1 secret whose pubkey is bound opens.
    if let Ok(sk) = nostr::SecretKey::from_slice(secret.as_ref()) {
        let b = fixed_binding(Keys::new(sk).public_key());
        let env = ready(envelope::seal(&km, &b, &secret)).expect("seal");
        let dek = ready(envelope::unwrap_dek(&km, &b, &env)).expect("unwrap");
        let keys = open_key(&dek, &b, &env).expect("open_key");
        assert_eq!(keys.public_key(), b.pubkey);
    }
    // Another row's binding does not open it.
    let elsewhere = fixed_binding(keys()[1].public_key());
    assert!(ready(envelope::open(&km, &elsewhere, &sealed)).is_err());
    // One flipped bit anywhere does not open.
    let at = usize::from(flags) | (usize::from(head[1]) << 8);
    let mut tampered = sealed.clone();
    let sizes = [
        NONCE_LEN,
        tampered.ciphertext.len(),
        tampered.wrapped_dek.blob.len(),
    ];
    let mut at = at % sizes.iter().sum::<usize>();
    let bit = 1u8 << (head[2] % 8);
    if at < sizes[0] {
        tampered.nonce[at] ^= bit;
    } else {
        at -= sizes[0];
        if at < sizes[1] {
            tampered.ciphertext[at] ^= bit;
        } else {
            tampered.wrapped_dek.blob[at - sizes[1]] ^= bit;
        }
    }
    assert!(ready(envelope::open(&km, &binding, &tampered)).is_err());

    // The AEAD under the envelope: any message, any AAD.
    let (aad, msg) = data.split_at(data.len() / 3);
    let key = [head[1]; 32];
    let blob = aead::seal_blob(&key, aad, msg).expect("seal_blob");
    assert_eq!(
        aead::open_blob(&key, aad, &blob)
            .expect("open_blob")
            .as_slice(),
        msg
    );
    assert!(aead::open_blob(&key, aad, data).is_err());
}

/// NIP-46 transport decryption as `Custody::transport_open` does it, with fixed keys.
///
/// The first byte picks the case: an arbitrary payload (lossy UTF-8 of the rest) must be
/// refused or, for NIP-04 only, which has no MAC, decrypt to some text; a payload the peer
/// encrypted to the bunker (NIP-44 or NIP-04, at most 70 000 bytes of the input as
/// plaintext) must open to its plaintext in its scheme; and a NIP-44 payload with one
/// character changed must be refused or (a base64 change that leaves the bytes intact)
/// open to the same plaintext.
pub fn transport_decrypt(data: &[u8]) {
    let [bunker, peer, _] = keys();
    let (mode, rest) = match data {
        [m, rest @ ..] => (*m, rest),
        [] => (0, data),
    };
    // Plaintexts past NIP-44's limit (65 535 bytes) only slow the round trips down.
    let plain_text = || String::from_utf8_lossy(&rest[..rest.len().min(70_000)]);
    let open = |content: &str| {
        open_payload(
            None,
            KeyId::from_uuid(uuid::Uuid::from_u128(1)),
            bunker,
            &peer.public_key(),
            content,
        )
    };
    match mode % 4 {
        0 => {
            if let Ok((scheme, _)) = open(&String::from_utf8_lossy(rest)) {
                assert_eq!(
                    scheme,
                    TransportScheme::Nip04,
                    "a forged NIP-44 payload opened"
                );
            }
        }
        1 => {
            let text = plain_text();
            let Ok(payload) = nip44::encrypt(
                peer.secret_key(),
                &bunker.public_key(),
                text.as_bytes(),
                nip44::Version::V2,
            ) else {
                return; // empty or too long for NIP-44
            };
            let opened = open(&payload).expect("a NIP-44 payload from the peer opens");
            assert_eq!(opened, (TransportScheme::Nip44, text.into_owned()));
        }
        2 => {
            let text = plain_text();
            let payload = nip04::encrypt(peer.secret_key(), &bunker.public_key(), text.as_bytes())
                .expect("NIP-04 encrypts any text");
            let opened = open(&payload).expect("a NIP-04 payload from the peer opens");
            assert_eq!(opened, (TransportScheme::Nip04, text.into_owned()));
        }
        _ => {
            // `mode` and the first two bytes choose a position and a replacement.
            let (pick, plain) = take(&rest[..rest.len().min(70_000)], 2);
            let plain = String::from_utf8_lossy(plain);
            let Ok(payload) = nip44::encrypt(
                peer.secret_key(),
                &bunker.public_key(),
                plain.as_bytes(),
                nip44::Version::V2,
            ) else {
                return;
            };
            let at = usize::from(u16::from_le_bytes([pick[0], pick[1]])) % payload.len();
            let mut bytes = payload.into_bytes();
            const ALPHABET: &[u8] =
                b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=?#";
            bytes[at] = ALPHABET[usize::from(mode / 4) % ALPHABET.len()];
            let tampered = String::from_utf8(bytes).expect("ASCII");
            if let Ok((_, opened)) = open(&tampered) {
                assert_eq!(
                    opened, plain,
                    "a tampered NIP-44 payload opened to other text"
                );
            }
        }
    }
}

/// Permissions as the store or the HTTP API reads them: a typed list when the JSON is one
/// (the API path), else element by element with unreadable ones kept as `Unrecognized`
/// (the store's path, see keycast-storage `rows.rs`).
fn read_permissions(json: &str) -> Vec<Permission> {
    if let Ok(typed) = serde_json::from_str::<Vec<Permission>>(json) {
        // The stored form reads back as the same list.
        let stored = serde_json::Value::from(
            typed
                .iter()
                .map(Permission::to_stored_value)
                .collect::<Vec<_>>(),
        )
        .to_string();
        assert_eq!(stored_permissions(&stored), typed, "stored as {stored}");
        return typed;
    }
    stored_permissions(json)
}

fn stored_permissions(json: &str) -> Vec<Permission> {
    match serde_json::from_str::<Vec<serde_json::Value>>(json) {
        Ok(values) => values
            .iter()
            .map(|v| Permission::from_stored_json(&v.to_string()))
            .collect(),
        Err(_) => vec![Permission::from_stored_json(json)],
    }
}

/// The request part of a policy input: `selector kind_lo kind_hi now[4] text…`.
fn request_from(data: &[u8], me: PublicKey, other: PublicKey) -> (Request, Timestamp) {
    let (head, rest) = take(data, 7);
    let text = String::from_utf8_lossy(rest).into_owned();
    let peer = if head[0] & 0x10 == 0 { other } else { me };
    let now = Timestamp::from(u64::from(u32::from_le_bytes([
        head[3], head[4], head[5], head[6],
    ])));
    let request = match head[0] % 6 {
        0 => Request::GetPublicKey,
        1 => Request::SignEvent(EventTemplate::new(
            Kind::from(u16::from_le_bytes([head[1], head[2]])),
            text,
        )),
        2 => Request::Nip44Encrypt {
            peer,
            plaintext: text,
        },
        3 => Request::Nip44Decrypt {
            peer,
            ciphertext: text,
        },
        4 => Request::Nip04Encrypt {
            peer,
            plaintext: text,
        },
        _ => Request::Nip04Decrypt {
            peer,
            ciphertext: text,
        },
    };
    (request, now)
}

/// A fresh in-memory store holding one authorization under a policy of `permissions`
/// (stored unvalidated, as a row may be), and a fresh `PolicyAuthorizer` deciding `request`.
fn authorize_fresh(
    permissions: &[Permission],
    request: &Request,
    now: Timestamp,
) -> Result<Decision, String> {
    let [me, _, bunker] = keys();
    let store = Arc::new(MemoryKeyStore::new());
    let tenant = Tenant::new(TenantName::parse("fuzz").expect("tenant name"));
    let label = Label::parse("fuzz").expect("label");
    let dummy = Envelope {
        format_version: FORMAT_VERSION,
        wrapped_dek: Wrapped {
            kek: KekRef {
                provider: "fuzz".into(),
                key_id: "fuzz".into(),
                version: 1,
            },
            blob: Vec::new(),
        },
        nonce: [0; NONCE_LEN],
        ciphertext: Vec::new(),
    };
    let key = |kind, pubkey| StoredKey {
        id: KeyId::random(),
        tenant_id: tenant.id,
        owner: None,
        team: None,
        kind,
        pubkey,
        name: label.clone(),
        envelope: dummy.clone(),
        created_at: Timestamp::from(0),
    };
    let user_key = key(KeyKind::User, me.public_key());
    let bunker_key = key(KeyKind::Bunker, bunker.public_key());
    let policy = Policy {
        id: PolicyId::random(),
        tenant_id: tenant.id,
        owner: None,
        team: None,
        name: label.clone(),
        permissions: permissions.to_vec(),
        version: 1,
    };
    let auth = Authorization {
        id: AuthorizationId::random(),
        tenant_id: tenant.id,
        user_id: crate::ids::UserId::random(),
        key_id: user_key.id,
        bunker_key_id: bunker_key.id,
        bunker_pubkey: bunker_key.pubkey,
        connect_secret: None,
        relays: Vec::new(),
        policy_id: policy.id,
        label,
        expires_at: None,
        revoked_at: None,
        client_pubkeys: Vec::new(),
        uses: 0,
        version: 1,
        created_at: Timestamp::from(0),
    };
    ready(async {
        store.create_tenant(&tenant).await?;
        store.insert_key(&user_key).await?;
        store.insert_key(&bunker_key).await?;
        store.insert_policy(&policy).await?;
        store.insert_authorization(&auth).await
    })
    .expect("in-memory set-up");
    let authorizer = PolicyAuthorizer::new(store.clone());
    let ctx = AuthContext {
        tenant_id: tenant.id,
        key_id: user_key.id,
        key_pubkey: me.public_key(),
        authorization: Some(&auth),
        policy: Some(&policy),
        now,
    };
    let decided = ready(authorizer.authorize(&ctx, request)).map_err(|e| e.to_string());
    // The NIP-46 fast path's decision, on another fresh authorizer: the same, where it
    // decides at all.
    if let Some(fast) = PolicyAuthorizer::new(store).authorize_now(&ctx, request) {
        assert_eq!(
            fast.map_err(|e| e.to_string()),
            decided,
            "authorize_now disagrees with authorize"
        );
    }
    decided
}

/// Policy evaluation: permissions JSON, then `0xFF`, then a request (see `request_from`).
///
/// Every permission's stateless rule and the whole `PolicyAuthorizer` (fresh, so rate and
/// use limits have room) decide; neither may panic, both are deterministic, and the
/// authorizer allows exactly when every permission allows (AND) and no limit is zero; its
/// `authorize_now`, where it decides, decides the same.
pub fn policy(data: &[u8]) {
    let (json, req) = match data.iter().position(|b| *b == SEP) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let permissions = read_permissions(&String::from_utf8_lossy(json));
    let [me, other, _] = keys();
    let (request, now) = request_from(req, me.public_key(), other.public_key());
    let _ = format!("{request:?} {permissions:?}");

    let ctx = AuthContext {
        tenant_id: TenantId::from_uuid(uuid::Uuid::from_u128(2)),
        key_id: KeyId::from_uuid(uuid::Uuid::from_u128(1)),
        key_pubkey: me.public_key(),
        authorization: None,
        policy: None,
        now,
    };
    let rules = || -> Vec<RuleVerdict> {
        permissions
            .iter()
            .map(|p| evaluate(p, &ctx, &request, &compile_uncached))
            .collect()
    };
    let verdicts = rules();
    assert_eq!(verdicts, rules(), "rules are deterministic");

    let decision = authorize_fresh(&permissions, &request, now);
    assert_eq!(
        decision,
        authorize_fresh(&permissions, &request, now),
        "the authorizer is deterministic"
    );
    let every_rule_allows = verdicts.iter().all(|v| *v == RuleVerdict::Allow);
    // A fresh authorizer has no approval desk, so require_approval denies.
    let limits_have_room = request.method() == Method::GetPublicKey
        || !permissions.iter().any(|p| {
            matches!(
                p,
                Permission::RateLimit { per_minute: 0 }
                    | Permission::MaxUses { max: 0 }
                    | Permission::RequireApproval
            )
        });
    assert_eq!(
        decision == Ok(Decision::Allow),
        every_rule_allows && limits_have_room,
        "{decision:?} for {permissions:?} and {request:?}, rules said {verdicts:?}"
    );
    if permissions.is_empty() {
        // An empty stored list allows (AND of nothing); Policy::new refuses to make one.
        let name = Label::parse("p").expect("label");
        assert!(Policy::new(ctx.tenant_id, name, permissions).is_err());
    }
}
