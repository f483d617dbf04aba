//! Configuration of the AWS KMS backend: credentials, region, key and endpoint.

use std::fmt;
use std::sync::Arc;

use aws_credential_types::Credentials;

use crate::observe::{KmsObserver, NoopObserver};
use crate::remote::RetryPolicy;
use crate::KmsError;

use super::BACKEND;

/// Static AWS credentials. `Debug` shows the access key id only, never the secret access
/// key or the session token; both are wiped from memory on drop.
#[derive(Clone)]
pub struct AwsCredentials(Credentials);

impl AwsCredentials {
    /// Long-term credentials, or temporary ones when `session_token` is set.
    pub fn new(
        access_key_id: impl Into<String>,
        secret_access_key: impl Into<String>,
        session_token: Option<String>,
    ) -> Self {
        Self(Credentials::new(
            access_key_id,
            secret_access_key,
            session_token,
            None,
            "keycast",
        ))
    }

    /// The access key id (not a secret; it appears in every signed request).
    pub fn access_key_id(&self) -> &str {
        self.0.access_key_id()
    }

    pub(super) fn inner(&self) -> &Credentials {
        &self.0
    }

    fn check(&self) -> Result<(), KmsError> {
        if self.0.access_key_id().trim().is_empty() {
            return Err(config_error("the access key id is empty"));
        }
        if self.0.secret_access_key().is_empty() {
            return Err(config_error("the secret access key is empty"));
        }
        Ok(())
    }
}

impl fmt::Debug for AwsCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AwsCredentials")
            .field("access_key_id", &self.0.access_key_id())
            .field("secret_access_key", &"<redacted>")
            .field(
                "session_token",
                &self.0.session_token().map(|_| "<redacted>"),
            )
            .finish()
    }
}

/// Everything [`super::AwsKmsKeyManager::new`] needs.
///
/// Build it with [`AwsKmsConfig::new`] and the `with_*` methods, or with
/// [`AwsKmsConfig::from_env`].
#[derive(Clone)]
pub struct AwsKmsConfig {
    /// Region of the key, e.g. `eu-west-1`; part of every signature.
    pub region: String,
    /// Key id, key ARN, alias name (`alias/...`) or alias ARN. Recorded in every envelope,
    /// so keep using the same spelling for the same key.
    pub key_id: String,
    /// Endpoint override (moto, LocalStack, VPC endpoints). Default:
    /// `https://kms.<region>.amazonaws.com/`.
    pub endpoint: Option<String>,
    /// Who signs the requests.
    pub credentials: AwsCredentials,
    /// Timeouts and retries.
    pub retry: RetryPolicy,
    /// Receives one event per attempt.
    pub observer: Arc<dyn KmsObserver>,
}

impl fmt::Debug for AwsKmsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AwsKmsConfig")
            .field("region", &self.region)
            .field("key_id", &self.key_id)
            .field("endpoint", &self.endpoint)
            .field("credentials", &self.credentials)
            .field("retry", &self.retry)
            .finish_non_exhaustive()
    }
}

impl AwsKmsConfig {
    /// A configuration with the default endpoint, retry policy and no observer.
    pub fn new(
        region: impl Into<String>,
        key_id: impl Into<String>,
        credentials: AwsCredentials,
    ) -> Self {
        Self {
            region: region.into(),
            key_id: key_id.into(),
            endpoint: None,
            credentials,
            retry: RetryPolicy::default(),
            observer: Arc::new(NoopObserver),
        }
    }

    /// Sends requests to `endpoint` instead of the regional AWS endpoint.
    pub fn with_endpoint(mut self, endpoint: impl Into<String>) -> Self {
        self.endpoint = Some(endpoint.into());
        self
    }

    /// Replaces the default timeouts and retry schedule.
    pub fn with_retry_policy(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// Reports every call attempt to `observer`.
    pub fn with_observer(mut self, observer: Arc<dyn KmsObserver>) -> Self {
        self.observer = observer;
        self
    }

    /// Reads the configuration from the environment. Empty variables count as unset.
    ///
    /// - `KEYCAST_AWS_KMS_KEY_ID` (required): key id, key ARN or alias.
    /// - `AWS_REGION`, else `AWS_DEFAULT_REGION` (one is required).
    /// - `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY` (required).
    /// - `AWS_SESSION_TOKEN` (optional): for temporary credentials.
    /// - `KEYCAST_AWS_KMS_ENDPOINT` (optional): endpoint override, e.g. `http://127.0.0.1:5010`.
    ///
    /// Errors name the missing or malformed variable, never its value.
    pub fn from_env() -> Result<Self, KmsError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, KmsError> {
        let get = |name: &str| get(name).filter(|v| !v.trim().is_empty());
        let required = |name: &'static str| {
            get(name).ok_or_else(|| config_error(format!("{name} is not set")))
        };
        let key_id = required("KEYCAST_AWS_KMS_KEY_ID")?;
        let region = get("AWS_REGION")
            .or_else(|| get("AWS_DEFAULT_REGION"))
            .ok_or_else(|| config_error("neither AWS_REGION nor AWS_DEFAULT_REGION is set"))?;
        let credentials = AwsCredentials::new(
            required("AWS_ACCESS_KEY_ID")?,
            required("AWS_SECRET_ACCESS_KEY")?,
            get("AWS_SESSION_TOKEN"),
        );
        let config = Self::new(region, key_id, credentials);
        Ok(match get("KEYCAST_AWS_KMS_ENDPOINT") {
            Some(endpoint) => config.with_endpoint(endpoint),
            None => config,
        })
    }

    /// Checks every field and returns the URL requests go to.
    pub(super) fn validate(&self) -> Result<reqwest::Url, KmsError> {
        check_region(&self.region)?;
        check_key_id(&self.key_id)?;
        self.credentials.check()?;
        match &self.endpoint {
            Some(endpoint) => parse_endpoint(endpoint),
            None => parse_endpoint(&format!("https://kms.{}.amazonaws.com/", self.region)),
        }
    }
}

fn check_region(region: &str) -> Result<(), KmsError> {
    let well_formed = !region.is_empty()
        && region
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if well_formed {
        Ok(())
    } else {
        Err(config_error(format!("region {region:?} is malformed")))
    }
}

fn check_key_id(key_id: &str) -> Result<(), KmsError> {
    // KMS key ids, ARNs and aliases are short printable ASCII; anything else is a typo.
    let well_formed =
        !key_id.is_empty() && key_id.len() <= 2048 && key_id.chars().all(|c| c.is_ascii_graphic());
    if well_formed {
        Ok(())
    } else {
        Err(config_error(
            "the key id must be non-empty printable ASCII without spaces",
        ))
    }
}

fn parse_endpoint(endpoint: &str) -> Result<reqwest::Url, KmsError> {
    let url = reqwest::Url::parse(endpoint)
        .map_err(|e| config_error(format!("endpoint {endpoint:?} is not a URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(config_error(format!(
            "endpoint {endpoint:?} must be an http(s) URL with a host"
        )));
    }
    // The signature covers the exact path and query; KMS serves everything at `/`.
    if url.path() != "/" || url.query().is_some() || !url.username().is_empty() {
        return Err(config_error(format!(
            "endpoint {endpoint:?} must not have a path, query or user"
        )));
    }
    Ok(url)
}

fn config_error(reason: impl Into<String>) -> KmsError {
    KmsError::Config {
        backend: BACKEND,
        reason: reason.into(),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| map.get(name).cloned()
    }

    fn full_env() -> Vec<(&'static str, &'static str)> {
        vec![
            ("KEYCAST_AWS_KMS_KEY_ID", "alias/keycast"),
            ("AWS_DEFAULT_REGION", "eu-west-1"),
            ("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE"),
            ("AWS_SECRET_ACCESS_KEY", SECRET),
            ("AWS_SESSION_TOKEN", "session-token-value"),
            ("KEYCAST_AWS_KMS_ENDPOINT", "http://127.0.0.1:5010"),
        ]
    }

    #[test]
    fn reads_every_variable() {
        let c = AwsKmsConfig::from_lookup(env(&full_env())).expect("valid");
        assert_eq!(c.key_id, "alias/keycast");
        assert_eq!(c.region, "eu-west-1");
        assert_eq!(c.endpoint.as_deref(), Some("http://127.0.0.1:5010"));
        assert_eq!(c.credentials.access_key_id(), "AKIDEXAMPLE");
        assert_eq!(
            c.credentials.inner().session_token(),
            Some("session-token-value")
        );
        assert_eq!(
            c.validate().expect("valid").as_str(),
            "http://127.0.0.1:5010/"
        );
    }

    #[test]
    fn aws_region_wins_over_the_default_region() {
        let mut vars = full_env();
        vars.push(("AWS_REGION", "us-east-2"));
        let c = AwsKmsConfig::from_lookup(env(&vars)).expect("valid");
        assert_eq!(c.region, "us-east-2");
    }

    #[test]
    fn missing_variables_are_named_without_values() {
        for missing in [
            "KEYCAST_AWS_KMS_KEY_ID",
            "AWS_DEFAULT_REGION",
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
        ] {
            let vars: Vec<_> = full_env()
                .into_iter()
                .map(|(k, v)| if k == missing { (k, "") } else { (k, v) })
                .collect();
            let err = AwsKmsConfig::from_lookup(env(&vars)).expect_err("must fail");
            let msg = err.to_string();
            assert!(matches!(err, KmsError::Config { backend: "aws", .. }));
            assert!(msg.contains(missing), "{missing}: {msg}");
            assert!(!msg.contains(SECRET), "{msg}");
        }
    }

    #[test]
    fn malformed_settings_are_refused() {
        let creds = || AwsCredentials::new("AKID", SECRET, None);
        let bad = [
            AwsKmsConfig::new("EU WEST", "k", creds()),
            AwsKmsConfig::new("eu-west-1", "", creds()),
            AwsKmsConfig::new("eu-west-1", "k", AwsCredentials::new("AKID", "", None)),
            AwsKmsConfig::new("eu-west-1", "k", creds()).with_endpoint("ftp://host/"),
            AwsKmsConfig::new("eu-west-1", "k", creds()).with_endpoint("http://host/kms"),
            AwsKmsConfig::new("eu-west-1", "k", creds()).with_endpoint("not a url"),
        ];
        for config in bad {
            let err = config.validate().expect_err("must fail");
            assert!(!err.to_string().contains(SECRET), "{err}");
        }
        let ok = AwsKmsConfig::new("eu-west-1", "k", creds());
        assert_eq!(
            ok.validate().expect("valid").as_str(),
            "https://kms.eu-west-1.amazonaws.com/"
        );
    }

    #[test]
    fn debug_hides_secrets() {
        let c = AwsKmsConfig::from_lookup(env(&full_env())).expect("valid");
        let shown = format!("{c:?}");
        assert!(shown.contains("AKIDEXAMPLE"), "{shown}");
        assert!(!shown.contains(SECRET), "{shown}");
        assert!(!shown.contains("session-token-value"), "{shown}");
    }
}
