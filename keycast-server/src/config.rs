//! Settings: a TOML file, then environment variables (env wins), then defaults.
//!
//! | TOML key | environment | default |
//! |---|---|---|
//! | `listen` | `KEYCAST_LISTEN` | `127.0.0.1:3000` |
//! | `data_dir` | `KEYCAST_DATA_DIR` | `$XDG_DATA_HOME/keycast`, else `~/.local/share/keycast` |
//! | `relays` | `KEYCAST_RELAYS` (comma-separated `ws://`/`wss://`) | none: an embedded relay |
//! | `embedded_relay_listen` | `KEYCAST_EMBEDDED_RELAY_LISTEN` | `127.0.0.1:7777` |
//! | `database_url` | `KEYCAST_DATABASE_URL`, else `DATABASE_URL` | `sqlite://<data_dir>/keycast.db` |
//! | `database_pool_size` | `KEYCAST_DATABASE_POOL_SIZE` (1–1000; Postgres) | 2 × cores, at least 8 |
//! | `nip46_workers` | `KEYCAST_NIP46_WORKERS` (1–4096) | 2 × cores, at least 8 |
//! | `nip46_queue_capacity` | `KEYCAST_NIP46_QUEUE_CAPACITY` (1–1000000) | `4096` |
//! | `redis_url` | `KEYCAST_REDIS_URL`, else `REDIS_URL` | none (single instance); set, it turns cluster mode on |
//! | `node_id` | `KEYCAST_NODE_ID` | `<hostname>-<8 hex of the data dir path>` |
//! | `cluster_prefix` | `KEYCAST_CLUSTER_PREFIX` | `keycast` |
//! | `cluster_ttl_ms` | `KEYCAST_CLUSTER_TTL_MS` (1000–300000) | `8000` |
//! | `change_poll_ms` | `KEYCAST_CHANGE_POLL_MS` (50–10000) | `250` |
//! | `kms` | `KEYCAST_KMS` (`local`, `aws`, `gcp`, `vault`) | `local` |
//! | `master_key_file` | `KEYCAST_MASTER_KEY_FILE` | `<data_dir>/master.key` |
//! | `log_format` | `KEYCAST_LOG_FORMAT` (`json`, `text`) | `text` on a terminal, else `json` |
//! | `public_url` | `KEYCAST_PUBLIC_URL` | `http://<listen>` |
//! | `cors_origins` | `KEYCAST_CORS_ORIGINS` (comma-separated) | none (no cross-origin access) |
//! | `max_body_bytes` | `KEYCAST_MAX_BODY_BYTES` | `262144` |
//! | `registration_open` | `KEYCAST_REGISTRATION_OPEN` (`true`, `false`) | `true` |
//! | `[[oauth_clients]]` (`id`, `name`, `redirect_uris`) | `KEYCAST_OAUTH_CLIENTS` (a JSON array of those objects) | none (OAuth refuses every client) |
//! | `smtp_url` | `KEYCAST_SMTP_URL` (`smtp://host:port`, `smtps://user:password@host`, `?tls=required`) | none: mail is written to `<data_dir>/mail/` |
//! | `mail_from` | `KEYCAST_MAIL_FROM` | `keycast <keycast@localhost>` |
//! | `metrics_listen` | `KEYCAST_METRICS_LISTEN` | none: `/metrics` is served on `listen` |
//! | `min_free_disk_mib` | `KEYCAST_MIN_FREE_DISK_MIB` (0–1048576) | `64`: readiness fails below it in the data dir |
//! | `[connections]` `http_max` | `KEYCAST_HTTP_MAX_CONNECTIONS` (1–1000000) | half the descriptor limit less 256 |
//! | `[connections]` `http_max_per_address` | `KEYCAST_HTTP_MAX_CONNECTIONS_PER_ADDRESS` | `256` (IPv6: per /64) |
//! | `[connections]` `http_header_timeout_secs` | `KEYCAST_HTTP_HEADER_TIMEOUT_SECS` (1–3600) | `10`: to send a request head, or the next one on a kept-alive connection |
//! | `[connections]` `http_idle_timeout_secs` | `KEYCAST_HTTP_IDLE_TIMEOUT_SECS` (1–3600) | `60`: no byte either way |
//! | `[connections]` `relay_max` | `KEYCAST_RELAY_MAX_CONNECTIONS` (1–1000000) | a quarter of the descriptor limit less 256 |
//! | `[connections]` `relay_max_per_address` | `KEYCAST_RELAY_MAX_CONNECTIONS_PER_ADDRESS` | `32` |
//! | `[connections]` `relay_handshake_timeout_secs` | `KEYCAST_RELAY_HANDSHAKE_TIMEOUT_SECS` (1–3600) | `10` |
//! | `[connections]` `relay_idle_timeout_secs` | `KEYCAST_RELAY_IDLE_TIMEOUT_SECS` (1–3600) | `300` |
//! | `tenants_by_host` | `KEYCAST_TENANTS_BY_HOST` (`true`, `false`) | `true` when tenants are listed, else `false` (one tenant at every host) |
//! | `[[tenants]]` (`name`, `hosts`) | `KEYCAST_TENANTS` (a JSON array of those objects) | none |
//! | `[nip46_limits]` table, see [`Nip46Limits`] | `KEYCAST_NIP46_*_LIMIT`, `KEYCAST_RELAY_*` | NIP-46 abuse limits |
//!
//! Account abuse limits ([`AccountLimits`]; every count is per client address, per
//! e-mail or per account as named, and shared by a cluster's instances through Redis):
//!
//! | TOML key | environment | default |
//! |---|---|---|
//! | `trusted_proxy_header` | `KEYCAST_TRUSTED_PROXY_HEADER` (such as `x-forwarded-for`) | none: the client address is the TCP peer |
//! | `trusted_proxies` | `KEYCAST_TRUSTED_PROXIES` (comma-separated addresses or CIDR ranges; required with the header) | none |
//! | `password_hash_slots` | `KEYCAST_PASSWORD_HASH_SLOTS` (1–256): argon2 runs at once (19 MiB each) | cores, at least 2 |
//! | `password_hash_queue` | `KEYCAST_PASSWORD_HASH_QUEUE` (0–10000): hashes that may wait; beyond, 503 | 8 × slots |
//! | `logins_per_address_per_minute` | `KEYCAST_LOGINS_PER_ADDRESS_PER_MINUTE` (1–100000) | `30` |
//! | `registrations_per_address_per_hour` | `KEYCAST_REGISTRATIONS_PER_ADDRESS_PER_HOUR` (1–100000) | `10` |
//! | `login_free_failures` | `KEYCAST_LOGIN_FREE_FAILURES` (1–1000): failures per e-mail and address before delays start | `5` |
//! | `login_max_delay_secs` | `KEYCAST_LOGIN_MAX_DELAY_SECS` (1–86400): the longest delay (1 s, doubling per failure) | `900` |
//! | `login_failures_per_email` | `KEYCAST_LOGIN_FAILURES_PER_EMAIL` (1–1000000): failures per e-mail in 15 minutes, from addresses the account never logged in from, before those are refused | `50` |
//! | `mail_per_account_per_hour` | `KEYCAST_MAIL_PER_ACCOUNT_PER_HOUR` (1–10000) | `5` |
//! | `mail_per_recipient_per_hour` | `KEYCAST_MAIL_PER_RECIPIENT_PER_HOUR` (1–10000): per destination address, across tenants; forgot-password has a budget of its own of the same size | `5` |
//! | `mail_per_address_per_hour` | `KEYCAST_MAIL_PER_ADDRESS_PER_HOUR` (1–100000): forgot-password requests per client address | `20` |
//! | `email_lookups_per_hour` | `KEYCAST_EMAIL_LOOKUPS_PER_HOUR` (1–100000): team members added by e-mail, per account | `60` |
//!
//! The cloud key managers read their own variables (`KEYCAST_AWS_KMS_KEY_ID` and the usual
//! `AWS_*`, `KEYCAST_GCP_KMS_*`, `KEYCAST_VAULT_*`); see keycast-kms's `from_env` docs.
//! The file is `--config <path>` or `KEYCAST_CONFIG`; without either, none is read.
//! Unknown keys in the file are errors, so a typo cannot silently fall back to a default.
//! OAuth clients and their redirect URI rules are described in [`crate::oauth_clients`],
//! tenants by host in [`crate::tenancy`] and [`crate::tenancy::settings`].

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use keycast_core::nostr::RelayUrl;
use serde::Deserialize;

use crate::cluster::settings::{ClusterSettings, RawCluster};
use crate::error::{Result, ServerError};

/// Which key manager seals the stored keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KmsKind {
    /// A 32-byte master-key file under the data dir (created on first run).
    Local,
    /// AWS KMS.
    Aws,
    /// Google Cloud KMS.
    Gcp,
    /// Vault / OpenBao transit.
    Vault,
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One JSON object per line (production).
    Json,
    /// Human-readable (development).
    Text,
}

/// The resolved settings. Build with [`Config::load`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// HTTP listen address.
    pub listen: SocketAddr,
    /// Where the database, master key and lock live.
    pub data_dir: PathBuf,
    /// Relays for NIP-46; empty means an embedded relay on `embedded_relay_listen`.
    pub relays: Vec<RelayUrl>,
    /// Address of the embedded relay (used only without `relays`).
    pub embedded_relay_listen: SocketAddr,
    /// `sqlite:` or `postgres:` URL.
    pub database_url: String,
    /// Postgres connections; `None` for the default (the service's concurrency).
    pub database_pool_size: Option<u32>,
    /// NIP-46 requests handled at once; `None` for the default (2 × cores, at least 8).
    pub nip46_workers: Option<usize>,
    /// NIP-46 requests that may wait for a worker; beyond, they are answered "overloaded".
    pub nip46_queue_capacity: Option<usize>,
    /// Cluster mode: on when a Redis URL is set.
    pub cluster: Option<ClusterSettings>,
    /// How often the change feed is read (other instances' and the CLI's writes).
    pub change_poll: Duration,
    /// Key manager.
    pub kms: KmsKind,
    /// Master-key file of the local key manager.
    pub master_key_file: PathBuf,
    /// Log format.
    pub log_format: LogFormat,
    /// The URL clients reach this server at (discovery, OAuth redirects).
    pub public_url: String,
    /// Origins allowed to call the API from a browser.
    pub cors_origins: Vec<String>,
    /// Largest request body accepted.
    pub max_body_bytes: usize,
    /// Whether anyone may register an account over HTTP.
    pub registration_open: bool,
    /// Apps allowed to use OAuth 2.0 (`/oauth/authorize`, `/oauth/token`).
    pub oauth_clients: Vec<crate::oauth_clients::OAuthClient>,
    /// Tenants by host, and the tenants and hosts to make sure of at start.
    pub tenants: crate::tenancy::settings::TenantSettings,
    /// SMTP relay for account mail; `None` writes it to `<data_dir>/mail/`.
    pub smtp_url: Option<crate::mail::SmtpUrl>,
    /// `From` of account mail.
    pub mail_from: String,
    /// A second listen address for `/metrics` and the health checks; when set, the main
    /// listener no longer answers `/metrics`.
    pub metrics_listen: Option<SocketAddr>,
    /// Readiness fails while the data dir's file system has less free space than this.
    pub min_free_disk_bytes: u64,
    /// Connection caps and timeouts of the HTTP listener and the embedded relay.
    pub connections: crate::connections::ConnectionSettings,
    /// NIP-46 intake limits and the `nostrconnect://` relay policy.
    pub nip46_limits: Nip46Limits,
    /// Limits on logins, registrations, password hashing and mail, and where the client
    /// address comes from.
    pub accounts: AccountLimits,
}

/// How much password hashing, login guessing and mail one client or account can cause
/// (see the table in the module docs for the settings and defaults).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountLimits {
    /// The header carrying the client address behind a load balancer, and who may set it.
    pub trusted_proxy: Option<crate::http::TrustedProxy>,
    /// Password hashes (argon2, 19 MiB each) computed at once.
    pub password_hash_slots: usize,
    /// Password hashes that may wait for a slot; beyond them, 503 with `Retry-After`.
    pub password_hash_queue: usize,
    /// Login attempts per client address a minute (any e-mail).
    pub logins_per_address_per_minute: u32,
    /// Registrations per client address an hour.
    pub registrations_per_address_per_hour: u32,
    /// Failures per e-mail and client address before each further attempt must wait.
    pub login_free_failures: u32,
    /// The longest of those waits (they start at 1 s and double per failure).
    pub login_max_delay: Duration,
    /// Failures per e-mail in 15 minutes, from every address the account never logged in
    /// (or reset its password) from, after which those addresses are refused until the
    /// window ends.
    pub login_failures_per_email: u32,
    /// Mails (verification and confirmation codes) per account an hour.
    pub mail_per_account_per_hour: u32,
    /// Mails per destination address an hour, across tenants (and separately, as many
    /// forgot-password mails).
    pub mail_per_recipient_per_hour: u32,
    /// Forgot-password requests per client address an hour.
    pub mail_per_address_per_hour: u32,
    /// E-mail lookups per account an hour (adding team members by e-mail).
    pub email_lookups_per_hour: u32,
}

/// The TOML file: every key optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    listen: Option<String>,
    data_dir: Option<PathBuf>,
    relays: Option<Vec<String>>,
    embedded_relay_listen: Option<String>,
    database_url: Option<String>,
    database_pool_size: Option<u32>,
    nip46_workers: Option<usize>,
    nip46_queue_capacity: Option<usize>,
    redis_url: Option<String>,
    node_id: Option<String>,
    cluster_prefix: Option<String>,
    cluster_ttl_ms: Option<u64>,
    change_poll_ms: Option<u64>,
    kms: Option<KmsKind>,
    master_key_file: Option<PathBuf>,
    log_format: Option<LogFormat>,
    public_url: Option<String>,
    cors_origins: Option<Vec<String>>,
    max_body_bytes: Option<usize>,
    registration_open: Option<bool>,
    oauth_clients: Option<Vec<crate::oauth_clients::OAuthClient>>,
    tenants_by_host: Option<bool>,
    tenants: Option<Vec<crate::tenancy::settings::RawTenant>>,
    smtp_url: Option<String>,
    mail_from: Option<String>,
    metrics_listen: Option<String>,
    min_free_disk_mib: Option<u64>,
    connections: Option<crate::connections::settings::RawConnections>,
    nip46_limits: Option<RawNip46Limits>,
    // Account abuse limits (`AccountLimits`).
    trusted_proxy_header: Option<String>,
    trusted_proxies: Option<Vec<String>>,
    password_hash_slots: Option<usize>,
    password_hash_queue: Option<usize>,
    logins_per_address_per_minute: Option<u32>,
    registrations_per_address_per_hour: Option<u32>,
    login_free_failures: Option<u32>,
    login_max_delay_secs: Option<u64>,
    login_failures_per_email: Option<u32>,
    mail_per_account_per_hour: Option<u32>,
    mail_per_recipient_per_hour: Option<u32>,
    mail_per_address_per_hour: Option<u32>,
    email_lookups_per_hour: Option<u32>,
}

/// `true`, `1`, `yes` or `false`, `0`, `no`, in any case.
pub(crate) fn parse_bool(v: &str) -> Option<bool> {
    match v.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" => Some(true),
        "false" | "0" | "no" => Some(false),
        _ => None,
    }
}

fn bad(setting: &str, reason: impl std::fmt::Display) -> ServerError {
    ServerError::Config(format!("{setting}: {reason}"))
}

/// A number from the environment, else the file, checked against `range`; `None` when
/// neither sets it.
pub(crate) fn number<T>(
    setting: &str,
    env: Option<String>,
    file: Option<T>,
    range: std::ops::RangeInclusive<T>,
) -> Result<Option<T>>
where
    T: std::str::FromStr + PartialOrd + std::fmt::Display + Copy,
    T::Err: std::fmt::Display,
{
    let value = match env {
        Some(v) => v
            .trim()
            .parse()
            .map_err(|e| bad(setting, format!("{v:?}: {e}")))?,
        None => match file {
            Some(v) => v,
            None => return Ok(None),
        },
    };
    if !range.contains(&value) {
        return Err(bad(
            setting,
            format!("{value}: must be {} to {}", range.start(), range.end()),
        ));
    }
    Ok(Some(value))
}

fn list(s: &str) -> Vec<String> {
    s.split(',')
        .map(str::trim)
        .filter(|x| !x.is_empty())
        .map(str::to_owned)
        .collect()
}

impl Config {
    /// Reads `file` (if given), overlays the environment read through `env`, fills defaults
    /// and validates. `env` is `std::env::var` in production; tests pass a map.
    pub fn load(file: Option<&Path>, env: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let file = match file {
            Some(path) => {
                let name = path.display().to_string();
                let text = std::fs::read_to_string(path).map_err(|e| bad(&name, e))?;
                Some((name, text))
            }
            None => None,
        };
        Self::resolve(file.as_ref().map(|(n, t)| (n.as_str(), t.as_str())), env)
    }

    /// [`Config::load`] once the file is read: `file` is its name (for errors) and text.
    fn resolve(file: Option<(&str, &str)>, env: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let f: File = match file {
            Some((name, text)) => toml::from_str(text).map_err(|e| bad(name, e))?,
            None => File::default(),
        };
        let env = |name: &str| env(name).filter(|v| !v.trim().is_empty());
        // Before the fields below are moved out of `f`.
        let accounts = AccountLimits::resolve(&env, &f)?;

        let listen = env("KEYCAST_LISTEN")
            .or(f.listen)
            .unwrap_or_else(|| "127.0.0.1:3000".into());
        let listen: SocketAddr = listen
            .trim()
            .parse()
            .map_err(|e| bad("KEYCAST_LISTEN", format!("{listen:?}: {e}")))?;

        let data_dir = env("KEYCAST_DATA_DIR")
            .map(PathBuf::from)
            .or(f.data_dir)
            .or_else(|| default_data_dir(&env))
            .ok_or_else(|| bad("KEYCAST_DATA_DIR", "not set and no home directory"))?;

        let relays = env("KEYCAST_RELAYS")
            .map(|v| list(&v))
            .or(f.relays)
            .unwrap_or_default()
            .iter()
            .map(|r| {
                let url =
                    RelayUrl::parse(r).map_err(|e| bad("KEYCAST_RELAYS", format!("{r:?}: {e}")))?;
                // Stored and sent as text, so it must read back as itself (`wss:/x/y://z`
                // parses as `wss://x/y://z`, which does not parse again).
                if RelayUrl::parse(url.as_str()).as_ref() != Ok(&url) {
                    return Err(bad("KEYCAST_RELAYS", format!("{r:?} does not read back")));
                }
                Ok(url)
            })
            .collect::<Result<Vec<_>>>()?;

        let relay_listen = env("KEYCAST_EMBEDDED_RELAY_LISTEN")
            .or(f.embedded_relay_listen)
            .unwrap_or_else(|| "127.0.0.1:7777".into());
        let embedded_relay_listen: SocketAddr = relay_listen.trim().parse().map_err(|e| {
            bad(
                "KEYCAST_EMBEDDED_RELAY_LISTEN",
                format!("{relay_listen:?}: {e}"),
            )
        })?;

        let database_url = env("KEYCAST_DATABASE_URL")
            .or_else(|| env("DATABASE_URL"))
            .or(f.database_url)
            .unwrap_or_else(|| format!("sqlite://{}", data_dir.join("keycast.db").display()));
        if !(database_url.starts_with("sqlite:")
            || database_url.starts_with("postgres:")
            || database_url.starts_with("postgresql:"))
        {
            return Err(bad(
                "KEYCAST_DATABASE_URL",
                "must start with sqlite: or postgres:",
            ));
        }

        let cluster = crate::cluster::settings::resolve(
            RawCluster {
                redis_url: env("KEYCAST_REDIS_URL")
                    .or_else(|| env("REDIS_URL"))
                    .or(f.redis_url),
                node_id: env("KEYCAST_NODE_ID").or(f.node_id),
                prefix: env("KEYCAST_CLUSTER_PREFIX").or(f.cluster_prefix),
                ttl_ms: env("KEYCAST_CLUSTER_TTL_MS").or(f.cluster_ttl_ms.map(|v| v.to_string())),
            },
            &data_dir,
            &database_url,
            !relays.is_empty(),
        )?;
        let change_poll_ms = number(
            "KEYCAST_CHANGE_POLL_MS",
            env("KEYCAST_CHANGE_POLL_MS"),
            f.change_poll_ms,
            50..=10_000,
        )?;
        let change_poll = Duration::from_millis(change_poll_ms.unwrap_or(250));
        let database_pool_size = number(
            "KEYCAST_DATABASE_POOL_SIZE",
            env("KEYCAST_DATABASE_POOL_SIZE"),
            f.database_pool_size,
            1..=1000,
        )?;
        let nip46_workers = number(
            "KEYCAST_NIP46_WORKERS",
            env("KEYCAST_NIP46_WORKERS"),
            f.nip46_workers,
            1..=4096,
        )?;
        let nip46_queue_capacity = number(
            "KEYCAST_NIP46_QUEUE_CAPACITY",
            env("KEYCAST_NIP46_QUEUE_CAPACITY"),
            f.nip46_queue_capacity,
            1..=1_000_000,
        )?;

        let kms = match env("KEYCAST_KMS") {
            Some(v) => parse_enum::<KmsKind>("KEYCAST_KMS", &v, "local, aws, gcp or vault")?,
            None => f.kms.unwrap_or(KmsKind::Local),
        };
        let master_key_file = env("KEYCAST_MASTER_KEY_FILE")
            .map(PathBuf::from)
            .or(f.master_key_file)
            .unwrap_or_else(|| data_dir.join("master.key"));

        let log_format = match env("KEYCAST_LOG_FORMAT") {
            Some(v) => parse_enum::<LogFormat>("KEYCAST_LOG_FORMAT", &v, "json or text")?,
            None => f.log_format.unwrap_or_else(|| {
                use std::io::IsTerminal;
                if std::io::stderr().is_terminal() {
                    LogFormat::Text
                } else {
                    LogFormat::Json
                }
            }),
        };

        let public_url = env("KEYCAST_PUBLIC_URL")
            .or(f.public_url)
            .unwrap_or_else(|| format!("http://{listen}"));
        let parsed = keycast_core::nostr::Url::parse(&public_url)
            .map_err(|e| bad("KEYCAST_PUBLIC_URL", format!("{public_url:?}: {e}")))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(bad("KEYCAST_PUBLIC_URL", "must be an http(s) URL"));
        }
        let public_url = public_url.trim_end_matches('/').to_owned();

        let cors_origins = env("KEYCAST_CORS_ORIGINS")
            .map(|v| list(&v))
            .or(f.cors_origins)
            .unwrap_or_default();
        for origin in &cors_origins {
            let ok = keycast_core::nostr::Url::parse(origin)
                .is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.path() == "/");
            if !ok {
                return Err(bad(
                    "KEYCAST_CORS_ORIGINS",
                    format!("{origin:?} is not an origin like https://app.example"),
                ));
            }
        }

        let max_body_bytes = match env("KEYCAST_MAX_BODY_BYTES") {
            Some(v) => v
                .trim()
                .parse()
                .map_err(|e| bad("KEYCAST_MAX_BODY_BYTES", format!("{v:?}: {e}")))?,
            None => f.max_body_bytes.unwrap_or(256 * 1024),
        };
        if max_body_bytes < 1024 {
            return Err(bad("KEYCAST_MAX_BODY_BYTES", "must be at least 1024"));
        }

        let registration_open = match env("KEYCAST_REGISTRATION_OPEN") {
            Some(v) => parse_bool(&v).ok_or_else(|| {
                bad(
                    "KEYCAST_REGISTRATION_OPEN",
                    format!("{v:?}: expected true or false"),
                )
            })?,
            None => f.registration_open.unwrap_or(true),
        };

        let oauth_clients =
            crate::oauth_clients::resolve(env("KEYCAST_OAUTH_CLIENTS"), f.oauth_clients)?;
        let (smtp_setting, smtp_url) = match env("KEYCAST_SMTP_URL") {
            Some(v) => ("KEYCAST_SMTP_URL", Some(v)),
            None => ("smtp_url", f.smtp_url),
        };
        let smtp_url = match smtp_url {
            Some(v) => {
                crate::mail::check_smtp_url(smtp_setting, v.trim())?;
                Some(crate::mail::SmtpUrl(v.trim().to_owned()))
            }
            None => None,
        };
        let (from_setting, mail_from) = match env("KEYCAST_MAIL_FROM") {
            Some(v) => ("KEYCAST_MAIL_FROM", v),
            None => (
                "mail_from",
                f.mail_from
                    .unwrap_or_else(|| "keycast <keycast@localhost>".to_owned()),
            ),
        };
        crate::mail::parse_from(from_setting, &mail_from)?;
        let tenants = crate::tenancy::settings::resolve(
            env("KEYCAST_TENANTS_BY_HOST"),
            env("KEYCAST_TENANTS"),
            f.tenants_by_host,
            f.tenants,
        )?;
        let nip46_limits = Nip46Limits::resolve(&env, f.nip46_limits.unwrap_or_default())?;

        let metrics_listen = match env("KEYCAST_METRICS_LISTEN").or(f.metrics_listen) {
            Some(v) => Some(
                v.trim()
                    .parse::<SocketAddr>()
                    .map_err(|e| bad("KEYCAST_METRICS_LISTEN", format!("{v:?}: {e}")))?,
            ),
            None => None,
        };
        // Port 0 asks for any free port, so two of them never collide.
        if metrics_listen.is_some_and(|m| m == listen && m.port() != 0) {
            return Err(bad(
                "KEYCAST_METRICS_LISTEN",
                "must differ from KEYCAST_LISTEN",
            ));
        }
        let min_free_disk_mib = number(
            "KEYCAST_MIN_FREE_DISK_MIB",
            env("KEYCAST_MIN_FREE_DISK_MIB"),
            f.min_free_disk_mib,
            0..=1_048_576,
        )?
        .unwrap_or(64);
        let connections = crate::connections::settings::resolve(&env, f.connections)?;

        Ok(Self {
            metrics_listen,
            min_free_disk_bytes: min_free_disk_mib * 1024 * 1024,
            connections,
            listen,
            data_dir,
            relays,
            embedded_relay_listen,
            database_url,
            database_pool_size,
            nip46_workers,
            nip46_queue_capacity,
            cluster,
            change_poll,
            kms,
            master_key_file,
            log_format,
            public_url,
            cors_origins,
            max_body_bytes,
            registration_open,
            oauth_clients,
            tenants,
            smtp_url,
            mail_from,
            nip46_limits,
            accounts,
        })
    }

    /// The relays a bunker URI names: the configured ones, or the embedded relay's address.
    pub fn bunker_relays(&self) -> Vec<RelayUrl> {
        if !self.relays.is_empty() {
            return self.relays.clone();
        }
        RelayUrl::parse(&format!("ws://{}", self.embedded_relay_listen))
            .map_or_else(|_| Vec::new(), |u| vec![u])
    }

    /// [`Config::load`] with the process environment.
    pub fn from_env(file: Option<&Path>) -> Result<Self> {
        Self::load(file, |name| std::env::var(name).ok())
    }
}

/// For the `config` fuzz target: [`Config::load`] with `toml_text` as the file and `env` as
/// the whole environment (the last value of a name wins), without touching the file system
/// for the file. It must return, never panic; the answer must be the same when asked twice,
/// an error must be a configuration error, and a config must keep the documented bounds.
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub fn fuzz_load(toml_text: &str, env: &[(String, String)]) -> Result<Config> {
    let lookup = |name: &str| {
        env.iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let config = Config::resolve(Some(("fuzz.toml", toml_text)), lookup);
    let again = Config::resolve(Some(("fuzz.toml", toml_text)), lookup);
    assert_eq!(format!("{config:?}"), format!("{again:?}"), "deterministic");
    match &config {
        Ok(c) => {
            assert!(c.max_body_bytes >= 1024);
            let poll = c.change_poll.as_millis();
            assert!((50..=10_000).contains(&poll), "{poll}");
            assert!(!c.public_url.ends_with('/'), "{}", c.public_url);
            let db = &c.database_url;
            assert!(
                ["sqlite:", "postgres:", "postgresql:"]
                    .iter()
                    .any(|p| db.starts_with(p)),
                "{db:?}"
            );
            for r in &c.relays {
                assert_eq!(
                    RelayUrl::parse(r.as_str()).as_ref(),
                    Ok(r),
                    "stored as text"
                );
            }
            if c.cluster.is_some() {
                assert!(!c.relays.is_empty() && !db.starts_with("sqlite:"));
            }
        }
        Err(ServerError::Config(message)) => assert!(!message.is_empty()),
        Err(other) => panic!("not a configuration error: {other:?}"),
    }
    config
}

// ---- NIP-46 abuse limits (issue 18): intake rate limits and nostrconnect:// relays ----

/// NIP-46 intake limits and the relay policy of `nostrconnect://` pairings; each `None`
/// keeps keycast-nip46's default (see `keycast_nip46::BunkerConfig`). A limit reads
/// `"<count>/<s|min|h>"` with an optional `" burst <n>"` (else the burst is the count),
/// e.g. `"500/s burst 2000"` or `"5/min"`.
///
/// | TOML key (in `[nip46_limits]`) | environment | default |
/// |---|---|---|
/// | `client` | `KEYCAST_NIP46_CLIENT_LIMIT` | `500/s burst 2000`: requests from one client key bound to the bunker it writes to |
/// | `bunker` | `KEYCAST_NIP46_BUNKER_LIMIT` | `200/s burst 2000`: requests to one bunker key |
/// | `unbound_client` | `KEYCAST_NIP46_UNBOUND_CLIENT_LIMIT` | `10/s burst 100`: requests from one client key not bound to that bunker (a `connect`) |
/// | `unbound_bunker` | `KEYCAST_NIP46_UNBOUND_BUNKER_LIMIT` | `12/min burst 10`: unbound requests to one bunker key |
/// | `unbound` | `KEYCAST_NIP46_UNBOUND_LIMIT` | `100/s burst 500`: unbound requests over all bunkers |
/// | `pairing` | `KEYCAST_NIP46_PAIRING_LIMIT` | `5/min`: `nostrconnect://` pairings per account (then 429) |
/// | `relay_allow_list` | `KEYCAST_RELAY_ALLOW_LIST` (comma-separated hosts) | none: relays other than `relays` may only be at public addresses |
/// | `relays_per_uri` | `KEYCAST_RELAY_MAX_PER_URI` (0–100) | `3`: relays besides `relays` in one `nostrconnect://` URI |
/// | `relays_per_account` | `KEYCAST_RELAY_MAX_PER_ACCOUNT` (0–1000) | `10`: distinct such relays over an account's active authorizations |
/// | `req_max_bytes` | `KEYCAST_NIP46_REQ_MAX_BYTES` (1024–1048576) | `32768`: largest subscription `REQ`; the bunker keys are split over as many as needed |
/// | `subscriptions_per_connection` | `KEYCAST_NIP46_SUBSCRIPTIONS_PER_CONNECTION` (1–10000) | `20`: `REQ`s on one relay connection; more open further connections |
///
/// Over an intake limit a request is dropped without a reply (counted); the allow-list
/// replaces the address rules (no loopback, private, link-local, CGNAT, metadata …) for
/// the hosts it names, and refuses every other host. `relays` and the embedded relay are
/// always allowed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Nip46Limits {
    /// `client`.
    pub client: Option<RateSetting>,
    /// `bunker`.
    pub bunker: Option<RateSetting>,
    /// `unbound_client`.
    pub unbound_client: Option<RateSetting>,
    /// `unbound_bunker`.
    pub unbound_bunker: Option<RateSetting>,
    /// `unbound`.
    pub unbound: Option<RateSetting>,
    /// `pairing`.
    pub pairing: Option<RateSetting>,
    /// `relay_allow_list`.
    pub relay_allow_list: Option<Vec<String>>,
    /// `relays_per_uri`.
    pub relays_per_uri: Option<usize>,
    /// `relays_per_account`.
    pub relays_per_account: Option<usize>,
    /// `req_max_bytes`.
    pub req_max_bytes: Option<usize>,
    /// `subscriptions_per_connection`.
    pub subscriptions_per_connection: Option<usize>,
}

/// A parsed limit: `count` per `per`, up to `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateSetting {
    /// Requests per period (1–1,000,000).
    pub count: u32,
    /// The period: 1 s, 1 min or 1 h.
    pub per: Duration,
    /// At once (1–1,000,000).
    pub burst: u32,
}

impl RateSetting {
    /// `"<count>/<s|min|h>[ burst <n>]"`.
    fn parse(setting: &str, text: &str) -> Result<Self> {
        let wrong = || {
            bad(
                setting,
                format!("{text:?}: expected like \"500/s burst 2000\" or \"5/min\""),
            )
        };
        let mut words = text.split_whitespace();
        let (count, unit) = words
            .next()
            .and_then(|r| r.split_once('/'))
            .ok_or_else(wrong)?;
        let count: u32 = count.parse().map_err(|_| wrong())?;
        let per = match unit {
            "s" | "sec" => Duration::from_secs(1),
            "min" | "m" => Duration::from_secs(60),
            "h" => Duration::from_secs(3600),
            _ => return Err(wrong()),
        };
        let burst = match (words.next(), words.next(), words.next()) {
            (None, _, _) => count,
            (Some("burst"), Some(n), None) => n.parse().map_err(|_| wrong())?,
            _ => return Err(wrong()),
        };
        for (what, n) in [("count", count), ("burst", burst)] {
            if !(1..=1_000_000).contains(&n) {
                return Err(bad(
                    setting,
                    format!("{text:?}: {what} must be 1 to 1000000"),
                ));
            }
        }
        Ok(Self { count, per, burst })
    }

    /// As keycast-nip46 takes it.
    pub fn rate_limit(&self) -> keycast_nip46::RateLimit {
        keycast_nip46::RateLimit::new(f64::from(self.count) / self.per.as_secs_f64(), self.burst)
    }
}

/// `[nip46_limits]` in the file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNip46Limits {
    client: Option<String>,
    bunker: Option<String>,
    unbound_client: Option<String>,
    unbound_bunker: Option<String>,
    unbound: Option<String>,
    pairing: Option<String>,
    relay_allow_list: Option<Vec<String>>,
    relays_per_uri: Option<usize>,
    relays_per_account: Option<usize>,
    req_max_bytes: Option<usize>,
    subscriptions_per_connection: Option<usize>,
}

impl Nip46Limits {
    fn resolve(env: &impl Fn(&str) -> Option<String>, f: RawNip46Limits) -> Result<Self> {
        let limit = |name: &str, file: Option<String>| -> Result<Option<RateSetting>> {
            env(name)
                .or(file)
                .map(|v| RateSetting::parse(name, v.trim()))
                .transpose()
        };
        let relay_allow_list = match env("KEYCAST_RELAY_ALLOW_LIST") {
            Some(v) => Some(list(&v)),
            None => f.relay_allow_list,
        };
        for host in relay_allow_list.iter().flatten() {
            let bare = host.trim_start_matches('[').trim_end_matches(']');
            let ok = (!host.is_empty() && !host.contains(['/', ':', '?', '#', '@', ' ']))
                || bare.parse::<std::net::Ipv6Addr>().is_ok();
            if !ok {
                return Err(bad(
                    "KEYCAST_RELAY_ALLOW_LIST",
                    format!("{host:?} is not a host name or IP address"),
                ));
            }
        }
        Ok(Self {
            client: limit("KEYCAST_NIP46_CLIENT_LIMIT", f.client)?,
            bunker: limit("KEYCAST_NIP46_BUNKER_LIMIT", f.bunker)?,
            unbound_client: limit("KEYCAST_NIP46_UNBOUND_CLIENT_LIMIT", f.unbound_client)?,
            unbound_bunker: limit("KEYCAST_NIP46_UNBOUND_BUNKER_LIMIT", f.unbound_bunker)?,
            unbound: limit("KEYCAST_NIP46_UNBOUND_LIMIT", f.unbound)?,
            pairing: limit("KEYCAST_NIP46_PAIRING_LIMIT", f.pairing)?,
            relay_allow_list,
            relays_per_uri: number(
                "KEYCAST_RELAY_MAX_PER_URI",
                env("KEYCAST_RELAY_MAX_PER_URI"),
                f.relays_per_uri,
                0..=100,
            )?,
            relays_per_account: number(
                "KEYCAST_RELAY_MAX_PER_ACCOUNT",
                env("KEYCAST_RELAY_MAX_PER_ACCOUNT"),
                f.relays_per_account,
                0..=1000,
            )?,
            req_max_bytes: number(
                "KEYCAST_NIP46_REQ_MAX_BYTES",
                env("KEYCAST_NIP46_REQ_MAX_BYTES"),
                f.req_max_bytes,
                1_024..=1_048_576,
            )?,
            subscriptions_per_connection: number(
                "KEYCAST_NIP46_SUBSCRIPTIONS_PER_CONNECTION",
                env("KEYCAST_NIP46_SUBSCRIPTIONS_PER_CONNECTION"),
                f.subscriptions_per_connection,
                1..=10_000,
            )?,
        })
    }

    /// Sets what is configured on `bunker`; the rest keeps the library's defaults.
    pub fn apply(&self, bunker: &mut keycast_nip46::BunkerConfig) {
        let set = |target: &mut keycast_nip46::RateLimit, value: Option<RateSetting>| {
            if let Some(v) = value {
                *target = v.rate_limit();
            }
        };
        set(&mut bunker.client_limit, self.client);
        set(&mut bunker.bunker_limit, self.bunker);
        set(&mut bunker.unbound_client_limit, self.unbound_client);
        set(&mut bunker.unbound_bunker_limit, self.unbound_bunker);
        set(&mut bunker.unbound_limit, self.unbound);
        set(&mut bunker.pairing_limit, self.pairing);
        if let Some(hosts) = &self.relay_allow_list {
            bunker.relay_allow_list = Some(hosts.clone());
        }
        if let Some(n) = self.relays_per_uri {
            bunker.max_relays_per_uri = n;
        }
        if let Some(n) = self.relays_per_account {
            bunker.max_relays_per_account = n;
        }
        if let Some(n) = self.req_max_bytes {
            bunker.req_max_bytes = n;
        }
        if let Some(n) = self.subscriptions_per_connection {
            bunker.subscriptions_per_connection = n;
        }
    }
}

// ---- end of the NIP-46 abuse limits ----

impl AccountLimits {
    /// The limits from the environment, else the file, else the defaults.
    fn resolve(env: &impl Fn(&str) -> Option<String>, f: &File) -> Result<Self> {
        let trusted_proxy = crate::http::TrustedProxy::parse(
            "KEYCAST_TRUSTED_PROXY_HEADER",
            env("KEYCAST_TRUSTED_PROXY_HEADER")
                .or_else(|| f.trusted_proxy_header.clone())
                .as_deref(),
            "KEYCAST_TRUSTED_PROXIES",
            env("KEYCAST_TRUSTED_PROXIES")
                .or_else(|| f.trusted_proxies.as_ref().map(|p| p.join(",")))
                .as_deref(),
        )
        .map_err(ServerError::Config)?;
        let cores = std::thread::available_parallelism().map_or(2, usize::from);
        let password_hash_slots = number(
            "KEYCAST_PASSWORD_HASH_SLOTS",
            env("KEYCAST_PASSWORD_HASH_SLOTS"),
            f.password_hash_slots,
            1..=256,
        )?
        .unwrap_or(cores.max(2));
        let password_hash_queue = number(
            "KEYCAST_PASSWORD_HASH_QUEUE",
            env("KEYCAST_PASSWORD_HASH_QUEUE"),
            f.password_hash_queue,
            0..=10_000,
        )?
        .unwrap_or(8 * password_hash_slots);
        let count = |setting: &str, file: Option<u32>, max: u32, default: u32| {
            number(setting, env(setting), file, 1..=max).map(|v| v.unwrap_or(default))
        };
        let max_delay = number(
            "KEYCAST_LOGIN_MAX_DELAY_SECS",
            env("KEYCAST_LOGIN_MAX_DELAY_SECS"),
            f.login_max_delay_secs,
            1..=86_400,
        )?
        .unwrap_or(900);
        Ok(Self {
            trusted_proxy,
            password_hash_slots,
            password_hash_queue,
            logins_per_address_per_minute: count(
                "KEYCAST_LOGINS_PER_ADDRESS_PER_MINUTE",
                f.logins_per_address_per_minute,
                100_000,
                30,
            )?,
            registrations_per_address_per_hour: count(
                "KEYCAST_REGISTRATIONS_PER_ADDRESS_PER_HOUR",
                f.registrations_per_address_per_hour,
                100_000,
                10,
            )?,
            login_free_failures: count(
                "KEYCAST_LOGIN_FREE_FAILURES",
                f.login_free_failures,
                1000,
                5,
            )?,
            login_max_delay: Duration::from_secs(max_delay),
            login_failures_per_email: count(
                "KEYCAST_LOGIN_FAILURES_PER_EMAIL",
                f.login_failures_per_email,
                1_000_000,
                50,
            )?,
            mail_per_account_per_hour: count(
                "KEYCAST_MAIL_PER_ACCOUNT_PER_HOUR",
                f.mail_per_account_per_hour,
                10_000,
                5,
            )?,
            mail_per_recipient_per_hour: count(
                "KEYCAST_MAIL_PER_RECIPIENT_PER_HOUR",
                f.mail_per_recipient_per_hour,
                10_000,
                5,
            )?,
            mail_per_address_per_hour: count(
                "KEYCAST_MAIL_PER_ADDRESS_PER_HOUR",
                f.mail_per_address_per_hour,
                100_000,
                20,
            )?,
            email_lookups_per_hour: count(
                "KEYCAST_EMAIL_LOOKUPS_PER_HOUR",
                f.email_lookups_per_hour,
                100_000,
                60,
            )?,
        })
    }
}

fn default_data_dir(env: &impl Fn(&str) -> Option<String>) -> Option<PathBuf> {
    env("XDG_DATA_HOME")
        .map(|d| PathBuf::from(d).join("keycast"))
        .or_else(|| env("HOME").map(|h| PathBuf::from(h).join(".local/share/keycast")))
}

fn parse_enum<T: for<'de> Deserialize<'de>>(
    setting: &str,
    value: &str,
    expected: &str,
) -> Result<T> {
    T::deserialize(
        serde::de::value::StrDeserializer::<serde::de::value::Error>::new(
            &value.trim().to_ascii_lowercase(),
        ),
    )
    .map_err(|_| bad(setting, format!("{value:?}: expected {expected}")))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn load(vars: &[(&str, &str)], file: Option<&str>) -> Result<Config> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let path = file.map(|text| {
            let dir = std::env::temp_dir().join(format!("keycast-config-{}", uuid::Uuid::new_v4()));
            std::fs::create_dir_all(&dir).expect("dir");
            let path = dir.join("keycast.toml");
            std::fs::write(&path, text).expect("write");
            path
        });
        Config::load(path.as_deref(), |k| vars.get(k).cloned())
    }

    #[test]
    fn defaults_need_only_a_home() {
        let c = load(&[("HOME", "/home/ann")], None).expect("defaults");
        assert_eq!(c.listen, "127.0.0.1:3000".parse().expect("addr"));
        assert_eq!(c.data_dir, PathBuf::from("/home/ann/.local/share/keycast"));
        assert_eq!(
            c.database_url,
            "sqlite:///home/ann/.local/share/keycast/keycast.db"
        );
        assert_eq!(
            c.master_key_file,
            PathBuf::from("/home/ann/.local/share/keycast/master.key")
        );
        assert!(c.relays.is_empty());
        assert_eq!(c.kms, KmsKind::Local);
        assert_eq!(c.cluster, None);
        assert_eq!(c.change_poll, Duration::from_millis(250));
        assert_eq!(c.public_url, "http://127.0.0.1:3000");
        assert_eq!(c.max_body_bytes, 256 * 1024);
    }

    #[test]
    fn env_wins_over_the_file_and_aliases_are_accepted() {
        let file = r#"
            listen = "127.0.0.1:4000"
            data_dir = "/srv/keycast"
            relays = ["wss://file.example"]
            kms = "vault"
            log_format = "text"
        "#;
        let c = load(
            &[
                ("KEYCAST_LISTEN", "0.0.0.0:5000"),
                ("KEYCAST_RELAYS", "wss://a.example, ws://127.0.0.1:7000"),
                ("DATABASE_URL", "postgres://db/keycast"),
                ("REDIS_URL", "redis://127.0.0.1:6379"),
                ("KEYCAST_LOG_FORMAT", "JSON"),
            ],
            Some(file),
        )
        .expect("config");
        assert_eq!(c.listen.port(), 5000);
        assert_eq!(c.data_dir, PathBuf::from("/srv/keycast"));
        assert_eq!(c.relays.len(), 2);
        assert_eq!(
            c.relays[1].as_str_without_trailing_slash(),
            "ws://127.0.0.1:7000"
        );
        assert_eq!(c.database_url, "postgres://db/keycast");
        let cluster = c.cluster.as_ref().expect("cluster mode");
        assert_eq!(cluster.redis_url, "redis://127.0.0.1:6379");
        assert_eq!(c.kms, KmsKind::Vault, "from the file");
        assert_eq!(c.log_format, LogFormat::Json, "env wins, case-insensitive");
        let c = load(
            &[
                ("KEYCAST_DATA_DIR", "/d"),
                ("KEYCAST_DATABASE_URL", "sqlite:///x.db"),
                ("DATABASE_URL", "postgres://y"),
            ],
            None,
        )
        .expect("config");
        assert_eq!(
            c.database_url, "sqlite:///x.db",
            "KEYCAST_ name wins over the alias"
        );
    }

    #[test]
    fn bad_settings_name_the_setting() {
        // (environment, file, the setting the error must name)
        type Case<'a> = (&'a [(&'a str, &'a str)], Option<&'a str>, &'a str);
        let cases: &[Case] = &[
            (&[("KEYCAST_LISTEN", "localhost")], None, "KEYCAST_LISTEN"),
            (
                &[("KEYCAST_RELAYS", "http://not-a-relay")],
                None,
                "KEYCAST_RELAYS",
            ),
            (
                &[("KEYCAST_RELAYS", "wss://a.example,wss:/x/y://z")],
                None,
                "KEYCAST_RELAYS",
            ),
            (
                &[("KEYCAST_DATABASE_URL", "mysql://x")],
                None,
                "KEYCAST_DATABASE_URL",
            ),
            (
                &[("KEYCAST_REDIS_URL", "127.0.0.1:6379")],
                None,
                "KEYCAST_REDIS_URL",
            ),
            (&[("KEYCAST_KMS", "hsm")], None, "KEYCAST_KMS"),
            (&[("KEYCAST_LOG_FORMAT", "xml")], None, "KEYCAST_LOG_FORMAT"),
            (
                &[("KEYCAST_PUBLIC_URL", "ftp://x")],
                None,
                "KEYCAST_PUBLIC_URL",
            ),
            (
                &[("KEYCAST_CORS_ORIGINS", "https://a.example/path")],
                None,
                "KEYCAST_CORS_ORIGINS",
            ),
            (
                &[("KEYCAST_MAX_BODY_BYTES", "-1")],
                None,
                "KEYCAST_MAX_BODY_BYTES",
            ),
            (
                &[("KEYCAST_MAX_BODY_BYTES", "10")],
                None,
                "KEYCAST_MAX_BODY_BYTES",
            ),
            (
                &[("KEYCAST_CHANGE_POLL_MS", "5")],
                None,
                "KEYCAST_CHANGE_POLL_MS",
            ),
            (
                &[("KEYCAST_DATABASE_POOL_SIZE", "0")],
                None,
                "KEYCAST_DATABASE_POOL_SIZE",
            ),
            (
                &[("KEYCAST_DATABASE_POOL_SIZE", "many")],
                None,
                "KEYCAST_DATABASE_POOL_SIZE",
            ),
            (
                &[("KEYCAST_NIP46_WORKERS", "5000")],
                None,
                "KEYCAST_NIP46_WORKERS",
            ),
            (
                &[("KEYCAST_NIP46_QUEUE_CAPACITY", "-3")],
                None,
                "KEYCAST_NIP46_QUEUE_CAPACITY",
            ),
            (&[], Some("nip46_workers = 0"), "KEYCAST_NIP46_WORKERS"),
            (
                &[("KEYCAST_REDIS_URL", "redis://r")],
                None,
                "cluster mode needs a Postgres",
            ),
            (
                &[("KEYCAST_PASSWORD_HASH_SLOTS", "0")],
                None,
                "KEYCAST_PASSWORD_HASH_SLOTS",
            ),
            (
                &[("KEYCAST_PASSWORD_HASH_QUEUE", "many")],
                None,
                "KEYCAST_PASSWORD_HASH_QUEUE",
            ),
            (
                &[("KEYCAST_LOGINS_PER_ADDRESS_PER_MINUTE", "0")],
                None,
                "KEYCAST_LOGINS_PER_ADDRESS_PER_MINUTE",
            ),
            (
                &[("KEYCAST_LOGIN_MAX_DELAY_SECS", "100000")],
                None,
                "KEYCAST_LOGIN_MAX_DELAY_SECS",
            ),
            (
                &[],
                Some("mail_per_recipient_per_hour = 0"),
                "KEYCAST_MAIL_PER_RECIPIENT_PER_HOUR",
            ),
            (
                &[("KEYCAST_TRUSTED_PROXY_HEADER", "x-forwarded-for")],
                None,
                "KEYCAST_TRUSTED_PROXIES",
            ),
            (
                &[
                    ("KEYCAST_TRUSTED_PROXY_HEADER", "x-forwarded-for"),
                    ("KEYCAST_TRUSTED_PROXIES", "10.0.0.0/99"),
                ],
                None,
                "KEYCAST_TRUSTED_PROXIES",
            ),
            (&[], Some("listne = \"typo\""), "keycast.toml"),
            (&[], Some("listen = 3000"), "keycast.toml"),
        ];
        for (vars, file, setting) in cases {
            let mut vars = vars.to_vec();
            vars.push(("HOME", "/home/ann"));
            let err = load(&vars, *file).expect_err(setting).to_string();
            assert!(err.contains(setting), "{setting}: {err}");
        }
    }

    #[test]
    fn account_limits_have_defaults_and_come_from_the_environment_or_the_file() {
        let home = ("HOME", "/home/ann");
        let a = load(&[home], None).expect("defaults").accounts;
        assert_eq!(a.trusted_proxy, None);
        assert!(a.password_hash_slots >= 2);
        assert_eq!(a.password_hash_queue, 8 * a.password_hash_slots);
        assert_eq!(
            (
                a.logins_per_address_per_minute,
                a.registrations_per_address_per_hour,
                a.login_free_failures,
                a.login_max_delay,
                a.login_failures_per_email,
            ),
            (30, 10, 5, Duration::from_secs(900), 50)
        );
        assert_eq!(
            (
                a.mail_per_account_per_hour,
                a.mail_per_recipient_per_hour,
                a.mail_per_address_per_hour,
                a.email_lookups_per_hour,
            ),
            (5, 5, 20, 60)
        );
        let file =
            "trusted_proxy_header = \"X-Real-IP\"\ntrusted_proxies = [\"10.0.0.0/8\", \"::1\"]\n\
                    password_hash_slots = 3\nlogin_max_delay_secs = 60";
        let a = load(&[home, ("KEYCAST_PASSWORD_HASH_QUEUE", "0")], Some(file))
            .expect("set")
            .accounts;
        let proxy = a.trusted_proxy.expect("a trusted proxy");
        assert_eq!(proxy.header.as_str(), "x-real-ip");
        assert_eq!(proxy.proxies.len(), 2);
        assert_eq!((a.password_hash_slots, a.password_hash_queue), (3, 0));
        assert_eq!(a.login_max_delay, Duration::from_secs(60));
    }

    #[test]
    fn sizing_settings_come_from_the_environment_or_the_file() {
        let home = ("HOME", "/home/ann");
        let c = load(&[home], None).expect("defaults");
        assert_eq!(
            (
                c.database_pool_size,
                c.nip46_workers,
                c.nip46_queue_capacity
            ),
            (None, None, None),
            "unset: the backends' own defaults"
        );
        let file = "database_pool_size = 12\nnip46_workers = 16\nnip46_queue_capacity = 100";
        let c = load(&[home, ("KEYCAST_NIP46_WORKERS", "32")], Some(file)).expect("set");
        assert_eq!(c.database_pool_size, Some(12));
        assert_eq!(c.nip46_workers, Some(32), "the environment wins");
        assert_eq!(c.nip46_queue_capacity, Some(100));
    }

    #[test]
    fn nip46_limits_come_from_the_environment_or_the_file_and_bad_ones_name_the_setting() {
        let home = ("HOME", "/home/ann");
        let c = load(&[home], None).expect("defaults");
        assert_eq!(
            c.nip46_limits,
            Nip46Limits::default(),
            "unset: the library's own"
        );
        let file = "[nip46_limits]\nclient = \"50/s burst 80\"\nrelay_allow_list = [\"relay.example\"]\nrelays_per_uri = 2";
        let c = load(
            &[
                home,
                ("KEYCAST_NIP46_UNBOUND_BUNKER_LIMIT", "12/min"),
                ("KEYCAST_NIP46_PAIRING_LIMIT", "3/h burst 1"),
                (
                    "KEYCAST_RELAY_ALLOW_LIST",
                    "127.0.0.1, relay.example, [::1]",
                ),
                ("KEYCAST_RELAY_MAX_PER_ACCOUNT", "4"),
                ("KEYCAST_NIP46_REQ_MAX_BYTES", "65536"),
                ("KEYCAST_NIP46_SUBSCRIPTIONS_PER_CONNECTION", "30"),
            ],
            Some(file),
        )
        .expect("set");
        let l = &c.nip46_limits;
        assert_eq!(
            l.client,
            Some(RateSetting {
                count: 50,
                per: Duration::from_secs(1),
                burst: 80
            })
        );
        assert_eq!(
            l.unbound_bunker,
            Some(RateSetting {
                count: 12,
                per: Duration::from_secs(60),
                burst: 12
            })
        );
        assert_eq!(
            l.relay_allow_list.as_deref(),
            Some(
                &[
                    "127.0.0.1".to_owned(),
                    "relay.example".to_owned(),
                    "[::1]".to_owned()
                ][..]
            ),
            "the environment wins"
        );
        assert_eq!((l.relays_per_uri, l.relays_per_account), (Some(2), Some(4)));
        assert_eq!(l.req_max_bytes, Some(65_536));
        let mut bunker = keycast_nip46::BunkerConfig::new(Vec::new());
        let untouched = bunker.bunker_limit;
        l.apply(&mut bunker);
        assert_eq!(bunker.client_limit, keycast_nip46::RateLimit::new(50.0, 80));
        assert_eq!(
            bunker.unbound_bunker_limit,
            keycast_nip46::RateLimit::new(0.2, 12)
        );
        assert_eq!(bunker.pairing_limit.burst, 1);
        assert!((bunker.pairing_limit.per_second - 3.0 / 3600.0).abs() < 1e-12);
        assert_eq!(bunker.bunker_limit, untouched);
        assert_eq!(
            (bunker.max_relays_per_uri, bunker.max_relays_per_account),
            (2, 4)
        );
        assert_eq!(bunker.req_max_bytes, 65_536);
        assert_eq!(bunker.subscriptions_per_connection, 30);

        for (name, value) in [
            ("KEYCAST_NIP46_CLIENT_LIMIT", "fast"),
            ("KEYCAST_NIP46_BUNKER_LIMIT", "10/day"),
            ("KEYCAST_NIP46_UNBOUND_LIMIT", "0/s"),
            ("KEYCAST_NIP46_UNBOUND_CLIENT_LIMIT", "5/s burst"),
            ("KEYCAST_NIP46_PAIRING_LIMIT", "5/min burst 0"),
            ("KEYCAST_RELAY_ALLOW_LIST", "ws://relay.example"),
            ("KEYCAST_RELAY_MAX_PER_URI", "500"),
            ("KEYCAST_RELAY_MAX_PER_ACCOUNT", "-1"),
            ("KEYCAST_NIP46_REQ_MAX_BYTES", "100"),
            ("KEYCAST_NIP46_SUBSCRIPTIONS_PER_CONNECTION", "0"),
        ] {
            let err = load(&[home, (name, value)], None)
                .expect_err(name)
                .to_string();
            assert!(err.contains(name), "{name}: {err}");
        }
        let err = load(&[home], Some("[nip46_limits]\nclinet = \"1/s\""))
            .expect_err("typo")
            .to_string();
        assert!(err.contains("keycast.toml"), "{err}");
    }
}
