//! A bounded cache whose misses load once for all concurrent callers (single-flight).
//!
//! Hits are a synchronous moka lookup, with no future on the hot path. A miss installs an
//! empty `OnceCell` and every concurrent caller awaits the same initialisation. A failed
//! load leaves the cell empty, so the next caller tries again; errors are never cached.
//!
//! A cache may keep each loaded value for a grace period past its expiry, to answer with
//! while the store is [`Error::Unavailable`] (design §7: cached entries keep serving during
//! a database outage). Invalidation removes both copies, so a revoked entry is never
//! served stale. Such caches share an [`Outage`] breaker: for a moment after the store
//! failed, misses are answered from the stale copy (or refused) without asking the store,
//! so an outage does not add the store's timeout to every request.

use std::future::Future;
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::OnceCell;

use crate::error::{Error, Result};

/// Expiry rule of a [`LoadingCache`].
#[derive(Debug, Clone, Copy)]
pub(crate) enum Expiry {
    /// Drop entries unused for this long.
    Idle(Duration),
    /// Drop entries this long after they were loaded, used or not.
    Live(Duration),
}

/// Whether the store failed just now; shared by the caches that serve stale copies.
#[derive(Debug)]
pub(crate) struct Outage {
    since: std::sync::Mutex<Option<std::time::Instant>>,
    hold: Duration,
}

impl Outage {
    /// After a failure, the store is left alone for `hold`; the next miss then probes it.
    pub(crate) fn new(hold: Duration) -> Arc<Self> {
        Arc::new(Self {
            since: std::sync::Mutex::new(None),
            hold,
        })
    }

    /// Whether a miss may ask the store: always while it is healthy; after a failure, only
    /// once the hold has passed, and then one caller at a time (the probe restarts the
    /// hold, so others keep using stale copies while it waits on the store).
    fn may_ask(&self) -> bool {
        let mut since = self.since.lock().unwrap_or_else(|e| e.into_inner());
        match *since {
            None => true,
            Some(at) if at.elapsed() < self.hold => false,
            Some(_) => {
                *since = Some(std::time::Instant::now());
                true
            }
        }
    }

    fn note(&self, available: bool) {
        let mut since = self.since.lock().unwrap_or_else(|e| e.into_inner());
        *since = (!available).then(std::time::Instant::now);
    }
}

pub(crate) struct LoadingCache<K, V> {
    entries: moka::sync::Cache<K, Arc<OnceCell<V>>>,
    /// Last loaded values, kept past expiry for outages (see the module docs).
    stale: Option<(moka::sync::Cache<K, V>, Arc<Outage>)>,
    /// Orders keeping a stale copy against invalidation (both rare: misses and writes).
    invalidating: std::sync::Mutex<()>,
    hits: AtomicU64,
    misses: AtomicU64,
    stale_served: AtomicU64,
}

impl<K, V> std::fmt::Debug for LoadingCache<K, V> {
    // Entries may hold secrets; show only the size.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadingCache")
            .field("entries", &self.entries.entry_count())
            .finish_non_exhaustive()
    }
}

impl<K, V> LoadingCache<K, V>
where
    K: Hash + Eq + Copy + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    pub(crate) fn new(capacity: u64, expiry: Expiry) -> Self {
        let builder = moka::sync::Cache::builder().max_capacity(capacity);
        let entries = match expiry {
            Expiry::Idle(d) => builder.time_to_idle(d).build(),
            Expiry::Live(d) => builder.time_to_live(d).build(),
        };
        Self {
            entries,
            stale: None,
            invalidating: std::sync::Mutex::new(()),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            stale_served: AtomicU64::new(0),
        }
    }

    /// Keeps every loaded value for `lifetime` after its load, to answer with when a
    /// reload fails with [`Error::Unavailable`] or `outage` holds. Zero keeps nothing.
    pub(crate) fn serving_stale_for(mut self, lifetime: Duration, outage: Arc<Outage>) -> Self {
        if !lifetime.is_zero() {
            let capacity = self.entries.policy().max_capacity().unwrap_or(u64::MAX);
            let copies = moka::sync::Cache::builder()
                .max_capacity(capacity)
                .time_to_live(lifetime)
                .build();
            self.stale = Some((copies, outage));
        }
        self
    }

    fn serve_stale(&self, copies: &moka::sync::Cache<K, V>, key: &K) -> Option<V> {
        let v = copies.get(key)?;
        self.stale_served.fetch_add(1, Ordering::Relaxed);
        Some(v)
    }

    /// The cached value, or the result of `load`, run once for all concurrent misses.
    pub(crate) async fn get_or_load<F, Fut>(&self, key: K, load: F) -> Result<V>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<V>>,
    {
        if let Some(v) = self.entries.get(&key).and_then(|cell| cell.get().cloned()) {
            self.hits.fetch_add(1, Ordering::Relaxed);
            return Ok(v);
        }
        self.misses.fetch_add(1, Ordering::Relaxed);
        let cell = self.entries.get_with(key, || Arc::new(OnceCell::new()));
        let Some((stale, outage)) = &self.stale else {
            return cell.get_or_try_init(load).await.cloned();
        };
        if cell.get().is_none() && !outage.may_ask() {
            return self
                .serve_stale(stale, &key)
                .ok_or_else(|| Error::Unavailable("the store failed moments ago".into()));
        }
        match cell.get_or_try_init(load).await {
            Ok(v) => {
                outage.note(true);
                // Only a value still current is kept: a load that raced an invalidation
                // must not bring the invalidated value back as a stale copy.
                let _order = self.invalidating.lock().unwrap_or_else(|e| e.into_inner());
                if self
                    .entries
                    .get(&key)
                    .is_some_and(|current| Arc::ptr_eq(&current, &cell))
                {
                    stale.insert(key, v.clone());
                }
                Ok(v.clone())
            }
            Err(e @ Error::Unavailable(_)) => {
                outage.note(false);
                self.serve_stale(stale, &key).ok_or(e)
            }
            Err(e) => {
                // The store answered (not found, corrupt, …): the old value is no answer.
                stale.invalidate(&key);
                Err(e)
            }
        }
    }

    /// Forgets `key`, stale copy included. A load already under way completes for its
    /// waiters only.
    pub(crate) fn invalidate(&self, key: &K) {
        let _order = self.invalidating.lock().unwrap_or_else(|e| e.into_inner());
        self.entries.invalidate(key);
        if let Some((stale, _)) = &self.stale {
            stale.invalidate(key);
        }
    }

    /// Forgets every loaded entry whose value `matches`; returns those values. A linear
    /// scan, for rare administrative changes only.
    pub(crate) fn invalidate_matching(&self, matches: impl Fn(&V) -> bool) -> Vec<V> {
        let _order = self.invalidating.lock().unwrap_or_else(|e| e.into_inner());
        let mut taken = Vec::new();
        for (key, cell) in self.entries.iter() {
            if let Some(v) = cell.get().filter(|v| matches(v)) {
                taken.push(v.clone());
                self.entries.invalidate(&*key);
            }
        }
        if let Some((stale, _)) = &self.stale {
            for (key, v) in stale.iter() {
                if matches(&v) {
                    stale.invalidate(&*key);
                }
            }
        }
        taken
    }

    pub(crate) fn hits(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }

    pub(crate) fn misses(&self) -> u64 {
        self.misses.load(Ordering::Relaxed)
    }

    /// Answers given from a stale copy while the store was unavailable.
    pub(crate) fn stale_served(&self) -> u64 {
        self.stale_served.load(Ordering::Relaxed)
    }

    pub(crate) fn entry_count(&self) -> u64 {
        self.entries.entry_count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unavailable() -> Error {
        Error::Unavailable("store down".into())
    }

    /// A cache whose entries expire at once but stay as stale copies for a minute.
    fn expiring() -> LoadingCache<u8, u32> {
        // No breaker hold, so every miss asks the loader.
        LoadingCache::new(16, Expiry::Live(Duration::from_millis(1)))
            .serving_stale_for(Duration::from_secs(60), Outage::new(Duration::ZERO))
    }

    async fn expire() {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    #[tokio::test]
    async fn an_unavailable_store_is_answered_from_the_stale_copy() {
        let cache = expiring();
        assert_eq!(cache.get_or_load(1, || async { Ok(7) }).await.ok(), Some(7));
        expire().await;
        let got = cache.get_or_load(1, || async { Err(unavailable()) }).await;
        assert_eq!(got.ok(), Some(7));
        assert_eq!(cache.stale_served(), 1);
        // A key never loaded has no stale copy: the outage shows.
        let cold = cache.get_or_load(2, || async { Err(unavailable()) }).await;
        assert!(matches!(cold, Err(Error::Unavailable(_))));
        // Once the store answers again, its answer replaces the copy.
        expire().await;
        assert_eq!(cache.get_or_load(1, || async { Ok(8) }).await.ok(), Some(8));
    }

    #[tokio::test]
    async fn invalidated_or_refused_entries_are_never_served_stale() {
        let cache = expiring();
        cache
            .get_or_load(1, || async { Ok(7) })
            .await
            .expect("load");
        cache.invalidate(&1);
        let got = cache.get_or_load(1, || async { Err(unavailable()) }).await;
        assert!(got.is_err(), "a revoked entry came back: {got:?}");

        cache
            .get_or_load(2, || async { Ok(9) })
            .await
            .expect("load");
        expire().await;
        // The store says the entry is gone: its old value is no answer in a later outage.
        let gone = cache
            .get_or_load(2, || async {
                Err(Error::NotFound {
                    what: "authorization",
                })
            })
            .await;
        assert!(matches!(gone, Err(Error::NotFound { .. })));
        expire().await;
        assert!(cache
            .get_or_load(2, || async { Err(unavailable()) })
            .await
            .is_err());

        cache
            .get_or_load(3, || async { Ok(3) })
            .await
            .expect("load");
        assert_eq!(cache.invalidate_matching(|v| *v == 3), vec![3]);
        assert!(cache
            .get_or_load(3, || async { Err(unavailable()) })
            .await
            .is_err());
        assert_eq!(cache.stale_served(), 0);
    }

    #[tokio::test]
    async fn a_load_racing_an_invalidation_keeps_no_stale_copy() {
        let cache = Arc::new(expiring());
        let (loading, release) = (
            Arc::new(tokio::sync::Notify::new()),
            Arc::new(tokio::sync::Notify::new()),
        );
        let task = {
            let (cache, loading, release) = (cache.clone(), loading.clone(), release.clone());
            tokio::spawn(async move {
                cache
                    .get_or_load(1, || async move {
                        loading.notify_one();
                        release.notified().await;
                        Ok(5)
                    })
                    .await
            })
        };
        loading.notified().await;
        // Revoked while the old value was being read.
        cache.invalidate(&1);
        release.notify_one();
        assert_eq!(task.await.expect("join").ok(), Some(5));
        expire().await;
        let got = cache.get_or_load(1, || async { Err(unavailable()) }).await;
        assert!(got.is_err(), "the invalidated value came back: {got:?}");
    }

    #[tokio::test]
    async fn without_a_grace_period_nothing_is_kept() {
        let cache: LoadingCache<u8, u32> =
            LoadingCache::new(16, Expiry::Live(Duration::from_millis(1)))
                .serving_stale_for(Duration::ZERO, Outage::new(Duration::ZERO));
        cache
            .get_or_load(1, || async { Ok(7) })
            .await
            .expect("load");
        expire().await;
        assert!(cache
            .get_or_load(1, || async { Err(unavailable()) })
            .await
            .is_err());
    }

    #[tokio::test]
    async fn after_a_failure_misses_skip_the_store_until_the_hold_ends() {
        let outage = Outage::new(Duration::from_millis(200));
        let cache: LoadingCache<u8, u32> =
            LoadingCache::new(16, Expiry::Live(Duration::from_millis(1)))
                .serving_stale_for(Duration::from_secs(60), outage.clone());
        cache
            .get_or_load(1, || async { Ok(7) })
            .await
            .expect("load");
        expire().await;
        let asked = AtomicU64::new(0);
        let failing = || async {
            asked.fetch_add(1, Ordering::Relaxed);
            Err(unavailable())
        };
        assert_eq!(cache.get_or_load(1, failing).await.ok(), Some(7));
        // Within the hold: the stale copy, or a refusal, without asking the store.
        assert_eq!(cache.get_or_load(1, failing).await.ok(), Some(7));
        assert!(matches!(
            cache.get_or_load(2, failing).await,
            Err(Error::Unavailable(_))
        ));
        assert_eq!(asked.load(Ordering::Relaxed), 1);
        tokio::time::sleep(Duration::from_millis(250)).await;
        // The hold is over: the next miss probes, and a success closes the breaker.
        assert_eq!(cache.get_or_load(2, || async { Ok(2) }).await.ok(), Some(2));
        expire().await;
        assert_eq!(cache.get_or_load(1, || async { Ok(8) }).await.ok(), Some(8));
    }
}
