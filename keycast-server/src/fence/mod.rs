//! Follows the store's change feed, so writes made elsewhere (the CLI, another instance)
//! reach this process's caches and NIP-46 subscription within a fraction of a second,
//! while the signing path never reads the database.
//!
//! The feed is read every poll period, and at once when nudged: by this instance's own
//! HTTP writes (`local`), or in a cluster by another instance announcing a position ahead
//! of ours (`remote`, see [`crate::cluster::invalidation`]). Positions found by our own
//! reads are announced to the others.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use keycast_core::{Changed, Custody, KeyStore};
use keycast_nip46::Bunker;
use tokio::sync::Notify;

use crate::cluster::invalidation::Announcer;

mod window;
use window::FeedWindow;

/// The default poll period.
pub const POLL: Duration = Duration::from_millis(250);

/// What wakes the fence early, and where it has read up to.
#[derive(Debug, Clone, Default)]
pub struct FenceSignals {
    /// This instance wrote something.
    pub local: Arc<Notify>,
    /// Another instance found changes this one has not read.
    pub remote: Arc<Notify>,
    /// The highest feed position applied.
    pub cursor: Arc<AtomicU64>,
}
/// The most changes one read applies.
const BATCH: u32 = 1000;

/// Where the fence reads and whom it tells.
#[derive(Debug)]
pub struct Fence {
    /// The store whose change feed is read.
    pub store: Arc<dyn KeyStore>,
    /// The engine whose caches the changes are applied to.
    pub custody: Custody,
    /// The NIP-46 service, whose subscription follows authorization changes.
    pub bunker: Option<Arc<Bunker>>,
    /// How often the feed is read when nothing wakes the fence.
    pub poll: Duration,
    /// What wakes it, and where it has read up to.
    pub signals: FenceSignals,
    /// In a cluster: tells the others about changes this instance found.
    pub announcer: Option<Announcer>,
}

/// Reads the feed until the task is aborted, from the caches' state at `cursor` (the
/// first read looks 256 positions back, for writes still committing then).
pub async fn follow(fence: Fence, cursor: u64) {
    let Fence {
        store,
        custody,
        bunker,
        poll,
        signals,
        announcer,
    } = fence;
    signals.cursor.store(cursor, Ordering::Relaxed);
    let mut window = FeedWindow::new(cursor);
    let mut failing = false;
    loop {
        // Changes found because another instance announced them need no announcement.
        let ours = tokio::select! {
            () = tokio::time::sleep(poll) => true,
            () = signals.local.notified() => true,
            () = signals.remote.notified() => false,
        };
        let changes = match store.changes_since(window.read_after(), BATCH).await {
            Ok(c) => {
                if failing {
                    tracing::info!("change feed readable again");
                    failing = false;
                }
                c
            }
            Err(e) => {
                if !failing {
                    tracing::warn!(error = %e, "cannot read the change feed; caches may be stale until it recovers");
                    failing = true;
                }
                continue;
            }
        };
        let fresh: Vec<_> = changes
            .into_iter()
            .filter(|c| window.admit(c.seq))
            .collect();
        window.settle();
        if fresh.is_empty() {
            continue;
        }
        custody.apply_changes(&fresh);
        let cursor = window.top();
        signals.cursor.store(cursor, Ordering::Relaxed);
        if let (true, Some(announcer)) = (ours, &announcer) {
            announcer.announce(cursor).await;
        }
        // Only the named authorizations are read again, and only their REQs re-sent.
        let authorizations: Vec<_> = fresh
            .iter()
            .filter_map(|c| match c.what {
                Changed::Authorization(id) => Some(id),
                _ => None,
            })
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        if let (false, Some(bunker)) = (authorizations.is_empty(), &bunker) {
            if let Err(e) = bunker.authorizations_changed(&authorizations).await {
                tracing::warn!(error = %e, "cannot update the NIP-46 subscription");
            }
        }
    }
}
