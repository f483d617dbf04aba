//! Password hashing with argon2id (the argon2 crate's defaults: 19 MiB, 2 passes).
//!
//! Every hash and every verification (registration, every login form, the password checks
//! of export and key replacement, password reset) runs on [`PasswordHashing`]: a fixed
//! set of threads with a short bounded wait queue, so an unauthenticated flood can hold
//! at most `slots × 19 MiB` of argon2 memory and CPU however many requests it sends; the
//! excess is refused at once with [`keycast_core::Error::Overloaded`] (HTTP 503 with
//! `Retry-After`).
//!
//! Each thread hashes into one 19 MiB block buffer of its own, allocated once and reused:
//! with glibc, allocating and freeing 19 MiB per hash raises malloc's dynamic mmap
//! threshold, after which every hash left another 19 MiB resident (measured: 10 hashes in
//! a row on one thread, 179 MiB), and a burst left the process at gigabytes for good.
//! Dedicated threads, not the blocking pool, so only `slots` such buffers ever exist.

use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use std::cell::RefCell;

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{Output, ParamsString, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
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

    /// A new argon2id hash of `password` (default parameters, PHC string).
    pub async fn hash(&self, password: Zeroizing<String>) -> keycast_core::Result<PasswordHash> {
        self.run(move || new_hash(password.as_bytes())).await?
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
            matches(password.as_bytes(), phc) && stored.is_some()
        })
        .await
    }
}

thread_local! {
    /// This thread's argon2 memory, kept between hashes (see the module docs).
    static BLOCKS: RefCell<Vec<Block>> = const { RefCell::new(Vec::new()) };
}

/// Most memory a thread keeps for reuse (64 MiB of 1 KiB blocks); a stored hash asking
/// for more (none made here does) is computed in a buffer freed afterwards.
const MAX_KEPT_BLOCKS: usize = 64 * 1024;

/// `argon` over `password` and `salt` into `out`, in this thread's reused memory.
fn argon2_into(
    argon: &Argon2<'_>,
    blocks: usize,
    password: &[u8],
    salt: &[u8],
    out: &mut [u8],
) -> argon2::Result<()> {
    if blocks > MAX_KEPT_BLOCKS {
        let mut once = vec![Block::default(); blocks];
        let hashed = argon.hash_password_into_with_memory(password, salt, out, &mut once);
        once.iter_mut().for_each(zeroize::Zeroize::zeroize);
        return hashed;
    }
    BLOCKS.with(|kept| {
        let mut kept = kept.borrow_mut();
        if kept.len() < blocks {
            kept.resize(blocks, Block::default());
        }
        let hashed = argon.hash_password_into_with_memory(password, salt, out, &mut kept[..blocks]);
        // The blocks derive from the password: they do not outlive the hash (about 2 ms
        // of a ~50 ms hash).
        kept[..blocks]
            .iter_mut()
            .for_each(zeroize::Zeroize::zeroize);
        hashed
    })
}

fn internal(e: impl std::fmt::Display) -> keycast_core::Error {
    keycast_core::Error::Internal(format!("argon2: {e}"))
}

/// The PHC string of a new argon2id hash with the crate's default parameters (what
/// `Argon2::default().hash_password` makes, without its per-call allocation).
fn new_hash(password: &[u8]) -> keycast_core::Result<PasswordHash> {
    let salt = SaltString::generate(&mut OsRng);
    let params = Params::default();
    let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
    let mut salt_bytes = [0u8; 64];
    let salt_bytes = salt
        .as_salt()
        .decode_b64(&mut salt_bytes)
        .map_err(internal)?;
    let mut out = [0u8; Params::DEFAULT_OUTPUT_LEN];
    argon2_into(&argon, params.block_count(), password, salt_bytes, &mut out).map_err(internal)?;
    let phc = argon2::PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(&params).map_err(internal)?,
        salt: Some(salt.as_salt()),
        hash: Some(Output::new(&out).map_err(internal)?),
    };
    PasswordHash::parse(&phc.to_string())
}

/// Whether `password` hashes to the PHC string `phc` (its own algorithm, version and
/// parameters); the comparison is constant-time (`Output`'s equality).
fn matches(password: &[u8], phc: &str) -> bool {
    let Ok(parsed) = argon2::PasswordHash::new(phc) else {
        return false;
    };
    let Ok(algorithm) = Algorithm::try_from(parsed.algorithm) else {
        return false;
    };
    let Ok(version) = parsed.version.map(Version::try_from).transpose() else {
        return false;
    };
    let Ok(params) = Params::try_from(&parsed) else {
        return false;
    };
    let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else {
        return false;
    };
    let mut salt_bytes = [0u8; 64];
    let Ok(salt_bytes) = salt.decode_b64(&mut salt_bytes) else {
        return false;
    };
    let argon = Argon2::new(algorithm, version.unwrap_or_default(), params.clone());
    let mut out = [0u8; Output::MAX_LENGTH];
    let out = &mut out[..expected.len()];
    if argon2_into(&argon, params.block_count(), password, salt_bytes, out).is_err() {
        return false;
    }
    Output::new(out).is_ok_and(|computed| computed == expected)
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

    #[test]
    fn hashes_are_what_the_argon2_crate_makes_and_checks() {
        use argon2::password_hash::{PasswordHasher, PasswordVerifier};
        let ours = new_hash(b"correct horse battery").expect("hash");
        let parsed = argon2::PasswordHash::new(ours.as_str()).expect("PHC");
        assert!(Argon2::default()
            .verify_password(b"correct horse battery", &parsed)
            .is_ok());
        assert!(ours.as_str().starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        let salt = SaltString::generate(&mut OsRng);
        let theirs = Argon2::default()
            .hash_password(b"another password", &salt)
            .expect("hash")
            .to_string();
        assert!(matches(b"another password", &theirs));
        assert!(!matches(b"another passwore", &theirs));
        assert!(!matches(b"x", "not a PHC string"));
        assert!(
            !matches(b"x", "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ"),
            "no hash"
        );
    }

    #[test]
    fn a_thread_hashing_again_and_again_keeps_one_buffer() {
        // Run on a fresh thread: its buffer is the only one it ever allocates.
        std::thread::spawn(|| {
            for _ in 0..3 {
                assert!(!matches(b"x", DUMMY));
            }
            BLOCKS.with(|b| {
                let b = b.borrow();
                assert_eq!(b.len(), Params::default().block_count());
                assert!(b.capacity() < 2 * Params::default().block_count());
            });
        })
        .join()
        .expect("thread");
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
