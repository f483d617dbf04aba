//! The OAuth 2.0 clients an operator allows: `[[oauth_clients]]` in the TOML file, or
//! `KEYCAST_OAUTH_CLIENTS` as a JSON array of the same objects (the variable wins).
//!
//! ```toml
//! [[oauth_clients]]
//! id = "notes-app"
//! name = "Notes"
//! redirect_uris = ["https://notes.example/oauth/callback", "http://127.0.0.1:8765/cb"]
//! ```
//!
//! Redirect URIs are compared as exact strings. They must be absolute `https` URLs, or
//! `http` on a loopback host (`127.0.0.1`, `localhost`, `[::1]`) for native apps, and carry
//! no fragment (RFC 6749 §3.1.2).

use std::collections::HashSet;

use serde::Deserialize;

use crate::error::{Result, ServerError};

/// Longest client id (the store's column bound).
pub const MAX_ID_LEN: usize = 256;
/// Longest redirect URI (the store's column bound).
pub const MAX_REDIRECT_URI_LEN: usize = 2048;

/// One registered app.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OAuthClient {
    /// `client_id`: 1–256 visible ASCII characters.
    pub id: String,
    /// Shown on the consent page; also the label of the authorizations it gets.
    pub name: String,
    /// Where codes may be sent; exact-string match.
    pub redirect_uris: Vec<String>,
}

impl OAuthClient {
    /// Whether `uri` is one of the client's redirect URIs, character for character.
    pub fn allows_redirect(&self, uri: &str) -> bool {
        self.redirect_uris.iter().any(|r| r == uri)
    }
}

/// The clients from `KEYCAST_OAUTH_CLIENTS` (JSON) or else the file, validated.
pub(crate) fn resolve(
    env: Option<String>,
    file: Option<Vec<OAuthClient>>,
) -> Result<Vec<OAuthClient>> {
    let (setting, clients) = match env {
        Some(json) => (
            "KEYCAST_OAUTH_CLIENTS",
            serde_json::from_str(&json).map_err(|e| bad("KEYCAST_OAUTH_CLIENTS", e))?,
        ),
        None => ("oauth_clients", file.unwrap_or_default()),
    };
    validate(&clients).map_err(|e| bad(setting, e))?;
    Ok(clients)
}

fn bad(setting: &str, reason: impl std::fmt::Display) -> ServerError {
    ServerError::Config(format!("{setting}: {reason}"))
}

fn validate(clients: &[OAuthClient]) -> std::result::Result<(), String> {
    let mut ids = HashSet::new();
    for c in clients {
        let id_ok =
            (1..=MAX_ID_LEN).contains(&c.id.len()) && c.id.bytes().all(|b| b.is_ascii_graphic());
        if !id_ok {
            return Err(format!(
                "client id {:?} must be 1-{MAX_ID_LEN} visible ASCII characters",
                c.id
            ));
        }
        if !ids.insert(c.id.as_str()) {
            return Err(format!("client id {:?} appears twice", c.id));
        }
        keycast_core::Label::parse(&c.name).map_err(|_| {
            format!(
                "client {:?}: name must be 1-100 characters, no control characters",
                c.id
            )
        })?;
        if c.redirect_uris.is_empty() {
            return Err(format!("client {:?} needs at least one redirect_uri", c.id));
        }
        for uri in &c.redirect_uris {
            check_redirect_uri(uri)
                .map_err(|e| format!("client {:?}: redirect_uri {uri:?}: {e}", c.id))?;
        }
    }
    Ok(())
}

fn check_redirect_uri(uri: &str) -> std::result::Result<(), &'static str> {
    if uri.len() > MAX_REDIRECT_URI_LEN {
        return Err("longer than 2048 bytes");
    }
    if !uri.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("must be ASCII without spaces (percent-encode the rest)");
    }
    let url = keycast_core::nostr::Url::parse(uri).map_err(|_| "not an absolute URL")?;
    if url.fragment().is_some() || uri.contains('#') {
        return Err("must not have a fragment");
    }
    let loopback = matches!(url.host_str(), Some("127.0.0.1" | "localhost" | "[::1]"));
    match url.scheme() {
        "https" => Ok(()),
        "http" if loopback => Ok(()),
        "http" => Err("http is allowed only for 127.0.0.1, localhost or [::1]; use https"),
        _ => Err("must be an https URL (or http on a loopback host)"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(id: &str, uris: &[&str]) -> OAuthClient {
        OAuthClient {
            id: id.into(),
            name: "App".into(),
            redirect_uris: uris.iter().map(|u| (*u).to_owned()).collect(),
        }
    }

    #[test]
    fn good_clients_pass_and_match_exactly() {
        let c = client(
            "app",
            &[
                "https://app.example/cb?x=1",
                "http://127.0.0.1:8765/cb",
                "http://[::1]/cb",
                "http://localhost/cb",
            ],
        );
        assert_eq!(validate(std::slice::from_ref(&c)), Ok(()));
        assert!(c.allows_redirect("https://app.example/cb?x=1"));
        assert!(!c.allows_redirect("https://app.example/cb"));
        assert!(!c.allows_redirect("https://APP.example/cb?x=1"));
    }

    #[test]
    fn bad_clients_are_refused_with_a_reason() {
        for (clients, needle) in [
            (vec![client("", &["https://a.example/cb"])], "client id"),
            (vec![client("a b", &["https://a.example/cb"])], "client id"),
            (
                vec![
                    client("a", &["https://a.example/cb"]),
                    client("a", &["https://b.example/cb"]),
                ],
                "twice",
            ),
            (vec![client("a", &[])], "at least one"),
            (vec![client("a", &["/cb"])], "absolute"),
            (vec![client("a", &["https://a.example/cb#x"])], "fragment"),
            (
                vec![client("a", &["http://a.example/cb"])],
                "only for 127.0.0.1",
            ),
            (
                vec![client("a", &["http://127.0.0.1.evil.example/cb"])],
                "only for",
            ),
            (vec![client("a", &["javascript:alert(1)"])], "https"),
            (vec![client("a", &["https://a.example/c b"])], "ASCII"),
            (vec![client("a", &["https://a.example/é"])], "ASCII"),
        ] {
            let err = validate(&clients).expect_err(needle);
            assert!(err.contains(needle), "{needle}: {err}");
        }
        let mut nameless = client("a", &["https://a.example/cb"]);
        nameless.name = " ".into();
        assert!(validate(&[nameless]).is_err());
    }

    #[test]
    fn the_environment_variable_is_json_and_errors_name_it() {
        let json = r#"[{"id":"a","name":"App","redirect_uris":["https://a.example/cb"]}]"#;
        let clients = resolve(Some(json.into()), Some(vec![])).expect("clients");
        assert_eq!(clients, vec![client("a", &["https://a.example/cb"])]);
        let err = resolve(Some("[{\"id\":\"a\"}]".into()), None).expect_err("missing fields");
        assert!(err.to_string().contains("KEYCAST_OAUTH_CLIENTS"), "{err}");
        let err = resolve(None, Some(vec![client("a", &["ftp://x/cb"])])).expect_err("scheme");
        assert!(err.to_string().contains("oauth_clients"), "{err}");
    }
}
