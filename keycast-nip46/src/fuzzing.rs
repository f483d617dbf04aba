//! Entry points for the cargo-fuzz targets in `fuzz/`. Not a public API.

use nostr::nips::nip46::{NostrConnectMessage, NostrConnectURI};
use nostr::{JsonUtil, Keys, RelayUrl, Url};
use serde_json::Value;

use crate::protocol::uri::{parse_relay, BunkerUri, NostrConnectUri, MAX_URI_BYTES};
use crate::Nip46Response;

/// Separates the parts of a structured input; never occurs in UTF-8.
const SEP: u8 = 0xFF;

/// Up to `n` parts of `data` split at [`SEP`], read as lossy UTF-8; missing ones are `None`.
fn parts(data: &[u8], n: usize) -> Vec<Option<String>> {
    let mut out: Vec<Option<String>> = data
        .splitn(n, |b| *b == SEP)
        .map(|p| Some(String::from_utf8_lossy(p).into_owned()))
        .collect();
    out.resize(n, None);
    out
}

/// A reply as a NIP-46 client reads it: a JSON object with a string `id` and `result` and
/// `error` each a string, `null` or absent; other keys are ignored. keycast never reads
/// replies; this is the reader its replies are written for.
fn read_reply(text: &str) -> Option<Nip46Response> {
    let Ok(Value::Object(obj)) = serde_json::from_str::<Value>(text) else {
        return None;
    };
    let field = |key: &str| match obj.get(key) {
        None | Some(Value::Null) => Some(None),
        Some(Value::String(s)) => Some(Some(s.clone())),
        Some(_) => None,
    };
    Some(Nip46Response {
        id: obj.get("id")?.as_str()?.to_owned(),
        result: field("result")?,
        error: field("error")?,
    })
}

/// What keycast writes must read back as itself, with our reader and with the `nostr`
/// crate's (the one nostr-connect clients use).
fn check_written(reply: &Nip46Response) {
    let json = reply.to_json();
    assert_eq!(read_reply(&json).as_ref(), Some(reply), "{json}");
    match NostrConnectMessage::from_json(&json) {
        Ok(NostrConnectMessage::Response { id, result, error }) => {
            assert_eq!(id, reply.id);
            assert_eq!(result, reply.result);
            assert_eq!(error, reply.error);
        }
        other => panic!("a client reads {json} as {other:?}"),
    }
}

/// NIP-46 replies (`Nip46Response`), the only NIP-46 response JSON keycast handles: it
/// writes replies and never parses them.
///
/// Arbitrary text read as a client reads a reply must be written back by
/// [`Nip46Response::to_json`] as the same reply; and replies built by each constructor from
/// fuzzer-chosen parts (`id 0xFF result 0xFF error`) must serialise to JSON that both readers
/// read back unchanged, keeping each constructor's promises.
pub fn response(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if let Some(reply) = read_reply(&text) {
        check_written(&reply);
    }

    let p = parts(data, 3);
    let id = p[0].clone().unwrap_or_default();
    let result = p[1].clone();
    let error = p[2].clone();

    let raw = Nip46Response {
        id: id.clone(),
        result: result.clone(),
        error: error.clone(),
    };
    check_written(&raw);

    let ok = Nip46Response::ok(id.clone(), result.clone().unwrap_or_default());
    assert!(!ok.is_error() && ok.error.is_none());
    check_written(&ok);

    let err = Nip46Response::error(id.clone(), error.clone().unwrap_or_default());
    assert!(err.is_error() && !err.is_auth_url());
    let message = err.error.as_deref().unwrap_or_default();
    assert!(
        !message.trim().is_empty(),
        "clients test `error` for truthiness"
    );
    check_written(&err);

    let auth = Nip46Response::auth_url(id.clone(), error.unwrap_or_default());
    assert!(auth.is_auth_url() && !auth.is_error());
    check_written(&auth);

    // `switch_relays` answers with a JSON list of the relays (as keycast accepts them) as a
    // string.
    let relays: Vec<RelayUrl> = result
        .iter()
        .flat_map(|r| r.split(' '))
        .filter_map(|r| parse_relay(r).ok())
        .collect();
    for list in [None, Some(relays.as_slice())] {
        let reply = Nip46Response::switch_relays(id.clone(), list);
        check_written(&reply);
        let written = reply.result.as_deref().unwrap_or_default();
        let back: Option<Vec<String>> = serde_json::from_str(written).expect("a JSON result");
        match (list, back) {
            (None, None) => {}
            (Some(list), Some(back)) => {
                let back: Vec<RelayUrl> = back
                    .iter()
                    .map(|r| RelayUrl::parse(r).expect("a relay URL it wrote"))
                    .collect();
                assert_eq!(back, list);
            }
            (list, back) => panic!("switch_relays {list:?} written as {back:?}"),
        }
    }
}

/// `bunker://` and `nostrconnect://` URIs.
///
/// The text is parsed both ways: a parsed `bunker://` URI that `to_uri` can write must be
/// written so that it parses back to the same value and re-writes to the same text; a parsed
/// `nostrconnect://` URI keeps its promises (relays present and distinct, non-empty trimmed
/// secret and name, http(s) links). Then a `BunkerUri` made of fuzzer-chosen relays and
/// secret (`relays 0xFF secret`, relays separated by spaces) must be written whenever its
/// relays are plain `ws(s)://host[:port]` (root path, no query, user or IPv6 literal), its
/// secret unreserved characters and the URI within `MAX_URI_BYTES`.
pub fn uri(data: &[u8]) {
    let text = String::from_utf8_lossy(data);

    if let Ok(uri) = BunkerUri::parse(&text) {
        let _ = format!("{uri:?}");
        if let Ok(written) = uri.to_uri() {
            assert!(written.starts_with("bunker://"), "{written}");
            let back = BunkerUri::parse(&written).expect("to_uri output parses");
            assert_eq!(back, uri, "{written}");
            assert_eq!(back.to_uri().as_deref(), Ok(written.as_str()));
        }
    }

    if let Ok(uri) = NostrConnectUri::parse(&text) {
        let _ = format!("{uri:?}");
        assert!(!uri.relays.is_empty());
        for (i, r) in uri.relays.iter().enumerate() {
            assert!(!uri.relays[..i].contains(r), "duplicate relay {r}");
            // Stored and sent as text: it must read back as itself.
            assert_eq!(RelayUrl::parse(r.as_str()).as_ref(), Ok(r));
        }
        for s in [&uri.secret, &uri.name].into_iter().flatten() {
            assert!(!s.is_empty() && s.trim() == s, "{s:?}");
        }
        for u in [&uri.url, &uri.image].into_iter().flatten() {
            assert!(matches!(u.scheme(), "http" | "https"), "{u}");
        }
        assert_eq!(NostrConnectUri::parse(&text).as_ref(), Ok(&uri));
    }

    let p = parts(data, 2);
    let relay_text = p[0].clone().unwrap_or_default();
    // More would only be refused as too long, slowly.
    let relays: Vec<RelayUrl> = relay_text
        .split(' ')
        .take(64)
        .filter_map(|r| parse_relay(r).ok())
        .collect();
    let secret = p[1].clone();
    let signer = Keys::parse("0000000000000000000000000000000000000000000000000000000000000001")
        .expect("key")
        .public_key();
    let uri = BunkerUri {
        signer,
        relays,
        secret,
    };
    match uri.to_uri() {
        Ok(written) => assert_eq!(BunkerUri::parse(&written).as_ref(), Ok(&uri), "{written}"),
        Err(e) => {
            let plain_relay = |r: &RelayUrl| {
                let u: &Url = r.into();
                u.path() == "/"
                    && u.query().is_none()
                    && u.fragment().is_none()
                    && u.username().is_empty()
                    && u.password().is_none()
                    && u.host_str().is_some_and(|h| {
                        h.chars()
                            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.'))
                    })
            };
            let plain_secret = uri.secret.as_deref().is_none_or(|s| {
                !s.is_empty()
                    && s.chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | '~'))
            });
            let written = NostrConnectURI::Bunker {
                remote_signer_public_key: uri.signer,
                relays: uri.relays.clone(),
                secret: uri.secret.clone(),
            }
            .to_string();
            assert!(
                uri.relays.is_empty()
                    || !uri.relays.iter().all(plain_relay)
                    || !plain_secret
                    || written.len() > MAX_URI_BYTES,
                "{} relays, first {:?}, secret {:?}: refused: {e}",
                uri.relays.len(),
                uri.relays.first(),
                uri.secret
            );
        }
    }
}
