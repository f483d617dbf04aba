//! CPU of the NIP-46 subscription per authorization change, in process, at 1k, 10k and
//! 100k active authorizations (issue 19): what `Bunker::authorizations_changed` costs
//! the bunker when one authorization is revoked (read that record, move its key out of
//! its shard, build and send that shard's `REQ`, and later close the replaced one), with
//! nothing else in the timed thread.
//!
//! `cargo bench -p keycast-benches --bench nip46_changes` prints a markdown table;
//! `KEYCAST_BENCH_SCALES` (default `1000,10000,100000`) picks the sizes.
//!
//! Setup: keycast-core's in-memory store (so the figure is the subscription's own work, not
//! a database's), a `Bunker` on a current-thread runtime on the main thread (its relay
//! connections' tasks run there too), and a nostr-relay-builder relay on a runtime of its
//! own thread. Measured with `CLOCK_THREAD_CPUTIME_ID` on the main thread: [`CHANGES`]
//! revocations, each followed by `authorizations_changed` for it, until the relay has
//! confirmed the last `REQ` (a `cover` of one fresh authorization, whose own `REQ` is
//! subtracted as one more change), minus the same number of store revocations without
//! telling the bunker (the floor). The baseline is the single-thread raw Schnorr sign
//! rate, measured before and after in the same run.
//!
//! Under `cargo test` (no `--bench`) it runs at 200 authorizations as a smoke test.

use std::sync::Arc;
use std::time::{Duration, Instant};

use keycast_core::nostr::{Keys, RelayUrl, Timestamp};
use keycast_core::testing::fixtures;
use keycast_core::*;
use keycast_nip46::testing::TestRelay;
use keycast_nip46::{Bunker, BunkerConfig};

/// Revocations measured per size.
const CHANGES: usize = 500;
const DEFAULT_SCALES: &str = "1000,10000,100000";

/// A relay on a runtime of its own thread; dropped with the returned guard.
fn relay_thread() -> (RelayUrl, std::sync::mpsc::Sender<()>) {
    let (url_tx, url_rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("relay runtime");
        rt.block_on(async {
            let relay = TestRelay::with_defaults().await.expect("relay");
            url_tx.send(relay.url()).expect("url");
            tokio::task::spawn_blocking(move || stop_rx.recv())
                .await
                .ok();
            drop(relay);
        });
    });
    (url_rx.recv().expect("relay url"), stop_tx)
}

/// Stores an active authorization with a fresh bunker key, as `a`'s.
async fn store_like(store: &MemoryKeyStore, a: &Authorization) -> AuthorizationId {
    let mut auth = a.clone();
    auth.id = AuthorizationId::random();
    auth.bunker_pubkey = Keys::generate().public_key();
    auth.connect_secret = None;
    store.insert_authorization(&auth).await.expect("insert");
    auth.id
}

async fn revoke(store: &MemoryKeyStore, id: AuthorizationId) {
    store
        .revoke_authorization(id, Timestamp::now())
        .await
        .expect("revoke");
}

struct Row {
    n: usize,
    ready: Duration,
    per_change: Duration,
    floor: Duration,
    req_bytes: u64,
    reqs: u64,
}

async fn measure(n: usize, url: &RelayUrl, changes: usize) -> Row {
    let store = Arc::new(MemoryKeyStore::new());
    let custody = Custody::builder(store.clone(), Arc::new(InsecureTestKeyManager::new()))
        .build()
        .expect("engine");
    let a =
        fixtures::authorized_key(&custody, vec![Permission::FullAccess], vec![url.clone()]).await;
    let mut ids = Vec::with_capacity(n);
    for _ in 1..n {
        ids.push(store_like(&store, &a.authorization).await);
    }
    let started = Instant::now();
    let bunker = Bunker::start(custody.clone(), BunkerConfig::new(vec![url.clone()]))
        .await
        .expect("bunker");
    let ready = started.elapsed();
    assert_eq!(bunker.stats().subscribed_authorizations, n);
    let (floor_ids, change_ids) = ids.split_at(changes);
    let change_ids = &change_ids[..changes];
    // Warm: every lane connected and confirmed before anything is timed.
    assert!(bunker.cover(a.authorization.id).await.expect("cover"));

    let before = bunker.stats();
    let t0 = keycast_benches::thread_cpu();
    for &id in change_ids {
        revoke(&store, id).await;
        bunker.authorizations_changed(&[id]).await.expect("change");
    }
    let last = store_like(&store, &a.authorization).await;
    assert!(bunker.cover(last).await.expect("cover"), "relay confirmed");
    let spent = keycast_benches::thread_cpu() - t0;
    let after = bunker.stats();

    let t0 = keycast_benches::thread_cpu();
    for &id in floor_ids {
        revoke(&store, id).await;
    }
    let floor = (keycast_benches::thread_cpu() - t0) / changes as u32;
    assert_eq!(bunker.stats().subscribed_authorizations, n - changes + 1);
    bunker.shutdown().await;
    let counted = changes as u32 + 1;
    Row {
        n,
        ready,
        per_change: (spent / counted).saturating_sub(floor),
        floor,
        req_bytes: (after.req_bytes - before.req_bytes) / u64::from(counted),
        reqs: after.reqs_sent - before.reqs_sent,
    }
}

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    let scales: Vec<usize> = if bench {
        keycast_benches::bench_scales(DEFAULT_SCALES)
    } else {
        vec![200]
    };
    let changes = if bench { CHANGES } else { 50 };
    let (url, stop) = relay_thread();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let raw_before = keycast_benches::raw_sign_rate(1, Duration::from_secs(2));
    let rows: Vec<Row> = scales
        .iter()
        .map(|&n| rt.block_on(measure(n.max(2 * changes + 1), &url, changes)))
        .collect();
    let raw_after = keycast_benches::raw_sign_rate(1, Duration::from_secs(2));
    drop(stop);
    let raw = (raw_before + raw_after) / 2.0;
    let sign = Duration::from_secs_f64(1.0 / raw);
    println!(
        "raw Schnorr signs/s (one thread): {raw_before:.0} before, {raw_after:.0} after; \
         one signature = {:.1} µs",
        sign.as_secs_f64() * 1e6
    );
    println!();
    println!(
        "| active authorizations | bunker start s | CPU µs per change | ÷ one raw signature | \
         floor µs (store write) | REQ bytes per change | REQs per change |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|");
    for r in rows {
        println!(
            "| {} | {:.2} | {:.0} | {:.1} | {:.1} | {} | {:.2} |",
            r.n,
            r.ready.as_secs_f64(),
            r.per_change.as_secs_f64() * 1e6,
            r.per_change.as_secs_f64() / sign.as_secs_f64(),
            r.floor.as_secs_f64() * 1e6,
            r.req_bytes,
            r.reqs as f64 / (changes + 1) as f64,
        );
    }
}
