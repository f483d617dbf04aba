//! Rate limits at intake, and keyed limiters whose memory stays bounded.
//!
//! Intake asks [`IntakeLimits::admit`] before queueing a request, so a request over a
//! limit costs a few hash lookups and no crypto of ours. A client key bound to the bunker
//! it writes to is held to `client_limit`; a stranger (which can only be sending a
//! `connect`) to the much stricter `unbound_client_limit`, `unbound_bunker_limit` and the
//! shared `unbound_limit`. Everything then counts against the bunker's `bunker_limit`.
//! Strangers are checked against their own limits first, so a flood of them spends the
//! bunker's budget only at the unbound rate, not the bound clients' share.

use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{PoisonError, RwLock};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota, RateLimiter};
use keycast_core::nostr::PublicKey;

use super::BunkerConfig;
use crate::Result;

/// A keyed limiter with bounded memory: [`Keyed::prune`] forgets the keys whose bucket is
/// full again, and resets the whole limiter if it still tracks more than `max_keys` (an
/// attacker minting keys gets nothing from a reset that a fresh key would not give it).
pub(crate) struct Keyed<K: Hash + Eq + Clone> {
    quota: Quota,
    max_keys: usize,
    limiter: RwLock<DefaultKeyedRateLimiter<K>>,
    resets: AtomicU64,
}

impl<K: Hash + Eq + Clone> Keyed<K> {
    pub(crate) fn new(quota: Quota, max_keys: usize) -> Self {
        Self {
            quota,
            max_keys,
            limiter: RwLock::new(RateLimiter::keyed(quota)),
            resets: AtomicU64::new(0),
        }
    }

    /// Takes one from `key`'s bucket, or says how long until one is there.
    pub(crate) fn check(&self, key: &K) -> std::result::Result<(), Duration> {
        let limiter = self.limiter.read().unwrap_or_else(PoisonError::into_inner);
        limiter
            .check_key(key)
            .map_err(|not_until| not_until.wait_time_from(DefaultClock::default().now()))
    }

    /// Forgets idle keys; resets when still over `max_keys`. Returns whether it reset.
    pub(crate) fn prune(&self) -> bool {
        {
            let limiter = self.limiter.read().unwrap_or_else(PoisonError::into_inner);
            limiter.retain_recent();
            limiter.shrink_to_fit();
            if limiter.len() <= self.max_keys {
                return false;
            }
        }
        *self.limiter.write().unwrap_or_else(PoisonError::into_inner) =
            RateLimiter::keyed(self.quota);
        self.resets.fetch_add(1, Ordering::Relaxed);
        true
    }

    /// Keys tracked now.
    pub(crate) fn len(&self) -> usize {
        self.limiter
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Resets so far.
    pub(crate) fn resets(&self) -> u64 {
        self.resets.load(Ordering::Relaxed)
    }
}

/// Which limit dropped a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Limited {
    /// `client_limit` (a bound client).
    Client,
    /// `bunker_limit`.
    Bunker,
    /// `unbound_client_limit`.
    UnboundClient,
    /// `unbound_bunker_limit`.
    UnboundBunker,
    /// `unbound_limit` (all strangers together).
    Unbound,
}

/// The intake limits of one bunker service.
pub(crate) struct IntakeLimits {
    client: Keyed<PublicKey>,
    bunker: Keyed<PublicKey>,
    unbound_client: Keyed<PublicKey>,
    unbound_bunker: Keyed<PublicKey>,
    unbound: DefaultDirectRateLimiter,
}

impl IntakeLimits {
    pub(crate) fn new(config: &BunkerConfig) -> Result<Self> {
        let keyed = |q| Keyed::new(q, config.limiter_max_keys);
        Ok(Self {
            client: keyed(config.client_limit.quota("client_limit")?),
            bunker: keyed(config.bunker_limit.quota("bunker_limit")?),
            unbound_client: keyed(config.unbound_client_limit.quota("unbound_client_limit")?),
            unbound_bunker: keyed(config.unbound_bunker_limit.quota("unbound_bunker_limit")?),
            unbound: RateLimiter::direct(config.unbound_limit.quota("unbound_limit")?),
        })
    }

    /// Whether a request from `client` to `bunker` may be queued; `bound` says whether the
    /// client is bound to that bunker's authorization.
    pub(crate) fn admit(
        &self,
        client: &PublicKey,
        bunker: &PublicKey,
        bound: bool,
    ) -> std::result::Result<(), Limited> {
        if bound {
            self.client.check(client).map_err(|_| Limited::Client)?;
        } else {
            self.unbound_client
                .check(client)
                .map_err(|_| Limited::UnboundClient)?;
            self.unbound_bunker
                .check(bunker)
                .map_err(|_| Limited::UnboundBunker)?;
            self.unbound.check().map_err(|_| Limited::Unbound)?;
        }
        self.bunker.check(bunker).map_err(|_| Limited::Bunker)
    }

    /// [`Keyed::prune`] on every keyed limiter.
    pub(crate) fn prune(&self) {
        for keyed in self.keyed() {
            if keyed.prune() {
                tracing::warn!("a NIP-46 intake limiter tracked too many keys and was reset");
            }
        }
    }

    /// Keys tracked now, over all keyed limiters.
    pub(crate) fn tracked_keys(&self) -> usize {
        self.keyed().iter().map(|k| k.len()).sum()
    }

    /// Resets so far, over all keyed limiters.
    pub(crate) fn resets(&self) -> u64 {
        self.keyed().iter().map(|k| k.resets()).sum()
    }

    fn keyed(&self) -> [&Keyed<PublicKey>; 4] {
        [
            &self.client,
            &self.bunker,
            &self.unbound_client,
            &self.unbound_bunker,
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::config::RateLimit;
    use keycast_core::nostr::Keys;

    fn key() -> PublicKey {
        Keys::generate().public_key()
    }

    fn config(tune: impl FnOnce(&mut BunkerConfig)) -> BunkerConfig {
        let mut c = BunkerConfig::new(Vec::new());
        // Slow refills, so a test never sees a bucket refill.
        for l in [
            &mut c.client_limit,
            &mut c.bunker_limit,
            &mut c.unbound_client_limit,
            &mut c.unbound_bunker_limit,
            &mut c.unbound_limit,
        ] {
            l.per_second = 0.001;
        }
        tune(&mut c);
        c
    }

    #[test]
    fn strangers_meet_their_own_limits_before_the_bunkers() {
        let limits = IntakeLimits::new(&config(|c| {
            c.bunker_limit.burst = 100;
            c.unbound_client_limit.burst = 3;
            c.unbound_bunker_limit.burst = 5;
            c.unbound_limit.burst = 8;
        }))
        .expect("limits");
        let (a, b) = (key(), key());
        let stranger = key();
        let admitted = (0..10)
            .filter(|_| limits.admit(&stranger, &a, false).is_ok())
            .count();
        assert_eq!(admitted, 3, "one stranger key: its own limit");
        assert_eq!(
            limits.admit(&stranger, &a, false),
            Err(Limited::UnboundClient)
        );
        // Many stranger keys on one bunker: the bunker's unbound limit.
        let admitted = (0..10)
            .filter(|_| limits.admit(&key(), &a, false).is_ok())
            .count();
        assert_eq!(admitted, 2, "5 per bunker, 3 taken");
        assert_eq!(limits.admit(&key(), &a, false), Err(Limited::UnboundBunker));
        // Strangers over all bunkers: 8 in all.
        let admitted = (0..10)
            .filter(|_| limits.admit(&key(), &b, false).is_ok())
            .count();
        assert_eq!(admitted, 3);
        assert_eq!(limits.admit(&key(), &key(), false), Err(Limited::Unbound));
        // Bound clients of the flooded bunker are still served.
        let bound = key();
        assert_eq!(limits.admit(&bound, &a, true), Ok(()));
    }

    #[test]
    fn bound_clients_meet_the_client_and_bunker_limits() {
        let limits = IntakeLimits::new(&config(|c| {
            c.client_limit.burst = 4;
            c.bunker_limit.burst = 6;
        }))
        .expect("limits");
        let (bunker, one, two) = (key(), key(), key());
        let admitted = (0..10)
            .filter(|_| limits.admit(&one, &bunker, true).is_ok())
            .count();
        assert_eq!(admitted, 4);
        assert_eq!(limits.admit(&one, &bunker, true), Err(Limited::Client));
        let admitted = (0..10)
            .filter(|_| limits.admit(&two, &bunker, true).is_ok())
            .count();
        assert_eq!(admitted, 2, "the bunker's 6 are shared");
        assert_eq!(limits.admit(&key(), &bunker, true), Err(Limited::Bunker));
        assert_eq!(
            limits.admit(&one, &key(), true),
            Err(Limited::Client),
            "a client's limit spans bunkers"
        );
        assert_eq!(
            limits.admit(&key(), &key(), true),
            Ok(()),
            "others are served"
        );
    }

    #[test]
    fn idle_keys_are_forgotten_and_too_many_reset_the_limiter() {
        // Fast refill: a key that sent one request is idle again within a millisecond.
        let fast = Keyed::new(
            RateLimit::new(1_000_000.0, 1).quota("x").expect("quota"),
            1_000,
        );
        for _ in 0..500 {
            fast.check(&key()).expect("fresh key");
        }
        std::thread::sleep(Duration::from_millis(5));
        assert!(!fast.prune());
        assert_eq!(fast.len(), 0, "idle keys forgotten");

        let slow = Keyed::new(RateLimit::new(0.001, 1).quota("x").expect("quota"), 100);
        let flooder = key();
        slow.check(&flooder).expect("first");
        assert!(slow.check(&flooder).is_err(), "over its limit");
        for _ in 0..100 {
            let _ = slow.check(&key());
        }
        assert_eq!(slow.len(), 101);
        assert!(slow.prune(), "over max_keys: reset");
        assert_eq!(slow.len(), 0);
        assert_eq!(slow.resets(), 1);
        let wait = slow.check(&flooder).map(|()| Duration::ZERO);
        assert_eq!(wait, Ok(Duration::ZERO), "a reset refills every bucket");
        let wait = slow.check(&flooder).expect_err("empty again");
        assert!(wait > Duration::from_secs(900), "{wait:?}");
    }
}
