//! Real client libraries (Node) against the bunker through an in-process relay.
//!
//! Needs `node` and `npm install` in `tests/interop` (scripts/test does both and sets
//! `KEYCAST_TEST_NODE_INTEROP=1`). Without it the tests print that they were skipped.

use crate::common;

use std::path::PathBuf;
use std::time::Duration;

use keycast_core::nostr::{Event, JsonUtil, Kind};
use keycast_core::{Label, NewAuthorization};
use keycast_nip46::{NostrConnectUri, PermEntry, PermMethod};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};

fn interop_dir() -> Option<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/interop");
    if std::env::var("KEYCAST_TEST_NODE_INTEROP").as_deref() == Ok("1")
        && dir.join("node_modules").is_dir()
    {
        return Some(dir);
    }
    keycast_test_support::missing_service(
        "KEYCAST_TEST_NODE_INTEROP=1 with npm-installed tests/interop is not set (run npm install in tests/interop)",
    )
}

/// `node <script> <arg>` in the interop folder.
fn node(dir: &std::path::Path, script: &str, arg: &str) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new("node");
    cmd.arg(script).arg(arg).current_dir(dir).kill_on_drop(true);
    cmd
}

/// The last stdout line of a finished Node script, as JSON.
fn json_result(script: &str, stdout: &str, stderr: &[u8]) -> serde_json::Value {
    let line = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(line).unwrap_or_else(|e| {
        panic!(
            "{script}: no JSON result ({e}); stdout: {stdout}; stderr: {}",
            String::from_utf8_lossy(stderr)
        )
    })
}

/// Runs a Node script with the bunker URI and returns its one-line JSON result.
async fn run_node(dir: &std::path::Path, script: &str, uri: &str) -> serde_json::Value {
    let out = tokio::time::timeout(Duration::from_secs(90), node(dir, script, uri).output())
        .await
        .expect("node finished in time")
        .expect("node runs");
    json_result(script, &String::from_utf8_lossy(&out.stdout), &out.stderr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nostr_tools_bunker_signer() {
    let Some(dir) = interop_dir() else { return };
    let s = common::setup().await;
    let r = run_node(&dir, "nostr_tools.mjs", &s.uri).await;
    assert!(r.get("failure").is_none(), "nostr-tools failed: {r}");
    assert_eq!(
        r["pubkey"],
        s.user.to_hex(),
        "get_public_key answers the user key"
    );

    let event = Event::from_json(r["event"].to_string()).expect("signed event");
    event
        .verify()
        .expect("nostr verifies the nostr-tools-returned event");
    assert_eq!(event.pubkey, s.user);
    assert_eq!(event.kind, Kind::TextNote);
    assert_eq!(
        event.created_at.as_secs(),
        1_700_000_000,
        "created_at preserved"
    );
    assert_eq!(
        event.content, "hello from nostr-tools ✓",
        "content preserved"
    );
    let tags: Vec<Vec<String>> = event.tags.iter().map(|t| t.as_slice().to_vec()).collect();
    assert_eq!(
        tags,
        vec![vec!["t", "keycast"], vec!["e", "abc", "", "root"]],
        "tags preserved"
    );

    assert_eq!(r["nip44_to_peer"], "n44 ✓");
    assert_eq!(r["nip44_from_peer"], "back44");
    assert_eq!(r["nip04_to_peer"], "n04");
    assert_eq!(r["nip04_from_peer"], "back04");
    assert_eq!(r["ping"], true);
    assert_eq!(
        r["switch_relays"],
        format!("[\"{}\"]", s.url.as_str().trim_end_matches('/'))
    );
    assert_eq!(r["logout"], true);
    assert_ne!(
        r["after_logout"], "answered",
        "logout ends the session: {r}"
    );
    s.bunker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ndk_nip46_signer() {
    let Some(dir) = interop_dir() else { return };
    let s = common::setup().await;
    let r = run_node(&dir, "ndk.mjs", &s.uri).await;
    assert!(r.get("failure").is_none(), "NDK failed: {r}");
    assert_eq!(r["pubkey"], s.user.to_hex());
    let event = Event::from_json(r["event"].to_string()).expect("signed event");
    event
        .verify()
        .expect("nostr verifies the NDK-returned event");
    assert_eq!(event.pubkey, s.user);
    assert_eq!(event.content, "hello from NDK");
    s.bunker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nostr_tools_nostrconnect_from_uri() {
    let Some(dir) = interop_dir() else { return };
    let s = common::setup().await;
    let mut child = node(&dir, "nostrconnect.mjs", s.url.as_str())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("node runs");
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));

    // The script prints its URI once it listens for the pairing reply.
    let mut first = String::new();
    tokio::time::timeout(Duration::from_secs(60), stdout.read_line(&mut first))
        .await
        .expect("nostrconnect URI in time")
        .expect("read stdout");
    let shown: serde_json::Value = serde_json::from_str(&first)
        .unwrap_or_else(|e| panic!("first line is not JSON ({e}): {first}"));
    let uri = NostrConnectUri::parse(shown["uri"].as_str().unwrap_or_else(|| panic!("{shown}")))
        .expect("keycast parses the nostr-tools URI");
    assert_eq!(uri.relays, vec![s.url.clone()]);
    assert_eq!(uri.name.as_deref(), Some("keycast interop"));
    assert!(uri.secret.is_some(), "nostr-tools always sends a secret");
    let perm = |method, kind| PermEntry { method, kind };
    assert_eq!(
        uri.perms,
        vec![
            perm(PermMethod::SignEvent, Some(1)),
            perm(PermMethod::Nip44Encrypt, None)
        ]
    );

    let auth = s
        .bunker
        .pair(
            &uri,
            NewAuthorization {
                tenant_id: s.tenant,
                user_id: s.user_id,
                key_id: s.key,
                policy_id: s.policy,
                label: Label::parse("nostrconnect app").expect("label"),
                relays: vec![],
                expires_at: None,
            },
        )
        .await
        .expect("pair");

    let mut rest = String::new();
    tokio::time::timeout(Duration::from_secs(90), stdout.read_to_string(&mut rest))
        .await
        .expect("node finished in time")
        .expect("read stdout");
    let out = child.wait_with_output().await.expect("node exits");
    let r = json_result("nostrconnect.mjs", &rest, &out.stderr);
    assert!(r.get("failure").is_none(), "nostr-tools failed: {r}");
    assert_eq!(
        r["bunker_pubkey"],
        auth.bunker_pubkey.to_hex(),
        "the client talks to the new authorization's bunker key"
    );
    assert_eq!(r["pubkey"], s.user.to_hex());
    let event = Event::from_json(r["event"].to_string()).expect("signed event");
    event
        .verify()
        .expect("nostr verifies the nostr-tools-returned event");
    assert_eq!(event.pubkey, s.user);
    assert_eq!(event.content, "hello from nostrconnect ✓");
    s.bunker.shutdown().await;
}

/// The embedding example's bunker (`SingleUserBunker`: memory store, one key) answers
/// nostr-tools the same way the server's does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nostr_tools_connects_to_a_single_user_bunker() {
    let Some(dir) = interop_dir() else { return };
    let relay = keycast_nip46::testing::TestRelay::with_defaults()
        .await
        .expect("relay");
    let user = keycast_core::nostr::Keys::generate();
    let served = keycast_nip46::SingleUserBunker::start(
        user.secret_key().clone(),
        std::sync::Arc::new(keycast_core::InsecureTestKeyManager::new()),
        vec![relay.url()],
    )
    .await
    .expect("bunker");
    let r = run_node(&dir, "nostr_tools.mjs", &served.uri).await;
    assert!(r.get("failure").is_none(), "nostr-tools failed: {r}");
    assert_eq!(r["pubkey"], user.public_key().to_hex());
    let event = Event::from_json(r["event"].to_string()).expect("signed event");
    event.verify().expect("a valid signature");
    assert_eq!(event.pubkey, user.public_key());
    assert_eq!(r["nip44_from_peer"], "back44");
    served.bunker.shutdown().await;
}
