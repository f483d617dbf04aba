//! Following one Redis pub/sub channel for as long as the process runs: reconnects with
//! backoff, and reports each (re)subscription, since messages sent while disconnected are
//! lost and the caller must catch up some other way.

use std::time::Duration;

use futures_util::StreamExt;

/// The first wait before resubscribing; it doubles up to 10 s.
const FIRST: Duration = Duration::from_millis(100);

/// What a channel follower is told.
pub enum Heard {
    /// Subscribed (again): anything published meanwhile was missed.
    Subscribed,
    /// A message's payload.
    Message(String),
    /// The subscription broke or could not be made: Redis is unreachable for now.
    Lost,
}

/// Subscribes to `channel` and calls `on` for every event, forever (abort the task to stop).
pub async fn follow(client: redis::Client, channel: String, mut on: impl FnMut(Heard) + Send) {
    let mut backoff = FIRST;
    loop {
        match client.get_async_pubsub().await {
            Ok(mut pubsub) => match pubsub.subscribe(&channel).await {
                Ok(()) => {
                    backoff = FIRST;
                    on(Heard::Subscribed);
                    let mut messages = pubsub.on_message();
                    while let Some(m) = messages.next().await {
                        on(Heard::Message(m.get_payload().unwrap_or_default()));
                    }
                    tracing::warn!(%channel, "Redis channel closed; resubscribing");
                }
                Err(e) => {
                    tracing::warn!(%channel, error = %e, "cannot subscribe to a Redis channel")
                }
            },
            // Warned once per outage; the retries are quiet.
            Err(e) if backoff == FIRST => {
                tracing::warn!(%channel, error = %e, "cannot reach Redis for pub/sub; retrying")
            }
            Err(e) => tracing::debug!(%channel, error = %e, "cannot reach Redis for pub/sub"),
        }
        on(Heard::Lost);
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(10));
    }
}
