//! Input limits checked before a request touches a key, a cache or the authorizer.

use crate::custody::config::CustodyConfig;
use crate::custody::ops::{NIP44_MAX_B64, NIP44_MAX_PLAINTEXT};
use crate::error::{Error, Result};
use crate::model::request::Request;

/// Refuses oversized or structurally impossible inputs with a typed error.
pub(crate) fn check_limits(cfg: &CustodyConfig, req: &Request) -> Result<()> {
    match req {
        Request::GetPublicKey => Ok(()),
        Request::SignEvent(t) => {
            if t.content.len() > cfg.max_content_bytes {
                return Err(Error::invalid(
                    "content",
                    format!("larger than {} bytes", cfg.max_content_bytes),
                ));
            }
            if t.tags.len() > cfg.max_tags {
                return Err(Error::invalid(
                    "event tags",
                    format!("more than {} tags", cfg.max_tags),
                ));
            }
            Ok(())
        }
        Request::Nip44Encrypt { plaintext, .. } => {
            if plaintext.is_empty() || plaintext.len() > NIP44_MAX_PLAINTEXT {
                return Err(Error::invalid(
                    "plaintext",
                    "NIP-44 encryption takes 1 to 65408 bytes",
                ));
            }
            Ok(())
        }
        Request::Nip44Decrypt { ciphertext, .. } => {
            if ciphertext.is_empty() || ciphertext.len() > NIP44_MAX_B64 {
                return Err(Error::InvalidCiphertext(
                    "payload length out of range".into(),
                ));
            }
            Ok(())
        }
        Request::Nip04Encrypt { plaintext, .. } => {
            if plaintext.len() > cfg.max_content_bytes {
                return Err(Error::invalid(
                    "plaintext",
                    format!("larger than {} bytes", cfg.max_content_bytes),
                ));
            }
            Ok(())
        }
        Request::Nip04Decrypt { ciphertext, .. } => {
            if ciphertext.len() > cfg.max_content_bytes * 4 / 3 + 64 {
                return Err(Error::InvalidCiphertext("payload too large".into()));
            }
            if !ciphertext.contains("?iv=") {
                return Err(Error::InvalidCiphertext(
                    "NIP-04 payload has no ?iv=".into(),
                ));
            }
            Ok(())
        }
    }
}
