//! The master key (issue 18 item 6): never generated over sealed keys, never silently the
//! wrong one, and a key that cannot be opened is an internal error that fails readiness,
//! never "the authorization no longer exists".

use std::time::Duration;

use keycast_core::{KekRef, KeyId, Wrapped};
use reqwest::Method;
use serde_json::json;

use crate::common::server::Served;
use crate::common::Env;
use keycast_test_support::{eventually_blocking, ServerProcess};

/// Runs `serve` in `env`, which must exit (it refuses to start) within 30 s; its stderr.
fn refused_start(env: &Env) -> String {
    let mut command = env.command(&[]);
    command.stdout(std::process::Stdio::null());
    // Killed on drop if it does not exit.
    let mut serve = ServerProcess::spawn(command).expect("serve");
    let status = eventually_blocking(Duration::from_secs(30), "serve to refuse to start", || {
        serve.exited()
    });
    let err = serve.kill();
    assert!(!status.success(), "it started: {err}");
    err
}

fn write_private(path: &std::path::Path, bytes: &[u8]) {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .expect("write key file");
    std::io::Write::write_all(&mut f, bytes).expect("write");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_or_replaced_master_key_stops_the_start() {
    // SQLite in the data dir whatever KEYCAST_TEST_DATABASE says: the test opens it.
    let served = Served::launch(Env::new(), &[], &[]).await;
    let account = served.account("keys@example.com").await;
    let (env, _) = served.kill_keeping_env();
    let file = env.dir.join("master.key");
    let original = std::fs::read(&file).expect("master key");

    std::fs::remove_file(&file).expect("remove");
    let err = refused_start(&env);
    assert!(
        err.contains("master key file")
            && err.contains(&file.display().to_string())
            && err.contains("missing"),
        "{err}"
    );
    assert!(
        !file.exists(),
        "a master key was generated over sealed keys"
    );

    write_private(&file, &[7u8; 32]);
    let err = refused_start(&env);
    assert!(
        err.contains("master keys this server does not have")
            && err.contains(&file.display().to_string()),
        "{err}"
    );
    assert_eq!(
        std::fs::read(&file).expect("file"),
        vec![7u8; 32],
        "the file is left as it was"
    );

    write_private(&file, &original);
    let served = Served::launch(env, &[], &[]).await;
    let (status, keys) = served
        .json(Method::GET, "/api/keys", Some(&account.session), None)
        .await;
    assert_eq!(status, 200, "{keys}");
    assert!(keys.to_string().contains(&account.key_id));
}

/// `get_public_key` over HTTP RPC with `token`.
async fn public_key(served: &Served, token: &str) -> (reqwest::StatusCode, serde_json::Value) {
    served
        .json(
            Method::POST,
            "/api/nostr",
            Some(token),
            Some(json!({"method": "get_public_key", "params": []})),
        )
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_that_cannot_be_opened_is_an_internal_error_and_fails_readiness() {
    // SQLite in the data dir whatever KEYCAST_TEST_DATABASE says: the test opens it.
    let mut served = Served::launch(Env::new(), &[], &[]).await;
    let account = served.account("unopenable@example.com").await;
    let (status, made) = served
        .json(
            Method::POST,
            "/api/authorizations",
            Some(&account.session),
            Some(json!({"key_id": account.key_id, "label": "app"})),
        )
        .await;
    assert_eq!(status, 201, "{made}");
    let token = made["token"].as_str().expect("token").to_owned();

    // The key's row now names a master key this server does not have (a row restored
    // from another install, say). The key was never used, so it is not cached.
    let url = format!("sqlite://{}", served.env.dir.join("keycast.db").display());
    let store = keycast_storage::Database::open(&url)
        .await
        .expect("open")
        .into_key_store();
    let id: KeyId = account.key_id.parse().expect("key id");
    let row = store.get_key(id).await.expect("key");
    let real = row.envelope.wrapped_dek.clone();
    let foreign = Wrapped {
        kek: KekRef {
            key_id: "0123456789abcdef".into(),
            ..real.kek.clone()
        },
        blob: real.blob.clone(),
    };
    assert!(store
        .replace_wrapped_dek(id, &real.kek, &foreign)
        .await
        .expect("swap"));

    let (status, body) = public_key(&served, &token).await;
    assert_eq!(
        status, 500,
        "an internal error, not a dead authorization: {body}"
    );
    assert_eq!(body["error"]["code"], "internal");
    let (status, ready) = served.json(Method::GET, "/healthz/ready", None, None).await;
    assert_eq!(status, 503, "{ready}");
    assert!(ready["failing"].to_string().contains("keys"), "{ready}");
    assert!(served.metric("keycast_key_open_failures_total").await >= 1);

    // The row back as it was: the key opens, and the instance is ready again.
    assert!(store
        .replace_wrapped_dek(id, &foreign.kek, &real)
        .await
        .expect("swap back"));
    let (status, body) = public_key(&served, &token).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["result"], account.pubkey.as_str());
    let (status, ready) = served.json(Method::GET, "/healthz/ready", None, None).await;
    assert_eq!(status, 200, "{ready}");
    let logs = served.stop();
    assert!(
        logs.lines()
            .any(|l| l.contains("\"level\":\"ERROR\"")
                && l.contains("a stored key cannot be opened")),
        "the failure is logged at ERROR"
    );
}
