//! [`LoadClient`]: raw NIP-46 requests over real relays, replies recorded per request id.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use keycast_core::nostr::nips::nip44::{self, Version};
use keycast_core::nostr::{
    Event, EventBuilder, EventId, Filter, JsonUtil, Keys, Kind, PublicKey, RelayUrl, Tag, Timestamp,
};
use nostr_sdk::prelude::{Client, ClientOptions, RelayPoolNotification, RelayPoolOptions};
use serde_json::Value;
use tokio::sync::broadcast::{self, error::RecvError};
use tokio::sync::{oneshot, Notify};
use tokio::task::JoinHandle;

use super::LoadError;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The pool's default (4,096) drops notifications under load; lost ones show as `lagged`.
const NOTIFICATION_CHANNEL: usize = 1 << 16;
/// Replies created a little before `start` (clock skew between hosts) still count.
const LOOKBACK: Duration = Duration::from_secs(10);

/// One reply event received for a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The reply event, so the same event relayed twice is not mistaken for a duplicate.
    pub event: EventId,
    /// The bunker key that signed the reply event.
    pub from: PublicKey,
    /// The reply's `result` (a non-string value kept as JSON).
    pub result: Option<String>,
    /// The reply's `error`, if any.
    pub error: Option<String>,
    /// From just before the request was published to the reply's arrival.
    pub latency: Duration,
}

/// Replies for the ids given to [`LoadClient::wait`].
#[derive(Debug, Clone, Default)]
pub struct Tally {
    /// Every distinct reply event per answered id (normally exactly one).
    pub replies: HashMap<String, Vec<Reply>>,
    /// Ids without any reply, in the order given.
    pub unanswered: Vec<String>,
    /// Ids with more than one reply, in the order given.
    pub duplicated: Vec<String>,
}

impl Tally {
    /// Whether every id got exactly one reply.
    pub fn exactly_once(&self) -> bool {
        self.unanswered.is_empty() && self.duplicated.is_empty()
    }
}

/// Events the listeners received but did not record as replies.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Ignored {
    /// Not a kind 24133 event from someone else tagging the client.
    pub foreign: u64,
    /// Not NIP-44 decryptable with the client's key.
    pub undecryptable: u64,
    /// Decrypted, but not a reply object with a string `id`.
    pub malformed: u64,
    /// A reply for an id this client never sent.
    pub unsolicited: u64,
    /// A reply event already recorded (the same event through another relay).
    pub repeated: u64,
    /// Notifications the relay pool dropped before they were read: replies lost here.
    pub lagged: u64,
}

/// Returns who signed the event in a `sign_event` reply, if it is a valid signed event.
pub fn signed_by(reply: &Reply) -> Option<PublicKey> {
    let event = Event::from_json(reply.result.as_deref()?).ok()?;
    event.verify().ok()?;
    Some(event.pubkey)
}

/// A raw NIP-46 client with several client keys, each on its own relay connections.
/// Clones share the connections and the recorded replies.
#[derive(Clone)]
pub struct LoadClient {
    inner: Arc<Inner>,
}

struct Inner {
    relays: Vec<RelayUrl>,
    clients: Vec<(Keys, Client)>,
    shared: Arc<Shared>,
    listeners: Vec<JoinHandle<()>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        for task in &self.listeners {
            task.abort();
        }
    }
}

#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    answered: Notify,
}

#[derive(Default)]
struct State {
    /// Request id -> (client index, publish instant).
    sent: HashMap<String, (usize, Instant)>,
    replies: HashMap<String, Vec<Reply>>,
    /// Callers of [`LoadClient::wait_one`] still waiting, by request id.
    waiters: HashMap<String, oneshot::Sender<Reply>>,
    ignored: Ignored,
}

impl std::fmt::Debug for LoadClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let pubkeys: Vec<PublicKey> = self
            .inner
            .clients
            .iter()
            .map(|(k, _)| k.public_key())
            .collect();
        f.debug_struct("LoadClient")
            .field("relays", &self.inner.relays)
            .field("clients", &pubkeys)
            .field("ignored", &self.ignored())
            .finish_non_exhaustive()
    }
}

impl LoadClient {
    /// Connects `clients` fresh random client keys to `relays`; each is subscribed
    /// (kind 24133, `#p` = its pubkey, since 10 s ago) on every relay before this returns.
    /// Any relay failing to connect or subscribe fails the start.
    pub async fn start(relays: Vec<RelayUrl>, clients: usize) -> Result<Self, LoadError> {
        if relays.is_empty() {
            return Err(LoadError::Relay("no relays given".into()));
        }
        let mut inner = Inner {
            relays,
            clients: Vec::with_capacity(clients),
            shared: Arc::default(),
            listeners: Vec::with_capacity(clients),
        };
        for index in 0..clients {
            if let Err(e) = inner.add_client(index).await {
                for (_, client) in &inner.clients {
                    client.shutdown().await;
                }
                return Err(e);
            }
        }
        Ok(Self {
            inner: Arc::new(inner),
        })
    }

    /// How many client keys this load client has.
    pub fn clients(&self) -> usize {
        self.inner.clients.len()
    }

    /// # Panics
    /// If `client >= self.clients()`.
    pub fn client_pubkey(&self, client: usize) -> PublicKey {
        self.inner.clients[client].0.public_key()
    }

    /// Sends one request from `client` and returns its id at once, without waiting for
    /// the reply. Errors if no relay accepted the event.
    ///
    /// # Panics
    /// If `client >= self.clients()`.
    pub async fn send(
        &self,
        client: usize,
        bunker: PublicKey,
        method: &str,
        params: Vec<String>,
    ) -> Result<String, LoadError> {
        let (keys, relays) = &self.inner.clients[client];
        let id = random_id();
        let json = serde_json::json!({ "id": id, "method": method, "params": params });
        let content = nip44::encrypt(keys.secret_key(), &bunker, json.to_string(), Version::V2)
            .map_err(|e| LoadError::Crypto(e.to_string()))?;
        let event = EventBuilder::new(Kind::NostrConnect, content)
            .tag(Tag::public_key(bunker))
            .sign_with_keys(keys)
            .map_err(|e| LoadError::Crypto(e.to_string()))?;
        // Recorded before publishing: the reply can arrive before the relay's `OK`.
        self.inner
            .shared
            .lock()
            .sent
            .insert(id.clone(), (client, Instant::now()));
        let output = relays.send_event(&event).await.map_err(relay_error)?;
        if output.success.is_empty() {
            return Err(LoadError::Relay(format!(
                "not accepted: {:?}",
                output.failed
            )));
        }
        Ok(id)
    }

    /// Sends `connect` with params `[bunker hex, secret]` and waits up to `timeout` for
    /// its reply: the result (`"ack"` or the secret), or why not.
    pub async fn connect(
        &self,
        client: usize,
        bunker: PublicKey,
        secret: &str,
        timeout: Duration,
    ) -> Result<String, LoadError> {
        let params = vec![bunker.to_hex(), secret.to_owned()];
        let id = self.send(client, bunker, "connect", params).await?;
        let mut tally = self
            .wait(std::slice::from_ref(&id), timeout, Duration::ZERO)
            .await;
        let reply = tally
            .replies
            .remove(&id)
            .and_then(|r| r.into_iter().next())
            .ok_or(LoadError::Timeout)?;
        match (reply.error, reply.result) {
            (Some(error), _) if !error.is_empty() => Err(LoadError::Refused(error)),
            (_, Some(result)) => Ok(result),
            _ => Err(LoadError::Refused("reply without a result".into())),
        }
    }

    /// Sends `sign_event` for a kind 1 note with `content`, created now; returns the id.
    pub async fn sign(
        &self,
        client: usize,
        bunker: PublicKey,
        content: &str,
    ) -> Result<String, LoadError> {
        let template = serde_json::json!({
            "kind": 1,
            "content": content,
            "tags": [],
            "created_at": Timestamp::now().as_secs(),
        });
        self.send(client, bunker, "sign_event", vec![template.to_string()])
            .await
    }

    /// Waits until every id in `ids` has a reply or `timeout` passes, then `settle` more
    /// (late duplicates count too), and tallies the replies for `ids`.
    pub async fn wait(&self, ids: &[String], timeout: Duration, settle: Duration) -> Tally {
        let shared = &self.inner.shared;
        let deadline = tokio::time::Instant::now() + timeout;
        let mut pending: Vec<&String> = ids.iter().collect();
        loop {
            // Registered before checking, so a reply landing in between still wakes us.
            let answered = shared.answered.notified();
            tokio::pin!(answered);
            answered.as_mut().enable();
            {
                let state = shared.lock();
                pending.retain(|id| !state.replies.contains_key(*id));
            }
            if pending.is_empty() || tokio::time::timeout_at(deadline, answered).await.is_err() {
                break;
            }
        }
        tokio::time::sleep(settle).await;
        let state = shared.lock();
        let mut tally = Tally::default();
        for id in ids {
            match state.replies.get(id) {
                None => tally.unanswered.push(id.clone()),
                Some(replies) => {
                    if replies.len() > 1 {
                        tally.duplicated.push(id.clone());
                    }
                    tally.replies.insert(id.clone(), replies.clone());
                }
            }
        }
        tally
    }

    /// Waits up to `timeout` for the first reply to `id` and returns it (at once if it
    /// has already arrived). Unlike [`LoadClient::wait`], only this caller is woken when
    /// the reply lands, so many requests can each be awaited by their own task (a closed
    /// loop) without every reply waking every waiter. Later replies to `id` are still
    /// recorded, so a [`LoadClient::wait`] afterwards finds duplicates.
    pub async fn wait_one(&self, id: &str, timeout: Duration) -> Option<Reply> {
        let receiver = {
            let mut state = self.inner.shared.lock();
            if let Some(first) = state.replies.get(id).and_then(|r| r.first()) {
                return Some(first.clone());
            }
            let (sender, receiver) = oneshot::channel();
            state.waiters.insert(id.to_owned(), sender);
            receiver
        };
        match tokio::time::timeout(timeout, receiver).await {
            Ok(Ok(reply)) => Some(reply),
            _ => {
                let mut state = self.inner.shared.lock();
                state.waiters.remove(id);
                // The reply may have landed between the timeout and this lock.
                state.replies.get(id).and_then(|r| r.first()).cloned()
            }
        }
    }

    /// Drops everything recorded for `id` (its send time, replies and any waiter), so a
    /// long-running open loop does not keep every request it ever sent. A reply to `id`
    /// arriving afterwards (late, or a duplicate) counts as `unsolicited` in
    /// [`LoadClient::ignored`].
    pub fn forget(&self, id: &str) {
        let mut state = self.inner.shared.lock();
        state.sent.remove(id);
        state.replies.remove(id);
        state.waiters.remove(id);
    }

    /// What the listeners received but did not record as replies, so far.
    pub fn ignored(&self) -> Ignored {
        self.inner.shared.lock().ignored
    }

    /// Disconnects every client key (also for clones of this client).
    pub async fn shutdown(self) {
        for (_, client) in &self.inner.clients {
            client.shutdown().await;
        }
    }
}

impl Inner {
    async fn add_client(&mut self, index: usize) -> Result<(), LoadError> {
        let keys = Keys::generate();
        let pool = RelayPoolOptions::new().notification_channel_size(NOTIFICATION_CHANNEL);
        let client = Client::builder()
            .opts(ClientOptions::new().pool(pool))
            .build();
        self.clients.push((keys.clone(), client.clone()));
        for url in &self.relays {
            client.add_relay(url.clone()).await.map_err(relay_error)?;
        }
        let connected = client.try_connect(CONNECT_TIMEOUT).await;
        if !connected.failed.is_empty() {
            return Err(LoadError::Relay(format!("connect: {:?}", connected.failed)));
        }
        // Listening before subscribing, so no reply can slip past.
        let notifications = client.notifications();
        let filter = Filter::new()
            .kind(Kind::NostrConnect)
            .pubkey(keys.public_key())
            .since(Timestamp::now() - LOOKBACK);
        let subscribed = client.subscribe(filter, None).await.map_err(relay_error)?;
        if subscribed.success.len() != self.relays.len() {
            return Err(LoadError::Relay(format!(
                "subscribe: {:?}",
                subscribed.failed
            )));
        }
        let shared = self.shared.clone();
        self.listeners
            .push(tokio::spawn(listen(shared, index, keys, notifications)));
        Ok(())
    }
}

async fn listen(
    shared: Arc<Shared>,
    client: usize,
    keys: Keys,
    mut notifications: broadcast::Receiver<RelayPoolNotification>,
) {
    loop {
        match notifications.recv().await {
            Ok(RelayPoolNotification::Event { event, .. }) => {
                shared.record(client, &keys, &event, Instant::now());
            }
            Ok(RelayPoolNotification::Shutdown) | Err(RecvError::Closed) => break,
            Ok(_) => {}
            Err(RecvError::Lagged(n)) => shared.lock().ignored.lagged += n,
        }
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn record(&self, client: usize, keys: &Keys, event: &Event, at: Instant) {
        let me = keys.public_key();
        let for_me = event.kind == Kind::NostrConnect
            && event.pubkey != me
            && event.tags.public_keys().any(|p| *p == me);
        if !for_me {
            self.lock().ignored.foreign += 1;
            return;
        }
        let Ok(plain) = nip44::decrypt(keys.secret_key(), &event.pubkey, &event.content) else {
            self.lock().ignored.undecryptable += 1;
            return;
        };
        let Some((id, result, error)) = parse_reply(&plain) else {
            self.lock().ignored.malformed += 1;
            return;
        };
        let mut state = self.lock();
        let sent_at = match state.sent.get(&id) {
            Some(&(by, sent_at)) if by == client => sent_at,
            _ => {
                state.ignored.unsolicited += 1;
                return;
            }
        };
        let replies = state.replies.entry(id.clone()).or_default();
        if replies.iter().any(|r| r.event == event.id) {
            state.ignored.repeated += 1;
            return;
        }
        let reply = Reply {
            event: event.id,
            from: event.pubkey,
            result,
            error,
            latency: at.saturating_duration_since(sent_at),
        };
        let first = replies.is_empty();
        replies.push(reply.clone());
        if first {
            if let Some(waiter) = state.waiters.remove(&id) {
                let _ = waiter.send(reply);
            }
        }
        drop(state);
        self.answered.notify_waiters();
    }
}

/// `(id, result, error)` of a reply; non-string `result`/`error` values are kept as JSON.
fn parse_reply(plain: &str) -> Option<(String, Option<String>, Option<String>)> {
    let mut reply: serde_json::Map<String, Value> = serde_json::from_str(plain).ok()?;
    let id = match reply.remove("id")? {
        Value::String(id) => id,
        _ => return None,
    };
    let text = |v: Option<Value>| match v? {
        Value::Null => None,
        Value::String(s) => Some(s),
        other => Some(other.to_string()),
    };
    Some((
        id,
        text(reply.remove("result")),
        text(reply.remove("error")),
    ))
}

fn random_id() -> String {
    rand::random::<[u8; 16]>()
        .iter()
        .fold(String::with_capacity(32), |mut hex, b| {
            let _ = write!(hex, "{b:02x}");
            hex
        })
}

fn relay_error(e: impl std::fmt::Display) -> LoadError {
    LoadError::Relay(e.to_string())
}
