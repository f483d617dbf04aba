//! A private `redis-server` (the binary in `KEYCAST_TEST_REDIS_SERVER`), which a test may
//! stop and restart; it keeps nothing across restarts.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use keycast_test_support::{require_service, spawn_on_free_port, wait_accepting};

/// A private `redis-server`, so the test can stop and restart it.
pub struct PrivateRedis {
    binary: String,
    port: u16,
    child: Option<Child>,
}

impl PrivateRedis {
    pub fn start() -> Option<Self> {
        let binary = require_service("KEYCAST_TEST_REDIS_SERVER")?;
        let (port, child) = spawn_on_free_port("redis-server", Duration::from_secs(10), |port| {
            spawn(&binary, port)
        });
        Some(Self {
            binary,
            port,
            child: Some(child),
        })
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts it again (empty: no persistence) on the same port, which the servers under
    /// test are configured with, and waits until it accepts connections.
    pub fn up(&mut self) {
        let mut child = spawn(&self.binary, self.port);
        let up = wait_accepting(
            "redis-server",
            self.port,
            &mut child,
            Duration::from_secs(10),
        );
        assert!(
            up,
            "redis-server exited: port {} was taken meanwhile",
            self.port
        );
        self.child = Some(child);
    }

    /// Kills it, losing everything it held.
    pub fn down(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// `redis-server` on loopback `port`, keeping nothing on disk.
fn spawn(binary: &str, port: u16) -> Child {
    Command::new(binary)
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server")
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.down();
    }
}
