//! Cluster mode throughput and routing cost (issue 7): release `keycast-server` processes
//! answering NIP-46 `sign_event` on one machine, as 1 instance without Redis (the
//! baseline), and 1, 2 and 3 instances in cluster mode, each configuration on a fresh
//! Postgres database.
//!
//! `benches/cluster.sh` builds the server and runs this; by hand:
//! `KEYCAST_BENCH_SERVER_BIN=$PWD/target/release/keycast-server
//! KEYCAST_TEST_POSTGRES_URL=… KEYCAST_TEST_REDIS_URL=… cargo bench -p keycast-benches
//! --bench cluster`. Without Postgres or Redis it skips; under `cargo test` (no `--bench`)
//! it also skips without a server binary, and otherwise makes a short smoke run.
//!
//! Per configuration: the instances start one after another (each ready before the next,
//! then every one must see all members), an account with one key and [`AUTHORIZATIONS`]
//! authorizations is made over HTTP on instance 0, [`CLIENTS`] raw NIP-46 clients
//! (`keycast_nip46::testing::LoadClient`) connect them (authorization `i` to client
//! `i % CLIENTS`: connect secrets are single-use), one `sign_event` per bunker warms the
//! caches, then two closed loops run over all bunkers in turn: one request at a time
//! (latency with no queueing), and [`IN_FLIGHT`] at a time (throughput). A closed loop
//! sends the next request as soon as a reply arrives; only replies that arrive inside the
//! window count. Afterwards every request id is tallied for duplicates and lost replies and
//! every reply's signature is checked.
//!
//! Everything shares the machine: this process hosts the relay (nostr-relay-builder, with
//! `TCP_NODELAY` on its sockets, see `keycast_benches::serve_relay_nodelay`) and the
//! clients; Postgres and Redis run locally. The baseline, single-thread raw Schnorr signs
//! per second, is measured before and after the configurations. Besides the servers' CPU
//! time per reply, their threads' context switches per reply are reported: a count that
//! the box's speed on the day does not move.
//!
//! `KEYCAST_BENCH_ROUNDS=n` (1 to 20, default 1) runs every configuration n times, every
//! other round in reverse order, and ends with each configuration's CPU per reply against
//! the same round's single instance, per round and as the median over rounds.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use keycast_benches::server::Server as Instance;
use keycast_core::nostr::{PublicKey, RelayUrl};
use keycast_nip46::testing::{signed_by, LoadClient};
use keycast_storage::testing::FreshDb;
use nostr_relay_builder::prelude::{LocalRelay, RateLimit, RelayBuilder};
use serde_json::json;

/// Authorizations (bunkers) per configuration.
const AUTHORIZATIONS: usize = 300;
/// Raw NIP-46 client keys, each on its own relay connection.
const CLIENTS: usize = 8;
/// Requests in flight in the throughput loop.
const IN_FLIGHT: usize = 64;
/// Length of the throughput loop; `KEYCAST_BENCH_SECONDS` overrides it.
const DEFAULT_SECONDS: u64 = 10;
/// Length of the one-at-a-time loop.
const SEQUENTIAL_SECONDS: u64 = 5;
/// How long the raw sign rate is measured, before and after.
const BASELINE: Duration = Duration::from_secs(2);
/// A request without a reply by then counts as unanswered.
const REPLY_TIMEOUT: Duration = Duration::from_secs(10);

/// What every configuration runs with.
struct Setup {
    server: PathBuf,
    postgres: String,
    redis: String,
    relay: RelayUrl,
    authorizations: usize,
    window: Duration,
    sequential: Duration,
    /// Times every configuration runs (`KEYCAST_BENCH_ROUNDS`, default 1).
    rounds: usize,
}

/// One configuration: `instances` servers, with or without Redis.
#[derive(Clone, Copy)]
struct Config {
    name: &'static str,
    instances: usize,
    cluster: bool,
}

const CONFIGS: [Config; 4] = [
    Config {
        name: "single (no Redis)",
        instances: 1,
        cluster: false,
    },
    Config {
        name: "cluster × 1",
        instances: 1,
        cluster: true,
    },
    Config {
        name: "cluster × 2",
        instances: 2,
        cluster: true,
    },
    Config {
        name: "cluster × 3",
        instances: 3,
        cluster: true,
    },
];

/// One closed loop's results.
#[derive(Default)]
struct Phase {
    /// Replies that arrived inside the window.
    replies: usize,
    per_sec: f64,
    p50: Duration,
    p99: Duration,
    /// Replies carrying an error (counted in `replies`).
    errors: usize,
    /// Requests with no reply within [`REPLY_TIMEOUT`].
    timed_out: usize,
    /// Requests no relay accepted.
    send_failed: usize,
    /// CPU time of the servers and of this process (relay and clients), per reply.
    server_cpu: Duration,
    bench_cpu: Duration,
    /// The servers' threads' context switches per reply: a count the box's speed does not
    /// move, unlike CPU time.
    server_switches: f64,
    /// Share of the machine's CPU time busy, and stolen by the hypervisor.
    busy: f64,
    steal: f64,
    ids: Vec<String>,
}

/// One instance's routing counters at the end of a configuration.
struct Routing {
    /// Requests another instance owned that reached intake parsed (`rejected_hashring`).
    others_parsed: u64,
    claims_lost: u64,
    reqs_sent: u64,
    /// Redis trouble was recent (routing untrusted: a standby then drops what it hears).
    troubled: bool,
}

struct Outcome {
    config: Config,
    sequential: Phase,
    loaded: Phase,
    /// Over every request of the configuration (warm-up included).
    duplicated: usize,
    unanswered: usize,
    bad_signatures: usize,
    /// `keycast_nip46_requests_total` (request events received and handled) per instance.
    received: Vec<u64>,
    /// `keycast_nip46_standby_kept_total` (kept unparsed as a standby) per instance.
    kept: Vec<u64>,
    /// `keycast_nip46_processed_total` (answered) per instance.
    processed: Vec<u64>,
    routing: Vec<Routing>,
    queue_dropped: u64,
}

/// CPU time used so far by the threads of `pid` ("self" for this process), from
/// `/proc/<pid>/task/*/schedstat`.
fn cpu_time(pid: &str) -> Duration {
    let mut ns = 0;
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))
        .into_iter()
        .flatten()
        .flatten()
    {
        ns += std::fs::read_to_string(task.path().join("schedstat"))
            .ok()
            .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok())
            .unwrap_or(0);
    }
    Duration::from_nanos(ns)
}

/// The machine's `(total, busy, steal)` CPU ticks so far, from `/proc/stat`.
fn machine_ticks() -> (u64, u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let fields: Vec<u64> = stat
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest time is inside user).
    let total: u64 = fields.iter().take(8).sum();
    let idle = fields.get(3).copied().unwrap_or(0) + fields.get(4).copied().unwrap_or(0);
    let steal = fields.get(7).copied().unwrap_or(0);
    (total, total.saturating_sub(idle + steal), steal)
}

/// CPU use of the servers, this process and the machine, from `begin` to `end`.
struct CpuMeter {
    servers: Vec<String>,
    server: Duration,
    switches: u64,
    bench: Duration,
    machine: (u64, u64, u64),
}

impl CpuMeter {
    fn start(servers: &[Instance]) -> Self {
        let servers: Vec<String> = servers.iter().map(|i| i.pid().to_string()).collect();
        Self {
            server: servers.iter().map(|p| cpu_time(p)).sum(),
            switches: switches(&servers),
            bench: cpu_time("self"),
            machine: machine_ticks(),
            servers,
        }
    }

    /// `(server cpu, bench cpu, busy share, steal share, server context switches)` since
    /// `start`.
    fn stop(self) -> (Duration, Duration, f64, f64, u64) {
        let server: Duration = self.servers.iter().map(|p| cpu_time(p)).sum();
        let bench = cpu_time("self");
        let (total, busy, steal) = machine_ticks();
        let dt = total.saturating_sub(self.machine.0).max(1) as f64;
        (
            server.saturating_sub(self.server),
            bench.saturating_sub(self.bench),
            busy.saturating_sub(self.machine.1) as f64 / dt,
            steal.saturating_sub(self.machine.2) as f64 / dt,
            switches(&self.servers).saturating_sub(self.switches),
        )
    }
}

/// Context switches so far of every thread of the servers `pids`.
fn switches(pids: &[String]) -> u64 {
    pids.iter()
        .filter_map(|p| p.parse().ok())
        .map(keycast_benches::context_switches)
        .sum()
}

/// `in_flight` tasks, each sending `sign_event` to the next bunker in turn and waiting for
/// its reply before sending another, for `window`.
async fn closed_loop(
    load: &LoadClient,
    bunkers: &Arc<Vec<PublicKey>>,
    servers: &[Instance],
    in_flight: usize,
    window: Duration,
) -> Phase {
    let next = Arc::new(AtomicUsize::new(0));
    let meter = CpuMeter::start(servers);
    let start = Instant::now();
    let end = start + window;
    let tasks: Vec<_> = (0..in_flight)
        .map(|_| {
            let (load, bunkers, next) = (load.clone(), bunkers.clone(), next.clone());
            tokio::spawn(async move {
                let mut phase = Phase::default();
                let mut latencies = Vec::new();
                while Instant::now() < end {
                    let i = next.fetch_add(1, Ordering::Relaxed) % bunkers.len();
                    let id = match load.sign(i % CLIENTS, bunkers[i], "cluster bench").await {
                        Ok(id) => id,
                        Err(_) => {
                            phase.send_failed += 1;
                            tokio::time::sleep(Duration::from_millis(10)).await;
                            continue;
                        }
                    };
                    let reply = load.wait_one(&id, REPLY_TIMEOUT).await;
                    phase.ids.push(id);
                    match reply {
                        Some(r) if Instant::now() <= end => {
                            phase.replies += 1;
                            phase.errors += usize::from(r.error.is_some());
                            latencies.push(r.latency);
                        }
                        Some(_) => {}
                        None => phase.timed_out += 1,
                    }
                }
                (phase, latencies)
            })
        })
        .collect();
    tokio::time::sleep_until(end.into()).await;
    let (server_cpu, bench_cpu, busy, steal, server_switches) = meter.stop();
    let mut total = Phase::default();
    let mut latencies = Vec::new();
    for task in tasks {
        let (phase, l) = task.await.expect("loop task");
        total.replies += phase.replies;
        total.errors += phase.errors;
        total.timed_out += phase.timed_out;
        total.send_failed += phase.send_failed;
        total.ids.extend(phase.ids);
        latencies.extend(l);
    }
    latencies.sort();
    let pick = |q: f64| {
        latencies
            .get(((latencies.len().saturating_sub(1)) as f64 * q).round() as usize)
            .copied()
            .unwrap_or_default()
    };
    let replies = u32::try_from(total.replies.max(1)).unwrap_or(u32::MAX);
    Phase {
        per_sec: total.replies as f64 / window.as_secs_f64(),
        p50: pick(0.50),
        p99: pick(0.99),
        server_cpu: server_cpu / replies,
        bench_cpu: bench_cpu / replies,
        server_switches: server_switches as f64 / f64::from(replies),
        busy,
        steal,
        ..total
    }
}

/// Starts the instances, makes the authorizations, connects, warms up and measures.
async fn run(setup: &Setup, config: Config) -> Outcome {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("http client");
    let db = FreshDb::create(&setup.postgres).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let master_key = dir.path().join("master.key");
    // Every instance must open every key: one master key for all.
    keycast_kms::LocalKeyManager::open_or_create(&master_key).expect("master key");
    let prefix = format!("keycast-bench-{}", uuid::Uuid::new_v4().simple());

    let mut servers: Vec<Instance> = Vec::new();
    for i in 0..config.instances {
        let data = dir.path().join(format!("node{i}"));
        std::fs::create_dir_all(&data).expect("data dir");
        let mut vars = vec![
            ("KEYCAST_DATABASE_URL", db.url.clone()),
            ("KEYCAST_RELAYS", setup.relay.to_string()),
            ("KEYCAST_MASTER_KEY_FILE", master_key.display().to_string()),
            ("KEYCAST_DATA_DIR", data.display().to_string()),
        ];
        if config.cluster {
            vars.extend([
                ("KEYCAST_REDIS_URL", setup.redis.clone()),
                ("KEYCAST_CLUSTER_PREFIX", prefix.clone()),
                ("KEYCAST_NODE_ID", format!("node{i}")),
            ]);
        }
        let log = dir.path().join(format!("node{i}.log"));
        let mut instance = Instance::spawn(&setup.server, &vars, log);
        instance.ready(&http).await;
        servers.push(instance);
    }
    if config.cluster {
        wait_members(&mut servers, &http, config.instances).await;
    }

    let account = servers[0].authorizations(&http, setup.authorizations).await;
    // Instances other than the one that made them learn of new authorizations from the
    // change feed (polled every 250 ms); a connect sent before that would go unheard.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let load = LoadClient::start(vec![setup.relay.clone()], CLIENTS)
        .await
        .expect("load clients");
    keycast_benches::connect_all(&load, &account.uris).await;
    let (user, bunkers) = (account.user, Arc::new(account.bunkers()));

    // Warm-up: every bunker's key into its owner's cache.
    let mut all_ids = Vec::with_capacity(bunkers.len());
    for (i, bunker) in bunkers.iter().enumerate() {
        all_ids.push(
            load.sign(i % CLIENTS, *bunker, "warm-up")
                .await
                .expect("warm-up send"),
        );
    }
    let warm = load
        .wait(&all_ids, Duration::from_secs(30), Duration::ZERO)
        .await;
    assert!(
        warm.unanswered.is_empty(),
        "{}: {} warm-up requests unanswered",
        config.name,
        warm.unanswered.len()
    );

    // Measured once each instance listens for its share alone (owner and standby: every
    // key on min(n, 2) instances), after instance 0's pins on the keys it made ran out.
    let listeners = if config.cluster {
        config.instances.min(2)
    } else {
        1
    };
    wait_shares(
        &mut servers,
        &http,
        (listeners * setup.authorizations) as u64,
    )
    .await;

    let sequential = closed_loop(&load, &bunkers, &servers, 1, setup.sequential).await;
    let loaded = closed_loop(&load, &bunkers, &servers, IN_FLIGHT, setup.window).await;
    all_ids.extend(sequential.ids.iter().cloned());
    all_ids.extend(loaded.ids.iter().cloned());

    // Late duplicates would land within the settle time.
    let tally = load
        .wait(&all_ids, REPLY_TIMEOUT, Duration::from_secs(1))
        .await;
    let bad_signatures = tally
        .replies
        .values()
        .flatten()
        .filter(|r| r.error.is_some() || signed_by(r) != Some(user))
        .count();
    let lagged = load.ignored().lagged;
    if lagged > 0 {
        eprintln!(
            "{}: the clients' relay pool dropped {lagged} notifications",
            config.name
        );
    }
    let mut processed = Vec::with_capacity(servers.len());
    let mut received = Vec::with_capacity(servers.len());
    let mut kept = Vec::with_capacity(servers.len());
    let mut routing = Vec::with_capacity(servers.len());
    let mut queue_dropped = 0;
    for s in &mut servers {
        received.push(s.metric(&http, "keycast_nip46_requests_total").await);
        kept.push(s.metric(&http, "keycast_nip46_standby_kept_total").await);
        routing.push(Routing {
            others_parsed: s
                .metric(&http, "keycast_nip46_rejected_hashring_total")
                .await,
            claims_lost: s.metric(&http, "keycast_nip46_claims_lost_total").await,
            reqs_sent: s.metric(&http, "keycast_nip46_reqs_sent_total").await,
            troubled: s.ready(&http).await["cluster"]["redis_trouble"] == json!(true),
        });
        processed.push(s.metric(&http, "keycast_nip46_processed_total").await);
        queue_dropped += s.metric(&http, "keycast_nip46_queue_dropped_total").await;
    }

    load.shutdown().await;
    for s in &mut servers {
        s.stop();
    }
    db.drop_db().await;
    Outcome {
        config,
        sequential,
        loaded,
        duplicated: tally.duplicated.len(),
        unanswered: tally.unanswered.len(),
        bad_signatures,
        received,
        kept,
        processed,
        routing,
        queue_dropped,
    }
}

/// Waits until every instance is registered and sees `n` members.
async fn wait_members(servers: &mut [Instance], http: &reqwest::Client, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(30);
    for s in servers {
        loop {
            let ready = s.ready(http).await;
            if ready["cluster"]["members"] == json!(n)
                && ready["cluster"]["registered"] == json!(true)
            {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "ring never reached {n} members: {ready}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Waits until the instances together listen for `expected` bunker keys, no instance
/// still answers keys it handed out (their pins, 10 s, cost a claim on two instances) and
/// every instance trusts its routing (no Redis trouble lately): the steady state.
async fn wait_shares(servers: &mut [Instance], http: &reqwest::Client, expected: u64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (mut listened, mut pinned, mut troubled) = (0, 0, false);
        for s in servers.iter_mut() {
            listened += s
                .metric(http, "keycast_nip46_subscribed_authorizations")
                .await;
            pinned += s.metric(http, "keycast_nip46_pinned").await;
            let ready = s.ready(http).await;
            troubled |= ready["cluster"]["redis_trouble"] == json!(true);
        }
        if listened == expected && pinned == 0 && !troubled {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the instances listen for {listened} keys, not {expected}, {pinned} pinned, \
             Redis trouble: {troubled}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn print_report(setup: &Setup, raw: (f64, f64), outcomes: &[Outcome]) {
    let raw_mean = (raw.0 + raw.1) / 2.0;
    let single = outcomes
        .iter()
        .find(|o| !o.config.cluster)
        .map_or(f64::NAN, |o| o.loaded.per_sec);
    println!();
    println!(
        "raw Schnorr sign baseline (one thread, same run): {:.0}/s before, {:.0}/s after; \
         ratios use the mean, {raw_mean:.0}/s",
        raw.0, raw.1
    );
    println!(
        "{} authorizations, {CLIENTS} clients, {IN_FLIGHT} in flight for {} s; \
         latency at 1 in flight for {} s",
        setup.authorizations,
        setup.window.as_secs(),
        setup.sequential.as_secs()
    );
    println!();
    println!(
        "| configuration | instances | replies | req/s | ÷ raw sign | ÷ single | p50 ms | p99 ms \
         | p50 ms at 1 in flight | p99 ms at 1 in flight | errors | timed out | duplicated \
         | servers CPU µs/reply | bench process CPU µs/reply | machine busy | steal |"
    );
    println!(
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    for o in outcomes {
        let (l, s) = (&o.loaded, &o.sequential);
        println!(
            "| {} | {} | {} | {:.0} | {:.3} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {} | {} | {} \
             | {} | {} | {:.0}% | {:.1}% |",
            o.config.name,
            o.config.instances,
            l.replies,
            l.per_sec,
            l.per_sec / raw_mean,
            l.per_sec / single,
            ms(l.p50),
            ms(l.p99),
            ms(s.p50),
            ms(s.p99),
            l.errors + s.errors,
            l.timed_out + s.timed_out + l.send_failed + s.send_failed,
            o.duplicated,
            l.server_cpu.as_micros(),
            l.bench_cpu.as_micros(),
            l.busy * 100.0,
            l.steal * 100.0,
        );
    }
    // CPU per reply under load and with one request at a time (the machine mostly idle:
    // the work itself, without two cores' worth of contention), each against the single
    // instance in the same phase.
    let single_cpu = outcomes.iter().find(|o| !o.config.cluster).map(|o| {
        (
            o.loaded.server_cpu.as_secs_f64(),
            o.sequential.server_cpu.as_secs_f64(),
        )
    });
    println!();
    println!(
        "| configuration | servers CPU µs/reply at {IN_FLIGHT} in flight | ÷ single | servers \
         CPU µs/reply at 1 in flight | ÷ single | servers' thread switches per reply at \
         {IN_FLIGHT} in flight | at 1 in flight |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for o in outcomes {
        let (l, s) = (&o.loaded, &o.sequential);
        let (ls, ss) = single_cpu.unwrap_or((f64::NAN, f64::NAN));
        println!(
            "| {} | {} | {:.2} | {} | {:.2} | {:.1} | {:.1} |",
            o.config.name,
            l.server_cpu.as_micros(),
            l.server_cpu.as_secs_f64() / ls,
            s.server_cpu.as_micros(),
            s.server_cpu.as_secs_f64() / ss,
            l.server_switches,
            s.server_switches,
        );
    }
    let find = |cluster: bool, n: usize| {
        outcomes
            .iter()
            .find(|o| o.config.cluster == cluster && o.config.instances == n)
    };
    if let (Some(single), Some(one)) = (find(false, 1), find(true, 1)) {
        println!();
        println!("| routing overhead (cluster × 1 against single) | value |");
        println!("|---|---:|");
        println!(
            "| p50 at 1 in flight, cluster × 1 − single | {:+.3} ms |",
            ms(one.sequential.p50) - ms(single.sequential.p50)
        );
        println!(
            "| p50 at {IN_FLIGHT} in flight, cluster × 1 − single | {:+.3} ms |",
            ms(one.loaded.p50) - ms(single.loaded.p50)
        );
        println!(
            "| throughput at {IN_FLIGHT} in flight, cluster × 1 ÷ single | {:.3} |",
            one.loaded.per_sec / single.loaded.per_sec
        );
        println!(
            "| servers CPU per reply, cluster × 1 − single | {:+} µs |",
            i128::try_from(one.loaded.server_cpu.as_micros()).unwrap_or(0)
                - i128::try_from(single.loaded.server_cpu.as_micros()).unwrap_or(0)
        );
    }
    println!();
    println!(
        "| configuration | NIP-46 requests received per instance (whole run) | kept unparsed \
         as standby | answered per instance | queue drops | duplicated | unanswered | bad or \
         erroneous replies |"
    );
    println!("|---|---|---|---|---:|---:|---:|---:|");
    let per_instance = |v: &[u64]| v.iter().map(u64::to_string).collect::<Vec<_>>().join(" / ");
    for o in outcomes {
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            o.config.name,
            per_instance(&o.received),
            per_instance(&o.kept),
            per_instance(&o.processed),
            o.queue_dropped,
            o.duplicated,
            o.unanswered,
            o.bad_signatures
        );
    }
    println!();
    println!(
        "| configuration | others' requests parsed (rejected_hashring) | claims lost | REQs \
         sent | Redis trouble at the end |"
    );
    println!("|---|---|---|---|---|");
    for o in outcomes {
        let column =
            |f: fn(&Routing) -> String| o.routing.iter().map(f).collect::<Vec<_>>().join(" / ");
        println!(
            "| {} | {} | {} | {} | {} |",
            o.config.name,
            column(|r| r.others_parsed.to_string()),
            column(|r| r.claims_lost.to_string()),
            column(|r| r.reqs_sent.to_string()),
            column(|r| r.troubled.to_string()),
        );
    }
}

/// The median of `values` (the mean of the middle two for an even count).
fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    match n {
        0 => f64::NAN,
        _ if n % 2 == 1 => values[n / 2],
        _ => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

/// Over several rounds: each configuration's servers' CPU per reply against the single
/// instance of the same round, every round's figure and their median. One run of this box
/// moves the single instance's own figure by a third; a ratio taken within a round and the
/// median over rounds is what the issue-19 goal is judged by.
fn print_rounds(rounds: &[Vec<Outcome>]) {
    println!();
    println!(
        "## {} rounds: servers' CPU per reply ÷ the same round's single instance",
        rounds.len()
    );
    println!();
    println!(
        "| configuration | at {IN_FLIGHT} in flight, per round | median | at 1 in flight, per round \
         | median | switches per reply at {IN_FLIGHT} in flight, median | at 1 in flight, median |"
    );
    println!("|---|---|---:|---|---:|---:|---:|");
    for (i, config) in CONFIGS.iter().enumerate() {
        let ratios = |phase: fn(&Outcome) -> &Phase| -> Vec<f64> {
            rounds
                .iter()
                .filter_map(|r| {
                    let single = r.iter().find(|o| !o.config.cluster)?;
                    let this = r.get(i)?;
                    Some(
                        phase(this).server_cpu.as_secs_f64()
                            / phase(single).server_cpu.as_secs_f64(),
                    )
                })
                .collect()
        };
        let switches = |phase: fn(&Outcome) -> &Phase| {
            median(
                rounds
                    .iter()
                    .filter_map(|r| Some(phase(r.get(i)?).server_switches))
                    .collect(),
            )
        };
        let list = |v: &[f64]| {
            v.iter()
                .map(|r| format!("{r:.2}"))
                .collect::<Vec<_>>()
                .join(" / ")
        };
        let (loaded, sequential) = (ratios(|o| &o.loaded), ratios(|o| &o.sequential));
        println!(
            "| {} | {} | **{:.2}** | {} | **{:.2}** | {:.1} | {:.1} |",
            config.name,
            list(&loaded),
            median(loaded.clone()),
            list(&sequential),
            median(sequential.clone()),
            switches(|o| &o.loaded),
            switches(|o| &o.sequential),
        );
    }
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    let (Some(postgres), Some(redis)) = (
        env("KEYCAST_TEST_POSTGRES_URL"),
        env("KEYCAST_TEST_REDIS_URL"),
    ) else {
        println!(
            "cluster bench skipped: set KEYCAST_TEST_POSTGRES_URL and KEYCAST_TEST_REDIS_URL \
             (benches/cluster.sh does)"
        );
        return;
    };
    let server = match env("KEYCAST_BENCH_SERVER_BIN") {
        Some(path) => PathBuf::from(path),
        None if !bench => {
            println!("cluster bench skipped under cargo test: KEYCAST_BENCH_SERVER_BIN is not set");
            return;
        }
        None => {
            eprintln!(
                "error: set KEYCAST_BENCH_SERVER_BIN to a release keycast-server binary \
                 (absolute path; benches/cluster.sh builds one and sets it)"
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
    let seconds = env("KEYCAST_BENCH_SECONDS")
        .and_then(|s| s.parse().ok())
        .unwrap_or(DEFAULT_SECONDS);
    let rounds = match env("KEYCAST_BENCH_ROUNDS").map(|r| r.parse::<usize>()) {
        None => 1,
        Some(Ok(r)) if (1..=20).contains(&r) => r,
        Some(_) => {
            eprintln!("error: KEYCAST_BENCH_ROUNDS must be a whole number from 1 to 20");
            std::process::exit(2);
        }
    };

    // The server's embedded relay lifts the same limit (60 events a minute per connection
    // by default, and each bunker replies over one connection).
    let relay = LocalRelay::new(RelayBuilder::default().rate_limit(RateLimit {
        max_reqs: 1_000,
        notes_per_minute: 600_000,
    }));
    let setup = Setup {
        server,
        postgres,
        redis,
        relay: keycast_benches::serve_relay_nodelay(relay.clone()).await,
        authorizations: if bench { AUTHORIZATIONS } else { 24 },
        window: Duration::from_secs(if bench { seconds } else { 1 }),
        sequential: Duration::from_secs(if bench { SEQUENTIAL_SECONDS } else { 1 }),
        rounds: if bench { rounds } else { 1 },
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
    let mut rounds: Vec<Vec<Outcome>> = Vec::with_capacity(setup.rounds);
    for round in 0..setup.rounds {
        // Every other round runs the configurations backwards, so a drift of the box's
        // speed during a round does not always favour the same end of the list.
        let mut order: Vec<usize> = (0..CONFIGS.len()).collect();
        if round % 2 == 1 {
            order.reverse();
        }
        let mut outcomes: Vec<Outcome> = Vec::with_capacity(CONFIGS.len());
        for i in order {
            let config = CONFIGS[i];
            eprintln!("round {}: {}: running", round + 1, config.name);
            let o = run(&setup, config).await;
            eprintln!(
                "{}: {:.0} req/s, p50 {:.2} ms (1 in flight: {:.2} ms)",
                config.name,
                o.loaded.per_sec,
                ms(o.loaded.p50),
                ms(o.sequential.p50)
            );
            outcomes.push(o);
        }
        outcomes.sort_by_key(|o| CONFIGS.iter().position(|c| c.name == o.config.name));
        rounds.push(outcomes);
    }
    let after = tokio::task::spawn_blocking(move || keycast_benches::raw_sign_rate(1, baseline))
        .await
        .expect("baseline");
    relay.shutdown();
    for (i, outcomes) in rounds.iter().enumerate() {
        if setup.rounds > 1 {
            println!();
            println!("## round {} of {}", i + 1, setup.rounds);
        }
        print_report(&setup, (before, after), outcomes);
    }
    if setup.rounds > 1 {
        print_rounds(&rounds);
    }

    let failed = rounds
        .iter()
        .flatten()
        .any(|o| o.duplicated > 0 || o.bad_signatures > 0);
    if failed {
        eprintln!("error: duplicated or bad replies (see the table)");
        std::process::exit(1);
    }
}
