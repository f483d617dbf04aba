//! How one relay's bunker keys are split over `REQ`s.
//!
//! Relays cap the size of a message (strfry 128 KiB by default, nostr-rs-relay 128 KiB or
//! 256 KiB), so one filter listing every bunker key stops working at a few thousand
//! authorizations. [`Shards`] keeps each relay's keys in numbered shards of at most
//! `capacity` keys, one `REQ` each. A key stays in its shard until it leaves, so adding or
//! removing one key changes one shard, and only that shard's `REQ` is sent again: the cost
//! of a change does not grow with the number of keys. New keys fill the lowest shard with
//! room, so holes left by removals are reused and the shard count stays near
//! `keys / capacity`.

use std::collections::{BTreeSet, HashMap};

use keycast_core::nostr::PublicKey;

/// Bytes of a `REQ` besides its keys: `["REQ","<id>",{"kinds":[24133],"#p":[…],"since":…}]`
/// with a subscription id of up to 32 characters.
const REQ_OVERHEAD: usize = 96;
/// One key in the `#p` list: 64 hex digits, two quotes and a comma.
const KEY_BYTES: usize = 67;

/// How many keys fit in a `REQ` of at most `frame_bytes` (at least one).
pub(crate) fn keys_per_req(frame_bytes: usize) -> usize {
    (frame_bytes.saturating_sub(REQ_OVERHEAD) / KEY_BYTES).max(1)
}

/// One relay's bunker keys, in shards of at most `capacity`.
#[derive(Debug, Default)]
pub(crate) struct Shards {
    capacity: usize,
    shards: Vec<BTreeSet<PublicKey>>,
    home: HashMap<PublicKey, usize>,
    /// Shards with room, lowest first.
    with_room: BTreeSet<usize>,
    /// Shards changed since the last [`Shards::take_dirty`].
    dirty: BTreeSet<usize>,
}

impl Shards {
    /// No keys yet; at most `capacity` (at least one) per shard.
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            ..Self::default()
        }
    }

    /// Keys per shard.
    pub(crate) fn capacity(&self) -> usize {
        self.capacity
    }

    /// How many keys are held.
    pub(crate) fn len(&self) -> usize {
        self.home.len()
    }

    /// Shards that hold a key.
    pub(crate) fn in_use(&self) -> usize {
        self.shards.iter().filter(|s| !s.is_empty()).count()
    }

    /// The shard holding `key`.
    pub(crate) fn shard_of(&self, key: &PublicKey) -> Option<usize> {
        self.home.get(key).copied()
    }

    /// The keys of shard `n` (empty when it holds none).
    pub(crate) fn keys(&self, n: usize) -> Vec<PublicKey> {
        self.shards
            .get(n)
            .map(|s| s.iter().copied().collect())
            .unwrap_or_default()
    }

    /// Adds `key` to the lowest shard with room; `false` when it is already held.
    pub(crate) fn insert(&mut self, key: PublicKey) -> bool {
        if self.home.contains_key(&key) {
            return false;
        }
        let n = match self.with_room.first() {
            Some(&n) => n,
            None => {
                self.shards.push(BTreeSet::new());
                self.with_room.insert(self.shards.len() - 1);
                self.shards.len() - 1
            }
        };
        self.shards[n].insert(key);
        if self.shards[n].len() >= self.capacity {
            self.with_room.remove(&n);
        }
        self.home.insert(key, n);
        self.dirty.insert(n);
        true
    }

    /// Removes `key`; `false` when it was not held.
    pub(crate) fn remove(&mut self, key: &PublicKey) -> bool {
        let Some(n) = self.home.remove(key) else {
            return false;
        };
        self.shards[n].remove(key);
        self.with_room.insert(n);
        self.dirty.insert(n);
        true
    }

    /// The shards changed since the last call, with their keys now (empty: the shard's
    /// `REQ` is to be closed).
    pub(crate) fn take_dirty(&mut self) -> Vec<(usize, Vec<PublicKey>)> {
        let dirty = std::mem::take(&mut self.dirty);
        dirty.into_iter().map(|n| (n, self.keys(n))).collect()
    }

    /// Whether a shard waits to be sent.
    pub(crate) fn has_dirty(&self) -> bool {
        !self.dirty.is_empty()
    }

    /// One past the highest shard that holds a key (0 when none does).
    pub(crate) fn end(&self) -> usize {
        self.shards
            .iter()
            .rposition(|s| !s.is_empty())
            .map_or(0, |n| n + 1)
    }

    /// Marks every shard changed (they move to other connections).
    pub(crate) fn mark_all_dirty(&mut self) {
        self.dirty = (0..self.shards.len()).collect();
    }

    /// Marks shard `n` changed, so the next [`Shards::take_dirty`] sends it again.
    pub(crate) fn mark_dirty(&mut self, n: usize) {
        if n < self.shards.len() {
            self.dirty.insert(n);
        }
    }

    /// Splits every key again into shards of `capacity` (after a relay refused a `REQ` as
    /// too big). Every shard that existed or exists now is dirty.
    pub(crate) fn resize(&mut self, capacity: usize) {
        let keys: Vec<PublicKey> = self.home.keys().copied().collect();
        let before = self.shards.len();
        *self = Self::new(capacity);
        let mut keys = keys;
        keys.sort_unstable();
        for key in keys {
            self.insert(key);
        }
        for n in self.shards.len()..before {
            self.shards.push(BTreeSet::new());
            self.with_room.insert(n);
        }
        self.dirty = (0..self.shards.len()).collect();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keycast_core::nostr::Keys;
    use proptest::prelude::*;

    fn keys(n: usize) -> Vec<PublicKey> {
        (0..n).map(|_| Keys::generate().public_key()).collect()
    }

    /// Every key in exactly one shard, no shard over capacity, the room index right.
    fn check(s: &Shards) {
        let mut seen = 0;
        for (n, shard) in s.shards.iter().enumerate() {
            assert!(shard.len() <= s.capacity, "shard {n} over capacity");
            assert_eq!(s.with_room.contains(&n), shard.len() < s.capacity);
            for k in shard {
                assert_eq!(s.home[k], n);
            }
            seen += shard.len();
        }
        assert_eq!(seen, s.home.len());
    }

    #[test]
    fn a_req_of_the_computed_size_fits_the_frame() {
        for frame in [4_096, 32_768, 65_536, 131_072] {
            let n = keys_per_req(frame);
            let filter = nostr_sdk::prelude::Filter::new()
                .kind(keycast_core::nostr::Kind::NostrConnect)
                .pubkeys(keys(n))
                .since(keycast_core::nostr::Timestamp::now());
            let id =
                nostr_sdk::prelude::SubscriptionId::new(format!("kc46-{}-{}", u32::MAX, u64::MAX));
            let req = nostr_sdk::prelude::JsonUtil::as_json(
                &nostr_sdk::prelude::ClientMessage::req(id, vec![filter]),
            );
            assert!(req.len() <= frame, "{} keys: {} > {frame}", n, req.len());
            assert!(
                req.len() + KEY_BYTES * 2 > frame,
                "{n} keys leave room for more"
            );
        }
        assert_eq!(keys_per_req(10), 1, "at least one key");
    }

    #[test]
    fn a_change_touches_only_the_shard_of_its_key() {
        let mut s = Shards::new(3);
        let k = keys(7);
        for key in &k {
            assert!(s.insert(*key));
        }
        assert!(!s.insert(k[0]), "held once");
        assert_eq!(s.in_use(), 3);
        assert_eq!(s.take_dirty().len(), 3);
        assert!(s.remove(&k[4]));
        assert!(!s.remove(&k[4]));
        assert_eq!(s.take_dirty(), vec![(1, s.keys(1))]);
        let fresh = keys(1)[0];
        s.insert(fresh);
        assert_eq!(s.shard_of(&fresh), Some(1), "the hole is reused");
        assert_eq!(s.take_dirty(), vec![(1, s.keys(1))]);
        for key in &k[6..] {
            s.remove(key);
        }
        assert_eq!(
            s.take_dirty(),
            vec![(2, vec![])],
            "an emptied shard is closed"
        );
        check(&s);
    }

    #[test]
    fn resizing_resplits_and_marks_old_and_new_shards() {
        let mut s = Shards::new(4);
        for key in keys(10) {
            s.insert(key);
        }
        s.take_dirty();
        s.resize(2);
        check(&s);
        assert_eq!(s.len(), 10);
        assert_eq!(s.in_use(), 5);
        assert_eq!(s.take_dirty().len(), 5);
        s.resize(8);
        check(&s);
        let dirty = s.take_dirty();
        assert_eq!(dirty.len(), 5, "the shards left empty are closed too");
        assert_eq!(dirty.iter().filter(|(_, k)| k.is_empty()).count(), 3);
    }

    proptest! {
        #[test]
        fn shards_stay_consistent(ops in prop::collection::vec((any::<bool>(), 0..40usize), 1..300), cap in 1..8usize) {
            let pool = keys(40);
            let mut s = Shards::new(cap);
            let mut model = BTreeSet::new();
            for (add, i) in ops {
                let key = pool[i];
                if add {
                    prop_assert_eq!(s.insert(key), model.insert(key));
                } else {
                    prop_assert_eq!(s.remove(&key), model.remove(&key));
                }
                check(&s);
            }
            prop_assert_eq!(s.len(), model.len());
            // Shards in use never exceed what the keys need plus the holes removals left.
            prop_assert!(s.shards.len() <= 40usize.div_ceil(cap));
        }
    }
}
