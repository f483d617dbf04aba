//! Which encryption a NIP-46 message uses. Clients differ (some still send NIP-04), and a
//! reply must use the scheme of its request, so detection is per message, not per client.

/// The encryption scheme of a kind 24133 `content`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scheme {
    /// NIP-04: `base64(ciphertext)?iv=base64(iv)`.
    Nip04,
    /// NIP-44 v2: one base64 payload.
    Nip44,
}

impl Scheme {
    /// Detects the scheme from the content. NIP-44 payloads are plain base64 and can never
    /// contain `?iv=`, so its presence is decisive. This only picks the decryptor; the
    /// decryptor still validates the payload.
    pub fn detect(content: &str) -> Self {
        if content.contains("?iv=") {
            Scheme::Nip04
        } else {
            Scheme::Nip44
        }
    }
}

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
