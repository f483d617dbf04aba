//! OAuth 2.0 for third-party apps: the authorization code flow with PKCE (RFC 6749,
//! RFC 7636, `S256` only) for the clients the operator configured
//! ([`crate::oauth_clients`]).
//!
//! 1. The app sends the browser to `GET /oauth/authorize` with `response_type=code`,
//!    `client_id`, an allow-listed `redirect_uri`, `code_challenge` (`S256`), `state` and
//!    `scope` (NIP-46 `perms` entries separated by spaces, e.g. `sign_event:1 nip44_encrypt`).
//!    An unknown client or redirect URI gets an error page, never a redirect; other bad
//!    parameters are sent back to the redirect URI as `error=…`.
//! 2. Without a session the page is a login form (`POST /oauth/login`, the account login
//!    with its limits; a form another site posted is refused), which sets the
//!    `keycast_session` cookie and comes back.
//! 3. The consent page names the app, says in words what it may do (and what keycast
//!    cannot hold it back from), and lets the user pick one of their keys. Approving
//!    (`POST /oauth/authorize`, CSRF token bound to the session) creates a policy from the
//!    scope and an authorization, and redirects with a single-use code valid for 60 s.
//! 4. The app posts the code with its `code_verifier` to `POST /oauth/token` and gets an
//!    HTTP RPC bearer token and a `bunker://` URL for NIP-46 (see `code` for how the connect
//!    secret survives until then). A refused exchange burns the code and revokes the
//!    authorization.
//!
//! No code, token, password or verifier is logged; the request span carries only the path.

mod authorize;
mod code;
pub(crate) mod page;
pub(crate) mod params;
pub(crate) mod scope;
pub(crate) mod session;
mod token;

pub(crate) use authorize::{authorize_decision, authorize_page, login};
pub(crate) use token::token;
