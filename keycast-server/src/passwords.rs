//! Password hashing with argon2id (the argon2 crate's defaults: 19 MiB, 2 passes).
//!
//! Every hash and every verification (registration, every login form, the password checks
//! of export and key replacement, password reset) runs on [`PasswordHashing`]: a fixed
//! set of threads with a short bounded wait queue, so an unauthenticated flood can hold
//! at most `slots × 19 MiB` of argon2 memory and CPU however many requests it sends; the
//! excess is refused at once with [`keycast_core::Error::Overloaded`] (HTTP 503 with
//! `Retry-After`). Dedicated threads rather than the blocking pool: each thread that ever
//! hashes keeps a malloc arena holding its 19 MiB, so a pool that grows to hundreds of
//! threads under a burst keeps hundreds of them (RSS that stays high afterwards).

use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use keycast_core::PasswordHash;
use zeroize::Zeroizing;

/// Shortest password accepted, in characters.
pub const MIN_LEN: usize = 10;
/// Longest password accepted, in bytes (bounds the hashing work an attacker can ask for).
pub const MAX_BYTES: usize = 1024;

/// Why a password is refused at registration, fit to show the user.
pub fn check_strength(password: &str) -> Result<(), String> {
    if password.chars().count() < MIN_LEN {
        return Err(format!("password must have at least {MIN_LEN} characters"));
    }
    if password.len() > MAX_BYTES {
        return Err(format!("password must be at most {MAX_BYTES} bytes"));
    }
    Ok(())
}

type Job = Box<dyn FnOnce() + Send>;

/// The password hashing threads and their queue. Cloning shares them; the threads end
/// when the last clone is dropped.
#[derive(Clone)]
pub struct PasswordHashing {
    jobs: async_channel::Sender<Job>,
    /// Jobs accepted and not finished (running or waiting).
    in_flight: Arc<AtomicUsize>,
    /// Most jobs accepted at once: slots + queue.
    capacity: usize,
}

impl std::fmt::Debug for PasswordHashing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PasswordHashing")
            .field("in_flight", &self.in_flight.load(Ordering::Relaxed))
            .field("capacity", &self.capacity)
            .finish()
    }
}

/// Gives its slot back when the job ends, runs or not.
struct InFlight(Arc<AtomicUsize>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl PasswordHashing {
    /// `slots` threads (at least 1), and up to `queue` jobs waiting for one.
    pub fn new(slots: usize, queue: usize) -> Self {
        let slots = slots.max(1);
        let (jobs, next) = async_channel::unbounded::<Job>();
        for n in 0..slots {
            let next = next.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("keycast-argon2-{n}"))
                .spawn(move || {
                    while let Ok(job) = next.recv_blocking() {
                        // A panicking job (none is expected) must not take the thread.
                        let _ = std::panic::catch_unwind(AssertUnwindSafe(job));
                    }
                });
            if let Err(e) = spawned {
                tracing::error!(error = %e, "cannot start a password hashing thread");
            }
        }
        Self {
            jobs,
            in_flight: Arc::new(AtomicUsize::new(0)),
            capacity: slots + queue,
        }
    }

    /// Runs `work` on a hashing thread; `Overloaded` at once when every slot and queue
    /// place is taken. A caller that goes away while waiting leaves its job skipped.
    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> keycast_core::Result<T> {
        if self.in_flight.fetch_add(1, Ordering::AcqRel) >= self.capacity {
            self.in_flight.fetch_sub(1, Ordering::AcqRel);
            return Err(keycast_core::Error::Overloaded);
        }
        let slot = InFlight(self.in_flight.clone());
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            if tx.is_closed() {
                return;
            }
            let result = work();
            // Free before answering, so the caller never sees its own slot still taken.
            drop(slot);
            let _ = tx.send(result);
        });
        self.jobs
            .send(job)
            .await
            .map_err(|_| keycast_core::Error::Internal("password hashing stopped".into()))?;
        rx.await
            .map_err(|_| keycast_core::Error::Internal("password hashing job lost".into()))
    }

    /// A new argon2id hash of `password`.
    pub async fn hash(&self, password: Zeroizing<String>) -> keycast_core::Result<PasswordHash> {
        self.run(move || {
            let salt = SaltString::generate(&mut OsRng);
            let phc = Argon2::default()
                .hash_password(password.as_bytes(), &salt)
                .map_err(|e| keycast_core::Error::Internal(format!("argon2: {e}")))?;
            PasswordHash::parse(&phc.to_string())
        })
        .await?
    }

    /// Whether `password` matches `stored`. With `None` (no such account) it still does
    /// the work of one verification against a fixed hash, so timing does not tell which
    /// e-mails exist. `Overloaded` when no slot is free.
    pub async fn verify(
        &self,
        password: Zeroizing<String>,
        stored: Option<PasswordHash>,
    ) -> keycast_core::Result<bool> {
        self.run(move || {
            let phc = stored.as_ref().map_or(DUMMY, |h| h.as_str());
            let Ok(parsed) = argon2::PasswordHash::new(phc) else {
                return false;
            };
            let ok = Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok();
            ok && stored.is_some()
        })
        .await
    }
}

/// A real argon2id hash (default parameters) of a random string nobody knows.
const DUMMY: &str = "$argon2id$v=19$m=19456,t=2,p=1$Y2JXOXNhbHRzYWx0c2E$PU3ZSt7JdWhAtqUVbsYEJ4I8wFm2WiyrMkuLxT4DyVM";

#[cfg(test)]
mod tests {
    use super::*;

    fn pw(s: &str) -> Zeroizing<String> {
        Zeroizing::new(s.to_owned())
    }

    #[tokio::test]
    async fn hashes_verify_and_wrong_passwords_do_not() {
        let pool = PasswordHashing::new(2, 4);
        let h = pool.hash(pw("correct horse battery")).await.expect("hash");
        assert!(h.as_str().starts_with("$argon2id$"));
        let verify = |p: &str, h| pool.verify(pw(p), h);
        assert!(verify("correct horse battery", Some(h.clone()))
            .await
            .expect("ran"));
        assert!(!verify("wrong horse battery", Some(h)).await.expect("ran"));
        assert!(!verify("anything", None).await.expect("ran"));
        assert!(
            argon2::PasswordHash::new(DUMMY).is_ok(),
            "the dummy hash parses"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn beyond_slots_and_queue_callers_are_refused_at_once() {
        let pool = PasswordHashing::new(1, 2);
        // Hold the one slot until told, so the queue fills deterministically.
        let (release, held) = std::sync::mpsc::channel::<()>();
        let (started_tx, started) = tokio::sync::oneshot::channel();
        let blocker = {
            let pool = pool.clone();
            tokio::spawn(async move {
                pool.run(move || {
                    let _ = started_tx.send(());
                    let _ = held.recv();
                })
                .await
            })
        };
        started.await.expect("the slot is taken");
        let waiting: Vec<_> = (0..2)
            .map(|_| {
                let pool = pool.clone();
                tokio::spawn(async move { pool.verify(pw("x"), None).await })
            })
            .collect();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while pool.in_flight.load(Ordering::Acquire) < 3 {
            assert!(std::time::Instant::now() < deadline, "{pool:?}");
            tokio::task::yield_now().await;
        }
        assert!(matches!(
            pool.verify(pw("x"), None).await,
            Err(keycast_core::Error::Overloaded)
        ));
        release.send(()).expect("release");
        blocker.await.expect("join").expect("ran");
        for w in waiting {
            assert!(!w.await.expect("join").expect("queued ones run"));
        }
        assert_eq!(
            pool.in_flight.load(Ordering::Acquire),
            0,
            "slots given back"
        );
        assert!(!pool.verify(pw("x"), None).await.expect("free again"));
    }

    #[test]
    fn strength_rules() {
        assert!(check_strength("short").is_err());
        assert!(check_strength("long enough ✓").is_ok());
        assert!(check_strength(&"x".repeat(MAX_BYTES + 1)).is_err());
    }
}
