//! Settings of the Vault / OpenBao transit backend, given in code or read from the
//! environment, and their validation.

use std::sync::Arc;

use zeroize::Zeroizing;

use super::PROVIDER;
use crate::observe::{KmsObserver, NoopObserver};
use crate::remote::RetryPolicy;
use crate::KmsError;

/// The transit mount used when none is configured.
pub const DEFAULT_MOUNT: &str = "transit";

/// Where to find one transit key and how to authenticate.
///
/// Build it with [`VaultConfig::new`] and the chainable setters, or with
/// [`VaultConfig::from_env`]; nothing is checked until
/// [`super::VaultTransitKeyManager::connect`]. `Debug` never prints the token.
#[derive(Clone)]
pub struct VaultConfig {
    addr: String,
    token: Zeroizing<String>,
    mount: String,
    key: String,
    namespace: Option<String>,
    retry: RetryPolicy,
    observer: Arc<dyn KmsObserver>,
}

impl std::fmt::Debug for VaultConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VaultConfig")
            .field("addr", &self.addr)
            .field("token", &"<redacted>")
            .field("mount", &self.mount)
            .field("key", &self.key)
            .field("namespace", &self.namespace)
            .field("retry", &self.retry)
            .field("observer", &self.observer)
            .finish()
    }
}

impl VaultConfig {
    /// The transit key `key` on the server at `addr` (for example `https://vault:8200`),
    /// authenticated by `token`; mount `transit`, no namespace, default retries, no observer.
    pub fn new(addr: impl Into<String>, token: impl Into<String>, key: impl Into<String>) -> Self {
        Self {
            addr: addr.into(),
            token: Zeroizing::new(token.into()),
            mount: DEFAULT_MOUNT.into(),
            key: key.into(),
            namespace: None,
            retry: RetryPolicy::default(),
            observer: Arc::new(NoopObserver),
        }
    }

    /// Reads the settings from the environment:
    ///
    /// | Variable | Meaning |
    /// |---|---|
    /// | `KEYCAST_VAULT_ADDR` (else `VAULT_ADDR`) | server address, required |
    /// | `KEYCAST_VAULT_TOKEN` (else `VAULT_TOKEN`) | token, required |
    /// | `KEYCAST_VAULT_MOUNT` | transit mount path, default `transit` |
    /// | `KEYCAST_VAULT_KEY` | transit key name, required |
    /// | `KEYCAST_VAULT_NAMESPACE` | namespace (Vault Enterprise, OpenBao), optional |
    ///
    /// An empty variable counts as unset. Retry policy and observer keep their defaults;
    /// set them with the builder methods afterwards.
    pub fn from_env() -> Result<Self, KmsError> {
        Self::from_lookup(|name| match std::env::var(name) {
            Ok(value) => Ok(Some(value)),
            Err(std::env::VarError::NotPresent) => Ok(None),
            Err(std::env::VarError::NotUnicode(_)) => {
                Err(config_error(format!("{name} is not valid UTF-8")))
            }
        })
    }

    /// [`Self::from_env`] over any variable source, so it can be tested without touching
    /// the process environment.
    fn from_lookup(
        lookup: impl Fn(&str) -> Result<Option<String>, KmsError>,
    ) -> Result<Self, KmsError> {
        let get = |name: &str| -> Result<Option<String>, KmsError> {
            Ok(lookup(name)?.filter(|v| !v.is_empty()))
        };
        let either = |primary: &str, fallback: &str| -> Result<String, KmsError> {
            match get(primary)? {
                Some(value) => Ok(value),
                None => get(fallback)?
                    .ok_or_else(|| config_error(format!("set {primary} (or {fallback})"))),
            }
        };
        let addr = either("KEYCAST_VAULT_ADDR", "VAULT_ADDR")?;
        let token = either("KEYCAST_VAULT_TOKEN", "VAULT_TOKEN")?;
        let key = get("KEYCAST_VAULT_KEY")?
            .ok_or_else(|| config_error("set KEYCAST_VAULT_KEY".into()))?;
        let mut config = Self::new(addr, token, key);
        if let Some(mount) = get("KEYCAST_VAULT_MOUNT")? {
            config = config.mount(mount);
        }
        if let Some(namespace) = get("KEYCAST_VAULT_NAMESPACE")? {
            config = config.namespace(namespace);
        }
        Ok(config)
    }

    /// The transit mount path (default `transit`); may have several segments (`team/transit`).
    pub fn mount(mut self, mount: impl Into<String>) -> Self {
        self.mount = mount.into();
        self
    }

    /// Sends `X-Vault-Namespace` with every request.
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = Some(namespace.into());
        self
    }

    /// Replaces the default timeouts and retry schedule.
    pub fn retry_policy(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// Receives one event per provider call attempt.
    pub fn observer(mut self, observer: Arc<dyn KmsObserver>) -> Self {
        self.observer = observer;
        self
    }

    pub(super) fn token(&self) -> &str {
        &self.token
    }

    pub(super) fn retry(&self) -> &RetryPolicy {
        &self.retry
    }

    pub(super) fn observer_ref(&self) -> &Arc<dyn KmsObserver> {
        &self.observer
    }

    /// Checks every setting and returns them normalised. Messages never echo the token
    /// or the address (an address may carry credentials).
    pub(super) fn endpoint(&self) -> Result<Endpoint, KmsError> {
        let addr = check_addr(&self.addr).map_err(config_error)?;
        check_token(&self.token).map_err(config_error)?;
        let mount = check_path("mount", &self.mount).map_err(config_error)?;
        check_name("key name", &self.key).map_err(config_error)?;
        let namespace = match &self.namespace {
            Some(ns) => Some(check_path("namespace", ns).map_err(config_error)?),
            None => None,
        };
        Ok(Endpoint {
            addr,
            mount,
            key: self.key.clone(),
            namespace,
        })
    }
}

/// Validated, normalised location of the transit key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Endpoint {
    /// Scheme, host, port and optional path prefix; no trailing slash.
    pub addr: String,
    /// Mount path without leading or trailing slashes.
    pub mount: String,
    /// Transit key name.
    pub key: String,
    /// Namespace without leading or trailing slashes.
    pub namespace: Option<String>,
}

impl Endpoint {
    /// `{addr}/v1/{mount}/{action}/{key}`: transit's `encrypt`, `decrypt` and `keys` paths.
    pub fn url(&self, action: &str) -> String {
        format!("{}/v1/{}/{action}/{}", self.addr, self.mount, self.key)
    }

    /// The `KekRef.key_id`: `{mount}/{key}`.
    pub fn key_id(&self) -> String {
        format!("{}/{}", self.mount, self.key)
    }

    /// True when the token would cross the network unencrypted.
    pub fn is_cleartext_remote(&self) -> bool {
        let Ok(url) = reqwest::Url::parse(&self.addr) else {
            return false;
        };
        let host = url.host_str().unwrap_or_default().trim_matches(['[', ']']);
        let loopback = host == "localhost"
            || host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback());
        url.scheme() == "http" && !loopback
    }
}

fn config_error(reason: String) -> KmsError {
    KmsError::Config {
        backend: PROVIDER,
        reason,
    }
}

/// An absolute http(s) URL without credentials, query or fragment.
fn check_addr(addr: &str) -> Result<String, String> {
    let url = reqwest::Url::parse(addr.trim())
        .map_err(|e| format!("address is not an absolute URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err("address must start with http:// or https://".into());
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("address has no host".into());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("address must not carry credentials; use the token".into());
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err("address must not have a query or fragment".into());
    }
    Ok(url.as_str().trim_end_matches('/').to_owned())
}

/// Non-empty and sendable as a header value.
fn check_token(token: &str) -> Result<(), String> {
    if token.is_empty() {
        return Err("token is empty".into());
    }
    if token
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || !c.is_ascii())
    {
        return Err("token contains whitespace, control or non-ASCII characters".into());
    }
    Ok(())
}

/// Transit key names, and each segment of mount and namespace paths: letters, digits,
/// `_`, `-`, `.`. Keeping to these means the names go into URLs and headers unescaped.
fn check_name(what: &str, name: &str) -> Result<(), String> {
    let ok_chars = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if name.is_empty() || name == "." || name == ".." || !ok_chars {
        return Err(format!(
            "{what} {name:?} must be letters, digits, '_', '-' or '.'"
        ));
    }
    Ok(())
}

/// A slash-separated path of names; outer slashes are dropped.
fn check_path(what: &str, path: &str) -> Result<String, String> {
    let path = path.trim_matches('/');
    if path.is_empty() {
        return Err(format!("{what} is empty"));
    }
    for segment in path.split('/') {
        check_name(what, segment)?;
    }
    Ok(path.to_owned())
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn from_vars(vars: &[(&str, &str)]) -> Result<VaultConfig, KmsError> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        VaultConfig::from_lookup(|name| Ok(vars.get(name).cloned()))
    }

    fn reason(r: Result<impl std::fmt::Debug, KmsError>) -> String {
        match r {
            Err(KmsError::Config { backend, reason }) => {
                assert_eq!(backend, "vault");
                reason
            }
            other => panic!("expected a config error, got {other:?}"),
        }
    }

    #[test]
    fn env_prefers_keycast_variables_and_defaults_the_mount() {
        let c = from_vars(&[
            ("KEYCAST_VAULT_ADDR", "https://a.example:8200"),
            ("VAULT_ADDR", "https://b.example:8200"),
            ("VAULT_TOKEN", "s.token"),
            ("KEYCAST_VAULT_KEY", "keycast"),
        ])
        .expect("config");
        let e = c.endpoint().expect("valid");
        assert_eq!(e.addr, "https://a.example:8200");
        assert_eq!(e.mount, "transit");
        assert_eq!(e.namespace, None);
        assert_eq!(c.token(), "s.token");
        assert_eq!(
            e.url("encrypt"),
            "https://a.example:8200/v1/transit/encrypt/keycast"
        );
        assert_eq!(e.key_id(), "transit/keycast");
    }

    #[test]
    fn env_reads_mount_and_namespace_and_treats_empty_as_unset() {
        let c = from_vars(&[
            ("KEYCAST_VAULT_ADDR", ""),
            ("VAULT_ADDR", "http://127.0.0.1:8200/"),
            ("KEYCAST_VAULT_TOKEN", "root"),
            ("KEYCAST_VAULT_KEY", "k"),
            ("KEYCAST_VAULT_MOUNT", "/team/transit/"),
            ("KEYCAST_VAULT_NAMESPACE", "ns1/child"),
        ])
        .expect("config");
        let e = c.endpoint().expect("valid");
        assert_eq!(
            e.url("decrypt"),
            "http://127.0.0.1:8200/v1/team/transit/decrypt/k"
        );
        assert_eq!(e.namespace.as_deref(), Some("ns1/child"));
        assert!(!e.is_cleartext_remote());
    }

    #[test]
    fn env_names_each_missing_variable() {
        assert!(reason(from_vars(&[])).contains("KEYCAST_VAULT_ADDR (or VAULT_ADDR)"));
        let r = reason(from_vars(&[("VAULT_ADDR", "http://x")]));
        assert!(r.contains("KEYCAST_VAULT_TOKEN (or VAULT_TOKEN)"), "{r}");
        let r = reason(from_vars(&[
            ("VAULT_ADDR", "http://x"),
            ("VAULT_TOKEN", "t"),
        ]));
        assert!(r.contains("KEYCAST_VAULT_KEY"), "{r}");
    }

    #[test]
    fn bad_settings_are_config_errors_that_hide_secrets() {
        let ok = || VaultConfig::new("https://vault.example", "s.secret-token", "k");
        assert!(reason(VaultConfig::new("vault.example", "t", "k").endpoint()).contains("URL"));
        assert!(
            reason(VaultConfig::new("ftp://vault.example", "t", "k").endpoint()).contains("http")
        );
        let r = reason(VaultConfig::new("https://me:hunter2@vault.example", "t", "k").endpoint());
        assert!(r.contains("credentials") && !r.contains("hunter2"), "{r}");
        assert!(reason(VaultConfig::new("https://v?x=1", "t", "k").endpoint()).contains("query"));
        assert!(reason(VaultConfig::new("https://v", "", "k").endpoint()).contains("empty"));
        let r = reason(VaultConfig::new("https://v", "s.secret\n", "k").endpoint());
        assert!(!r.contains("s.secret"), "{r}");
        assert!(reason(ok().mount("a//b").endpoint()).contains("mount"));
        assert!(reason(ok().mount("../sys").endpoint()).contains("mount"));
        assert!(reason(ok().namespace("/").endpoint()).contains("namespace"));
        assert!(reason(VaultConfig::new("https://v", "t", "a/b").endpoint()).contains("key name"));
        assert!(reason(VaultConfig::new("https://v", "t", "").endpoint()).contains("key name"));
        assert!(!ok().endpoint().expect("valid").is_cleartext_remote());
        assert!(VaultConfig::new("http://vault.example", "t", "k")
            .endpoint()
            .expect("valid")
            .is_cleartext_remote());
    }

    #[test]
    fn debug_redacts_the_token() {
        let c = VaultConfig::new("https://v", "s.very-secret-token", "k").namespace("ns");
        let shown = format!("{c:?}");
        assert!(!shown.contains("very-secret"), "{shown}");
        assert!(
            shown.contains("<redacted>") && shown.contains("\"ns\""),
            "{shown}"
        );
    }
}
