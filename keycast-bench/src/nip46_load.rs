//! NIP-46 load: `sign_event` through the relay to each bunker in turn, from raw clients
//! (`keycast_nip46::testing::LoadClient`); a reply counts as correct when it carries an
//! event signed by the expected key.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use keycast_core::nostr::PublicKey;
use keycast_nip46::testing::LoadClient;
use keycast_nip46::BunkerUri;

use crate::http_load::check_signed;

/// Connects may take a while when many run at once on a busy machine.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// Client keys bound to bunkers: bunker `i` is bound to client `i % clients` (connect
/// secrets are single-use, so each bunker has exactly one client).
#[derive(Debug, Clone)]
pub struct Nip46Load {
    load: LoadClient,
    bunkers: Arc<[PublicKey]>,
    user: PublicKey,
    timeout: Duration,
}

impl Nip46Load {
    /// Starts `clients` client keys on the first bunker's relays and connects every bunker,
    /// 16 at a time.
    pub async fn connect(
        bunkers: &[BunkerUri],
        clients: usize,
        user: PublicKey,
        timeout: Duration,
    ) -> Result<Self, String> {
        let relays = bunkers.first().ok_or("no bunkers")?.relays.clone();
        let load = LoadClient::start(relays, clients.max(1))
            .await
            .map_err(|e| format!("NIP-46 clients: {e}"))?;
        let mut pending = tokio::task::JoinSet::new();
        for (i, uri) in bunkers.iter().enumerate() {
            let (load, signer) = (load.clone(), uri.signer);
            let secret = uri.secret.clone().unwrap_or_default();
            let client = i % load.clients();
            pending.spawn(async move {
                load.connect(client, signer, &secret, CONNECT_TIMEOUT)
                    .await
                    .map_err(|e| format!("NIP-46 connect to bunker {i}: {e}"))
            });
            if pending.len() >= 16 {
                join_one(&mut pending).await?;
            }
        }
        while !pending.is_empty() {
            join_one(&mut pending).await?;
        }
        Ok(Self {
            load,
            bunkers: bunkers.iter().map(|b| b.signer).collect(),
            user,
            timeout,
        })
    }

    /// Request `i`: `sign_event` to bunker `i % bunkers` from the client bound to it.
    pub fn request(&self, i: u64) -> impl Future<Output = Result<(), String>> + Send + 'static {
        let this = self.clone();
        async move {
            let n = (i % this.bunkers.len() as u64) as usize;
            let client = n % this.load.clients();
            let content = format!("keycast-bench {i}");
            let id = this
                .load
                .sign(client, this.bunkers[n], &content)
                .await
                .map_err(|_| "nip46: send failed".to_owned())?;
            // Forgotten however this ends (answered, timed out here, or dropped at the
            // caller's deadline), so the client's records stay small over a long run.
            let _forget = Forget(&this.load, &id);
            let reply = this
                .load
                .wait_one(&id, this.timeout)
                .await
                .ok_or("timeout")?;
            if let Some(error) = reply.error.filter(|e| !e.is_empty()) {
                return Err(format!("nip46 error: {}", short(&error)));
            }
            check_signed(reply.result.as_deref(), this.user)
        }
    }

    /// One request per bunker, all at once, not counted: loads every authorization and the
    /// key into the server's caches.
    pub async fn warm_up(&self) -> Result<(), String> {
        let mut pending = tokio::task::JoinSet::new();
        for i in 0..self.bunkers.len() as u64 {
            let call = self.request(i);
            pending.spawn(async move { call.await.map_err(|e| format!("NIP-46 warm-up: {e}")) });
        }
        while !pending.is_empty() {
            join_one(&mut pending).await?;
        }
        Ok(())
    }

    /// `(late or duplicate replies, notifications the client's relay pool dropped)` so far:
    /// replies to requests already given up on or answered.
    pub fn stray_replies(&self) -> (u64, u64) {
        let ignored = self.load.ignored();
        (ignored.unsolicited + ignored.repeated, ignored.lagged)
    }

    pub async fn shutdown(self) {
        self.load.shutdown().await;
    }
}

/// Drops a request's records from the client when it goes out of scope.
struct Forget<'a>(&'a LoadClient, &'a str);

impl Drop for Forget<'_> {
    fn drop(&mut self) {
        self.0.forget(self.1);
    }
}

async fn join_one<T: 'static>(
    set: &mut tokio::task::JoinSet<Result<T, String>>,
) -> Result<(), String> {
    match set.join_next().await {
        Some(Ok(Ok(_))) | None => Ok(()),
        Some(Ok(Err(e))) => Err(e),
        Some(Err(e)) => Err(format!("task: {e}")),
    }
}

/// Error texts can carry ids; keep the kind readable and the kinds few.
fn short(error: &str) -> &str {
    error.split(':').next().unwrap_or(error).trim()
}
