//! Keeping the relays' subscriptions in step with the active authorizations.
//!
//! [`Book`] decides which bunker keys each relay is asked for and splits them into
//! shards; this file sends what changed: one `REQ` per changed shard, under a fresh
//! subscription id whose `EOSE` confirms it ([`Live`]). A change to one authorization
//! reads that one record and sends at most one `REQ` per relay, so its cost does not grow
//! with the number of authorizations.
//!
//! A relay that refuses a `REQ` (`CLOSED`, or a `NOTICE` about size) has its keys split
//! into `REQ`s half the size, down to [`MIN_KEYS_PER_REQ`]; below that the refusal is
//! logged and counted and nothing is re-sent until the next full comparison, so a
//! refusing relay is never sent the same `REQ` in a loop.

use std::sync::atomic::Ordering;
use std::sync::PoisonError;

use keycast_core::nostr::{Kind, RelayUrl, Timestamp};
use keycast_core::AuthorizationId;
use nostr_sdk::prelude::{ClientMessage, Filter, JsonUtil, RelayStatus, SubscribeOptions};

use super::book::{is_active, Book, Update};
use super::live::{subscription_id, Outcome};
use super::relay_policy::Verdict;
use super::stats::bump;
use super::Shared;
use crate::{Error, Result};

/// Fewest keys per `REQ` a refusal shrinks a relay's split to.
pub(crate) const MIN_KEYS_PER_REQ: usize = 8;

impl Shared {
    /// Compares the book with a full listing of the active authorizations and sends what
    /// differs (start, the periodic safety net, and [`crate::Bunker::refresh_subscription`]).
    pub(super) async fn refresh_subscription(&self) -> Result<()> {
        // Held across the store and relay calls, so updates apply in order and a listing
        // taken before a pairing cannot drop the pairing's relays.
        let mut book = self.book.lock().await;
        let now = Timestamp::now();
        let active = self.custody.store().list_active_authorizations(now).await?;
        self.bindings.replace(&active);
        self.bound_clients
            .replace(active.iter().flat_map(|a| a.client_pubkeys.iter()));
        book.reconcile(&active, now, &|r| self.allowed(r));
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
    pub(super) async fn apply(&self, ids: &[AuthorizationId]) -> Result<()> {
        let mut book = self.book.lock().await;
        let now = Timestamp::now();
        for &id in ids {
            let auth = match self.custody.store().get_authorization(id).await {
                Ok(a) => Some(a),
                Err(keycast_core::Error::NotFound { .. }) => None,
                Err(e) => return Err(e.into()),
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
            book.set(id, auth.as_ref(), now, &|r| self.allowed(r));
        }
        self.flush(&mut book).await
    }

    /// Drops authorizations that expired by now (no store read).
    pub(super) async fn expire(&self) -> Result<()> {
        let mut book = self.book.lock().await;
        if !book.expiry_due(Timestamp::now()) {
            return Ok(());
        }
        let now = Timestamp::now();
        let bunkers: Vec<_> = book.expired(now, &|r| self.allowed(r));
        for bunker in bunkers {
            self.bindings.remove(&bunker);
        }
        self.flush(&mut book).await
    }

    /// Applies `id` and waits until every connected relay that should hear its bunker key
    /// has confirmed the `REQ` holding it, at most `connect_timeout`. `false` when the
    /// wait ran out (the subscription may still arrive).
    pub(super) async fn cover(&self, id: AuthorizationId) -> Result<bool> {
        self.apply(&[id]).await?;
        let Some(bunker) = self.book.lock().await.bunker_of(id) else {
            return Ok(true);
        };
        let placements = self.book.lock().await.placement(&bunker);
        // Relays still connecting are waited for (a relay a pairing just added, say);
        // relays that are down cannot confirm anything and are not waited for.
        let pool = self.client.relays().await;
        let connecting: Vec<RelayUrl> = placements
            .iter()
            .filter(|(url, _)| {
                pool.get(url).is_some_and(|r| {
                    matches!(
                        r.status(),
                        RelayStatus::Initialized | RelayStatus::Pending | RelayStatus::Connecting
                    )
                })
            })
            .map(|(url, _)| url.clone())
            .collect();
        self.wait_connected(&connecting).await;
        let pool = self.client.relays().await;
        let placements: Vec<(RelayUrl, usize)> = placements
            .into_iter()
            .filter(|(url, _)| {
                pool.get(url)
                    .is_some_and(|r| r.status() == RelayStatus::Connected)
            })
            .collect();
        let live = self
            .live
            .wait(|| placements.clone(), self.config.connect_timeout)
            .await;
        if !live {
            tracing::warn!(authorization = %id, "the relays did not confirm the subscription of a new authorization in time");
        }
        Ok(live)
    }

    /// Connects relays new to the plan, sends every changed shard, drops relays no
    /// authorization uses.
    async fn flush(&self, book: &mut Book) -> Result<()> {
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
        for update in updates {
            if !self.send(&update).await {
                // Sent again at the next change or comparison.
                book.resend(&update.relay, update.shard);
            }
        }
        for url in unused {
            tracing::info!(relay = %url, "no active authorization uses this relay; dropping it");
            self.live.forget(&url);
            let _ = self.client.pool().force_remove_relay(url).await;
        }
        self.subscribed.store(book.len(), Ordering::Relaxed);
        let reqs = book
            .relays()
            .filter_map(|r| book.shards(r))
            .map(|s| s.in_use())
            .sum();
        self.open_reqs.store(reqs, Ordering::Relaxed);
        Ok(())
    }

    /// Sends one shard's `REQ` (or closes it); whether it was handed to the relay.
    async fn send(&self, update: &Update) -> bool {
        let Ok(relay) = self.client.relay(&update.relay).await else {
            return false;
        };
        if update.keys.is_empty() {
            for id in self.live.close(&update.relay, update.shard) {
                let _ = relay.unsubscribe(&id).await;
            }
            return true;
        }
        let n = self.versions.fetch_add(1, Ordering::Relaxed);
        let id = subscription_id(update.shard, n);
        let since = Timestamp::from(
            Timestamp::now()
                .as_secs()
                .saturating_sub(self.config.max_age.as_secs()),
        );
        let filter = Filter::new()
            .kind(Kind::NostrConnect)
            .pubkeys(update.keys.iter().copied())
            .since(since);
        let bytes = ClientMessage::req(id.clone(), vec![filter.clone()])
            .as_json()
            .len();
        match relay
            .subscribe_with_id(id.clone(), filter, SubscribeOptions::default())
            .await
        {
            Ok(()) => {
                bump(&self.counters.reqs_sent);
                self.counters
                    .req_bytes
                    .fetch_add(bytes as u64, Ordering::Relaxed);
                if let Some(stale) = self.live.sent(&update.relay, update.shard, id) {
                    let _ = relay.unsubscribe(&stale).await;
                }
                true
            }
            Err(e) => {
                tracing::warn!(relay = %update.relay, error = %e, "cannot update a relay's NIP-46 subscription");
                false
            }
        }
    }

    /// A relay confirmed one of our `REQ`s: the version it replaced can go.
    pub(super) async fn on_eose(&self, url: &RelayUrl, id: &nostr_sdk::prelude::SubscriptionId) {
        if let Outcome::Confirmed(Some(previous)) = self.live.confirmed(url, id) {
            if let Ok(relay) = self.client.relay(url).await {
                let _ = relay.unsubscribe(&previous).await;
            }
        }
    }

    /// A relay closed one of our `REQ`s.
    pub(super) async fn on_closed(
        &self,
        url: &RelayUrl,
        id: &nostr_sdk::prelude::SubscriptionId,
        reason: &str,
    ) {
        if let Outcome::Refused(shard) = self.live.refused(url, id) {
            bump(&self.counters.reqs_refused);
            tracing::warn!(relay = %url, shard, reason, "a relay refused a NIP-46 subscription");
            self.shrink(url, reason).await;
        }
    }

    /// A relay sent a `NOTICE`; one about size or count is taken as a refusal of our
    /// latest `REQ`s (relays like nostr-rs-relay answer those with a `NOTICE`).
    pub(super) async fn on_notice(&self, url: &RelayUrl, message: &str) {
        let m = message.to_ascii_lowercase();
        let about_us = ["too large", "too big", "exceeded", "maximum", "too many"]
            .iter()
            .any(|w| m.contains(w));
        if !about_us || self.live.unconfirmed(url).is_empty() {
            tracing::info!(relay = %url, notice = message, "relay notice");
            return;
        }
        bump(&self.counters.reqs_refused);
        tracing::warn!(relay = %url, notice = message, "a relay refused a NIP-46 subscription");
        self.shrink(url, message).await;
    }

    /// Splits `url`'s keys into `REQ`s half the size and sends them, unless they are at
    /// the floor already.
    async fn shrink(&self, url: &RelayUrl, reason: &str) {
        let mut book = self.book.lock().await;
        let Some(capacity) = book.shards(url).map(|s| s.capacity()) else {
            return;
        };
        if capacity <= MIN_KEYS_PER_REQ {
            tracing::error!(relay = %url, reason, keys_per_req = capacity, "a relay refuses even small NIP-46 subscriptions; not retrying until the next full comparison");
            return;
        }
        let smaller = (capacity / 2).max(MIN_KEYS_PER_REQ);
        bump(&self.counters.req_shrinks);
        tracing::warn!(relay = %url, keys_per_req = smaller, "splitting a relay's NIP-46 subscription into smaller REQs");
        book.resize(url, smaller);
        if let Err(e) = self.flush(&mut book).await {
            tracing::warn!(error = %e, "cannot re-send a relay's NIP-46 subscription");
        }
    }

    /// Whether the relay policy lets a client-named relay be used at all.
    fn allowed(&self, relay: &RelayUrl) -> bool {
        !matches!(self.policy.relay_verdict(relay), Verdict::Refused(_))
    }
}
