//! A private SMTP server: aiosmtpd (PyPI) run by the Python in `KEYCAST_TEST_SMTP_PYTHON`,
//! delivering into a Maildir the test reads.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use keycast_test_support::{eventually, require_service, spawn_on_free_port};

/// aiosmtpd on a free port; stopped and its mail removed on drop.
pub struct PrivateSmtp {
    port: u16,
    dir: PathBuf,
    child: Child,
}

impl PrivateSmtp {
    /// `None` (the test prints that it was skipped) without `KEYCAST_TEST_SMTP_PYTHON`.
    pub fn start() -> Option<Self> {
        let python = require_service("KEYCAST_TEST_SMTP_PYTHON")?;
        let dir = std::env::temp_dir().join(format!("keycast-smtp-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("smtp dir");
        // aiosmtpd exits at once if it is not installed for this Python: the helper then
        // says it exited on every port.
        let (port, child) = spawn_on_free_port(
            "aiosmtpd (is it installed for this Python?)",
            Duration::from_secs(20),
            |port| {
                Command::new(&python)
                    .args(["-m", "aiosmtpd", "-n", "-l", &format!("127.0.0.1:{port}")])
                    .args(["-c", "aiosmtpd.handlers.Mailbox"])
                    .arg(dir.join("maildir"))
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .expect("start aiosmtpd")
            },
        );
        Some(Self { port, dir, child })
    }

    /// The URL keycast-server sends through.
    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    /// Every message delivered so far, as text, oldest first (Maildir names start with
    /// the delivery time in seconds and microseconds).
    pub fn messages(&self) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(self.dir.join("maildir/new")) else {
            return Vec::new();
        };
        let mut paths: Vec<_> = entries.filter_map(|e| Some(e.ok()?.path())).collect();
        paths.sort_by_key(|p| {
            let name = p.file_name().map(|n| n.to_string_lossy().into_owned());
            let name = name.unwrap_or_default();
            let (secs, rest) = name.split_once('.').unwrap_or(("", ""));
            let micros = rest.strip_prefix('M').and_then(|r| r.split('P').next());
            (
                secs.parse::<u64>().unwrap_or(0),
                micros.and_then(|m| m.parse::<u64>().ok()).unwrap_or(0),
            )
        });
        paths
            .iter()
            .filter_map(|p| std::fs::read_to_string(p).ok())
            .collect()
    }

    /// Waits for the `n`th message (1-based) addressed to `to`; its text.
    pub async fn message_to(&self, to: &str, n: usize) -> String {
        let what = format!("message {n} to {to}");
        eventually(Duration::from_secs(20), &what, || async {
            let mut mine = self
                .messages()
                .into_iter()
                .filter(|m| m.contains(&format!("X-RcptTo: {to}")));
            mine.nth(n - 1)
        })
        .await
    }
}

/// The 64-hex-character token indented on its own line in a message.
pub fn token_in(message: &str) -> String {
    message
        .lines()
        .map(str::trim)
        .find(|l| l.len() == 64 && l.bytes().all(|b| b.is_ascii_hexdigit()))
        .unwrap_or_else(|| panic!("no token in {message}"))
        .to_owned()
}

impl Drop for PrivateSmtp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
