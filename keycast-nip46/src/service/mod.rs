//! The relay service: listens for kind-24133 requests to the bunker keys of active
//! authorizations and answers them through [`RequestHandler`].
//!
//! Intake (one task) checks what is cheap: kind, `created_at` window, duplicate ids, that
//! the `#p` bunker key is an active authorization's, whether this instance owns it
//! ([`keycast_core::RequestRouter`]; or handed out its URI a moment ago, see
//! `subscribe.rs`), and the rate limits. Which bunker keys the relays are asked for at
//! all is `book.rs`'s and `subscribe.rs`'s business: in a cluster, the keys this instance
//! owns or stands by for. Accepted requests go to a
//! bounded queue drained by workers, which look up the authorization, decrypt, answer and
//! publish the reply without waiting for the relay's `OK`. Every crypto step of ours runs
//! on the engine's crypto pool. A full queue still answers the client ("overloaded") when
//! it can, and counts the drop.
//!
//! # Abuse resistance
//!
//! Anyone can sign kind-24133 events to a bunker key, so intake spends nothing of ours on
//! a request before it passes the limits of `limits.rs`: per client key and
//! per bunker key, and for clients not bound to the bunker's authorization (which can
//! only be sending a `connect`, whose decrypt and error reply cost an ECDH, a decrypt, an
//! encrypt and a signature) much stricter limits per client, per bunker and overall.
//! Boundness comes from `Bindings` (`subscriptions.rs`), intake's copy of the active
//! authorizations' clients (rebuilt at every subscription refresh, updated after each
//! connect and logout handled here), so it costs no store read. Requests over a limit are
//! dropped without a reply and counted (`BunkerStats::limited_*`); a stranger's flood gets
//! at most `unbound_bunker_limit` replies per bunker.
//!
//! Before even that, the transport's arrival filter (`prefilter.rs`) reads each incoming
//! `EVENT` frame just far enough to find its author and drops events of authors bound to
//! no authorization beyond `unbound_client_limit`, so a stranger's flood does not cost
//! the relay pool's JSON parse, Schnorr verification and de-duplication per event either
//! (that cost made a bound client of another bunker wait half a second under 20,000 such
//! events). What passes is verified by the pool as before (and matched against our
//! filter for that relay, `verify_subscriptions`).
//!
//! Fairness: the queue stays one FIFO. Per-key limits bound what any one key can put in
//! it, and the unbound limits bound what all strangers together can (`unbound_limit`'s
//! burst, 500 by default, is a few milliseconds of crypto for the workers), so a bound
//! client's request never waits behind thousands of junk requests. A queue per bunker
//! with round-robin workers would also isolate bound clients of different authorizations
//! from each other, but every bound client holds a connect secret an account issued, so
//! that load is accountable and capped per key; the FIFO keeps the
//! "overloaded, retry" answer and the queue-wait metrics simple.
//!
//! `nostrconnect://` relays: see `relay_policy.rs` (which addresses the bunker may connect
//! to, enforced in `transport.rs`), `subscriptions.rs` (a relay a client named gets
//! only its own authorizations' bunker keys), and `pairing.rs` (caps and the pairing rate).
//! Relays no active authorization uses are removed at the next refresh, which also runs
//! every `refresh_every` so expired authorizations stop being served.

mod approvals;
mod book;
mod config;
mod lanes;
mod limits;
mod live;
mod pairing;
mod parked;
mod pins;
mod prefilter;
mod relay_policy;
mod relays;
mod revoked;
mod shards;
mod standby;
mod stats;
mod subscribe;
mod subscriptions;
mod transport;

use std::collections::HashSet;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, AtomicUsize};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use keycast_core::nostr::{Event, EventId, Kind, PublicKey, RelayUrl, Timestamp};
use keycast_core::{
    Authorization, AuthorizationId, Custody, Route, RoutingKey, TenantId, TransportAnswer,
    TransportRequest, UserId,
};
use nostr_sdk::prelude::{
    Client, ClientMessage, RelayMessage, RelayOptions, RelayPoolNotification, RelayStatus,
};
use tokio::task::JoinHandle;

pub use config::{BunkerConfig, RateLimit};
pub use pairing::PairingPermit;
pub use relays::{RelayConnection, RelayState};
pub use stats::{BunkerStats, QUEUE_WAIT_BUCKETS_MICROS};

use crate::handler::{Answer, RequestHandler};
use crate::protocol::message::{Command, Nip46Request};
use crate::protocol::response::Nip46Response;
use crate::Result;
use approvals::{Approvals, Pending};
use book::Book;
use limits::{IntakeLimits, Keyed, Limited};
use live::Live;
use parked::{Parked, ParkedRequest};
use relay_policy::RelayPolicy;
use relays::{Pace, Supervisor};
use stats::{bump, Counters};
use subscriptions::Bindings;
/// Overload replies in flight at once; beyond that a dropped request gets no reply.
const OVERLOAD_REPLIES: usize = 64;

struct Job {
    event: Box<Event>,
    /// The `#p` bunker pubkey the request was addressed to.
    bunker: PublicKey,
    enqueued: Instant,
    /// First left to another instance, then re-routed here after a ring change.
    rerouted: bool,
    /// Another instance owns it; this one answers it because it handed out its URI a
    /// moment ago (only on a claim Redis confirmed).
    pinned: bool,
}

/// A decrypted request and the authorization it was sent to.
struct Opened {
    auth: Arc<Authorization>,
    client: PublicKey,
    scheme: keycast_core::TransportScheme,
    plaintext: String,
}

struct Shared {
    custody: Custody,
    handler: RequestHandler,
    client: Client,
    config: BunkerConfig,
    counters: Counters,
    seen: moka::sync::Cache<EventId, ()>,
    queue: async_channel::Sender<Job>,
    overload_slots: Arc<tokio::sync::Semaphore>,
    relays: Arc<Supervisor>,
    approvals: Approvals,
    parked: Parked,
    /// What each relay is asked for (`book.rs`). Held while an update is sent, so
    /// updates apply in order.
    book: tokio::sync::Mutex<Book>,
    /// Which `REQ`s the relays confirmed.
    live: Live,
    /// Numbers our subscription ids.
    versions: AtomicU64,
    /// Extra connections for relays that need more `REQ`s than one connection takes.
    lanes: lanes::Lanes,
    /// Bunker keys whose URI this instance handed out lately, with their authorization
    /// and until when (`subscribe.rs`, `PIN`).
    pins: Arc<pins::Pins>,
    /// Requests to keys this instance stands by for, kept raw by the arrival filter.
    standby: Arc<standby::Standby>,
    /// Authorizations this process revoked, applied without reading them again.
    revoked: revoked::Revoked,
    /// The router's listening epoch last acted on.
    listening: AtomicU64,
    /// Wakes the flusher: a confirmation may let waiting `REQ`s go.
    flush_soon: tokio::sync::Notify,
    /// Active authorizations in the book, and `REQ`s open over all relays, for the stats.
    subscribed: AtomicUsize,
    open_reqs: AtomicUsize,
    /// The relays of the book: where replies may go.
    routes: RwLock<HashSet<RelayUrl>>,
    relay_options: RelayOptions,
    policy: Arc<RelayPolicy>,
    limits: IntakeLimits,
    bindings: Bindings,
    /// Every bound client, for the transport's [`prefilter::PreFilter`].
    bound_clients: Arc<prefilter::BoundClients>,
    prefilter: Arc<prefilter::PreFilter>,
    /// Pairings per account.
    pairings: Keyed<(TenantId, UserId)>,
    /// One pairing's relay checks and creation at a time (the account cap holds).
    pairing: tokio::sync::Mutex<()>,
}

/// A running bunker service. Dropping it does not stop it; call [`Bunker::shutdown`].
pub struct Bunker {
    shared: Arc<Shared>,
    /// Intake, re-routing, approvals expiry: stopped first on shutdown.
    intake: Vec<JoinHandle<()>>,
    /// The relay supervisor: kept until the workers have sent their replies.
    supervisor: JoinHandle<()>,
    workers: std::sync::Mutex<Vec<JoinHandle<()>>>,
}

impl std::fmt::Debug for Bunker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bunker")
            .field("relays", &self.shared.config.relays)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl Bunker {
    /// Connects to the relays (waiting at most `connect_timeout`; unreachable relays are
    /// retried in the background and do not fail start), subscribes for every active
    /// authorization and starts the workers.
    ///
    /// Values in `config` that cannot work are refused ([`crate::Error::InvalidConfig`]).
    pub async fn start(custody: Custody, config: BunkerConfig) -> Result<Self> {
        config.validate()?;
        let policy = Arc::new(RelayPolicy::new(
            &config.relays,
            config.relay_allow_list.as_deref(),
        ));
        let bound_clients = Arc::new(prefilter::BoundClients::default());
        let pins = Arc::new(pins::Pins::default());
        let standby = Arc::new(standby::Standby::new(
            custody.router().clone(),
            pins.clone(),
        ));
        let prefilter = Arc::new(prefilter::PreFilter::new(
            bound_clients.clone(),
            limits::Keyed::new(
                config.unbound_client_limit.quota("unbound_client_limit")?,
                config.limiter_max_keys,
            ),
            standby.clone(),
        ));
        let client = Client::builder()
            .websocket_transport(transport::NoDelayTransport::new(
                policy.clone(),
                prefilter.clone(),
            ))
            .build();
        // Ping and resubscribe come from the relay pool; reconnects from our supervisor
        // (the pool's schedule is linear, ours exponential). Events that do not match
        // what we asked that relay for are dropped before their signature is checked.
        let relay_options = RelayOptions::new()
            .reconnect(false)
            .ping(true)
            .verify_subscriptions(true);
        let (queue, jobs) = async_channel::bounded(config.queue_capacity.max(1));
        let limits = IntakeLimits::new(&config)?;
        let pairings = Keyed::new(
            config.pairing_limit.quota("pairing_limit")?,
            config.limiter_max_keys,
        );
        let shared = Arc::new(Shared {
            handler: RequestHandler::new(custody.clone()),
            custody,
            client,
            seen: moka::sync::Cache::builder()
                .max_capacity(1_000_000)
                .time_to_live(config.dedupe_ttl)
                .build(),
            counters: Counters::default(),
            queue,
            overload_slots: Arc::new(tokio::sync::Semaphore::new(OVERLOAD_REPLIES)),
            relays: Arc::default(),
            approvals: Approvals::default(),
            parked: Parked::default(),
            book: tokio::sync::Mutex::new(Book::new(
                &config.relays,
                shards::keys_per_req(config.req_max_bytes),
                config.subscriptions_per_connection,
            )),
            live: Live::default(),
            versions: AtomicU64::new(0),
            lanes: lanes::Lanes::default(),
            pins,
            standby,
            revoked: revoked::Revoked::default(),
            listening: AtomicU64::new(0),
            flush_soon: tokio::sync::Notify::new(),
            subscribed: AtomicUsize::new(0),
            open_reqs: AtomicUsize::new(0),
            routes: RwLock::default(),
            relay_options,
            policy,
            limits,
            bindings: Bindings::default(),
            bound_clients,
            prefilter,
            pairings,
            pairing: tokio::sync::Mutex::new(()),
            config,
        });
        let notifications = shared.client.notifications();
        // Connects the configured relays and those of active authorizations that the
        // policy allows, and subscribes; then waits a little for the connections.
        shared.refresh_subscription().await?;
        let relays: Vec<RelayUrl> = shared.client.relays().await.into_keys().collect();
        shared.wait_connected(&relays).await;
        let pace = Pace {
            reconnect_after: shared.config.reconnect_after,
            probe_every: shared.config.stall_probe_every,
            stall_timeout: shared.config.stall_timeout,
        };
        let intake = vec![
            tokio::spawn(intake(shared.clone(), notifications, false)),
            tokio::spawn(expire_approvals(shared.clone())),
            tokio::spawn(reroute_parked(shared.clone())),
            tokio::spawn(housekeeping(shared.clone())),
            tokio::spawn(flusher(shared.clone())),
        ];
        let supervisor = tokio::spawn(shared.relays.clone().run(shared.client.clone(), pace));
        let workers = (0..shared.config.workers.max(1))
            .map(|_| tokio::spawn(work(shared.clone(), jobs.clone())))
            .collect();
        Ok(Self {
            shared,
            intake,
            supervisor,
            workers: std::sync::Mutex::new(workers),
        })
    }

    /// Compares the subscriptions with a full listing of the active authorizations and
    /// sends what differs: connects relays newly in use and removes relays no active
    /// authorization uses any more (the configured ones stay). It reads every active
    /// authorization; after known changes, [`Bunker::authorizations_changed`] is cheaper.
    ///
    /// Returns once the connected relays confirmed what was sent (at most
    /// `connect_timeout`), so a URI handed out after it is heard.
    pub async fn refresh_subscription(&self) -> Result<()> {
        self.shared.refresh_subscription().await?;
        self.shared.settle().await;
        Ok(())
    }

    /// Applies the authorizations `ids` as the store holds them now (created, revoked,
    /// deleted, clients changed): reads only those records and re-sends only the `REQ`s
    /// holding their bunker keys.
    pub async fn authorizations_changed(&self, ids: &[AuthorizationId]) -> Result<()> {
        self.shared.apply(ids).await
    }

    /// Tells the service that this process revoked authorization `id` (the store write
    /// succeeded). When the change reaches [`Bunker::authorizations_changed`] (through the
    /// change feed), its key is let go without reading the record again: revocation is
    /// final, so that read could only say "revoked". Call it before the change can be
    /// applied, or the read simply happens as before.
    pub fn authorization_revoked(&self, id: AuthorizationId) {
        self.shared.revoked.note(id);
    }

    /// [`Bunker::authorizations_changed`] for one new authorization, then waits until
    /// every connected relay it should be heard on has confirmed the `REQ` holding its
    /// bunker key (at most `connect_timeout`): call before handing out its `bunker://`
    /// URI, so a client that connects at once is heard. `false` when the wait ran out.
    pub async fn cover(&self, id: AuthorizationId) -> Result<bool> {
        self.shared.cover(id).await
    }

    /// Re-runs the requests of `authorization` that were answered `auth_url`, once a human
    /// has approved (or refused) them; each client then gets the real result, or the
    /// refusal, under its request id. Requests that still need approval keep waiting.
    pub async fn resume_approvals(&self, authorization: AuthorizationId) {
        self.shared.resume_approvals(authorization).await;
    }

    /// Counters and queue state.
    pub fn stats(&self) -> BunkerStats {
        let s = &self.shared;
        let q = &s.queue;
        let mut stats = s.counters.snapshot(
            q.len(),
            q.capacity().unwrap_or(usize::MAX),
            s.approvals.len(),
            s.parked.len() + s.standby.len(),
        );
        stats.standby_kept = s.standby.kept();
        stats.rejected_hashring += s.standby.dropped();
        stats.pinned = s.pins.len();
        stats.limiter_keys = s.limits.tracked_keys() + s.pairings.len() + s.prefilter.tracked();
        stats.limited_on_arrival = s.prefilter.dropped();
        stats.limiter_resets = s.limits.resets() + s.pairings.resets();
        stats.relays_refused = s.policy.refusals();
        stats.subscribed_authorizations = s.subscribed.load(std::sync::atomic::Ordering::Relaxed);
        stats.open_reqs = s.open_reqs.load(std::sync::atomic::Ordering::Relaxed);
        stats.extra_lanes = s.lanes.extra();
        stats
    }

    /// How many relays are connected now (readiness needs at least one).
    pub async fn connected_relays(&self) -> usize {
        let relays = self.shared.client.relays().await;
        relays
            .values()
            .filter(|r| r.status() == RelayStatus::Connected)
            .count()
    }

    /// Every relay in use (configured, and those of paired clients), with its connection
    /// and reconnect counters, for readiness and metrics.
    pub async fn relay_states(&self) -> Vec<RelayState> {
        self.shared.relays.states(&self.shared.client).await
    }

    /// Stops taking requests, lets the workers finish the ones already accepted (their
    /// claims are taken: nobody else will answer them), then disconnects from the relays.
    /// Idempotent. Callers bound it with a timeout; requests still waiting for approval
    /// are dropped (their clients time out).
    pub async fn shutdown(&self) {
        for t in &self.intake {
            t.abort();
        }
        self.shared.queue.close();
        let workers = std::mem::take(&mut *self.workers.lock().unwrap_or_else(|e| e.into_inner()));
        for worker in workers {
            let _ = worker.await;
        }
        // Replies are handed to the relay connections without waiting for OK; give the
        // last ones a moment to be written before the connections close.
        tokio::time::sleep(Duration::from_millis(200)).await;
        self.supervisor.abort();
        self.shared.lanes.shutdown().await;
        self.shared.client.shutdown().await;
    }
}

impl Shared {
    /// Waits at most `connect_timeout` for `relays` to connect (or fail a first attempt):
    /// requests sent before our subscription reaches a relay are lost (kind 24133 is
    /// ephemeral), so start and pairing wait a little.
    async fn wait_connected(&self, relays: &[RelayUrl]) {
        let pool = self.client.relays().await;
        let timeout = self.config.connect_timeout;
        let _ = tokio::time::timeout(timeout, async {
            for relay in relays.iter().filter_map(|u| pool.get(u)) {
                relay.wait_for_connection(timeout).await;
            }
        })
        .await;
    }

    /// The cheap checks, then the queue.
    async fn accept(self: &Arc<Self>, event: Box<Event>) {
        self.admit(event, false).await;
    }

    /// [`Shared::accept`]; `rerouted` when the request was first left to another instance.
    async fn admit(self: &Arc<Self>, event: Box<Event>, rerouted: bool) {
        if event.kind != Kind::NostrConnect {
            return;
        }
        bump(&self.counters.requests);
        let now = Timestamp::now().as_secs();
        let at = event.created_at.as_secs();
        if at + self.config.max_age.as_secs() < now || at > now + self.config.max_skew.as_secs() {
            bump(&self.counters.replayed);
            return;
        }
        if self.seen.contains_key(&event.id) {
            bump(&self.counters.duplicates);
            return;
        }
        self.seen.insert(event.id, ());
        let Some(bunker) = event.tags.public_keys().next().copied() else {
            bump(&self.counters.invalid);
            return;
        };
        let Some(bound) = self.bindings.is_bound(&bunker, &event.pubkey) else {
            bump(&self.counters.unknown_bunker);
            return;
        };
        let router = self.custody.router();
        let remote = matches!(router.route(&RoutingKey(bunker)), Route::Remote(_));
        // A key whose URI this instance just handed out is answered here too while claims
        // can be trusted (the claim decides between it and the owner); without Redis the
        // ring alone decides, so only the owner answers.
        let pinned = remote && router.epoch().is_some() && self.pins.contains(&bunker);
        if remote && !pinned {
            bump(&self.counters.rejected_hashring);
            if router.epoch().is_some() {
                self.parked
                    .keep(ParkedRequest { event, bunker }, Instant::now());
            }
            return;
        }
        if let Err(limit) = self.limits.admit(&event.pubkey, &bunker, bound) {
            let c = &self.counters;
            bump(match limit {
                Limited::Client => &c.limited_client,
                Limited::Bunker => &c.limited_bunker,
                Limited::UnboundClient => &c.limited_unbound_client,
                Limited::UnboundBunker => &c.limited_unbound_bunker,
                Limited::Unbound => &c.limited_unbound,
            });
            return;
        }
        self.enqueue(event, bunker, rerouted, pinned);
    }

    /// Hands an accepted request to the workers, or answers "overloaded".
    fn enqueue(
        self: &Arc<Self>,
        event: Box<Event>,
        bunker: PublicKey,
        rerouted: bool,
        pinned: bool,
    ) {
        // The authorization is looked up by the worker: a cold lookup is a store read, and
        // intake is a single task that must not wait on one.
        let job = Job {
            event,
            bunker,
            enqueued: Instant::now(),
            rerouted,
            pinned,
        };
        if let Err(full) = self.queue.try_send(job) {
            bump(&self.counters.queue_dropped);
            let job = full.into_inner();
            if let Ok(slot) = self.overload_slots.clone().try_acquire_owned() {
                let shared = self.clone();
                tokio::spawn(async move {
                    shared.reply_overloaded(job).await;
                    drop(slot);
                });
            }
        }
    }

    /// Runs one request; a panic is contained and counted, and the worker goes on. (Not a
    /// task of its own: spawning and joining one per request cost a wake-up each.)
    async fn process(self: &Arc<Self>, job: Job) {
        self.counters.waited(job.enqueued.elapsed());
        let answered = AssertUnwindSafe(self.answer(job)).catch_unwind().await;
        if answered.is_err() {
            bump(&self.counters.panics);
            tracing::error!("a NIP-46 request handler panicked; the worker continues");
        }
    }

    /// The authorization addressed and the decrypted request, or `None` (counted) when
    /// either cannot be had.
    async fn open(&self, bunker: PublicKey, event: Event) -> Option<Opened> {
        let opened = async {
            let auth = self.custody.authorization_by_bunker(bunker).await.ok()?;
            let client = event.pubkey;
            let (scheme, plaintext) = self
                .custody
                .transport_open(auth.bunker_key_id, client, event.content)
                .await
                .ok()?;
            Some(Opened {
                auth,
                client,
                scheme,
                plaintext,
            })
        }
        .await;
        if opened.is_none() {
            bump(&self.counters.invalid);
        }
        opened
    }

    /// Whether the router lets this instance handle the request (in a cluster, only one
    /// instance does); counted when not.
    async fn claim(&self, job: &Job) -> bool {
        let router = self.custody.router();
        let key = RoutingKey(job.bunker);
        // A claim the router could not decide falls back to the ring: fine for the owner,
        // not for a key this instance answers only because it handed out its URI.
        let won = if job.pinned {
            router.try_claim(&key, &job.event.id).await == Some(true)
        } else {
            router.claim(&key, &job.event.id).await
        };
        if !won {
            bump(&self.counters.claims_lost);
        } else if job.rerouted {
            bump(&self.counters.rerouted);
        }
        won
    }

    async fn answer(&self, job: Job) {
        if !self.claim(&job).await {
            return;
        }
        // The signature was checked by the relay pool before the event was delivered
        // (nostr-relay-pool verifies every subscription event, with no option to skip);
        // checking it again cost about a quarter of the crypto pool's time per request.
        // tests/it/relay_forged.rs holds that a forged request is never answered.
        let Ok(auth) = self.custody.authorization_by_bunker(job.bunker).await else {
            bump(&self.counters.invalid);
            return;
        };
        let client = job.event.pubkey;
        // A custody operation from a bound client is answered in one crypto-pool job
        // (opened, admitted, run and sealed); anything else comes back opened.
        let request = TransportRequest {
            authorization: auth.clone(),
            peer: client,
            content: job.event.content,
            interpret: RequestHandler::interpret(auth.clone(), client),
        };
        match self.custody.answer_transport(request).await {
            Ok(TransportAnswer::Sealed { reply, .. }) => match reply {
                Ok(event) => {
                    self.send_reply(&auth, *event).await;
                    bump(&self.counters.processed);
                }
                Err(e) => tracing::warn!(error = %e, "cannot build a NIP-46 reply"),
            },
            Ok(TransportAnswer::Opened { scheme, plaintext }) => {
                let opened = Opened {
                    auth,
                    client,
                    scheme,
                    plaintext,
                };
                self.answer_opened(opened).await;
            }
            Ok(TransportAnswer::Unrecorded {
                scheme,
                plaintext,
                error,
            }) => {
                // The operation's result is not released: the client is told why.
                if let Some(id) = request_id(&plaintext) {
                    let reply = Nip46Response::error(id, error.to_string());
                    self.publish(&auth, client, scheme, reply).await;
                    bump(&self.counters.processed);
                }
            }
            Ok(_) | Err(_) => bump(&self.counters.invalid),
        }
    }

    /// The full path for a request the fast path left opened: the session rules, then the
    /// operation (its reply sealed in its own job when it succeeds).
    async fn answer_opened(&self, o: Opened) {
        let reply = match Nip46Request::parse(&o.plaintext) {
            Ok(request) => {
                let rebinds = matches!(request.command, Command::Connect { .. } | Command::Logout);
                // A custody operation that succeeds comes back sealed (one crypto-pool job
                // for the operation and its reply); anything else is sealed below.
                let answer = self
                    .handler
                    .handle_sealed(
                        o.auth.id,
                        o.client,
                        request.clone(),
                        o.auth.bunker_key_id,
                        o.scheme,
                    )
                    .await;
                let reply = match answer {
                    Answer::Sealed(event) => {
                        self.send_reply(&o.auth, event).await;
                        bump(&self.counters.processed);
                        return;
                    }
                    Answer::Reply(reply) => reply,
                };
                if rebinds {
                    // Intake's view of who is bound follows at once (the handler
                    // invalidated the cached authorization).
                    if let Ok(auth) = self.custody.authorization(o.auth.id).await {
                        self.bindings.update(&auth);
                        self.bound_clients.extend(auth.client_pubkeys.iter());
                    }
                }
                if reply.is_auth_url() {
                    let held = self.approvals.hold(Pending {
                        auth: o.auth.clone(),
                        client: o.client,
                        scheme: o.scheme,
                        request,
                        since: Instant::now(),
                    });
                    if !held {
                        tracing::warn!("too many requests wait for approval; not keeping one");
                    }
                }
                reply
            }
            Err(e) => match e.reply() {
                Some(reply) => reply,
                None => {
                    bump(&self.counters.invalid);
                    return;
                }
            },
        };
        self.publish(&o.auth, o.client, o.scheme, reply).await;
        bump(&self.counters.processed);
    }

    async fn resume_approvals(&self, authorization: AuthorizationId) {
        for p in self.approvals.take(authorization) {
            let reply = self
                .handler
                .handle(p.auth.id, p.client, p.request.clone())
                .await;
            if reply.is_auth_url() {
                // Still waiting for a human: keep it, and do not repeat the challenge.
                self.approvals.hold(p);
                continue;
            }
            bump(&self.counters.approvals_resumed);
            self.publish(&p.auth, p.client, p.scheme, reply).await;
        }
    }

    async fn reply_overloaded(&self, job: Job) {
        if !self.claim(&job).await {
            return;
        }
        let Some(o) = self.open(job.bunker, *job.event).await else {
            return;
        };
        let Some(id) = request_id(&o.plaintext) else {
            return;
        };
        let reply = Nip46Response::error(id, "overloaded, retry later");
        self.publish(&o.auth, o.client, o.scheme, reply).await;
    }

    /// Seals, signs and sends the reply; does not wait for relay `OK` (some relays never
    /// send it for ephemeral events).
    async fn publish(
        &self,
        auth: &Authorization,
        client: PublicKey,
        scheme: keycast_core::TransportScheme,
        reply: Nip46Response,
    ) {
        let event = match self
            .custody
            .transport_reply(auth.bunker_key_id, client, scheme, reply.to_json())
            .await
        {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(error = %e, "cannot build a NIP-46 reply");
                return;
            }
        };
        self.send_reply(auth, event).await;
    }

    /// Sends a sealed reply; does not wait for relay `OK`.
    async fn send_reply(&self, auth: &Authorization, event: Event) {
        // The client listens where its authorization says (a nostrconnect:// client names
        // its relays) among those in use; otherwise on the configured ones.
        let relays: Vec<RelayUrl> = {
            let routes = self.routes.read().unwrap_or_else(PoisonError::into_inner);
            auth.relays
                .iter()
                .filter(|r| routes.contains(*r))
                .cloned()
                .collect()
        };
        let relays = if relays.is_empty() {
            self.config.relays.clone()
        } else {
            relays
        };
        if let Err(e) = self
            .client
            .send_msg_to(relays, ClientMessage::event(event))
            .await
        {
            tracing::warn!(error = %e, "cannot hand a NIP-46 reply to the relays");
        }
    }
}

/// The id of a decrypted request, if it has one to answer to.
fn request_id(plaintext: &str) -> Option<String> {
    match Nip46Request::parse(plaintext) {
        Ok(r) => Some(r.id),
        Err(e) => e.request_id().map(str::to_owned),
    }
}

/// Reads a relay pool's notifications: the main one, or (`extra`) the pool of the extra
/// lanes, whose relay URLs name the lane (`lanes.rs`).
async fn intake(
    shared: Arc<Shared>,
    mut notifications: tokio::sync::broadcast::Receiver<RelayPoolNotification>,
    extra: bool,
) {
    let lane_of = |url: RelayUrl| {
        if extra {
            lanes::relay_of(&url)
        } else {
            Some((url, 0))
        }
    };
    loop {
        match notifications.recv().await {
            Ok(RelayPoolNotification::Event { event, .. }) => shared.accept(event).await,
            Ok(RelayPoolNotification::Message {
                message: RelayMessage::EndOfStoredEvents(id),
                relay_url,
            }) => {
                if let Some((url, lane)) = lane_of(relay_url) {
                    shared.on_eose(&url, &id, lane).await;
                }
            }
            Ok(RelayPoolNotification::Message {
                message:
                    RelayMessage::Closed {
                        subscription_id,
                        message,
                    },
                relay_url,
            }) => {
                if let Some((url, lane)) = lane_of(relay_url) {
                    shared
                        .on_closed(&url, &subscription_id, &message, lane)
                        .await;
                }
            }
            Ok(RelayPoolNotification::Message {
                message: RelayMessage::Notice(message),
                relay_url,
            }) => {
                if let Some((url, lane)) = lane_of(relay_url) {
                    shared.on_notice(&url, &message, lane).await;
                }
            }
            // This client publishes nothing but replies, so every refusal is a lost reply.
            Ok(RelayPoolNotification::Message {
                message:
                    RelayMessage::Ok {
                        status: false,
                        message,
                        ..
                    },
                relay_url,
            }) => {
                bump(&shared.counters.replies_refused);
                tracing::warn!(relay = %relay_url, reason = %message, "relay refused a NIP-46 reply");
            }
            Ok(_) => {}
            Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                tracing::warn!(missed = n, "NIP-46 intake lagged behind the relay pool");
            }
            Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
        }
    }
}

/// Every second: forgets idle keys of the rate limiters (bounding their memory) and drops
/// authorizations that expired; every `refresh_every`: compares the subscriptions with a
/// full listing (the safety net for changes nobody reported).
async fn housekeeping(shared: Arc<Shared>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut refreshed = Instant::now();
    loop {
        tick.tick().await;
        shared.limits.prune();
        if shared.prefilter.prune() {
            tracing::warn!("the NIP-46 arrival filter tracked too many keys and was reset");
        }
        if shared.pairings.prune() {
            tracing::warn!("the pairing limiter tracked too many accounts and was reset");
        }
        if let Err(e) = shared.tick().await {
            tracing::warn!(error = %e, "cannot update the NIP-46 subscription");
        }
        if refreshed.elapsed() >= shared.config.refresh_every {
            refreshed = Instant::now();
            if let Err(e) = shared.refresh_subscription().await {
                tracing::warn!(error = %e, "cannot refresh the NIP-46 subscription");
            }
        }
    }
}

/// Sends the `REQ`s that waited for a relay's confirmation, when one arrives.
async fn flusher(shared: Arc<Shared>) {
    loop {
        shared.flush_soon.notified().await;
        shared.flush_waiting().await;
    }
}

/// Answers requests whose approval never came with an error, so clients stop waiting.
async fn expire_approvals(shared: Arc<Shared>) {
    let timeout = shared.config.approval_timeout;
    let every = (timeout / 10).clamp(Duration::from_millis(100), Duration::from_secs(10));
    loop {
        tokio::time::sleep(every).await;
        for p in shared.approvals.take_expired(timeout) {
            bump(&shared.counters.approvals_expired);
            let reply = Nip46Response::error(p.request.id, "approval timed out");
            shared.publish(&p.auth, p.client, p.scheme, reply).await;
        }
    }
}

/// When the router's epoch moves (a member joined or left), re-routes the requests parked
/// as another instance's: those this instance owns now are handled, if nobody claimed them.
/// While the router has no epoch, parked requests are dropped.
async fn reroute_parked(shared: Arc<Shared>) {
    let router = shared.custody.router().clone();
    let mut epoch = router.epoch();
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = router.epoch();
        if now.is_none() {
            shared.parked.clear();
            shared.standby.clear();
        }
        if now == epoch || now.is_none() {
            epoch = now;
            continue;
        }
        epoch = now;
        // Requests kept raw for a standby: checked as the relay pool checks delivered
        // events, off the runtime, then through intake (which parks them again, parsed,
        // if another instance still owns them).
        let frames = shared.standby.take(shared.config.max_age);
        if !frames.is_empty() {
            let checked = tokio::task::spawn_blocking(move || {
                frames
                    .iter()
                    .map(|f| standby::verified_request(f))
                    .collect::<Vec<_>>()
            })
            .await
            .unwrap_or_default();
            for event in checked {
                match event {
                    Some(event) => shared.admit(event, true).await,
                    None => bump(&shared.counters.invalid),
                }
            }
        }
        for (request, at) in shared.parked.take(shared.config.max_age) {
            match router.route(&RoutingKey(request.bunker)) {
                Route::Local => {
                    shared.enqueue(request.event, request.bunker, true, false);
                }
                Route::Remote(_) => {
                    shared.parked.keep(request, at);
                }
            }
        }
    }
}

async fn work(shared: Arc<Shared>, jobs: async_channel::Receiver<Job>) {
    while let Ok(job) = jobs.recv().await {
        shared.process(job).await;
    }
}
