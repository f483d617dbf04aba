//! Custody engine benchmarks. Run through `benches/report.sh`, which pins the `one_core`
//! group to CPU 0 and computes ratios against the raw Schnorr baseline of the same run.
//!
//! Groups:
//! - `one_core/*`: raw secp256k1 Schnorr sign (baseline); engine `sign_event` warm
//!   (sequential latency, and 64 callers pipelined through one crypto thread); cold; NIP-44
//!   encrypt with and without the conversation-key cache.
//! - `two_cores/*`: the same baseline and 64 concurrent callers with two crypto threads,
//!   once with a single-threaded runtime and once with a two-worker runtime.

// criterion_group! generates an undocumented public function.
#![allow(missing_docs)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion, Throughput};
use keycast_core::nostr::secp256k1::{Message, SECP256K1};
use keycast_core::nostr::{Keys, Kind};
use keycast_core::testing::fixtures::memory_engine;
use keycast_core::*;
use tokio::runtime::Runtime;

const CALLERS: u64 = 64;

struct Bench {
    custody: Custody,
    key: KeyId,
}

fn runtime(workers: usize) -> Runtime {
    let mut b = if workers == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(workers);
        b
    };
    b.enable_all().build().expect("runtime")
}

fn setup(rt: &Runtime, cfg: CustodyConfig) -> Bench {
    rt.block_on(async {
        let (custody, key) = memory_engine(|b| b.authorizer(Arc::new(AllowAll)).config(cfg)).await;
        // Warm the cache.
        custody
            .get_public_key(Caller::Owner(key.id))
            .await
            .expect("warm");
        Bench {
            custody,
            key: key.id,
        }
    })
}

fn config(crypto_threads: usize) -> CustodyConfig {
    CustodyConfig {
        crypto_threads,
        ..CustodyConfig::default()
    }
}

fn note() -> EventTemplate {
    EventTemplate::new(
        Kind::TextNote,
        "benchmark note with a realistic amount of text in it",
    )
}

fn raw_sign(g: &mut BenchmarkGroup<'_, criterion::measurement::WallTime>) {
    let keys = Keys::generate();
    let msg = Message::from_digest([7u8; 32]);
    let mut rng = rand::thread_rng();
    g.bench_function("raw_schnorr_sign", |b| {
        b.iter(|| keys.sign_schnorr_with_ctx(SECP256K1, &msg, &mut rng))
    });
}

/// `iters` signatures spread over `CALLERS` concurrent tasks; returns the wall time.
fn concurrent_signs(rt: &Runtime, bench: &Bench, iters: u64) -> Duration {
    rt.block_on(async {
        let start = Instant::now();
        let tasks: Vec<_> = (0..CALLERS)
            .map(|i| {
                let n = iters / CALLERS + u64::from(i < iters % CALLERS);
                let c = bench.custody.clone();
                let caller = Caller::Owner(bench.key);
                tokio::spawn(async move {
                    for _ in 0..n {
                        c.sign_event(caller, note()).await.expect("sign");
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.expect("join");
        }
        start.elapsed()
    })
}

fn one_core(c: &mut Criterion) {
    let mut g = c.benchmark_group("one_core");
    g.throughput(Throughput::Elements(1));
    raw_sign(&mut g);

    let rt = runtime(1);
    let warm = setup(&rt, config(1));
    g.bench_function("sign_event_warm_sequential", |b| {
        b.to_async(&rt)
            .iter(|| warm.custody.sign_event(Caller::Owner(warm.key), note()))
    });
    g.bench_function("sign_event_warm_64_callers", |b| {
        b.iter_custom(|iters| concurrent_signs(&rt, &warm, iters))
    });
    g.bench_function("sign_event_cold", |b| {
        b.to_async(&rt).iter(|| async {
            warm.custody.invalidate_key(warm.key);
            warm.custody
                .sign_event(Caller::Owner(warm.key), note())
                .await
        })
    });

    let peer = Keys::generate().public_key();
    g.bench_function("nip44_encrypt_cached_conversation_key", |b| {
        b.to_async(&rt).iter(|| {
            warm.custody
                .nip44_encrypt(Caller::Owner(warm.key), peer, "hello there".into())
        })
    });
    let uncached = setup(
        &rt,
        CustodyConfig {
            conversation_cache_capacity: 0,
            ..config(1)
        },
    );
    g.bench_function("nip44_encrypt_uncached_conversation_key", |b| {
        b.to_async(&rt).iter(|| {
            uncached
                .custody
                .nip44_encrypt(Caller::Owner(uncached.key), peer, "hello there".into())
        })
    });
    g.finish();
}

fn two_cores(c: &mut Criterion) {
    let mut g = c.benchmark_group("two_cores");
    g.throughput(Throughput::Elements(1));
    raw_sign(&mut g);
    for workers in [1, 2] {
        let rt = runtime(workers);
        let warm = setup(&rt, config(2));
        g.bench_function(
            format!("sign_event_warm_64_callers_runtime_{workers}"),
            |b| b.iter_custom(|iters| concurrent_signs(&rt, &warm, iters)),
        );
    }
    g.finish();
}

criterion_group!(benches, one_core, two_cores);
criterion_main!(benches);
