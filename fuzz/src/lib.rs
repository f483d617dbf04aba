//! Input decoding shared by the fuzz targets.

use std::borrow::Cow;

/// First byte of an amplified input. It never occurs in UTF-8, so plain text never starts
/// with it (after lossy decoding it would read as U+FFFD anyway).
pub const AMPLIFY: u8 = 0xF5;

/// Largest amplified text: beyond the 512 KiB request limit, with room for 2 MiB of content.
pub const MAX_AMPLIFIED: usize = 2 * 1024 * 1024 + 64 * 1024;

/// The text a target works on.
///
/// Plain input is read as UTF-8 with invalid sequences replaced by U+FFFD. An input of the
/// form `0xF5 lo hi prefix [0xF5 chunk [0xF5 suffix]]` is amplified to
/// `prefix + chunk × (8 · u16(lo, hi)) + suffix` (capped at [`MAX_AMPLIFIED`] bytes), then
/// read the same way; with a single part, that part is the chunk. libFuzzer rarely grows
/// inputs past a few KiB, so this is how small inputs reach oversized content, huge ids and
/// 100 000-deep nesting.
pub fn text(data: &[u8]) -> Cow<'_, str> {
    match bytes(data) {
        Cow::Borrowed(b) => String::from_utf8_lossy(b),
        Cow::Owned(v) => Cow::Owned(String::from_utf8_lossy(&v).into_owned()),
    }
}

/// The bytes a target works on: [`text`] without the UTF-8 decoding, for targets that take
/// bytes (and split them at `0xFF`, which amplification keeps).
pub fn bytes(data: &[u8]) -> Cow<'_, [u8]> {
    let [AMPLIFY, lo, hi, rest @ ..] = data else {
        return Cow::Borrowed(data);
    };
    let times = usize::from(u16::from_le_bytes([*lo, *hi])) * 8;
    let parts: Vec<&[u8]> = rest.splitn(3, |b| *b == AMPLIFY).collect();
    let (prefix, chunk, suffix): (&[u8], &[u8], &[u8]) = match parts.as_slice() {
        [chunk] => (&[], chunk, &[]),
        [prefix, chunk] => (prefix, chunk, &[]),
        [prefix, chunk, suffix, ..] => (prefix, chunk, suffix),
        [] => (&[], &[], &[]),
    };
    let room = MAX_AMPLIFIED.saturating_sub(prefix.len() + suffix.len());
    let repeats = if chunk.is_empty() {
        0
    } else {
        times.min(room / chunk.len())
    };
    let mut out = Vec::with_capacity(prefix.len() + chunk.len() * repeats + suffix.len());
    out.extend_from_slice(prefix);
    for _ in 0..repeats {
        out.extend_from_slice(chunk);
    }
    out.extend_from_slice(suffix);
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_and_amplified_inputs() {
        assert_eq!(text(b"{\"id\":\"\xff\"}"), "{\"id\":\"\u{FFFD}\"}");
        assert_eq!(
            text(&[AMPLIFY, 1, 0, b'a', AMPLIFY, b'b', AMPLIFY, b'c']),
            "abbbbbbbbc"
        );
        assert_eq!(text(&[AMPLIFY, 2, 0, b'[']), "[".repeat(16));
        assert_eq!(text(&[AMPLIFY, 1, 0, b'a', AMPLIFY]), "a");
        // 524 280 repeats of a 9-byte chunk would be 4.7 MB: capped.
        let chunk = "中中中".as_bytes();
        let input = [&[AMPLIFY, 0xff, 0xff, b'x', AMPLIFY][..], chunk].concat();
        let huge = text(&input);
        assert!(huge.len() <= MAX_AMPLIFIED && huge.len() > MAX_AMPLIFIED - chunk.len());
        assert!(huge.starts_with("x中中"));
    }
}
