//! The real binary serving HTTP, with NIP-46 on its embedded relay, driven over HTTP:
//! start and wait for readiness, accounts with a key, and the logs at the end.

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use keycast_test_support::{eventually, ServerProcess};

use reqwest::StatusCode;
use serde_json::{json, Value};

use super::Env;

pub const PASSWORD: &str = "correct horse battery";

/// A running server; killed on drop if still running.
pub struct Served {
    pub env: Env,
    /// Follows no redirects.
    pub http: reqwest::Client,
    /// The separate `/metrics` listener, when `KEYCAST_METRICS_LISTEN` asked for one.
    pub metrics: Option<SocketAddr>,
    process: ServerProcess,
    database: Option<keycast_storage::testing::FreshDb>,
}

/// An account made over the API, with one key.
pub struct Account {
    pub email: String,
    pub session: String,
    pub key_id: String,
    /// Hex.
    pub pubkey: String,
}

impl Served {
    /// Starts `serve` with debug logs (so a test can check what they hold) and waits
    /// until `/healthz/ready` answers 200.
    pub async fn start() -> Self {
        Self::start_with(&[]).await
    }

    /// [`Served::start`] with extra command-line arguments (such as `--config`), on
    /// SQLite or (`KEYCAST_TEST_DATABASE=postgres`) a fresh Postgres database dropped
    /// with the server.
    pub async fn start_with(args: &[&str]) -> Self {
        let database = super::flow_database().await;
        let vars: Vec<(&str, String)> = database
            .iter()
            .map(|db| ("KEYCAST_DATABASE_URL", db.url.clone()))
            .collect();
        let mut served = Self::launch(Env::new(), args, &vars).await;
        served.database = database;
        served
    }

    /// [`Served::start_with`] in `env`, with extra environment variables.
    pub async fn launch(env: Env, args: &[&str], vars: &[(&str, String)]) -> Self {
        let command = env.command(args);
        Self::launch_command(env, command, vars).await
    }

    /// [`Served::launch`] with at most `descriptors` open files (soft and hard limit, set
    /// by `prlimit` before the server starts), as `ulimit -n` would.
    pub async fn launch_limited(env: Env, descriptors: u32, vars: &[(&str, String)]) -> Self {
        let mut command = env.command(&[]);
        let limited = {
            let mut c = std::process::Command::new("prlimit");
            c.arg(format!("--nofile={descriptors}:{descriptors}"))
                .arg("--")
                .arg(command.get_program());
            for (k, v) in command.get_envs() {
                match v {
                    Some(v) => c.env(k, v),
                    None => c.env_remove(k),
                };
            }
            c
        };
        command = limited;
        Self::launch_command(env, command, vars).await
    }

    async fn launch_command(
        mut env: Env,
        mut command: std::process::Command,
        vars: &[(&str, String)],
    ) -> Self {
        command
            .env("RUST_LOG", "debug")
            .envs(vars.iter().map(|(k, v)| (*k, v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        let mut process = ServerProcess::spawn(command).expect("serve");
        let addresses = process
            .wait_serving(Duration::from_secs(60))
            .unwrap_or_else(|e| panic!("{e}"));
        env.adopt(&addresses);
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client");
        let served = Self {
            env,
            http,
            metrics: addresses.metrics,
            process,
            database: None,
        };
        let ready = served.env.url("/healthz/ready");
        let (s, ready) = (&served, ready.as_str());
        eventually(
            Duration::from_secs(60),
            "the server to become ready",
            || async move {
                if let Some(status) = s.process.exited() {
                    panic!("server exited early ({status}): {}", s.process.logs());
                }
                let answer = s.http.get(ready).send().await;
                answer.is_ok_and(|r| r.status().is_success())
            },
        )
        .await;
        served
    }

    /// `ws://127.0.0.1:<port>` of the embedded relay.
    pub fn relay(&self) -> String {
        format!("ws://127.0.0.1:{}", self.env.relay_port)
    }

    /// A JSON request with an optional bearer token; the status and JSON answer.
    pub async fn json(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut r = self.http.request(method, self.env.url(path));
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        if let Some(b) = body {
            r = r
                .header("content-type", "application/json")
                .body(b.to_string());
        }
        let response = r.send().await.expect("request");
        let status = response.status();
        (
            status,
            response.json::<Value>().await.unwrap_or(Value::Null),
        )
    }

    /// This instance's `/metrics` text.
    pub async fn metrics_text(&self) -> String {
        self.http
            .get(self.env.url("/metrics"))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text")
    }

    /// A counter from this instance's `/metrics` (0 when absent).
    pub async fn metric(&self, name: &str) -> u64 {
        let text = self.metrics_text().await;
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    }

    /// Registers `email`, logs in and creates a key named `main`.
    pub async fn account(&self, email: &str) -> Account {
        use reqwest::Method;
        let creds = json!({"email": email, "password": PASSWORD});
        let (status, body) = self
            .json(
                Method::POST,
                "/api/auth/register",
                None,
                Some(creds.clone()),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        let (status, login) = self
            .json(Method::POST, "/api/auth/login", None, Some(creds))
            .await;
        assert_eq!(status, 200, "{login}");
        let session = login["token"].as_str().expect("session").to_owned();
        let (status, key) = self
            .json(
                Method::POST,
                "/api/keys",
                Some(&session),
                Some(json!({"name": "main"})),
            )
            .await;
        assert_eq!(status, 201, "{key}");
        Account {
            email: email.to_owned(),
            session,
            key_id: key["id"].as_str().expect("key id").to_owned(),
            pubkey: key["pubkey"].as_str().expect("pubkey").to_owned(),
        }
    }

    /// The account's authorizations, as `GET /api/authorizations` lists them.
    pub async fn authorizations(&self, account: &Account) -> Vec<Value> {
        let (status, body) = self
            .json(
                reqwest::Method::GET,
                "/api/authorizations",
                Some(&account.session),
                None,
            )
            .await;
        assert_eq!(status, 200, "{body}");
        body["authorizations"].as_array().expect("list").clone()
    }

    /// How many policies the account has.
    pub async fn policy_count(&self, account: &Account) -> usize {
        let (status, body) = self
            .json(
                reqwest::Method::GET,
                "/api/policies",
                Some(&account.session),
                None,
            )
            .await;
        assert_eq!(status, 200, "{body}");
        body["policies"].as_array().expect("list").len()
    }

    /// Signs a kind-`kind` event over HTTP RPC with `token`; the status.
    pub async fn sign(&self, token: &str, kind: u16) -> StatusCode {
        let template = json!({"kind": kind, "content": "from a test", "tags": []});
        let body = json!({"method": "sign_event", "params": [template.to_string()]});
        let (status, _) = self
            .json(reqwest::Method::POST, "/api/nostr", Some(token), Some(body))
            .await;
        status
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// Sends `signal` (a name such as `STOP` or `CONT`) to the server with `kill`.
    pub fn signal(&self, signal: &str) {
        super::signal(self.process.pid(), signal);
    }

    /// Whether the process is still running (not exited, not killed).
    pub fn alive(&self) -> bool {
        self.process.alive()
    }

    /// [`Served::kill`], handing back the data dir for a restart on it with
    /// [`Served::launch`] (on fresh ports, as a released port may be taken meanwhile);
    /// everything it logged.
    pub fn kill_keeping_env(mut self) -> (Env, String) {
        let logs = self.kill();
        // The placeholder's directory was never created; dropping it removes nothing.
        let mut env = std::mem::replace(&mut self.env, Env::new());
        (env.http_port, env.relay_port) = (0, 0);
        (env, logs)
    }

    /// Kills the server with SIGKILL, as a crash would; everything it logged.
    pub fn kill(&mut self) -> String {
        self.process.kill()
    }

    /// Stops the server (SIGTERM, then a kill after 30 s); everything it logged.
    pub fn stop(&mut self) -> String {
        self.stop_checked().1
    }

    /// [`Served::stop`], and whether the server exited 0 on SIGTERM.
    pub fn stop_checked(&mut self) -> (bool, String) {
        self.process.stop(Duration::from_secs(30))
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        self.process.kill();
        if let Some(db) = self.database.take() {
            super::drop_database(db);
        }
    }
}
