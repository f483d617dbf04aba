#![no_main]
//! Untrusted NIP-46 text: decrypted requests, `perms` strings, `bunker://` and
//! `nostrconnect://` URIs. Parsers must never panic; a request they refuse is answered with
//! its id when one can be read, and dropped otherwise.

use keycast_core::nostr::Keys;
use keycast_nip46::perms;
use keycast_nip46::{
    connect_target_ok, BunkerUri, Command, Nip46Request, Nip46Response, NostrConnectUri,
    MAX_ID_BYTES, MAX_REQUEST_BYTES,
};
use serde_json::Value;

/// The id a serialised reply carries.
fn wire_id(reply: &Nip46Response) -> Option<String> {
    let v: Value = serde_json::from_str(&reply.to_json()).expect("replies are JSON");
    v["id"].as_str().map(str::to_owned)
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    // Invalid UTF-8 becomes U+FFFD; a 0xF5 prefix amplifies (see keycast_fuzz::text).
    let text = keycast_fuzz::text(data);

    match Nip46Request::parse(&text) {
        Ok(req) => {
            assert!(text.len() <= MAX_REQUEST_BYTES);
            assert!(!req.id.is_empty() && req.id.len() <= MAX_ID_BYTES);
            // Debug must not fail (it hides content) and the method name must round-trip
            // through a reply unchanged.
            let _ = format!("{req:?}");
            let method = req.command.method().to_owned();
            let reply = Nip46Response::ok(req.id.clone(), method.clone());
            assert_eq!(wire_id(&reply).as_deref(), Some(req.id.as_str()));
            let again = Nip46Request::parse(&text).expect("parsing is deterministic");
            assert_eq!(again, req);
            if let Command::Connect {
                remote,
                perms: Some(p),
                ..
            } = &req.command
            {
                let keys =
                    Keys::parse("0000000000000000000000000000000000000000000000000000000000000001")
                        .expect("key");
                let _ = connect_target_ok(remote, &keys.public_key(), &keys.public_key());
                if let Ok(entries) = perms::parse(p) {
                    assert!(!perms::to_policy(&entries).permissions.is_empty());
                }
            }
        }
        Err(e) => {
            let _ = e.to_string();
            match (e.reply(), e.request_id()) {
                (Some(reply), Some(id)) => {
                    assert!(reply.is_error());
                    assert_eq!(reply.id, id);
                    assert_eq!(wire_id(&reply).as_deref(), Some(id));
                }
                (None, None) => {}
                (reply, id) => panic!("reply {reply:?} and request id {id:?} disagree"),
            }
        }
    }

    if let Ok(entries) = perms::parse(&text) {
        let mapping = perms::to_policy(&entries);
        assert!(!mapping.permissions.is_empty());
    }

    if let Ok(uri) = BunkerUri::parse(&text) {
        let _ = format!("{uri:?}");
        // Whatever `to_uri` agrees to write must read back as the same value.
        if let Ok(written) = uri.to_uri() {
            assert_eq!(BunkerUri::parse(&written).as_ref(), Ok(&uri));
        }
    }

    if let Ok(uri) = NostrConnectUri::parse(&text) {
        let _ = format!("{uri:?}");
        assert!(!uri.relays.is_empty());
    }
});
