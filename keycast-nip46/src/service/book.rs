//! What the bunker asks each relay for, kept up to date one authorization at a time.
//!
//! [`Book`] holds every active authorization's bunker key, the relays it is wanted on,
//! and per relay the [`Shards`] that split the keys over `REQ`s. The configured relays
//! want every active bunker key; any other relay (one a `nostrconnect://` client named)
//! only the bunker keys of the active authorizations that list it, so a relay chosen by
//! one app never learns the bunker keys of other users or tenants. A relay the policy
//! refuses gets nothing.
//!
//! A key is asked for only where this instance listens for it ([`Rules::listens`]: in a
//! cluster, keys it owns or stands by for; alone, every key). When the ring changes,
//! [`Book::relisten`] asks for keys gained at once and lets go of keys lost only after a
//! grace period ([`Book::leave_due`]), so their new owner subscribes before the old one
//! stops hearing them.
//!
//! A change costs the work of that one authorization: [`Book::set`] compares it with what
//! the book holds and touches only the shards of its key. [`Book::listed`] (start, and a
//! periodic safety net) compares a full listing, page by page, the same way, so it too
//! re-sends only what differs. Expiry needs no listing: the book keeps the active
//! authorizations ordered by `expires_at` ([`Book::expired`]). Relays are held once and
//! referred to by number, so an authorization costs a few dozen bytes here, and so do the
//! sets of relays each is wanted on (held once per distinct set).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use keycast_core::nostr::{PublicKey, RelayUrl, Timestamp};
use keycast_core::{Authorization, AuthorizationId};

use super::shards::Shards;

/// What decides where a bunker key is asked for.
pub(crate) struct Rules<'a> {
    /// Whether the relay policy lets a client-named relay be used at all.
    pub(crate) allowed: &'a dyn Fn(&RelayUrl) -> bool,
    /// Whether this instance listens for a bunker key (see the module docs).
    pub(crate) listens: &'a dyn Fn(&PublicKey) -> bool,
}

/// A full comparison with the store in progress (see [`Book::listed`]).
#[derive(Debug)]
pub(crate) struct Listing {
    /// The ids the book held when it started, ascending.
    held: Vec<AuthorizationId>,
    /// How many of them the pages so far covered.
    next: usize,
}

/// One active authorization as the subscriptions see it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    bunker: PublicKey,
    /// The relays it is wanted on (numbers into `Book::urls`), shared by every entry
    /// with the same relays (`Book::sets`): most have just the configured ones.
    wanted: Arc<[u32]>,
    /// Whether it is asked for there now.
    on: bool,
    expires_at: Option<Timestamp>,
}

/// A `REQ` to send again: shard `shard` of `relay` now holds `keys` (none: close it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Update {
    pub(crate) relay: RelayUrl,
    pub(crate) shard: usize,
    pub(crate) keys: Vec<PublicKey>,
}

/// The subscription plan, kept incrementally.
#[derive(Debug)]
pub(crate) struct Book {
    configured: Vec<RelayUrl>,
    /// Keys per `REQ` for a relay seen for the first time.
    capacity: usize,
    /// `REQ`s per connection for a relay seen for the first time.
    per_connection: usize,
    /// Relays that allow fewer `REQ`s per connection than `per_connection`.
    fewer: HashMap<RelayUrl, usize>,
    /// Per relay: the first subscription-id number sent after its split last changed.
    reshaped: HashMap<RelayUrl, u64>,
    /// Every relay ever wanted, by number.
    urls: Vec<RelayUrl>,
    numbers: HashMap<RelayUrl, u32>,
    /// Every distinct `Entry::wanted` in use, once.
    sets: HashSet<Arc<[u32]>>,
    entries: HashMap<AuthorizationId, Entry>,
    /// Entries asked for now.
    on: usize,
    expiry: BTreeSet<(Timestamp, AuthorizationId)>,
    /// Keys no longer listened for, let go at the instant given.
    leaving: HashMap<AuthorizationId, Instant>,
    relays: BTreeMap<RelayUrl, Shards>,
}

impl Book {
    /// No authorizations yet; the configured relays are planned, with no keys. Each relay
    /// gets `REQ`s of at most `capacity` keys, at most `per_connection` on one connection.
    pub(crate) fn new(configured: &[RelayUrl], capacity: usize, per_connection: usize) -> Self {
        Self {
            configured: configured.to_vec(),
            capacity,
            per_connection: per_connection.max(1),
            fewer: HashMap::new(),
            reshaped: HashMap::new(),
            urls: Vec::new(),
            numbers: HashMap::new(),
            sets: HashSet::new(),
            entries: HashMap::new(),
            on: 0,
            expiry: BTreeSet::new(),
            leaving: HashMap::new(),
            relays: configured
                .iter()
                .map(|r| (r.clone(), Shards::new(capacity)))
                .collect(),
        }
    }

    /// Active authorizations held.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Active authorizations asked for on their relays (listened for).
    pub(crate) fn listened(&self) -> usize {
        self.on
    }

    /// Every relay in the plan: the configured ones and those holding a key.
    pub(crate) fn relays(&self) -> impl Iterator<Item = &RelayUrl> {
        self.relays.keys()
    }

    /// The shards of `relay`.
    pub(crate) fn shards(&self, relay: &RelayUrl) -> Option<&Shards> {
        self.relays.get(relay)
    }

    /// Where `bunker` is asked for: each relay and the shard holding it.
    pub(crate) fn placement(&self, bunker: &PublicKey) -> Vec<(RelayUrl, usize)> {
        self.relays
            .iter()
            .filter_map(|(url, s)| s.shard_of(bunker).map(|n| (url.clone(), n)))
            .collect()
    }

    /// Applies authorization `id` as it is now (`None`: gone, or read as not active at
    /// `now`), at once.
    pub(crate) fn set(
        &mut self,
        id: AuthorizationId,
        auth: Option<&Authorization>,
        now: Timestamp,
        rules: &Rules<'_>,
    ) {
        let wanted = auth.filter(|a| is_active(a, now)).map(|a| Entry {
            bunker: a.bunker_pubkey,
            wanted: self.wanted(a, rules),
            on: (rules.listens)(&a.bunker_pubkey),
            expires_at: a.expires_at,
        });
        let before = self.entries.remove(&id);
        self.leaving.remove(&id);
        if let Some(old) = &before {
            if let Some(at) = old.expires_at {
                self.expiry.remove(&(at, id));
            }
            if old.on {
                self.on -= 1;
            }
        }
        let asked = |e: &Option<Entry>| -> BTreeSet<(u32, PublicKey)> {
            e.iter()
                .filter(|e| e.on)
                .flat_map(|e| e.wanted.iter().map(|&r| (r, e.bunker)))
                .collect()
        };
        let (old, new) = (asked(&before), asked(&wanted));
        for (relay, key) in old.difference(&new) {
            let url = self.urls[*relay as usize].clone();
            if let Some(s) = self.relays.get_mut(&url) {
                s.remove(key);
            }
        }
        for (relay, key) in new.difference(&old) {
            let url = self.urls[*relay as usize].clone();
            let capacity = self.capacity;
            self.relays
                .entry(url)
                .or_insert_with(|| Shards::new(capacity))
                .insert(*key);
        }
        if let Some(e) = wanted {
            if let Some(at) = e.expires_at {
                self.expiry.insert((at, id));
            }
            if e.on {
                self.on += 1;
            }
            self.entries.insert(id, e);
        }
    }

    /// Starts a full comparison with the store: the ids held now, in order, for
    /// [`Book::listed`] to merge the listing's pages with.
    pub(crate) fn start_listing(&self) -> Listing {
        let mut held: Vec<AuthorizationId> = self.entries.keys().copied().collect();
        held.sort_unstable();
        Listing { held, next: 0 }
    }

    /// Applies one page of a full listing at `now` (active authorizations in ascending id
    /// order, after the previous page's): held ones in its id range that it does not
    /// list are removed, then it is applied with [`Book::set`]. The `last` page's range
    /// runs to the end. So a listing is never held whole, and only what differs is sent.
    pub(crate) fn listed(
        &mut self,
        listing: &mut Listing,
        page: &[Authorization],
        last: bool,
        now: Timestamp,
        rules: &Rules<'_>,
    ) {
        let upto = match (last, page.last()) {
            (true, _) => None,
            (false, Some(a)) => Some(a.id),
            // An empty page that is not the last says nothing about any range.
            (false, None) => return,
        };
        while let Some(&id) = listing.held.get(listing.next) {
            if upto.is_some_and(|upto| id > upto) {
                break;
            }
            listing.next += 1;
            if page.binary_search_by_key(&id, |a| a.id).is_err() {
                self.set(id, None, now, rules);
            }
        }
        for auth in page {
            self.set(auth.id, Some(auth), now, rules);
        }
        if last {
            // Relay sets no entry uses any more (their pairings ended).
            self.sets.retain(|set| Arc::strong_count(set) > 1);
        }
    }

    /// Makes the book match `active` (a whole listing, any order), as one page.
    #[cfg(test)]
    pub(crate) fn reconcile(
        &mut self,
        active: &[Authorization],
        now: Timestamp,
        rules: &Rules<'_>,
    ) {
        let mut page = active.to_vec();
        page.sort_by_key(|a| a.id);
        let mut listing = self.start_listing();
        self.listed(&mut listing, &page, true, now, rules);
    }

    /// Asks again whether this instance listens for each key (the ring changed): keys
    /// gained are asked for at once, keys lost are let go at `let_go` (see
    /// [`Book::leave_due`]).
    pub(crate) fn relisten(&mut self, rules: &Rules<'_>, let_go: Instant) {
        let ids: Vec<AuthorizationId> = self.entries.keys().copied().collect();
        for id in ids {
            self.recheck(id, rules, let_go);
        }
    }

    /// [`Book::relisten`] for one authorization.
    pub(crate) fn recheck(&mut self, id: AuthorizationId, rules: &Rules<'_>, let_go: Instant) {
        let Some(e) = self.entries.get(&id) else {
            return;
        };
        let listens = (rules.listens)(&e.bunker);
        if listens && !e.on {
            self.switch(id, true);
        } else if !listens && e.on {
            self.leaving.entry(id).or_insert(let_go);
        } else if listens {
            self.leaving.remove(&id);
        }
    }

    /// Lets go of the keys whose grace ended by `now` and that are still not listened for.
    pub(crate) fn leave_due(&mut self, now: Instant, rules: &Rules<'_>) {
        let due: Vec<AuthorizationId> = self
            .leaving
            .iter()
            .filter(|(_, at)| **at <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in due {
            self.leaving.remove(&id);
            let listens = self
                .entries
                .get(&id)
                .is_some_and(|e| (rules.listens)(&e.bunker));
            if !listens {
                self.switch(id, false);
            }
        }
    }

    /// Whether a key waits to be let go.
    pub(crate) fn leaving(&self) -> bool {
        !self.leaving.is_empty()
    }

    /// Asks for (or stops asking for) `id`'s key on its relays.
    fn switch(&mut self, id: AuthorizationId, on: bool) {
        let Some(e) = self.entries.get_mut(&id) else {
            return;
        };
        if e.on == on {
            return;
        }
        e.on = on;
        let (bunker, wanted) = (e.bunker, e.wanted.clone());
        if on {
            self.on += 1;
        } else {
            self.on -= 1;
        }
        for relay in wanted.iter() {
            let url = self.urls[*relay as usize].clone();
            let capacity = self.capacity;
            let shards = self
                .relays
                .entry(url)
                .or_insert_with(|| Shards::new(capacity));
            if on {
                shards.insert(bunker);
            } else {
                shards.remove(&bunker);
            }
        }
    }

    /// Whether an authorization expires by `now`.
    pub(crate) fn expiry_due(&self, now: Timestamp) -> bool {
        self.expiry.first().is_some_and(|(at, _)| *at <= now)
    }

    /// Removes the authorizations that expired by `now`; their bunker keys.
    pub(crate) fn expired(&mut self, now: Timestamp, rules: &Rules<'_>) -> Vec<PublicKey> {
        let due: Vec<AuthorizationId> = self
            .expiry
            .iter()
            .take_while(|(at, _)| *at <= now)
            .map(|(_, id)| *id)
            .collect();
        let mut bunkers = Vec::with_capacity(due.len());
        for id in due {
            bunkers.extend(self.bunker_of(id));
            self.set(id, None, now, rules);
        }
        bunkers
    }

    /// The bunker key of `id`, while it is held.
    pub(crate) fn bunker_of(&self, id: AuthorizationId) -> Option<PublicKey> {
        self.entries.get(&id).map(|e| e.bunker)
    }

    /// Whether a `REQ` waits to be sent (one that could not be handed to its relay).
    pub(crate) fn has_updates(&self) -> bool {
        self.relays.values().any(Shards::has_dirty)
    }

    /// Every `REQ` to send again since the last call.
    pub(crate) fn take_updates(&mut self) -> Vec<Update> {
        let mut updates = Vec::new();
        for (relay, shards) in &mut self.relays {
            for (shard, keys) in shards.take_dirty() {
                updates.push(Update {
                    relay: relay.clone(),
                    shard,
                    keys,
                });
            }
        }
        updates
    }

    /// Relays that hold no key and are not configured, forgotten by the book: their
    /// connections can go. Call after [`Book::take_updates`] (their closes are sent there).
    pub(crate) fn take_unused(&mut self) -> Vec<RelayUrl> {
        let unused: Vec<RelayUrl> = self
            .relays
            .iter()
            .filter(|(url, s)| s.len() == 0 && !self.configured.contains(url))
            .map(|(url, _)| url.clone())
            .collect();
        for url in &unused {
            self.relays.remove(url);
            self.fewer.remove(url);
            self.reshaped.remove(url);
        }
        unused
    }

    /// Splits `relay`'s keys into `REQ`s of at most `capacity` keys from now on (a relay
    /// refused one as too big); every shard of it is sent again.
    pub(crate) fn resize(&mut self, relay: &RelayUrl, capacity: usize) {
        if let Some(s) = self.relays.get_mut(relay) {
            s.resize(capacity);
        }
    }

    /// `REQ`s per connection to `relay`.
    pub(crate) fn per_connection(&self, relay: &RelayUrl) -> usize {
        self.fewer
            .get(relay)
            .copied()
            .unwrap_or(self.per_connection)
    }

    /// The connection (lane) that shard `shard` of `relay` is sent on.
    pub(crate) fn lane(&self, relay: &RelayUrl, shard: usize) -> usize {
        shard / self.per_connection(relay)
    }

    /// Connections `relay` needs now.
    pub(crate) fn lanes(&self, relay: &RelayUrl) -> usize {
        self.relays
            .get(relay)
            .map_or(0, |s| s.end().div_ceil(self.per_connection(relay)))
    }

    /// Puts at most `n` `REQ`s on one connection to `relay` from now on (it refused more);
    /// every shard of it is sent again.
    pub(crate) fn set_per_connection(&mut self, relay: &RelayUrl, n: usize) {
        self.fewer.insert(relay.clone(), n.max(1));
        if let Some(s) = self.relays.get_mut(relay) {
            s.mark_all_dirty();
        }
    }

    /// Records that `relay`'s split changed when subscription ids were numbered from `n`.
    pub(crate) fn reshaped(&mut self, relay: &RelayUrl, n: u64) {
        self.reshaped.insert(relay.clone(), n);
    }

    /// The first subscription-id number of `relay`'s current split (0: never changed).
    pub(crate) fn reshaped_at(&self, relay: &RelayUrl) -> u64 {
        self.reshaped.get(relay).copied().unwrap_or(0)
    }

    /// Sends shard `shard` of `relay` again at the next [`Book::take_updates`].
    pub(crate) fn resend(&mut self, relay: &RelayUrl, shard: usize) {
        if let Some(s) = self.relays.get_mut(relay) {
            s.mark_dirty(shard);
        }
    }

    /// The relays `auth` is wanted on: the configured ones and those it names that the
    /// policy allows.
    fn wanted(&mut self, auth: &Authorization, rules: &Rules<'_>) -> Arc<[u32]> {
        let named: Vec<RelayUrl> = auth
            .relays
            .iter()
            .filter(|r| !self.configured.contains(r) && (rules.allowed)(r))
            .cloned()
            .collect();
        let urls: BTreeSet<RelayUrl> = self.configured.iter().cloned().chain(named).collect();
        let numbers: Vec<u32> = urls.into_iter().map(|u| self.number(u)).collect();
        if let Some(set) = self.sets.get(numbers.as_slice()) {
            return set.clone();
        }
        let set: Arc<[u32]> = numbers.into();
        self.sets.insert(set.clone());
        set
    }

    fn number(&mut self, url: RelayUrl) -> u32 {
        if let Some(n) = self.numbers.get(&url) {
            return *n;
        }
        let n = u32::try_from(self.urls.len()).expect("fewer than 2^32 relays");
        self.urls.push(url.clone());
        self.numbers.insert(url, n);
        n
    }
}

/// Neither revoked nor expired at `now`.
pub(crate) fn is_active(auth: &Authorization, now: Timestamp) -> bool {
    auth.revoked_at.is_none() && auth.expires_at.is_none_or(|at| at > now)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use keycast_core::nostr::Keys;
    use keycast_core::{KeyId, Label, PolicyId, TenantId, UserId};

    fn any_relay(_: &RelayUrl) -> bool {
        true
    }

    fn any_key(_: &PublicKey) -> bool {
        true
    }

    const ALL: Rules<'static> = Rules {
        allowed: &any_relay,
        listens: &any_key,
    };

    fn relay(s: &str) -> RelayUrl {
        RelayUrl::parse(s).expect(s)
    }

    /// An active authorization on `relays`, with one bound client.
    pub(crate) fn auth(relays: &[RelayUrl]) -> Authorization {
        Authorization {
            id: AuthorizationId::random(),
            tenant_id: TenantId::random(),
            user_id: UserId::random(),
            key_id: KeyId::random(),
            bunker_key_id: KeyId::random(),
            bunker_pubkey: Keys::generate().public_key(),
            connect_secret: None,
            relays: relays.to_vec(),
            policy_id: PolicyId::random(),
            label: Label::parse("app").expect("label"),
            expires_at: None,
            revoked_at: None,
            client_pubkeys: vec![Keys::generate().public_key()],
            uses: 0,
            version: 1,
            created_at: Timestamp::now(),
        }
    }

    fn keys_on(b: &Book, relay: &RelayUrl) -> BTreeSet<PublicKey> {
        let s = b.shards(relay).expect("planned");
        (0..s.len() + 1).flat_map(|n| s.keys(n)).collect()
    }

    #[test]
    fn extra_relays_get_only_the_keys_of_the_authorizations_that_list_them() {
        let ours = relay("wss://ours.example");
        let (x, y, refused) = (
            relay("wss://x.example"),
            relay("wss://y.example"),
            relay("ws://10.0.0.1"),
        );
        let plain = auth(&[]);
        let on_ours = auth(std::slice::from_ref(&ours));
        let on_x = auth(&[x.clone(), refused.clone()]);
        let on_xy = auth(&[x.clone(), y.clone()]);
        let active = [plain.clone(), on_ours.clone(), on_x.clone(), on_xy.clone()];
        let mut b = Book::new(std::slice::from_ref(&ours), 2, 20);
        let not_refused = |r: &RelayUrl| r != &refused;
        let rules = Rules {
            allowed: &not_refused,
            listens: &any_key,
        };
        b.reconcile(&active, Timestamp::now(), &rules);
        let keys = |a: &[&Authorization]| -> BTreeSet<PublicKey> {
            a.iter().map(|a| a.bunker_pubkey).collect()
        };
        assert_eq!(b.relays().count(), 3);
        assert_eq!(keys_on(&b, &ours), keys(&[&plain, &on_ours, &on_x, &on_xy]));
        assert_eq!(keys_on(&b, &x), keys(&[&on_x, &on_xy]));
        assert_eq!(keys_on(&b, &y), keys(&[&on_xy]));
        assert!(
            b.shards(&refused).is_none(),
            "a refused relay is not planned"
        );
        assert_eq!(
            b.shards(&ours).expect("ours").in_use(),
            2,
            "two keys per REQ"
        );
    }

    #[test]
    fn a_paged_listing_removes_what_it_no_longer_lists_and_keeps_the_rest() {
        let ours = relay("wss://ours.example");
        let mut b = Book::new(std::slice::from_ref(&ours), 2, 20);
        let now = Timestamp::now();
        let mut all: Vec<Authorization> = (0..7).map(|_| auth(&[])).collect();
        all.sort_by_key(|a| a.id);
        b.reconcile(&all, now, &ALL);
        // Gone since: the first, one in the middle and the last; one new.
        let mut active: Vec<Authorization> = all
            .iter()
            .enumerate()
            .filter(|(i, _)| ![0, 3, 6].contains(i))
            .map(|(_, a)| a.clone())
            .chain([auth(&[])])
            .collect();
        active.sort_by_key(|a| a.id);
        // Read as the store pages it: two at a time, a short (here empty) page last.
        let mut listing = b.start_listing();
        let mut rest = active.as_slice();
        loop {
            let page = &rest[..rest.len().min(2)];
            rest = &rest[page.len()..];
            let last = page.len() < 2;
            b.listed(&mut listing, page, last, now, &ALL);
            if last {
                break;
            }
        }
        let keys: BTreeSet<PublicKey> = active.iter().map(|a| a.bunker_pubkey).collect();
        assert_eq!(keys_on(&b, &ours), keys);
        assert_eq!(b.len(), 5);
        // A page that is not the last and lists nothing removes nothing.
        let mut listing = b.start_listing();
        b.listed(&mut listing, &[], false, now, &ALL);
        assert_eq!(b.len(), 5);
    }

    #[test]
    fn entries_with_the_same_relays_share_one_set_until_none_uses_it() {
        let ours = relay("wss://ours.example");
        let x = relay("wss://x.example");
        let mut b = Book::new(std::slice::from_ref(&ours), 2, 20);
        let (one, two, three) = (auth(&[]), auth(std::slice::from_ref(&ours)), auth(&[x]));
        let now = Timestamp::now();
        b.reconcile(&[one.clone(), two.clone(), three.clone()], now, &ALL);
        let wanted = |a: &Authorization| b.entries[&a.id].wanted.clone();
        assert!(Arc::ptr_eq(&wanted(&one), &wanted(&two)), "one copy");
        assert_eq!(wanted(&three).len(), 2);
        assert_eq!(b.sets.len(), 2);
        b.reconcile(&[one], now, &ALL);
        assert_eq!(
            b.sets.len(),
            1,
            "the set only the gone ones used is dropped"
        );
    }

    #[test]
    fn one_change_sends_only_the_shards_of_its_key() {
        let ours = relay("wss://ours.example");
        let mut b = Book::new(std::slice::from_ref(&ours), 10, 20);
        let active: Vec<Authorization> = (0..95).map(|_| auth(&[])).collect();
        let now = Timestamp::now();
        b.reconcile(&active, now, &ALL);
        assert_eq!(b.take_updates().len(), 10);
        // Reconciling the same listing sends nothing.
        b.reconcile(&active, now, &ALL);
        assert!(b.take_updates().is_empty());
        let fresh = auth(&[]);
        b.set(fresh.id, Some(&fresh), now, &ALL);
        let updates = b.take_updates();
        assert_eq!(updates.len(), 1);
        assert!(updates[0].keys.contains(&fresh.bunker_pubkey));
        assert_eq!(b.placement(&fresh.bunker_pubkey), vec![(ours.clone(), 9)]);
        let mut revoked = active[3].clone();
        let [(_, shard)] = b.placement(&revoked.bunker_pubkey)[..] else {
            panic!("one relay, one shard");
        };
        revoked.revoked_at = Some(now);
        b.set(revoked.id, Some(&revoked), now, &ALL);
        let updates = b.take_updates();
        assert_eq!(updates.len(), 1);
        assert_eq!(updates[0].shard, shard);
        assert!(!updates[0].keys.contains(&revoked.bunker_pubkey));
        assert_eq!(b.len(), 95);
    }

    #[test]
    fn expired_authorizations_leave_without_a_listing() {
        let ours = relay("wss://ours.example");
        let x = relay("wss://x.example");
        let mut b = Book::new(std::slice::from_ref(&ours), 10, 20);
        let now = Timestamp::now();
        let mut soon = auth(std::slice::from_ref(&x));
        soon.expires_at = Some(Timestamp::from(now.as_secs() + 5));
        let later = auth(&[]);
        b.reconcile(&[soon.clone(), later.clone()], now, &ALL);
        b.take_updates();
        assert!(!b.expiry_due(now));
        assert!(b.expired(now, &ALL).is_empty());
        let at = Timestamp::from(now.as_secs() + 5);
        assert!(b.expiry_due(at));
        assert_eq!(b.bunker_of(soon.id), Some(soon.bunker_pubkey));
        assert_eq!(b.expired(at, &ALL), vec![soon.bunker_pubkey]);
        assert_eq!(b.bunker_of(soon.id), None);
        assert_eq!(b.len(), 1);
        let updates = b.take_updates();
        assert_eq!(updates.len(), 2, "its shard on ours and on x: {updates:?}");
        assert_eq!(b.take_unused(), vec![x.clone()], "x holds no key now");
        assert!(b.take_unused().is_empty());
        assert_eq!(b.relays().collect::<Vec<_>>(), vec![&ours]);
    }

    #[test]
    fn resizing_a_relay_resends_all_of_its_shards() {
        let ours = relay("wss://ours.example");
        let mut b = Book::new(std::slice::from_ref(&ours), 10, 20);
        let active: Vec<Authorization> = (0..20).map(|_| auth(&[])).collect();
        b.reconcile(&active, Timestamp::now(), &ALL);
        b.take_updates();
        b.resize(&ours, 5);
        let updates = b.take_updates();
        assert_eq!(updates.len(), 4);
        assert!(updates.iter().all(|u| u.keys.len() == 5));
        b.resend(&ours, 2);
        assert_eq!(b.take_updates().len(), 1);
    }

    #[test]
    fn shards_spread_over_connections_by_the_relays_limit() {
        let ours = relay("wss://ours.example");
        let mut b = Book::new(std::slice::from_ref(&ours), 10, 3);
        let active: Vec<Authorization> = (0..65).map(|_| auth(&[])).collect();
        b.reconcile(&active, Timestamp::now(), &ALL);
        b.take_updates();
        assert_eq!(b.lanes(&ours), 3, "7 REQs at 3 a connection");
        assert_eq!(
            (b.lane(&ours, 2), b.lane(&ours, 3), b.lane(&ours, 6)),
            (0, 1, 2)
        );
        b.set_per_connection(&ours, 2);
        assert_eq!(b.take_updates().len(), 7, "every shard moves");
        assert_eq!(b.lanes(&ours), 4);
        assert_eq!(b.per_connection(&ours), 2);
    }

    #[test]
    fn keys_not_listened_for_are_held_but_not_asked_for_and_let_go_after_a_grace() {
        let ours = relay("wss://ours.example");
        let mut b = Book::new(std::slice::from_ref(&ours), 10, 20);
        let active: Vec<Authorization> = (0..40).map(|_| auth(&[])).collect();
        let half = |r: std::ops::Range<usize>| -> BTreeSet<PublicKey> {
            active[r].iter().map(|a| a.bunker_pubkey).collect()
        };
        let (first, second) = (half(0..20), half(20..40));
        let owns_first = |k: &PublicKey| first.contains(k);
        let before = Rules {
            allowed: &any_relay,
            listens: &owns_first,
        };
        let now = Timestamp::now();
        b.reconcile(&active, now, &before);
        assert_eq!((b.len(), b.listened()), (40, 20));
        assert_eq!(keys_on(&b, &ours), first);
        b.take_updates();

        // The ring moves: the second half is this instance's now, the first is not.
        let owns_second = |k: &PublicKey| second.contains(k);
        let after = Rules {
            allowed: &any_relay,
            listens: &owns_second,
        };
        let start = Instant::now();
        let let_go = start + std::time::Duration::from_secs(5);
        b.relisten(&after, let_go);
        assert_eq!(b.listened(), 40, "gained at once, lost still heard");
        assert!(b.leaving());
        assert!(!b.take_updates().is_empty());
        b.leave_due(start, &after);
        assert_eq!(b.listened(), 40, "not before the grace ends");
        b.leave_due(let_go, &after);
        assert_eq!(b.listened(), 20);
        assert!(!b.leaving());
        assert_eq!(keys_on(&b, &ours), second);
        // A change to a key not listened for keeps it held but not asked for.
        let mut renamed = active[0].clone();
        renamed.label = keycast_core::Label::parse("renamed").expect("label");
        b.set(renamed.id, Some(&renamed), now, &after);
        assert_eq!((b.len(), b.listened()), (40, 20));
    }
}
