//! Lower-case hex for CSRF tokens and the 32-byte secrets inside codes.

/// `bytes` as lower-case hex.
pub(crate) fn encode(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Exactly 64 hex characters (either case) as 32 bytes.
pub(crate) fn decode32(s: &str) -> Option<[u8; 32]> {
    let s = s.as_bytes();
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in s.chunks_exact(2).enumerate() {
        let hi = (pair[0] as char).to_digit(16)?;
        let lo = (pair[1] as char).to_digit(16)?;
        out[i] = u8::try_from(hi * 16 + lo).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_bad_input() {
        let bytes: [u8; 32] = std::array::from_fn(|i| (i * 8) as u8);
        assert_eq!(decode32(&encode(&bytes)), Some(bytes));
        assert_eq!(decode32(&encode(&bytes).to_uppercase()), Some(bytes));
        assert_eq!(decode32("00"), None);
        assert_eq!(decode32(&"zz".repeat(32)), None);
        assert_eq!(decode32(&"é".repeat(32)), None);
    }
}
