//! A `keycast-server` process for the benches that measure the real binary (cluster,
//! nip46_scale): spawned with only the variables a bench gives it, on a port it picks and
//! logs, with its log in a file; stopped with SIGTERM, killed on drop.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use keycast_core::nostr::PublicKey;
use keycast_nip46::BunkerUri;
use serde_json::{json, Value};

/// The benches' account: email and password, as `/api/auth/register` and `login` take them.
pub static CREDENTIALS: std::sync::LazyLock<Value> = std::sync::LazyLock::new(
    || json!({"email": "bench@example.com", "password": "correct horse battery"}),
);

/// An account made by [`Server::authorizations`].
#[derive(Debug)]
pub struct Account {
    /// A session token of the account.
    pub session: String,
    /// The key's pubkey.
    pub user: PublicKey,
    /// Each authorization's `bunker://` URI (with its connect secret).
    pub uris: Vec<BunkerUri>,
}

impl Account {
    /// Each authorization's bunker pubkey.
    #[must_use]
    pub fn bunkers(&self) -> Vec<PublicKey> {
        self.uris.iter().map(|u| u.signer).collect()
    }
}

/// A running `keycast-server serve`; killed on drop if still running.
#[derive(Debug)]
pub struct Server {
    child: Child,
    base: String,
    log: PathBuf,
}

impl Server {
    /// Starts `server serve` with `vars` (and none of this process's `KEYCAST_*`), JSON
    /// logs at `warn` into `log`.
    ///
    /// # Panics
    /// If the process cannot be started or the log file made.
    #[must_use]
    pub fn spawn(server: &Path, vars: &[(&str, String)], log: PathBuf) -> Self {
        let mut command = Command::new(server);
        for (k, _) in std::env::vars() {
            if k.starts_with("KEYCAST_") || k == "DATABASE_URL" || k == "REDIS_URL" {
                command.env_remove(k);
            }
        }
        let stderr = std::fs::File::create(&log).expect("log file");
        let child = command
            .arg("serve")
            .envs(vars.iter().map(|(k, v)| (*k, v.as_str())))
            .env("KEYCAST_LISTEN", "127.0.0.1:0")
            .env("KEYCAST_LOG_FORMAT", "json")
            // Warnings, and the line naming the addresses bound.
            .env("RUST_LOG", "warn,keycast_server::serve=info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", server.display()));
        Self {
            child,
            base: String::new(),
            log,
        }
    }

    /// The process id.
    #[must_use]
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The last 20 lines of its log.
    #[must_use]
    pub fn log_tail(&self) -> String {
        let all = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = all.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// Waits until `/healthz/ready` answers 200 (polled every 20 ms, so a bench can time
    /// the start); its JSON body.
    ///
    /// # Panics
    /// If the server exits or is not ready within 120 s.
    pub async fn ready(&mut self, http: &reqwest::Client) -> Value {
        if self.base.is_empty() {
            self.base = self.serving_base().await;
        }
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("server exited early ({status}):\n{}", self.log_tail());
            }
            if let Ok(r) = http.get(self.url("/healthz/ready")).send().await {
                if r.status().is_success() {
                    return r.json().await.unwrap_or(Value::Null);
                }
            }
            assert!(
                Instant::now() < deadline,
                "the server never became ready:\n{}",
                self.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// `http://<the address it bound>` once its log names it.
    async fn serving_base(&mut self) -> String {
        let what = format!("the serving line in {}", self.log.display());
        let bound = keycast_test_support::eventually(Duration::from_secs(120), &what, || {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("server exited early ({status}):\n{}", self.log_tail());
            }
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            let found = log
                .lines()
                .find_map(keycast_test_support::Addresses::from_log_line);
            std::future::ready(found)
        })
        .await;
        format!("http://{}", bound.http)
    }

    /// `http://127.0.0.1:<port><path>` (known once [`Server::ready`] returned).
    #[must_use]
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A JSON POST with an optional bearer token; the status and JSON answer.
    ///
    /// # Panics
    /// If the request cannot be sent.
    pub async fn post(
        &self,
        http: &reqwest::Client,
        path: &str,
        token: Option<&str>,
        body: Value,
    ) -> (u16, Value) {
        let mut r = http.post(self.url(path)).json(&body);
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        let response = r.send().await.expect("request");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// The `/metrics` text (empty when it does not answer).
    pub async fn metrics_text(&self, http: &reqwest::Client) -> String {
        match http.get(self.url("/metrics")).send().await {
            Ok(r) => r.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        }
    }

    /// A sample from `/metrics`, named with its labels (0 when absent).
    pub async fn metric(&self, http: &reqwest::Client, name: &str) -> u64 {
        sample(&self.metrics_text(http).await, name)
    }

    /// An account ([`CREDENTIALS`]) with one key, and `count` full-access authorizations
    /// of it, made over HTTP.
    ///
    /// # Panics
    /// If a call fails.
    pub async fn authorizations(&self, http: &reqwest::Client, count: usize) -> Account {
        let creds = CREDENTIALS.clone();
        let (status, body) = self
            .post(http, "/api/auth/register", None, creds.clone())
            .await;
        assert_eq!(status, 201, "register: {body}");
        let (status, login) = self.post(http, "/api/auth/login", None, creds).await;
        assert_eq!(status, 200, "login: {login}");
        let session = login["token"].as_str().expect("session token").to_owned();
        let (status, key) = self
            .post(http, "/api/keys", Some(&session), json!({"name": "bench"}))
            .await;
        assert_eq!(status, 201, "key: {key}");
        let user =
            PublicKey::from_hex(key["pubkey"].as_str().expect("pubkey")).expect("pubkey hex");
        let mut uris = Vec::with_capacity(count);
        for i in 0..count {
            let body = json!({"key_id": key["id"], "label": format!("bench app {i}")});
            let (status, a) = self
                .post(http, "/api/authorizations", Some(&session), body)
                .await;
            assert_eq!(status, 201, "authorization: {a}");
            let uri = BunkerUri::parse(a["bunker_uri"].as_str().expect("bunker_uri"))
                .expect("bunker uri parses");
            assert!(
                uri.secret.is_some(),
                "a bunker URI without a connect secret"
            );
            uris.push(uri);
        }
        Account {
            session,
            user,
            uris,
        }
    }

    /// SIGTERM, then a kill after 30 s.
    pub fn stop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        eprintln!("server did not stop within 30 s of SIGTERM; killing it");
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The value of sample `name` (with its labels) in a `/metrics` text (0 when absent).
#[must_use]
pub fn sample(metrics: &str, name: &str) -> u64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}
