//! JSON errors: `{"error":{"code","message"}}` with a status that fits, never internals.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

/// An error as the HTTP API shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable machine-readable code.
    pub code: &'static str,
    /// Safe to show the caller.
    pub message: String,
    /// Seconds to wait before retrying (`Retry-After`); a 503 without it says 1.
    pub retry_after: Option<u64>,
}

impl ApiError {
    /// An error with the given status, code and message.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    /// The same error, telling the caller to retry after `wait` (whole seconds, at least 1).
    pub fn retry_after(mut self, wait: std::time::Duration) -> Self {
        let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        self.retry_after = Some(secs.max(1));
        self
    }

    /// 400 with a message that names the bad part of the request.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_input", message)
    }

    /// 401: no or unusable credentials.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }
}

/// The body of a JSON extractor, or its rejection as a JSON error with axum's status
/// (400 not JSON, 415 wrong content type, 422 wrong shape, 413 too large).
pub(crate) fn json_body<T>(
    body: Result<axum::Json<T>, axum::extract::rejection::JsonRejection>,
) -> Result<T, ApiError> {
    body.map(|axum::Json(b)| b)
        .map_err(|e| ApiError::new(e.status(), "invalid_input", e.body_text()))
}

/// The digest of an `Authorization: Bearer …` credential, or `None` when there is none
/// (or it is absurdly long).
pub(crate) fn bearer_digest(headers: &axum::http::HeaderMap) -> Option<keycast_core::SecretDigest> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty() && t.len() <= 256)
        .map(|t| keycast_core::BearerSecret::from_presented(t).digest())
}

impl From<keycast_core::Error> for ApiError {
    fn from(e: keycast_core::Error) -> Self {
        use keycast_core::Error as E;
        let status = match &e {
            E::InvalidInput { .. }
            | E::InvalidCiphertext(_)
            | E::ForeignPubkey
            | E::UnsupportedFormat(_) => StatusCode::BAD_REQUEST,
            E::NotFound { .. } => StatusCode::NOT_FOUND,
            E::AlreadyExists { .. } | E::Conflict(_) => StatusCode::CONFLICT,
            E::Revoked | E::Expired => StatusCode::UNAUTHORIZED,
            E::Denied(_) | E::NeedsApproval(_) => StatusCode::FORBIDDEN,
            E::Unavailable(_) | E::Overloaded => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        if status == StatusCode::INTERNAL_SERVER_ERROR {
            // The detail goes to the log (it may name backends); the caller gets none.
            tracing::error!(error = %e, "internal error");
            return Self::new(status, "internal", "internal error");
        }
        if let E::Unavailable(detail) = &e {
            tracing::warn!(%detail, "backend unavailable");
            return Self::new(status, e.code(), "temporarily unavailable; retry");
        }
        Self::new(status, e.code(), e.to_string())
    }
}

/// `Retry-After` on `response`: `retry_after` seconds when set, else 1 for a 503.
pub(crate) fn set_retry_after(
    response: &mut Response,
    status: StatusCode,
    retry_after: Option<u64>,
) {
    let secs = match (retry_after, status) {
        (Some(s), _) => s,
        (None, StatusCode::SERVICE_UNAVAILABLE) => 1,
        (None, _) => return,
    };
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(secs));
}

/// The body of every API error.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub(crate) struct ErrorBody {
    error: ErrorDetail,
}

/// What went wrong.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub(crate) struct ErrorDetail {
    /// Stable machine-readable code, such as `invalid_input`, `unauthorized`, `not_found`.
    code: &'static str,
    /// Safe to show the caller.
    message: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code,
                message: self.message,
            },
        };
        let retry_after = self.retry_after;
        let status = self.status;
        let mut response = (status, Json(body)).into_response();
        set_retry_after(&mut response, status, retry_after);
        response
    }
}
