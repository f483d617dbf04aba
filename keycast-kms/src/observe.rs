//! Hooks for KMS call metrics. The server plugs a Prometheus recorder in here.

use std::fmt::Debug;
use std::time::Duration;

/// How one provider call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallOutcome {
    /// The provider answered with success.
    Ok,
    /// A transient failure (connection, timeout, 429, 5xx); it may be retried.
    Transient,
    /// A permanent failure (bad request, access denied, wrong AAD, ...).
    Permanent,
}

/// Receives one event per provider call attempt (retries are separate attempts).
pub trait KmsObserver: Send + Sync + Debug + 'static {
    /// `backend` is `aws`, `gcp` or `vault`; `op` is `wrap`, `unwrap`, or a backend's
    /// setup call (e.g. `read_key` when the vault backend connects).
    fn call(
        &self,
        backend: &'static str,
        op: &'static str,
        elapsed: Duration,
        outcome: CallOutcome,
    );
}

/// Ignores every event.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoopObserver;

impl KmsObserver for NoopObserver {
    fn call(&self, _: &'static str, _: &'static str, _: Duration, _: CallOutcome) {}
}
