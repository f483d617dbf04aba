//! Requests to keys this instance only stands by for, kept as they came off the socket.
//!
//! In a cluster each bunker key is heard by its owner and by a standby (the member that
//! owns it once the owner leaves), so requests sent while an owner is dead are still
//! answered. The standby needs those requests only if ownership moves to it, which is
//! rare, yet the relay pool would parse, verify (one Schnorr verification) and de-duplicate
//! each of them first: half of a three-instance cluster's intake work. So the arrival
//! filter (`prefilter.rs`) hands a request from a configured relay whose `#p` key another
//! instance owns to [`Standby::keep`] as the raw frame, and nothing else is spent on it.
//! When the ring changes, [`Standby::take`] gives the frames back; the caller parses and
//! verifies them off the runtime and passes them through intake like any other request
//! (owner's claim decides whether somebody already answered).
//!
//! Only what the normal path would also have kept is kept: the key owned elsewhere and
//! not pinned here, routing trusted (the router has an epoch). While it is not (Redis
//! failed or a claim timed out lately) intake drops such requests instead of parking them,
//! and so does this filter, on arrival. Frames over [`MAX_FRAME`] bytes go the normal way;
//! the kept frames are bounded in number and bytes, the oldest dropped first.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use keycast_core::nostr::{Event, JsonUtil, PublicKey};
use keycast_core::{RequestRouter, Route, RoutingKey};
use nostr_sdk::prelude::RelayMessage;

use super::parked::Kept;
use super::pins::Pins;

/// Bigger frames are not kept raw (the normal path parks them parsed).
pub(crate) const MAX_FRAME: usize = 64 * 1024;
/// At most this many bytes of frames are kept.
const MAX_BYTES: usize = 8 * 1024 * 1024;

/// The raw standby park; see the module docs.
pub(crate) struct Standby {
    router: Arc<dyn RequestRouter>,
    pins: Arc<Pins>,
    frames: Kept<String>,
    kept: AtomicU64,
    dropped: AtomicU64,
}

impl std::fmt::Debug for Standby {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Standby")
            .field("len", &self.len())
            .field("kept", &self.kept())
            .finish_non_exhaustive()
    }
}

impl Standby {
    pub(crate) fn new(router: Arc<dyn RequestRouter>, pins: Arc<Pins>) -> Self {
        Self {
            router,
            pins,
            frames: Kept::new(MAX_BYTES, String::len),
            kept: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
        }
    }

    /// Takes `frame`, a kind-24133 request whose first `p` tag is `bunker` (hex), if
    /// another instance owns that key and it is not pinned here: kept while routing is
    /// trusted, else dropped (as intake would). Returns whether it took it (the frame then
    /// goes no further).
    pub(crate) fn keep(&self, bunker: &str, frame: &str) -> bool {
        if frame.len() > MAX_FRAME {
            return false;
        }
        let Ok(key) = PublicKey::from_hex(bunker) else {
            return false;
        };
        if !matches!(self.router.route(&RoutingKey(key)), Route::Remote(_))
            || self.pins.contains(&key)
        {
            return false;
        }
        if self.router.epoch().is_none() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return true;
        }
        self.frames.keep(frame.to_owned(), Instant::now());
        self.kept.fetch_add(1, Ordering::Relaxed);
        true
    }

    /// Takes every frame kept for less than `max_age`; older ones are dropped.
    pub(crate) fn take(&self, max_age: Duration) -> Vec<String> {
        let taken = self.frames.take(max_age);
        taken.into_iter().map(|(frame, _)| frame).collect()
    }

    pub(crate) fn clear(&self) {
        self.frames.clear();
    }

    /// Frames kept now.
    pub(crate) fn len(&self) -> usize {
        self.frames.len()
    }

    /// Frames kept so far.
    pub(crate) fn kept(&self) -> u64 {
        self.kept.load(Ordering::Relaxed)
    }

    /// Frames dropped so far (another instance's, while routing was not trusted).
    pub(crate) fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// The event of a kept `frame`, if it parses and its id and signature hold: the checks
/// the relay pool makes on what it delivers. CPU-bound (one Schnorr verification).
pub(crate) fn verified_request(frame: &str) -> Option<Box<Event>> {
    match RelayMessage::from_json(frame).ok()? {
        RelayMessage::Event { event, .. } => {
            let event = event.into_owned();
            event.verify().is_ok().then(|| Box::new(event))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicBool;

    use keycast_core::nostr::Keys;
    use keycast_core::NodeId;

    use super::super::parked::CAPACITY;
    use super::*;

    /// Owns keys whose first byte is even; routing trusted unless `troubled`.
    #[derive(Debug, Default)]
    struct EvenRouter {
        troubled: AtomicBool,
    }

    #[async_trait::async_trait]
    impl RequestRouter for EvenRouter {
        fn route(&self, key: &RoutingKey) -> Route {
            if key.0.to_bytes()[0].is_multiple_of(2) {
                Route::Local
            } else {
                Route::Remote(NodeId("other".into()))
            }
        }

        fn epoch(&self) -> Option<u64> {
            (!self.troubled.load(Ordering::Relaxed)).then_some(1)
        }
    }

    fn key(owned: bool) -> PublicKey {
        loop {
            let k = Keys::generate().public_key();
            if k.to_bytes()[0].is_multiple_of(2) == owned {
                return k;
            }
        }
    }

    fn standby() -> (Standby, Arc<EvenRouter>, Arc<Pins>) {
        let router = Arc::new(EvenRouter::default());
        let pins = Arc::new(Pins::default());
        (Standby::new(router.clone(), pins.clone()), router, pins)
    }

    #[test]
    fn keeps_only_what_another_instance_owns_while_routing_is_trusted() {
        let (standby, router, pins) = standby();
        let (mine, theirs) = (key(true), key(false));
        assert!(
            !standby.keep(&mine.to_hex(), "a"),
            "owned here: normal path"
        );
        assert!(!standby.keep("not hex", "b"));
        assert!(standby.keep(&theirs.to_hex(), "c"));
        router.troubled.store(true, Ordering::Relaxed);
        assert!(
            standby.keep(&theirs.to_hex(), "d"),
            "untrusted routing: taken"
        );
        assert_eq!(standby.dropped(), 1, "and dropped, as intake would");
        assert!(
            !standby.keep(&mine.to_hex(), "d"),
            "owned here: normal path"
        );
        router.troubled.store(false, Ordering::Relaxed);
        pins.pin(
            theirs,
            keycast_core::AuthorizationId::random(),
            Instant::now() + Duration::from_secs(60),
        );
        assert!(!standby.keep(&theirs.to_hex(), "e"), "pinned here");
        let big = "x".repeat(MAX_FRAME + 1);
        assert!(
            !standby.keep(&key(false).to_hex(), &big),
            "too big to keep raw"
        );
        assert_eq!(standby.kept(), 1);
        assert_eq!(standby.take(Duration::from_secs(60)), vec!["c".to_owned()]);
        assert_eq!(standby.len(), 0, "take empties it");
    }

    #[test]
    fn is_bounded_in_count_and_bytes_dropping_the_oldest() {
        let (standby, _, _) = standby();
        let theirs = key(false).to_hex();
        for n in 0..=CAPACITY {
            assert!(standby.keep(&theirs, &n.to_string()));
        }
        let taken = standby.take(Duration::from_secs(60));
        assert_eq!(taken.len(), CAPACITY);
        assert_eq!(taken[0], "1", "the oldest went first");
        let frame = "y".repeat(MAX_FRAME);
        for _ in 0..(MAX_BYTES / MAX_FRAME + 3) {
            assert!(standby.keep(&theirs, &frame));
        }
        assert_eq!(
            standby.len(),
            MAX_BYTES / MAX_FRAME,
            "the byte budget holds"
        );
        standby.clear();
        assert_eq!(standby.len(), 0);
    }

    #[test]
    fn a_kept_frame_becomes_its_event_only_if_the_signature_holds() {
        let keys = Keys::generate();
        let event =
            keycast_core::nostr::EventBuilder::new(keycast_core::nostr::Kind::NostrConnect, "x")
                .sign_with_keys(&keys)
                .expect("sign");
        let frame = format!(r#"["EVENT","s",{}]"#, event.as_json());
        assert_eq!(verified_request(&frame).as_deref(), Some(&event));
        let forged = frame.replace(r#""content":"x""#, r#""content":"y""#);
        assert_ne!(forged, frame);
        assert!(
            verified_request(&forged).is_none(),
            "content changed after signing"
        );
        let mut resigned: serde_json::Value = serde_json::from_str(&event.as_json()).expect("json");
        resigned["sig"] = serde_json::Value::String("00".repeat(64));
        let frame = format!(r#"["EVENT","s",{resigned}]"#);
        assert!(verified_request(&frame).is_none(), "bad signature");
        assert!(verified_request(r#"["EOSE","s"]"#).is_none());
        assert!(verified_request("not json").is_none());
    }

    #[test]
    fn take_drops_frames_past_their_age() {
        let (standby, _, _) = standby();
        let long_ago = Instant::now()
            .checked_sub(Duration::from_secs(10))
            .expect("uptime");
        standby.frames.keep("old".into(), long_ago);
        assert!(standby.keep(&key(false).to_hex(), "new"));
        assert_eq!(standby.take(Duration::from_secs(5)), vec!["new".to_owned()]);
    }
}
