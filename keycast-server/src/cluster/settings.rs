//! Cluster settings: on when a Redis URL is configured (see [`crate::config`]).

use std::path::Path;
use std::time::Duration;

use keycast_core::NodeId;
use sha2::{Digest, Sha256};

use crate::error::{Result, ServerError};

/// The default heartbeat TTL: a killed instance's share moves within 1.25 × TTL = 10 s.
pub const DEFAULT_TTL: Duration = Duration::from_secs(8);

/// How this instance takes part in a cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterSettings {
    /// `redis://` or `rediss://`; may carry a password, so never logged whole.
    pub redis_url: String,
    /// This instance's stable id.
    pub node: NodeId,
    /// Namespace of the cluster's Redis keys and channels.
    pub prefix: String,
    /// How long a silent member stays in the ring.
    pub ttl: Duration,
}

fn bad(setting: &str, reason: impl std::fmt::Display) -> ServerError {
    ServerError::Config(format!("{setting}: {reason}"))
}

/// Ids and prefixes become Redis key parts and log fields: keep them plain.
fn plain(setting: &str, value: &str) -> Result<String> {
    let ok = !value.is_empty()
        && value.len() <= 64
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(value.to_owned())
    } else {
        Err(bad(
            setting,
            format!("{value:?}: use 1-64 of A-Z, a-z, 0-9, '-', '_', '.'"),
        ))
    }
}

/// `<hostname>-<8 hex of the data dir's path>`: stable across restarts, and distinct for
/// two instances on one machine (each has its own data dir, which it locks).
pub fn default_node_id(data_dir: &Path) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| {
            h.trim()
                .chars()
                .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
                .take(40)
                .collect::<String>()
        })
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "keycast".to_owned());
    let digest = Sha256::digest(data_dir.as_os_str().as_encoded_bytes());
    let tag: String = digest[..4].iter().map(|b| format!("{b:02x}")).collect();
    format!("{host}-{tag}")
}

/// The raw values, from the environment or the file.
#[derive(Debug, Default)]
pub struct RawCluster {
    /// `redis_url` / `KEYCAST_REDIS_URL`.
    pub redis_url: Option<String>,
    /// `node_id` / `KEYCAST_NODE_ID`.
    pub node_id: Option<String>,
    /// `cluster_prefix` / `KEYCAST_CLUSTER_PREFIX`.
    pub prefix: Option<String>,
    /// `cluster_ttl_ms` / `KEYCAST_CLUSTER_TTL_MS`.
    pub ttl_ms: Option<String>,
}

/// Validates cluster settings; `None` without a Redis URL. Cluster mode needs Postgres
/// (every instance shares it) and configured relays (an embedded relay is not shared).
pub fn resolve(
    raw: RawCluster,
    data_dir: &Path,
    database_url: &str,
    relays_configured: bool,
) -> Result<Option<ClusterSettings>> {
    let Some(redis_url) = raw.redis_url else {
        return Ok(None);
    };
    if !(redis_url.starts_with("redis://") || redis_url.starts_with("rediss://")) {
        return Err(bad(
            "KEYCAST_REDIS_URL",
            "must start with redis:// or rediss://",
        ));
    }
    if database_url.starts_with("sqlite:") {
        return Err(bad(
            "KEYCAST_REDIS_URL",
            "cluster mode needs a Postgres KEYCAST_DATABASE_URL that every instance shares",
        ));
    }
    if !relays_configured {
        return Err(bad(
            "KEYCAST_REDIS_URL",
            "cluster mode needs KEYCAST_RELAYS: every instance must listen on the same relays",
        ));
    }
    let node = match raw.node_id {
        Some(id) => plain("KEYCAST_NODE_ID", id.trim())?,
        None => default_node_id(data_dir),
    };
    let prefix = plain(
        "KEYCAST_CLUSTER_PREFIX",
        raw.prefix.as_deref().unwrap_or("keycast").trim(),
    )?;
    let ttl = match raw.ttl_ms {
        Some(v) => {
            let ms: u64 = v
                .trim()
                .parse()
                .map_err(|e| bad("KEYCAST_CLUSTER_TTL_MS", format!("{v:?}: {e}")))?;
            if !(1000..=300_000).contains(&ms) {
                return Err(bad(
                    "KEYCAST_CLUSTER_TTL_MS",
                    format!("{ms}: must be 1000 to 300000"),
                ));
            }
            Duration::from_millis(ms)
        }
        None => DEFAULT_TTL,
    };
    Ok(Some(ClusterSettings {
        redis_url,
        node: NodeId(node),
        prefix,
        ttl,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PG: &str = "postgres://db/keycast";

    fn raw(url: &str) -> RawCluster {
        RawCluster {
            redis_url: Some(url.to_owned()),
            ..RawCluster::default()
        }
    }

    #[test]
    fn off_without_redis_and_defaults_with_it() {
        let dir = Path::new("/srv/a");
        assert_eq!(
            resolve(RawCluster::default(), dir, PG, true).expect("ok"),
            None
        );
        let s = resolve(raw("redis://r:6379"), dir, PG, true)
            .expect("ok")
            .expect("on");
        assert_eq!(s.prefix, "keycast");
        assert_eq!(s.ttl, DEFAULT_TTL);
        assert_eq!(s.node.0, default_node_id(dir), "stable for a data dir");
        assert_ne!(default_node_id(dir), default_node_id(Path::new("/srv/b")));
    }

    #[test]
    fn bad_settings_name_the_setting() {
        let dir = Path::new("/srv/a");
        let cases: Vec<(RawCluster, &str, bool, &str)> = vec![
            (raw("http://r"), PG, true, "KEYCAST_REDIS_URL"),
            (raw("redis://r"), "sqlite:///x.db", true, "Postgres"),
            (raw("redis://r"), PG, false, "KEYCAST_RELAYS"),
            (
                RawCluster {
                    node_id: Some("a b".into()),
                    ..raw("redis://r")
                },
                PG,
                true,
                "KEYCAST_NODE_ID",
            ),
            (
                RawCluster {
                    prefix: Some("x:y".into()),
                    ..raw("redis://r")
                },
                PG,
                true,
                "KEYCAST_CLUSTER_PREFIX",
            ),
            (
                RawCluster {
                    ttl_ms: Some("10".into()),
                    ..raw("redis://r")
                },
                PG,
                true,
                "KEYCAST_CLUSTER_TTL_MS",
            ),
            (
                RawCluster {
                    ttl_ms: Some("soon".into()),
                    ..raw("redis://r")
                },
                PG,
                true,
                "KEYCAST_CLUSTER_TTL_MS",
            ),
        ];
        for (raw, db, relays, want) in cases {
            let err = resolve(raw, dir, db, relays).expect_err(want).to_string();
            assert!(err.contains(want), "{err} should name {want}");
        }
    }
}
