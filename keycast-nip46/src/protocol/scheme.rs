//! Which encryption a NIP-46 message uses. Clients differ (some still send NIP-04), and a
//! reply must use the scheme of its request, so detection is per message, not per client.

/// The encryption scheme of a kind 24133 `content`. Detection lives in keycast-core,
/// beside the transport crypto that uses it; NIP-44 payloads are plain base64 and never
/// contain `?iv=`, so its presence is decisive.
pub use keycast_core::TransportScheme as Scheme;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_each_scheme() {
        for (content, want) in [
            ("aGVsbG8=?iv=AAAAAAAAAAAAAAAAAAAAAA==", Scheme::Nip04),
            ("?iv=", Scheme::Nip04),
            ("AqIoQpS1c2x0cGFsbG8=", Scheme::Nip44),
            ("", Scheme::Nip44),
            ("ünïcödé?iv", Scheme::Nip44),
        ] {
            assert_eq!(Scheme::detect(content), want, "{content}");
        }
    }
}
