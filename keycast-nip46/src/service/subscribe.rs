//! Keeping the relays' subscriptions in step with the active authorizations.
//!
//! [`Book`] decides which bunker keys each relay is asked for and splits them into
//! shards; this file sends what changed: one `REQ` per changed shard, under a fresh
//! subscription id whose `EOSE` confirms it ([`Live`]). A change to one authorization
//! reads that one record and sends at most one `REQ` per relay, so its cost does not grow
//! with the number of authorizations.
//!
//! A relay that refuses a `REQ` (`CLOSED`, or a `NOTICE`) as too big has its keys split
//! into `REQ`s half the size, down to [`MIN_KEYS_PER_REQ`]; one that refuses it as one
//! subscription too many gets half as many per connection (`lanes.rs`), down to one.
//! Past a floor the refusal is logged and counted and nothing is re-sent until the next
//! full comparison, so a refusing relay is never sent the same `REQ` in a loop.

use std::collections::{BTreeSet, HashSet};
use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError};
use std::time::{Duration, Instant};

use keycast_core::nostr::{Alphabet, Kind, PublicKey, RelayUrl, SingleLetterTag, Timestamp};
use keycast_core::AuthorizationId;
use nostr_sdk::prelude::{
    ClientMessage, Filter, JsonUtil, RelayStatus, SubscribeOptions, SubscriptionId,
};

use super::book::{is_active, Book, Rules, Update};
use super::live::{number_of, subscription_id, Outcome};
use super::relay_policy::Verdict;
use super::stats::bump;
use super::subscriptions::NextBindings;
use super::Shared;
use crate::{Error, Result};

/// Authorizations read per store call when comparing with a full listing.
const LISTING_PAGE: u32 = 1_000;
/// Fewest keys per `REQ` a refusal shrinks a relay's split to.
pub(crate) const MIN_KEYS_PER_REQ: usize = 8;
/// After a ring change, how long an instance keeps hearing keys it no longer listens
/// for, so their new owner (which reacts within a second) subscribes first.
pub(crate) const HANDOVER: Duration = Duration::from_secs(5);
/// How long an instance that handed out a URI keeps answering its key, whoever owns it:
/// the owner hears of the authorization through the change feed within a second or so.
pub(crate) const PIN: Duration = Duration::from_secs(10);

impl Shared {
    /// Compares the book with a full listing of the active authorizations and sends what
    /// differs (start, the periodic safety net, and [`crate::Bunker::refresh_subscription`]).
    pub(super) async fn refresh_subscription(self: &Arc<Self>) -> Result<()> {
        // Held across the store and relay calls, so updates apply in order and a listing
        // taken before a pairing cannot drop the pairing's relays.
        let mut book = self.book.lock().await;
        let now = Timestamp::now();
        // Paged, so the listing is never held whole (nor its allocations left behind).
        let mut listing = book.start_listing();
        let mut bindings = NextBindings::default();
        let mut bound = HashSet::new();
        let mut after = None;
        loop {
            let page = self
                .custody
                .store()
                .list_active_authorizations(now, after, LISTING_PAGE)
                .await?;
            let last = page.len() < LISTING_PAGE as usize;
            bindings.extend(&page);
            bound.extend(
                page.iter()
                    .flat_map(|a| a.client_pubkeys.iter().map(|k| k.to_bytes())),
            );
            self.with_rules(|rules| book.listed(&mut listing, &page, last, now, rules));
            match page.last() {
                Some(a) if !last => after = Some(a.id),
                _ => break,
            }
        }
        self.bindings.replace(bindings);
        self.bound_clients.replace(bound);
        // Shards a relay refused are tried again now, once per comparison.
        for relay in book.relays().cloned().collect::<Vec<_>>() {
            for shard in self.live.unconfirmed(&relay) {
                book.resend(&relay, shard);
            }
        }
        self.flush(&mut book).await
    }

    /// Applies the authorizations `ids` as the store holds them now: only their shards
    /// are sent again.
    pub(super) async fn apply(self: &Arc<Self>, ids: &[AuthorizationId]) -> Result<()> {
        let mut book = self.book.lock().await;
        let now = Timestamp::now();
        for &id in ids {
            // Revoked here: a read could only say so (`revoked.rs`).
            let auth = if self.revoked.take(id) {
                None
            } else {
                match self.custody.store().get_authorization(id).await {
                    Ok(a) => Some(a),
                    Err(keycast_core::Error::NotFound { .. }) => None,
                    Err(e) => return Err(e.into()),
                }
            };
            let auth = auth.filter(|a| is_active(a, now));
            if let Some(bunker) = book.bunker_of(id) {
                if auth.as_ref().is_none_or(|a| a.bunker_pubkey != bunker) {
                    self.bindings.remove(&bunker);
                }
            }
            if let Some(a) = &auth {
                self.bindings.set(a);
                self.bound_clients.extend(a.client_pubkeys.iter());
            }
            self.with_rules(|rules| book.set(id, auth.as_ref(), now, rules));
        }
        self.flush(&mut book).await
    }

    /// Waits until nothing waits to be sent and every connected relay confirmed the
    /// current version of its shards, at most `connect_timeout`.
    pub(super) async fn settle(self: &Arc<Self>) {
        let settled = async {
            loop {
                // Taken before looking, so a confirmation in between still wakes it.
                let changed = self.live.changed();
                let pending = self.book.lock().await.has_updates();
                let mut unconfirmed = false;
                for (url, relay) in self.client.relays().await {
                    if relay.status() == RelayStatus::Connected
                        && !self.live.unconfirmed(&url).is_empty()
                    {
                        unconfirmed = true;
                    }
                }
                if !pending && !unconfirmed {
                    return;
                }
                // A confirmation wakes this at once; a flush ending or a relay going away
                // notifies nothing, so it also looks again every 100 ms.
                let _ = tokio::time::timeout(Duration::from_millis(100), changed).await;
            }
        };
        let _ = tokio::time::timeout(self.config.connect_timeout, settled).await;
    }

    /// Runs every second: drops authorizations that expired (no store read); when the
    /// cluster ring changed, asks for keys this instance now listens for and schedules
    /// letting go of the others ([`HANDOVER`] later); lets go of keys whose handover
    /// ended and of pins that ran out; and sends again what could not be handed to a
    /// relay before.
    pub(super) async fn tick(self: &Arc<Self>) -> Result<()> {
        let mut book = self.book.lock().await;
        let now = Timestamp::now();
        let instant = Instant::now();
        let epoch = self.custody.router().listening_epoch();
        let ring_moved = self.listening.swap(epoch, Ordering::Relaxed) != epoch;
        let unpinned = self.pins.unpin_due(instant);
        if !book.expiry_due(now)
            && !book.has_updates()
            && !book.leaving()
            && !ring_moved
            && unpinned.is_empty()
        {
            return Ok(());
        }
        let bunkers = self.with_rules(|rules| {
            if ring_moved {
                book.relisten(rules, instant + HANDOVER);
            }
            for id in unpinned {
                book.recheck(id, rules, instant + HANDOVER);
            }
            book.leave_due(instant, rules);
            book.expired(now, rules)
        });
        for bunker in bunkers {
            self.bindings.remove(&bunker);
        }
        self.flush(&mut book).await
    }

    /// Whether this instance listens for requests to `bunker`: the router says so (in a
    /// cluster, it owns or stands by for the key), or this instance handed out its URI a
    /// moment ago ([`PIN`]).
    pub(super) fn listens(&self, bunker: &PublicKey) -> bool {
        self.pins.contains(bunker)
            || self
                .custody
                .router()
                .listens(&keycast_core::RoutingKey(*bunker))
    }

    /// Runs `f` with the rules the book applies: the relay policy and [`Shared::listens`].
    fn with_rules<T>(&self, f: impl FnOnce(&Rules<'_>) -> T) -> T {
        let allowed = |r: &RelayUrl| self.allowed(r);
        let listens = |k: &PublicKey| self.listens(k);
        f(&Rules {
            allowed: &allowed,
            listens: &listens,
        })
    }

    /// Applies `id` and waits until every connected relay that should hear its bunker key
    /// has confirmed the `REQ` holding it, at most `connect_timeout`. `false` when the
    /// wait ran out (the subscription may still arrive).
    pub(super) async fn cover(self: &Arc<Self>, id: AuthorizationId) -> Result<bool> {
        // Heard here at once, whoever owns it in a cluster.
        if let Ok(auth) = self.custody.store().get_authorization(id).await {
            self.pins.pin(auth.bunker_pubkey, id, Instant::now() + PIN);
        }
        // A key new to the book is in no version sent before this one.
        let since = match self.book.lock().await.bunker_of(id) {
            Some(_) => 0,
            None => self.versions.load(Ordering::Relaxed),
        };
        self.apply(&[id]).await?;
        let Some(bunker) = self.book.lock().await.bunker_of(id) else {
            return Ok(true);
        };
        let placements: Vec<(RelayUrl, usize, usize)> = {
            let book = self.book.lock().await;
            book.placement(&bunker)
                .into_iter()
                .map(|(url, shard)| {
                    let lane = book.lane(&url, shard);
                    (url, shard, lane)
                })
                .collect()
        };
        // Connections still being made are waited for (a relay a pairing just added, say);
        // relays that are down cannot confirm anything and are not waited for.
        let deadline = tokio::time::Instant::now() + self.config.connect_timeout;
        let mut heard = Vec::new();
        for (url, shard, lane) in placements {
            let Some(relay) = self.lane_if_open(lane, &url).await else {
                continue;
            };
            if matches!(
                relay.status(),
                RelayStatus::Initialized | RelayStatus::Pending | RelayStatus::Connecting
            ) {
                let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                relay.wait_for_connection(left).await;
            }
            if relay.status() == RelayStatus::Connected {
                heard.push((url, shard));
            }
        }
        let placements = heard;
        let live = self
            .live
            .wait(|| placements.clone(), since, self.config.connect_timeout)
            .await;
        if !live {
            tracing::warn!(authorization = %id, "the relays did not confirm the subscription of a new authorization in time");
        }
        Ok(live)
    }

    /// Connects relays new to the plan, sends every changed shard on its connection, drops
    /// relays (and extra connections) no authorization uses.
    async fn flush(self: &Arc<Self>, book: &mut Book) -> Result<()> {
        let updates = book.take_updates();
        let unused = book.take_unused();
        let pool = self.client.relays().await;
        for relay in book.relays().filter(|r| !pool.contains_key(*r)) {
            self.client
                .pool()
                .add_relay(relay.clone(), self.relay_options.clone())
                .await
                .map_err(|e| Error::Relay {
                    reason: e.to_string(),
                })?;
            // Only fails for a relay not in the pool, which it now is.
            let _ = self.client.connect_relay(relay.clone()).await;
        }
        *self.routes.write().unwrap_or_else(PoisonError::into_inner) =
            book.relays().cloned().collect();
        let mut touched = BTreeSet::new();
        for update in updates {
            let lane = book.lane(&update.relay, update.shard);
            if !self.send(&update, lane).await {
                // Sent again at the next change or comparison.
                book.resend(&update.relay, update.shard);
            }
            touched.insert(update.relay);
        }
        // Extra connections a relay no longer needs go.
        for relay in touched {
            self.lanes.release(&relay, book.lanes(&relay).max(1)).await;
        }
        for url in unused {
            tracing::info!(relay = %url, "no active authorization uses this relay; dropping it");
            self.live.forget(&url);
            self.lanes.release(&url, 1).await;
            let _ = self.client.pool().force_remove_relay(url).await;
        }
        self.subscribed.store(book.listened(), Ordering::Relaxed);
        let reqs = book
            .relays()
            .filter_map(|r| book.shards(r))
            .map(|s| s.in_use())
            .sum();
        self.open_reqs.store(reqs, Ordering::Relaxed);
        Ok(())
    }

    /// Sends one shard's `REQ` on connection `lane` (or closes it); whether it was handed
    /// to the relay pool. A shard whose last version is not confirmed yet, or a connection
    /// with too many unconfirmed ones, waits (`live.rs`): the caller keeps it for the
    /// next flush, which a confirmation triggers.
    async fn send(self: &Arc<Self>, update: &Update, lane: usize) -> bool {
        if update.keys.is_empty() {
            for (id, lane) in self.live.close(&update.relay, update.shard) {
                self.unsubscribe(&update.relay, lane, &id).await;
            }
            return true;
        }
        if !self.live.may_send(&update.relay, update.shard, lane) {
            return false;
        }
        let Some(relay) = self.lane(lane, &update.relay).await else {
            return false;
        };
        let n = self.versions.fetch_add(1, Ordering::Relaxed);
        let id = subscription_id(update.shard, n);
        let since = Timestamp::from(
            Timestamp::now()
                .as_secs()
                .saturating_sub(self.config.max_age.as_secs()),
        );
        let filter = shard_filter(&update.keys, since);
        let bytes = req_bytes(&id, since, update.keys.len());
        // Recorded before it is sent: the relay's answer can arrive before `send` returns.
        // Sent even while the relay is down: the pool keeps the subscription and sends it
        // on reconnect, before anything we could retry.
        self.live
            .sent(&update.relay, update.shard, id.clone(), lane);
        match relay
            .subscribe_with_id(id.clone(), filter, SubscribeOptions::default())
            .await
        {
            Ok(()) => {
                bump(&self.counters.reqs_sent);
                self.counters
                    .req_bytes
                    .fetch_add(bytes as u64, Ordering::Relaxed);
                true
            }
            Err(e) => {
                self.live.unsent(&update.relay, update.shard, &id);
                tracing::warn!(relay = %update.relay, error = %e, "cannot update a relay's NIP-46 subscription");
                false
            }
        }
    }

    /// Sends what waited for a confirmation (see [`Shared::send`]).
    pub(super) async fn flush_waiting(self: &Arc<Self>) {
        let mut book = self.book.lock().await;
        if book.has_updates() {
            if let Err(e) = self.flush(&mut book).await {
                tracing::warn!(error = %e, "cannot update the NIP-46 subscription");
            }
        }
    }

    async fn unsubscribe(self: &Arc<Self>, url: &RelayUrl, lane: usize, id: &SubscriptionId) {
        if let Some(relay) = self.lane_if_open(lane, url).await {
            let _ = relay.unsubscribe(id).await;
        }
    }

    /// Connection `lane` of a relay confirmed one of our `REQ`s: the version it replaced
    /// goes, and what waited for the confirmation is sent.
    pub(super) async fn on_eose(
        self: &Arc<Self>,
        url: &RelayUrl,
        id: &SubscriptionId,
        lane: usize,
    ) {
        self.live.answered(url, lane, id);
        if let Outcome::Confirmed(previous) = self.live.confirmed(url, id) {
            if let Some((old, old_lane)) = previous {
                self.unsubscribe(url, old_lane, &old).await;
            }
            self.flush_soon.notify_one();
        }
    }

    /// Connection `lane` of a relay closed one of our `REQ`s.
    pub(super) async fn on_closed(
        self: &Arc<Self>,
        url: &RelayUrl,
        id: &SubscriptionId,
        reason: &str,
        lane: usize,
    ) {
        self.live.answered(url, lane, id);
        if let Outcome::Refused(shard) = self.live.refused(url, id) {
            bump(&self.counters.reqs_refused);
            tracing::warn!(relay = %url, shard, reason, "a relay refused a NIP-46 subscription");
            self.refused(url, Refusal::of(reason), id).await;
        }
    }

    /// A relay sent a `NOTICE` on connection `lane`. One about size or subscription count
    /// answers (refuses) the oldest `REQ` of ours that connection has not answered
    /// (nostr-rs-relay refuses that way, naming no subscription).
    pub(super) async fn on_notice(self: &Arc<Self>, url: &RelayUrl, message: &str, lane: usize) {
        let refusal = Refusal::of(message);
        let refused = match refusal {
            Refusal::Other => None,
            _ => self.live.noticed(url, lane),
        };
        let Some(id) = refused else {
            tracing::info!(relay = %url, lane, notice = message, "relay notice");
            return;
        };
        if let Outcome::Refused(shard) = self.live.refused(url, &id) {
            bump(&self.counters.reqs_refused);
            tracing::warn!(relay = %url, lane, shard, notice = message, "a relay refused a NIP-46 subscription");
            self.refused(url, refusal, &id).await;
        }
    }

    /// Adapts `url`'s split to the refusal of `id`: smaller `REQ`s, or fewer per
    /// connection. Each step halves, and only a refusal of a `REQ` sent after the last
    /// step takes another; at the floor the refusal is logged and nothing is re-sent until
    /// the next full comparison.
    async fn refused(self: &Arc<Self>, url: &RelayUrl, refusal: Refusal, id: &SubscriptionId) {
        let mut book = self.book.lock().await;
        let Some(capacity) = book.shards(url).map(|s| s.capacity()) else {
            return;
        };
        if number_of(id).is_none_or(|n| n < book.reshaped_at(url)) {
            // Sent before the last step: that step already answered it.
            return;
        }
        match refusal {
            Refusal::TooBig if capacity > MIN_KEYS_PER_REQ => {
                let smaller = (capacity / 2).max(MIN_KEYS_PER_REQ);
                tracing::warn!(relay = %url, keys_per_req = smaller, "splitting a relay's NIP-46 subscription into smaller REQs");
                book.resize(url, smaller);
            }
            Refusal::TooMany if book.per_connection(url) > 1 => {
                let fewer = book.per_connection(url) / 2;
                tracing::warn!(relay = %url, reqs_per_connection = fewer, "spreading a relay's NIP-46 subscription over more connections");
                book.set_per_connection(url, fewer);
            }
            Refusal::TooBig | Refusal::TooMany => {
                tracing::error!(relay = %url, keys_per_req = capacity, reqs_per_connection = book.per_connection(url), "a relay refuses even the smallest NIP-46 subscriptions; not retrying until the next full comparison");
                return;
            }
            Refusal::Other => return,
        }
        book.reshaped(url, self.versions.load(Ordering::Relaxed));
        bump(&self.counters.req_shrinks);
        // Break before make here: a connection the relay says is full cannot take a new
        // version next to the old one.
        for (old, lane) in self.live.close_relay(url) {
            self.unsubscribe(url, lane, &old).await;
        }
        if let Err(e) = self.flush(&mut book).await {
            tracing::warn!(error = %e, "cannot re-send a relay's NIP-46 subscription");
        }
    }

    /// Whether the relay policy lets a client-named relay be used at all.
    fn allowed(&self, relay: &RelayUrl) -> bool {
        !matches!(self.policy.relay_verdict(relay), Verdict::Refused(_))
    }
}

/// Why a relay refused a `REQ`, read from its `CLOSED` or `NOTICE` text (relays word
/// these freely; these are the words strfry and nostr-rs-relay use).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    /// The message was too large.
    TooBig,
    /// The connection holds too many subscriptions.
    TooMany,
    /// Anything else (rate limits, auth …): not answered by splitting differently.
    Other,
}

impl Refusal {
    fn of(text: &str) -> Self {
        let t = text.to_ascii_lowercase();
        let has = |words: &[&str]| words.iter().any(|w| t.contains(w));
        if has(&[
            "too many subs",
            "subscription count",
            "concurrent subscription",
            "max_subscriptions",
            "too many concurrent",
        ]) {
            Self::TooMany
        } else if has(&[
            "too large",
            "too big",
            "max size",
            "message size",
            "payload",
        ]) {
            Self::TooBig
        } else {
            Self::Other
        }
    }
}

/// A shard's filter: requests to any of `keys` since `since`. The same as
/// `Filter::pubkeys`, built in a quarter of its time: each key's hex is written from a table
/// (nostr's `PublicKey::to_hex` goes a character at a time) and the `#p` set is loaded in
/// one pass instead of inserted into twice. A flush pays this per changed shard.
fn shard_filter(keys: &[PublicKey], since: Timestamp) -> Filter {
    let p: BTreeSet<String> = keys
        .iter()
        .map(|k| {
            let mut digits = [0u8; 64];
            hex::encode_to_slice(k.as_bytes(), &mut digits).expect("32 bytes are 64 digits");
            String::from_utf8(digits.to_vec()).expect("hex digits are ASCII")
        })
        .collect();
    let mut filter = Filter::new().kind(Kind::NostrConnect).since(since);
    if !p.is_empty() {
        filter
            .generic_tags
            .insert(SingleLetterTag::lowercase(Alphabet::P), p);
    }
    filter
}

/// Bytes of the `REQ` [`Shared::send`] sends for `keys` keys: the message without keys
/// (serialized, it is short) plus `,"#p":[...]` with 64 hex digits and two quotes per
/// key, a comma between them. Serializing the whole `REQ` only to count it cost as much as
/// building it.
fn req_bytes(id: &SubscriptionId, since: Timestamp, keys: usize) -> usize {
    let bare = Filter::new().kind(Kind::NostrConnect).since(since);
    let base = ClientMessage::req(id.clone(), vec![bare]).as_json().len();
    match keys {
        0 => base,
        n => base + 7 + 67 * n,
    }
}

#[cfg(test)]
mod tests {
    use keycast_core::nostr::{Keys, Kind, Timestamp};
    use nostr_sdk::prelude::{ClientMessage, Filter, JsonUtil};

    use super::super::live::subscription_id;
    use super::{req_bytes, shard_filter, Refusal};

    #[test]
    fn a_shard_filter_is_what_nostr_builds() {
        let since = Timestamp::from(1_700_000_000);
        for n in [0usize, 1, 480] {
            let keys: Vec<_> = (0..n).map(|_| Keys::generate().public_key()).collect();
            let mut theirs = Filter::new().kind(Kind::NostrConnect).since(since);
            if n > 0 {
                theirs = theirs.pubkeys(keys.iter().copied());
            }
            let ours = shard_filter(&keys, since);
            assert_eq!(ours.as_json(), theirs.as_json(), "{n} keys");
        }
    }

    #[test]
    fn req_bytes_are_the_serialized_length() {
        let since = Timestamp::from(1_700_000_000);
        for n in [0usize, 1, 2, 480] {
            let id = subscription_id(7, 12_345);
            let keys: Vec<_> = (0..n).map(|_| Keys::generate().public_key()).collect();
            let mut filter = Filter::new().kind(Kind::NostrConnect).since(since);
            if n > 0 {
                filter = filter.pubkeys(keys);
            }
            let req = ClientMessage::req(id.clone(), vec![filter]).as_json();
            assert_eq!(req_bytes(&id, since, n), req.len(), "{n} keys");
        }
    }

    #[test]
    fn refusals_are_read_from_what_relays_say() {
        for (text, refusal) in [
            (
                "Subscription error: Maximum concurrent subscription count reached",
                Refusal::TooMany,
            ),
            ("error: too many subscriptions", Refusal::TooMany),
            ("message too large (200000 > 131072)", Refusal::TooBig),
            ("error: filter too big", Refusal::TooBig),
            ("rate-limited: slow down", Refusal::Other),
            ("auth-required: we only serve members", Refusal::Other),
        ] {
            assert_eq!(Refusal::of(text), refusal, "{text}");
        }
    }
}
