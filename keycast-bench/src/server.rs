//! The server under load: a `keycast-server` this tool starts on embedded defaults in a
//! fresh temporary data directory, and what `/proc` says about a process.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// A `keycast-server serve` child: SQLite and a local master key in a temporary data
/// directory, HTTP and the embedded relay on ports it picks and logs, JSON logs at `warn`
/// (and the line naming those ports) to a file. Killed on drop if still running.
#[derive(Debug)]
pub struct Server {
    child: Child,
    /// `http://127.0.0.1:<port>`, known once [`Server::ready`] returned.
    pub base: String,
    log: PathBuf,
    dir: tempfile::TempDir,
}

impl Server {
    /// Starts `bin serve` with every inherited `KEYCAST_*` (and the `DATABASE_URL` and
    /// `REDIS_URL` aliases) removed, so only embedded defaults apply.
    pub fn spawn(bin: &Path) -> Result<Self, String> {
        let dir = tempfile::Builder::new()
            .prefix("keycast-bench-")
            .tempdir()
            .map_err(|e| format!("temporary directory: {e}"))?;
        let data = dir.path().join("data");
        std::fs::create_dir(&data).map_err(|e| format!("{}: {e}", data.display()))?;
        let log = dir.path().join("server.log");
        let stderr = std::fs::File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;
        let mut command = Command::new(bin);
        for (k, _) in std::env::vars_os() {
            let k = k.to_string_lossy();
            if k.starts_with("KEYCAST_") || k == "DATABASE_URL" || k == "REDIS_URL" {
                command.env_remove(k.as_ref());
            }
        }
        let child = command
            .arg("serve")
            .env("KEYCAST_DATA_DIR", &data)
            // Port 0: the server binds free ports itself and logs them, so none is released
            // and bound again.
            .env("KEYCAST_LISTEN", "127.0.0.1:0")
            .env("KEYCAST_EMBEDDED_RELAY_LISTEN", "127.0.0.1:0")
            .env("KEYCAST_LOG_FORMAT", "json")
            .env("RUST_LOG", "warn,keycast_server::serve=info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", bin.display()))?;
        Ok(Self {
            child,
            base: String::new(),
            log,
            dir,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits until `/healthz/ready` answers 200 (at most 60 s), failing early if the
    /// process exits.
    pub async fn ready(&mut self, http: &reqwest::Client) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!(
                    "the server exited during start-up ({status}):\n{}",
                    self.log_tail(20)
                ));
            }
            if self.base.is_empty() {
                if let Some(listen) = serving_address(&self.log) {
                    self.base = format!("http://{listen}");
                }
            }
            if !self.base.is_empty() && is_ready(http, &self.base).await {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "the server was not ready within 60 s:\n{}",
                    self.log_tail(20)
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Whether it is still running.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// SIGTERM, then SIGKILL if it has not exited 30 s later; its exit status.
    pub fn stop(&mut self) -> Result<ExitStatus, String> {
        if let Ok(Some(status)) = self.child.try_wait() {
            return Ok(status);
        }
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Ok(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        Err("did not exit within 30 s of SIGTERM; killed".into())
    }

    /// The last `n` lines of the server's log.
    pub fn log_tail(&self, n: usize) -> String {
        let all = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = all.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// `(warnings, errors)` logged so far, and up to three distinct messages.
    pub fn log_problems(&self) -> (usize, usize, Vec<String>) {
        let all = std::fs::read_to_string(&self.log).unwrap_or_default();
        let (mut warn, mut error, mut examples) = (0, 0, Vec::new());
        for line in all.lines() {
            let level = serde_json::from_str::<serde_json::Value>(line)
                .ok()
                .and_then(|v| Some((v["level"].as_str()?.to_owned(), v["message"].clone())));
            let Some((level, message)) = level else {
                continue;
            };
            match level.as_str() {
                "WARN" => warn += 1,
                "ERROR" => error += 1,
                _ => continue,
            }
            let text = format!("{level}: {}", message.as_str().unwrap_or_default());
            if examples.len() < 3 && !examples.contains(&text) {
                examples.push(text);
            }
        }
        (warn, error, examples)
    }

    /// Where the data directory and log are (removed on drop).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until `base` answers `/healthz/ready` with 200, at most 60 s.
pub async fn wait_ready(http: &reqwest::Client, base: &str) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !is_ready(http, base).await {
        if Instant::now() > deadline {
            return Err(format!(
                "{base}/healthz/ready did not answer 200 within 60 s"
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

async fn is_ready(http: &reqwest::Client, base: &str) -> bool {
    match http.get(format!("{base}/healthz/ready")).send().await {
        Ok(r) => r.status().is_success(),
        Err(_) => false,
    }
}

/// The HTTP address named by the line `serve` logs once its listeners are bound.
fn serving_address(log: &Path) -> Option<String> {
    let all = std::fs::read_to_string(log).ok()?;
    let bound = all
        .lines()
        .find_map(keycast_test_support::Addresses::from_log_line)?;
    Some(bound.http.to_string())
}

/// A process's resident memory, open file descriptors and CPU time, from `/proc`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcSample {
    /// `VmRSS` of `/proc/<pid>/status`, in KiB.
    pub rss_kib: u64,
    /// Entries of `/proc/<pid>/fd`.
    pub fds: u64,
    /// User + system CPU time (`/proc/<pid>/stat` fields 14 and 15), in clock ticks.
    pub cpu_ticks: u64,
}

/// `pid`'s sample now; `None` if it is gone or `/proc` cannot be read.
pub fn sample(pid: u32) -> Option<ProcSample> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss_kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count() as u64;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    Some(ProcSample {
        rss_kib,
        fds,
        cpu_ticks: cpu_ticks(&stat)?,
    })
}

/// `utime + stime` of a `/proc/<pid>/stat` line. The command name (field 2) is in
/// parentheses and may hold spaces, so fields are counted after its closing one.
fn cpu_ticks(stat: &str) -> Option<u64> {
    let mut rest = stat[stat.rfind(')')? + 1..].split_whitespace();
    // After ")": state is field 3, so utime (14) and stime (15) are the 12th and 13th.
    let utime: u64 = rest.nth(11)?.parse().ok()?;
    let stime: u64 = rest.next()?.parse().ok()?;
    Some(utime + stime)
}

/// Clock ticks per second (`getconf CLK_TCK`; 100 if that fails, as on every common
/// Linux).
pub fn clock_ticks_per_second() -> u64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok()?.trim().parse().ok())
        .filter(|&t| t > 0)
        .unwrap_or(100)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_ticks_skips_a_command_name_with_spaces_and_parentheses() {
        let stat = "4242 (tokio (rt) x) S 1 4242 4242 0 -1 4194560 900 0 0 0 \
                    1234 567 0 0 20 0 9 0 100 2000000 3000 18446744073709551615";
        assert_eq!(cpu_ticks(stat), Some(1234 + 567));
        assert_eq!(cpu_ticks("garbage"), None);
    }

    #[test]
    fn the_http_address_comes_from_the_serving_line() {
        let dir = tempfile::tempdir().expect("dir");
        let log = dir.path().join("server.log");
        assert_eq!(serving_address(&log), None, "no log yet");
        std::fs::write(
            &log,
            concat!(
                r#"{"level":"WARN","message":"no relays configured"}"#,
                "\n",
                r#"{"level":"INFO","message":"keycast-server is serving","listen":"127.0.0.1:4100"}"#,
                "\n",
            ),
        )
        .expect("write");
        assert_eq!(serving_address(&log).as_deref(), Some("127.0.0.1:4100"));
    }

    #[test]
    fn this_process_can_be_sampled() {
        let s = sample(std::process::id()).expect("/proc/self");
        assert!(s.rss_kib > 0 && s.fds >= 3, "{s:?}");
    }
}
