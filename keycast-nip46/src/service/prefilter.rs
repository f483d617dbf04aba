//! Junk dropped as it comes off the socket, before the relay pool parses the event,
//! checks its signature or stores its id.
//!
//! The pool verifies every delivered event (one Schnorr verification, a JSON parse and a
//! de-duplication insert) before intake sees it, so intake's limits alone still let a
//! flood of strangers' events cost the service that much each: 20,000 of them from one key
//! kept a bound client of another bunker waiting for half a second. Here each incoming
//! `EVENT` frame is read just far enough to find its author; an author bound to no active
//! authorization (a stranger, who can only be sending a `connect`) is held to
//! `unbound_client_limit` (the same limit intake applies after it), and the excess is
//! dropped without ever reaching the pool. Frames that do not parse this way pass
//! untouched and meet the pool's own checks; a forged author field gains nothing, since
//! whatever passes is verified as before.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use keycast_core::nostr::PublicKey;
use serde::de::IgnoredAny;
use serde::Deserialize;

use super::limits::Keyed;

/// The one field read of an event.
#[derive(Deserialize)]
struct Author<'a> {
    #[serde(borrow)]
    pubkey: &'a str,
}

/// Client keys bound to some active authorization, as raw x-only bytes (no curve check
/// needed to compare them).
#[derive(Debug, Default)]
pub(crate) struct BoundClients(RwLock<HashSet<[u8; 32]>>);

impl BoundClients {
    /// Replaces the set.
    pub(crate) fn replace<'a>(&self, clients: impl IntoIterator<Item = &'a PublicKey>) {
        let set = clients.into_iter().map(|k| k.to_bytes()).collect();
        *self.0.write().unwrap_or_else(PoisonError::into_inner) = set;
    }

    /// Adds clients (a connect handled here) until the next [`BoundClients::replace`].
    pub(crate) fn extend<'a>(&self, clients: impl IntoIterator<Item = &'a PublicKey>) {
        let mut set = self.0.write().unwrap_or_else(PoisonError::into_inner);
        set.extend(clients.into_iter().map(|k| k.to_bytes()));
    }

    fn contains(&self, key: &[u8; 32]) -> bool {
        self.0
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(key)
    }
}

/// Drops strangers' events over their limit before the pool sees them.
pub(crate) struct PreFilter {
    bound: Arc<BoundClients>,
    strangers: Keyed<[u8; 32]>,
    dropped: AtomicU64,
}

impl std::fmt::Debug for PreFilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PreFilter")
            .field("dropped", &self.dropped())
            .finish_non_exhaustive()
    }
}

impl PreFilter {
    pub(crate) fn new(bound: Arc<BoundClients>, strangers: Keyed<[u8; 32]>) -> Self {
        Self {
            bound,
            strangers,
            dropped: AtomicU64::new(0),
        }
    }

    /// Whether a text frame from a relay goes on to the pool.
    pub(crate) fn admit(&self, frame: &str) -> bool {
        let Ok((kind, _, event)) = serde_json::from_str::<(&str, IgnoredAny, Author)>(frame) else {
            return true;
        };
        if kind != "EVENT" {
            return true;
        }
        let mut author = [0u8; 32];
        if hex::decode_to_slice(event.pubkey, &mut author).is_err() {
            return true;
        }
        if self.bound.contains(&author) || self.strangers.check(&author).is_ok() {
            return true;
        }
        self.dropped.fetch_add(1, Ordering::Relaxed);
        false
    }

    /// Frames dropped so far.
    pub(crate) fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Forgets idle strangers (see [`Keyed::prune`]).
    pub(crate) fn prune(&self) -> bool {
        self.strangers.prune()
    }

    /// Strangers tracked now.
    pub(crate) fn tracked(&self) -> usize {
        self.strangers.len()
    }
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroU32;

    use governor::Quota;
    use keycast_core::nostr::{EventBuilder, JsonUtil, Keys, Kind};

    use super::*;

    fn frame(keys: &Keys) -> String {
        let event = EventBuilder::new(Kind::NostrConnect, "x")
            .sign_with_keys(keys)
            .expect("sign");
        format!(r#"["EVENT","keycast-nip46",{}]"#, event.as_json())
    }

    #[test]
    fn strangers_over_their_limit_are_dropped_and_everything_else_passes() {
        let bound = Arc::new(BoundClients::default());
        let quota = Quota::per_minute(NonZeroU32::MIN).allow_burst(NonZeroU32::new(2).expect("2"));
        let filter = PreFilter::new(bound.clone(), Keyed::new(quota, 100));
        let (stranger, friend) = (Keys::generate(), Keys::generate());
        bound.replace([&friend.public_key()]);
        let junk = frame(&stranger);
        assert!(
            filter.admit(&junk) && filter.admit(&junk),
            "the burst passes"
        );
        assert!(!filter.admit(&junk), "then the stranger is dropped");
        let good = frame(&friend);
        for _ in 0..10 {
            assert!(filter.admit(&good), "a bound client is never held here");
        }
        for other in [
            r#"["EOSE","keycast-nip46"]"#,
            r#"["OK","ab",true,""]"#,
            r#"["NOTICE","hi"]"#,
            r#"["EVENT","s",{"pubkey":"not hex"}]"#,
            "not json",
        ] {
            assert!(filter.admit(other), "{other}");
        }
        assert_eq!(filter.dropped(), 1);
        // A connect handled here makes the stranger a client at once.
        bound.extend([&stranger.public_key()]);
        assert!(filter.admit(&junk));
    }
}
