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

/// The names of one listener's four settings.
struct Names {
    max: &'static str,
    max_per_address: &'static str,
    header_timeout: &'static str,
    idle_timeout: &'static str,
}

/// One listener's limits: environment first, then the file, then `default`; each value
/// is checked against its range and a bad one names its setting.
fn limits(
    env: &impl Fn(&str) -> Option<String>,
    names: &Names,
    file: [Option<u64>; 4],
    default: Limits,
) -> Result<Limits> {
    let count = |name: &str, file: Option<u64>| {
        number(
            name,
            env(name),
            file.and_then(|v| usize::try_from(v).ok()),
            1..=1_000_000,
        )
    };
    let secs = |name: &str, file: Option<u64>, default: Duration| -> Result<Duration> {
        Ok(number(name, env(name), file, 1..=3600)?.map_or(default, Duration::from_secs))
    };
    Ok(Limits {
        max: count(names.max, file[0])?,
        max_per_address: count(names.max_per_address, file[1])?.unwrap_or(default.max_per_address),
        header_timeout: secs(names.header_timeout, file[2], default.header_timeout)?,
        idle_timeout: secs(names.idle_timeout, file[3], default.idle_timeout)?,
    })
}

/// Environment first, then the file, then [`ConnectionSettings::default`].
pub(crate) fn resolve(
    env: &impl Fn(&str) -> Option<String>,
    raw: Option<RawConnections>,
) -> Result<ConnectionSettings> {
    let f = raw.unwrap_or_default();
    let d = ConnectionSettings::default();
    let as_u64 = |v: Option<usize>| v.map(|v| v as u64);
    Ok(ConnectionSettings {
        http: limits(
            env,
            &Names {
                max: "KEYCAST_HTTP_MAX_CONNECTIONS",
                max_per_address: "KEYCAST_HTTP_MAX_CONNECTIONS_PER_ADDRESS",
                header_timeout: "KEYCAST_HTTP_HEADER_TIMEOUT_SECS",
                idle_timeout: "KEYCAST_HTTP_IDLE_TIMEOUT_SECS",
            },
            [
                as_u64(f.http_max),
                as_u64(f.http_max_per_address),
                f.http_header_timeout_secs,
                f.http_idle_timeout_secs,
            ],
            d.http,
        )?,
        relay: limits(
            env,
            &Names {
                max: "KEYCAST_RELAY_MAX_CONNECTIONS",
                max_per_address: "KEYCAST_RELAY_MAX_CONNECTIONS_PER_ADDRESS",
                header_timeout: "KEYCAST_RELAY_HANDSHAKE_TIMEOUT_SECS",
                idle_timeout: "KEYCAST_RELAY_IDLE_TIMEOUT_SECS",
            },
            [
                as_u64(f.relay_max),
                as_u64(f.relay_max_per_address),
                f.relay_handshake_timeout_secs,
                f.relay_idle_timeout_secs,
            ],
            d.relay,
        )?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(vars: &[(&str, &str)]) -> Result<ConnectionSettings> {
        let env = |name: &str| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        };
        resolve(&env, None)
    }

    #[test]
    fn defaults_overrides_and_bad_values_naming_their_setting() {
        assert_eq!(with(&[]).expect("defaults"), ConnectionSettings::default());
        let set = with(&[
            ("KEYCAST_HTTP_MAX_CONNECTIONS", "500"),
            ("KEYCAST_RELAY_IDLE_TIMEOUT_SECS", "30"),
        ])
        .expect("set");
        assert_eq!(set.http.max, Some(500));
        assert_eq!(set.relay.idle_timeout, Duration::from_secs(30));
        for (name, value) in [
            ("KEYCAST_HTTP_HEADER_TIMEOUT_SECS", "0"),
            ("KEYCAST_HTTP_IDLE_TIMEOUT_SECS", "3601"),
            ("KEYCAST_HTTP_MAX_CONNECTIONS_PER_ADDRESS", "many"),
            ("KEYCAST_RELAY_MAX_CONNECTIONS", "-1"),
        ] {
            let err = with(&[(name, value)]).expect_err(name).to_string();
            assert!(err.contains(name), "{err}");
        }
        let raw: RawConnections = toml::from_str("relay_max_per_address = 4").expect("toml");
        let env = |_: &str| None;
        assert_eq!(
            resolve(&env, Some(raw))
                .expect("file")
                .relay
                .max_per_address,
            4
        );
        assert!(toml::from_str::<RawConnections>("http_maxx = 1").is_err());
    }
}
