//! The AWS KMS backend: DEKs are wrapped with KMS `Encrypt` and unwrapped with `Decrypt`,
//! with the AAD bound as the encryption context.
//!
//! Requests go to the KMS JSON API (`POST /`, `X-Amz-Target: TrentService.Encrypt` or
//! `TrentService.Decrypt`, `Content-Type: application/x-amz-json-1.1`), signed with SigV4
//! (service `kms`) by [`sign`]. The AAD travels base64-encoded as the value of the single
//! encryption-context entry `keycast-aad` (an empty AAD sends no context), and Decrypt also
//! names the key, so KMS refuses a blob made under any other key. Each call runs through
//! [`Remote::call`]: a timeout per attempt and retries of connection errors, throttling, 429
//! and 5xx.
//!
//! Why `reqwest` + `aws-sigv4` and not `aws-sdk-kms`: the backend needs two operations and
//! a signature. The SDK brings its own HTTP stack, runtime and configuration loader (profile
//! files, IMDS, SSO, STS) and a much larger dependency tree and compile time, while the
//! remote backends already share one `reqwest` client with our own retry, timeout and
//! metrics policy. `aws-sigv4` is the SDK's own signer, so signatures match the SDK's.
//!
//! KMS rotates key material in place and records the material version inside the blob,
//! so every wrap names version 1 of the configured key id and old blobs keep unwrapping.

mod config;
mod sigv4;

use std::time::SystemTime;

use async_trait::async_trait;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use keycast_core::ensure_can_unwrap;
use keycast_core::{Error, KekRef, KeyManager, Secret32, Wrapped};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::remote::{http_client, Failure, Remote};
use crate::KmsError;

pub use config::{AwsCredentials, AwsKmsConfig};
pub use sigv4::{sign, SignError, UnsignedRequest};

/// Provider name recorded in envelopes, and backend name in errors and metrics.
pub const PROVIDER: &str = "aws";
const BACKEND: &str = PROVIDER;
/// SigV4 service name of KMS.
const SERVICE: &str = "kms";
const CONTENT_TYPE: &str = "application/x-amz-json-1.1";
const ENCRYPT: &str = "TrentService.Encrypt";
const DECRYPT: &str = "TrentService.Decrypt";

/// Wraps DEKs with an AWS KMS symmetric key. Cheap to share: hold it in an `Arc`.
pub struct AwsKmsKeyManager {
    id: KekRef,
    region: String,
    endpoint: reqwest::Url,
    credentials: AwsCredentials,
    client: reqwest::Client,
    remote: Remote,
}

impl std::fmt::Debug for AwsKmsKeyManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AwsKmsKeyManager")
            .field("id", &self.id)
            .field("region", &self.region)
            .field("endpoint", &self.endpoint.as_str())
            .field("credentials", &self.credentials)
            .field("policy", &self.remote.policy)
            .finish_non_exhaustive()
    }
}

impl AwsKmsKeyManager {
    /// Checks `config` and builds the manager. Makes no network call.
    pub fn new(config: AwsKmsConfig) -> Result<Self, KmsError> {
        let endpoint = config.validate()?;
        let remote = Remote {
            backend: BACKEND,
            key: config.key_id.clone(),
            policy: config.retry,
            observer: config.observer,
        };
        Ok(Self {
            id: KekRef {
                provider: PROVIDER.into(),
                key_id: config.key_id,
                version: 1,
            },
            region: config.region,
            endpoint,
            credentials: config.credentials,
            client: http_client(BACKEND)?,
            remote,
        })
    }

    /// [`AwsKmsConfig::from_env`], then [`AwsKmsKeyManager::new`].
    pub fn from_env() -> Result<Self, KmsError> {
        Self::new(AwsKmsConfig::from_env()?)
    }

    /// Where requests go.
    pub fn endpoint(&self) -> &str {
        self.endpoint.as_str()
    }

    /// Sends one KMS operation through the retry loop and returns the success body.
    async fn call(
        &self,
        op: &'static str,
        target: &'static str,
        body: &[u8],
    ) -> keycast_core::Result<Zeroizing<Vec<u8>>> {
        self.remote
            .call(op, || self.attempt(op, target, body))
            .await
    }

    /// One signed attempt. The signature is fresh each time because it covers the time.
    async fn attempt(
        &self,
        op: &'static str,
        target: &'static str,
        body: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, Failure> {
        let request = UnsignedRequest {
            method: "POST",
            url: self.endpoint.as_str(),
            headers: &[("content-type", CONTENT_TYPE), ("x-amz-target", target)],
            body,
        };
        let headers = sign(
            &request,
            &self.credentials,
            &self.region,
            SERVICE,
            SystemTime::now(),
        )
        .map_err(|e| self.remote.refused(op, e))?;
        // This copy of the body belongs to the HTTP stack, beyond our reach to wipe.
        let response = self
            .client
            .post(self.endpoint.clone())
            .headers(headers)
            .body(body.to_vec())
            .send()
            .await
            .map_err(|e| self.remote.classify_transport(op, &e))?;
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| self.remote.classify_transport(op, &e))?;
        let bytes = Zeroizing::new(Vec::from(bytes));
        if status.is_success() {
            Ok(bytes)
        } else {
            Err(self.classify_error(op, status.as_u16(), &bytes))
        }
    }

    /// Maps an AWS error answer. Throttling is transient even though KMS answers it with 400.
    fn classify_error(&self, op: &str, status: u16, body: &[u8]) -> Failure {
        let error = serde_json::from_slice::<AwsError>(body).ok();
        let detail = match &error {
            Some(e) => e.summary(),
            None => String::from_utf8_lossy(body).into_owned(),
        };
        if error.is_some_and(|e| e.is_throttling()) {
            let detail: String = detail.chars().take(200).collect();
            return Failure::Transient(format!("HTTP {status}: {detail}"));
        }
        self.remote.classify_status(op, status, &detail)
    }

    /// Extracts the 32-byte DEK from a Decrypt answer, wiping every intermediate copy.
    fn plaintext_dek(&self, response: &[u8]) -> keycast_core::Result<Secret32> {
        let out: DecryptResponse = serde_json::from_slice(response)
            .map_err(|_| self.malformed("unwrap", "no Plaintext"))?;
        let encoded = Zeroizing::new(out.plaintext);
        let decoded = Zeroizing::new(
            B64.decode(encoded.as_bytes())
                .map_err(|_| self.malformed("unwrap", "Plaintext is not base64"))?,
        );
        if decoded.len() != 32 {
            return Err(Error::Envelope(format!(
                "{BACKEND} key {}: unwrapped DEK is {} bytes, not 32",
                self.id.key_id,
                decoded.len()
            )));
        }
        // Copy straight into the zeroizing DEK; a stack array would linger unwiped.
        let mut dek = Secret32::new([0; 32]);
        dek.copy_from_slice(&decoded);
        Ok(dek)
    }

    fn malformed(&self, op: &str, what: &str) -> Error {
        Error::KeyManager(format!(
            "{BACKEND} key {}: {op}: malformed response: {what}",
            self.id.key_id
        ))
    }
}

#[async_trait]
impl KeyManager for AwsKmsKeyManager {
    fn id(&self) -> &KekRef {
        &self.id
    }

    async fn wrap(&self, dek: &Secret32, aad: &[u8]) -> keycast_core::Result<Wrapped> {
        let plaintext = Zeroizing::new(B64.encode(dek.as_ref()));
        let body = to_json(&EncryptRequest {
            key_id: &self.id.key_id,
            plaintext: &plaintext,
            encryption_context: Context::of(aad).as_ref(),
        })?;
        let response = self.call("wrap", ENCRYPT, &body).await?;
        let out: EncryptResponse = serde_json::from_slice(&response)
            .map_err(|_| self.malformed("wrap", "no CiphertextBlob"))?;
        let blob = B64
            .decode(out.ciphertext_blob)
            .map_err(|_| self.malformed("wrap", "CiphertextBlob is not base64"))?;
        if blob.is_empty() {
            return Err(self.malformed("wrap", "empty CiphertextBlob"));
        }
        Ok(Wrapped {
            kek: self.id.clone(),
            blob,
        })
    }

    async fn unwrap(&self, wrapped: &Wrapped, aad: &[u8]) -> keycast_core::Result<Secret32> {
        ensure_can_unwrap(self, wrapped)?;
        if wrapped.blob.is_empty() {
            return Err(Error::Envelope(format!(
                "{BACKEND} key {}: empty wrapped DEK",
                self.id.key_id
            )));
        }
        let blob = B64.encode(&wrapped.blob);
        let body = to_json(&DecryptRequest {
            ciphertext_blob: &blob,
            encryption_context: Context::of(aad).as_ref(),
            key_id: &self.id.key_id,
        })?;
        let response = self.call("unwrap", DECRYPT, &body).await?;
        self.plaintext_dek(&response)
    }
}

/// Serializes a request body into memory that is wiped on drop (Encrypt carries the DEK).
/// Our request structs always serialize; the error path is only for the type system.
fn to_json(request: &impl Serialize) -> keycast_core::Result<Zeroizing<Vec<u8>>> {
    serde_json::to_vec(request)
        .map(Zeroizing::new)
        .map_err(|_| Error::Internal(format!("{BACKEND}: cannot encode a KMS request")))
}

/// The encryption context: `{"keycast-aad": base64(aad)}`.
#[derive(Serialize)]
struct Context {
    #[serde(rename = "keycast-aad")]
    aad: String,
}

impl Context {
    /// `None` for an empty AAD: KMS rejects empty context values, and no context is
    /// exactly as binding as an empty one.
    fn of(aad: &[u8]) -> Option<Self> {
        (!aad.is_empty()).then(|| Self {
            aad: B64.encode(aad),
        })
    }
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct EncryptRequest<'a> {
    key_id: &'a str,
    plaintext: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    encryption_context: Option<&'a Context>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct DecryptRequest<'a> {
    ciphertext_blob: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    encryption_context: Option<&'a Context>,
    key_id: &'a str,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct EncryptResponse {
    ciphertext_blob: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DecryptResponse {
    plaintext: String,
}

/// An AWS JSON-protocol error body.
#[derive(Deserialize)]
struct AwsError {
    #[serde(rename = "__type", default)]
    kind: String,
    #[serde(alias = "Message", default)]
    message: String,
}

impl AwsError {
    /// The error name without the optional `namespace#` prefix.
    fn kind(&self) -> &str {
        self.kind.rsplit('#').next().unwrap_or_default()
    }

    /// `Kind: message`, or the kind alone.
    fn summary(&self) -> String {
        if self.message.is_empty() {
            self.kind().to_owned()
        } else {
            format!("{}: {}", self.kind(), self.message)
        }
    }

    fn is_throttling(&self) -> bool {
        matches!(
            self.kind(),
            "ThrottlingException"
                | "Throttling"
                | "TooManyRequestsException"
                | "RequestLimitExceeded"
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(body: &[u8]) -> String {
        serde_json::from_slice::<AwsError>(body)
            .expect("AWS error JSON")
            .summary()
    }

    #[test]
    fn error_bodies_are_summarised() {
        let body = br#"{"__type":"com.amazonaws.kms#InvalidCiphertextException","message":"bad"}"#;
        assert_eq!(summary(body), "InvalidCiphertextException: bad");
        assert_eq!(
            summary(br#"{"__type":"AccessDeniedException"}"#),
            "AccessDeniedException"
        );
    }

    #[test]
    fn throttling_at_400_is_transient() {
        let km = AwsKmsKeyManager::new(AwsKmsConfig::new(
            "us-east-1",
            "alias/k",
            AwsCredentials::new("AKID", "secret", None),
        ))
        .expect("valid config");
        let throttled = km.classify_error("wrap", 400, br#"{"__type":"ThrottlingException"}"#);
        assert!(matches!(throttled, Failure::Transient(_)));
        let refused = km.classify_error("wrap", 400, br#"{"__type":"NotFoundException"}"#);
        assert!(matches!(refused, Failure::Permanent(Error::KeyManager(_))));
        let down = km.classify_error("wrap", 503, b"<html>503</html>");
        assert!(matches!(down, Failure::Transient(ref m) if m.contains("<html>503")));
    }

    #[test]
    fn request_bodies_carry_the_context_only_for_a_non_empty_aad() {
        let with = to_json(&DecryptRequest {
            ciphertext_blob: "AA==",
            encryption_context: Context::of(b"ab").as_ref(),
            key_id: "k",
        })
        .expect("json");
        assert_eq!(
            std::str::from_utf8(&with).expect("utf8"),
            r#"{"CiphertextBlob":"AA==","EncryptionContext":{"keycast-aad":"YWI="},"KeyId":"k"}"#
        );
        let without = to_json(&EncryptRequest {
            key_id: "k",
            plaintext: "AA==",
            encryption_context: Context::of(b"").as_ref(),
        })
        .expect("json");
        assert_eq!(
            std::str::from_utf8(&without).expect("utf8"),
            r#"{"KeyId":"k","Plaintext":"AA=="}"#
        );
    }
}
