//! KeyStore latency benchmarks: p50/p99 per operation for SQLite and Postgres, with the
//! raw Schnorr sign rate measured in the same run as the yardstick for audit throughput.
//!
//! `cargo bench -p keycast-benches --bench storage` prints a markdown table. Postgres is
//! measured when `KEYCAST_TEST_POSTGRES_URL` is set (a scratch database is created and
//! dropped). Under `cargo test` (no `--bench` argument) every case runs a few iterations
//! only, as a smoke test.

use std::sync::Arc;
use std::time::{Duration, Instant};

use keycast_core::nostr::secp256k1::{Message, SECP256K1};
use keycast_core::nostr::{EventId, Keys, Timestamp};
use keycast_core::*;
use keycast_storage::{PostgresOptions, PostgresStore, SqliteStore};
use sqlx::Connection;

const POPULATION: usize = 1_000;
const BATCH: usize = 256;

struct Plan {
    iterations: usize,
    batch_iterations: usize,
}

struct Stats {
    p50: Duration,
    p99: Duration,
    per_sec: f64,
}

fn stats(mut samples: Vec<Duration>, items_per_sample: usize) -> Stats {
    samples.sort();
    let total: Duration = samples.iter().sum();
    let pick = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
    Stats {
        p50: pick(0.50),
        p99: pick(0.99),
        per_sec: (samples.len() * items_per_sample) as f64 / total.as_secs_f64(),
    }
}

fn row(backend: &str, op: &str, s: &Stats, unit: &str) {
    println!(
        "| {backend} | {op} | {:.3} | {:.3} | {:.0} {unit}/s |",
        s.p50.as_secs_f64() * 1e3,
        s.p99.as_secs_f64() * 1e3,
        s.per_sec
    );
}

struct Population {
    bunkers: Vec<keycast_core::nostr::PublicKey>,
    tokens: Vec<SecretDigest>,
    tenant: TenantId,
    key: KeyId,
    /// A second user of the tenant with [`FEW`] authorizations of its own.
    other: UserId,
    others: Vec<AuthorizationId>,
}

/// The second user's authorizations: a user whose lists are short in a busy tenant.
const FEW: usize = 10;

async fn populate(store: &Arc<dyn KeyStore>) -> Population {
    let w = keycast_core::testing::key_store::world(store).await;
    let mut bunkers = Vec::with_capacity(POPULATION);
    let mut tokens = Vec::with_capacity(POPULATION);
    for _ in 0..POPULATION {
        let a = w.authorization(store, None).await;
        let digest = BearerSecret::generate().digest();
        store
            .insert_token(&ApiToken {
                digest,
                tenant_id: w.tenant.id,
                authorization_id: a.id,
                expires_at: None,
                created_at: Timestamp::now(),
            })
            .await
            .expect("token");
        bunkers.push(a.bunker_pubkey);
        tokens.push(digest);
    }
    let other = keycast_core::testing::fixtures::user(w.tenant.id);
    store.create_user(&other).await.expect("user");
    let few = keycast_core::testing::key_store::World {
        user: other.clone(),
        ..w
    };
    let mut others = Vec::with_capacity(FEW);
    for _ in 0..FEW {
        others.push(few.authorization(store, None).await.id);
    }
    Population {
        bunkers,
        tokens,
        tenant: few.tenant.id,
        key: few.key.id,
        other: other.id,
        others,
    }
}

fn audit_record(p: &Population, i: usize) -> AuditRecord {
    AuditRecord {
        at: Timestamp::now(),
        tenant_id: p.tenant,
        user_id: None,
        key_id: p.key,
        authorization_id: None,
        action: Method::SignEvent.into(),
        event_kind: Some(1),
        event_id: Some(EventId::from_byte_array([(i % 251) as u8; 32])),
        outcome: Outcome::Allowed,
    }
}

async fn measure(backend: &str, store: Arc<dyn KeyStore>, plan: &Plan) -> f64 {
    let p = populate(&store).await;
    let pick = |i: usize| (i * 7919) % POPULATION;

    let mut cold = Vec::with_capacity(plan.iterations);
    for i in 0..plan.iterations {
        let start = Instant::now();
        let a = store
            .find_authorization_by_bunker(&p.bunkers[pick(i)])
            .await
            .expect("auth");
        store.get_key(a.bunker_key_id).await.expect("key");
        cold.push(start.elapsed());
    }
    row(
        backend,
        "cold bunker-key load (authorization by bunker pubkey + key row)",
        &stats(cold, 1),
        "loads",
    );

    let mut key_only = Vec::with_capacity(plan.iterations);
    for _ in 0..plan.iterations {
        let start = Instant::now();
        store.get_key(p.key).await.expect("key");
        key_only.push(start.elapsed());
    }
    row(
        backend,
        "key row by id (get_key)",
        &stats(key_only, 1),
        "reads",
    );

    let mut tokens = Vec::with_capacity(plan.iterations);
    for i in 0..plan.iterations {
        let start = Instant::now();
        store.find_token(&p.tokens[pick(i)]).await.expect("token");
        tokens.push(start.elapsed());
    }
    row(
        backend,
        "token lookup (find_token)",
        &stats(tokens, 1),
        "lookups",
    );

    let mut single = Vec::with_capacity(plan.iterations);
    for i in 0..plan.iterations {
        let r = [audit_record(&p, i)];
        let start = Instant::now();
        store.append_audit(&r).await.expect("audit");
        single.push(start.elapsed());
    }
    row(
        backend,
        "audit append, 1 record per call",
        &stats(single, 1),
        "records",
    );

    let mut batched = Vec::with_capacity(plan.batch_iterations);
    for i in 0..plan.batch_iterations {
        let records: Vec<_> = (0..BATCH)
            .map(|j| audit_record(&p, i * BATCH + j))
            .collect();
        let start = Instant::now();
        store.append_audit(&records).await.expect("audit");
        batched.push(start.elapsed());
    }
    let b = stats(batched, BATCH);
    row(
        backend,
        &format!("audit append, {BATCH} records per call"),
        &b,
        "records",
    );

    // One user's lists in a tenant of POPULATION + FEW authorizations and the audit rows
    // above: their cost should follow what they return, not the tenant's size.
    let mut mine = Vec::with_capacity(plan.iterations);
    for _ in 0..plan.iterations {
        let start = Instant::now();
        let list = store
            .list_authorizations(p.tenant, Some(p.other))
            .await
            .expect("list");
        mine.push(start.elapsed());
        assert_eq!(list.len(), FEW);
    }
    row(
        backend,
        &format!(
            "one user's authorizations ({FEW} of {} in the tenant)",
            POPULATION + FEW
        ),
        &stats(mine, 1),
        "lists",
    );
    let mut audit = Vec::with_capacity(plan.iterations);
    for i in 0..plan.iterations {
        let filter = AuditFilter {
            tenant_id: p.tenant,
            key_id: None,
            authorization_id: Some(p.others[i % FEW]),
            limit: 50,
        };
        let start = Instant::now();
        let list = store.list_audit(&filter).await.expect("audit");
        audit.push(start.elapsed());
        assert!(list.is_empty());
    }
    row(
        backend,
        &format!(
            "one authorization's audit (none of the tenant's {} rows)",
            plan.iterations + plan.batch_iterations * BATCH
        ),
        &stats(audit, 1),
        "lists",
    );
    b.per_sec
}

fn raw_sign_rate(n: usize) -> f64 {
    let keys = Keys::generate();
    let msg = Message::from_digest([7u8; 32]);
    let mut rng = rand::thread_rng();
    let start = Instant::now();
    for _ in 0..n {
        std::hint::black_box(keys.sign_schnorr_with_ctx(SECP256K1, &msg, &mut rng));
    }
    n as f64 / start.elapsed().as_secs_f64()
}

async fn postgres(admin_url: &str) -> (PostgresStore, String) {
    let name = format!("keycast_b_{}", uuid::Uuid::new_v4().simple());
    let mut admin = sqlx::PgConnection::connect(admin_url).await.expect("admin");
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut admin)
        .await
        .expect("create");
    let (server, _) = admin_url
        .split('?')
        .next()
        .unwrap_or(admin_url)
        .rsplit_once('/')
        .expect("db path");
    let store = PostgresStore::connect(&format!("{server}/{name}"), &PostgresOptions::default())
        .await
        .expect("connect");
    store.migrate().await.expect("migrate");
    (store, name)
}

async fn drop_postgres(admin_url: &str, name: &str) {
    let mut admin = sqlx::PgConnection::connect(admin_url).await.expect("admin");
    sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .execute(&mut admin)
        .await
        .expect("drop");
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    let plan = if bench {
        Plan {
            iterations: 2_000,
            batch_iterations: 100,
        }
    } else {
        Plan {
            iterations: 5,
            batch_iterations: 2,
        }
    };
    let sign_rate = raw_sign_rate(if bench { 20_000 } else { 100 });
    println!("raw Schnorr sign baseline (same run): {sign_rate:.0} signatures/s on one core\n");
    println!("| backend | operation | p50 ms | p99 ms | rate |");
    println!("|---|---|---:|---:|---:|");

    let dir = tempfile::tempdir().expect("tempdir");
    let sqlite = SqliteStore::open(dir.path().join("bench.db"))
        .await
        .expect("sqlite");
    sqlite.migrate().await.expect("migrate");
    let sqlite_audit = measure("sqlite", Arc::new(sqlite), &plan).await;

    let pg_audit = match std::env::var("KEYCAST_TEST_POSTGRES_URL") {
        Ok(admin) if !admin.is_empty() => {
            let (store, name) = postgres(&admin).await;
            let rate = measure("postgres", Arc::new(store.clone()), &plan).await;
            store.close().await;
            drop_postgres(&admin, &name).await;
            Some(rate)
        }
        _ => {
            println!("\n(postgres skipped: KEYCAST_TEST_POSTGRES_URL is not set)");
            None
        }
    };

    println!("\n| backend | batched audit records/s ÷ raw sign rate |");
    println!("|---|---:|");
    println!("| sqlite | {:.1} |", sqlite_audit / sign_rate);
    if let Some(r) = pg_audit {
        println!("| postgres | {:.1} |", r / sign_rate);
    }
}
