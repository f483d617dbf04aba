//! Running the real `keycast-server` binary in a private data dir.

#![allow(dead_code)]

pub mod browser;
pub mod cluster;
pub mod inproc;
pub mod moto;
pub mod pages;
pub mod postgres;
pub mod redis;
pub mod server;
pub mod smtp;

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

/// A data dir and ports of one test server, removed on drop.
///
/// The ports start at 0: the server binds whatever is free and logs what it bound, and
/// [`Env::adopt`] records that, so no port is ever released and then bound again.
pub struct Env {
    pub dir: PathBuf,
    pub http_port: u16,
    pub relay_port: u16,
}

/// A fresh Postgres database of `KEYCAST_TEST_POSTGRES_URL` when the HTTP flow tests run
/// on Postgres (`KEYCAST_TEST_DATABASE=postgres`; scripts/test runs them once each way),
/// else `None` (SQLite in the data dir).
pub async fn flow_database() -> Option<keycast_storage::testing::FreshDb> {
    match std::env::var("KEYCAST_TEST_DATABASE").as_deref() {
        Ok("postgres") => {
            let admin = keycast_storage::testing::postgres_url()
                .expect("KEYCAST_TEST_DATABASE=postgres needs KEYCAST_TEST_POSTGRES_URL");
            Some(keycast_storage::testing::FreshDb::create(&admin).await)
        }
        Ok("sqlite") | Err(_) => None,
        Ok(other) => panic!("KEYCAST_TEST_DATABASE: {other:?} is not sqlite or postgres"),
    }
}

/// Drops a [`flow_database`] from a `Drop` impl, which runs inside a test's runtime and
/// so cannot block on it.
pub fn drop_database(db: keycast_storage::testing::FreshDb) {
    let dropped = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(db.drop_db());
    })
    .join();
    if dropped.is_err() {
        eprintln!("could not drop a test database");
    }
}

/// Sends `signal` (a name such as `STOP`, `CONT` or `KILL`) to process `pid` with `kill`.
pub fn signal(pid: u32, signal: &str) {
    let status = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{signal} {pid} failed");
}

/// The error `Config::load` gives with `name` set to `value` (and a data dir); panics if
/// the setting is accepted.
pub fn config_error(name: &str, value: &str) -> String {
    keycast_server::Config::load(None, |k| match k {
        "KEYCAST_DATA_DIR" => Some("/nonexistent/keycast".to_owned()),
        k if k == name => Some(value.to_owned()),
        _ => None,
    })
    .expect_err(value)
    .to_string()
}

impl Env {
    pub fn new() -> Self {
        let dir =
            std::env::temp_dir().join(format!("keycast-server-test-{}", uuid::Uuid::new_v4()));
        Self {
            dir,
            http_port: 0,
            relay_port: 0,
        }
    }

    /// Records the ports a server started in this env bound (its serving line).
    pub fn adopt(&mut self, bound: &keycast_test_support::Addresses) {
        self.http_port = bound.http.port();
        if let Some(port) = bound
            .relay
            .as_deref()
            .and_then(|r| r.rsplit(':').next())
            .and_then(|p| p.parse().ok())
        {
            self.relay_port = port;
        }
    }

    /// The binary with this env's settings and nothing inherited from `KEYCAST_*`.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_keycast-server"));
        for (k, _) in std::env::vars() {
            if k.starts_with("KEYCAST_") || k == "DATABASE_URL" || k == "REDIS_URL" {
                c.env_remove(k);
            }
        }
        c.args(args)
            .env("KEYCAST_DATA_DIR", &self.dir)
            .env("KEYCAST_LISTEN", format!("127.0.0.1:{}", self.http_port))
            .env(
                "KEYCAST_EMBEDDED_RELAY_LISTEN",
                format!("127.0.0.1:{}", self.relay_port),
            )
            .env("KEYCAST_LOG_FORMAT", "json");
        c
    }

    /// Runs a command to completion with `stdin`.
    pub fn run(&self, args: &[&str], stdin: &str) -> Output {
        let mut child = self
            .command(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn keycast-server");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(stdin.as_bytes())
            .expect("write stdin");
        child.wait_with_output().expect("wait")
    }

    /// Runs a command that must succeed; returns its stdout.
    pub fn ok(&self, args: &[&str], stdin: &str) -> String {
        let out = self.run(args, stdin);
        assert!(
            out.status.success(),
            "{args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf-8 stdout")
    }

    /// Runs a command that must fail with exit code 1 and a message; returns stderr.
    pub fn fails(&self, args: &[&str], stdin: &str) -> String {
        let out = self.run(args, stdin);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(
            out.stdout.is_empty(),
            "{args:?} printed a result: {:?}",
            out.stdout
        );
        assert!(stderr.contains("keycast-server: "), "{args:?}: {stderr}");
        stderr
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.http_port)
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
