//! Which of our `REQ`s each relay has confirmed.
//!
//! Every `REQ` gets a fresh subscription id, `kc46-<shard>-<n>`, so a relay's `EOSE` for
//! that id says exactly that this version of the shard is registered there: a bunker URI
//! can be handed out once its key's shard is confirmed ([`Live::all_live`]), and a client
//! that connects at once is heard. The shard's previous `REQ` is closed only after the new
//! one is confirmed (make before break), so an update never leaves a gap; at most two
//! versions of a shard are open at once. A `CLOSED` for the current id is a refusal.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use keycast_core::nostr::RelayUrl;
use nostr_sdk::prelude::SubscriptionId;
use tokio::sync::Notify;

/// Prefix of our subscription ids.
const PREFIX: &str = "kc46-";

/// The subscription id of version `n` of shard `shard`.
pub(crate) fn subscription_id(shard: usize, n: u64) -> SubscriptionId {
    SubscriptionId::new(format!("{PREFIX}{shard}-{n}"))
}

/// The shard of one of our subscription ids.
pub(crate) fn shard_of(id: &SubscriptionId) -> Option<usize> {
    let rest = id.as_str().strip_prefix(PREFIX)?;
    rest.split_once('-')?.0.parse().ok()
}

#[derive(Debug)]
struct Version {
    current: SubscriptionId,
    confirmed: bool,
    /// The version before, open until `current` is confirmed.
    previous: Option<SubscriptionId>,
}

/// What happened to one of our ids.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Confirmed; the previous version (if any) can be closed now.
    Confirmed(Option<SubscriptionId>),
    /// The relay refused the current version of this shard.
    Refused(usize),
    /// Not a current version of ours (an old one, or someone else's).
    Other,
}

/// Confirmations per relay and shard.
#[derive(Debug, Default)]
pub(crate) struct Live {
    versions: Mutex<HashMap<(RelayUrl, usize), Version>>,
    changed: Notify,
}

impl Live {
    /// Records that `id` was sent for `shard` of `relay`. Returns a version that can be
    /// closed at once: the one before the previous, when the previous was never confirmed.
    pub(crate) fn sent(
        &self,
        relay: &RelayUrl,
        shard: usize,
        id: SubscriptionId,
    ) -> Option<SubscriptionId> {
        let mut v = self.lock();
        match v.get_mut(&(relay.clone(), shard)) {
            Some(version) => {
                let old = std::mem::replace(&mut version.current, id);
                let stale = if version.confirmed {
                    version.previous.replace(old)
                } else {
                    // Never confirmed: keep the older confirmed one open instead.
                    match version.previous {
                        Some(_) => Some(old),
                        None => {
                            version.previous = Some(old);
                            None
                        }
                    }
                };
                version.confirmed = false;
                stale
            }
            None => {
                v.insert(
                    (relay.clone(), shard),
                    Version {
                        current: id,
                        confirmed: false,
                        previous: None,
                    },
                );
                None
            }
        }
    }

    /// `shard` of `relay` is closed (it holds no key): the ids to close.
    pub(crate) fn close(&self, relay: &RelayUrl, shard: usize) -> Vec<SubscriptionId> {
        match self.lock().remove(&(relay.clone(), shard)) {
            Some(v) => std::iter::once(v.current).chain(v.previous).collect(),
            None => Vec::new(),
        }
    }

    /// The relay confirmed `id` (`EOSE`).
    pub(crate) fn confirmed(&self, relay: &RelayUrl, id: &SubscriptionId) -> Outcome {
        let Some(shard) = shard_of(id) else {
            return Outcome::Other;
        };
        let outcome = {
            let mut v = self.lock();
            match v.get_mut(&(relay.clone(), shard)) {
                Some(version) if &version.current == id => {
                    version.confirmed = true;
                    Outcome::Confirmed(version.previous.take())
                }
                _ => Outcome::Other,
            }
        };
        self.changed.notify_waiters();
        outcome
    }

    /// The relay closed `id` (`CLOSED`).
    pub(crate) fn refused(&self, relay: &RelayUrl, id: &SubscriptionId) -> Outcome {
        let Some(shard) = shard_of(id) else {
            return Outcome::Other;
        };
        match self.lock().get(&(relay.clone(), shard)) {
            Some(version) if &version.current == id => Outcome::Refused(shard),
            _ => Outcome::Other,
        }
    }

    /// Whether the current version of every `(relay, shard)` is confirmed.
    pub(crate) fn all_live(&self, placements: &[(RelayUrl, usize)]) -> bool {
        let v = self.lock();
        placements
            .iter()
            .all(|p| v.get(p).is_some_and(|version| version.confirmed))
    }

    /// Waits until [`Live::all_live`] holds for what `placements` returns (read again at
    /// every confirmation), at most `timeout`; whether it did.
    pub(crate) async fn wait(
        &self,
        placements: impl Fn() -> Vec<(RelayUrl, usize)>,
        timeout: Duration,
    ) -> bool {
        tokio::time::timeout(timeout, async {
            loop {
                let changed = self.changed.notified();
                if self.all_live(&placements()) {
                    return;
                }
                changed.await;
            }
        })
        .await
        .is_ok()
    }

    /// Forgets `relay` (no longer used).
    pub(crate) fn forget(&self, relay: &RelayUrl) {
        self.lock().retain(|(r, _), _| r != relay);
    }

    /// Shards of `relay` whose current version is not confirmed.
    pub(crate) fn unconfirmed(&self, relay: &RelayUrl) -> Vec<usize> {
        self.lock()
            .iter()
            .filter(|((r, _), v)| r == relay && !v.confirmed)
            .map(|((_, shard), _)| *shard)
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(RelayUrl, usize), Version>> {
        self.versions.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn relay() -> RelayUrl {
        RelayUrl::parse("wss://r.example").expect("url")
    }

    #[test]
    fn ids_name_their_shard() {
        assert_eq!(shard_of(&subscription_id(17, 4)), Some(17));
        assert_eq!(shard_of(&SubscriptionId::new("probe")), None);
        assert_eq!(shard_of(&SubscriptionId::new("kc46-x-1")), None);
    }

    #[test]
    fn a_new_version_replaces_the_old_only_once_confirmed() {
        let (r, l) = (relay(), Live::default());
        let (v1, v2, v3) = (
            subscription_id(0, 1),
            subscription_id(0, 2),
            subscription_id(0, 3),
        );
        assert_eq!(l.sent(&r, 0, v1.clone()), None);
        assert!(!l.all_live(&[(r.clone(), 0)]));
        assert_eq!(l.confirmed(&r, &v1), Outcome::Confirmed(None));
        assert!(l.all_live(&[(r.clone(), 0)]));
        assert_eq!(
            l.sent(&r, 0, v2.clone()),
            None,
            "v1 stays open until v2 is confirmed"
        );
        assert!(!l.all_live(&[(r.clone(), 0)]));
        // v3 before v2 was confirmed: v2 can go at once, v1 (confirmed) stays.
        assert_eq!(l.sent(&r, 0, v3.clone()), Some(v2.clone()));
        assert_eq!(l.confirmed(&r, &v2), Outcome::Other, "an old version");
        assert_eq!(l.refused(&r, &v3), Outcome::Refused(0));
        assert_eq!(l.confirmed(&r, &v3), Outcome::Confirmed(Some(v1)));
        assert_eq!(l.close(&r, 0), vec![v3]);
        assert!(!l.all_live(&[(r, 0)]));
    }

    #[tokio::test]
    async fn waiting_ends_at_the_confirmation_or_the_timeout() {
        let (r, l) = (relay(), std::sync::Arc::new(Live::default()));
        let id = subscription_id(2, 1);
        l.sent(&r, 2, id.clone());
        let place = {
            let r = r.clone();
            move || vec![(r.clone(), 2)]
        };
        assert!(!l.wait(place.clone(), Duration::from_millis(20)).await);
        let waiter = tokio::spawn({
            let l = l.clone();
            async move { l.wait(place, Duration::from_secs(30)).await }
        });
        tokio::task::yield_now().await;
        l.confirmed(&r, &id);
        assert!(waiter.await.expect("join"));
        assert_eq!(l.unconfirmed(&r), Vec::<usize>::new());
    }
}
