//! NIP-98 HTTP auth for HTTP RPC: `Authorization: Nostr <base64 kind-27235 event>`, for
//! apps that hold a Nostr key instead of a bearer token.
//!
//! The event must name this server's `/api/nostr` URL (`u`), `POST` (`method`), the
//! SHA-256 of the body (`payload`), be at most 60 s old (30 s ahead), and carry a `p` tag
//! with the bunker pubkey of the authorization it acts through. Its author must be a client
//! connected to that authorization (NIP-46 `connect`, or `nostrconnect://` pairing). Each
//! event is accepted once.

use std::time::Duration;

use axum::http::HeaderMap;
use base64::Engine;
use keycast_core::nostr::{Event, EventId, JsonUtil, PublicKey, Timestamp, Url};
use keycast_core::{AuthorizationId, TenantId};
use nostr::nips::nip98::{self, HttpMethod};

use super::{ApiError, AppState};

/// Events seen recently, so a captured header cannot be replayed within its window.
pub type SeenEvents = moka::sync::Cache<EventId, ()>;

/// A replay cache covering the acceptance window.
pub fn seen_events() -> SeenEvents {
    moka::sync::Cache::builder()
        .max_capacity(1_000_000)
        .time_to_live(Duration::from_secs(120))
        .build()
}

/// The authorization a valid NIP-98 header acts through.
pub(crate) async fn authenticate(
    state: &AppState,
    tenant: TenantId,
    headers: &HeaderMap,
    header: &str,
    body: &[u8],
) -> Result<AuthorizationId, ApiError> {
    let refused = |why: &str| ApiError::unauthorized(format!("NIP-98: {why}"));
    let url = Url::parse(&format!("{}/api/nostr", origin(state, headers)))
        .map_err(|_| refused("server URL is misconfigured"))?;
    let (h, b) = (header.to_owned(), body.to_vec());
    // Signature checks are crypto: off the runtime.
    let author = tokio::task::spawn_blocking(move || {
        nip98::verify_auth_header(&h, &url, HttpMethod::POST, Timestamp::now(), Some(&b))
    })
    .await
    .map_err(|_| refused("verification failed"))?
    .map_err(|e| refused(&e.to_string()))?;
    // Verified above, so this decodes; it is read again for its id and `p` tag.
    let event = decode(header).ok_or_else(|| refused("undecodable event"))?;
    let bunker: PublicKey = event
        .tags
        .public_keys()
        .next()
        .copied()
        .ok_or_else(|| refused("add a p tag with the authorization's bunker pubkey"))?;
    if state.nip98_seen.contains_key(&event.id) {
        return Err(refused("event already used"));
    }
    state.nip98_seen.insert(event.id, ());
    let auth = match state.services.custody.authorization_by_bunker(bunker).await {
        Ok(a) => a,
        Err(keycast_core::Error::NotFound { .. }) => return Err(refused("unknown bunker pubkey")),
        Err(e) => return Err(e.into()),
    };
    if auth.tenant_id != tenant {
        return Err(refused("unknown bunker pubkey"));
    }
    if !auth.has_client(&author) {
        return Err(refused("this key is not connected to that authorization"));
    }
    Ok(auth.id)
}

/// The scheme and host the event's `u` tag must name: `public_url`, or with tenants by host
/// its scheme and the request's (already matched to a tenant) host.
fn origin(state: &AppState, headers: &HeaderMap) -> String {
    let public = state.services.config.public_url.trim_end_matches('/');
    if !state.services.tenancy.is_by_host() {
        return public.to_owned();
    }
    let scheme = public.split_once("://").map_or("https", |(s, _)| s);
    let host = headers
        .get(axum::http::header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    format!("{scheme}://{host}")
}

fn decode(header: &str) -> Option<Event> {
    let encoded = header.strip_prefix("Nostr ")?;
    let json = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .ok()?;
    Event::from_json(json).ok()
}
