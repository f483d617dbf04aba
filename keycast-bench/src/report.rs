//! What is printed: a markdown row per sampling interval, the summary, and the verdict on
//! memory and file-descriptor growth.

use std::fmt::Write as _;
use std::time::Duration;

use crate::server::ProcSample;
use crate::stats::{Summary, Totals};

/// RSS may grow in the second half by this factor of the first half's maximum…
pub const RSS_GROWTH_FACTOR: f64 = 1.10;
/// …plus this much (allocator and cache noise on a small heap).
pub const RSS_GROWTH_SLACK_KIB: u64 = 8 * 1024;
/// Open fds may exceed the first half's maximum by this many in the second half.
pub const FD_GROWTH_SLACK: u64 = 8;

/// One line of the table: one interval's numbers.
#[derive(Debug, Clone)]
pub struct Row {
    /// When the interval ended, from the start of the load.
    pub elapsed: Duration,
    /// Shown after the time (the last row, of requests that finished after the sending
    /// stopped, is `drain`).
    pub label: Option<&'static str>,
    /// Per mode, in the order of the header.
    pub modes: Vec<Summary>,
    /// The server process at the end of the interval, if it could be read.
    pub server: Option<ProcSample>,
    /// The server's CPU use over the interval, in % of one core.
    pub cpu_percent: Option<f64>,
}

/// The table's two header lines for `modes`.
pub fn header(modes: &[&str]) -> String {
    let mut names = vec!["t s".to_owned()];
    for m in modes {
        for col in ["sent", "ok", "err", "p50 ms", "p99 ms"] {
            names.push(format!("{m} {col}"));
        }
    }
    names.extend(["RSS MiB", "fds", "CPU %"].map(str::to_owned));
    let top = format!("| {} |", names.join(" | "));
    let rule = format!("|{}", "---:|".repeat(names.len()));
    format!("{top}\n{rule}")
}

/// One row of the table.
pub fn row(r: &Row) -> String {
    let mut cells = vec![match r.label {
        Some(label) => format!("{:.0} {label}", r.elapsed.as_secs_f64()),
        None => format!("{:.0}", r.elapsed.as_secs_f64()),
    }];
    for m in &r.modes {
        cells.push(m.sent.to_string());
        cells.push(m.ok.to_string());
        cells.push(m.errors.to_string());
        cells.push(ms(m.p50));
        cells.push(ms(m.p99));
    }
    match r.server {
        Some(s) => {
            cells.push(mib(s.rss_kib));
            cells.push(s.fds.to_string());
        }
        None => cells.extend(["-".to_owned(), "-".to_owned()]),
    }
    cells.push(r.cpu_percent.map_or("-".to_owned(), |c| format!("{c:.0}")));
    format!("| {} |", cells.join(" | "))
}

/// Milliseconds with two decimals, `-` for none.
pub fn ms(d: Option<Duration>) -> String {
    d.map_or("-".to_owned(), |d| format!("{:.2}", d.as_secs_f64() * 1e3))
}

/// KiB as MiB with one decimal.
pub fn mib(kib: u64) -> String {
    format!("{:.1}", kib as f64 / 1024.0)
}

/// One quantity's growth check: the second half's maximum against the bound the first
/// half's maximum sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bound {
    pub first_max: u64,
    pub second_max: u64,
    pub limit: u64,
}

impl Bound {
    pub fn ok(&self) -> bool {
        self.second_max <= self.limit
    }
}

/// The growth verdict over a run of `length`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Growth {
    /// Samples on both sides of `length / 2`.
    Checked { rss_kib: Bound, fds: Bound },
    /// Not enough samples (no server to read, or a half without one).
    Unchecked,
}

impl Growth {
    pub fn ok(&self) -> bool {
        match self {
            Growth::Checked { rss_kib, fds } => rss_kib.ok() && fds.ok(),
            Growth::Unchecked => true,
        }
    }
}

/// Splits `samples` (elapsed, sample) at `length / 2` (a sample exactly there is in the
/// first half) and bounds the second half by the first: RSS ≤ max × 1.10 + 8 MiB, fds ≤
/// max + 8.
pub fn growth(samples: &[(Duration, ProcSample)], length: Duration) -> Growth {
    let half = length / 2;
    let max_of = |first: bool, f: fn(&ProcSample) -> u64| {
        samples
            .iter()
            .filter(|(t, _)| (*t <= half) == first)
            .map(|(_, s)| f(s))
            .max()
    };
    let rss = (max_of(true, |s| s.rss_kib), max_of(false, |s| s.rss_kib));
    let fds = (max_of(true, |s| s.fds), max_of(false, |s| s.fds));
    match (rss, fds) {
        ((Some(r1), Some(r2)), (Some(f1), Some(f2))) => Growth::Checked {
            rss_kib: Bound {
                first_max: r1,
                second_max: r2,
                limit: (r1 as f64 * RSS_GROWTH_FACTOR) as u64 + RSS_GROWTH_SLACK_KIB,
            },
            fds: Bound {
                first_max: f1,
                second_max: f2,
                limit: f1 + FD_GROWTH_SLACK,
            },
        },
        _ => Growth::Unchecked,
    }
}

/// Everything the summary shows.
#[derive(Debug)]
pub struct Outcome<'a> {
    pub command: String,
    pub length: Duration,
    pub rate: f64,
    /// `(mode name, totals)`.
    pub modes: Vec<(&'a str, Totals)>,
    /// The server's samples, the first taken before the load.
    pub server: Vec<(Duration, ProcSample)>,
    /// Late or duplicate NIP-46 replies, and notifications the clients' pool dropped.
    pub stray_replies: u64,
    pub dropped_notifications: u64,
    /// `(warnings, errors, examples)` in the server's log; `None` for a server not ours.
    pub server_log: Option<(usize, usize, Vec<String>)>,
    /// Problems outside the counts (the server exited, did not stop, …).
    pub problems: Vec<String>,
    pub bench_rss_kib: Option<(u64, u64)>,
}

impl Outcome<'_> {
    pub fn errors(&self) -> u64 {
        self.modes.iter().map(|(_, t)| t.errors).sum::<u64>() + self.stray_replies
    }

    pub fn passed(&self) -> bool {
        self.errors() == 0
            && self.dropped_notifications == 0
            && self.problems.is_empty()
            && growth(&self.server, self.length).ok()
    }
}

/// The summary and verdict, as markdown.
pub fn summary(o: &Outcome<'_>) -> String {
    let mut out = String::new();
    let secs = o.length.as_secs_f64();
    let _ = writeln!(out, "\n## Summary\n\n`{}`\n", o.command);
    let _ = writeln!(
        out,
        "| mode | offered req/s | sent | ok | errors | ok/s | p50 ms | p99 ms | max ms | max send lag ms |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (name, t) in &o.modes {
        let _ = writeln!(
            out,
            "| {name} | {} | {} | {} | {} | {:.1} | {} | {} | {} | {} |",
            o.rate,
            t.sent,
            t.ok,
            t.errors,
            t.ok as f64 / secs.max(f64::EPSILON),
            ms(t.p50),
            ms(t.p99),
            ms(t.max),
            ms(Some(t.max_send_lag)),
        );
    }
    if let (Some(first), Some(last)) = (o.server.first(), o.server.last()) {
        let max_rss = o.server.iter().map(|(_, s)| s.rss_kib).max().unwrap_or(0);
        let max_fds = o.server.iter().map(|(_, s)| s.fds).max().unwrap_or(0);
        let _ = writeln!(out, "\n| server | first (before load) | max | last |");
        let _ = writeln!(out, "|---|---:|---:|---:|");
        let _ = writeln!(
            out,
            "| RSS MiB | {} | {} | {} |",
            mib(first.1.rss_kib),
            mib(max_rss),
            mib(last.1.rss_kib)
        );
        let _ = writeln!(
            out,
            "| open fds | {} | {max_fds} | {} |",
            first.1.fds, last.1.fds
        );
    }
    out.push('\n');
    for (name, t) in &o.modes {
        if !t.errors_by_kind.is_empty() {
            let kinds: Vec<String> = t
                .errors_by_kind
                .iter()
                .map(|(k, n)| format!("{k} × {n}"))
                .collect();
            let _ = writeln!(out, "- {name} errors: {}", kinds.join(", "));
        }
    }
    if o.stray_replies > 0 || o.dropped_notifications > 0 {
        let _ = writeln!(
            out,
            "- NIP-46: {} late or duplicate replies, {} notifications dropped by the clients' relay pool",
            o.stray_replies, o.dropped_notifications
        );
    }
    if let Some((warn, error, examples)) = &o.server_log {
        let _ = write!(out, "- server log: {warn} warnings, {error} errors");
        if !examples.is_empty() {
            let _ = write!(out, " (e.g. {})", examples.join("; "));
        }
        out.push('\n');
    }
    if let Some((first, last)) = o.bench_rss_kib {
        let _ = writeln!(
            out,
            "- this tool's own RSS: {} MiB before the load, {} MiB at the end",
            mib(first),
            mib(last)
        );
    }
    for p in &o.problems {
        let _ = writeln!(out, "- problem: {p}");
    }
    out.push_str("\n### Verdict\n\n");
    let _ = writeln!(out, "- errors: {}", o.errors());
    match growth(&o.server, o.length) {
        Growth::Checked { rss_kib, fds } => {
            let _ = writeln!(
                out,
                "- RSS: max in the second half {} MiB, bound {} MiB (first-half max {} MiB × {RSS_GROWTH_FACTOR:.2} + {} MiB): {}",
                mib(rss_kib.second_max),
                mib(rss_kib.limit),
                mib(rss_kib.first_max),
                RSS_GROWTH_SLACK_KIB / 1024,
                if rss_kib.ok() { "ok" } else { "GREW" }
            );
            let _ = writeln!(
                out,
                "- open fds: max in the second half {}, bound {} (first-half max {} + {FD_GROWTH_SLACK}): {}",
                fds.second_max,
                fds.limit,
                fds.first_max,
                if fds.ok() { "ok" } else { "GREW" }
            );
        }
        Growth::Unchecked => {
            let _ = writeln!(
                out,
                "- growth: not checked (no server samples in one half of the run)"
            );
        }
    }
    let _ = writeln!(out, "\n**{}**", if o.passed() { "PASS" } else { "FAIL" });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(rss_mib: u64, fds: u64) -> ProcSample {
        ProcSample {
            rss_kib: rss_mib * 1024,
            fds,
            cpu_ticks: 0,
        }
    }

    fn at(secs: u64, sample: ProcSample) -> (Duration, ProcSample) {
        (Duration::from_secs(secs), sample)
    }

    #[test]
    fn growth_within_ten_percent_plus_8_mib_and_8_fds_passes() {
        // First half max 100 MiB, 40 fds: bounds 118 MiB and 48 fds.
        let samples = [
            at(0, s(30, 20)),
            at(30, s(100, 40)),
            at(60, s(90, 35)),
            at(90, s(118, 48)),
            at(120, s(110, 41)),
        ];
        let g = growth(&samples, Duration::from_secs(120));
        let Growth::Checked { rss_kib, fds } = g else {
            panic!("{g:?}")
        };
        assert_eq!(rss_kib.first_max, 100 * 1024);
        assert_eq!(rss_kib.second_max, 118 * 1024);
        assert_eq!(rss_kib.limit, 110 * 1024 + 8 * 1024);
        assert_eq!((fds.first_max, fds.second_max, fds.limit), (40, 48, 48));
        assert!(g.ok());
    }

    #[test]
    fn growth_past_either_bound_fails() {
        let rss = [at(10, s(100, 40)), at(20, s(119, 40))];
        assert!(!growth(&rss, Duration::from_secs(20)).ok());
        let fds = [at(10, s(100, 40)), at(20, s(100, 49))];
        assert!(!growth(&fds, Duration::from_secs(20)).ok());
        // A sample at exactly half belongs to the first half.
        let edge = [at(10, s(200, 40)), at(20, s(100, 40))];
        assert!(growth(&edge, Duration::from_secs(20)).ok());
    }

    #[test]
    fn growth_needs_a_sample_in_each_half() {
        assert_eq!(growth(&[], Duration::from_secs(10)), Growth::Unchecked);
        let early = [at(1, s(10, 10)), at(5, s(500, 500))];
        assert_eq!(growth(&early, Duration::from_secs(10)), Growth::Unchecked);
        assert!(Growth::Unchecked.ok());
    }

    #[test]
    fn rows_line_up_with_the_header() {
        let h = header(&["http", "nip46"]);
        let r = row(&Row {
            elapsed: Duration::from_millis(30_020),
            label: None,
            modes: vec![
                Summary {
                    sent: 3000,
                    ok: 2999,
                    errors: 1,
                    p50: Some(Duration::from_micros(1_234)),
                    p99: Some(Duration::from_micros(9_876)),
                    max: None,
                },
                Summary::default(),
            ],
            server: Some(s(42, 17)),
            cpu_percent: Some(12.4),
        });
        assert_eq!(
            r,
            "| 30 | 3000 | 2999 | 1 | 1.23 | 9.88 | 0 | 0 | 0 | - | - | 42.0 | 17 | 12 |"
        );
        let cells = |line: &str| line.matches('|').count();
        for line in h.lines() {
            assert_eq!(cells(line), cells(&r), "{line}");
        }
    }

    #[test]
    fn errors_or_growth_fail_the_run() {
        let mut o = Outcome {
            command: "keycast-bench".into(),
            length: Duration::from_secs(20),
            rate: 10.0,
            modes: vec![("http", Totals::default())],
            server: vec![at(10, s(100, 40)), at(20, s(100, 40))],
            stray_replies: 0,
            dropped_notifications: 0,
            server_log: None,
            problems: vec![],
            bench_rss_kib: None,
        };
        assert!(o.passed());
        assert!(summary(&o).contains("**PASS**"));
        o.modes[0].1.errors = 1;
        assert!(!o.passed());
        o.modes[0].1.errors = 0;
        o.server.push(at(20, s(200, 40)));
        assert!(!o.passed());
        assert!(summary(&o).contains("GREW"));
        assert!(summary(&o).contains("**FAIL**"));
    }
}
