//! OAuth access tokens for Cloud KMS.
//!
//! Two sources: a service-account key, whose RS256-signed JWT assertion is exchanged at the
//! account's `token_uri` (the JWT bearer grant), or the metadata server of the VM, Cloud Run
//! service or GKE pod. Tokens are cached until shortly before they expire; one caller
//! refreshes while the others wait for its result instead of each asking for a token.

use std::fmt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
// The runtime's clock (the same as std's outside tests): a test moves it past a token's
// refresh time instead of sleeping through the window.
use tokio::time::Instant;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::{Deserialize, Deserializer, Serialize};
use zeroize::Zeroizing;

use super::api::{error_summary, parse_json};
use super::{check_url, BACKEND};
use crate::remote::{Failure, Remote};
use crate::KmsError;

/// The narrowest OAuth scope that allows encrypt and decrypt.
pub const SCOPE: &str = "https://www.googleapis.com/auth/cloudkms";
/// The OAuth grant type for exchanging a signed JWT (RFC 7523).
const JWT_BEARER_GRANT: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
/// Used when a service-account file names no `token_uri`.
const DEFAULT_TOKEN_URI: &str = "https://oauth2.googleapis.com/token";
/// Path of the default service account's token on the metadata server.
const METADATA_TOKEN_PATH: &str = "/computeMetadata/v1/instance/service-accounts/default/token";
/// Google refuses assertions that live longer than an hour.
const ASSERTION_LIFETIME_SECS: u64 = 3600;
/// Tokens are replaced this long before they expire, so none expires while in flight.
const REFRESH_MARGIN: Duration = Duration::from_secs(60);
/// Assumed lifetime when a token response omits `expires_in`.
const FALLBACK_LIFETIME: Duration = Duration::from_secs(300);
/// Caps a claimed lifetime: Google's are an hour, and a huge value must not overflow.
const MAX_LIFETIME: Duration = Duration::from_secs(24 * 3600);

/// A service-account key file, as downloaded from the Cloud console.
#[derive(Deserialize)]
struct KeyFile {
    #[serde(rename = "type")]
    kind: Option<String>,
    client_email: String,
    #[serde(deserialize_with = "secret_string")]
    private_key: Zeroizing<String>,
    private_key_id: Option<String>,
    token_uri: Option<String>,
}

/// A parsed service-account key, ready to sign assertions.
pub(crate) struct ServiceAccount {
    client_email: String,
    token_uri: String,
    key_id: Option<String>,
    signing_key: EncodingKey,
}

impl fmt::Debug for ServiceAccount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServiceAccount")
            .field("client_email", &self.client_email)
            .field("token_uri", &self.token_uri)
            .field("private_key", &"<redacted>")
            .finish()
    }
}

/// The claims Google expects in a service-account assertion.
#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    scope: &'a str,
    aud: &'a str,
    iat: u64,
    exp: u64,
}

impl ServiceAccount {
    /// Reads and checks a service-account JSON key file.
    pub(crate) fn from_file(path: &Path) -> Result<Self, KmsError> {
        let json = std::fs::read_to_string(path)
            .map(Zeroizing::new)
            .map_err(|e| config(format!("cannot read {}: {e}", path.display())))?;
        Self::from_json(&json).map_err(|e| match e {
            KmsError::Config { reason, .. } => config(format!("{}: {reason}", path.display())),
            other => other,
        })
    }

    /// Parses a service-account key from its JSON text and proves the key can sign.
    pub(crate) fn from_json(json: &str) -> Result<Self, KmsError> {
        let file: KeyFile = serde_json::from_str(json).map_err(|e| {
            // serde_json messages can quote field values; report only where it broke.
            config(format!(
                "not a service-account key file ({:?} error at line {} column {})",
                e.classify(),
                e.line(),
                e.column()
            ))
        })?;
        if let Some(kind) = file.kind.as_deref().filter(|k| *k != "service_account") {
            return Err(config(format!(
                "credentials of type {kind:?} are not supported; use a service-account key"
            )));
        }
        if file.client_email.is_empty() {
            return Err(config("client_email is empty".into()));
        }
        let token_uri = check_url(
            "token_uri",
            file.token_uri.as_deref().unwrap_or(DEFAULT_TOKEN_URI),
        )?;
        let signing_key = EncodingKey::from_rsa_pem(file.private_key.as_bytes())
            .map_err(|_| config("private_key is not an RSA key in PEM form".into()))?;
        let account = Self {
            client_email: file.client_email,
            token_uri,
            key_id: file.private_key_id.filter(|k| !k.is_empty()),
            signing_key,
        };
        // jsonwebtoken parses the key only when signing: sign once now so a bad key is a
        // configuration error at startup, not a failure on the first wrap.
        account.assertion().map_err(|e| config(e.into()))?;
        Ok(account)
    }

    /// A fresh signed assertion; it is itself a credential for an hour, hence zeroized.
    fn assertion(&self) -> Result<Zeroizing<String>, &'static str> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let claims = Claims {
            iss: &self.client_email,
            scope: SCOPE,
            aud: &self.token_uri,
            iat: now,
            exp: now + ASSERTION_LIFETIME_SECS,
        };
        let mut header = Header::new(Algorithm::RS256);
        header.kid = self.key_id.clone();
        jsonwebtoken::encode(&header, &claims, &self.signing_key)
            .map(Zeroizing::new)
            // The error kind names no key material, but say only what matters.
            .map_err(|_| "private_key cannot sign RS256 assertions")
    }
}

/// Where tokens come from.
#[derive(Debug)]
pub(crate) enum TokenSource {
    /// Signed assertions exchanged at the account's token endpoint.
    ServiceAccount(ServiceAccount),
    /// The metadata server's token for the attached service account.
    Metadata {
        /// The full token URL.
        url: String,
    },
}

impl TokenSource {
    /// The metadata server at `endpoint` (scheme and host, e.g. `http://metadata.google.internal`).
    pub(crate) fn metadata(endpoint: &str) -> Result<Self, KmsError> {
        let base = check_url("metadata endpoint", endpoint)?;
        Ok(Self::Metadata {
            url: format!("{base}{METADATA_TOKEN_PATH}"),
        })
    }

    /// Asks for a new token: one attempt, classified for the caller's retry loop.
    async fn fetch(
        &self,
        http: &reqwest::Client,
        remote: &Remote,
        op: &'static str,
    ) -> Result<FreshToken, Failure> {
        let request = match self {
            Self::ServiceAccount(account) => {
                let assertion = account
                    .assertion()
                    .map_err(|e| remote.refused(op, format!("token assertion: {e}")))?;
                http.post(&account.token_uri).form(&[
                    ("grant_type", JWT_BEARER_GRANT),
                    ("assertion", assertion.as_str()),
                ])
            }
            Self::Metadata { url } => http.get(url).header("Metadata-Flavor", "Google"),
        };
        let response = request
            .send()
            .await
            .map_err(|e| remote.classify_transport(op, &e))?;
        let status = response.status().as_u16();
        let body = response
            .bytes()
            .await
            .map(|b| Zeroizing::new(Vec::from(b)))
            .map_err(|e| remote.classify_transport(op, &e))?;
        if !(200..300).contains(&status) {
            let detail = format!("token endpoint: {}", error_summary(&body));
            return Err(remote.classify_status(op, status, &detail));
        }
        let answer: TokenResponse = parse_json(&body, "token endpoint")?;
        if answer.access_token.is_empty() {
            return Err(Failure::Transient(
                "token endpoint answered without an access_token".into(),
            ));
        }
        let lifetime = answer
            .expires_in
            .map(Duration::from_secs)
            .unwrap_or(FALLBACK_LIFETIME)
            .min(MAX_LIFETIME);
        Ok(FreshToken {
            secret: answer.access_token,
            lifetime,
        })
    }
}

/// The token endpoint's answer; both sources use this shape.
#[derive(Deserialize)]
struct TokenResponse {
    #[serde(deserialize_with = "secret_string")]
    access_token: Zeroizing<String>,
    expires_in: Option<u64>,
}

struct FreshToken {
    secret: Zeroizing<String>,
    lifetime: Duration,
}

/// A cached bearer token. Clones share one zeroized string.
#[derive(Clone)]
pub(crate) struct AccessToken {
    secret: Arc<Zeroizing<String>>,
    refresh_at: Instant,
    generation: u64,
}

impl fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccessToken")
            .field("generation", &self.generation)
            .finish_non_exhaustive()
    }
}

impl AccessToken {
    /// The bearer value; only for the `Authorization` header.
    pub(crate) fn secret(&self) -> &str {
        &self.secret
    }

    fn is_fresh(&self) -> bool {
        Instant::now() < self.refresh_at
    }
}

/// A token source with a cache and single-flight refresh.
pub(crate) struct Tokens {
    source: TokenSource,
    cached: RwLock<Option<AccessToken>>,
    /// Held by the one caller that is fetching a new token.
    refresh: tokio::sync::Mutex<()>,
    generation: AtomicU64,
}

impl fmt::Debug for Tokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tokens")
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

impl Tokens {
    pub(crate) fn new(source: TokenSource) -> Self {
        Self {
            source,
            cached: RwLock::new(None),
            refresh: tokio::sync::Mutex::new(()),
            generation: AtomicU64::new(0),
        }
    }

    /// A token valid for at least [`REFRESH_MARGIN`] (or half its lifetime if shorter).
    pub(crate) async fn get(
        &self,
        http: &reqwest::Client,
        remote: &Remote,
        op: &'static str,
    ) -> Result<AccessToken, Failure> {
        if let Some(token) = self.cached_fresh() {
            return Ok(token);
        }
        let _refreshing = self.refresh.lock().await;
        // Whoever held the lock before us may have just refreshed.
        if let Some(token) = self.cached_fresh() {
            return Ok(token);
        }
        let fresh = self.source.fetch(http, remote, op).await?;
        let margin = REFRESH_MARGIN.min(fresh.lifetime / 2);
        let token = AccessToken {
            secret: Arc::new(fresh.secret),
            refresh_at: Instant::now() + fresh.lifetime - margin,
            generation: self.generation.fetch_add(1, Ordering::Relaxed) + 1,
        };
        *self.cached.write().unwrap_or_else(|p| p.into_inner()) = Some(token.clone());
        Ok(token)
    }

    /// Drops `used` from the cache after the provider rejected it, unless a newer token has
    /// already replaced it.
    pub(crate) fn invalidate(&self, used: &AccessToken) {
        let mut cached = self.cached.write().unwrap_or_else(|p| p.into_inner());
        if cached.as_ref().map(|t| t.generation) == Some(used.generation) {
            *cached = None;
        }
    }

    fn cached_fresh(&self) -> Option<AccessToken> {
        let cached = self.cached.read().unwrap_or_else(|p| p.into_inner());
        cached.as_ref().filter(|t| t.is_fresh()).cloned()
    }
}

/// Deserializes a string straight into a zeroizing container.
fn secret_string<'de, D: Deserializer<'de>>(d: D) -> Result<Zeroizing<String>, D::Error> {
    String::deserialize(d).map(Zeroizing::new)
}

fn config(reason: String) -> KmsError {
    KmsError::Config {
        backend: BACKEND,
        reason,
    }
}
