//! NIP-46 at 1k, 10k and 100k active authorizations (issue 19): how a release
//! `keycast-server`'s NIP-46 side grows with the number of authorizations it listens for,
//! on SQLite (a fresh data dir, embedded defaults) and on Postgres (a fresh database).
//!
//! `benches/nip46_scale.sh` builds the server and runs this; by hand:
//! `KEYCAST_BENCH_SERVER_BIN=$PWD/target/release/keycast-server
//! KEYCAST_TEST_POSTGRES_URL=… cargo bench -p keycast-benches --bench nip46_scale`.
//! `KEYCAST_BENCH_SCALES` (default `1000,10000,100000`) lists the N; without
//! `KEYCAST_TEST_POSTGRES_URL` the Postgres rows are skipped. Under `cargo test` (no
//! `--bench`) it skips without a server binary, and otherwise makes a short smoke run
//! (N = 100, SQLite only, 5 changes, 20 signs) that still checks the subscription gauge.
//!
//! Per backend and N:
//! 1. The server starts, an account registers and makes one key and [`REAL`]
//!    authorizations of it over HTTP (as the cluster bench does), and the server stops.
//! 2. N − [`REAL`] more active authorizations go straight into the store in one
//!    transaction of batched `INSERT`s: each with a bunker key row of its own (a fresh
//!    secp256k1 key sealed under the server's master-key file, as `Custody` seals one;
//!    `bunker_key_id` is unique in the schema), the account's tenant, user and key, the
//!    policy and relays of a real authorization, label "bulk", no expiry, no clients. How
//!    long that took is printed, but it is not a result.
//! 3. The server starts again: seconds from spawn to `/healthz/ready` answering 200, and
//!    until `keycast_nip46_subscribed_authorizations` reaches N (asserted); then the
//!    server's RSS (`VmRSS`) and, from `/metrics`, the open subscription `REQ`s, the extra
//!    relay connections and the `REQ`s and bytes sent so far (all to the one relay).
//! 4. `sign_event` round trips: [`CLIENTS`] raw NIP-46 clients
//!    (`keycast_nip46::testing::LoadClient`) connect the real authorizations (connect
//!    secrets are single-use: authorization `i` to client `i % CLIENTS`), one warm-up per
//!    bunker, then [`SIGNS`] requests one at a time over the bunkers in turn (p50, p99).
//! 5. CPU per authorization change: the server's idle CPU over [`IDLE`] first, then
//!    [`REVOKES`] bulk authorizations (spread over the list) revoked one after another
//!    over HTTP as the account (`DELETE /api/authorizations/{id}`), plus [`SETTLE`] for
//!    the change feed to pass; the server's CPU (utime + stime of `/proc/<pid>/stat`)
//!    over that window less the idle rate times its length, per change; the same for the
//!    server threads' context switches (`/proc/<pid>/task/*/status`), a count the box's
//!    noise barely moves; and the `REQ`s and bytes the changes sent (metrics delta). The
//!    gauge must then read N − changes.
//!
//! Everything shares the machine: this process hosts the relay (nostr-relay-builder with
//! `TCP_NODELAY`, see `keycast_benches::serve_relay_nodelay`, which also does the relay's
//! filter matching for every subscription) and the clients; Postgres runs locally. The
//! baseline, single-thread raw Schnorr signs per second, is measured before and after.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use keycast_benches::server::{sample, Server as Instance, CREDENTIALS};
use keycast_benches::{connect_all, process_cpu};
use keycast_core::nostr::{Keys, PublicKey, RelayUrl, Timestamp};
use keycast_core::{envelope, EnvelopeBinding};
use keycast_core::{Authorization, AuthorizationId, Envelope, KeyId, KeyStore, Secret32};
use keycast_kms::LocalKeyManager;
use keycast_nip46::testing::{signed_by, LoadClient};
use keycast_storage::testing::FreshDb;
use keycast_storage::{PostgresOptions, PostgresStore, SqliteStore};
use nostr_relay_builder::prelude::{LocalRelay, RateLimit, RelayBuilder};

/// Authorizations made over HTTP (the rest of N is inserted into the store).
const REAL: usize = 20;
/// Raw NIP-46 client keys, each on its own relay connection.
const CLIENTS: usize = 4;
/// Authorization changes (revocations) timed per backend and N.
const REVOKES: usize = 200;
/// Sequential `sign_event` round trips per backend and N.
const SIGNS: usize = 300;
/// How long the server's idle CPU is measured before the changes.
const IDLE: Duration = Duration::from_secs(3);
/// After the last change, for the change feed (polled every 250 ms) to pass.
const SETTLE: Duration = Duration::from_millis(750);
/// How long the raw sign rate is measured, before and after.
const BASELINE: Duration = Duration::from_secs(2);
/// A request without a reply by then counts as unanswered.
const REPLY_TIMEOUT: Duration = Duration::from_secs(10);
/// Rows per `INSERT` when populating (15 parameters each).
const BATCH: usize = 1_000;
const DEFAULT_SCALES: &str = "1000,10000,100000";

/// What every run shares.
struct Setup {
    server: PathBuf,
    relay: RelayUrl,
    revokes: usize,
    signs: usize,
    idle: Duration,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    fn name(self) -> &'static str {
        match self {
            Self::Sqlite => "SQLite",
            Self::Postgres => "Postgres",
        }
    }
}

/// Where the rows go: the SQLite file or the Postgres URL.
enum Target {
    Sqlite(PathBuf),
    Postgres(String),
}

/// One (backend, N) result.
struct Outcome {
    backend: Backend,
    n: usize,
    populate: Duration,
    ready: Duration,
    subscribed: Duration,
    /// Server CPU from spawn until every authorization was subscribed.
    start_cpu: f64,
    rss_kib: u64,
    /// `VmHWM`: the peak RSS so far, start-up included.
    peak_rss_kib: u64,
    open_reqs: u64,
    extra_connections: u64,
    reqs_to_ready: u64,
    bytes_to_ready: u64,
    /// Server CPU per change, idle rate subtracted (seconds).
    cpu_per_change: f64,
    /// Server CPU per second when idle (seconds).
    idle_cpu_per_sec: f64,
    /// Server threads' context switches per change, idle rate subtracted.
    switches_per_change: f64,
    reqs_per_change: f64,
    bytes_per_change: f64,
    sign: Signs,
}

/// The sequential `sign_event` round trips.
#[derive(Default)]
struct Signs {
    p50: Duration,
    p99: Duration,
    /// Replies that were errors, missing or not signed by the account's key.
    bad: usize,
    /// CPU per round trip (seconds) of the server, and of this process (the relay, which
    /// matches every event against every subscription, and the clients).
    server_cpu: f64,
    bench_cpu: f64,
}

/// One scrape of `/metrics`.
struct Metrics(String);

impl Metrics {
    async fn of(node: &Instance, http: &reqwest::Client) -> Self {
        Self(node.metrics_text(http).await)
    }

    /// A sample without labels (0 when absent).
    fn get(&self, name: &str) -> u64 {
        sample(&self.0, name)
    }

    fn subscribed(&self) -> u64 {
        self.get("keycast_nip46_subscribed_authorizations")
    }
}

/// A `kB` field of `/proc/<pid>/status` (`VmRSS`, `VmHWM`) in KiB.
fn status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// One bulk authorization and its bunker key row.
struct BulkRow {
    key: KeyId,
    pubkey: [u8; 32],
    envelope: Envelope,
    authorization: AuthorizationId,
}

/// Inserts `rows` (keys first, then authorizations, [`BATCH`] at a time) on `$conn`, one
/// open transaction of database `$db`, copying tenant, user, key, policy and relays from
/// the real authorization `$t`.
macro_rules! insert_bulk {
    ($db:ty, $conn:expr, $t:expr, $rows:expr) => {{
        let t: &Authorization = $t;
        let now = i64::try_from(Timestamp::now().as_secs()).expect("time");
        let relays = serde_json::Value::from(
            t.relays
                .iter()
                .map(|r| r.as_str().to_owned())
                .collect::<Vec<_>>(),
        )
        .to_string();
        for chunk in $rows.chunks(BATCH) {
            let mut keys = sqlx::QueryBuilder::<$db>::new(
                "INSERT INTO keys (id, tenant_id, owner_id, kind, pubkey, name, format_version, \
                 kek_provider, kek_key_id, kek_version, wrapped_dek, nonce, ciphertext, \
                 created_at) ",
            );
            keys.push_values(chunk, |mut b, r: &BulkRow| {
                let e = &r.envelope;
                b.push_bind(*r.key.as_uuid())
                    .push_bind(*t.tenant_id.as_uuid())
                    .push_bind(*t.user_id.as_uuid())
                    .push_bind("bunker")
                    .push_bind(r.pubkey.to_vec())
                    .push_bind("bulk")
                    .push_bind(i64::from(e.format_version))
                    .push_bind(e.wrapped_dek.kek.provider.as_str())
                    .push_bind(e.wrapped_dek.kek.key_id.as_str())
                    .push_bind(i64::from(e.wrapped_dek.kek.version))
                    .push_bind(e.wrapped_dek.blob.as_slice())
                    .push_bind(e.nonce.to_vec())
                    .push_bind(e.ciphertext.as_slice())
                    .push_bind(now);
            });
            keys.build()
                .execute(&mut *$conn)
                .await
                .expect("insert bunker keys");
            let mut auths = sqlx::QueryBuilder::<$db>::new(
                "INSERT INTO authorizations (id, tenant_id, user_id, key_id, bunker_key_id, \
                 bunker_pubkey, connect_secret, relays, policy_id, label, expires_at, \
                 revoked_at, uses, version, created_at) ",
            );
            auths.push_values(chunk, |mut b, r: &BulkRow| {
                b.push_bind(*r.authorization.as_uuid())
                    .push_bind(*t.tenant_id.as_uuid())
                    .push_bind(*t.user_id.as_uuid())
                    .push_bind(*t.key_id.as_uuid())
                    .push_bind(*r.key.as_uuid())
                    .push_bind(r.pubkey.to_vec())
                    .push_bind(None::<Vec<u8>>)
                    .push_bind(relays.as_str())
                    .push_bind(*t.policy_id.as_uuid())
                    .push_bind("bulk")
                    .push_bind(None::<i64>)
                    .push_bind(None::<i64>)
                    .push_bind(0_i64)
                    .push_bind(1_i64)
                    .push_bind(now);
            });
            auths
                .build()
                .execute(&mut *$conn)
                .await
                .expect("insert authorizations");
        }
    }};
}

/// Inserts `count` active authorizations like the real one on `template` into the
/// stopped server's store; their ids.
async fn populate(
    target: &Target,
    master_key: &Path,
    template: PublicKey,
    count: usize,
) -> Vec<AuthorizationId> {
    let t: Authorization = match target {
        Target::Sqlite(path) => {
            let store = SqliteStore::open(path).await.expect("open SQLite store");
            let t = store.find_authorization_by_bunker(&template).await;
            store.close().await;
            t
        }
        Target::Postgres(url) => {
            let store = PostgresStore::connect(url, &PostgresOptions::default())
                .await
                .expect("connect Postgres store");
            let t = store.find_authorization_by_bunker(&template).await;
            store.close().await;
            t
        }
    }
    .expect("the real authorization");

    // Key generation on every core; sealing (two 32-byte AEADs) inline.
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let per = count.div_ceil(cores.max(1));
    let makers: Vec<_> = (0..cores)
        .map(|c| {
            let n = per.min(count.saturating_sub(c * per));
            tokio::task::spawn_blocking(move || (0..n).map(|_| Keys::generate()).collect())
        })
        .collect();
    let km = LocalKeyManager::open(master_key).expect("master key");
    let mut rows = Vec::with_capacity(count);
    for maker in makers {
        let keys: Vec<Keys> = maker.await.expect("key generation");
        for k in keys {
            let id = KeyId::random();
            let binding = EnvelopeBinding {
                key_id: id,
                pubkey: k.public_key(),
                tenant_id: t.tenant_id,
            };
            let secret = Secret32::new(k.secret_key().to_secret_bytes());
            let sealed = envelope::seal(&km, &binding, &secret).await.expect("seal");
            rows.push(BulkRow {
                key: id,
                pubkey: k.public_key().to_bytes(),
                envelope: sealed,
                authorization: AuthorizationId::random(),
            });
        }
    }

    match target {
        Target::Sqlite(path) => {
            use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions};
            let options = SqliteConnectOptions::new()
                .filename(path)
                .journal_mode(SqliteJournalMode::Wal)
                .foreign_keys(true)
                .busy_timeout(Duration::from_secs(5));
            let pool = SqlitePoolOptions::new()
                .max_connections(1)
                .connect_with(options)
                .await
                .expect("open SQLite");
            let mut tx = pool.begin().await.expect("begin");
            insert_bulk!(sqlx::Sqlite, tx, &t, rows);
            tx.commit().await.expect("commit");
            pool.close().await;
        }
        Target::Postgres(url) => {
            let pool = sqlx::postgres::PgPoolOptions::new()
                .max_connections(1)
                .connect(url)
                .await
                .expect("connect Postgres");
            let mut tx = pool.begin().await.expect("begin");
            insert_bulk!(sqlx::Postgres, tx, &t, rows);
            tx.commit().await.expect("commit");
            // Fresh statistics, as autovacuum would gather them after a bulk load.
            sqlx::query("ANALYZE")
                .execute(&pool)
                .await
                .expect("analyze");
            pool.close().await;
        }
    }
    rows.iter().map(|r| r.authorization).collect()
}

/// Polls `/metrics` until the subscription gauge reads `n` (at most `limit`).
async fn wait_subscribed(node: &Instance, http: &reqwest::Client, n: usize, limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        let got = Metrics::of(node, http).await.subscribed();
        if got == n as u64 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "keycast_nip46_subscribed_authorizations is {got}, expected {n}:\n{}",
            node.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `sign_event` round trips one at a time over the bunkers in turn, after one warm-up each.
async fn sign_latency(
    setup: &Setup,
    server: u32,
    load: &LoadClient,
    bunkers: &[PublicKey],
    user: PublicKey,
) -> Signs {
    let count = setup.signs;
    let mut bad = 0;
    // Warm-up: every bunker's authorization and the key into the caches.
    for (i, bunker) in bunkers.iter().enumerate() {
        let id = load
            .sign(i % CLIENTS, *bunker, "warm-up")
            .await
            .expect("send");
        match load.wait_one(&id, REPLY_TIMEOUT).await {
            Some(r) if r.error.is_none() && signed_by(&r) == Some(user) => {}
            _ => bad += 1,
        }
        load.forget(&id);
    }
    let mut latencies = Vec::with_capacity(count);
    let cpu = (process_cpu(server), process_cpu(std::process::id()));
    for i in 0..count {
        let b = i % bunkers.len();
        let id = load
            .sign(b % CLIENTS, bunkers[b], "scale bench")
            .await
            .expect("send");
        match load.wait_one(&id, REPLY_TIMEOUT).await {
            Some(r) if r.error.is_none() && signed_by(&r) == Some(user) => {
                latencies.push(r.latency);
            }
            _ => bad += 1,
        }
        load.forget(&id);
    }
    let per_sign = |spent: Duration| spent.as_secs_f64() / count.max(1) as f64;
    let server_cpu = per_sign(process_cpu(server).saturating_sub(cpu.0));
    let bench_cpu = per_sign(process_cpu(std::process::id()).saturating_sub(cpu.1));
    latencies.sort();
    let pick = |q: f64| {
        latencies
            .get(((latencies.len().saturating_sub(1)) as f64 * q).round() as usize)
            .copied()
            .unwrap_or_default()
    };
    Signs {
        p50: pick(0.50),
        p99: pick(0.99),
        bad,
        server_cpu,
        bench_cpu,
    }
}

/// Provisions, populates, restarts and measures one backend at one N.
async fn run(setup: &Setup, backend: Backend, n: usize, postgres: Option<&str>) -> Outcome {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("http client");
    let dir = tempfile::tempdir().expect("temp dir");
    let master_key = dir.path().join("master.key");
    LocalKeyManager::open_or_create(&master_key).expect("master key");
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).expect("data dir");
    let db = match (backend, postgres) {
        (Backend::Postgres, Some(url)) => Some(FreshDb::create(url).await),
        _ => None,
    };
    let mut vars = vec![
        ("KEYCAST_RELAYS", setup.relay.to_string()),
        ("KEYCAST_MASTER_KEY_FILE", master_key.display().to_string()),
        ("KEYCAST_DATA_DIR", data.display().to_string()),
    ];
    let target = match &db {
        Some(db) => {
            vars.push(("KEYCAST_DATABASE_URL", db.url.clone()));
            Target::Postgres(db.url.clone())
        }
        None => Target::Sqlite(data.join("keycast.db")),
    };

    // 1. The account, its key and the real authorizations.
    let mut first = Instance::spawn(&setup.server, &vars, dir.path().join("first.log"));
    first.ready(&http).await;
    let account = first.authorizations(&http, REAL).await;
    let bunkers = account.bunkers();
    first.stop();
    drop(first);

    // 2. The rest of N, straight into the store.
    let started = Instant::now();
    let bulk = populate(&target, &master_key, bunkers[0], n - REAL).await;
    let populate = started.elapsed();
    eprintln!(
        "{} N={n}: {} rows inserted in {:.1} s",
        backend.name(),
        bulk.len(),
        populate.as_secs_f64()
    );

    // 3. Start-up at N.
    let spawned = Instant::now();
    let mut node = Instance::spawn(&setup.server, &vars, dir.path().join("second.log"));
    let pid = node.pid();
    node.ready(&http).await;
    let ready = spawned.elapsed();
    wait_subscribed(&node, &http, n, Duration::from_secs(300)).await;
    let subscribed = spawned.elapsed();
    let start_cpu = process_cpu(pid).as_secs_f64();
    // Late EOSEs and the last sends settle.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_kib = status_kib(pid, "VmRSS");
    let peak_rss_kib = status_kib(pid, "VmHWM");
    let m = Metrics::of(&node, &http).await;
    assert_eq!(
        m.subscribed(),
        n as u64,
        "subscribed authorizations after start-up"
    );
    let open_reqs = m.get("keycast_nip46_subscription_reqs");
    let extra_connections = m.get("keycast_nip46_extra_connections");
    let reqs_to_ready = m.get("keycast_nip46_reqs_sent_total");
    let bytes_to_ready = m.get("keycast_nip46_req_bytes_total");
    eprintln!(
        "{} N={n}: ready {:.2} s, all subscribed {:.2} s, RSS {:.1} MiB, {open_reqs} REQs open",
        backend.name(),
        ready.as_secs_f64(),
        subscribed.as_secs_f64(),
        rss_kib as f64 / 1024.0
    );

    // 4. Sign round trips through the real authorizations.
    let load = LoadClient::start(vec![setup.relay.clone()], CLIENTS)
        .await
        .expect("load clients");
    connect_all(&load, &account.uris).await;
    let sign = sign_latency(setup, pid, &load, &bunkers, account.user).await;
    load.shutdown().await;

    // 5. CPU per change: idle first, then the revocations.
    let mut session = account.session.clone();
    let probe = http
        .get(node.url("/api/authorizations"))
        .bearer_auth(&session)
        .send()
        .await
        .expect("session probe");
    if probe.status().as_u16() == 401 {
        let creds = CREDENTIALS.clone();
        let (status, login) = node.post(&http, "/api/auth/login", None, creds).await;
        assert_eq!(status, 200, "login: {login}");
        session = login["token"].as_str().expect("session token").to_owned();
    }
    drop(probe);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let idle_start = (
        Instant::now(),
        process_cpu(pid),
        keycast_benches::context_switches(pid),
    );
    tokio::time::sleep(setup.idle).await;
    let idle_secs = idle_start.0.elapsed().as_secs_f64();
    let idle_cpu_per_sec = process_cpu(pid).saturating_sub(idle_start.1).as_secs_f64() / idle_secs;
    let idle_switches_per_sec =
        keycast_benches::context_switches(pid).saturating_sub(idle_start.2) as f64 / idle_secs;

    let before = Metrics::of(&node, &http).await;
    let step = (bulk.len() / setup.revokes).max(1);
    let chosen: Vec<AuthorizationId> = bulk
        .iter()
        .step_by(step)
        .take(setup.revokes)
        .copied()
        .collect();
    let window = (
        Instant::now(),
        process_cpu(pid),
        keycast_benches::context_switches(pid),
    );
    for id in &chosen {
        let r = http
            .delete(node.url(&format!("/api/authorizations/{id}")))
            .bearer_auth(&session)
            .send()
            .await
            .expect("revoke");
        let status = r.status().as_u16();
        assert_eq!(
            status,
            200,
            "revoke {id}: {}",
            r.text().await.unwrap_or_default()
        );
    }
    tokio::time::sleep(SETTLE).await;
    let cpu = process_cpu(pid).saturating_sub(window.1).as_secs_f64();
    let wall = window.0.elapsed().as_secs_f64();
    let after = Metrics::of(&node, &http).await;
    let changes = chosen.len() as f64;
    let cpu_per_change = (cpu - idle_cpu_per_sec * wall) / changes;
    let switches = keycast_benches::context_switches(pid).saturating_sub(window.2) as f64;
    let switches_per_change = (switches - idle_switches_per_sec * wall) / changes;
    let reqs_per_change = (after.get("keycast_nip46_reqs_sent_total")
        - before.get("keycast_nip46_reqs_sent_total")) as f64
        / changes;
    let bytes_per_change = (after.get("keycast_nip46_req_bytes_total")
        - before.get("keycast_nip46_req_bytes_total")) as f64
        / changes;
    wait_subscribed(&node, &http, n - chosen.len(), Duration::from_secs(30)).await;

    node.stop();
    drop(node);
    if let Some(db) = db {
        db.drop_db().await;
    }
    Outcome {
        backend,
        n,
        populate,
        ready,
        subscribed,
        start_cpu,
        rss_kib,
        peak_rss_kib,
        open_reqs,
        extra_connections,
        reqs_to_ready,
        bytes_to_ready,
        cpu_per_change,
        idle_cpu_per_sec,
        switches_per_change,
        reqs_per_change,
        bytes_per_change,
        sign,
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// `12345` as `12,345`.
fn thousands(v: u64) -> String {
    let s = v.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn print_report(setup: &Setup, raw: (f64, f64), outcomes: &[Outcome]) {
    let raw_mean = (raw.0 + raw.1) / 2.0;
    println!();
    println!(
        "raw Schnorr sign baseline (one thread, same run): {:.0}/s before, {:.0}/s after \
         (mean {raw_mean:.0}/s, {:.1} µs a signature)",
        raw.0,
        raw.1,
        1e6 / raw_mean
    );
    println!(
        "{REAL} real authorizations, {} changes, {} sequential signs, idle measured for {} s; \
         CPU from /proc/<pid>/stat (utime + stime)",
        setup.revokes,
        setup.signs,
        setup.idle.as_secs(),
    );
    println!();
    println!(
        "| backend | N | ready s | RSS MiB | REQs open | extra connections | REQ bytes to ready \
         | CPU ms per change | thread switches per change | REQs per change | sign p50 ms \
         | sign p99 ms |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for o in outcomes {
        println!(
            "| {} | {} | {:.2} | {:.1} | {} | {} | {} | {:.2} | {:.1} | {:.2} | {:.2} | {:.2} |",
            o.backend.name(),
            thousands(o.n as u64),
            o.ready.as_secs_f64(),
            o.rss_kib as f64 / 1024.0,
            o.open_reqs,
            o.extra_connections,
            thousands(o.bytes_to_ready),
            o.cpu_per_change * 1e3,
            o.switches_per_change,
            o.reqs_per_change,
            ms(o.sign.p50),
            ms(o.sign.p99),
        );
    }
    println!();
    println!(
        "| backend | N | population s (not a result) | all N subscribed s | server CPU s to \
         all subscribed | peak RSS MiB | REQs sent to ready | REQ bytes per change | idle \
         server CPU % | sign p50 ÷ raw signature | server CPU ms per sign | bench process \
         CPU ms per sign | bad sign replies |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for o in outcomes {
        println!(
            "| {} | {} | {:.1} | {:.2} | {:.2} | {:.1} | {} | {} | {:.2} | {:.0} | {:.2} | {:.2} \
             | {} |",
            o.backend.name(),
            thousands(o.n as u64),
            o.populate.as_secs_f64(),
            o.subscribed.as_secs_f64(),
            o.start_cpu,
            o.peak_rss_kib as f64 / 1024.0,
            o.reqs_to_ready,
            thousands(o.bytes_per_change.round() as u64),
            o.idle_cpu_per_sec * 100.0,
            o.sign.p50.as_secs_f64() * raw_mean,
            o.sign.server_cpu * 1e3,
            o.sign.bench_cpu * 1e3,
            o.sign.bad,
        );
    }
    let compared = |b: Backend| outcomes.iter().filter(|o| o.backend == b).count() > 1;
    if !compared(Backend::Sqlite) && !compared(Backend::Postgres) {
        return;
    }
    println!();
    println!("| backend | from N | to N | RSS growth KiB per authorization |");
    println!("|---|---:|---:|---:|");
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let rows: Vec<&Outcome> = outcomes.iter().filter(|o| o.backend == backend).collect();
        let Some(base) = rows.first() else { continue };
        let mut pairs: Vec<(&Outcome, &Outcome)> = rows.windows(2).map(|w| (w[0], w[1])).collect();
        if rows.len() > 2 {
            pairs.extend(rows.iter().skip(2).map(|o| (*base, *o)));
        }
        for (a, b) in pairs {
            let growth = (b.rss_kib as f64 - a.rss_kib as f64) / (b.n as f64 - a.n as f64);
            println!(
                "| {} | {} | {} | {:.3} |",
                backend.name(),
                thousands(a.n as u64),
                thousands(b.n as u64),
                growth
            );
        }
    }
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    let server = match env("KEYCAST_BENCH_SERVER_BIN") {
        Some(path) => PathBuf::from(path),
        None if !bench => {
            println!(
                "nip46_scale smoke run skipped under cargo test: KEYCAST_BENCH_SERVER_BIN is \
                 not set"
            );
            return;
        }
        None => {
            eprintln!(
                "error: set KEYCAST_BENCH_SERVER_BIN to a release keycast-server binary \
                 (absolute path; benches/nip46_scale.sh builds one and sets it)"
            );
            std::process::exit(2);
        }
    };
    if !Path::new(&server).is_file() {
        eprintln!(
            "error: KEYCAST_BENCH_SERVER_BIN={} is not a file (a relative path is taken from \
             the benches/ directory, where cargo runs benchmarks)",
            server.display()
        );
        std::process::exit(2);
    }
    let scales: Vec<usize> = if bench {
        keycast_benches::bench_scales(DEFAULT_SCALES)
    } else {
        vec![100]
    };
    let revokes = if bench { REVOKES } else { 5 };
    for &n in &scales {
        assert!(
            n >= REAL + revokes,
            "KEYCAST_BENCH_SCALES: {n} is below {} ({REAL} real authorizations and {revokes} \
             to revoke)",
            REAL + revokes
        );
    }
    let postgres = if bench {
        let url = env("KEYCAST_TEST_POSTGRES_URL");
        if url.is_none() {
            println!("Postgres rows skipped: KEYCAST_TEST_POSTGRES_URL is not set");
        }
        url
    } else {
        None
    };

    // The server's embedded relay lifts the same limit (60 events a minute per connection
    // by default, and each bunker replies over one connection).
    let relay = LocalRelay::new(RelayBuilder::default().rate_limit(RateLimit {
        max_reqs: 1_000,
        notes_per_minute: 600_000,
    }));
    let setup = Setup {
        server,
        relay: keycast_benches::serve_relay_nodelay(relay.clone()).await,
        revokes,
        signs: if bench { SIGNS } else { 20 },
        idle: if bench { IDLE } else { Duration::from_secs(1) },
    };
    let baseline = if bench {
        BASELINE
    } else {
        Duration::from_millis(200)
    };

    let before = tokio::task::spawn_blocking(move || keycast_benches::raw_sign_rate(1, baseline))
        .await
        .expect("baseline");
    eprintln!("raw sign rate before: {before:.0}/s");
    let mut outcomes = Vec::new();
    let mut backends = vec![Backend::Sqlite];
    if postgres.is_some() {
        backends.push(Backend::Postgres);
    }
    for backend in backends {
        for &n in &scales {
            eprintln!("{} N={n}: running", backend.name());
            outcomes.push(run(&setup, backend, n, postgres.as_deref()).await);
        }
    }
    let after = tokio::task::spawn_blocking(move || keycast_benches::raw_sign_rate(1, baseline))
        .await
        .expect("baseline");
    relay.shutdown();
    print_report(&setup, (before, after), &outcomes);

    if outcomes.iter().any(|o| o.sign.bad > 0) {
        eprintln!("error: sign requests without a good reply (see the table)");
        std::process::exit(1);
    }
}
