//! SigV4 request signing through the `aws-sigv4` crate. Every KMS request and the SigV4
//! test-suite check go through [`sign`], so the test proves what production sends.

use std::fmt;
use std::time::SystemTime;

use aws_sigv4::http_request::{self, SignableBody, SignableRequest, SigningSettings};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use http::header::{HeaderName, HeaderValue, AUTHORIZATION};
use http::HeaderMap;

use super::AwsCredentials;

/// What a SigV4 signature covers: method, URL, headers and body of one request.
#[derive(Clone, Copy)]
pub struct UnsignedRequest<'a> {
    /// `GET`, `POST`, ...
    pub method: &'a str,
    /// The full, already-encoded URL the request goes to.
    pub url: &'a str,
    /// Headers to send and sign (`Host` is taken from `url` when absent).
    pub headers: &'a [(&'a str, &'a str)],
    /// The exact body bytes that will be sent.
    pub body: &'a [u8],
}

impl fmt::Debug for UnsignedRequest<'_> {
    // The body of a KMS Encrypt carries the DEK, so only its length is shown.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UnsignedRequest")
            .field("method", &self.method)
            .field("url", &self.url)
            .field("headers", &self.headers)
            .field("body_len", &self.body.len())
            .finish()
    }
}

/// A request could not be signed (malformed URL or header).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignError(String);

impl fmt::Display for SignError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot sign request: {}", self.0)
    }
}

impl std::error::Error for SignError {}

fn sign_error(e: impl fmt::Display) -> SignError {
    SignError(e.to_string())
}

/// Signs `request` for `service` in `region` at `time`, with the signature in headers.
///
/// Returns every header to send: the request's own, then `X-Amz-Date`, `Authorization`
/// and, with temporary credentials, `X-Amz-Security-Token`. The last two are marked
/// sensitive so that `Debug` of the map does not show them.
pub fn sign(
    request: &UnsignedRequest<'_>,
    credentials: &AwsCredentials,
    region: &str,
    service: &str,
    time: SystemTime,
) -> Result<HeaderMap, SignError> {
    let identity = Identity::from(credentials.inner().clone());
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name(service)
        .time(time)
        .settings(SigningSettings::default())
        .build()
        .map_err(sign_error)?
        .into();
    let signable = SignableRequest::new(
        request.method,
        request.url,
        request.headers.iter().copied(),
        SignableBody::Bytes(request.body),
    )
    .map_err(sign_error)?;
    let (instructions, _signature) = http_request::sign(signable, &params)
        .map_err(sign_error)?
        .into_parts();

    let mut headers = HeaderMap::new();
    for (name, value) in request.headers {
        headers.append(header_name(name)?, header_value(value, false)?);
    }
    let (signing_headers, _query) = instructions.into_parts();
    for h in signing_headers {
        let name = header_name(h.name())?;
        let sensitive = h.sensitive() || name == AUTHORIZATION;
        headers.insert(name, header_value(h.value(), sensitive)?);
    }
    Ok(headers)
}

fn header_name(name: &str) -> Result<HeaderName, SignError> {
    HeaderName::from_bytes(name.as_bytes()).map_err(sign_error)
}

fn header_value(value: &str, sensitive: bool) -> Result<HeaderValue, SignError> {
    let mut v = HeaderValue::from_str(value).map_err(sign_error)?;
    v.set_sensitive(sensitive);
    Ok(v)
}
