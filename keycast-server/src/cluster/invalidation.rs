//! Cache invalidation across instances. Postgres's change feed is the authority; Redis only
//! makes it fast. An instance that applies changes it found itself (its own write, or its
//! periodic poll) publishes the feed position it reached on `<prefix>:changes`; every other
//! instance behind that position reads the feed at once instead of at its next poll. A
//! missed message costs at most one poll period, never a revocation: the poll runs anyway.

use std::sync::atomic::Ordering;

use redis::aio::ConnectionManager;
use redis::AsyncCommands;
use tokio::task::JoinHandle;

use super::pubsub::{self, Heard};
use crate::fence::FenceSignals;

/// Publishes this instance's feed position.
#[derive(Clone)]
pub struct Announcer {
    redis: ConnectionManager,
    channel: String,
}

impl std::fmt::Debug for Announcer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Announcer")
            .field("channel", &self.channel)
            .finish_non_exhaustive()
    }
}

fn channel(prefix: &str) -> String {
    format!("{prefix}:changes")
}

impl Announcer {
    /// Announces on `<prefix>:changes` through `redis`.
    pub fn new(redis: ConnectionManager, prefix: &str) -> Self {
        Self {
            redis,
            channel: channel(prefix),
        }
    }

    /// Tells the others the feed reached `seq`. Failure only delays them to their poll.
    pub async fn announce(&self, seq: u64) {
        let mut redis = self.redis.clone();
        let sent: redis::RedisResult<()> = redis.publish(&self.channel, seq).await;
        if let Err(e) = sent {
            tracing::debug!(error = %e, "cannot announce a change; others will poll it");
        }
    }
}

/// Follows the others' announcements: one ahead of this instance's cursor (or a
/// resubscription, after which some may have been missed) wakes the fence.
pub fn listen(client: redis::Client, prefix: &str, signals: FenceSignals) -> JoinHandle<()> {
    tokio::spawn(pubsub::follow(client, channel(prefix), move |heard| {
        let behind = match heard {
            Heard::Subscribed => true,
            Heard::Lost => false,
            Heard::Message(m) => m
                .trim()
                .parse::<u64>()
                .is_ok_and(|seq| seq > signals.cursor.load(Ordering::Relaxed)),
        };
        if behind {
            signals.remote.notify_one();
        }
    }))
}
