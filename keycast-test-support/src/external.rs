//! Outside programs (moto, bao, redis-server, an SMTP sink) that take a port number and
//! can neither be handed a socket nor report a port they picked. Their port is one that was
//! free a moment ago, so another process may take it first: such a program then exits
//! (address in use) and is started again on another port.

use std::net::TcpStream;
use std::process::Child;
use std::time::Duration;

use crate::eventually::eventually_blocking;
use crate::listener::closed_port;

/// How many ports [`spawn_on_free_port`] tries before giving up.
const ATTEMPTS: usize = 5;

/// Starts a program with `spawn(port)` on a free port and waits until it accepts
/// connections there; the port and the process. A program that exits first (its port was
/// taken meanwhile) is started again on another port.
///
/// # Panics
/// If it never comes up within `deadline` or exits on every attempt.
pub fn spawn_on_free_port(
    what: &str,
    deadline: Duration,
    mut spawn: impl FnMut(u16) -> Child,
) -> (u16, Child) {
    for _ in 0..ATTEMPTS {
        let port = closed_port();
        let mut child = spawn(port);
        if wait_accepting(what, port, &mut child, deadline) {
            return (port, child);
        }
        eprintln!("{what} exited before accepting on port {port}; trying another port");
    }
    panic!("{what} did not start on any of {ATTEMPTS} ports")
}

/// Waits until `child` accepts connections on loopback `port`: `true` then, `false` if it
/// exited first.
///
/// # Panics
/// If `deadline` passes first.
pub fn wait_accepting(what: &str, port: u16, child: &mut Child, deadline: Duration) -> bool {
    eventually_blocking(deadline, &format!("{what} on port {port}"), || {
        if let Ok(Some(_)) = child.try_wait() {
            return Some(false);
        }
        // Ours, not another process on the port: still running once it answers.
        let accepting = TcpStream::connect(("127.0.0.1", port)).is_ok();
        (accepting && matches!(child.try_wait(), Ok(None))).then_some(true)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    #[test]
    fn a_program_that_exits_is_retried_then_reported() {
        let mut tries = 0;
        let started = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            spawn_on_free_port("false", Duration::from_secs(10), |_| {
                tries += 1;
                Command::new("false").spawn().expect("spawn false")
            })
        }));
        assert!(started.is_err());
        assert_eq!(tries, ATTEMPTS);
    }

    #[test]
    fn a_listening_program_is_found_on_its_port() {
        let (port, mut child) =
            spawn_on_free_port("a python3 listener", Duration::from_secs(10), |port| {
                // A tiny listener of our own: python3 is on every machine that runs the suite.
                Command::new("python3")
                    .args([
                        "-c",
                        "import socket,sys,time; s=socket.socket(); \
                     s.bind(('127.0.0.1', int(sys.argv[1]))); s.listen(); time.sleep(30)",
                    ])
                    .arg(port.to_string())
                    .spawn()
                    .expect("spawn python3")
            });
        assert!(TcpStream::connect(("127.0.0.1", port)).is_ok());
        let _ = child.kill();
        let _ = child.wait();
    }
}
