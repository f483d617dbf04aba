//! The tenant of each request, from its host ([`crate::tenancy`]). A middleware resolves it
//! once, before any handler, and refuses an unknown host with 421 Misdirected Request;
//! handlers read it with the [`HostTenant`] extractor. Health, metrics and the OpenAPI
//! document answer at any host: probes and scrapers reach instances by address.

use std::sync::Arc;

use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use keycast_core::TenantId;

use super::{ApiError, AppState};
use crate::tenancy::{HostRefusal, Tenancy};

/// The tenant the request's host is served for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostTenant(pub TenantId);

/// Paths that answer at any host.
fn host_independent(path: &str) -> bool {
    matches!(
        path,
        "/health" | "/metrics" | "/api/metrics" | "/api/openapi.json"
    ) || path.starts_with("/healthz/")
}

/// The request's host with its port: the `Host` header, else (HTTP/2) the URI authority.
fn authority<'a>(headers: &'a axum::http::HeaderMap, uri: &'a axum::http::Uri) -> Option<&'a str> {
    match headers.get(header::HOST) {
        Some(v) => v.to_str().ok(),
        None => uri.authority().map(|a| a.as_str()),
    }
}

/// Resolves the tenant, or answers 421 for a host no tenant is served at. A request with
/// more than one `Host` header is refused (400) on every path: a proxy and this server
/// could read different ones, and the tenant must not depend on which.
pub(crate) async fn resolve(
    State(tenancy): State<Arc<Tenancy>>,
    mut request: Request,
    next: Next,
) -> Response {
    if request
        .headers()
        .get_all(header::HOST)
        .iter()
        .nth(1)
        .is_some()
    {
        return ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_input",
            "send exactly one Host header",
        )
        .into_response();
    }
    if !host_independent(request.uri().path()) {
        match tenancy.resolve(authority(request.headers(), request.uri())) {
            Ok(tenant) => {
                request.extensions_mut().insert(HostTenant(tenant));
            }
            Err(refusal) => return refused(refusal).into_response(),
        }
    }
    next.run(request).await
}

fn refused(refusal: HostRefusal) -> ApiError {
    let message = match refusal {
        HostRefusal::Missing => "send a Host header naming the tenant's host",
        HostRefusal::Malformed => "the Host header is not a valid host name",
        HostRefusal::Unknown => "this server serves no tenant at this host",
    };
    ApiError::new(StatusCode::MISDIRECTED_REQUEST, "unknown_host", message)
}

impl FromRequestParts<AppState> for HostTenant {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        if let Some(t) = parts.extensions.get::<HostTenant>() {
            return Ok(*t);
        }
        // Outside the middleware (a host-independent path): resolve here.
        state
            .services
            .tenancy
            .resolve(authority(&parts.headers, &parts.uri))
            .map(HostTenant)
            .map_err(|r| refused(r).into_response())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probes_and_scrapes_answer_at_any_host() {
        for p in [
            "/health",
            "/healthz/ready",
            "/healthz/startup",
            "/metrics",
            "/api/metrics",
            "/api/openapi.json",
        ] {
            assert!(host_independent(p), "{p}");
        }
        for p in [
            "/api/nostr",
            "/api/me",
            "/oauth/authorize",
            "/connect",
            "/.well-known/nostr.json",
            "/healthz",
        ] {
            assert!(!host_independent(p), "{p}");
        }
    }
}
