//! The `uri` of `GET /connect?uri=…`, read from the raw query string.
//!
//! NIP-46 discovery tells clients to put their URI in place of `<nostrconnect>`, and not
//! all of them percent-encode it; an unencoded `nostrconnect://…?relay=…&secret=…` brings
//! its own `&` and `?`, so a normal query parser would cut it into pieces. An encoded URI
//! is recognised by its encoded scheme and decoded; anything else is the rest of the query
//! as sent.

use percent_encoding::percent_decode_str;

const ENCODED_SCHEME: &str = "nostrconnect%3a";

/// The URI text in `query`, or `None` when there is no non-empty `uri` parameter.
pub(crate) fn uri(query: Option<&str>) -> Option<String> {
    let query = query?;
    let raw = match query.strip_prefix("uri=") {
        Some(rest) => rest,
        None => query.split_once("&uri=")?.1,
    };
    let encoded = raw
        .get(..ENCODED_SCHEME.len())
        .is_some_and(|p| p.eq_ignore_ascii_case(ENCODED_SCHEME));
    let text = if encoded {
        // An encoded value cannot contain a raw `&`: one ends it.
        let value = raw.split('&').next().unwrap_or(raw);
        percent_decode_str(value).decode_utf8().ok()?.into_owned()
    } else {
        raw.to_owned()
    };
    (!text.is_empty()).then_some(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoded_uris_are_decoded_and_end_at_the_next_parameter() {
        assert_eq!(
            uri(Some(
                "uri=nostrconnect%3A%2F%2Fab%3Frelay%3Dws%253A%26secret%3Ds&x=1"
            ))
            .as_deref(),
            Some("nostrconnect://ab?relay=ws%3A&secret=s")
        );
        assert_eq!(
            uri(Some("x=1&uri=NOSTRCONNECT%3a%2F%2Fab")).as_deref(),
            Some("NOSTRCONNECT://ab")
        );
    }

    #[test]
    fn raw_uris_are_the_rest_of_the_query() {
        assert_eq!(
            uri(Some(
                "uri=nostrconnect://ab?relay=ws://r&secret=s&perms=sign_event:1"
            ))
            .as_deref(),
            Some("nostrconnect://ab?relay=ws://r&secret=s&perms=sign_event:1")
        );
    }

    #[test]
    fn missing_or_empty_uris_are_none() {
        for q in [None, Some(""), Some("uri="), Some("x=1"), Some("xuri=a")] {
            assert_eq!(uri(q), None, "{q:?}");
        }
        // Not valid percent-encoded UTF-8 once decoded.
        assert_eq!(uri(Some("uri=nostrconnect%3A%FF")), None);
    }
}
