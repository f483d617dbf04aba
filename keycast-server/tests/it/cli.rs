//! The operator commands, through the real binary: results on stdout, clear errors on
//! stderr with exit code 1, and bad input changes nothing.

use crate::common;

use common::Env;
use keycast_core::nostr::nips::nip49::{EncryptedSecretKey, KeySecurity};
use keycast_core::nostr::{Keys, ToBech32};
use keycast_nip46::BunkerUri;

fn key_lines(env: &Env) -> Vec<String> {
    env.ok(&["key", "list"], "")
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn users_keys_and_authorizations_from_the_command_line() {
    let mut env = Env::new();
    // Never served: the configured relay address is only printed, so any port will do.
    env.relay_port = 7777;
    let user = env.ok(&["user", "add", "alice"], "");
    assert_eq!(user.trim().len(), 36, "prints the user id: {user}");

    let generated = env.ok(&["key", "generate", "--user", "alice"], "");
    let fields: Vec<&str> = generated.split_whitespace().collect();
    assert_eq!(fields.len(), 2, "{generated}");
    assert!(fields[1].starts_with("npub1"), "{generated}");

    let nsec = Keys::generate();
    let out = env.ok(
        &["key", "import", "--user", "alice", "--label", "from-nsec"],
        &format!("{}\n", nsec.secret_key().to_bech32().expect("nsec")),
    );
    assert!(
        out.contains(&nsec.public_key().to_bech32().expect("npub")),
        "{out}"
    );
    let hex = Keys::generate();
    let out = env.ok(
        &["key", "import", "--user", "alice", "--label", "from-hex"],
        &format!("{}\n", hex.secret_key().to_secret_hex()),
    );
    assert!(
        out.contains(&hex.public_key().to_bech32().expect("npub")),
        "{out}"
    );
    let ncrypt = Keys::generate();
    let encrypted =
        EncryptedSecretKey::new(ncrypt.secret_key(), "pass word ✓", 8, KeySecurity::Unknown)
            .expect("ncryptsec")
            .to_bech32()
            .expect("bech32");
    let out = env.ok(
        &[
            "key",
            "import",
            "--user",
            "alice",
            "--label",
            "from-ncryptsec",
        ],
        &format!("{encrypted}\npass word ✓\n"),
    );
    assert!(
        out.contains(&ncrypt.public_key().to_bech32().expect("npub")),
        "{out}"
    );

    let keys = key_lines(&env);
    assert_eq!(keys.len(), 4, "{keys:?}");
    let key_id = fields[0];

    let out = env.ok(
        &[
            "authorization",
            "create",
            "--key",
            key_id,
            "--label",
            "my app",
        ],
        "",
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 1, "the bunker URI alone on stdout: {out:?}");
    let uri = BunkerUri::parse(lines[0]).expect("a bunker URI");
    assert_eq!(
        uri.relays[0].as_str_without_trailing_slash(),
        format!("ws://127.0.0.1:{}", env.relay_port)
    );
    assert!(uri.secret.is_some());

    // The authorization id is on stderr, for revoking.
    let out = env.run(&["authorization", "create", "--key", key_id], "");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let id = stderr
        .lines()
        .find_map(|l| l.strip_prefix("authorization "))
        .expect("authorization id on stderr");
    let revoked = env.ok(&["authorization", "revoke", id], "");
    assert_eq!(revoked.trim(), format!("revoked {id}"));
    // Revoking again is harmless.
    env.ok(&["authorization", "revoke", id], "");

    assert_eq!(env.ok(&["migrate"], "").trim(), "database is up to date");
}

#[test]
fn bad_input_gets_a_clear_error_and_changes_nothing() {
    let env = Env::new();
    env.ok(&["user", "add", "alice"], "");
    env.ok(&["key", "generate", "--user", "alice"], "");
    let before = key_lines(&env);
    let secret = Keys::generate();
    let wrong_password =
        EncryptedSecretKey::new(secret.secret_key(), "right", 8, KeySecurity::Unknown)
            .expect("ncryptsec")
            .to_bech32()
            .expect("bech32");
    // The same payload claiming a scrypt cost of 2^19 (512 MiB): refused before any work.
    let mut costly = EncryptedSecretKey::new(secret.secret_key(), "right", 1, KeySecurity::Unknown)
        .expect("ncryptsec")
        .as_vec();
    costly[1] = 19;
    let too_costly = EncryptedSecretKey::from_slice(&costly)
        .expect("payload")
        .to_bech32()
        .expect("bech32");

    let cases: Vec<(Vec<&str>, String, &str)> = vec![
        (
            vec!["key", "import", "--user", "alice"],
            format!("{too_costly}\nright\n"),
            "log_n 19",
        ),
        (vec!["user", "add", "bad name!"], String::new(), "username"),
        (vec!["user", "add", "alice"], String::new(), "alice"),
        (
            vec!["key", "generate", "--user", "bob"],
            String::new(),
            "no user \"bob\"",
        ),
        (
            vec!["key", "import", "--user", "alice"],
            "garbage\n".into(),
            "not an nsec",
        ),
        (
            vec!["key", "import", "--user", "alice"],
            String::new(),
            "no secret on stdin",
        ),
        (
            vec!["key", "import", "--user", "alice"],
            "nsec1qqqq\n".into(),
            "not an nsec",
        ),
        (
            vec!["key", "import", "--user", "alice"],
            format!("{wrong_password}\nwrong\n"),
            "cannot decrypt",
        ),
        (
            vec!["key", "import", "--user", "alice"],
            format!("{wrong_password}\n"),
            "password",
        ),
        (
            vec!["key", "import", "--user", "alice", "--label", ""],
            format!("{}\n", secret.secret_key().to_secret_hex()),
            "label",
        ),
        (
            vec!["authorization", "create", "--key", "not-a-uuid"],
            String::new(),
            "not a key id",
        ),
        (
            vec![
                "authorization",
                "create",
                "--key",
                "6f1c2d3e-0000-4000-8000-000000000000",
            ],
            String::new(),
            "no such key",
        ),
        (
            vec!["authorization", "revoke", "nope"],
            String::new(),
            "not an authorization id",
        ),
        (
            vec![
                "authorization",
                "revoke",
                "6f1c2d3e-0000-4000-8000-000000000000",
            ],
            String::new(),
            "not found",
        ),
    ];
    for (args, stdin, expected) in &cases {
        let stderr = env.fails(args, stdin);
        assert!(
            stderr.contains(expected),
            "{args:?}: expected {expected:?} in {stderr}"
        );
        assert!(
            !stderr.contains(&secret.secret_key().to_secret_hex()),
            "{args:?}: the secret was echoed"
        );
    }
    assert_eq!(key_lines(&env), before, "nothing changed");

    // Bad settings name the setting; unknown commands are usage errors (exit 2).
    let mut c = env.command(&["key", "list"]);
    let out = c.env("KEYCAST_KMS", "hsm").output().expect("run");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("KEYCAST_KMS"));
    let out = env.command(&["teleport"]).output().expect("run");
    assert_eq!(out.status.code(), Some(2));
    // tokio's own thread-count variable is checked before tokio would panic on it.
    for bad in ["0", "two", "-1", "100000"] {
        let mut c = env.command(&["key", "list"]);
        let out = c.env("TOKIO_WORKER_THREADS", bad).output().expect("run");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{bad}: {stderr}");
        assert!(
            stderr.contains("TOKIO_WORKER_THREADS") && !stderr.contains("panicked"),
            "{bad}: {stderr}"
        );
    }
    let mut c = env.command(&["key", "list"]);
    let out = c.env("TOKIO_WORKER_THREADS", "1").output().expect("run");
    assert!(out.status.success(), "one runtime thread works");
    assert_eq!(key_lines(&env), before, "nothing changed");
}

#[test]
fn deleting_a_key_from_the_command_line() {
    let env = Env::new();
    env.ok(&["user", "add", "alice"], "");
    let kept = env.ok(&["key", "generate", "--user", "alice"], "");
    let doomed = env.ok(&["key", "generate", "--user", "alice"], "");
    let doomed = doomed.split_whitespace().next().expect("key id").to_owned();
    // An authorization with a token: their rows must go first (foreign keys).
    env.ok(
        &["authorization", "create", "--key", &doomed, "--with-token"],
        "",
    );

    let out = env.ok(&["key", "delete", &doomed], "");
    assert_eq!(out.trim(), format!("deleted {doomed}"));
    let left = key_lines(&env);
    assert_eq!(left.len(), 1, "{left:?}");
    assert!(
        left[0].starts_with(kept.split_whitespace().next().expect("id")),
        "{left:?}"
    );

    for (id, expected) in [
        (doomed.as_str(), "no such key"),
        ("6f1c2d3e-0000-4000-8000-000000000000", "no such key"),
        ("not-a-uuid", "not a key id"),
    ] {
        let stderr = env.fails(&["key", "delete", id], "");
        assert!(
            stderr.contains(expected),
            "{id}: expected {expected:?} in {stderr}"
        );
    }
    assert_eq!(key_lines(&env), left, "failed deletes change nothing");
}

#[test]
fn backup_and_restore_bring_back_users_keys_and_authorizations() {
    let env = Env::new();
    env.ok(&["user", "add", "alice"], "");
    let key = env.ok(&["key", "generate", "--user", "alice"], "");
    let backup = env.dir.join("backup.db");
    let out = env.ok(&["backup", backup.to_str().expect("utf-8")], "");
    assert!(out.contains("backed up"), "{out}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&backup)
            .expect("backup")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "the backup is readable by others");
    }
    let saved = key_lines(&env);
    // Changes after the backup are undone by the restore.
    env.ok(&["key", "generate", "--user", "alice"], "");
    assert_eq!(key_lines(&env).len(), saved.len() + 1);

    let backup_arg = backup.to_str().expect("utf-8");
    // Refusals change nothing: an existing target, a missing or damaged backup.
    let stderr = env.fails(&["backup", backup_arg], "");
    assert!(stderr.contains("exists"), "{stderr}");
    let missing = env.dir.join("missing.db");
    let stderr = env.fails(&["restore", missing.to_str().expect("utf-8")], "");
    assert!(stderr.contains("no backup file"), "{stderr}");
    let junk = env.dir.join("junk.db");
    std::fs::write(&junk, b"not a database at all, just some bytes").expect("junk");
    let stderr = env.fails(&["restore", junk.to_str().expect("utf-8")], "");
    assert!(stderr.contains("not a usable keycast backup"), "{stderr}");
    assert_eq!(
        key_lines(&env).len(),
        saved.len() + 1,
        "a refused restore changed nothing"
    );

    let out = env.ok(&["restore", backup_arg], "");
    assert!(out.contains("restored"), "{out}");
    assert_eq!(key_lines(&env), saved);
    // The restored key is usable: an app can be authorized on it.
    let id = key.split_whitespace().next().expect("key id");
    let uri = env.ok(&["authorization", "create", "--key", id], "");
    assert!(uri.trim().starts_with("bunker://"), "{uri}");
}

#[test]
fn restore_refuses_while_the_server_runs() {
    let env = Env::new();
    env.ok(&["user", "add", "alice"], "");
    let backup = env.dir.join("backup.db");
    env.ok(&["backup", backup.to_str().expect("utf-8")], "");
    // What a running server holds.
    let _held = keycast_server::lock::DataDirLock::acquire(&env.dir).expect("lock");
    let stderr = env.fails(&["restore", backup.to_str().expect("utf-8")], "");
    assert!(stderr.contains("must be stopped"), "{stderr}");
}

#[test]
fn tenants_and_their_hosts_from_the_command_line() {
    let env = Env::new();
    let listed = |env: &Env| env.ok(&["tenant", "list"], "");
    let id = env.ok(&["tenant", "add", "acme", "--host", "Keys.Acme.Test"], "");
    assert_eq!(id.trim().len(), 36, "prints the tenant id: {id}");
    assert_eq!(
        env.ok(&["tenant", "add-host", "acme", "acme.localhost"], ""),
        "acme.localhost serves acme\n"
    );
    let list = listed(&env);
    assert!(
        list.contains(&format!("acme {} acme.localhost,keys.acme.test", id.trim())),
        "{list}"
    );
    assert!(list.contains("default "), "{list}");

    // Users and keys in a tenant; the same username may exist in another.
    env.ok(&["user", "add", "alice", "--tenant", "acme"], "");
    env.ok(&["user", "add", "alice"], "");
    env.ok(
        &["key", "generate", "--user", "alice", "--tenant", "acme"],
        "",
    );
    assert_eq!(
        env.ok(&["key", "list", "--tenant", "acme"], "")
            .lines()
            .count(),
        1
    );
    assert_eq!(
        env.ok(&["key", "list"], "").lines().count(),
        0,
        "default has none"
    );

    // Bad input: a clear error, and nothing changed.
    let before = listed(&env);
    for (args, want) in [
        (&["tenant", "add", "Bad Name"][..], "tenant name"),
        (&["tenant", "add", "acme"][..], "a tenant named acme exists"),
        (
            &["tenant", "add", "beta", "--host", "keys.acme.test"][..],
            "already served",
        ),
        (
            &["tenant", "add", "beta", "--host", "bad_host"][..],
            "host \"bad_host\"",
        ),
        (
            &["tenant", "add-host", "nobody", "x.test"][..],
            "no tenant nobody",
        ),
        (
            &["tenant", "add-host", "acme", "x.test:80"][..],
            "host \"x.test:80\"",
        ),
        (
            &["tenant", "add-host", "default", "keys.acme.test"][..],
            "already served",
        ),
        (
            &["tenant", "remove-host", "x.test"][..],
            "no tenant is served at x.test",
        ),
        (
            &["user", "add", "bob", "--tenant", "nobody"][..],
            "no tenant nobody",
        ),
        (
            &["key", "list", "--tenant", "nobody"][..],
            "no tenant nobody",
        ),
    ] {
        let err = env.fails(args, "");
        assert!(err.contains(want), "{args:?}: {err}");
    }
    assert_eq!(listed(&env), before);

    assert_eq!(
        env.ok(&["tenant", "remove-host", "KEYS.acme.test"], ""),
        "removed keys.acme.test\n"
    );
    assert!(!listed(&env).contains("keys.acme.test"));
}

/// The CLI puts the relays the server listens on in the URIs it prints, even when run
/// without the server's `KEYCAST_RELAYS`; with other relays configured it refuses and
/// makes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_uris_name_the_relays_the_server_listens_on() {
    let env = Env::new();
    // Before any server ran: this configuration's relays, with a note.
    env.ok(&["user", "add", "alice"], "");
    let generated = env.ok(&["key", "generate", "--user", "alice"], "");
    let key_id = generated
        .split_whitespace()
        .next()
        .expect("key id")
        .to_owned();
    let out = env.run(&["authorization", "create", "--key", &key_id], "");
    assert!(out.status.success(), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no server has recorded"), "{stderr}");

    // A relay of its own, so the server is ready.
    let relay = keycast_server::embedded_relay::EmbeddedRelay::start(([127, 0, 0, 1], 0).into())
        .await
        .expect("relay");
    let theirs = relay.url.to_string();
    let theirs = theirs.as_str();
    let served =
        common::server::Served::launch(env, &[], &[("KEYCAST_RELAYS", theirs.to_owned())]).await;
    let env = &served.env;
    // Without KEYCAST_RELAYS here: the server's relay, not the embedded default.
    let uri = env.ok(&["authorization", "create", "--key", &key_id], "");
    let uri = BunkerUri::parse(uri.trim()).expect("a bunker URI");
    assert_eq!(
        uri.relays.iter().map(|r| r.as_str()).collect::<Vec<_>>(),
        vec![theirs]
    );
    // With other relays configured: a clear error, and no authorization made.
    let before = active_authorizations(env).await;
    let mut other = env.command(&["authorization", "create", "--key", &key_id]);
    other.env("KEYCAST_RELAYS", "ws://127.0.0.1:10");
    let out = other.output().expect("run");
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("differs from the relays the server listens on")
            && stderr.contains(theirs.trim_end_matches('/')),
        "{stderr}"
    );
    assert_eq!(active_authorizations(env).await, before, "nothing made");
}

async fn active_authorizations(env: &Env) -> usize {
    let url = format!("sqlite://{}", env.dir.join("keycast.db").display());
    let db = keycast_storage::Database::open(&url).await.expect("open");
    let store = db.into_key_store();
    store
        .list_active_authorizations(keycast_core::nostr::Timestamp::now(), None, u32::MAX)
        .await
        .expect("list")
        .len()
}
