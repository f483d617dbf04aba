//! SIGKILL durability: a child process writes as fast as it can and prints each write it
//! got acknowledged; the parent kills it with SIGKILL mid-stream, reopens the database and
//! checks every acknowledged write is there.
//!
//! The child is this same test binary, re-run with `KEYCAST_DURABILITY_CHILD_URL` set.

use crate::common;

use std::io::{BufRead, BufReader};
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use keycast_core::testing::fixtures;
use keycast_core::TenantId;
use keycast_storage::Database;

const CHILD_ENV: &str = "KEYCAST_DURABILITY_CHILD_URL";
const ACKS_BEFORE_KILL: usize = 300;

/// Child role: eight writers, each printing `ack <tenant id>` after its insert commits.
/// Runs inside the test's own runtime and never returns.
async fn child(url: &str) {
    {
        let store = Database::open(url).await.expect("open").into_key_store();
        let writers: Vec<_> = (0..8)
            .map(|_| {
                let store = store.clone();
                tokio::spawn(async move {
                    loop {
                        let t = fixtures::tenant();
                        store.create_tenant(&t).await.expect("write");
                        use std::io::Write;
                        let mut out = std::io::stdout().lock();
                        writeln!(out, "ack {}", t.id).expect("stdout");
                        out.flush().expect("flush");
                    }
                })
            })
            .collect();
        for w in writers {
            let _ = w.await;
        }
    }
    panic!("writers never stop; the parent kills this process");
}

/// Parent role: run the child, SIGKILL it after enough acks, return every acked id.
fn run_and_kill(test_name: &str, url: &str) -> Vec<TenantId> {
    let exe = std::env::current_exe().expect("test binary");
    let mut proc = Command::new(exe)
        .args([test_name, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, url)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn child");
    let stdout = proc.stdout.take().expect("piped");
    let (tx, rx) = mpsc::channel::<TenantId>();
    let reader = std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout);
        let mut line = String::new();
        // Only complete lines count: a line cut by the kill was never fully acknowledged.
        while lines.read_line(&mut line).unwrap_or(0) > 0 {
            if let Some(id) = line.strip_prefix("ack ").and_then(|s| s.strip_suffix('\n')) {
                let _ = tx.send(id.parse().expect("tenant id"));
            }
            line.clear();
        }
    });
    let mut acked = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    while acked.len() < ACKS_BEFORE_KILL && Instant::now() < deadline {
        if let Ok(id) = rx.recv_timeout(Duration::from_millis(100)) {
            acked.push(id);
        }
    }
    proc.kill().expect("SIGKILL");
    let status = proc.wait().expect("wait");
    assert_eq!(
        status.signal(),
        Some(9),
        "child must die by SIGKILL, not exit: {status:?}"
    );
    reader.join().expect("reader");
    acked.extend(rx.try_iter());
    assert!(
        acked.len() >= ACKS_BEFORE_KILL,
        "child acknowledged only {} writes",
        acked.len()
    );
    acked
}

async fn assert_all_present(url: &str, acked: &[TenantId]) {
    let store = Database::open(url)
        .await
        .expect("reopen after kill")
        .into_key_store();
    let mut missing = 0;
    for id in acked {
        if store.get_tenant(*id).await.is_err() {
            missing += 1;
        }
    }
    assert_eq!(
        missing,
        0,
        "{missing} of {} acknowledged writes lost",
        acked.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_loses_no_acknowledged_write_on_sigkill() {
    if let Ok(url) = std::env::var(CHILD_ENV) {
        child(&url).await;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}", dir.path().join("durable.db").display());
    let db = Database::open(&url).await.expect("open");
    db.migrate().await.expect("migrate");
    drop(db);
    let acked = tokio::task::spawn_blocking({
        let url = url.clone();
        move || {
            run_and_kill(
                "durability::sqlite_loses_no_acknowledged_write_on_sigkill",
                &url,
            )
        }
    })
    .await
    .expect("join");
    assert_all_present(&url, &acked).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_loses_no_acknowledged_write_on_sigkill() {
    if let Ok(url) = std::env::var(CHILD_ENV) {
        child(&url).await;
    }
    let Some(admin) = common::postgres_url() else {
        return;
    };
    let fresh = common::FreshDb::create(&admin).await;
    fresh.store().await.close().await;
    let acked = tokio::task::spawn_blocking({
        let url = fresh.url.clone();
        move || {
            run_and_kill(
                "durability::postgres_loses_no_acknowledged_write_on_sigkill",
                &url,
            )
        }
    })
    .await
    .expect("join");
    assert_all_present(&fresh.url, &acked).await;
    fresh.drop_db().await;
}
