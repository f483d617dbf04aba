//! The relay service: listens for kind-24133 requests to the bunker keys of active
//! authorizations and answers them through [`RequestHandler`].
//!
//! Intake (one task) checks what is cheap: kind, `created_at` window, duplicate ids, and
//! whether this instance owns the `#p` bunker ([`keycast_core::RequestRouter`]). Accepted
//! requests go to a bounded queue drained by workers, which look up the authorization,
//! decrypt, answer and publish the reply without waiting for the relay's `OK`. Signatures
//! were verified by the relay pool before delivery. Every crypto step of ours runs on the
//! engine's crypto pool. A
//! full queue still answers the client ("overloaded") when it can, and counts the drop.

mod approvals;
mod config;
mod pairing;
mod parked;
mod relays;
mod stats;
mod transport;

use std::sync::Arc;
use std::time::{Duration, Instant};

use keycast_core::nostr::{Event, EventId, Kind, PublicKey, Timestamp};
use keycast_core::{Authorization, AuthorizationId, Custody, Route, RoutingKey};
use nostr_sdk::prelude::{
    Client, ClientMessage, Filter, RelayMessage, RelayOptions, RelayPoolNotification, RelayStatus,
    SubscriptionId,
};
use tokio::task::JoinHandle;

pub use config::BunkerConfig;
pub use relays::{RelayConnection, RelayState};
pub use stats::{BunkerStats, QUEUE_WAIT_BUCKETS_MICROS};

use crate::handler::RequestHandler;
use crate::protocol::message::Nip46Request;
use crate::protocol::response::Nip46Response;
use crate::{Error, Result};
use approvals::{Approvals, Pending};
use parked::{Parked, ParkedRequest};
use relays::{Pace, Supervisor};
use stats::{bump, Counters};

const SUBSCRIPTION: &str = "keycast-nip46";
/// Overload replies in flight at once; beyond that a dropped request gets no reply.
const OVERLOAD_REPLIES: usize = 64;

struct Job {
    event: Box<Event>,
    /// The `#p` bunker pubkey the request was addressed to.
    bunker: PublicKey,
    enqueued: Instant,
    /// First left to another instance, then re-routed here after a ring change.
    rerouted: bool,
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
    /// The bunker keys last subscribed for (sorted); `None` before the first time.
    subscribed: tokio::sync::Mutex<Option<Vec<PublicKey>>>,
    relay_options: RelayOptions,
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
    pub async fn start(custody: Custody, config: BunkerConfig) -> Result<Self> {
        let client = Client::builder()
            .websocket_transport(transport::NoDelayTransport)
            .build();
        // Ping and resubscribe come from the relay pool; reconnects from our supervisor
        // (the pool's schedule is linear, ours exponential).
        let relay_options = RelayOptions::new().reconnect(false).ping(true);
        let (queue, jobs) = async_channel::bounded(config.queue_capacity.max(1));
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
            subscribed: tokio::sync::Mutex::new(None),
            relay_options,
            config,
        });
        let mut relays = shared.config.relays.clone();
        let now = Timestamp::now();
        for auth in shared
            .custody
            .store()
            .list_active_authorizations(now)
            .await?
        {
            relays.extend(auth.relays.iter().cloned());
        }
        shared.add_relays(&relays).await?;
        let notifications = shared.client.notifications();
        shared.refresh_subscription().await?;
        let pace = Pace {
            reconnect_after: shared.config.reconnect_after,
            probe_every: shared.config.stall_probe_every,
            stall_timeout: shared.config.stall_timeout,
        };
        let intake = vec![
            tokio::spawn(intake(shared.clone(), notifications)),
            tokio::spawn(expire_approvals(shared.clone())),
            tokio::spawn(reroute_parked(shared.clone())),
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

    /// Re-subscribes for the bunker keys of the authorizations active now. Call after
    /// creating or revoking authorizations; connections are kept.
    pub async fn refresh_subscription(&self) -> Result<()> {
        self.shared.refresh_subscription().await
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
        s.counters.snapshot(
            q.len(),
            q.capacity().unwrap_or(usize::MAX),
            s.approvals.len(),
            s.parked.len(),
        )
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
        self.shared.client.shutdown().await;
    }
}

impl Shared {
    /// Adds relays not yet in the pool and starts connecting them (the supervisor keeps
    /// them connected); waits at most `connect_timeout` for them.
    async fn add_relays(&self, relays: &[keycast_core::nostr::RelayUrl]) -> Result<()> {
        let mut added = Vec::new();
        for relay in relays {
            let new = self
                .client
                .pool()
                .add_relay(relay.clone(), self.relay_options.clone())
                .await
                .map_err(|e| Error::Relay {
                    reason: e.to_string(),
                })?;
            if new {
                added.push(relay.clone());
            }
        }
        if added.is_empty() {
            return Ok(());
        }
        for relay in &added {
            // Only fails for a relay not in the pool, which it now is.
            let _ = self.client.connect_relay(relay.clone()).await;
        }
        // Requests sent before our subscription reaches a relay are lost (kind 24133 is
        // ephemeral), so wait a little; unreachable relays delay this at most the timeout.
        let pool = self.client.relays().await;
        let timeout = self.config.connect_timeout;
        let _ = tokio::time::timeout(timeout, async {
            for relay in added.iter().filter_map(|u| pool.get(u)) {
                relay.wait_for_connection(timeout).await;
            }
        })
        .await;
        Ok(())
    }

    async fn refresh_subscription(&self) -> Result<()> {
        let now = Timestamp::now();
        let active = self.custody.store().list_active_authorizations(now).await?;
        let mut bunkers: Vec<PublicKey> = active.iter().map(|a| a.bunker_pubkey).collect();
        bunkers.sort_unstable();
        // Held across the relay call, so concurrent refreshes apply in order. Most
        // changes (a client connecting, say) leave the set as it is: no REQ is re-sent.
        let mut subscribed = self.subscribed.lock().await;
        if subscribed.as_ref() == Some(&bunkers) {
            return Ok(());
        }
        let id = SubscriptionId::new(SUBSCRIPTION);
        if active.is_empty() {
            // A filter without `#p` would match every request on the relay.
            self.client.unsubscribe(&id).await;
            *subscribed = Some(bunkers);
            return Ok(());
        }
        let since = Timestamp::from(now.as_secs().saturating_sub(self.config.max_age.as_secs()));
        let filter = Filter::new()
            .kind(Kind::NostrConnect)
            .pubkeys(active.iter().map(|a| a.bunker_pubkey))
            .since(since);
        self.client
            .subscribe_with_id(id, filter, None)
            .await
            .map_err(|e| Error::Relay {
                reason: e.to_string(),
            })?;
        *subscribed = Some(bunkers);
        Ok(())
    }

    /// The cheap checks, then the queue.
    async fn accept(self: &Arc<Self>, event: Box<Event>) {
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
        let router = self.custody.router();
        if let Route::Remote(_) = router.route(&RoutingKey(bunker)) {
            bump(&self.counters.rejected_hashring);
            if router.epoch().is_some() {
                self.parked.park(ParkedRequest {
                    event,
                    bunker,
                    at: Instant::now(),
                });
            }
            return;
        }
        self.enqueue(event, bunker, false);
    }

    /// Hands an accepted request to the workers, or answers "overloaded".
    fn enqueue(self: &Arc<Self>, event: Box<Event>, bunker: PublicKey, rerouted: bool) {
        // The authorization is looked up by the worker: a cold lookup is a store read, and
        // intake is a single task that must not wait on one.
        let job = Job {
            event,
            bunker,
            enqueued: Instant::now(),
            rerouted,
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

    /// Runs one request in its own task so a panic is contained and counted.
    async fn process(self: &Arc<Self>, job: Job) {
        self.counters.waited(job.enqueued.elapsed());
        let shared = self.clone();
        if let Err(e) = tokio::spawn(async move { shared.answer(job).await }).await {
            if e.is_panic() {
                bump(&self.counters.panics);
                tracing::error!("a NIP-46 request handler panicked; the worker continues");
            }
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
        let won = self
            .custody
            .router()
            .claim(&RoutingKey(job.bunker), &job.event.id)
            .await;
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
        // tests/relay_forged.rs holds that a forged request is never answered.
        let Some(o) = self.open(job.bunker, *job.event).await else {
            return;
        };
        let reply = match Nip46Request::parse(&o.plaintext) {
            Ok(request) => {
                let reply = self
                    .handler
                    .handle(o.auth.id, o.client, request.clone())
                    .await;
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
        let id = match Nip46Request::parse(&o.plaintext) {
            Ok(r) => r.id,
            Err(e) => match e.request_id() {
                Some(id) => id.to_owned(),
                None => return,
            },
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
        // The client listens where its authorization says (a nostrconnect:// client names
        // its relays); authorizations without relays use the configured ones.
        let relays = if auth.relays.is_empty() {
            &self.config.relays
        } else {
            &auth.relays
        };
        if let Err(e) = self
            .client
            .send_msg_to(relays.iter().cloned(), ClientMessage::event(event))
            .await
        {
            tracing::warn!(error = %e, "cannot hand a NIP-46 reply to the relays");
        }
    }
}

async fn intake(
    shared: Arc<Shared>,
    mut notifications: tokio::sync::broadcast::Receiver<RelayPoolNotification>,
) {
    loop {
        match notifications.recv().await {
            Ok(RelayPoolNotification::Event { event, .. }) => shared.accept(event).await,
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
        }
        if now == epoch || now.is_none() {
            epoch = now;
            continue;
        }
        epoch = now;
        for request in shared.parked.take(shared.config.max_age) {
            match router.route(&RoutingKey(request.bunker)) {
                Route::Local => {
                    shared.enqueue(request.event, request.bunker, true);
                }
                Route::Remote(_) => {
                    shared.parked.park(request);
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
