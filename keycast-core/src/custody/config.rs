//! Tunables of the custody engine, with defaults sized for one small machine.

use std::time::Duration;

/// Limits and cache sizes. `Default` is a sane production starting point.
#[derive(Debug, Clone)]
pub struct CustodyConfig {
    /// Decrypted signing keys kept in memory.
    pub key_cache_capacity: u64,
    /// A cached signing key unused this long is dropped (and zeroized).
    pub key_cache_idle: Duration,
    /// Cached NIP-44 conversation keys, per (key, peer). 0 disables the cache.
    pub conversation_cache_capacity: u64,
    /// A cached conversation key unused this long is dropped.
    pub conversation_cache_idle: Duration,
    /// Cached authorizations and policies.
    pub authorization_cache_capacity: u64,
    /// Longest a cached authorization or policy is trusted without re-reading the store.
    /// In-process revocation invalidates at once; this bounds staleness from other writers.
    pub authorization_cache_ttl: Duration,
    /// How long past `authorization_cache_ttl` a cached authorization or policy still
    /// answers while the store is unavailable (design §7: cached keys keep signing through
    /// a database outage). A revocation written by another instance while this one cannot
    /// read the store takes effect here at most this much later. Zero turns it off.
    pub stale_grace: Duration,
    /// Threads of the crypto pool. Defaults to the number of cores.
    pub crypto_threads: usize,
    /// Jobs that may wait for the crypto pool; beyond that calls fail with `Overloaded`.
    pub crypto_queue_capacity: usize,
    /// Audit records that may wait for the writer; beyond that calls fail with `Overloaded`.
    pub audit_queue_capacity: usize,
    /// Most audit records written in one batch.
    pub audit_batch_max: usize,
    /// Largest event content or NIP-04 plaintext accepted, in bytes.
    pub max_content_bytes: usize,
    /// Most tags accepted on an event.
    pub max_tags: usize,
}

impl Default for CustodyConfig {
    fn default() -> Self {
        Self {
            key_cache_capacity: 100_000,
            key_cache_idle: Duration::from_secs(15 * 60),
            conversation_cache_capacity: 100_000,
            conversation_cache_idle: Duration::from_secs(15 * 60),
            authorization_cache_capacity: 100_000,
            authorization_cache_ttl: Duration::from_secs(10),
            stale_grace: Duration::from_secs(120),
            crypto_threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
            crypto_queue_capacity: 4096,
            audit_queue_capacity: 8192,
            audit_batch_max: 512,
            max_content_bytes: 256 * 1024,
            max_tags: 2_000,
        }
    }
}
