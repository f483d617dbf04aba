//! The connection settings: `[connections]` in the file, `KEYCAST_HTTP_*` and
//! `KEYCAST_RELAY_*` in the environment (the table is in [`crate::config`]).

use std::time::Duration;

use serde::Deserialize;

use crate::config::number;
use crate::error::Result;

/// `[connections]` in the TOML file; every key optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawConnections {
    http_max: Option<usize>,
    http_max_per_address: Option<usize>,
    http_header_timeout_secs: Option<u64>,
    http_idle_timeout_secs: Option<u64>,
    relay_max: Option<usize>,
    relay_max_per_address: Option<usize>,
    relay_handshake_timeout_secs: Option<u64>,
    relay_idle_timeout_secs: Option<u64>,
}

/// Limits of one listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Connections open at once; `None` for a share of the process's descriptor limit
    /// (see [`super::default_caps`]).
    pub max: Option<usize>,
    /// Connections open at once from one address (IPv6: one /64).
    pub max_per_address: usize,
    /// How long a client may take to send a request head (HTTP: also the wait for the
    /// next request on a kept-alive connection) or its WebSocket upgrade (relay).
    pub header_timeout: Duration,
    /// A connection that moves no byte either way for this long is closed.
    pub idle_timeout: Duration,
}

/// Limits of the HTTP listener and of the embedded relay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionSettings {
    /// The HTTP API.
    pub http: Limits,
    /// The embedded relay.
    pub relay: Limits,
}

impl Default for ConnectionSettings {
    fn default() -> Self {
        Self {
            http: Limits {
                max: None,
                max_per_address: 256,
                header_timeout: Duration::from_secs(10),
                idle_timeout: Duration::from_secs(60),
            },
            relay: Limits {
                max: None,
                max_per_address: 32,
                header_timeout: Duration::from_secs(10),
                idle_timeout: Duration::from_secs(300),
            },
        }
    }
}

/// Environment first, then the file, then [`ConnectionSettings::default`]; each value is
/// checked against its range and a bad one names its setting.
pub(crate) fn resolve(
    env: &impl Fn(&str) -> Option<String>,
    raw: Option<RawConnections>,
) -> Result<ConnectionSettings> {
    let f = raw.unwrap_or_default();
    let d = ConnectionSettings::default();
    let secs = |name: &str, file: Option<u64>, default: Duration| -> Result<Duration> {
        Ok(number(name, env(name), file, 1..=3600)?.map_or(default, Duration::from_secs))
    };
    Ok(ConnectionSettings {
        http: Limits {
            max: number(
                "KEYCAST_HTTP_MAX_CONNECTIONS",
                env("KEYCAST_HTTP_MAX_CONNECTIONS"),
                f.http_max,
                1..=1_000_000,
            )?,
            max_per_address: number(
                "KEYCAST_HTTP_MAX_CONNECTIONS_PER_ADDRESS",
                env("KEYCAST_HTTP_MAX_CONNECTIONS_PER_ADDRESS"),
                f.http_max_per_address,
                1..=1_000_000,
            )?
            .unwrap_or(d.http.max_per_address),
            header_timeout: secs(
                "KEYCAST_HTTP_HEADER_TIMEOUT_SECS",
                f.http_header_timeout_secs,
                d.http.header_timeout,
            )?,
            idle_timeout: secs(
                "KEYCAST_HTTP_IDLE_TIMEOUT_SECS",
                f.http_idle_timeout_secs,
                d.http.idle_timeout,
            )?,
        },
        relay: Limits {
            max: number(
                "KEYCAST_RELAY_MAX_CONNECTIONS",
                env("KEYCAST_RELAY_MAX_CONNECTIONS"),
                f.relay_max,
                1..=1_000_000,
            )?,
            max_per_address: number(
                "KEYCAST_RELAY_MAX_CONNECTIONS_PER_ADDRESS",
                env("KEYCAST_RELAY_MAX_CONNECTIONS_PER_ADDRESS"),
                f.relay_max_per_address,
                1..=1_000_000,
            )?
            .unwrap_or(d.relay.max_per_address),
            header_timeout: secs(
                "KEYCAST_RELAY_HANDSHAKE_TIMEOUT_SECS",
                f.relay_handshake_timeout_secs,
                d.relay.header_timeout,
            )?,
            idle_timeout: secs(
                "KEYCAST_RELAY_IDLE_TIMEOUT_SECS",
                f.relay_idle_timeout_secs,
                d.relay.idle_timeout,
            )?,
        },
    })
}
