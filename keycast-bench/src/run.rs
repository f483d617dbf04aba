//! One run: start (or find) the server, provision, connect and warm up, drive the modes
//! while printing a row per interval, drain, stop, summarise.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::http_load::HttpLoad;
use crate::nip46_load::Nip46Load;
use crate::pacing::{drive, Schedule};
use crate::report::{self, Outcome, Row};
use crate::server::{self, ProcSample, Server};
use crate::stats::Recorder;
use crate::{provision, Cli, Mode};

/// One mode being driven.
struct Driven {
    name: &'static str,
    recorder: Arc<Recorder>,
    task: Option<JoinHandle<()>>,
}

/// Runs the load `cli` describes; `Ok(passed)`, or `Err` when it could not run at all.
pub async fn run(cli: &Cli) -> Result<bool, String> {
    // For start-up and provisioning only; it keeps no idle connection, so the server's
    // open fds during the load are the load's own (HttpLoad has its own fixed set).
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .pool_max_idle_per_host(0)
        .build()
        .map_err(|e| format!("http client: {e}"))?;
    let mut own = match &cli.server_bin {
        Some(bin) => Some(Server::spawn(bin)?),
        None => None,
    };
    let (base, pid) = match (&mut own, &cli.url) {
        (Some(s), _) => {
            s.ready(&http).await?;
            eprintln!(
                "server {} ready at {} (data and log in {})",
                s.pid(),
                s.base,
                s.dir().display()
            );
            (s.base.clone(), Some(s.pid()))
        }
        (None, Some(url)) => {
            let url = url.trim_end_matches('/').to_owned();
            server::wait_ready(&http, &url).await?;
            (url, cli.pid)
        }
        (None, None) => return Err("give --server-bin or --url".into()),
    };
    let result = load(cli, &http, &base, pid, own.as_mut()).await;
    let mut problems = Vec::new();
    let server_log = match own.as_mut() {
        Some(s) => {
            if !s.running() {
                problems.push("the server exited during the run".to_owned());
            }
            if let Err(e) = s.stop() {
                problems.push(format!("server stop: {e}"));
            }
            Some(s.log_problems())
        }
        None => None,
    };
    let mut outcome = match result {
        Ok(o) => o,
        Err(e) => {
            if let Some(s) = &own {
                eprintln!("server log (last lines):\n{}", s.log_tail(20));
            }
            return Err(e);
        }
    };
    outcome.problems.extend(problems);
    outcome.server_log = server_log;
    print!("{}", report::summary(&outcome));
    Ok(outcome.passed())
}

/// Provisions, drives and samples; the outcome without the server's shutdown.
async fn load(
    cli: &Cli,
    http: &reqwest::Client,
    base: &str,
    pid: Option<u32>,
    mut own: Option<&mut Server>,
) -> Result<Outcome<'static>, String> {
    let timeout = Duration::from_secs(cli.timeout);
    let count = usize::try_from(cli.authorizations).map_err(|e| e.to_string())?;
    eprintln!("provisioning an account, a key and {count} authorizations");
    let p = provision::provision(http, base, count).await?;
    let http_load = match cli.mode {
        Mode::Http | Mode::Both => {
            let tokens = p.apps.iter().map(|a| a.token.clone()).collect();
            let connections = usize::try_from(cli.http_connections).map_err(|e| e.to_string())?;
            let l = HttpLoad::new(base, connections, tokens, p.user)?;
            l.warm_up().await?;
            Some(l)
        }
        Mode::Nip46 => None,
    };
    let nip46 = match cli.mode {
        Mode::Nip46 | Mode::Both => {
            let bunkers: Vec<_> = p.apps.iter().map(|a| a.bunker.clone()).collect();
            let clients = usize::try_from(cli.clients).map_err(|e| e.to_string())?;
            eprintln!("connecting {clients} NIP-46 clients to {count} bunkers");
            let l = Nip46Load::connect(&bunkers, clients, p.user, timeout).await?;
            l.warm_up().await?;
            Some(l)
        }
        Mode::Http => None,
    };
    let bench_rss_before = server::sample(std::process::id()).map(|s| s.rss_kib);
    let ticks_per_second = server::clock_ticks_per_second() as f64;
    let length = Duration::from_secs(cli.seconds);
    let every = Duration::from_secs(cli.sample_every);

    // Sending starts a little after the baseline row, on a schedule fixed from here.
    let start = Instant::now() + Duration::from_millis(100);
    let mut driven = Vec::new();
    if let Some(l) = &http_load {
        let l = l.clone();
        let request = move |i| l.request(i);
        driven.push(start_mode(
            "http", request, start, cli.rate, length, timeout,
        ));
    }
    if let Some(l) = &nip46 {
        let l = l.clone();
        let request = move |i| l.request(i);
        driven.push(start_mode(
            "nip46", request, start, cli.rate, length, timeout,
        ));
    }
    let names: Vec<&str> = driven.iter().map(|d| d.name).collect();
    println!(
        "# keycast-bench: {} at {} req/s each for {} s, a row every {} s\n",
        names.join(" + "),
        cli.rate,
        cli.seconds,
        cli.sample_every
    );
    println!("{}", report::header(&names));

    let mut samples: Vec<(Duration, ProcSample)> = Vec::new();
    let mut problems = Vec::new();
    let mut previous: Option<(Instant, ProcSample)> = None;
    let mut emit = |at: Instant,
                    label: Option<&'static str>,
                    driven: &[Driven],
                    problems: &mut Vec<String>| {
        let sample = pid.and_then(server::sample);
        if let (Some(pid), None) = (pid, sample) {
            if problems.is_empty() {
                problems.push(format!("cannot read /proc/{pid} (has the server exited?)"));
            }
        }
        let elapsed = at.saturating_duration_since(start);
        let cpu_percent = match (previous, sample) {
            (Some((t0, s0)), Some(s1)) if at > t0 => Some(
                s1.cpu_ticks.saturating_sub(s0.cpu_ticks) as f64
                    / ticks_per_second
                    / (at - t0).as_secs_f64()
                    * 100.0,
            ),
            _ => None,
        };
        if let Some(s) = sample {
            samples.push((elapsed, s));
            previous = Some((at, s));
        }
        let r = Row {
            elapsed,
            label,
            modes: driven.iter().map(|d| d.recorder.take_interval()).collect(),
            server: sample,
            cpu_percent,
        };
        println!("{}", report::row(&r));
    };

    emit(Instant::now().max(start), None, &driven, &mut problems);
    let mut k = 1u32;
    loop {
        let t = (every * k).min(length);
        tokio::time::sleep_until(start + t).await;
        emit(Instant::now(), None, &driven, &mut problems);
        if t >= length {
            break;
        }
        if let Some(s) = own.as_deref_mut() {
            if !s.running() {
                break; // reported by the caller
            }
        }
        k += 1;
    }
    // Requests still in flight finish or time out (at most `timeout` more); what they
    // did goes in a last row.
    for d in &mut driven {
        if let Some(task) = d.task.take() {
            task.await.map_err(|e| format!("{} driver: {e}", d.name))?;
        }
    }
    emit(Instant::now(), Some("drain"), &driven, &mut problems);

    let (stray_replies, dropped_notifications) = match &nip46 {
        Some(l) => l.stray_replies(),
        None => (0, 0),
    };
    if let Some(l) = nip46 {
        l.shutdown().await;
    }
    let bench_rss_after = server::sample(std::process::id()).map(|s| s.rss_kib);
    Ok(Outcome {
        command: command_line(),
        length,
        rate: cli.rate,
        modes: driven
            .iter()
            .map(|d| (d.name, d.recorder.totals()))
            .collect(),
        server: samples,
        stray_replies,
        dropped_notifications,
        server_log: None,
        problems,
        bench_rss_kib: bench_rss_before.zip(bench_rss_after),
    })
}

/// Starts driving one mode: `request(i)` makes its request `i`.
fn start_mode<F, Fut>(
    name: &'static str,
    request: F,
    start: Instant,
    rate: f64,
    length: Duration,
    timeout: Duration,
) -> Driven
where
    F: FnMut(u64) -> Fut + Send + 'static,
    Fut: Future<Output = Result<(), String>> + Send + 'static,
{
    let recorder = Arc::new(Recorder::default());
    let schedule = Schedule::new(start, rate, length);
    let task = tokio::spawn(drive(schedule, timeout, recorder.clone(), request));
    Driven {
        name,
        recorder,
        task: Some(task),
    }
}

/// The command line as typed, with the program's name shortened.
fn command_line() -> String {
    let mut args: Vec<String> = std::env::args().collect();
    if let Some(first) = args.first_mut() {
        *first = "keycast-bench".to_owned();
    }
    args.join(" ")
}
