//! The `keycast-server` binary as a child process: started with its listeners on port 0,
//! its stderr drained as it comes (a full pipe would block the server), and the addresses
//! it bound read from the line it logs once serving (`KEYCAST_LOG_FORMAT=json`).

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The message of the log line `serve` writes once its listeners are bound.
const SERVING: &str = "keycast-server is serving";

/// The addresses a server bound, from its serving line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Addresses {
    /// The HTTP listener.
    pub http: SocketAddr,
    /// The embedded relay's `ws://` URL, when it runs one (no `KEYCAST_RELAYS`).
    pub relay: Option<String>,
    /// The separate `/metrics` listener, when `KEYCAST_METRICS_LISTEN` is set.
    pub metrics: Option<SocketAddr>,
}

impl Addresses {
    /// The addresses in one JSON log line, if it is the serving line.
    pub fn from_log_line(line: &str) -> Option<Self> {
        let v: serde_json::Value = serde_json::from_str(line).ok()?;
        if v["message"] != SERVING {
            return None;
        }
        let text = |k: &str| v[k].as_str().filter(|s| !s.is_empty()).map(str::to_owned);
        Some(Self {
            http: text("listen")?.parse().ok()?,
            relay: text("embedded_relay").map(|r| r.trim_end_matches('/').to_owned()),
            metrics: text("metrics_listen").and_then(|m| m.parse().ok()),
        })
    }
}

/// A running `keycast-server` (or anything logging the same serving line); killed on drop.
#[derive(Debug)]
pub struct ServerProcess {
    /// Behind a lock so a readiness check can ask whether it exited through `&self`.
    child: Mutex<Child>,
    /// Every stderr line so far.
    logs: Arc<Mutex<String>>,
    /// The same lines as they come, for [`ServerProcess::wait_serving`].
    lines: Receiver<String>,
    drain: Option<JoinHandle<()>>,
}

impl ServerProcess {
    /// Spawns `command` with its stderr piped here (stdin and stdout as the command sets
    /// them); give it `KEYCAST_LOG_FORMAT=json` and `127.0.0.1:0` listen addresses.
    ///
    /// # Errors
    /// If the process cannot be spawned.
    pub fn spawn(mut command: Command) -> std::io::Result<Self> {
        let mut child = command.stderr(Stdio::piped()).spawn()?;
        let stderr = child.stderr.take().expect("piped stderr");
        let logs = Arc::new(Mutex::new(String::new()));
        let (tx, lines) = std::sync::mpsc::channel();
        let kept = logs.clone();
        let drain = std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Ok(mut all) = kept.lock() {
                    all.push_str(&line);
                    all.push('\n');
                }
                // Nobody listening any more is fine: the lines are kept above.
                let _ = tx.send(line);
            }
        });
        Ok(Self {
            child: Mutex::new(child),
            logs,
            lines,
            drain: Some(drain),
        })
    }

    /// Waits for the serving line; the addresses it names.
    ///
    /// # Errors
    /// If the process exits first or `deadline` passes, with what it logged.
    pub fn wait_serving(&mut self, deadline: Duration) -> Result<Addresses, String> {
        let until = Instant::now() + deadline;
        loop {
            let left = until.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    if let Some(a) = Addresses::from_log_line(&line) {
                        return Ok(a);
                    }
                }
                Err(RecvTimeoutError::Disconnected) => {
                    let status = self.child().wait().map(|s| s.to_string());
                    return Err(format!(
                        "the server exited before serving ({status:?}):\n{}",
                        self.logs()
                    ));
                }
                Err(RecvTimeoutError::Timeout) => {
                    return Err(format!(
                        "the server was not serving within {deadline:?}:\n{}",
                        self.logs()
                    ));
                }
            }
        }
    }

    fn child(&self) -> std::sync::MutexGuard<'_, Child> {
        // A panic while holding the lock leaves the child as it was.
        self.child
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// What the server logged so far.
    pub fn logs(&self) -> String {
        self.logs.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child().id()
    }

    /// Whether the process is still running (not exited, not killed).
    pub fn alive(&self) -> bool {
        matches!(self.child().try_wait(), Ok(None))
    }

    /// The exit status, if the process has exited.
    pub fn exited(&self) -> Option<ExitStatus> {
        self.child().try_wait().ok().flatten()
    }

    /// Kills the process with SIGKILL, as a crash would; everything it logged.
    pub fn kill(&mut self) -> String {
        {
            let mut child = self.child();
            let _ = child.kill();
            let _ = child.wait();
        }
        self.all_logs()
    }

    /// Sends SIGTERM and waits up to `grace` for an exit, then kills; whether it exited
    /// with status 0 on SIGTERM, and everything it logged.
    pub fn stop(&mut self, grace: Duration) -> (bool, String) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status();
        let until = Instant::now() + grace;
        let mut clean = false;
        while Instant::now() < until {
            if let Some(status) = self.exited() {
                clean = status.success();
                break;
            }
            // Polling an exit status: std has no wait with a timeout.
            std::thread::sleep(Duration::from_millis(20));
        }
        (clean, self.kill())
    }

    /// Every line, once the process has exited and its stderr is closed.
    fn all_logs(&mut self) -> String {
        if let Some(drain) = self.drain.take() {
            let _ = drain.join();
        }
        self.logs()
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let mut child = self.child();
        let _ = child.kill();
        let _ = child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_addresses_from_the_serving_line() {
        let line = r#"{"level":"INFO","message":"keycast-server is serving","listen":"127.0.0.1:4100","embedded_relay":"ws://127.0.0.1:4101/","metrics_listen":""}"#;
        let a = Addresses::from_log_line(line).expect("the serving line");
        assert_eq!(a.http, "127.0.0.1:4100".parse().expect("addr"));
        assert_eq!(a.relay.as_deref(), Some("ws://127.0.0.1:4101"));
        assert_eq!(a.metrics, None);
        assert!(Addresses::from_log_line(r#"{"message":"something else"}"#).is_none());
        assert!(Addresses::from_log_line("not json").is_none());
    }

    #[test]
    fn a_process_that_exits_before_serving_is_reported_with_its_logs() {
        let mut c = Command::new("sh");
        c.args(["-c", "echo starting >&2; exit 3"]);
        let mut p = ServerProcess::spawn(c).expect("spawn sh");
        let e = p
            .wait_serving(Duration::from_secs(30))
            .expect_err("never serving");
        assert!(e.contains("exited before serving"), "{e}");
        assert!(e.contains("starting"), "{e}");
    }

    #[test]
    fn the_serving_line_is_found_among_others() {
        let mut c = Command::new("sh");
        c.args([
            "-c",
            r#"echo '{"message":"warming up"}' >&2; echo '{"message":"keycast-server is serving","listen":"127.0.0.1:9"}' >&2; exec sleep 30"#,
        ]);
        let mut p = ServerProcess::spawn(c).expect("spawn sh");
        let a = p.wait_serving(Duration::from_secs(30)).expect("serving");
        assert_eq!(a.http.port(), 9);
        assert!(p.alive());
        let logs = p.kill();
        assert!(logs.contains("warming up"), "{logs}");
    }
}
