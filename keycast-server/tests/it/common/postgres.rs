//! Stopping and starting the local Postgres cluster that `KEYCAST_TEST_POSTGRES_URL`
//! points at (Debian's `pg_ctlcluster`, as `scripts/test` starts it), for outage tests.
//! Dropping the guard starts the cluster again if the test left it stopped.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub struct LocalPostgres {
    version: String,
    cluster: String,
    url: String,
    down: bool,
}

impl LocalPostgres {
    /// The local cluster listening on `url`'s port, or `None` (skipped) when there is none
    /// this process can control (no `pg_lsclusters`, a remote server); under
    /// `KEYCAST_TEST_REQUIRE_SERVICES=1` that is a failure.
    pub fn find(url: &str) -> Option<Self> {
        let found = Self::lookup(url);
        found.or_else(|| {
            keycast_test_support::missing_service(&format!(
                "no local pg_ctlcluster cluster serves {url}"
            ))
        })
    }

    fn lookup(url: &str) -> Option<Self> {
        let parsed = reqwest::Url::parse(url).ok()?;
        if !matches!(parsed.host_str(), Some("127.0.0.1" | "localhost" | "::1")) {
            return None;
        }
        let port = parsed.port().unwrap_or(5432).to_string();
        let out = Command::new("pg_lsclusters").arg("-h").output().ok()?;
        // `<version> <cluster> <port> <status> <owner> <data dir> <log file>`
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .find_map(|line| {
                let f: Vec<&str> = line.split_whitespace().collect();
                (f.len() >= 3 && f[2] == port).then(|| Self {
                    version: f[0].to_owned(),
                    cluster: f[1].to_owned(),
                    url: url.to_owned(),
                    down: false,
                })
            })
    }

    fn ctl(&self, action: &str) -> bool {
        let mut c = Command::new("pg_ctlcluster");
        c.arg("--skip-systemctl-redirect");
        if action == "stop" {
            // Fast: open connections are closed at once (also the default).
            c.args(["--mode", "fast"]);
        }
        c.args([&self.version, &self.cluster, action])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success() || s.code() == Some(2))
    }

    fn accepting(&self) -> bool {
        Command::new("pg_isready")
            .args(["-q", "-d", &self.url])
            .status()
            .is_ok_and(|s| s.success())
    }

    /// Stops it.
    pub fn stop(&mut self) {
        self.down = true;
        assert!(self.ctl("stop"), "pg_ctlcluster stop failed");
    }

    /// Starts it and waits until it accepts connections.
    pub fn start(&mut self) {
        assert!(self.ctl("start"), "pg_ctlcluster start failed");
        keycast_test_support::eventually_blocking(
            Duration::from_secs(30),
            "Postgres accepting again",
            || self.accepting(),
        );
        self.down = false;
    }
}

impl Drop for LocalPostgres {
    fn drop(&mut self) {
        if self.down {
            self.ctl("start");
            // Best effort, bounded, and no panic: this runs while a test may be unwinding.
            let deadline = Instant::now() + Duration::from_secs(30);
            while !self.accepting() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}
