//! The custody engine: composes the four traits with caches and a crypto pool.

mod admin;
mod answer;
mod audit_sink;
mod cache;
mod config;
mod ops;
mod pool;
mod replace_key;
mod transport;
mod validate;
mod writes;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use nostr::{Event, Keys, PublicKey, Timestamp};

pub use admin::NewAuthorization;
pub use answer::{BuildAnswer, Interpret, Interpreted, TransportAnswer, TransportRequest};
pub use config::CustodyConfig;
pub use ops::{NIP44_MAX_B64, NIP44_MAX_PLAINTEXT};
pub(crate) use pool::CryptoPool;
pub use replace_key::ReplacedKey;
pub use transport::{BuildReply, ReplySeal, TransportScheme};
// The production code paths `crate::fuzzing` drives.
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) use ops::open_key;
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) use transport::open_payload;

use crate::authz::policy::PolicyAuthorizer;
use crate::crypto::envelope;
use crate::error::{Error, Result};
use crate::ids::{AuthorizationId, KeyId, PolicyId, TenantId, UserId};
use crate::model::audit::{AuditRecord, Outcome};
use crate::model::authorization::Authorization;
use crate::model::key::KeyKind;
use crate::model::policy::Policy;
use crate::model::request::{EventTemplate, Request, Response};
use crate::traits::authorizer::{AuthContext, Authorizer, Decision};
use crate::traits::key_manager::KeyManager;
use crate::traits::key_store::KeyStore;
use crate::traits::router::{LocalRouter, RequestRouter};
use audit_sink::AuditSink;
use cache::{Expiry, LoadingCache, Outage};
use ops::ConvCache;

/// After the store fails, how long authorization and policy misses are answered from stale
/// copies (or refused) without asking it again.
const OUTAGE_HOLD: Duration = Duration::from_secs(1);

/// Who is asking.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Caller {
    /// An app acting through an authorization: revocation, expiry and its policy apply.
    Authorization(AuthorizationId),
    /// The key's owner (or the service itself, for bunker keys), already authenticated by
    /// the embedding application. Only the authorizer's owner rule applies.
    Owner(KeyId),
}

/// A decrypted signing key with the metadata checks need. Zeroized when the last holder drops.
#[derive(Debug)]
struct LoadedKey {
    keys: Keys,
    tenant_id: TenantId,
    owner: Option<UserId>,
    kind: KeyKind,
}

/// Counters for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CustodyStats {
    /// Signing-key lookups served from memory.
    pub key_cache_hits: u64,
    /// Signing-key lookups that needed a store read and an unwrap (or joined one).
    pub key_cache_misses: u64,
    /// Signing keys held now.
    pub key_cache_size: u64,
    /// Jobs waiting for the crypto pool.
    pub crypto_queue_len: usize,
    /// Capacity of that queue.
    pub crypto_queue_capacity: usize,
    /// Audit records waiting for the writer.
    pub audit_queue_len: usize,
    /// Authorization and policy lookups answered from a stale copy because the store was
    /// unavailable.
    pub stale_served: u64,
    /// Cold loads that failed because a stored key could not be opened: the master key
    /// is missing or refused, or the envelope or its pubkey check failed.
    pub key_open_failures: u64,
    /// The last cold load failed that way (and none has succeeded since): readiness
    /// should fail, since every key that is not cached may be unusable.
    pub keys_unopenable: bool,
}

/// The custody engine. Cheap to clone; clones share caches, pool and audit writer.
///
/// Every operation: validates input limits, resolves the caller (cached authorization and
/// policy), loads the signing key (cache, or one store read + one unwrap shared by
/// concurrent callers), enforces revocation and expiry, asks the [`Authorizer`], runs the
/// crypto on the pool, and returns only after its audit record is stored.
#[derive(Debug, Clone)]
pub struct Custody {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn KeyStore>,
    key_manager: Arc<dyn KeyManager>,
    authorizer: Arc<dyn Authorizer>,
    router: Arc<dyn RequestRouter>,
    cfg: CustodyConfig,
    pool: CryptoPool,
    keys: LoadingCache<KeyId, Arc<LoadedKey>>,
    conversations: Option<ConvCache>,
    authorizations: LoadingCache<AuthorizationId, Arc<Authorization>>,
    bunkers: LoadingCache<PublicKey, AuthorizationId>,
    policies: LoadingCache<PolicyId, Arc<Policy>>,
    audit: AuditSink,
    unopenable: KeyHealth,
}

/// Stored keys that could not be opened (master key missing or refusing, envelope
/// tampered, pubkey mismatch): never a caller's fault, so they are counted, logged at
/// ERROR, and fail readiness until a key opens again.
#[derive(Debug, Default)]
struct KeyHealth {
    failures: std::sync::atomic::AtomicU64,
    failing: std::sync::atomic::AtomicBool,
}

impl KeyHealth {
    fn observe<T>(&self, id: KeyId, result: &Result<T>) {
        use std::sync::atomic::Ordering::Relaxed;
        match result {
            Ok(_) => self.failing.store(false, Relaxed),
            Err(
                e @ (Error::KeyManager(_)
                | Error::Envelope(_)
                | Error::KeyMismatch
                | Error::UnsupportedFormat(_)
                | Error::Corrupt(_)),
            ) => {
                self.failures.fetch_add(1, Relaxed);
                self.failing.store(true, Relaxed);
                tracing::error!(key = %id, error = %e, "a stored key cannot be opened");
            }
            // Outages, overload and missing rows say nothing about the master key.
            Err(_) => {}
        }
    }
}

impl std::fmt::Debug for Inner {
    // Hand-written: the caches' own Debug would list every entry.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Custody")
            .field("store", &self.store)
            .field("key_manager", &self.key_manager)
            .field("authorizer", &self.authorizer)
            .field("router", &self.router)
            .field("cached_keys", &self.keys.entry_count())
            .finish_non_exhaustive()
    }
}

/// Builds a [`Custody`]; see [`Custody::builder`].
#[derive(Debug)]
pub struct CustodyBuilder {
    store: Arc<dyn KeyStore>,
    key_manager: Arc<dyn KeyManager>,
    authorizer: Option<Arc<dyn Authorizer>>,
    router: Option<Arc<dyn RequestRouter>>,
    cfg: CustodyConfig,
}

impl CustodyBuilder {
    /// Replaces the default [`PolicyAuthorizer`].
    pub fn authorizer(mut self, a: Arc<dyn Authorizer>) -> Self {
        self.authorizer = Some(a);
        self
    }

    /// Replaces the default [`LocalRouter`].
    pub fn router(mut self, r: Arc<dyn RequestRouter>) -> Self {
        self.router = Some(r);
        self
    }

    /// Replaces the default [`CustodyConfig`].
    pub fn config(mut self, cfg: CustodyConfig) -> Self {
        self.cfg = cfg;
        self
    }

    /// Starts the crypto pool and the audit writer. Must run inside a Tokio runtime.
    pub fn build(self) -> Result<Custody> {
        let cfg = self.cfg;
        let authorizer = self
            .authorizer
            .unwrap_or_else(|| Arc::new(PolicyAuthorizer::new(self.store.clone())));
        let conversations = (cfg.conversation_cache_capacity > 0).then(|| {
            moka::sync::Cache::builder()
                .max_capacity(cfg.conversation_cache_capacity)
                .time_to_idle(cfg.conversation_cache_idle)
                .build()
        });
        let stale_for = if cfg.stale_grace.is_zero() {
            Duration::ZERO
        } else {
            cfg.authorization_cache_ttl + cfg.stale_grace
        };
        let outage = Outage::new(OUTAGE_HOLD);
        let inner = Inner {
            pool: CryptoPool::new(cfg.crypto_threads, cfg.crypto_queue_capacity)?,
            unopenable: KeyHealth::default(),
            audit: AuditSink::spawn(
                self.store.clone(),
                cfg.audit_queue_capacity,
                cfg.audit_batch_max,
            )?,
            keys: LoadingCache::new(cfg.key_cache_capacity, Expiry::Idle(cfg.key_cache_idle)),
            conversations,
            authorizations: LoadingCache::new(
                cfg.authorization_cache_capacity,
                Expiry::Live(cfg.authorization_cache_ttl),
            )
            .serving_stale_for(stale_for, outage.clone()),
            bunkers: LoadingCache::new(
                cfg.authorization_cache_capacity,
                Expiry::Idle(cfg.key_cache_idle),
            ),
            policies: LoadingCache::new(
                cfg.authorization_cache_capacity,
                Expiry::Live(cfg.authorization_cache_ttl),
            )
            .serving_stale_for(stale_for, outage.clone()),
            store: self.store,
            key_manager: self.key_manager,
            authorizer,
            router: self.router.unwrap_or_else(|| Arc::new(LocalRouter)),
            cfg,
        };
        Ok(Custody {
            inner: Arc::new(inner),
        })
    }
}

impl Custody {
    /// Starts building an engine over `store` and `key_manager` (usually a [`crate::Keyring`]).
    pub fn builder(store: Arc<dyn KeyStore>, key_manager: Arc<dyn KeyManager>) -> CustodyBuilder {
        CustodyBuilder {
            store,
            key_manager,
            authorizer: None,
            router: None,
            cfg: CustodyConfig::default(),
        }
    }

    /// The store this engine uses.
    pub fn store(&self) -> &Arc<dyn KeyStore> {
        &self.inner.store
    }

    /// The router this engine was built with (the NIP-46 layer asks it).
    pub fn router(&self) -> &Arc<dyn RequestRouter> {
        &self.inner.router
    }

    /// The configuration in force.
    pub fn config(&self) -> &CustodyConfig {
        &self.inner.cfg
    }

    /// Counters for metrics.
    pub fn stats(&self) -> CustodyStats {
        let i = &self.inner;
        CustodyStats {
            key_cache_hits: i.keys.hits(),
            key_cache_misses: i.keys.misses(),
            key_cache_size: i.keys.entry_count(),
            crypto_queue_len: i.pool.queue_len(),
            crypto_queue_capacity: i.pool.queue_capacity(),
            audit_queue_len: i.audit.queue_len(),
            stale_served: i.authorizations.stale_served() + i.policies.stale_served(),
            key_open_failures: i.unopenable.failures.load(Ordering::Relaxed),
            keys_unopenable: i.unopenable.failing.load(Ordering::Relaxed),
        }
    }

    /// Returns the pubkey of the caller's key.
    pub async fn get_public_key(&self, caller: Caller) -> Result<PublicKey> {
        match self.handle(caller, Request::GetPublicKey).await? {
            Response::PublicKey(pk) => Ok(pk),
            other => Err(unexpected(&other)),
        }
    }

    /// Signs `template`: fills the pubkey, keeps `created_at`, `tags` and `content` exactly,
    /// and refuses a foreign pubkey with [`Error::ForeignPubkey`].
    pub async fn sign_event(&self, caller: Caller, template: EventTemplate) -> Result<Event> {
        match self.handle(caller, Request::SignEvent(template)).await? {
            Response::Event(e) => Ok(*e),
            other => Err(unexpected(&other)),
        }
    }

    /// NIP-44 v2 encryption to `peer`.
    pub async fn nip44_encrypt(
        &self,
        caller: Caller,
        peer: PublicKey,
        plaintext: String,
    ) -> Result<String> {
        self.text(caller, Request::Nip44Encrypt { peer, plaintext })
            .await
    }

    /// NIP-44 decryption of a payload from `peer`.
    pub async fn nip44_decrypt(
        &self,
        caller: Caller,
        peer: PublicKey,
        ciphertext: String,
    ) -> Result<String> {
        self.text(caller, Request::Nip44Decrypt { peer, ciphertext })
            .await
    }

    /// NIP-04 encryption to `peer` (legacy).
    pub async fn nip04_encrypt(
        &self,
        caller: Caller,
        peer: PublicKey,
        plaintext: String,
    ) -> Result<String> {
        self.text(caller, Request::Nip04Encrypt { peer, plaintext })
            .await
    }

    /// NIP-04 decryption of a payload from `peer` (legacy).
    pub async fn nip04_decrypt(
        &self,
        caller: Caller,
        peer: PublicKey,
        ciphertext: String,
    ) -> Result<String> {
        self.text(caller, Request::Nip04Decrypt { peer, ciphertext })
            .await
    }

    async fn text(&self, caller: Caller, request: Request) -> Result<String> {
        match self.handle(caller, request).await? {
            Response::Text(t) => Ok(t),
            other => Err(unexpected(&other)),
        }
    }

    /// Runs any operation. The typed methods above are thin wrappers around this.
    pub async fn handle(&self, caller: Caller, request: Request) -> Result<Response> {
        self.handle_with(caller, request, None)
            .await
            .map(|(response, _)| response)
    }

    /// [`Custody::handle`] for a NIP-46 request: when the operation succeeds, its reply is
    /// built and sealed in the operation's own pool job ([`ReplySeal`]) and comes back with
    /// the response, both released only once the audit record is stored. A refusal or a
    /// failed operation is the outer `Err`, as from `handle` (sealing its error reply is the
    /// caller's, with [`Custody::transport_reply`]); a reply that could not be built or
    /// sealed is the inner one.
    pub async fn handle_sealed(
        &self,
        caller: Caller,
        request: Request,
        seal: ReplySeal,
    ) -> Result<(Response, Result<Event>)> {
        let (response, sealed) = self.handle_with(caller, request, Some(seal)).await?;
        let sealed =
            sealed.unwrap_or_else(|| Err(Error::Internal("the reply was not sealed".into())));
        Ok((response, sealed))
    }

    async fn handle_with(
        &self,
        caller: Caller,
        request: Request,
        seal: Option<ReplySeal>,
    ) -> Result<(Response, Option<Result<Event>>)> {
        validate::check_limits(&self.inner.cfg, &request)?;
        let now = Timestamp::now();
        let (authorization, key_id) = match caller {
            Caller::Owner(key_id) => (None, key_id),
            Caller::Authorization(id) => {
                let a = self.authorization(id).await?;
                let key_id = a.key_id;
                (Some(a), key_id)
            }
        };
        let key = self.signing_key(key_id).await?;
        let seal = match seal {
            Some(s) => Some((self.bunker_key(s.bunker).await?, s)),
            None => None,
        };
        let mut record = audit_record(now, &key, key_id, authorization.as_deref(), &request);
        if let Err(refusal) = self
            .admit(&key, key_id, authorization.as_deref(), &request, now)
            .await
        {
            record.outcome = match &refusal {
                Error::NeedsApproval(_) => Outcome::NeedsApproval,
                Error::Unavailable(_) | Error::Overloaded | Error::Internal(_) => {
                    Outcome::Failed(refusal.code().into())
                }
                other => Outcome::Denied(other.to_string()),
            };
            self.inner.audit.record(record).await?;
            return Err(refusal);
        }
        let (result, sealed) = self.perform(key_id, &key, request, now, seal).await;
        record_result(&mut record, &result);
        // The result (and its sealed reply) is released only once its audit record is
        // stored.
        self.inner.audit.record(record).await?;
        result.map(|response| (response, sealed))
    }

    /// Revocation, expiry, tenant and pubkey checks, then the authorizer.
    async fn admit(
        &self,
        key: &LoadedKey,
        key_id: KeyId,
        authorization: Option<&Authorization>,
        request: &Request,
        now: Timestamp,
    ) -> Result<()> {
        admit_checks(key, authorization, request, now)?;
        let policy = match authorization {
            None => None,
            Some(a) => self.policy_of(a).await?,
        };
        let ctx = AuthContext {
            tenant_id: key.tenant_id,
            key_id,
            key_pubkey: key.keys.public_key(),
            authorization,
            policy: policy.as_deref(),
            now,
        };
        match self.inner.authorizer.authorize(&ctx, request).await? {
            Decision::Allow => Ok(()),
            Decision::Deny(reason) => Err(Error::Denied(reason)),
            Decision::NeedsApproval(url) => Err(Error::NeedsApproval(url)),
        }
    }

    /// The authorization's policy; `None` when it no longer exists (the authorizer denies).
    async fn policy_of(&self, a: &Authorization) -> Result<Option<Arc<Policy>>> {
        match self.policy(a.policy_id).await {
            Ok(p) => Ok(Some(p)),
            Err(Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Runs `request` on the crypto pool (one job), then, if it succeeded and `seal` is
    /// given, builds and seals its reply in the same job.
    async fn perform(
        &self,
        key_id: KeyId,
        key: &Arc<LoadedKey>,
        request: Request,
        now: Timestamp,
        seal: Option<(Arc<LoadedKey>, ReplySeal)>,
    ) -> (Result<Response>, Option<Result<Event>>) {
        if let (Request::GetPublicKey, None) = (&request, &seal) {
            return (Ok(Response::PublicKey(key.keys.public_key())), None);
        }
        // The conversation-key cache is cloned only for the jobs that use it.
        let uses_convs = seal.is_some()
            || matches!(
                request,
                Request::Nip44Encrypt { .. } | Request::Nip44Decrypt { .. }
            );
        let convs = uses_convs
            .then(|| self.inner.conversations.clone())
            .flatten();
        let k = key.clone();
        let job = move || {
            let result = operation(convs.as_ref(), key_id, &k.keys, request, now);
            let sealed = match (&result, seal) {
                (Ok(response), Some((bunker, s))) => Some((s.build)(response).and_then(|reply| {
                    transport::seal(
                        convs.as_ref(),
                        s.bunker,
                        &bunker.keys,
                        s.peer,
                        s.scheme,
                        &reply,
                    )
                })),
                _ => None,
            };
            (result, sealed)
        };
        match self.inner.pool.run(job).await {
            Ok(done) => done,
            Err(e) => (Err(e), None),
        }
    }

    /// The authorization whose bunker key is `bunker` (the NIP-46 lookup). The mapping is
    /// cached (bunker keys never move); the authorization itself comes from its own cache.
    pub async fn authorization_by_bunker(&self, bunker: PublicKey) -> Result<Arc<Authorization>> {
        let store = &self.inner.store;
        let id = self
            .inner
            .bunkers
            .get_or_load(bunker, || async {
                store
                    .find_authorization_by_bunker(&bunker)
                    .await
                    .map(|a| a.id)
            })
            .await?;
        self.authorization(id).await
    }

    /// The pubkey of a stored key, loading the key into the cache if needed. Metadata only:
    /// not an operation, so it is neither authorized nor audited.
    pub async fn public_key_of(&self, key: KeyId) -> Result<PublicKey> {
        Ok(self.signing_key(key).await?.keys.public_key())
    }

    /// The decrypted key: from cache, or loaded once for all concurrent callers.
    async fn signing_key(&self, id: KeyId) -> Result<Arc<LoadedKey>> {
        self.inner.keys.get_or_load(id, || self.load_key(id)).await
    }

    /// Cold load: one store read, one unwrap, AEAD open and pubkey check on the pool.
    async fn load_key(&self, id: KeyId) -> Result<Arc<LoadedKey>> {
        let row = self.inner.store.get_key(id).await?;
        let loaded = self.open_row(row).await;
        self.inner.unopenable.observe(id, &loaded);
        loaded
    }

    async fn open_row(&self, row: crate::model::key::StoredKey) -> Result<Arc<LoadedKey>> {
        let binding = row.binding();
        let dek =
            envelope::unwrap_dek(self.inner.key_manager.as_ref(), &binding, &row.envelope).await?;
        let env = row.envelope;
        let keys = self
            .inner
            .pool
            .run(move || ops::open_key(&dek, &binding, &env))
            .await??;
        Ok(Arc::new(LoadedKey {
            keys,
            tenant_id: row.tenant_id,
            owner: row.owner,
            kind: row.kind,
        }))
    }

    /// An authorization from the cache (short TTL, invalidated on revoke), or the store.
    /// A load also checks that its account still holds its key (see `holds`): a row that
    /// names another account's key is refused, never used.
    pub async fn authorization(&self, id: AuthorizationId) -> Result<Arc<Authorization>> {
        let store = &self.inner.store;
        self.inner
            .authorizations
            .get_or_load(id, || async {
                let a = store.get_authorization(id).await?;
                // A revoked or expired one is refused as such by every caller; only a
                // live one must still have a holder (a member removed from a team is
                // revoked at once, and keeps being told so).
                if a.check_active(Timestamp::now()).is_err() {
                    return Ok(Arc::new(a));
                }
                let key = store.get_key(a.key_id).await?;
                if key.kind == KeyKind::User && !self.holds(&key, a.user_id).await? {
                    tracing::error!(
                        authorization = %a.id,
                        key = %a.key_id,
                        "an authorization names a key its account does not hold; refused"
                    );
                    return Err(Error::Denied(
                        "the authorization's account does not hold its key".into(),
                    ));
                }
                Ok(Arc::new(a))
            })
            .await
    }

    async fn policy(&self, id: PolicyId) -> Result<Arc<Policy>> {
        let store = &self.inner.store;
        self.inner
            .policies
            .get_or_load(id, || async { store.get_policy(id).await.map(Arc::new) })
            .await
    }
}

/// The audit record of `request` as allowed; [`record_result`] or a refusal completes it.
fn audit_record(
    now: Timestamp,
    key: &LoadedKey,
    key_id: KeyId,
    authorization: Option<&Authorization>,
    request: &Request,
) -> AuditRecord {
    AuditRecord {
        at: now,
        tenant_id: key.tenant_id,
        user_id: authorization.map(|a| a.user_id).or(key.owner),
        key_id,
        authorization_id: authorization.map(|a| a.id),
        action: request.method().into(),
        event_kind: match request {
            Request::SignEvent(t) => Some(t.kind.as_u16()),
            _ => None,
        },
        event_id: None,
        outcome: Outcome::Allowed,
    }
}

/// What an operation's result adds to its audit record.
fn record_result(record: &mut AuditRecord, result: &Result<Response>) {
    match result {
        Ok(Response::Event(e)) => record.event_id = Some(e.id),
        Ok(_) => {}
        Err(e) => record.outcome = Outcome::Failed(e.code().into()),
    }
}

/// The checks before the authorizer that need no I/O: the template's pubkey, revocation
/// and expiry, tenant, key kind.
fn admit_checks(
    key: &LoadedKey,
    authorization: Option<&Authorization>,
    request: &Request,
    now: Timestamp,
) -> Result<()> {
    if let Request::SignEvent(t) = request {
        if t.pubkey.is_some_and(|p| p != key.keys.public_key()) {
            return Err(Error::ForeignPubkey);
        }
    }
    if let Some(a) = authorization {
        a.check_active(now)?;
        if a.tenant_id != key.tenant_id {
            return Err(Error::Denied(
                "authorization and key belong to different tenants".into(),
            ));
        }
        if key.kind != KeyKind::User {
            return Err(Error::Denied(
                "authorizations may only use user keys".into(),
            ));
        }
    }
    Ok(())
}

/// Runs `request` with `keys` (on the crypto pool); `convs` caches NIP-44 conversation keys.
fn operation(
    convs: Option<&ConvCache>,
    key_id: KeyId,
    keys: &Keys,
    request: Request,
    now: Timestamp,
) -> Result<Response> {
    match request {
        Request::GetPublicKey => Ok(Response::PublicKey(keys.public_key())),
        Request::SignEvent(t) => ops::sign(keys, t, now).map(|e| Response::Event(Box::new(e))),
        Request::Nip44Encrypt { peer, plaintext } => {
            let ck = ops::conversation_key(convs, key_id, keys, &peer)?;
            ops::nip44_encrypt(&ck, &plaintext).map(Response::Text)
        }
        Request::Nip44Decrypt { peer, ciphertext } => {
            let ck = ops::conversation_key(convs, key_id, keys, &peer)?;
            ops::nip44_decrypt(&ck, &ciphertext).map(Response::Text)
        }
        Request::Nip04Encrypt { peer, plaintext } => {
            ops::nip04_encrypt(keys, &peer, &plaintext).map(Response::Text)
        }
        Request::Nip04Decrypt { peer, ciphertext } => {
            ops::nip04_decrypt(keys, &peer, &ciphertext).map(Response::Text)
        }
    }
}

fn unexpected(_: &Response) -> Error {
    Error::Internal("operation returned an unexpected response kind".into())
}
