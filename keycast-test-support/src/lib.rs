//! Dev-only helpers shared by keycast's tests, benches and load tool (never a dependency
//! of a published crate).
//!
//! - [`require_service`]: a test runs only when its service is configured, and fails
//!   instead of skipping under `KEYCAST_TEST_REQUIRE_SERVICES=1`.
//! - [`eventually`] / [`eventually_blocking`]: wait on a condition, never on a fixed sleep.
//! - [`local_listener`]: a socket bound once and handed over, never a released port;
//!   [`spawn_on_free_port`] for outside programs that can only be told a port number.
//! - [`ServerProcess`]: the `keycast-server` binary on port 0, with its bound addresses read
//!   from its ready log line.

mod eventually;
mod external;
mod listener;
mod server;
mod service;

pub use eventually::{eventually, eventually_blocking, Done};
pub use external::{spawn_on_free_port, wait_accepting};
pub use listener::{closed_port, local_listener, local_tokio_listener};
pub use server::{Addresses, ServerProcess};
pub use service::{missing_service, require_service};
