//! Requests another instance owned when they arrived. They are kept a while, so that when
//! ownership moves (that owner died, or this instance learned of a ring change late) the
//! new owner can still answer the ones nobody did. The router's claim decides whether
//! anyone already did.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use keycast_core::nostr::{Event, PublicKey};

/// At most this many are kept; the oldest go first.
pub(crate) const CAPACITY: usize = 4096;

pub(crate) struct ParkedRequest {
    pub(crate) event: Box<Event>,
    pub(crate) bunker: PublicKey,
    pub(crate) at: Instant,
}

#[derive(Default)]
pub(crate) struct Parked {
    requests: Mutex<VecDeque<ParkedRequest>>,
}

impl Parked {
    /// Keeps a request; returns whether an older one was dropped to make room.
    pub(crate) fn park(&self, request: ParkedRequest) -> bool {
        let mut q = self.requests.lock().unwrap_or_else(|e| e.into_inner());
        let full = q.len() >= CAPACITY;
        if full {
            q.pop_front();
        }
        q.push_back(request);
        full
    }

    /// Takes every request younger than `max_age`; older ones are dropped.
    pub(crate) fn take(&self, max_age: Duration) -> Vec<ParkedRequest> {
        let mut q = self.requests.lock().unwrap_or_else(|e| e.into_inner());
        q.drain(..).filter(|r| r.at.elapsed() < max_age).collect()
    }

    pub(crate) fn clear(&self) {
        self.requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }

    pub(crate) fn len(&self) -> usize {
        self.requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .len()
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
            at: Instant::now(),
        }
    }

    #[test]
    fn keeps_at_most_capacity_dropping_the_oldest() {
        let parked = Parked::default();
        for n in 0..CAPACITY as u64 {
            assert!(!parked.park(request(n)));
        }
        assert!(parked.park(request(CAPACITY as u64)));
        let taken = parked.take(Duration::from_secs(60));
        assert_eq!(taken.len(), CAPACITY);
        assert_eq!(taken[0].event.content, "1", "the oldest was dropped");
        assert_eq!(parked.len(), 0, "take empties it");
    }

    #[test]
    fn take_drops_requests_past_their_age() {
        let parked = Parked::default();
        let mut old = request(0);
        old.at = Instant::now()
            .checked_sub(Duration::from_secs(10))
            .expect("uptime");
        parked.park(old);
        parked.park(request(1));
        let taken = parked.take(Duration::from_secs(5));
        assert_eq!(taken.len(), 1);
        assert_eq!(taken[0].event.content, "1");
    }
}
