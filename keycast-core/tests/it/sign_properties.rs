//! Property: whatever the content and tags, the engine's event id and signature are what
//! the `nostr` crate computes and verifies, and the signed fields are kept exactly.

use keycast_core::nostr::{Kind, Tag, Tags, Timestamp};
use keycast_core::testing::fixtures::memory_engine;
use keycast_core::*;
use proptest::prelude::*;

fn engine() -> (tokio::runtime::Runtime, Custody, KeyId) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let (custody, key) = rt.block_on(memory_engine(|b| b));
    (rt, custody, key.id)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]
    #[test]
    fn signed_events_verify_with_nostr(
        content in any::<String>(),
        tags in proptest::collection::vec(proptest::collection::vec(any::<String>(), 1..4), 0..4),
        kind in any::<u16>(),
        created_at in 0u64..=u64::from(u32::MAX),
    ) {
        let (rt, custody, key) = engine();
        let tags = Tags::from_list(tags.into_iter().map(|t| Tag::parse(t).expect("non-empty")).collect());
        let template = EventTemplate {
            pubkey: None,
            created_at: Some(Timestamp::from(created_at)),
            kind: Kind::from(kind),
            tags: tags.clone(),
            content: content.clone(),
        };
        let event = rt.block_on(custody.sign_event(Caller::Owner(key), template)).expect("sign");
        prop_assert!(event.verify().is_ok(), "nostr rejects our event");
        prop_assert_eq!(event.content, content);
        prop_assert_eq!(event.tags.to_vec(), tags.to_vec());
        prop_assert_eq!(event.created_at.as_secs(), created_at);
        prop_assert_eq!(event.kind.as_u16(), kind);
    }
}
