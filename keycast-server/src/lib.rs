//! # keycast-server
//!
//! The reference service that composes keycast's crates; the only crate that knows every
//! backend. `main.rs` only calls [`cli::main`].
//!
//! - [`config`]: settings from a TOML file and `KEYCAST_*` environment variables (the
//!   table of every setting is in that module's docs).
//! - [`services`]: opens the database (SQLite or Postgres, migrated), the key managers
//!   (local master-key file, AWS, GCP or Vault, plus older ones for rotation) and the
//!   custody engine.
//! - [`serve`](mod@serve): the data-dir lock ([`lock`]), the NIP-46 bunker on the configured relays
//!   or an [`embedded_relay`], the HTTP API ([`http::app`]), graceful shutdown.
//! - [`listener`] and [`connections`]: the HTTP listener (hyper with header-read and idle
//!   timeouts) and the connection caps, total and per address, it shares with the
//!   embedded relay.
//! - [`fence`]: follows the store's change feed so writes made by the CLI or another
//!   instance reach this process's caches and NIP-46 subscription within ~250 ms (at once
//!   for this instance's own writes and, in a cluster, for announced ones).
//! - [`http`]: `app(state) -> Router`: health and readiness, Prometheus metrics, accounts
//!   (with e-mail verification, password reset and mailed confirmation codes),
//!   keys, policies and authorizations, HTTP RPC (`POST /api/nostr`, bearer or NIP-98),
//!   OAuth 2.0 with PKCE, NIP-05/NIP-46 discovery and the `nostrconnect://` approval page,
//!   and the OpenAPI document at `/api/openapi.json`.
//! - [`mail`]: account mail over SMTP, or `.eml` files in development.
//! - [`oauth_clients`]: the apps an operator lets use OAuth, with their redirect URIs.
//! - [`tenancy`]: tenants by host: which tenant a request is for, the configured tenants,
//!   and the `tenant` CLI.
//! - [`cluster`]: cluster mode over Redis: membership, the hashring `RequestRouter` with
//!   per-request claims, change announcements and shared login limits.
//! - [`cli`]: `serve`, `migrate`, `tenant list|add|add-host|remove-host`, `user add`,
//!   `key generate|import|list|delete`,
//!   `authorization create|revoke`, `kms rotate`, `backup`, `restore`, `healthcheck`.
//!
//! Settings resolve from a file and the environment, and a bad value names its setting:
//!
//! ```
//! use keycast_server::config::Config;
//!
//! let env = |name: &str| match name {
//!     "KEYCAST_LISTEN" => Some("127.0.0.1:8080".to_owned()),
//!     "KEYCAST_DATA_DIR" => Some("/var/lib/keycast".to_owned()),
//!     _ => None,
//! };
//! let config = Config::load(None, env)?;
//! assert_eq!(config.listen.port(), 8080);
//! assert_eq!(config.database_url, "sqlite:///var/lib/keycast/keycast.db");
//! assert!(config.relays.is_empty(), "no relays: an embedded one is started");
//!
//! let bad = Config::load(None, |name: &str| match name {
//!     "KEYCAST_KMS" => Some("hsm".to_owned()),
//!     other => env(other),
//! });
//! assert!(bad.unwrap_err().to_string().contains("KEYCAST_KMS"));
//! # Ok::<_, keycast_server::ServerError>(())
//! ```

pub mod cli;
pub mod cluster;
pub mod config;
pub mod connections;
pub mod embedded_relay;
pub mod error;
pub mod fence;
pub mod http;
pub mod kms_metrics;
pub mod listener;
pub mod lock;
pub mod logging;
pub mod mail;
pub mod oauth_clients;
pub mod passwords;
pub mod serve;
pub mod services;
pub mod serving_relays;
pub mod tenancy;

pub use config::Config;
pub use error::{Result, ServerError};
pub use http::{app, AppState};
pub use serve::serve;
