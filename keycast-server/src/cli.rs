//! The command line: `serve` (default) and the operator commands. Results go to stdout
//! (a bunker URI alone on its line), logs and errors to stderr.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use clap::{Parser, Subcommand};
use keycast_core::nostr::nips::nip49::EncryptedSecretKey;
use keycast_core::nostr::{FromBech32, SecretKey, Timestamp, ToBech32};
use keycast_core::{
    AuthorizationId, KeyId, KeyKind, Label, NewAuthorization, Permission, Policy, TenantId, User,
    Username,
};
use keycast_nip46::BunkerUri;

use crate::config::Config;
use crate::services::Services;

/// keycast-server: Nostr key custody over HTTP and NIP-46.
#[derive(Debug, Parser)]
#[command(version, about)]
pub struct Cli {
    /// TOML settings file (environment variables override it).
    #[arg(long, global = true, env = "KEYCAST_CONFIG")]
    pub config: Option<PathBuf>,
    /// What to do; `serve` when omitted.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP API and the NIP-46 service (the default).
    Serve,
    /// Create or update the database schema, then exit.
    Migrate,
    /// Manage tenants and the hosts they are served at (tenants by host).
    #[command(subcommand)]
    Tenant(crate::tenancy::admin::TenantCommand),
    /// Manage users.
    #[command(subcommand)]
    User(UserCommand),
    /// Manage keys.
    #[command(subcommand)]
    Key(KeyCommand),
    /// Manage app authorizations.
    #[command(subcommand)]
    Authorization(AuthorizationCommand),
    /// Master-key operations.
    #[command(subcommand)]
    Kms(KmsCommand),
    /// Copy the SQLite database to a new file while the server keeps running (an online,
    /// consistent backup). Postgres installs use pg_dump. The master key is not in it: keep
    /// a copy of the master-key file (or rely on the cloud KMS) as well.
    Backup {
        /// The file to create (0600); it must not exist.
        to: PathBuf,
    },
    /// Replace the SQLite database with a backup made by `backup`, after checking it and
    /// bringing its schema up to date. The server must be stopped: this takes its data-dir
    /// lock.
    Restore {
        /// The backup file (left as it is).
        from: PathBuf,
    },
    /// Exit 0 when the running server is ready, 1 otherwise (for container and systemd
    /// health checks).
    Healthcheck {
        /// Server base URL; default `http://<listen>`.
        #[arg(long)]
        url: Option<String>,
    },
}

/// `user …`
#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Add a user (no password; accounts log in over HTTP once they set one).
    Add {
        /// 1–64 characters: letters, digits, `.`, `_`, `-`.
        username: String,
        /// The user's tenant (see `tenant list`).
        #[arg(long, default_value = "default")]
        tenant: String,
    },
}

/// `key …`
#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Generate a new key for a user; prints its id and npub.
    Generate {
        /// Owner.
        #[arg(long)]
        user: String,
        /// The owner's tenant.
        #[arg(long, default_value = "default")]
        tenant: String,
        /// A name for the key.
        #[arg(long, default_value = "main")]
        label: String,
    },
    /// Import a secret key read from stdin (nsec, 64 hex characters, or a NIP-49
    /// ncryptsec followed by its password on the next line); never from the command line,
    /// where other users could read it.
    Import {
        /// Owner.
        #[arg(long)]
        user: String,
        /// The owner's tenant.
        #[arg(long, default_value = "default")]
        tenant: String,
        /// A name for the key.
        #[arg(long, default_value = "imported")]
        label: String,
    },
    /// List keys: id, npub, label, owner.
    List {
        /// Only this user's keys.
        #[arg(long)]
        user: Option<String>,
        /// The tenant whose keys to list.
        #[arg(long, default_value = "default")]
        tenant: String,
    },
    /// Delete a user key with its authorizations and their tokens; apps using it are
    /// refused from then on. Prints `deleted <id>`.
    Delete {
        /// The key's id (see `key list`).
        id: String,
    },
}

/// `authorization …`
#[derive(Debug, Subcommand)]
pub enum AuthorizationCommand {
    /// Authorize an app to use a key with full access; prints the bunker:// URI alone on
    /// a line of stdout.
    Create {
        /// The key's id (see `key list`).
        #[arg(long)]
        key: String,
        /// A name for the app.
        #[arg(long, default_value = "app")]
        label: String,
        /// Refuse requests after this many seconds.
        #[arg(long)]
        expires_in: Option<u64>,
        /// Also issue an HTTP RPC token, printed on a second line (`token <secret>`).
        #[arg(long)]
        with_token: bool,
    },
    /// Revoke an authorization; its apps are refused from then on.
    Revoke {
        /// The authorization's id.
        id: String,
    },
}

/// `kms …`
#[derive(Debug, Subcommand)]
pub enum KmsCommand {
    /// Rewrap every stored key's data key under the current master key (resumable).
    Rotate {
        /// An older local master-key file whose rows should be moved to the current one.
        #[arg(long)]
        previous_master_key_file: Option<PathBuf>,
    },
}

/// Parses the arguments and runs; returns the process exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("keycast-server: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let threads = runtime_threads(std::env::var("TOKIO_WORKER_THREADS"))?;
    let config = Config::from_env(cli.config.as_deref()).context("loading settings")?;
    crate::logging::init(config.log_format);
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = threads {
        runtime.worker_threads(n);
    }
    let runtime = runtime
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(dispatch(config, cli.command.unwrap_or(Command::Serve)))
}

/// Most async runtime threads `TOKIO_WORKER_THREADS` may ask for.
const MAX_RUNTIME_THREADS: usize = 1_024;

/// The async runtime's thread count from tokio's own `TOKIO_WORKER_THREADS` (unset: one
/// per core), checked here because tokio panics on a bad value.
fn runtime_threads(value: Result<String, std::env::VarError>) -> anyhow::Result<Option<usize>> {
    let value = match value {
        Err(std::env::VarError::NotPresent) => return Ok(None),
        Err(std::env::VarError::NotUnicode(v)) => v.to_string_lossy().into_owned(),
        Ok(v) => v,
    };
    match value.trim().parse::<usize>() {
        Ok(n) if (1..=MAX_RUNTIME_THREADS).contains(&n) => Ok(Some(n)),
        _ => anyhow::bail!(
            "TOKIO_WORKER_THREADS={value:?}: use a whole number of async runtime threads from 1 \
             to {MAX_RUNTIME_THREADS}, or leave it unset for one per core"
        ),
    }
}

async fn dispatch(config: Config, command: Command) -> anyhow::Result<ExitCode> {
    let open = || async {
        Services::open(&config, None)
            .await
            .context("opening the database and key manager")
    };
    match command {
        Command::Serve => {
            crate::serve::serve(config.clone(), crate::serve::stop_signal())
                .await
                .context("serving")?;
        }
        Command::Migrate => {
            open().await?;
            println!("database is up to date");
        }
        Command::Tenant(cmd) => crate::tenancy::admin::run(&open().await?, cmd).await?,
        Command::User(UserCommand::Add { username, tenant }) => {
            let s = open().await?;
            let tenant = tenant_id(&s, &tenant).await?;
            let user = User::new(tenant, Username::parse(&username)?, None);
            s.store
                .create_user(&user)
                .await
                .with_context(|| format!("adding user {username:?}"))?;
            println!("{}", user.id);
        }
        Command::Key(cmd) => key(open().await?, cmd).await?,
        Command::Authorization(cmd) => authorization(open().await?, cmd).await?,
        Command::Kms(KmsCommand::Rotate {
            previous_master_key_file,
        }) => {
            let s = Services::open(&config, previous_master_key_file).await?;
            let report = keycast_kms::rotation::rotate(
                s.store.clone(),
                &s.keyring,
                &Default::default(),
                |r| eprintln!("rewrapped {} so far", r.rewrapped),
            )
            .await
            .context("rotating")?;
            println!(
                "rewrapped {}, changed concurrently {}, failed {}",
                report.rewrapped,
                report.skipped_concurrent,
                report.failed.len()
            );
            for (id, reason) in &report.failed {
                eprintln!("key {id}: {reason}");
            }
            if !report.failed.is_empty() {
                return Ok(ExitCode::FAILURE);
            }
        }
        Command::Backup { to } => {
            let db = sqlite(&config, "backup", "pg_dump").await?;
            db.backup_to(&to)
                .await
                .with_context(|| format!("backing up to {}", to.display()))?;
            println!("backed up to {}", to.display());
        }
        Command::Restore { from } => restore(&config, &from).await?,
        Command::Healthcheck { url } => return healthcheck(&config, url).await,
    }
    Ok(ExitCode::SUCCESS)
}

async fn tenant_id(s: &Services, name: &str) -> anyhow::Result<TenantId> {
    crate::tenancy::admin::tenant_named(s, name)
        .await
        .context("--tenant")
}

async fn user_id(
    s: &Services,
    tenant: TenantId,
    username: &str,
) -> anyhow::Result<keycast_core::UserId> {
    let name = Username::parse(username)?;
    let user = s
        .store
        .find_user(tenant, &name)
        .await
        .with_context(|| format!("no user {username:?} (add one with `user add`)"))?;
    Ok(user.id)
}

async fn key(s: Services, cmd: KeyCommand) -> anyhow::Result<()> {
    match cmd {
        KeyCommand::Generate {
            user,
            tenant,
            label,
        } => {
            let tenant = tenant_id(&s, &tenant).await?;
            add_key(&s, tenant, &user, &label, None).await?
        }
        KeyCommand::Import {
            user,
            tenant,
            label,
        } => {
            let tenant = tenant_id(&s, &tenant).await?;
            let secret = read_secret(std::io::stdin().lock())?;
            add_key(&s, tenant, &user, &label, Some(secret)).await?;
        }
        KeyCommand::List { user, tenant } => {
            let tenant = tenant_id(&s, &tenant).await?;
            let owner = match user {
                Some(u) => Some(user_id(&s, tenant, &u).await?),
                None => None,
            };
            for key in s.store.list_keys(tenant, owner).await? {
                if key.kind != KeyKind::User {
                    continue;
                }
                let owner = key.owner.map(|o| o.to_string()).unwrap_or_default();
                println!(
                    "{} {} {} {}",
                    key.id,
                    key.pubkey.to_bech32()?,
                    key.name,
                    owner
                );
            }
        }
        KeyCommand::Delete { id } => delete_key(&s, &id).await?,
    }
    Ok(())
}

/// Deletes a user key (the kind `key list` shows).
async fn delete_key(s: &Services, id: &str) -> anyhow::Result<()> {
    let key_id: KeyId = id.parse().map_err(|_| anyhow!("not a key id: {id:?}"))?;
    // A concurrent delete can win between the two calls: the same answer as missing.
    let missing = |e: keycast_core::Error| match e {
        keycast_core::Error::NotFound { .. } => anyhow!("no such key {key_id} (see `key list`)"),
        other => other.into(),
    };
    let key = s.store.get_key(key_id).await.map_err(missing)?;
    if key.kind != KeyKind::User {
        return Err(anyhow!("{key_id} is not a user key (see `key list`)"));
    }
    s.custody.delete_key(key_id).await.map_err(missing)?;
    println!("deleted {key_id}");
    Ok(())
}

/// Stores a key for `user` (generated when `secret` is `None`); prints `<id> <npub>`.
async fn add_key(
    s: &Services,
    tenant: TenantId,
    user: &str,
    label: &str,
    secret: Option<SecretKey>,
) -> anyhow::Result<()> {
    let owner = user_id(s, tenant, user).await?;
    let key = s
        .custody
        .create_key(
            keycast_core::NewKey::generate(
                tenant,
                keycast_core::Holder::User(owner),
                KeyKind::User,
                Label::parse(label)?,
            )
            .with_secret(secret),
        )
        .await?;
    println!("{} {}", key.id, key.pubkey.to_bech32()?);
    Ok(())
}

/// Reads an nsec, a hex secret, or an ncryptsec plus its password, one per line.
pub fn read_secret(mut input: impl BufRead) -> anyhow::Result<SecretKey> {
    let mut line = zeroize::Zeroizing::new(String::new());
    input
        .read_line(&mut line)
        .context("reading the secret from stdin")?;
    let text = line.trim();
    if text.is_empty() {
        bail!("no secret on stdin: pipe an nsec, a hex secret or an ncryptsec");
    }
    if text.starts_with("ncryptsec1") {
        let encrypted = EncryptedSecretKey::from_bech32(text)
            .map_err(|e| anyhow!("not a valid ncryptsec: {e}"))?;
        if encrypted.log_n() > EncryptedSecretKey::MAX_LOG_N {
            bail!(
                "the ncryptsec's scrypt cost (log_n {}) is over {}, the most nostr decrypts",
                encrypted.log_n(),
                EncryptedSecretKey::MAX_LOG_N
            );
        }
        let mut password = zeroize::Zeroizing::new(String::new());
        input
            .read_line(&mut password)
            .context("reading the ncryptsec password")?;
        let password = password.trim_end_matches(['\r', '\n']);
        if password.is_empty() {
            bail!("an ncryptsec needs its password on the next line of stdin");
        }
        return encrypted
            .decrypt(password)
            .map_err(|_| anyhow!("cannot decrypt the ncryptsec: wrong password or damaged"));
    }
    // The parse error could echo the input, which may be a real secret: keep it generic.
    SecretKey::parse(text)
        .map_err(|_| anyhow!("not an nsec, a 64-character hex secret or an ncryptsec"))
}

async fn authorization(s: Services, cmd: AuthorizationCommand) -> anyhow::Result<()> {
    match cmd {
        AuthorizationCommand::Create {
            key,
            label,
            expires_in,
            with_token,
        } => {
            let key_id: KeyId = key
                .parse()
                .map_err(|_| anyhow!("--key: not a key id: {key:?}"))?;
            let stored = s
                .store
                .get_key(key_id)
                .await
                .context("--key: no such key")?;
            let owner = stored
                .owner
                .ok_or_else(|| anyhow!("--key: the key has no owner"))?;
            // The relays the server recorded (a mismatch with KEYCAST_RELAYS here is an
            // error before anything is made).
            let (relays, note) = crate::serving_relays::for_cli(
                &s.database,
                &s.config.relays,
                s.config.bunker_relays(),
            )
            .await?;
            if let Some(note) = note {
                eprintln!("{note}");
            }
            let policy = Policy::new(
                stored.tenant_id,
                Label::parse("full access")?,
                vec![Permission::FullAccess],
            )?;
            s.store.insert_policy(&policy).await?;
            let expires_at = expires_in
                .map(|secs| Timestamp::from(Timestamp::now().as_secs().saturating_add(secs)));
            let (auth, secret) = s
                .custody
                .create_authorization(NewAuthorization {
                    tenant_id: stored.tenant_id,
                    user_id: owner,
                    key_id,
                    policy_id: policy.id,
                    label: Label::parse(&label)?,
                    relays: relays.clone(),
                    expires_at,
                })
                .await?;
            let uri = BunkerUri {
                signer: auth.bunker_pubkey,
                relays,
                secret: Some(secret.expose().to_owned()),
            }
            .to_uri()?;
            eprintln!("authorization {}", auth.id);
            // A running server reads new authorizations from the change feed every 250 ms
            // and then subscribes for the key: a client should wait about a second.
            eprintln!("a running server answers it within about a second");
            println!("{uri}");
            if with_token {
                let token = s.issue_token(&auth, expires_at).await?;
                println!("token {}", token.expose());
            }
        }
        AuthorizationCommand::Revoke { id } => {
            let id: AuthorizationId = id
                .parse()
                .map_err(|_| anyhow!("not an authorization id: {id:?}"))?;
            let auth = s.custody.revoke_authorization(id).await?;
            println!("revoked {}", auth.id);
        }
    }
    Ok(())
}

/// The configured database, which must be SQLite for `what`; Postgres has `instead`.
async fn sqlite(
    config: &Config,
    what: &str,
    instead: &str,
) -> anyhow::Result<keycast_storage::SqliteStore> {
    match keycast_storage::Database::open(&config.database_url)
        .await
        .context("opening the database")?
    {
        keycast_storage::Database::Sqlite(s) => Ok(s),
        _ => anyhow::bail!(
            "`{what}` works on SQLite databases; for Postgres use {instead} (docs/OPERATIONS.md)"
        ),
    }
}

/// Checks `from`, brings a copy of it up to date, and puts it in place of the database.
async fn restore(config: &Config, from: &Path) -> anyhow::Result<()> {
    anyhow::ensure!(from.is_file(), "no backup file at {}", from.display());
    let _lock = crate::lock::DataDirLock::acquire(&config.data_dir)
        .context("the server must be stopped before a restore")?;
    let current = sqlite(config, "restore", "pg_restore or psql").await?;
    let target = current.path().to_path_buf();
    current.close().await;
    let staged = target.with_extension("db.restoring");
    let _ = std::fs::remove_file(&staged);
    std::fs::copy(from, &staged).with_context(|| format!("copying {}", from.display()))?;
    let checked = async {
        let copy = keycast_storage::SqliteStore::open(&staged).await?;
        copy.integrity_check().await?;
        copy.migrate().await?;
        copy.close().await;
        anyhow::Ok(())
    }
    .await;
    if let Err(e) = checked {
        let _ = std::fs::remove_file(&staged);
        return Err(e.context(format!("{} is not a usable keycast backup", from.display())));
    }
    // The old database's write-ahead log must not be replayed onto the restored file.
    for suffix in ["db-wal", "db-shm"] {
        match std::fs::remove_file(target.with_extension(suffix)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).context("removing the old write-ahead log"),
        }
    }
    std::fs::rename(&staged, &target).context("putting the backup in place")?;
    if let Some(dir) = target.parent() {
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .context("syncing the data dir")?;
    }
    println!("restored {} into {}", from.display(), target.display());
    Ok(())
}

async fn healthcheck(config: &Config, url: Option<String>) -> anyhow::Result<ExitCode> {
    let base = url.unwrap_or_else(|| format!("http://{}", config.listen));
    let target = format!("{}/healthz/ready", base.trim_end_matches('/'));
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .context("building the HTTP client")?;
    match client.get(&target).send().await {
        Ok(r) if r.status().is_success() => {
            println!("ready");
            Ok(ExitCode::SUCCESS)
        }
        Ok(r) => {
            let status = r.status();
            let body = r.text().await.unwrap_or_default();
            eprintln!("not ready ({status}): {body}");
            Ok(ExitCode::FAILURE)
        }
        Err(e) => {
            eprintln!("not reachable at {target}: {e}");
            Ok(ExitCode::FAILURE)
        }
    }
}
