//! Which of our `REQ`s each relay has confirmed.
//!
//! Every `REQ` gets a fresh subscription id, `kc46-<shard>-<n>`, so a relay's `EOSE` for
//! that id says exactly that this version of the shard is registered there: a bunker URI
//! can be handed out once its key's shard is confirmed ([`Live::all_live`]), and a client
//! that connects at once is heard. The shard's previous version is closed only once the new
//! one is confirmed (make before break): events the relay sent for the old version before
//! it registered the new one are still on their way, and the relay pool drops events for
//! a subscription already closed here. So a shard has at most two versions open, and a
//! new version waits until the last one is confirmed ([`Live::may_send`]); at most
//! [`PENDING_PER_CONNECTION`] replacements wait for confirmation on one connection, so a
//! burst of updates never holds twice a connection's subscriptions. A `CLOSED` for the
//! current id is a refusal.
//!
//! A relay answers one connection's `REQ`s in order, each with `EOSE`, `CLOSED` or (as
//! nostr-rs-relay does for too many subscriptions) a `NOTICE` naming none. So each
//! connection keeps the ids it sent and has not had answered; a `NOTICE` answers the
//! oldest ([`Live::noticed`]), which tells which `REQ` it refused.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use keycast_core::nostr::RelayUrl;
use nostr_sdk::prelude::SubscriptionId;
use tokio::sync::futures::Notified;
use tokio::sync::Notify;

/// Prefix of our subscription ids.
const PREFIX: &str = "kc46-";
/// Unconfirmed `REQ`s one connection may have at once (each may hold a second version of
/// its shard open meanwhile).
pub(crate) const PENDING_PER_CONNECTION: usize = 8;
/// After this long an unconfirmed `REQ` no longer holds its shard's updates back.
const UNANSWERED: Duration = Duration::from_secs(10);

/// The subscription id of version `n` of shard `shard`.
pub(crate) fn subscription_id(shard: usize, n: u64) -> SubscriptionId {
    SubscriptionId::new(format!("{PREFIX}{shard}-{n}"))
}

/// The shard of one of our subscription ids.
pub(crate) fn shard_of(id: &SubscriptionId) -> Option<usize> {
    let rest = id.as_str().strip_prefix(PREFIX)?;
    rest.split_once('-')?.0.parse().ok()
}

/// The number one of our subscription ids was made with.
pub(crate) fn number_of(id: &SubscriptionId) -> Option<u64> {
    let rest = id.as_str().strip_prefix(PREFIX)?;
    rest.split_once('-')?.1.parse().ok()
}

#[derive(Debug)]
struct Version {
    current: SubscriptionId,
    /// The connection it was sent on.
    lane: usize,
    confirmed: bool,
    /// The version it replaces and its connection, open until `current` is confirmed.
    previous: Option<(SubscriptionId, usize)>,
    sent_at: Instant,
}

/// What happened to one of our ids.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// The current version of its shard is confirmed; the version it replaced (and its
    /// connection) can be closed now.
    Confirmed(Option<(SubscriptionId, usize)>),
    /// The relay refused the current version of this shard.
    Refused(usize),
    /// Not a current version of ours (an old one, or someone else's).
    Other,
}

/// Confirmations per relay and shard.
#[derive(Debug, Default)]
pub(crate) struct Live {
    versions: Mutex<HashMap<(RelayUrl, usize), Version>>,
    /// Per relay and connection: `REQ`s sent and not answered yet, oldest first.
    unanswered: Mutex<HashMap<(RelayUrl, usize), VecDeque<SubscriptionId>>>,
    changed: Notify,
}

impl Live {
    /// Whether a new version of `shard` of `relay` may be sent on connection `lane` now:
    /// its last version is confirmed (or there is none) and the connection has room for
    /// another unconfirmed one. Otherwise it waits for a confirmation.
    pub(crate) fn may_send(&self, relay: &RelayUrl, shard: usize, lane: usize) -> bool {
        let v = self.lock();
        // A relay that never answers does not hold updates back for ever.
        let waiting =
            |version: &Version| !version.confirmed && version.sent_at.elapsed() < UNANSWERED;
        if v.get(&(relay.clone(), shard)).is_some_and(waiting) {
            return false;
        }
        let pending = v
            .iter()
            .filter(|((r, _), version)| r == relay && version.lane == lane && waiting(version))
            .count();
        pending < PENDING_PER_CONNECTION
    }

    /// Records that `id` is sent for `shard` of `relay` on connection `lane` (call
    /// [`Live::may_send`] first); the version it replaces stays open until it is confirmed.
    pub(crate) fn sent(&self, relay: &RelayUrl, shard: usize, id: SubscriptionId, lane: usize) {
        self.queue()
            .entry((relay.clone(), lane))
            .or_default()
            .push_back(id.clone());
        let mut v = self.lock();
        let previous = v
            .remove(&(relay.clone(), shard))
            .map(|old| (old.current, old.lane));
        v.insert(
            (relay.clone(), shard),
            Version {
                current: id,
                lane,
                confirmed: false,
                previous,
                sent_at: Instant::now(),
            },
        );
    }

    /// The relay pool would not take `id` (see [`Live::sent`]): its shard is back to the
    /// version before, if any.
    pub(crate) fn unsent(&self, relay: &RelayUrl, shard: usize, id: &SubscriptionId) {
        let mut v = self.lock();
        let key = (relay.clone(), shard);
        if v.get(&key).is_some_and(|version| &version.current == id) {
            if let Some((current, lane)) = v.remove(&key).and_then(|version| version.previous) {
                let restored = Version {
                    current,
                    lane,
                    confirmed: true,
                    previous: None,
                    sent_at: Instant::now(),
                };
                v.insert(key, restored);
            }
        }
    }

    /// `shard` of `relay` is closed (it holds no key): the ids to close and their lanes.
    pub(crate) fn close(&self, relay: &RelayUrl, shard: usize) -> Vec<(SubscriptionId, usize)> {
        match self.lock().remove(&(relay.clone(), shard)) {
            Some(v) => std::iter::once((v.current, v.lane))
                .chain(v.previous)
                .collect(),
            None => Vec::new(),
        }
    }

    /// Every open version of `relay`'s shards, forgotten (to be closed): a new split
    /// replaces them all.
    pub(crate) fn close_relay(&self, relay: &RelayUrl) -> Vec<(SubscriptionId, usize)> {
        let mut v = self.lock();
        let shards: Vec<(RelayUrl, usize)> =
            v.keys().filter(|(r, _)| r == relay).cloned().collect();
        shards
            .into_iter()
            .filter_map(|k| v.remove(&k))
            .flat_map(|version| {
                std::iter::once((version.current, version.lane)).chain(version.previous)
            })
            .collect()
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
    #[cfg(test)]
    pub(crate) fn all_live(&self, placements: &[(RelayUrl, usize)]) -> bool {
        self.all_live_since(placements, 0)
    }

    /// Whether the current version of every `(relay, shard)` is confirmed and was
    /// numbered `since` or later (so it holds a key added to the book then).
    pub(crate) fn all_live_since(&self, placements: &[(RelayUrl, usize)], since: u64) -> bool {
        let v = self.lock();
        placements.iter().all(|p| {
            v.get(p).is_some_and(|version| {
                version.confirmed && number_of(&version.current).is_some_and(|n| n >= since)
            })
        })
    }

    /// Resolves at the next confirmation (`EOSE`) after this call, even if it is polled
    /// only later.
    pub(crate) fn changed(&self) -> Notified<'_> {
        self.changed.notified()
    }

    /// Waits until [`Live::all_live_since`] holds for what `placements` returns (read
    /// again at every confirmation), at most `timeout`; whether it did.
    pub(crate) async fn wait(
        &self,
        placements: impl Fn() -> Vec<(RelayUrl, usize)>,
        since: u64,
        timeout: Duration,
    ) -> bool {
        tokio::time::timeout(timeout, async {
            loop {
                let changed = self.changed.notified();
                if self.all_live_since(&placements(), since) {
                    return;
                }
                changed.await;
            }
        })
        .await
        .is_ok()
    }

    /// Connection `lane` of `relay` answered `id` (`EOSE` or `CLOSED`): it and every
    /// older unanswered id there are done.
    pub(crate) fn answered(&self, relay: &RelayUrl, lane: usize, id: &SubscriptionId) {
        let mut q = self.queue();
        if let Some(waiting) = q.get_mut(&(relay.clone(), lane)) {
            if let Some(at) = waiting.iter().position(|w| w == id) {
                waiting.drain(..=at);
            }
        }
    }

    /// Connection `lane` of `relay` sent a `NOTICE` refusing a `REQ`: the oldest one not
    /// answered yet, which it answers.
    pub(crate) fn noticed(&self, relay: &RelayUrl, lane: usize) -> Option<SubscriptionId> {
        self.queue()
            .get_mut(&(relay.clone(), lane))
            .and_then(VecDeque::pop_front)
    }

    /// Forgets `relay` (no longer used).
    pub(crate) fn forget(&self, relay: &RelayUrl) {
        self.lock().retain(|(r, _), _| r != relay);
        self.queue().retain(|(r, _), _| r != relay);
    }

    fn queue(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<(RelayUrl, usize), VecDeque<SubscriptionId>>> {
        self.unanswered
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
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
    fn a_notice_answers_the_oldest_unanswered_req_of_its_connection() {
        let (r, l) = (relay(), Live::default());
        let ids: Vec<_> = (0..4).map(|n| subscription_id(n, n as u64)).collect();
        for (n, id) in ids.iter().enumerate() {
            l.sent(&r, n, id.clone(), n % 2);
        }
        // Lane 0 holds ids 0 and 2, lane 1 ids 1 and 3.
        assert_eq!(l.noticed(&r, 0), Some(ids[0].clone()));
        l.answered(&r, 1, &ids[3]);
        assert_eq!(
            l.noticed(&r, 1),
            None,
            "an answer settles the older ones too"
        );
        l.answered(&r, 0, &subscription_id(9, 9));
        assert_eq!(
            l.noticed(&r, 0),
            Some(ids[2].clone()),
            "an unknown id settles nothing"
        );
        assert_eq!(l.noticed(&r, 0), None);
    }

    #[test]
    fn ids_name_their_shard() {
        assert_eq!(shard_of(&subscription_id(17, 4)), Some(17));
        assert_eq!(number_of(&subscription_id(17, 4)), Some(4));
        assert_eq!(shard_of(&SubscriptionId::new("probe")), None);
        assert_eq!(shard_of(&SubscriptionId::new("kc46-x-1")), None);
    }

    #[test]
    fn a_version_replaces_the_last_once_confirmed_and_waits_for_it() {
        let (r, l) = (relay(), Live::default());
        let (v1, v2, v3) = (
            subscription_id(0, 1),
            subscription_id(0, 2),
            subscription_id(0, 3),
        );
        assert!(l.may_send(&r, 0, 0));
        l.sent(&r, 0, v1.clone(), 0);
        assert!(!l.all_live(&[(r.clone(), 0)]));
        assert!(!l.may_send(&r, 0, 0), "v1 is not confirmed yet");
        assert_eq!(l.confirmed(&r, &v1), Outcome::Confirmed(None));
        assert!(l.all_live(&[(r.clone(), 0)]));
        l.sent(&r, 0, v2.clone(), 1);
        assert!(!l.all_live(&[(r.clone(), 0)]));
        assert_eq!(l.confirmed(&r, &v1), Outcome::Other, "an old version");
        assert_eq!(l.refused(&r, &v1), Outcome::Other);
        assert_eq!(l.unconfirmed(&r), vec![0]);
        assert_eq!(l.refused(&r, &v2), Outcome::Refused(0));
        assert_eq!(
            l.confirmed(&r, &v2),
            Outcome::Confirmed(Some((v1.clone(), 0))),
            "v1 closes once v2 is confirmed"
        );
        // Not taken by the pool: back to v2.
        l.sent(&r, 0, v3.clone(), 1);
        l.unsent(&r, 0, &v3);
        assert!(l.all_live(&[(r.clone(), 0)]));
        assert_eq!(l.close(&r, 0), vec![(v2, 1)]);
        assert!(!l.all_live(&[(r, 0)]));
    }

    #[test]
    fn a_connection_holds_a_bounded_number_of_unconfirmed_versions() {
        let (r, l) = (relay(), Live::default());
        for shard in 0..PENDING_PER_CONNECTION {
            assert!(l.may_send(&r, shard, 0));
            l.sent(&r, shard, subscription_id(shard, shard as u64), 0);
        }
        assert!(
            !l.may_send(&r, PENDING_PER_CONNECTION, 0),
            "the connection is full"
        );
        assert!(
            l.may_send(&r, PENDING_PER_CONNECTION, 1),
            "another one is not"
        );
        l.confirmed(&r, &subscription_id(0, 0));
        assert!(l.may_send(&r, PENDING_PER_CONNECTION, 0));
    }

    #[tokio::test]
    async fn waiting_ends_at_the_confirmation_or_the_timeout() {
        let (r, l) = (relay(), std::sync::Arc::new(Live::default()));
        let id = subscription_id(2, 1);
        l.sent(&r, 2, id.clone(), 0);
        let place = {
            let r = r.clone();
            move || vec![(r.clone(), 2)]
        };
        assert!(!l.wait(place.clone(), 0, Duration::from_millis(20)).await);
        let waiter = tokio::spawn({
            let l = l.clone();
            async move { l.wait(place, 1, Duration::from_secs(30)).await }
        });
        tokio::task::yield_now().await;
        l.confirmed(&r, &id);
        assert!(waiter.await.expect("join"));
        assert_eq!(l.unconfirmed(&r), Vec::<usize>::new());
    }
}
