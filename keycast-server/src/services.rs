//! Opening the backends the configuration names: the database, the key managers, the
//! custody engine, and the default tenant.

use std::path::PathBuf;
use std::sync::Arc;

use keycast_core::nostr::PublicKey;
use keycast_core::{
    Custody, KeyId, KeyKind, KeyManager, KeyStore, Keyring, Label, Tenant, TenantId, TenantName,
};
use keycast_kms::KmsObserver;
use keycast_storage::{AuditSpool, Database};

use crate::config::{Config, KmsKind};
use crate::error::{Result, ServerError};
use crate::fence::FenceSignals;
use crate::kms_metrics::KmsMetrics;
use crate::lock::create_private_dir;

/// The tenant a single-organisation install serves at every host (see [`crate::tenancy`]).
pub fn default_tenant() -> TenantId {
    TenantId::from_uuid(uuid::Uuid::from_u128(
        0x6b65_7963_6173_7400_0000_0000_0000_0001,
    ))
}

/// The fixed id of the service's own identity key (the `_` name of
/// `/.well-known/nostr.json`), so every instance of an install finds the same key.
pub fn service_identity_key_id() -> KeyId {
    KeyId::from_uuid(uuid::Uuid::from_u128(
        0x6b65_7963_6173_7400_0000_0000_0001_0001,
    ))
}

/// The opened backends.
#[derive(Debug, Clone)]
pub struct Services {
    /// Settings they were opened with (shared: the state is cloned for every request).
    pub config: Arc<Config>,
    /// The database (for closing it).
    pub database: Database,
    /// Authorizations, keys, audit.
    pub store: Arc<dyn KeyStore>,
    /// Primary key manager plus older ones still able to unwrap (see `kms rotate`).
    pub keyring: Keyring,
    /// The engine over both.
    pub custody: Custody,
    /// Key manager call metrics.
    pub kms_metrics: Arc<KmsMetrics>,
    /// The service's identity pubkey, published for NIP-46 discovery.
    pub identity: PublicKey,
    /// Wakes the change-feed reader after this instance's own writes.
    pub changes: FenceSignals,
    /// Audit records waiting for the database (`serve` only).
    pub audit_spool: Option<AuditSpool>,
    /// Which tenant a request is for (by its host, or always the default one).
    pub tenancy: Arc<crate::tenancy::Tenancy>,
    /// Account mail.
    pub mailer: crate::mail::Mailer,
    /// `require_approval` requests waiting for their holder (`/ui/approvals`).
    pub approvals: Arc<keycast_core::ApprovalDesk>,
}

/// How long a `require_approval` request waits for a decision: the NIP-46 service's own
/// approval timeout, after which its client gets an error.
pub const APPROVAL_TTL: std::time::Duration = std::time::Duration::from_secs(600);

impl Services {
    /// Opens the database (migrating it), the key managers and the engine, and makes sure
    /// the default tenant exists. `previous_master_key` is an older local master-key file
    /// whose rows should still open (for rotation).
    pub async fn open(config: &Config, previous_master_key: Option<PathBuf>) -> Result<Self> {
        Self::open_with(config, previous_master_key, None, None).await
    }

    /// What `serve` runs on: [`Services::open`] with the engine routing NIP-46 requests
    /// through `router` (cluster mode; `None` answers everything here), and audit records
    /// the database cannot take kept in `<data dir>/audit-spool` until it can, so cached
    /// keys keep signing through an outage. Only the process holding the data-dir lock
    /// may own the spool.
    pub async fn open_serving(
        config: &Config,
        router: Option<Arc<dyn keycast_core::RequestRouter>>,
    ) -> Result<Self> {
        create_private_dir(&config.data_dir)?;
        let spool = AuditSpool::open(config.data_dir.join("audit-spool"))?;
        Self::open_with(config, None, router, Some(spool)).await
    }

    async fn open_with(
        config: &Config,
        previous_master_key: Option<PathBuf>,
        router: Option<Arc<dyn keycast_core::RequestRouter>>,
        spool: Option<AuditSpool>,
    ) -> Result<Self> {
        create_private_dir(&config.data_dir)?;
        let mut db = Database::open_with(&config.database_url, config.database_pool_size).await?;
        db.migrate().await?;
        if let Some(spool) = &spool {
            db = db.with_audit_spool(spool.clone());
        }
        let store = db.clone().into_key_store();
        let kms_metrics = Arc::new(KmsMetrics::default());
        let keyring = keyring(
            config,
            store.as_ref(),
            previous_master_key,
            kms_metrics.clone(),
        )
        .await?;
        check_master_keys(config, store.as_ref(), &keyring).await?;
        let approvals = Arc::new(keycast_core::ApprovalDesk::new(
            format!("{}/ui/approvals", config.public_url.trim_end_matches('/')),
            APPROVAL_TTL,
        ));
        let authorizer =
            keycast_core::PolicyAuthorizer::new(store.clone()).with_approvals(approvals.clone());
        let mut custody = Custody::builder(store.clone(), Arc::new(keyring.clone()))
            .authorizer(Arc::new(authorizer));
        if let Some(router) = router {
            custody = custody.router(router);
        }
        let custody = custody.build()?;
        match store.get_tenant(default_tenant()).await {
            Ok(_) => {}
            Err(keycast_core::Error::NotFound { .. }) => {
                let mut tenant = Tenant::new(TenantName::parse("default")?);
                tenant.id = default_tenant();
                match store.create_tenant(&tenant).await {
                    Ok(()) | Err(keycast_core::Error::AlreadyExists { .. }) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            Err(e) => return Err(e.into()),
        }
        let mailer = crate::mail::Mailer::new(
            config.smtp_url.as_ref(),
            &config.mail_from,
            &config.data_dir,
        )?;
        crate::tenancy::setup::apply(store.as_ref(), &config.tenants.tenants).await?;
        let tenancy = if config.tenants.by_host {
            let t = crate::tenancy::Tenancy::by_host(store.as_ref()).await?;
            if t.host_count() == 0 {
                tracing::warn!(
                    "tenants by host is on but no host is mapped: every tenant request is refused \
                     (add one with `keycast-server tenant add-host`)"
                );
            }
            t
        } else {
            crate::tenancy::Tenancy::single()
        };
        let identity = custody
            .ensure_key(
                service_identity_key_id(),
                default_tenant(),
                KeyKind::Bunker,
                Label::parse("service identity")?,
            )
            .await?
            .pubkey;
        Ok(Self {
            config: Arc::new(config.clone()),
            database: db,
            store,
            keyring,
            custody,
            kms_metrics,
            identity,
            changes: FenceSignals::default(),
            audit_spool: spool,
            tenancy: Arc::new(tenancy),
            mailer,
            approvals,
        })
    }
}

impl Services {
    /// Issues an HTTP RPC token acting through `authorization`; only its digest is stored.
    pub async fn issue_token(
        &self,
        authorization: &keycast_core::Authorization,
        expires_at: Option<keycast_core::nostr::Timestamp>,
    ) -> keycast_core::Result<keycast_core::BearerSecret> {
        let secret = keycast_core::BearerSecret::generate();
        let token = keycast_core::ApiToken {
            digest: secret.digest(),
            tenant_id: authorization.tenant_id,
            authorization_id: authorization.id,
            expires_at,
            created_at: keycast_core::nostr::Timestamp::now(),
        };
        self.store.insert_token(&token).await?;
        Ok(secret)
    }
}

/// The configured key manager as primary; the local master-key file (when another
/// manager is primary and the file exists) and `previous` as older ones.
async fn keyring(
    config: &Config,
    store: &dyn KeyStore,
    previous: Option<PathBuf>,
    observer: Arc<dyn KmsObserver>,
) -> Result<Keyring> {
    let mut older: Vec<Arc<dyn KeyManager>> = Vec::new();
    if config.kms != KmsKind::Local && config.master_key_file.exists() {
        older.push(Arc::new(keycast_kms::LocalKeyManager::open(
            &config.master_key_file,
        )?));
    }
    if let Some(path) = previous {
        if !path.exists() {
            return Err(ServerError::Config(format!(
                "previous master key file {} does not exist",
                path.display()
            )));
        }
        older.push(Arc::new(keycast_kms::LocalKeyManager::open(&path)?));
    }
    let primary = primary_key_manager(config, store, &older, observer).await?;
    Ok(older
        .into_iter()
        .fold(Keyring::new(primary), Keyring::with_older))
}

/// Refuses to generate a local master key while stored rows are sealed under a master key
/// that none of `older` holds: they would become unopenable, and new keys would be sealed
/// under a second master key. The file was lost or moved, and only the operator can bring
/// it back. (Rotation generates one on purpose, with the old file as `older`.)
async fn may_generate_master_key(
    path: &std::path::Path,
    store: &dyn KeyStore,
    older: &[Arc<dyn KeyManager>],
) -> Result<()> {
    let stranded: u64 = store
        .master_keys_in_use()
        .await?
        .iter()
        .filter(|(kek, _)| !older.iter().any(|km| km.can_unwrap(kek)))
        .map(|(_, n)| n)
        .sum();
    if stranded == 0 {
        return Ok(());
    }
    Err(ServerError::MasterKey(format!(
        "the master key file {} is missing, but the database holds {stranded} keys sealed \
         under a master key; restore that file (or point KEYCAST_MASTER_KEY_FILE at it). A new \
         master key is only generated for a database none of whose keys it would strand",
        path.display()
    )))
}

async fn primary_key_manager(
    config: &Config,
    store: &dyn KeyStore,
    older: &[Arc<dyn KeyManager>],
    observer: Arc<dyn KmsObserver>,
) -> Result<Arc<dyn KeyManager>> {
    let km: Arc<dyn KeyManager> = match config.kms {
        KmsKind::Local => {
            let path = &config.master_key_file;
            if std::fs::symlink_metadata(path)
                .is_err_and(|e| e.kind() == std::io::ErrorKind::NotFound)
            {
                may_generate_master_key(path, store, older).await?;
            }
            Arc::new(keycast_kms::LocalKeyManager::open_or_create(path)?)
        }
        KmsKind::Aws => Arc::new(keycast_kms::aws::AwsKmsKeyManager::new(
            keycast_kms::aws::AwsKmsConfig::from_env()?.with_observer(observer),
        )?),
        KmsKind::Gcp => Arc::new(
            keycast_kms::gcp::GcpKmsKeyManager::new(keycast_kms::gcp::GcpKmsConfig::from_env()?)?
                .with_observer(observer),
        ),
        KmsKind::Vault => Arc::new(
            keycast_kms::vault::VaultTransitKeyManager::connect(
                keycast_kms::vault::VaultConfig::from_env()?.observer(observer),
            )
            .await?,
        ),
    };
    // A key manager that cannot be reached fails start now, with its own message, rather
    // than the first cold load later: one wrap/unwrap round trip.
    let probe = keycast_core::random_secret32();
    let wrapped = km.wrap(&probe, b"keycast-server start probe").await?;
    km.unwrap(&wrapped, b"keycast-server start probe").await?;
    Ok(km)
}

/// Refuses to run when stored rows are wrapped by a master key that no configured key
/// manager holds (the local file was replaced, say): those keys could not be opened, and
/// apps would see their authorizations fail.
async fn check_master_keys(config: &Config, store: &dyn KeyStore, keyring: &Keyring) -> Result<()> {
    let unknown: Vec<String> = store
        .master_keys_in_use()
        .await?
        .into_iter()
        .filter(|(kek, _)| !keyring.can_unwrap(kek))
        .map(|(kek, n)| format!("{n} under {}/{} v{}", kek.provider, kek.key_id, kek.version))
        .collect();
    if unknown.is_empty() {
        return Ok(());
    }
    let primary = keyring.id();
    let local = match config.kms {
        KmsKind::Local => format!(
            " (the master key file {})",
            config.master_key_file.display()
        ),
        _ => String::new(),
    };
    Err(ServerError::MasterKey(format!(
        "the database holds keys wrapped by master keys this server does not have: {}. The \
         configured master key is {}/{}{local}. Restore the right master key file or KMS \
         settings; a previous local master key can be added with --previous-master-key-file",
        unknown.join(", "),
        primary.provider,
        primary.key_id,
    )))
}
