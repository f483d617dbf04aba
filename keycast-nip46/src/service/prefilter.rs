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
//!
//! It also hands requests from configured relays to keys this instance only stands by
//! for to [`Standby`] as raw frames (see `standby.rs`), for which the same read takes the
//! kind and the first `p` tag. A frame this read rejects (a kind that is not a number, a
//! tag that is not an array of strings) the pool's stricter parse rejects too, before any
//! signature check.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use keycast_core::nostr::PublicKey;
use serde::de::{IgnoredAny, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};

use super::limits::Keyed;
use super::standby::Standby;

/// The fields read of an event: its author, kind and first `p` tag.
#[derive(Deserialize)]
struct Request<'a> {
    #[serde(borrow)]
    pubkey: &'a str,
    kind: u16,
    tags: FirstP,
}

/// The value of the first `["p", value, ...]` tag, if any.
#[derive(Deserialize)]
#[serde(from = "Vec<PTag>")]
struct FirstP(Option<String>);

impl From<Vec<PTag>> for FirstP {
    fn from(tags: Vec<PTag>) -> Self {
        Self(tags.into_iter().find_map(|t| t.0))
    }
}

/// A tag: its value when it is a `p` tag.
struct PTag(Option<String>);

impl<'de> Deserialize<'de> for PTag {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Tag;
        impl<'de> Visitor<'de> for Tag {
            type Value = PTag;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a tag")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut tag: A) -> Result<PTag, A::Error> {
                let name: Option<String> = tag.next_element()?;
                let value = match name.as_deref() {
                    Some("p") => tag.next_element::<String>()?,
                    _ => None,
                };
                while tag.next_element::<IgnoredAny>()?.is_some() {}
                Ok(PTag(value))
            }
        }
        d.deserialize_seq(Tag)
    }
}

/// Client keys bound to some active authorization, as raw x-only bytes (no curve check
/// needed to compare them).
#[derive(Debug, Default)]
pub(crate) struct BoundClients(RwLock<HashSet<[u8; 32]>>);

impl BoundClients {
    /// Replaces the set with `clients` (a full listing's, as bytes).
    pub(crate) fn replace(&self, clients: HashSet<[u8; 32]>) {
        *self.0.write().unwrap_or_else(PoisonError::into_inner) = clients;
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

/// Drops strangers' events over their limit before the pool sees them, and keeps
/// requests for a standby raw.
pub(crate) struct PreFilter {
    bound: Arc<BoundClients>,
    strangers: Keyed<[u8; 32]>,
    dropped: AtomicU64,
    standby: Arc<Standby>,
}

impl std::fmt::Debug for PreFilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PreFilter")
            .field("dropped", &self.dropped())
            .finish_non_exhaustive()
    }
}

impl PreFilter {
    pub(crate) fn new(
        bound: Arc<BoundClients>,
        strangers: Keyed<[u8; 32]>,
        standby: Arc<Standby>,
    ) -> Self {
        Self {
            bound,
            strangers,
            dropped: AtomicU64::new(0),
            standby,
        }
    }

    /// Whether a text frame from a relay goes on to the pool. Only frames from a
    /// `configured` relay may be kept for a standby: the pool checks that what another
    /// relay sends matches what that relay was asked for.
    pub(crate) fn admit(&self, frame: &str, configured: bool) -> bool {
        let Ok((kind, _, event)) = serde_json::from_str::<(&str, IgnoredAny, Request)>(frame)
        else {
            return true;
        };
        if kind != "EVENT" {
            return true;
        }
        let mut author = [0u8; 32];
        if hex::decode_to_slice(event.pubkey, &mut author).is_err() {
            return true;
        }
        if !self.bound.contains(&author) && self.strangers.check(&author).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        // A request to a key this instance only stands by for is kept raw.
        let bunker = event.tags.0.filter(|_| configured && event.kind == 24133);
        !bunker.is_some_and(|bunker| self.standby.keep(&bunker, frame))
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
    use keycast_core::nostr::{EventBuilder, JsonUtil, Keys, Kind, Tag};
    use keycast_core::{NodeId, RequestRouter, Route, RoutingKey};

    use super::*;

    /// Another instance owns every key.
    #[derive(Debug)]
    struct Elsewhere;

    #[async_trait::async_trait]
    impl RequestRouter for Elsewhere {
        fn route(&self, _key: &RoutingKey) -> Route {
            Route::Remote(NodeId("other".into()))
        }
    }

    fn filter(bound: Arc<BoundClients>, burst: u32) -> (PreFilter, Arc<Standby>) {
        let quota =
            Quota::per_minute(NonZeroU32::MIN).allow_burst(NonZeroU32::new(burst).expect("burst"));
        let standby = Arc::new(Standby::new(Arc::new(Elsewhere), Arc::default()));
        (
            PreFilter::new(bound, Keyed::new(quota, 100), standby.clone()),
            standby,
        )
    }

    fn frame_with(keys: &Keys, kind: Kind, tags: Vec<Tag>) -> String {
        let event = EventBuilder::new(kind, "x")
            .tags(tags)
            .sign_with_keys(keys)
            .expect("sign");
        format!(r#"["EVENT","keycast-nip46",{}]"#, event.as_json())
    }

    fn frame(keys: &Keys) -> String {
        frame_with(keys, Kind::NostrConnect, Vec::new())
    }

    #[test]
    fn strangers_over_their_limit_are_dropped_and_everything_else_passes() {
        let bound = Arc::new(BoundClients::default());
        let (filter, _) = filter(bound.clone(), 2);
        let (stranger, friend) = (Keys::generate(), Keys::generate());
        bound.replace(HashSet::from([friend.public_key().to_bytes()]));
        let junk = frame(&stranger);
        assert!(
            filter.admit(&junk, true) && filter.admit(&junk, true),
            "the burst passes"
        );
        assert!(!filter.admit(&junk, true), "then the stranger is dropped");
        let good = frame(&friend);
        for _ in 0..10 {
            assert!(
                filter.admit(&good, true),
                "a bound client is never held here"
            );
        }
        for other in [
            r#"["EOSE","keycast-nip46"]"#,
            r#"["OK","ab",true,""]"#,
            r#"["NOTICE","hi"]"#,
            r#"["EVENT","s",{"pubkey":"not hex"}]"#,
            "not json",
        ] {
            assert!(filter.admit(other, true), "{other}");
        }
        assert_eq!(filter.dropped(), 1);
        // A connect handled here makes the stranger a client at once.
        bound.extend([&stranger.public_key()]);
        assert!(filter.admit(&junk, true));
    }

    #[test]
    fn requests_for_a_standby_from_configured_relays_are_kept_raw() {
        let bound = Arc::new(BoundClients::default());
        let (filter, standby) = filter(bound.clone(), 100);
        let client = Keys::generate();
        bound.replace(HashSet::from([client.public_key().to_bytes()]));
        let bunker = Keys::generate().public_key();
        let other = Keys::generate().public_key();
        let request = frame_with(
            &client,
            Kind::NostrConnect,
            vec![
                Tag::parse(["e", "quote \" and backslash \\", "x"]).expect("tag"),
                Tag::public_key(bunker),
                Tag::public_key(other),
            ],
        );
        assert!(!filter.admit(&request, true), "kept, not passed on");
        assert!(filter.admit(&request, false), "another relay's frames pass");
        // Other kinds, and requests without a `p` tag, go the normal way.
        let note = frame_with(&client, Kind::TextNote, vec![Tag::public_key(bunker)]);
        assert!(filter.admit(&note, true));
        assert!(filter.admit(&frame(&client), true));
        let kept = standby.take(std::time::Duration::from_secs(60));
        assert_eq!(kept, vec![request], "the frame as it came");
        assert_eq!(standby.kept(), 1);
        // A stranger over the limit is dropped before anything is kept.
        let stranger = Keys::generate();
        let junk = frame_with(&stranger, Kind::NostrConnect, vec![Tag::public_key(bunker)]);
        let (filter, standby) = self::filter(Arc::default(), 1);
        assert!(!filter.admit(&junk, true));
        assert!(!filter.admit(&junk, true));
        assert_eq!((filter.dropped(), standby.kept()), (1, 1));
    }

    #[test]
    fn first_p_tag_is_read_whatever_comes_before_it() {
        let read = |tags: &str| {
            serde_json::from_str::<FirstP>(tags)
                .map(|p| p.0)
                .map_err(|_| ())
        };
        assert_eq!(read(r#"[]"#), Ok(None));
        assert_eq!(read(r#"[["p"],["p","a"],["p","b"]]"#), Ok(Some("a".into())));
        assert_eq!(
            read(r#"[["e","x",{"y":1}],["p","\u0061"]]"#),
            Ok(Some("a".into()))
        );
        assert_eq!(read(r#"[[],["P","x"]]"#), Ok(None));
        assert!(read(r#"{"p":"a"}"#).is_err());
    }
}
