//! The Google Cloud KMS backend: DEKs are wrapped by `cryptoKeys.encrypt` and unwrapped by
//! `cryptoKeys.decrypt` of the Cloud KMS REST API v1, with the DEK's AAD bound as
//! `additionalAuthenticatedData` and CRC32C checks on every request and answer.
//!
//! Configuration ([`GcpKmsConfig::from_env`]):
//!
//! | variable | meaning |
//! |---|---|
//! | `KEYCAST_GCP_KMS_KEY` | required: the CryptoKey resource name, `projects/P/locations/L/keyRings/R/cryptoKeys/K` |
//! | `GOOGLE_APPLICATION_CREDENTIALS` | path to a service-account JSON key; when unset or empty, the metadata server supplies tokens |
//! | `KEYCAST_GCP_KMS_ENDPOINT` | optional, default `https://cloudkms.googleapis.com` |
//! | `KEYCAST_GCP_METADATA_ENDPOINT` | optional, default `http://metadata.google.internal` |
//!
//! The endpoint overrides exist so tests can point at a fake; production leaves them unset.
//!
//! The [`KekRef`] is `gcp` / the CryptoKey name / the CryptoKeyVersion that Cloud KMS used,
//! read from each encrypt answer. Unwrap sends the CryptoKey name and Cloud KMS finds the
//! version in the ciphertext, so blobs of every enabled version stay readable.
//! [`GcpKmsKeyManager::new`] cannot know the primary version and assumes 1;
//! [`GcpKmsKeyManager::probe`] (called by [`GcpKmsKeyManager::connect`]) learns it. After
//! changing the primary version in Cloud KMS, restart so [`KeyManager::id`] follows.

mod api;
mod auth;

use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use keycast_core::ensure_can_unwrap;
use keycast_core::random_secret32;
use keycast_core::{Error, KekRef, KeyManager, Secret32, Wrapped};
use zeroize::Zeroizing;

pub use auth::SCOPE;
use auth::{ServiceAccount, TokenSource, Tokens};

use crate::observe::KmsObserver;
use crate::remote::{http_client, Failure, Remote, RetryPolicy};
use crate::KmsError;

/// Provider name recorded in envelopes, and the backend name in errors and metrics.
pub const PROVIDER: &str = "gcp";
pub(crate) const BACKEND: &str = PROVIDER;

/// Environment variable: the CryptoKey resource name (required).
pub const ENV_KEY: &str = "KEYCAST_GCP_KMS_KEY";
/// Environment variable: path to a service-account JSON key (optional).
pub const ENV_CREDENTIALS: &str = "GOOGLE_APPLICATION_CREDENTIALS";
/// Environment variable: Cloud KMS endpoint override (optional).
pub const ENV_ENDPOINT: &str = "KEYCAST_GCP_KMS_ENDPOINT";
/// Environment variable: metadata server override (optional).
pub const ENV_METADATA_ENDPOINT: &str = "KEYCAST_GCP_METADATA_ENDPOINT";

/// The public Cloud KMS endpoint.
pub const DEFAULT_ENDPOINT: &str = "https://cloudkms.googleapis.com";
/// The metadata server as seen from inside Google Cloud (plain HTTP by design).
pub const DEFAULT_METADATA_ENDPOINT: &str = "http://metadata.google.internal";

/// AAD of the DEK wrapped and unwrapped by [`GcpKmsKeyManager::probe`].
const PROBE_AAD: &[u8] = b"keycast/gcp/startup-probe";

/// How the backend authenticates to Cloud KMS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GcpCredentials {
    /// A service-account JSON key file (`client_email`, `private_key`, `token_uri`).
    ServiceAccountFile(PathBuf),
    /// The metadata server's token for the attached service account.
    MetadataServer {
        /// Scheme and host, e.g. [`DEFAULT_METADATA_ENDPOINT`].
        endpoint: String,
    },
}

/// Settings of a [`GcpKmsKeyManager`]. Holds paths and names only, no secrets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GcpKmsConfig {
    /// The CryptoKey resource name: `projects/P/locations/L/keyRings/R/cryptoKeys/K`.
    pub key_name: String,
    /// Where access tokens come from.
    pub credentials: GcpCredentials,
    /// Cloud KMS base URL, e.g. [`DEFAULT_ENDPOINT`].
    pub endpoint: String,
}

impl GcpKmsConfig {
    /// Reads the variables listed in the [module docs](self) from the process environment.
    pub fn from_env() -> Result<Self, KmsError> {
        Self::from_vars(|name| std::env::var(name).ok())
    }

    /// Like [`from_env`](Self::from_env) with `var` as the environment; empty values count
    /// as unset.
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Self, KmsError> {
        let get = |name: &str| var(name).filter(|v| !v.trim().is_empty());
        let key_name = get(ENV_KEY).ok_or_else(|| config(format!("{ENV_KEY} is not set")))?;
        let credentials = match get(ENV_CREDENTIALS) {
            Some(path) => GcpCredentials::ServiceAccountFile(PathBuf::from(path)),
            None => GcpCredentials::MetadataServer {
                endpoint: get(ENV_METADATA_ENDPOINT)
                    .unwrap_or_else(|| DEFAULT_METADATA_ENDPOINT.into()),
            },
        };
        let endpoint = get(ENV_ENDPOINT).unwrap_or_else(|| DEFAULT_ENDPOINT.into());
        let config = Self {
            key_name: key_name.trim().to_string(),
            credentials,
            endpoint,
        };
        config.validate()?;
        Ok(config)
    }

    /// Checks the key name and URLs without touching the network or the key file.
    pub fn validate(&self) -> Result<(), KmsError> {
        check_key_name(&self.key_name)?;
        check_url("Cloud KMS endpoint", &self.endpoint)?;
        if let GcpCredentials::MetadataServer { endpoint } = &self.credentials {
            check_url("metadata endpoint", endpoint)?;
        }
        Ok(())
    }
}

/// A [`KeyManager`] whose master key is a Cloud KMS symmetric CryptoKey.
///
/// Every call goes through [`Remote::call`]: a timeout per attempt, three retries with
/// jitter for connection errors, timeouts, 429, 5xx and failed integrity checks, none for
/// other refusals. A 401 drops the cached token and retries with a new one, once per call.
pub struct GcpKmsKeyManager {
    id: KekRef,
    remote: Remote,
    http: reqwest::Client,
    endpoint: String,
    tokens: Tokens,
}

impl fmt::Debug for GcpKmsKeyManager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GcpKmsKeyManager")
            .field("id", &self.id)
            .field("endpoint", &self.endpoint)
            .field("tokens", &self.tokens)
            .finish_non_exhaustive()
    }
}

impl GcpKmsKeyManager {
    /// Builds the manager: checks the settings and loads the service-account key. Makes no
    /// network call; the key version in [`KeyManager::id`] is 1 until [`probe`](Self::probe).
    pub fn new(config: GcpKmsConfig) -> Result<Self, KmsError> {
        config.validate()?;
        let source = match &config.credentials {
            GcpCredentials::ServiceAccountFile(path) => {
                TokenSource::ServiceAccount(ServiceAccount::from_file(path)?)
            }
            GcpCredentials::MetadataServer { endpoint } => TokenSource::metadata(endpoint)?,
        };
        let endpoint = check_url("Cloud KMS endpoint", &config.endpoint)?;
        if !endpoint.starts_with("https://") {
            tracing::warn!(endpoint = %endpoint, "Cloud KMS endpoint is not HTTPS; use this only with a local fake");
        }
        Ok(Self {
            id: KekRef {
                provider: PROVIDER.into(),
                key_id: config.key_name.clone(),
                version: 1,
            },
            remote: Remote::new(BACKEND, config.key_name),
            http: http_client(BACKEND)?,
            endpoint,
            tokens: Tokens::new(source),
        })
    }

    /// [`new`](Self::new) followed by [`probe`](Self::probe).
    pub async fn connect(config: GcpKmsConfig) -> Result<Self, KmsError> {
        Self::new(config)?.probe().await
    }

    /// Wraps and unwraps a throwaway DEK: proves that credentials, network and both IAM
    /// permissions work, and learns the primary key version for [`KeyManager::id`].
    pub async fn probe(mut self) -> Result<Self, KmsError> {
        let startup = |source| KmsError::Startup {
            backend: BACKEND,
            source,
        };
        let dek = random_secret32();
        let wrapped = self.wrap(&dek, PROBE_AAD).await.map_err(startup)?;
        let back = self.unwrap(&wrapped, PROBE_AAD).await.map_err(startup)?;
        if *back != *dek {
            return Err(startup(Error::KeyManager(format!(
                "{BACKEND} key {}: probe DEK did not survive a round trip",
                self.id.key_id
            ))));
        }
        self.id.version = wrapped.kek.version;
        tracing::info!(key = %self.id.key_id, version = self.id.version, "Cloud KMS key reachable");
        Ok(self)
    }

    /// Replaces the timeout and retry schedule.
    pub fn with_policy(mut self, policy: RetryPolicy) -> Self {
        self.remote.policy = policy;
        self
    }

    /// Reports every provider call attempt to `observer`.
    pub fn with_observer(mut self, observer: Arc<dyn KmsObserver>) -> Self {
        self.remote.observer = observer;
        self
    }

    /// The CryptoKey resource name.
    pub fn key_name(&self) -> &str {
        &self.id.key_id
    }

    fn url(&self, method: &str) -> String {
        format!("{}/v1/{}:{method}", self.endpoint, self.id.key_id)
    }

    /// One encrypt attempt.
    async fn encrypt_once(
        &self,
        url: &str,
        dek: &Secret32,
        aad: &[u8],
        token_renewed: &AtomicBool,
    ) -> Result<(Vec<u8>, u32), Failure> {
        let body = api::encrypt_body(dek, aad)?;
        let answer = self.post("wrap", url, &body, token_renewed).await?;
        api::check_encrypt(&self.remote, &self.id.key_id, &answer, !aad.is_empty())
    }

    /// One decrypt attempt.
    async fn decrypt_once(
        &self,
        url: &str,
        blob: &[u8],
        aad: &[u8],
        token_renewed: &AtomicBool,
    ) -> Result<Secret32, Failure> {
        let body = api::decrypt_body(blob, aad)?;
        let answer = self.post("unwrap", url, &body, token_renewed).await?;
        api::check_decrypt(&self.remote, &answer)
    }

    /// POSTs `body` with a bearer token and returns the success body. A 401 renews the token
    /// and resends, once per call (`token_renewed` is shared by the call's attempts), since
    /// a token can be revoked before its stated expiry.
    async fn post(
        &self,
        op: &'static str,
        url: &str,
        body: &[u8],
        token_renewed: &AtomicBool,
    ) -> Result<Zeroizing<Vec<u8>>, Failure> {
        loop {
            let token = self.tokens.get(&self.http, &self.remote, op).await?;
            let response = self
                .http
                .post(url)
                .bearer_auth(token.secret())
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.to_vec())
                .send()
                .await
                .map_err(|e| self.remote.classify_transport(op, &e))?;
            let status = response.status().as_u16();
            if status == 401 && !token_renewed.swap(true, Ordering::Relaxed) {
                tracing::info!(key = %self.id.key_id, op, "Cloud KMS rejected the access token; renewing it");
                self.tokens.invalidate(&token);
                continue;
            }
            let answer = response
                .bytes()
                .await
                .map(|b| Zeroizing::new(Vec::from(b)))
                .map_err(|e| self.remote.classify_transport(op, &e))?;
            if !(200..300).contains(&status) {
                let detail = api::error_summary(&answer);
                return Err(self.remote.classify_status(op, status, &detail));
            }
            return Ok(answer);
        }
    }
}

#[async_trait]
impl KeyManager for GcpKmsKeyManager {
    fn id(&self) -> &KekRef {
        &self.id
    }

    async fn wrap(&self, dek: &Secret32, aad: &[u8]) -> keycast_core::Result<Wrapped> {
        let url = self.url("encrypt");
        let token_renewed = AtomicBool::new(false);
        let (blob, version) = self
            .remote
            .call("wrap", || self.encrypt_once(&url, dek, aad, &token_renewed))
            .await?;
        Ok(Wrapped {
            kek: KekRef {
                version,
                ..self.id.clone()
            },
            blob,
        })
    }

    async fn unwrap(&self, wrapped: &Wrapped, aad: &[u8]) -> keycast_core::Result<Secret32> {
        ensure_can_unwrap(self, wrapped)?;
        if wrapped.blob.is_empty() {
            // Cloud KMS would refuse it too; no need to ask.
            return Err(Error::Envelope(format!(
                "{BACKEND} key {}: wrapped DEK is empty",
                self.id.key_id
            )));
        }
        let url = self.url("decrypt");
        let token_renewed = AtomicBool::new(false);
        self.remote
            .call("unwrap", || {
                self.decrypt_once(&url, &wrapped.blob, aad, &token_renewed)
            })
            .await
    }
}

/// Accepts `projects/P/locations/L/keyRings/R/cryptoKeys/K` with non-empty ids made of
/// characters Google allows in them, so the name can be pasted into a URL path as is.
fn check_key_name(name: &str) -> Result<(), KmsError> {
    const SHAPE: &str = "projects/P/locations/L/keyRings/R/cryptoKeys/K";
    let parts: Vec<&str> = name.split('/').collect();
    let labels = ["projects", "locations", "keyRings", "cryptoKeys"];
    let well_formed = parts.len() == 8
        && parts.chunks(2).zip(labels).all(|(pair, label)| {
            pair[0] == label
                && !pair[1].is_empty()
                && pair[1]
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.:".contains(c))
        });
    if well_formed {
        Ok(())
    } else if name.contains("/cryptoKeyVersions/") {
        Err(config(format!(
            "{ENV_KEY} must name a CryptoKey ({SHAPE}), not a CryptoKeyVersion"
        )))
    } else {
        Err(config(format!(
            "{ENV_KEY} must look like {SHAPE}, got {name:?}"
        )))
    }
}

/// Checks an http(s) base URL without credentials, query or fragment; returns it without a
/// trailing slash.
pub(crate) fn check_url(what: &str, url: &str) -> Result<String, KmsError> {
    let parsed =
        reqwest::Url::parse(url.trim()).map_err(|e| config(format!("{what} is not a URL: {e}")))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(config(format!("{what} must be an http or https URL")));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(config(format!("{what} must not carry credentials")));
    }
    if parsed.query().is_some() || parsed.fragment().is_some() {
        return Err(config(format!("{what} must not have a query or fragment")));
    }
    Ok(url.trim().trim_end_matches('/').to_string())
}

fn config(reason: String) -> KmsError {
    KmsError::Config {
        backend: BACKEND,
        reason,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    const KEY: &str = "projects/p-1/locations/europe-west1/keyRings/ring_a/cryptoKeys/dek.kek";

    fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| map.get(name).cloned()
    }

    fn reason(r: Result<GcpKmsConfig, KmsError>) -> String {
        match r {
            Err(KmsError::Config { backend, reason }) => {
                assert_eq!(backend, "gcp");
                reason
            }
            other => panic!("expected a config error, got {other:?}"),
        }
    }

    #[test]
    fn env_defaults_to_the_metadata_server_and_public_endpoint() {
        let c = GcpKmsConfig::from_vars(vars(&[(ENV_KEY, KEY), (ENV_CREDENTIALS, "")]));
        assert_eq!(
            c.ok(),
            Some(GcpKmsConfig {
                key_name: KEY.into(),
                credentials: GcpCredentials::MetadataServer {
                    endpoint: DEFAULT_METADATA_ENDPOINT.into()
                },
                endpoint: DEFAULT_ENDPOINT.into(),
            })
        );
    }

    #[test]
    fn env_overrides_are_honoured() {
        let c = GcpKmsConfig::from_vars(vars(&[
            (ENV_KEY, KEY),
            (ENV_CREDENTIALS, "/etc/keycast/sa.json"),
            (ENV_ENDPOINT, "http://127.0.0.1:9/"),
        ]));
        let c = c.ok();
        assert_eq!(
            c.as_ref().map(|c| &c.credentials),
            Some(&GcpCredentials::ServiceAccountFile(
                "/etc/keycast/sa.json".into()
            ))
        );
        assert_eq!(c.map(|c| c.endpoint), Some("http://127.0.0.1:9/".into()));
    }

    #[test]
    fn bad_settings_are_config_errors() {
        assert!(reason(GcpKmsConfig::from_vars(vars(&[]))).contains(ENV_KEY));
        let version = format!("{KEY}/cryptoKeyVersions/1");
        assert!(
            reason(GcpKmsConfig::from_vars(vars(&[(ENV_KEY, &version)])))
                .contains("not a CryptoKeyVersion")
        );
        for bad in [
            "projects/p/locations/l/keyRings/r",
            "projects//locations/l/keyRings/r/cryptoKeys/k",
            "projects/p?x/locations/l/keyRings/r/cryptoKeys/k",
        ] {
            reason(GcpKmsConfig::from_vars(vars(&[(ENV_KEY, bad)])));
        }
        let ftp = vars(&[(ENV_KEY, KEY), (ENV_ENDPOINT, "ftp://kms")]);
        assert!(reason(GcpKmsConfig::from_vars(ftp)).contains("http"));
        let creds = vars(&[
            (ENV_KEY, KEY),
            (ENV_METADATA_ENDPOINT, "http://user:pw@meta"),
        ]);
        assert!(!reason(GcpKmsConfig::from_vars(creds)).contains("pw"));
    }

    #[test]
    fn a_missing_key_file_is_a_config_error() {
        let config = GcpKmsConfig {
            key_name: KEY.into(),
            credentials: GcpCredentials::ServiceAccountFile("/nonexistent/keycast-sa.json".into()),
            endpoint: DEFAULT_ENDPOINT.into(),
        };
        assert!(matches!(
            GcpKmsKeyManager::new(config),
            Err(KmsError::Config { backend: "gcp", .. })
        ));
    }
}
