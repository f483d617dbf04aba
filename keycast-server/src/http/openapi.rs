//! The OpenAPI document at `/api/openapi.json`. Paths come from the `#[utoipa::path]`
//! attribute on each handler, collected by the router itself (`utoipa_axum`), so a route
//! cannot exist without being documented.

use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};

/// The finished document as JSON bytes, built once at start-up.
pub(crate) fn json(mut api: utoipa::openapi::OpenApi) -> axum::body::Bytes {
    // After the router has added the paths.
    CommonRefusals.modify(&mut api);
    // Serializing a document of plain maps and strings cannot fail.
    api.to_json().unwrap_or_default().into()
}

/// `GET /api/openapi.json`.
pub(crate) async fn serve(document: axum::body::Bytes) -> axum::response::Response {
    use axum::response::IntoResponse;
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        document,
    )
        .into_response()
}

/// Document-level metadata and security schemes.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "keycast",
        description = "Nostr key custody: accounts, keys, policies, app authorizations, \
                       and the NIP-46 methods over HTTP."
    ),
    modifiers(&SecuritySchemes),
    components(schemas(PermissionDoc, super::error::ErrorBody))
)]
pub(crate) struct ApiDoc;

struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "session",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
        components.add_security_scheme(
            "token",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
        // NIP-98: `Authorization: Nostr <base64 kind-27235 event>`.
        components.add_security_scheme(
            "nip98",
            SecurityScheme::ApiKey(utoipa::openapi::security::ApiKey::Header(
                utoipa::openapi::security::ApiKeyValue::new("Authorization"),
            )),
        );
    }
}

/// The refusals every operation of a kind shares, added where an operation does not
/// document them itself: a JSON body is read by `json_body` (or the RPC parser), which
/// answers 400 (not JSON), 413 (over the body limit), 415 (no JSON content type) and 422
/// (wrong shape); an authenticated operation answers 401.
struct CommonRefusals;

impl Modify for CommonRefusals {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{RefOr, Response};
        let error = |description: &str| -> RefOr<Response> {
            RefOr::T(
                utoipa::openapi::ResponseBuilder::new()
                    .description(description)
                    .content(
                        "application/json",
                        utoipa::openapi::content::Content::new(Some(
                            utoipa::openapi::Ref::from_schema_name("ErrorBody"),
                        )),
                    )
                    .build(),
            )
        };
        for item in openapi.paths.paths.values_mut() {
            for op in [
                &mut item.get,
                &mut item.post,
                &mut item.put,
                &mut item.patch,
                &mut item.delete,
            ]
            .into_iter()
            .flatten()
            {
                let mut add = |status: &str, description: &str| {
                    op.responses
                        .responses
                        .entry(status.to_owned())
                        .or_insert_with(|| error(description));
                };
                if op.request_body.is_some() {
                    add("400", "The body is not JSON, or a value is invalid");
                    add("413", "The body is over the size limit");
                    add("415", "No `Content-Type: application/json`");
                    add("422", "JSON of the wrong shape");
                }
                if op.security.is_some() {
                    add("401", "Missing, unknown or expired credentials");
                }
            }
        }
    }
}

/// One rule of a policy, as JSON (`keycast_core::Permission`; the tests check that every
/// shape here parses as one).
#[derive(Debug, serde::Serialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
#[allow(dead_code)] // Built only by tests; it exists for its schema.
pub(crate) enum PermissionDoc {
    /// Allows everything.
    FullAccess,
    /// Only these event kinds may be signed.
    AllowedKinds {
        /// Allowed kinds.
        kinds: Vec<u16>,
    },
    /// Refuse signed content and encrypted plaintext with these words or patterns.
    ContentFilter {
        /// Case-insensitive substrings.
        deny_words: Vec<String>,
        /// Regular expressions (Rust `regex` syntax).
        deny_patterns: Vec<String>,
    },
    /// Encrypt and decrypt only with the key's own pubkey as peer.
    EncryptToSelf,
    /// Only decryption (and `get_public_key`).
    DecryptOnly,
    /// Nothing at or after `not_after` (unix seconds).
    Expiry {
        /// Last valid instant, exclusive.
        not_after: u64,
    },
    /// At most `max` uses over the authorization's life.
    MaxUses {
        /// Total uses.
        max: u64,
    },
    /// At most `per_minute` uses a minute, with that burst.
    RateLimit {
        /// Sustained rate and burst.
        per_minute: u32,
    },
}

#[cfg(test)]
mod tests {
    use super::PermissionDoc;

    #[test]
    fn every_documented_permission_parses_as_a_core_permission() {
        let all = [
            PermissionDoc::FullAccess,
            PermissionDoc::AllowedKinds { kinds: vec![1] },
            PermissionDoc::ContentFilter {
                deny_words: vec!["x".into()],
                deny_patterns: vec!["y+".into()],
            },
            PermissionDoc::EncryptToSelf,
            PermissionDoc::DecryptOnly,
            PermissionDoc::Expiry { not_after: 10 },
            PermissionDoc::MaxUses { max: 3 },
            PermissionDoc::RateLimit { per_minute: 5 },
        ];
        for doc in all {
            let value = serde_json::to_value(&doc).expect("serializes");
            let parsed: keycast_core::Permission = serde_json::from_value(value.clone())
                .unwrap_or_else(|e| panic!("{value} does not parse: {e}"));
            assert_eq!(parsed.to_stored_value(), value);
        }
    }
}
