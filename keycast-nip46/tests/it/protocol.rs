//! Table-driven tests of the NIP-46 protocol layer.

use keycast_core::nostr::{PublicKey, RelayUrl};
use keycast_core::Permission;
use keycast_nip46::connect_target_ok;
use keycast_nip46::perms::{self, to_policy};
use keycast_nip46::MAX_REQUEST_BYTES;
use keycast_nip46::{
    BunkerUri, Command, Error, Gap, Nip46Request, Nip46Response, NostrConnectUri, PermEntry,
    PermMethod, Scheme,
};
use proptest::prelude::*;

// x-coordinates of 1·G, 2·G and 3·G: valid keys with no secret needed.
const SIGNER: &str = "79be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798";
const USER: &str = "c6047f9441ed7d6d3045406e95c07cd85c778e4b8cef3ca7abac09b95c709ee5";
const OTHER: &str = "f9308a019258c31049344f85f89d5229b531c845836f99b08601f113bce036f9";

fn pk(hex: &str) -> PublicKey {
    PublicKey::from_hex(hex).expect("test key")
}

fn req(id: &str, method: &str, params: serde_json::Value) -> String {
    serde_json::json!({"id": id, "method": method, "params": params}).to_string()
}

#[test]
fn good_requests_parse() {
    let template = r#"{"kind":1,"content":"héllo 🌍","tags":[["t","x"]],"created_at":1700000000}"#;
    let cases: Vec<(String, &str)> = vec![
        (req("1", "connect", serde_json::json!([SIGNER])), "connect"),
        (
            req(
                "2",
                "connect",
                serde_json::json!([SIGNER, "s3cret", "sign_event:1"]),
            ),
            "connect",
        ),
        (
            req("3", "connect", serde_json::json!(["", null, ""])),
            "connect",
        ),
        (
            req("4", "get_public_key", serde_json::json!([])),
            "get_public_key",
        ),
        (r#"{"id":"5","method":"ping"}"#.to_owned(), "ping"),
        (
            req("6", "sign_event", serde_json::json!([template])),
            "sign_event",
        ),
        (
            req("7", "nip04_encrypt", serde_json::json!([USER, "hi"])),
            "nip04_encrypt",
        ),
        (
            req(
                "8",
                "nip04_decrypt",
                serde_json::json!([USER, "YQ==?iv=YQ=="]),
            ),
            "nip04_decrypt",
        ),
        (
            req("9", "nip44_encrypt", serde_json::json!([USER, "日本語"])),
            "nip44_encrypt",
        ),
        (
            req("10", "nip44_decrypt", serde_json::json!([USER, "AgAA"])),
            "nip44_decrypt",
        ),
        (
            req("11", "switch_relays", serde_json::json!([])),
            "switch_relays",
        ),
        (req("12", "logout", serde_json::json!([])), "logout"),
        (
            req("13", "get_relays", serde_json::json!([1, 2])),
            "get_relays",
        ),
        (
            req(
                "14",
                "sign_event",
                serde_json::json!([{"kind":1,"content":"x"}]),
            ),
            "sign_event",
        ),
    ];
    for (json, method) in cases {
        let parsed = Nip46Request::parse(&json).unwrap_or_else(|e| panic!("{json}: {e}"));
        assert_eq!(parsed.command.method(), method, "{json}");
    }
}

#[test]
fn params_are_kept_exactly() {
    let template = r#"{"kind":1,"content":"héllo 🌍","tags":[["t","x"]],"created_at":1700000000}"#;
    let r = Nip46Request::parse(&req("a", "sign_event", serde_json::json!([template])))
        .expect("parses");
    let Command::SignEvent(t) = r.command else {
        panic!("not sign_event")
    };
    assert_eq!(t.content, "héllo 🌍");
    assert_eq!(t.created_at.map(|c| c.as_secs()), Some(1_700_000_000));
    assert_eq!(t.tags.len(), 1);

    let r = Nip46Request::parse(&req(
        "b",
        "nip44_encrypt",
        serde_json::json!([USER, "日本語 🗝"]),
    ))
    .expect("parses");
    assert_eq!(
        r.command,
        Command::Nip44Encrypt {
            peer: pk(USER),
            plaintext: "日本語 🗝".to_owned()
        }
    );

    let r =
        Nip46Request::parse(&req("c", "connect", serde_json::json!(["", "", ""]))).expect("parses");
    assert_eq!(
        r.command,
        Command::Connect {
            remote: String::new(),
            secret: None,
            perms: None
        }
    );
}

#[test]
fn bad_requests_keep_the_id_when_readable() {
    let big = "x".repeat(MAX_REQUEST_BYTES);
    let cases: Vec<(String, Option<&str>)> = vec![
        (String::new(), None),
        ("not json".to_owned(), None),
        ("[]".to_owned(), None),
        (r#"{"method":"ping","params":[]}"#.to_owned(), None),
        (r#"{"id":7,"method":"ping","params":[]}"#.to_owned(), None),
        (r#"{"id":"","method":"ping","params":[]}"#.to_owned(), None),
        (req(&"i".repeat(300), "ping", serde_json::json!([])), None),
        (
            req("big", "nip44_encrypt", serde_json::json!([USER, big])),
            None,
        ),
        (r#"{"id":"m","method":5,"params":[]}"#.to_owned(), Some("m")),
        (
            r#"{"id":"p","method":"ping","params":"x"}"#.to_owned(),
            Some("p"),
        ),
        (req("a", "ping", serde_json::json!(["extra"])), Some("a")),
        (req("b", "connect", serde_json::json!([])), Some("b")),
        (req("c", "connect", serde_json::json!([1])), Some("c")),
        (req("d", "connect", serde_json::json!(["", 5])), Some("d")),
        (
            req("e", "connect", serde_json::json!(["", "", "", ""])),
            Some("e"),
        ),
        (req("f", "sign_event", serde_json::json!([])), Some("f")),
        (req("g", "sign_event", serde_json::json!(["{}"])), Some("g")),
        (req("h", "sign_event", serde_json::json!([42])), Some("h")),
        (
            req(
                "i",
                "sign_event",
                serde_json::json!(["{\"kind\":1,\"content\":\"\",\"pubkey\":\"zz\"}"]),
            ),
            Some("i"),
        ),
        (
            req("j", "nip44_encrypt", serde_json::json!([USER])),
            Some("j"),
        ),
        (
            req("k", "nip44_encrypt", serde_json::json!(["zz", "hi"])),
            Some("k"),
        ),
        (
            req("l", "nip04_decrypt", serde_json::json!([USER, 5])),
            Some("l"),
        ),
        (
            req("ü", "nip04_encrypt", serde_json::json!([USER, "a", "b"])),
            Some("ü"),
        ),
        (
            req(
                "n",
                "nip44_decrypt",
                serde_json::json!([
                    "ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
                    "AgAA"
                ]),
            ),
            Some("n"),
        ),
    ];
    for (json, id) in cases {
        let err = Nip46Request::parse(&json).expect_err("must be refused");
        assert_eq!(err.request_id(), id, "{err}");
        match err.reply() {
            Some(reply) => {
                assert!(reply.is_error());
                let v: serde_json::Value = serde_json::from_str(&reply.to_json()).expect("json");
                assert_eq!(v["id"], serde_json::json!(id));
                assert!(v.get("result").is_none(), "error reply with a result");
                assert!(!v["error"].as_str().unwrap_or("").is_empty());
            }
            None => assert!(id.is_none()),
        }
    }
}

#[test]
fn oversized_is_typed() {
    let big = " ".repeat(MAX_REQUEST_BYTES + 1);
    assert!(matches!(
        Nip46Request::parse(&big),
        Err(Error::TooLarge { .. })
    ));
}

#[test]
fn unknown_method_keeps_its_id() {
    let r = Nip46Request::parse(r#"{"id":"xyz","method":"teleport","params":[]}"#).expect("parses");
    assert_eq!(r.id, "xyz");
    assert_eq!(r.command, Command::Unknown("teleport".to_owned()));
    let reply = Nip46Response::error(&r.id, "unsupported method").to_json();
    assert_eq!(reply, r#"{"error":"unsupported method","id":"xyz"}"#);
}

#[test]
fn connect_first_param_variants() {
    let (signer, user) = (pk(SIGNER), pk(USER));
    let npub = keycast_core::nostr::ToBech32::to_bech32(&user).expect("npub");
    for (remote, ok) in [
        ("", true),
        ("  ", true),
        (SIGNER, true),
        (USER, true),
        (npub.as_str(), true),
        (OTHER, false),
        ("garbage", false),
    ] {
        let json = req("c", "connect", serde_json::json!([remote, "s"]));
        let r = Nip46Request::parse(&json).expect("connect parses whatever the first param");
        let Command::Connect { remote: got, .. } = r.command else {
            panic!("not connect")
        };
        assert_eq!(got, remote);
        assert_eq!(connect_target_ok(&got, &signer, &user), ok, "{remote}");
    }
}

#[test]
fn responses() {
    assert_eq!(
        Nip46Response::auth_url("1", "https://keycast.example/approve/abc").to_json(),
        r#"{"error":"https://keycast.example/approve/abc","id":"1","result":"auth_url"}"#
    );
    let relays = [RelayUrl::parse("wss://relay.example.com").expect("relay")];
    let r = Nip46Response::switch_relays("2", Some(&relays));
    assert_eq!(r.result.as_deref(), Some(r#"["wss://relay.example.com"]"#));
    assert_eq!(
        Nip46Response::switch_relays("2", None).to_json(),
        r#"{"id":"2","result":"null"}"#
    );
    assert_eq!(
        Nip46Response::ok("3", "ack").to_json(),
        r#"{"id":"3","result":"ack"}"#
    );
}

#[test]
fn scheme_detection() {
    assert_eq!(Scheme::detect("abc?iv=def"), Scheme::Nip04);
    assert_eq!(Scheme::detect("AgAAAA=="), Scheme::Nip44);
}

#[test]
fn perms_parse_table() {
    let sign = |kind| PermEntry {
        method: PermMethod::SignEvent,
        kind,
    };
    let bare = |method| PermEntry { method, kind: None };
    let good: Vec<(&str, Vec<PermEntry>)> = vec![
        ("", vec![]),
        (" , ,", vec![]),
        ("sign_event", vec![sign(None)]),
        (
            "sign_event:1,sign_event:65535",
            vec![sign(Some(1)), sign(Some(65535))],
        ),
        (
            " nip44_encrypt , nip04_decrypt,",
            vec![
                bare(PermMethod::Nip44Encrypt),
                bare(PermMethod::Nip04Decrypt),
            ],
        ),
        (
            "get_relays",
            vec![bare(PermMethod::Other("get_relays".to_owned()))],
        ),
    ];
    for (input, want) in good {
        assert_eq!(perms::parse(input).expect(input), want, "{input}");
    }
    let long = "ping,".repeat(1000);
    for bad in [
        "sign_event:",
        "sign_event:x",
        "sign_event:65536",
        "sign_event:-1",
        "nip44_encrypt:4",
        ":1",
        "Sign_Event",
        "sign event",
        "sign_évent",
        "🔑",
        long.as_str(),
    ] {
        assert!(
            matches!(perms::parse(bad), Err(Error::InvalidPerms { .. })),
            "{bad} accepted"
        );
    }
}

#[test]
fn perms_map_onto_policy() {
    let map = |s: &str| to_policy(&perms::parse(s).expect(s));
    let kinds = |k: &[u16]| Permission::AllowedKinds {
        kinds: k.iter().copied().collect(),
    };

    let m =
        map("sign_event:1,sign_event:7,nip44_encrypt,nip44_decrypt,nip04_encrypt,nip04_decrypt");
    assert_eq!(m.permissions, vec![kinds(&[1, 7])]);
    assert!(m.gaps.is_empty());

    let m = map("sign_event,sign_event:1,nip44_encrypt,nip44_decrypt");
    assert_eq!(m.permissions, vec![Permission::FullAccess]);
    assert_eq!(m.gaps, vec![Gap::OtherSchemeAllowed]);

    let m = map("nip44_decrypt,nip04_decrypt,get_public_key");
    assert_eq!(m.permissions, vec![Permission::DecryptOnly]);
    assert!(m.gaps.is_empty());

    let m = map("nip44_encrypt");
    assert_eq!(m.permissions, vec![Permission::FullAccess]);
    assert_eq!(
        m.gaps,
        vec![
            Gap::SigningAllowed,
            Gap::DecryptAllowed,
            Gap::OtherSchemeAllowed
        ]
    );

    let m = map("sign_event:1,nip04_decrypt,nip44_decrypt");
    assert_eq!(m.permissions, vec![kinds(&[1])]);
    assert_eq!(m.gaps, vec![Gap::EncryptAllowed]);

    let m = map("");
    assert_eq!(m.permissions, vec![Permission::FullAccess]);
    assert_eq!(m.gaps, vec![Gap::SigningAllowed, Gap::CryptoAllowed]);

    let m = map("sign_event:1,get_relays");
    assert_eq!(
        m.gaps,
        vec![
            Gap::CryptoAllowed,
            Gap::UnknownMethod("get_relays".to_owned())
        ]
    );
    for p in &m.permissions {
        p.validate().expect("mapped permissions are valid");
    }
}

#[test]
fn bunker_uri_round_trips_with_a_distinct_signer_key() {
    let relays = vec![
        RelayUrl::parse("wss://relay.example.com").expect("relay"),
        RelayUrl::parse("wss://nos.example.org/path").expect("relay"),
    ];
    let uri = BunkerUri {
        signer: pk(SIGNER),
        relays: relays.clone(),
        secret: Some("0123abcd".to_owned()),
    };
    assert_ne!(pk(SIGNER), pk(USER));
    let text = uri.to_uri().expect("issues");
    assert!(
        text.starts_with(&format!("bunker://{SIGNER}?relay=")),
        "{text}"
    );
    assert!(!text.contains(USER));
    assert_eq!(BunkerUri::parse(&text).expect("parses"), uri);
    // And nostr's own parser agrees.
    let theirs = keycast_core::nostr::nips::nip46::NostrConnectURI::parse(&text).expect("nostr");
    assert_eq!(theirs.remote_signer_public_key(), Some(&pk(SIGNER)));
    assert_eq!(theirs.relays(), relays.as_slice());
    assert_eq!(theirs.secret(), Some("0123abcd"));
    assert!(!format!("{uri:?}").contains("0123abcd"));

    for secret in ["", "a&b", "a#b", "a%20b", "a b", "ü", "a+b"] {
        let bad = BunkerUri {
            secret: Some(secret.to_owned()),
            ..uri.clone()
        };
        assert!(
            matches!(bad.to_uri(), Err(Error::InvalidUri { .. })),
            "{secret}"
        );
    }
    if let Ok(relay) = RelayUrl::parse("wss://r.example/?a=1&b=2") {
        let bad = BunkerUri {
            relays: vec![relay],
            ..uri.clone()
        };
        assert!(bad.to_uri().is_err(), "relay with its own query accepted");
    }
    let no_relays = BunkerUri {
        relays: vec![],
        ..uri
    };
    assert!(no_relays.to_uri().is_err());
    for bad in [
        "",
        "bunker://",
        "bunker://zz?relay=wss://r.example",
        "https://x.example",
    ] {
        assert!(BunkerUri::parse(bad).is_err(), "{bad}");
    }
}

#[test]
fn nostrconnect_uris() {
    let uri = format!(
        "nostrconnect://{USER}?relay=wss%3A%2F%2Frelay.example.com&relay=wss://two.example&secret=s3&perms=sign_event%3A1%2Cnip44_encrypt&name=My%20App%20%E2%9C%A8&url=https%3A%2F%2Fapp.example&image=https%3A%2F%2Fapp.example%2Fi.png"
    );
    let p = NostrConnectUri::parse(&uri).expect("parses");
    assert_eq!(p.client, pk(USER));
    assert_eq!(p.relays.len(), 2);
    assert_eq!(p.secret.as_deref(), Some("s3"));
    assert_eq!(p.perms.len(), 2);
    assert_eq!(p.name.as_deref(), Some("My App ✨"));
    assert_eq!(
        p.url.as_ref().map(|u| u.as_str()),
        Some("https://app.example/")
    );
    assert_eq!(
        p.image.as_ref().map(|u| u.as_str()),
        Some("https://app.example/i.png")
    );
    assert!(!format!("{p:?}").contains("s3\""));

    let legacy = format!(
        "nostrconnect://{USER}?relay=wss://relay.example.com&metadata=%7B%22name%22%3A%22Old%22%2C%22url%22%3A%22https%3A%2F%2Fold.example%22%2C%22icons%22%3A%5B%22https%3A%2F%2Fold.example%2Fa.png%22%5D%7D"
    );
    let p = NostrConnectUri::parse(&legacy).expect("legacy parses");
    assert_eq!(p.name.as_deref(), Some("Old"));
    assert_eq!(p.secret, None);
    assert_eq!(
        p.image.as_ref().map(|u| u.as_str()),
        Some("https://old.example/a.png")
    );

    // Cosmetic links that do not parse are dropped, not fatal.
    let p = NostrConnectUri::parse(&format!(
        "nostrconnect://{USER}?relay=wss://r.example&url=javascript:alert(1)&image=nope"
    ))
    .expect("parses");
    assert_eq!((p.url, p.image), (None, None));

    let long = format!(
        "nostrconnect://{USER}?relay=wss://r.example&name={}",
        "a".repeat(9000)
    );
    for bad in [
        String::new(),
        format!("bunker://{USER}?relay=wss://r.example"),
        format!("nostrconnect://{USER}"),
        format!("nostrconnect://{USER}?secret=x"),
        "nostrconnect://zz?relay=wss://r.example".to_owned(),
        format!("nostrconnect://{USER}?relay=notaurl"),
        format!("nostrconnect://{USER}?relay=wss://r.example&perms=sign_event:x"),
        format!("nostrconnect://{USER}?relay=wss://r.example&metadata=%7B"),
        long,
    ] {
        assert!(
            matches!(
                NostrConnectUri::parse(&bad),
                Err(Error::InvalidUri { .. } | Error::InvalidPerms { .. })
            ),
            "{bad} accepted"
        );
    }
}

proptest! {
    #[test]
    fn request_parser_never_panics(s in "\\PC*") {
        let _ = Nip46Request::parse(&s);
    }

    #[test]
    fn shaped_requests_never_panic(
        id in "\\PC{0,20}",
        method in prop::sample::select(vec![
            "connect", "sign_event", "nip44_encrypt", "nip04_decrypt", "ping", "logout", "x",
        ]),
        params in prop::collection::vec("\\PC{0,80}", 0..4),
    ) {
        let json = req(&id, method, serde_json::json!(params));
        if let Err(e) = Nip46Request::parse(&json) {
            // Whenever the id was usable, the error still names it.
            if !id.is_empty() {
                prop_assert_eq!(e.request_id(), Some(id.as_str()));
            }
        }
    }

    #[test]
    fn perms_and_uri_parsers_never_panic(s in "\\PC*") {
        let _ = perms::parse(&s);
        let _ = NostrConnectUri::parse(&s);
        let _ = BunkerUri::parse(&s);
    }
}
