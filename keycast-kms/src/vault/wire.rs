//! The transit API's JSON bodies and ciphertext format. Pure functions, no I/O.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use keycast_core::Secret32;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

/// Transit key types that authenticate `associated_data`. Other types (RSA, for one)
/// either refuse it or, on some Vault versions, ignore it, which would silently drop
/// the binding of each DEK to its row.
pub const AEAD_KEY_TYPES: [&str; 4] = [
    "aes128-gcm96",
    "aes256-gcm96",
    "chacha20-poly1305",
    "xchacha20-poly1305",
];

/// The headers sent with every request. The token value is marked sensitive so that
/// HTTP-layer logging redacts it.
pub fn headers(token: &str, namespace: Option<&str>) -> Result<HeaderMap, String> {
    let mut headers = HeaderMap::new();
    let mut value =
        HeaderValue::from_str(token).map_err(|_| "token is not a valid header value".to_owned())?;
    value.set_sensitive(true);
    headers.insert(HeaderName::from_static("x-vault-token"), value);
    if let Some(ns) = namespace {
        let value = HeaderValue::from_str(ns)
            .map_err(|_| "namespace is not a valid header value".to_owned())?;
        headers.insert(HeaderName::from_static("x-vault-namespace"), value);
    }
    // Vault Agent and OpenBao Proxy refuse requests without it (an SSRF guard); servers
    // ignore it.
    headers.insert(
        HeaderName::from_static("x-vault-request"),
        HeaderValue::from_static("true"),
    );
    Ok(headers)
}

#[derive(Serialize)]
struct EncryptRequest<'a> {
    plaintext: &'a str,
    associated_data: &'a str,
}

#[derive(Serialize)]
struct DecryptRequest<'a> {
    ciphertext: &'a str,
    associated_data: &'a str,
}

/// Every transit reply puts its payload under `data`.
#[derive(Deserialize)]
struct Reply<T> {
    data: T,
}

#[derive(Deserialize)]
struct EncryptData {
    ciphertext: String,
}

/// Borrowed from the reply buffer, which is zeroized, so the base64 DEK is never copied
/// into an unwiped `String`. Base64 needs no JSON escapes, so borrowing always works.
#[derive(Deserialize)]
struct DecryptData<'a> {
    #[serde(borrow)]
    plaintext: &'a str,
}

/// What `GET {mount}/keys/{key}` says about the key.
#[derive(Deserialize)]
pub struct KeyInfo {
    latest_version: u32,
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    derived: bool,
}

impl KeyInfo {
    /// The version new wraps use, once the key is known to suit keycast.
    pub fn usable_version(&self) -> Result<u32, String> {
        if !AEAD_KEY_TYPES.contains(&self.kind.as_str()) {
            return Err(format!(
                "key type {:?} does not authenticate associated data; use one of {}",
                self.kind,
                AEAD_KEY_TYPES.join(", ")
            ));
        }
        if self.derived {
            return Err("derived keys need a per-call context, which keycast does not send".into());
        }
        if self.latest_version == 0 {
            return Err("the key reports no versions".into());
        }
        Ok(self.latest_version)
    }
}

/// The encrypt request. It holds the base64 DEK, so it lives in a zeroized buffer sized
/// up front (growing would leave unwiped copies behind).
pub fn encrypt_body(dek: &Secret32, aad: &[u8]) -> Result<Zeroizing<Vec<u8>>, String> {
    let plaintext = Zeroizing::new(B64.encode(dek.as_slice()));
    let associated_data = B64.encode(aad);
    let mut body = Zeroizing::new(Vec::with_capacity(
        64 + plaintext.len() + associated_data.len(),
    ));
    let request = EncryptRequest {
        plaintext: &plaintext,
        associated_data: &associated_data,
    };
    serde_json::to_writer(&mut *body, &request)
        .map_err(|e| format!("cannot encode request: {e}"))?;
    Ok(body)
}

/// The decrypt request (no secrets in it).
pub fn decrypt_body(ciphertext: &str, aad: &[u8]) -> Result<Vec<u8>, String> {
    let request = DecryptRequest {
        ciphertext,
        associated_data: &B64.encode(aad),
    };
    serde_json::to_vec(&request).map_err(|e| format!("cannot encode request: {e}"))
}

/// The `vault:vN:…` ciphertext of an encrypt reply.
pub fn ciphertext(reply: &[u8]) -> Result<String, String> {
    let reply: Reply<EncryptData> = parse(reply)?;
    Ok(reply.data.ciphertext)
}

/// The DEK of a decrypt reply; exactly 32 bytes or an error.
pub fn plaintext(reply: &[u8]) -> Result<Secret32, String> {
    let reply: Reply<DecryptData<'_>> = parse(reply)?;
    let bytes = Zeroizing::new(
        B64.decode(reply.data.plaintext)
            .map_err(|_| "the reply's plaintext is not base64".to_owned())?,
    );
    let mut dek = Secret32::new([0; 32]);
    if bytes.len() != dek.len() {
        return Err(format!(
            "the unwrapped DEK is {} bytes, not 32",
            bytes.len()
        ));
    }
    dek.copy_from_slice(&bytes);
    Ok(dek)
}

/// The key description of a `keys/{key}` reply.
pub fn key_info(reply: &[u8]) -> Result<KeyInfo, String> {
    parse::<Reply<KeyInfo>>(reply).map(|r| r.data)
}

/// Parses a reply. The error names the position, never the content: a decrypt reply holds
/// the DEK, and serde messages can quote values.
fn parse<'a, T: Deserialize<'a>>(reply: &'a [u8]) -> Result<T, String> {
    serde_json::from_slice(reply).map_err(|e| {
        format!(
            "malformed reply ({:?} error at line {} column {})",
            e.classify(),
            e.line(),
            e.column()
        )
    })
}

/// The key version of a transit ciphertext `vault:v{N}:{base64}`, after checking its shape
/// (N a positive decimal, the rest canonical non-empty base64), or `None`.
///
/// The check is local so a damaged blob fails without a provider call and without relying
/// on the server's base64 leniency.
pub fn ciphertext_version(ciphertext: &str) -> Option<u32> {
    let rest = ciphertext.strip_prefix("vault:v")?;
    let (digits, body) = rest.split_once(':')?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) || digits.starts_with('0') {
        return None;
    }
    let version: u32 = digits.parse().ok()?;
    if body.is_empty() || B64.decode(body).is_err() {
        return None;
    }
    Some(version)
}

/// A short description of an error reply: Vault's `errors` list when present, otherwise
/// the start of the body. Error replies never hold key material.
pub fn error_detail(body: &[u8]) -> String {
    #[derive(Deserialize)]
    struct Errors {
        errors: Vec<String>,
    }
    match serde_json::from_slice::<Errors>(body) {
        Ok(e) if !e.errors.is_empty() => e.errors.join("; "),
        Ok(_) => "no error message".into(),
        Err(_) => String::from_utf8_lossy(body).chars().take(200).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ciphertext_versions_are_parsed_strictly() {
        assert_eq!(ciphertext_version("vault:v1:AAAA"), Some(1));
        assert_eq!(ciphertext_version("vault:v12:AAAA"), Some(12));
        for bad in [
            "",
            "vault:v1:",
            "vault:v:AAAA",
            "vault:v0:AAAA",
            "vault:v01:AAAA",
            "vault:v-1:AAAA",
            "vault:v1AAAA",
            "wault:v1:AAAA",
            "vault:v1:AA!A",
            "vault:v1:AAA",
            "vault:v99999999999:AAAA",
        ] {
            assert_eq!(ciphertext_version(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn encrypt_body_carries_base64_dek_and_aad() {
        let dek = Secret32::new([7; 32]);
        let body = encrypt_body(&dek, b"aad").expect("body");
        let v: serde_json::Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(v["plaintext"], B64.encode([7; 32]));
        assert_eq!(v["associated_data"], "YWFk");
        let v: serde_json::Value =
            serde_json::from_slice(&decrypt_body("vault:v1:AAAA", b"").expect("body"))
                .expect("json");
        assert_eq!(v["ciphertext"], "vault:v1:AAAA");
        assert_eq!(v["associated_data"], "");
    }

    #[test]
    fn decrypt_replies_must_hold_exactly_32_bytes() {
        let reply = |b64: &str| format!(r#"{{"data":{{"plaintext":"{b64}"}}}}"#);
        let dek = plaintext(reply(&B64.encode([9; 32])).as_bytes()).expect("dek");
        assert_eq!(*dek, [9; 32]);
        let e = plaintext(reply(&B64.encode([9; 16])).as_bytes())
            .err()
            .unwrap_or_default();
        assert!(e.contains("16 bytes"), "{e}");
        assert!(plaintext(reply("***").as_bytes()).is_err());
        let e = plaintext(br#"{"data":{"plaintext":12345}}"#)
            .err()
            .unwrap_or_default();
        assert!(e.contains("malformed") && !e.contains("12345"), "{e}");
    }

    #[test]
    fn key_info_accepts_only_aead_non_derived_keys() {
        let info = |kind: &str, derived: bool, v: u32| KeyInfo {
            latest_version: v,
            kind: kind.into(),
            derived,
        };
        assert_eq!(info("aes256-gcm96", false, 3).usable_version(), Ok(3));
        assert!(info("rsa-2048", false, 1).usable_version().is_err());
        assert!(info("aes256-gcm96", true, 1).usable_version().is_err());
        assert!(info("aes256-gcm96", false, 0).usable_version().is_err());
        let parsed =
            key_info(br#"{"data":{"latest_version":2,"type":"chacha20-poly1305","keys":{}}}"#)
                .expect("info");
        assert_eq!(parsed.usable_version(), Ok(2));
    }

    #[test]
    fn error_details_and_headers() {
        assert_eq!(
            error_detail(br#"{"errors":["permission denied"]}"#),
            "permission denied"
        );
        assert_eq!(error_detail(b"bad gateway"), "bad gateway");
        let h = headers("s.tok", Some("ns1")).expect("headers");
        assert!(h["x-vault-token"].is_sensitive());
        assert_eq!(h["x-vault-namespace"], "ns1");
        assert!(!format!("{h:?}").contains("s.tok"));
    }
}
