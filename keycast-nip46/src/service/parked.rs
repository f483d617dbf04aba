//! Requests kept a while in case ownership moves here.
//!
//! [`Parked`]: requests another instance owned when they reached intake (parsed). They
//! are kept so that when ownership moves (that owner died, or this instance learned of a
//! ring change late) the new owner can still answer the ones nobody did; the router's
//! claim decides whether anyone already did. `standby.rs` keeps the raw frames of its
//! share in a [`Kept`] too.

use std::collections::VecDeque;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use keycast_core::nostr::{Event, PublicKey};

/// At most this many are kept; the oldest go first.
pub(crate) const CAPACITY: usize = 4096;

/// Items with the instant each was first kept, oldest first: at most [`CAPACITY`] of them
/// and `max_bytes` of their `size`, the oldest dropped to make room.
pub(crate) struct Kept<T> {
    items: Mutex<Items<T>>,
    max_bytes: usize,
    size: fn(&T) -> usize,
}

struct Items<T> {
    queue: VecDeque<(T, Instant)>,
    bytes: usize,
}

impl<T> Kept<T> {
    pub(crate) fn new(max_bytes: usize, size: fn(&T) -> usize) -> Self {
        Self {
            items: Mutex::new(Items {
                queue: VecDeque::new(),
                bytes: 0,
            }),
            max_bytes,
            size,
        }
    }

    /// Keeps `item`, kept since `at` (taking and keeping again does not make it younger);
    /// returns whether older ones were dropped to make room.
    pub(crate) fn keep(&self, item: T, at: Instant) -> bool {
        let size = (self.size)(&item);
        let mut items = self.items.lock().unwrap_or_else(PoisonError::into_inner);
        let mut dropped = false;
        while items.queue.len() >= CAPACITY || items.bytes + size > self.max_bytes {
            let Some((old, _)) = items.queue.pop_front() else {
                break;
            };
            items.bytes -= (self.size)(&old);
            dropped = true;
        }
        items.bytes += size;
        items.queue.push_back((item, at));
        dropped
    }

    /// Takes everything kept for less than `max_age`; older items are dropped.
    pub(crate) fn take(&self, max_age: Duration) -> Vec<(T, Instant)> {
        let mut items = self.items.lock().unwrap_or_else(PoisonError::into_inner);
        items.bytes = 0;
        items
            .queue
            .drain(..)
            .filter(|(_, at)| at.elapsed() < max_age)
            .collect()
    }

    pub(crate) fn clear(&self) {
        let mut items = self.items.lock().unwrap_or_else(PoisonError::into_inner);
        items.queue.clear();
        items.bytes = 0;
    }

    pub(crate) fn len(&self) -> usize {
        self.items
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .queue
            .len()
    }
}

pub(crate) struct ParkedRequest {
    pub(crate) event: Box<Event>,
    pub(crate) bunker: PublicKey,
}

/// Other instances' parsed requests, bounded in number only.
pub(crate) type Parked = Kept<ParkedRequest>;

impl Default for Parked {
    fn default() -> Self {
        Self::new(usize::MAX, |_| 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keycast_core::nostr::{EventBuilder, Keys};

    /// One signed event, relabelled: only `content` tells them apart here.
    fn request(n: u64) -> ParkedRequest {
        static TEMPLATE: std::sync::OnceLock<Event> = std::sync::OnceLock::new();
        let mut event = TEMPLATE
            .get_or_init(|| {
                EventBuilder::text_note("")
                    .sign_with_keys(&Keys::generate())
                    .expect("sign")
            })
            .clone();
        event.content = n.to_string();
        ParkedRequest {
            bunker: event.pubkey,
            event: Box::new(event),
        }
    }

    #[test]
    fn keeps_at_most_capacity_dropping_the_oldest() {
        let parked = Parked::default();
        for n in 0..CAPACITY as u64 {
            assert!(!parked.keep(request(n), Instant::now()));
        }
        assert!(parked.keep(request(CAPACITY as u64), Instant::now()));
        let taken = parked.take(Duration::from_secs(60));
        assert_eq!(taken.len(), CAPACITY);
        assert_eq!(taken[0].0.event.content, "1", "the oldest was dropped");
        assert_eq!(parked.len(), 0, "take empties it");
    }

    #[test]
    fn take_drops_requests_past_their_age() {
        let parked = Parked::default();
        let long_ago = Instant::now()
            .checked_sub(Duration::from_secs(10))
            .expect("uptime");
        parked.keep(request(0), long_ago);
        parked.keep(request(1), Instant::now());
        let taken = parked.take(Duration::from_secs(5));
        assert_eq!(taken.len(), 1);
        assert_eq!(taken[0].0.event.content, "1");
    }
}
