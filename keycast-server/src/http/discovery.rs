//! NIP-05 discovery for NIP-46 (`/.well-known/nostr.json`): the service's identity pubkey
//! under the name `_`, and a `nip46` object with the relays the bunker listens on and
//! the page where a user approves a `nostrconnect://` URI.
//!
//! NIP-05 asks for `Access-Control-Allow-Origin: *` (browsers fetch it from any app) and
//! no redirects.

use std::collections::BTreeMap;

use axum::extract::{Query, State};
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};

use super::AppState;

/// The query NIP-05 clients send.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub(crate) struct NameQuery {
    /// The local part looked up; only `_` (the service itself) exists.
    name: Option<String>,
}

/// The NIP-05 document.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct NostrJson {
    /// Name to hex pubkey: `_` is the service's identity.
    names: BTreeMap<String, String>,
    /// Hex pubkey to the relays it can be reached on.
    relays: BTreeMap<String, Vec<String>>,
    /// How to reach the remote signer; absent when NIP-46 is off.
    #[serde(skip_serializing_if = "Option::is_none")]
    nip46: Option<Nip46Discovery>,
}

/// The `nip46` object of NIP-46's discovery section.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct Nip46Discovery {
    /// Relays the bunker listens on.
    relays: Vec<String>,
    /// A page that takes a `nostrconnect://` URI in place of `<nostrconnect>`.
    nostrconnect_url: String,
}

/// NIP-05 document of this service, with its NIP-46 relays.
#[utoipa::path(
    get,
    path = "/.well-known/nostr.json",
    tag = "discovery",
    params(NameQuery),
    responses((status = 200, description = "The NIP-05 document", body = NostrJson))
)]
pub(crate) async fn nostr_json(
    State(state): State<AppState>,
    Query(query): Query<NameQuery>,
) -> Response {
    let s = &state.services;
    let identity = s.identity.to_hex();
    let relays: Vec<String> = s
        .config
        .bunker_relays()
        .iter()
        .map(ToString::to_string)
        .collect();
    let wanted = query.name.as_deref().is_none_or(|n| n == "_");
    let mut doc = NostrJson {
        names: BTreeMap::new(),
        relays: BTreeMap::new(),
        nip46: None,
    };
    if wanted {
        doc.names.insert("_".to_owned(), identity.clone());
        if state.bunker.is_some() {
            doc.relays.insert(identity, relays.clone());
            doc.nip46 = Some(Nip46Discovery {
                relays,
                nostrconnect_url: format!(
                    "{}/connect?uri=<nostrconnect>",
                    s.config.public_url.trim_end_matches('/')
                ),
            });
        }
    }
    let mut response = Json(doc).into_response();
    response.headers_mut().insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    response
}
