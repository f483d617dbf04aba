//! What every remote backend shares: one HTTP client setup, timeouts, retries with jitter,
//! error classification, and observer events.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use keycast_core::Error;
use rand::Rng;

use crate::observe::{CallOutcome, KmsObserver, NoopObserver};

/// Timeouts and retry schedule of remote calls.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Limit for one attempt, connection included.
    pub attempt_timeout: Duration,
    /// Waits before each retry of a transient failure; jitter of up to +50 % is added.
    pub backoff: Vec<Duration>,
}

impl Default for RetryPolicy {
    /// 5 s per attempt; retries after 100, 200 and 400 ms.
    fn default() -> Self {
        Self {
            attempt_timeout: Duration::from_secs(5),
            backoff: [100, 200, 400].map(Duration::from_millis).to_vec(),
        }
    }
}

/// A failed attempt, classified.
#[derive(Debug)]
pub enum Failure {
    /// Worth retrying: connection error, timeout, 429, 5xx.
    Transient(String),
    /// Not worth retrying; returned as is.
    Permanent(Error),
}

/// Identity of a remote key manager, for messages and metrics.
#[derive(Debug, Clone)]
pub struct Remote {
    /// `aws`, `gcp` or `vault`.
    pub backend: &'static str,
    /// The key (ARN, resource name, transit key name). Never a secret.
    pub key: String,
    /// Retry schedule.
    pub policy: RetryPolicy,
    /// Metrics hook.
    pub observer: Arc<dyn KmsObserver>,
}

impl Remote {
    /// A remote with the default policy and no observer.
    pub fn new(backend: &'static str, key: impl Into<String>) -> Self {
        Self {
            backend,
            key: key.into(),
            policy: RetryPolicy::default(),
            observer: Arc::new(NoopObserver),
        }
    }

    /// Runs `attempt` with a timeout, retrying transient failures on the policy's schedule.
    /// Exhausted retries are [`Error::Unavailable`]; permanent failures pass through.
    pub async fn call<T, F, Fut>(&self, op: &'static str, mut attempt: F) -> Result<T, Error>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, Failure>>,
    {
        let mut waits = self.policy.backoff.iter();
        loop {
            let started = Instant::now();
            let result = match tokio::time::timeout(self.policy.attempt_timeout, attempt()).await {
                Ok(r) => r,
                Err(_) => Err(Failure::Transient(format!(
                    "no answer within {:?}",
                    self.policy.attempt_timeout
                ))),
            };
            let outcome = match &result {
                Ok(_) => CallOutcome::Ok,
                Err(Failure::Transient(_)) => CallOutcome::Transient,
                Err(Failure::Permanent(_)) => CallOutcome::Permanent,
            };
            self.observer
                .call(self.backend, op, started.elapsed(), outcome);
            match result {
                Ok(v) => return Ok(v),
                Err(Failure::Permanent(e)) => return Err(e),
                Err(Failure::Transient(why)) => match waits.next() {
                    Some(wait) => {
                        let jitter = rand::thread_rng().gen_range(0.0..0.5);
                        tracing::warn!(backend = self.backend, key = %self.key, op, error = %why, "transient KMS failure; retrying");
                        tokio::time::sleep(wait.mul_f64(1.0 + jitter)).await;
                    }
                    None => {
                        return Err(Error::Unavailable(format!(
                            "{} key {}: {op} failed after retries: {why}",
                            self.backend, self.key
                        )))
                    }
                },
            }
        }
    }

    /// A permanent provider refusal, naming backend and key.
    pub fn refused(&self, op: &str, detail: impl std::fmt::Display) -> Failure {
        Failure::Permanent(Error::KeyManager(format!(
            "{} key {}: {op} refused: {detail}",
            self.backend, self.key
        )))
    }

    /// Classifies an HTTP response status. `body` is the provider's message, trimmed to a
    /// short prefix (provider error bodies hold no key material).
    pub fn classify_status(&self, op: &str, status: u16, body: &str) -> Failure {
        let detail: String = body.chars().take(200).collect();
        if status == 429 || status >= 500 {
            Failure::Transient(format!("HTTP {status}: {detail}"))
        } else {
            self.refused(op, format!("HTTP {status}: {detail}"))
        }
    }

    /// Classifies a transport error: connection and timeout problems are transient.
    pub fn classify_transport(&self, op: &str, e: &reqwest::Error) -> Failure {
        if e.is_connect() || e.is_timeout() || e.is_request() {
            Failure::Transient(format!("transport: {}", without_url(e)))
        } else {
            self.refused(op, format!("transport: {}", without_url(e)))
        }
    }
}

/// The error with its causes ("connection refused", ...), with the URL blanked out since
/// it may carry query secrets.
fn without_url(e: &reqwest::Error) -> String {
    let mut s = e.to_string();
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cause = c.source();
    }
    match e.url() {
        Some(url) => s.replace(url.as_str(), "<url>"),
        None => s,
    }
}

/// One HTTP client for all remote calls of a backend: rustls, per-request timeouts come
/// from [`RetryPolicy::attempt_timeout`]. Redirects are not followed: reqwest would resend
/// credential headers (e.g. `X-Vault-Token`) to whatever host a redirect names, so point
/// keycast at the active node or a load balancer instead.
pub fn http_client(backend: &'static str) -> Result<reqwest::Client, crate::KmsError> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("keycast-kms/", env!("CARGO_PKG_VERSION")))
        .pool_idle_timeout(Duration::from_secs(60))
        .build()
        .map_err(|e| crate::KmsError::Config {
            backend,
            reason: format!("cannot build HTTP client: {e}"),
        })
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex;

    use super::*;

    #[derive(Debug, Default)]
    struct Recorder(Mutex<Vec<CallOutcome>>);
    impl KmsObserver for Recorder {
        fn call(&self, _: &'static str, _: &'static str, _: Duration, o: CallOutcome) {
            self.0.lock().unwrap_or_else(|p| p.into_inner()).push(o);
        }
    }

    fn remote(observer: Arc<Recorder>) -> Remote {
        Remote {
            backend: "test",
            key: "k1".into(),
            policy: RetryPolicy {
                attempt_timeout: Duration::from_millis(50),
                backoff: [1, 2, 4].map(Duration::from_millis).to_vec(),
            },
            observer,
        }
    }

    #[tokio::test]
    async fn transient_failures_are_retried_three_times_then_unavailable() {
        let rec = Arc::new(Recorder::default());
        let tries = AtomicUsize::new(0);
        let r: Result<(), Error> = remote(rec.clone())
            .call("unwrap", || {
                tries.fetch_add(1, Ordering::Relaxed);
                async { Err(Failure::Transient("HTTP 503".into())) }
            })
            .await;
        assert_eq!(
            tries.load(Ordering::Relaxed),
            4,
            "one attempt and three retries"
        );
        match r {
            Err(Error::Unavailable(m)) => {
                assert!(m.contains("test key k1") && m.contains("503"), "{m}")
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(rec.0.lock().map(|v| v.len()).unwrap_or(0), 4);
    }

    #[tokio::test]
    async fn permanent_failures_are_not_retried_and_success_stops() {
        let rec = Arc::new(Recorder::default());
        let tries = AtomicUsize::new(0);
        let rm = remote(rec.clone());
        let r: Result<(), Error> = rm
            .call("unwrap", || {
                tries.fetch_add(1, Ordering::Relaxed);
                let f = rm.classify_status("unwrap", 400, "InvalidCiphertextException");
                async move { Err(f) }
            })
            .await;
        assert_eq!(tries.load(Ordering::Relaxed), 1);
        assert!(
            matches!(r, Err(Error::KeyManager(ref m)) if m.contains("HTTP 400")),
            "{r:?}"
        );

        let n = AtomicUsize::new(0);
        let r = rm
            .call("wrap", || {
                let i = n.fetch_add(1, Ordering::Relaxed);
                async move {
                    if i == 0 {
                        Err(Failure::Transient("reset".into()))
                    } else {
                        Ok(7)
                    }
                }
            })
            .await;
        assert_eq!(r, Ok(7));
        assert!(matches!(
            rm.classify_status("wrap", 429, ""),
            Failure::Transient(_)
        ));
        assert!(matches!(
            rm.classify_status("wrap", 502, ""),
            Failure::Transient(_)
        ));
        assert!(matches!(
            rm.classify_status("wrap", 403, ""),
            Failure::Permanent(_)
        ));
    }

    #[tokio::test]
    async fn slow_attempts_time_out_as_transient() {
        let rec = Arc::new(Recorder::default());
        let r: Result<(), Error> = remote(rec)
            .call("wrap", || async {
                tokio::time::sleep(Duration::from_secs(5)).await;
                Ok(())
            })
            .await;
        assert!(
            matches!(r, Err(Error::Unavailable(ref m)) if m.contains("no answer")),
            "{r:?}"
        );
    }
}
