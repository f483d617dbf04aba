//! Follows the store's change feed, so writes made elsewhere (the CLI, another instance)
//! reach this process's caches and NIP-46 subscription within a fraction of a second,
//! while the signing path never reads the database.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use keycast_core::{Changed, Custody, KeyStore};
use keycast_nip46::Bunker;

/// How often the feed is read.
pub const POLL: Duration = Duration::from_millis(250);
/// How far behind the cursor each read starts: a concurrent writer can commit a lower
/// `seq` a moment after a higher one (Postgres sequences), and must not be missed.
const LOOKBACK: u64 = 256;
const BATCH: u32 = 1000;

/// Reads the feed until the task is aborted, starting after `cursor`.
pub async fn follow(
    store: Arc<dyn KeyStore>,
    custody: Custody,
    bunker: Option<Arc<Bunker>>,
    mut cursor: u64,
) {
    let mut applied = BTreeSet::new();
    let mut failing = false;
    loop {
        tokio::time::sleep(POLL).await;
        let changes = match store
            .changes_since(cursor.saturating_sub(LOOKBACK), BATCH)
            .await
        {
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
            .filter(|c| applied.insert(c.seq))
            .collect();
        if fresh.is_empty() {
            continue;
        }
        custody.apply_changes(&fresh);
        cursor = cursor.max(fresh.iter().map(|c| c.seq).max().unwrap_or(cursor));
        let floor = cursor.saturating_sub(LOOKBACK);
        applied = applied.split_off(&floor);
        let authorizations = fresh
            .iter()
            .any(|c| matches!(c.what, Changed::Authorization(_)));
        if let (true, Some(bunker)) = (authorizations, &bunker) {
            if let Err(e) = bunker.refresh_subscription().await {
                tracing::warn!(error = %e, "cannot refresh the NIP-46 subscription");
            }
        }
    }
}
