//! The Vault / OpenBao transit backend: DEKs are wrapped by `POST {mount}/encrypt/{key}`
//! and unwrapped by `POST {mount}/decrypt/{key}`, with the envelope AAD sent as transit's
//! `associated_data`. The master key never leaves the server.
//!
//! Key versions: transit rotates a key in place and prefixes every ciphertext with the
//! version that made it (`vault:v3:…`). A wrap records that version in
//! [`KekRef::version`]; [`KeyManager::id`] reports the latest version read by
//! [`VaultTransitKeyManager::connect`], so a manager picks up a newly rotated version
//! (for [`keycast_core::Keyring::needs_rewrap`] and rotation) on restart. Unwrap accepts
//! every version the server still decrypts, because the default
//! [`KeyManager::can_unwrap`] compares only provider and key id.
//!
//! The key must be an AEAD type (`aes256-gcm96`, `aes128-gcm96`, `chacha20-poly1305`,
//! `xchacha20-poly1305`) and not derived; [`VaultTransitKeyManager::connect`] refuses
//! others. The token needs `update` on `{mount}/encrypt/{key}` and `{mount}/decrypt/{key}`
//! and `read` on `{mount}/keys/{key}`.

mod config;
mod wire;

use async_trait::async_trait;
use keycast_core::ensure_can_unwrap;
use keycast_core::{Error, KekRef, KeyManager, Secret32, Wrapped};
use reqwest::header::{HeaderMap, HeaderValue, CONTENT_TYPE};
use reqwest::RequestBuilder;
use zeroize::Zeroizing;

pub use config::{VaultConfig, DEFAULT_MOUNT};

use crate::remote::{http_client, Failure, Remote};
use crate::KmsError;

/// Provider name recorded in envelopes.
pub const PROVIDER: &str = "vault";

/// A [`KeyManager`] over one Vault / OpenBao transit key. See the [module docs](self).
///
/// Every call goes through [`Remote::call`]: a timeout per attempt, retries with jitter
/// for connection errors, timeouts, 429 and 5xx, no retry for other 4xx. Errors name the
/// backend and `{mount}/{key}`, never the token or key material. `Debug` omits the token.
pub struct VaultTransitKeyManager {
    transport: Transport,
    encrypt_url: String,
    decrypt_url: String,
    id: KekRef,
    addr: String,
    namespace: Option<String>,
}

impl std::fmt::Debug for VaultTransitKeyManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VaultTransitKeyManager")
            .field("id", &self.id)
            .field("addr", &self.addr)
            .field("namespace", &self.namespace)
            .field("policy", &self.transport.remote.policy)
            .finish_non_exhaustive()
    }
}

impl VaultTransitKeyManager {
    /// Checks `config`, then reads the key (`GET {addr}/v1/{mount}/keys/{key}`) to learn
    /// its latest version and check its type.
    ///
    /// Errors: [`KmsError::Config`] for a bad setting; [`KmsError::Startup`] when the
    /// server cannot be reached ([`Error::Unavailable`], after the policy's retries) or
    /// refuses (bad token, missing key, unsuitable key type: [`Error::KeyManager`]).
    pub async fn connect(config: VaultConfig) -> Result<Self, KmsError> {
        let endpoint = config.endpoint()?;
        let headers =
            wire::headers(config.token(), endpoint.namespace.as_deref()).map_err(|reason| {
                KmsError::Config {
                    backend: PROVIDER,
                    reason,
                }
            })?;
        if endpoint.is_cleartext_remote() {
            tracing::warn!(key = %endpoint.key_id(), "vault address uses plain http to a remote host: the token crosses the network unencrypted");
        }
        let transport = Transport {
            client: http_client(PROVIDER)?,
            headers,
            remote: Remote {
                backend: PROVIDER,
                key: endpoint.key_id(),
                policy: config.retry().clone(),
                observer: config.observer_ref().clone(),
            },
        };
        let version = transport
            .latest_version(&endpoint.url("keys"))
            .await
            .map_err(|source| KmsError::Startup {
                backend: PROVIDER,
                source,
            })?;
        tracing::info!(key = %endpoint.key_id(), version, "using vault transit key");
        Ok(Self {
            transport,
            encrypt_url: endpoint.url("encrypt"),
            decrypt_url: endpoint.url("decrypt"),
            id: KekRef {
                provider: PROVIDER.into(),
                key_id: endpoint.key_id(),
                version,
            },
            addr: endpoint.addr,
            namespace: endpoint.namespace,
        })
    }

    /// The transit ciphertext inside `wrapped`, checked locally: a damaged blob fails here
    /// with [`Error::Envelope`] and costs no provider call.
    fn ciphertext_of<'a>(&self, wrapped: &'a Wrapped) -> Result<&'a str, Error> {
        let bad = |why: &str| Error::Envelope(format!("{PROVIDER} key {}: {why}", self.id.key_id));
        let text = std::str::from_utf8(&wrapped.blob)
            .map_err(|_| bad("wrapped DEK is not a transit ciphertext"))?;
        let version = wire::ciphertext_version(text)
            .ok_or_else(|| bad("wrapped DEK is not a transit ciphertext"))?;
        if version != wrapped.kek.version {
            return Err(bad("wrapped DEK's key version differs from its label"));
        }
        Ok(text)
    }

    /// An error of our own making (encoding a request), naming backend and key.
    fn internal(&self, why: String) -> Error {
        Error::Internal(format!("{PROVIDER} key {}: {why}", self.id.key_id))
    }
}

#[async_trait]
impl KeyManager for VaultTransitKeyManager {
    fn id(&self) -> &KekRef {
        &self.id
    }

    async fn wrap(&self, dek: &Secret32, aad: &[u8]) -> keycast_core::Result<Wrapped> {
        let body = wire::encrypt_body(dek, aad).map_err(|why| self.internal(why))?;
        let (t, url, body) = (&self.transport, self.encrypt_url.as_str(), body.as_slice());
        let ciphertext = t
            .remote
            .call("wrap", || async move {
                let reply = t.send("wrap", t.post(url, body)).await?;
                wire::ciphertext(&reply).map_err(|why| t.remote.refused("wrap", why))
            })
            .await?;
        // Record the version the server used: after a rotation it is newer than `id()`.
        let version = wire::ciphertext_version(&ciphertext).ok_or_else(|| {
            Error::KeyManager(format!(
                "{PROVIDER} key {}: wrap returned no transit ciphertext",
                self.id.key_id
            ))
        })?;
        Ok(Wrapped {
            kek: KekRef {
                version,
                ..self.id.clone()
            },
            blob: ciphertext.into_bytes(),
        })
    }

    async fn unwrap(&self, wrapped: &Wrapped, aad: &[u8]) -> keycast_core::Result<Secret32> {
        ensure_can_unwrap(self, wrapped)?;
        let body = wire::decrypt_body(self.ciphertext_of(wrapped)?, aad)
            .map_err(|why| self.internal(why))?;
        let (t, url, body) = (&self.transport, self.decrypt_url.as_str(), body.as_slice());
        let key_id = self.id.key_id.as_str();
        t.remote
            .call("unwrap", || async move {
                let reply = t.send("unwrap", t.post(url, body)).await?;
                wire::plaintext(&reply).map_err(|why| {
                    Failure::Permanent(Error::Envelope(format!(
                        "{PROVIDER} key {key_id}: unwrap: {why}"
                    )))
                })
            })
            .await
    }

    // No `rewrap` override: transit's own rewrap endpoint does not take associated_data
    // and so cannot re-encrypt an AAD-bound ciphertext. The default (unwrap, then wrap)
    // keeps the AAD binding, at the cost of the DEK passing through this process, which
    // it does on every unwrap anyway.
}

/// HTTP client, fixed headers and the retry loop shared by every call of one manager.
struct Transport {
    client: reqwest::Client,
    headers: HeaderMap,
    remote: Remote,
}

impl Transport {
    fn post(&self, url: &str, body: &[u8]) -> RequestBuilder {
        // reqwest takes ownership of the body, so this copy is dropped unwiped inside the
        // HTTP stack; buffers there are beyond our reach anyway.
        self.client
            .post(url)
            .headers(self.headers.clone())
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
            .body(body.to_vec())
    }

    /// One attempt: sends, reads the whole body into a zeroized buffer (a decrypt reply
    /// holds the DEK), and classifies non-2xx replies.
    async fn send(
        &self,
        op: &'static str,
        request: RequestBuilder,
    ) -> Result<Zeroizing<Vec<u8>>, Failure> {
        let response = request
            .send()
            .await
            .map_err(|e| self.remote.classify_transport(op, &e))?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            // The reply was cut off: a network fault, worth another attempt.
            .map_err(|e| Failure::Transient(format!("reading the reply: {}", e.without_url())))?;
        let body = Zeroizing::new(body.to_vec());
        if status.is_success() {
            Ok(body)
        } else {
            Err(self
                .remote
                .classify_status(op, status.as_u16(), &wire::error_detail(&body)))
        }
    }

    /// Reads the key's latest version, refusing keys that cannot bind associated data.
    async fn latest_version(&self, url: &str) -> Result<u32, Error> {
        self.remote
            .call("read_key", || async move {
                let request = self.client.get(url).headers(self.headers.clone());
                let reply = self.send("read_key", request).await?;
                let info =
                    wire::key_info(&reply).map_err(|why| self.remote.refused("read_key", why))?;
                info.usable_version().map_err(|why| {
                    Failure::Permanent(Error::KeyManager(format!(
                        "{PROVIDER} key {}: {why}",
                        self.remote.key
                    )))
                })
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;
    use crate::remote::RetryPolicy;

    fn closed_port() -> u16 {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        drop(listener);
        port
    }

    fn fast() -> RetryPolicy {
        RetryPolicy {
            attempt_timeout: Duration::from_millis(200),
            backoff: [1, 2, 4].map(Duration::from_millis).to_vec(),
        }
    }

    #[tokio::test]
    async fn unreachable_server_is_a_startup_error_naming_backend_and_key() {
        let addr = format!("http://127.0.0.1:{}", closed_port());
        let started = Instant::now();
        let config = VaultConfig::new(addr, "s.do-not-print", "keycast").retry_policy(fast());
        let err = VaultTransitKeyManager::connect(config).await.err();
        assert!(started.elapsed() < Duration::from_secs(5));
        match err {
            Some(KmsError::Startup {
                backend: "vault",
                source: Error::Unavailable(m),
            }) => assert!(
                m.contains("vault key transit/keycast") && !m.contains("do-not-print"),
                "{m}"
            ),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn bad_config_fails_before_any_call() {
        let err = VaultTransitKeyManager::connect(VaultConfig::new("not a url", "t", "k"))
            .await
            .err();
        assert!(
            matches!(
                err,
                Some(KmsError::Config {
                    backend: "vault",
                    ..
                })
            ),
            "{err:?}"
        );
    }
}
