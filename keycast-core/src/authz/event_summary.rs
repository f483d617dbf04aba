//! What signing an event would do, in words a person approving it can judge: the kind by
//! name, what the tags of common kinds mean (a follow list with no `p` tags unfollows
//! everyone), and the tags themselves, shortened. The page that shows it escapes it.

use std::collections::BTreeMap;

use crate::model::request::EventTemplate;

/// Characters of signed content shown.
const SHOWN_CONTENT: usize = 280;
/// Tags shown one by one; the rest are counted.
const SHOWN_TAGS: usize = 8;
/// Characters of one tag shown.
const SHOWN_TAG: usize = 100;

/// One line for a `sign_event` request.
pub(crate) fn describe(t: &EventTemplate) -> String {
    let kind = t.kind.as_u16();
    let mut out = format!("sign {} (kind {kind})", kind_name(kind));
    let counts = tag_counts(t);
    let count = |name: &str| counts.get(name).copied().unwrap_or(0);
    let effect = match kind {
        3 if count("p") == 0 => Some(
            "REPLACES your follow list with an empty one: you would unfollow everyone".to_owned(),
        ),
        3 => Some(format!(
            "REPLACES your follow list: afterwards you follow exactly {} accounts",
            count("p")
        )),
        10000 => Some(format!(
            "REPLACES your mute list with {} entries",
            t.tags.len()
        )),
        10002 => Some(format!(
            "REPLACES your relay list with {} relays",
            count("r")
        )),
        5 => Some(format!(
            "asks relays to DELETE {} of your events",
            count("e") + count("a")
        )),
        0 => Some("REPLACES your public profile".to_owned()),
        _ => None,
    };
    if let Some(effect) = effect {
        out.push_str(": ");
        out.push_str(&effect);
    }
    out.push_str("; content: ");
    out.push_str(&shorten(&t.content, SHOWN_CONTENT));
    if t.tags.is_empty() {
        out.push_str("; no tags");
        return out;
    }
    let listed: Vec<String> = t
        .tags
        .iter()
        .take(SHOWN_TAGS)
        .map(|tag| shorten(&tag.as_slice().join(" "), SHOWN_TAG))
        .collect();
    out.push_str(&format!(
        "; {} tags: [{}]",
        t.tags.len(),
        listed.join("], [")
    ));
    if t.tags.len() > SHOWN_TAGS {
        let by_name: Vec<String> = counts.iter().map(|(n, c)| format!("{c} {n}")).collect();
        out.push_str(&format!(
            " and {} more (in all: {})",
            t.tags.len() - SHOWN_TAGS,
            by_name.join(", ")
        ));
    }
    out
}

fn tag_counts(t: &EventTemplate) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for tag in t.tags.iter() {
        let name = tag.as_slice().first().map_or("", String::as_str);
        *counts.entry(shorten(name, 16)).or_insert(0) += 1;
    }
    counts
}

fn shorten(s: &str, max: usize) -> String {
    let mut shown: String = s.chars().take(max).collect();
    if shown.len() < s.len() {
        shown.push('…');
    }
    shown
}

/// Names of kinds people meet (NIP-01, -02, -09, -18, -25, -51, -57, -65 …).
fn kind_name(kind: u16) -> &'static str {
    match kind {
        0 => "your profile",
        1 => "a note",
        3 => "your follow list",
        4 => "a direct message (NIP-04)",
        5 => "a deletion request",
        6 => "a repost",
        7 => "a reaction",
        13 => "a sealed message",
        1059 => "a gift wrap",
        1984 => "a report",
        9734 => "a zap request",
        10000 => "your mute list",
        10002 => "your relay list",
        22242 => "a relay login (NIP-42)",
        24133 => "a remote-signing message",
        27235 => "an HTTP login (NIP-98)",
        30023 => "a long-form article",
        _ => "an event",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template(json: &str) -> EventTemplate {
        EventTemplate::from_json(json).expect("template")
    }

    #[test]
    fn a_follow_list_wipe_says_so() {
        let wipe = describe(&template(r#"{"kind":3,"content":"","tags":[]}"#));
        assert!(
            wipe.contains("your follow list") && wipe.contains("unfollow everyone"),
            "{wipe}"
        );
        let two = describe(&template(
            r#"{"kind":3,"content":"","tags":[["p","aa"],["p","bb"],["t","x"]]}"#,
        ));
        assert!(
            two.contains("exactly 2 accounts") && two.contains("3 tags: [p aa], [p bb], [t x]"),
            "{two}"
        );
    }

    #[test]
    fn tags_are_listed_shortened_and_counted() {
        let tags: Vec<String> = (0..20)
            .map(|i| format!(r#"["e","{}"]"#, "f".repeat(i * 20)))
            .collect();
        let json = format!(
            r#"{{"kind":5,"content":"spam","tags":[{},["a","30023:x:y"]]}}"#,
            tags.join(",")
        );
        let d = describe(&template(&json));
        assert!(d.contains("DELETE 21 of your events"), "{d}");
        assert!(
            d.contains("21 tags") && d.contains("and 13 more (in all: 1 a, 20 e)"),
            "{d}"
        );
        assert!(d.contains('…'), "long tags are cut: {d}");
        let note = describe(&template(r#"{"kind":1,"content":"hi","tags":[]}"#));
        assert_eq!(note, "sign a note (kind 1); content: hi; no tags");
    }
}
