//! A bounded cache whose misses load once for all concurrent callers (single-flight).
//!
//! Hits are a synchronous moka lookup, with no future on the hot path. A miss installs an
//! empty `OnceCell` and every concurrent caller awaits the same initialisation. A failed
//! load leaves the cell empty, so the next caller tries again; errors are never cached.

use std::future::Future;
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::OnceCell;

use crate::error::Result;

/// Expiry rule of a [`LoadingCache`].
#[derive(Debug, Clone, Copy)]
pub(crate) enum Expiry {
    /// Drop entries unused for this long.
    Idle(Duration),
    /// Drop entries this long after they were loaded, used or not.
    Live(Duration),
}

pub(crate) struct LoadingCache<K, V> {
    entries: moka::sync::Cache<K, Arc<OnceCell<V>>>,
    hits: AtomicU64,
    misses: AtomicU64,
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
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
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
        cell.get_or_try_init(load).await.cloned()
    }

    /// Forgets `key`. A load already under way completes for its waiters only.
    pub(crate) fn invalidate(&self, key: &K) {
        self.entries.invalidate(key);
    }

    /// Forgets every loaded entry whose value `matches`; returns those values. A linear
    /// scan, for rare administrative changes only.
    pub(crate) fn invalidate_matching(&self, matches: impl Fn(&V) -> bool) -> Vec<V> {
        let mut taken = Vec::new();
        for (key, cell) in self.entries.iter() {
            if let Some(v) = cell.get().filter(|v| matches(v)) {
                taken.push(v.clone());
                self.entries.invalidate(&*key);
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

    pub(crate) fn entry_count(&self) -> u64 {
        self.entries.entry_count()
    }
}
