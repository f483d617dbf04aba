//! A private `redis-server` (the binary in `KEYCAST_TEST_REDIS_SERVER`), which a test may
//! stop and restart; it keeps nothing across restarts.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::free_port;

/// A private `redis-server`, so the test can stop and restart it.
pub struct PrivateRedis {
    binary: String,
    port: u16,
    child: Option<Child>,
}

impl PrivateRedis {
    pub fn start() -> Option<Self> {
        let binary = match std::env::var("KEYCAST_TEST_REDIS_SERVER") {
            Ok(b) if !b.is_empty() => b,
            _ if std::env::var("KEYCAST_TEST_REQUIRE_SERVICES").as_deref() == Ok("1") => {
                panic!("KEYCAST_TEST_REDIS_SERVER must be set when KEYCAST_TEST_REQUIRE_SERVICES=1")
            }
            _ => {
                eprintln!("skipped: KEYCAST_TEST_REDIS_SERVER is not set");
                return None;
            }
        };
        let mut redis = Self {
            binary,
            port: free_port(),
            child: None,
        };
        redis.up();
        Some(redis)
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts it (empty: no persistence) and waits until it accepts connections.
    pub fn up(&mut self) {
        let child = Command::new(&self.binary)
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills it, losing everything it held.
    pub fn down(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.down();
    }
}
