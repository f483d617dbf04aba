//! Cloud KMS REST v1 wire format: request bodies with CRC32C checksums, and the integrity
//! checks Google asks clients to run on every answer.
//!
//! Bytes travel as standard base64; int64 checksums travel as decimal strings (proto3 JSON).
//! A failed integrity check is transient: Google's guidance is to discard the answer and
//! retry a limited number of times.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use keycast_core::{Error, Secret32};
use serde::de::{DeserializeOwned, Error as _};
use serde::{Deserialize, Deserializer, Serialize};
use zeroize::Zeroizing;

use crate::remote::{Failure, Remote};

/// Body of `POST v1/{name}:encrypt`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct EncryptRequest<'a> {
    plaintext: &'a str,
    plaintext_crc32c: String,
    #[serde(flatten)]
    aad: Option<Aad>,
}

/// Body of `POST v1/{name}:decrypt`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct DecryptRequest {
    ciphertext: String,
    ciphertext_crc32c: String,
    #[serde(flatten)]
    aad: Option<Aad>,
}

/// Additional authenticated data and its checksum. Left out when empty, because the API
/// treats absent and empty AAD alike and then has nothing to verify.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Aad {
    additional_authenticated_data: String,
    additional_authenticated_data_crc32c: String,
}

impl Aad {
    fn of(aad: &[u8]) -> Option<Self> {
        (!aad.is_empty()).then(|| Self {
            additional_authenticated_data: STANDARD.encode(aad),
            additional_authenticated_data_crc32c: crc32c::crc32c(aad).to_string(),
        })
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct EncryptResponse {
    #[serde(default)]
    name: String,
    #[serde(default)]
    ciphertext: String,
    #[serde(default, deserialize_with = "int64")]
    ciphertext_crc32c: Option<u64>,
    #[serde(default)]
    verified_plaintext_crc32c: bool,
    #[serde(default)]
    verified_additional_authenticated_data_crc32c: bool,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DecryptResponse {
    #[serde(default, deserialize_with = "secret_string")]
    plaintext: Zeroizing<String>,
    #[serde(default, deserialize_with = "int64")]
    plaintext_crc32c: Option<u64>,
}

/// The JSON body of an encrypt call for `dek` bound to `aad`.
pub(crate) fn encrypt_body(dek: &Secret32, aad: &[u8]) -> Result<Zeroizing<Vec<u8>>, Failure> {
    let plaintext = Zeroizing::new(STANDARD.encode(dek.as_ref()));
    let request = EncryptRequest {
        plaintext: &plaintext,
        plaintext_crc32c: crc32c::crc32c(dek.as_ref()).to_string(),
        aad: Aad::of(aad),
    };
    to_json(&request)
}

/// The JSON body of a decrypt call.
pub(crate) fn decrypt_body(ciphertext: &[u8], aad: &[u8]) -> Result<Zeroizing<Vec<u8>>, Failure> {
    let request = DecryptRequest {
        ciphertext: STANDARD.encode(ciphertext),
        ciphertext_crc32c: crc32c::crc32c(ciphertext).to_string(),
        aad: Aad::of(aad),
    };
    to_json(&request)
}

/// Checks an encrypt answer for `key_name`; returns the ciphertext and the key version used.
pub(crate) fn check_encrypt(
    remote: &Remote,
    key_name: &str,
    body: &[u8],
    sent_aad: bool,
) -> Result<(Vec<u8>, u32), Failure> {
    let answer: EncryptResponse = parse_json(body, "encrypt answer")?;
    if !answer.verified_plaintext_crc32c {
        return Err(integrity("Cloud KMS did not verify the plaintext checksum"));
    }
    if sent_aad && !answer.verified_additional_authenticated_data_crc32c {
        return Err(integrity("Cloud KMS did not verify the AAD checksum"));
    }
    let ciphertext = STANDARD
        .decode(&answer.ciphertext)
        .map_err(|_| integrity("ciphertext is not base64"))?;
    if ciphertext.is_empty() {
        return Err(integrity("empty ciphertext"));
    }
    check_crc(&ciphertext, answer.ciphertext_crc32c, "ciphertext")?;
    let version = version_of(key_name, &answer.name).ok_or_else(|| {
        // Google advises checking `name`: a foreign key here means a routing or
        // configuration fault, and retrying would not fix it.
        remote.refused(
            "wrap",
            format!("answer names key version {:?}", answer.name),
        )
    })?;
    Ok((ciphertext, version))
}

/// Checks a decrypt answer and returns the 32-byte DEK.
pub(crate) fn check_decrypt(remote: &Remote, body: &[u8]) -> Result<Secret32, Failure> {
    let answer: DecryptResponse = parse_json(body, "decrypt answer")?;
    let plaintext = STANDARD
        .decode(answer.plaintext.as_bytes())
        .map(Zeroizing::new)
        .map_err(|_| integrity("plaintext is not base64"))?;
    check_crc(&plaintext, answer.plaintext_crc32c, "plaintext")?;
    if plaintext.len() != 32 {
        return Err(Failure::Permanent(Error::Envelope(format!(
            "{} key {}: unwrapped DEK is {} bytes, not 32",
            remote.backend,
            remote.key,
            plaintext.len()
        ))));
    }
    let mut dek = Secret32::new([0u8; 32]);
    dek.copy_from_slice(&plaintext);
    Ok(dek)
}

/// The version number in `{key_name}/cryptoKeyVersions/{n}`.
fn version_of(key_name: &str, version_name: &str) -> Option<u32> {
    version_name
        .strip_prefix(key_name)?
        .strip_prefix("/cryptoKeyVersions/")?
        .parse()
        .ok()
}

fn check_crc(data: &[u8], claimed: Option<u64>, what: &str) -> Result<(), Failure> {
    match claimed {
        Some(crc) if crc == u64::from(crc32c::crc32c(data)) => Ok(()),
        Some(_) => Err(integrity(&format!("{what} checksum mismatch"))),
        None => Err(integrity(&format!("answer has no {what} checksum"))),
    }
}

fn integrity(what: &str) -> Failure {
    Failure::Transient(format!("integrity check failed: {what}"))
}

/// Parses a JSON answer. A malformed one is treated like a corrupted one (transient), and
/// the message gives only the position: serde_json can quote values, which may be secret.
pub(crate) fn parse_json<T: DeserializeOwned>(body: &[u8], what: &str) -> Result<T, Failure> {
    serde_json::from_slice(body).map_err(|e| {
        Failure::Transient(format!(
            "{what} is malformed ({:?} error at line {} column {})",
            e.classify(),
            e.line(),
            e.column()
        ))
    })
}

fn to_json<T: Serialize>(value: &T) -> Result<Zeroizing<Vec<u8>>, Failure> {
    serde_json::to_vec(value)
        .map(Zeroizing::new)
        .map_err(|e| Failure::Permanent(Error::Internal(format!("cannot encode request: {e}"))))
}

/// A short description of an error answer: Google's `error.status: error.message`, the OAuth
/// `error: error_description`, or the raw text. Error answers carry no key material.
pub(crate) fn error_summary(body: &[u8]) -> String {
    let text = || String::from_utf8_lossy(body).trim().to_string();
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(body) else {
        return text();
    };
    let field =
        |v: &serde_json::Value, k: &str| v.get(k).and_then(|x| x.as_str()).map(str::to_owned);
    match value.get("error") {
        Some(serde_json::Value::String(code)) => match field(&value, "error_description") {
            Some(description) => format!("{code}: {description}"),
            None => code.clone(),
        },
        Some(error) => match (field(error, "status"), field(error, "message")) {
            (Some(status), Some(message)) => format!("{status}: {message}"),
            (None, Some(message)) => message,
            _ => text(),
        },
        None => text(),
    }
}

/// An int64 field: a decimal string in proto3 JSON, though a bare number is accepted too.
fn int64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Int64 {
        Text(String),
        Number(u64),
    }
    match Option::<Int64>::deserialize(d)? {
        None => Ok(None),
        Some(Int64::Number(n)) => Ok(Some(n)),
        Some(Int64::Text(s)) => s.parse().map(Some).map_err(D::Error::custom),
    }
}

fn secret_string<'de, D: Deserializer<'de>>(d: D) -> Result<Zeroizing<String>, D::Error> {
    String::deserialize(d).map(Zeroizing::new)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn remote() -> Remote {
        Remote::new("gcp", "projects/p/locations/l/keyRings/r/cryptoKeys/k")
    }

    fn encrypt_answer(ciphertext: &[u8], crc: u32, verified: bool) -> Vec<u8> {
        serde_json::json!({
            "name": "projects/p/locations/l/keyRings/r/cryptoKeys/k/cryptoKeyVersions/7",
            "ciphertext": STANDARD.encode(ciphertext),
            "ciphertextCrc32c": crc.to_string(),
            "verifiedPlaintextCrc32c": verified,
            "verifiedAdditionalAuthenticatedDataCrc32c": verified,
        })
        .to_string()
        .into_bytes()
    }

    #[test]
    fn request_bodies_carry_checksums_as_decimal_strings() {
        let dek = Secret32::new([7u8; 32]);
        let body = encrypt_body(&dek, b"aad").unwrap_or_default();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        assert_eq!(v["plaintext"], STANDARD.encode([7u8; 32]));
        assert_eq!(v["plaintextCrc32c"], crc32c::crc32c(&[7u8; 32]).to_string());
        assert_eq!(v["additionalAuthenticatedData"], STANDARD.encode(b"aad"));
        assert_eq!(
            v["additionalAuthenticatedDataCrc32c"],
            crc32c::crc32c(b"aad").to_string()
        );

        let body = decrypt_body(b"ct", b"").unwrap_or_default();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        assert_eq!(v["ciphertextCrc32c"], crc32c::crc32c(b"ct").to_string());
        assert!(
            v.get("additionalAuthenticatedData").is_none(),
            "empty AAD is left out"
        );
    }

    #[test]
    fn encrypt_answers_are_verified() {
        let key = remote().key;
        let good = encrypt_answer(b"ct", crc32c::crc32c(b"ct"), true);
        let checked = check_encrypt(&remote(), &key, &good, true).ok();
        assert_eq!(checked, Some((b"ct".to_vec(), 7)));

        let bad_crc = encrypt_answer(b"ct", crc32c::crc32c(b"ct") ^ 1, true);
        assert!(matches!(
            check_encrypt(&remote(), &key, &bad_crc, true),
            Err(Failure::Transient(_))
        ));
        let unverified = encrypt_answer(b"ct", crc32c::crc32c(b"ct"), false);
        assert!(matches!(
            check_encrypt(&remote(), &key, &unverified, true),
            Err(Failure::Transient(_))
        ));
        let other_key = check_encrypt(
            &remote(),
            "projects/p/locations/l/keyRings/r/cryptoKeys/other",
            &good,
            true,
        );
        assert!(matches!(other_key, Err(Failure::Permanent(_))));
    }

    #[test]
    fn decrypt_answers_are_verified() {
        let dek = [9u8; 32];
        let answer = |crc: u64| {
            serde_json::json!({ "plaintext": STANDARD.encode(dek), "plaintextCrc32c": crc })
                .to_string()
                .into_bytes()
        };
        let ok = check_decrypt(&remote(), &answer(crc32c::crc32c(&dek).into()));
        assert_eq!(ok.ok().map(|d| *d), Some(dek));
        let bad = check_decrypt(&remote(), &answer(1));
        assert!(matches!(bad, Err(Failure::Transient(_))));
    }

    #[test]
    fn version_names_must_belong_to_the_key() {
        let key = "projects/p/locations/l/keyRings/r/cryptoKeys/k";
        assert_eq!(
            version_of(key, &format!("{key}/cryptoKeyVersions/12")),
            Some(12)
        );
        assert_eq!(
            version_of(key, &format!("{key}x/cryptoKeyVersions/12")),
            None
        );
        assert_eq!(version_of(key, &format!("{key}/cryptoKeyVersions/")), None);
    }

    #[test]
    fn error_summaries_prefer_google_fields() {
        let rpc =
            br#"{"error":{"code":400,"message":"Decryption failed","status":"INVALID_ARGUMENT"}}"#;
        assert_eq!(error_summary(rpc), "INVALID_ARGUMENT: Decryption failed");
        let oauth = br#"{"error":"invalid_grant","error_description":"Invalid JWT Signature."}"#;
        assert_eq!(
            error_summary(oauth),
            "invalid_grant: Invalid JWT Signature."
        );
        assert_eq!(error_summary(b" Not Found \n"), "Not Found");
    }
}
