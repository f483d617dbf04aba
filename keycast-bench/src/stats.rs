//! Counts and latencies per mode: per sampling interval (taken and reset by each report
//! row) and for the whole run. Percentiles come from the sorted samples themselves.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

/// One mode's results, shared by its request tasks and the reporter.
#[derive(Debug, Default)]
pub struct Recorder {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    interval: Counts,
    total: Counts,
    errors_by_kind: BTreeMap<String, u64>,
    max_send_lag: Duration,
}

/// Counts, and the latencies of the correct answers.
#[derive(Debug, Default)]
struct Counts {
    sent: u64,
    ok: u64,
    errors: u64,
    latencies: Vec<Duration>,
}

impl Counts {
    fn summary(mut self) -> Summary {
        self.latencies.sort_unstable();
        Summary {
            sent: self.sent,
            ok: self.ok,
            errors: self.errors,
            p50: percentile(&self.latencies, 0.50),
            p99: percentile(&self.latencies, 0.99),
            max: self.latencies.last().copied(),
        }
    }
}

/// Counts and latency percentiles over an interval or the run. Requests are counted as
/// sent when they leave and as ok or errors when they finish, so an interval's `ok +
/// errors` need not equal its `sent`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Summary {
    pub sent: u64,
    pub ok: u64,
    pub errors: u64,
    /// `None` without a correct answer.
    pub p50: Option<Duration>,
    pub p99: Option<Duration>,
    pub max: Option<Duration>,
}

/// The run's totals.
#[derive(Debug, Clone, Default)]
pub struct Totals {
    pub sent: u64,
    pub ok: u64,
    pub errors: u64,
    pub p50: Option<Duration>,
    pub p99: Option<Duration>,
    pub max: Option<Duration>,
    pub errors_by_kind: BTreeMap<String, u64>,
    /// How far behind its schedule the sender ever was (a saturated client shows here).
    pub max_send_lag: Duration,
}

impl Recorder {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A request left, `lag` after it was due.
    pub fn sent(&self, lag: Duration) {
        let mut s = self.lock();
        s.interval.sent += 1;
        s.total.sent += 1;
        s.max_send_lag = s.max_send_lag.max(lag);
    }

    /// A correct answer, `latency` after the request was due.
    pub fn ok(&self, latency: Duration) {
        let mut s = self.lock();
        s.interval.ok += 1;
        s.interval.latencies.push(latency);
        s.total.ok += 1;
        s.total.latencies.push(latency);
    }

    /// A failed request; `kind` names why (`timeout`, `http 503`, …).
    pub fn error(&self, kind: &str) {
        let mut s = self.lock();
        s.interval.errors += 1;
        s.total.errors += 1;
        *s.errors_by_kind.entry(kind.to_owned()).or_default() += 1;
    }

    /// The interval since the previous call; starts the next.
    pub fn take_interval(&self) -> Summary {
        std::mem::take(&mut self.lock().interval).summary()
    }

    /// The whole run so far.
    pub fn totals(&self) -> Totals {
        let s = self.lock();
        let all = Counts {
            sent: s.total.sent,
            ok: s.total.ok,
            errors: s.total.errors,
            latencies: s.total.latencies.clone(),
        };
        let (errors_by_kind, max_send_lag) = (s.errors_by_kind.clone(), s.max_send_lag);
        drop(s);
        let all = all.summary();
        Totals {
            sent: all.sent,
            ok: all.ok,
            errors: all.errors,
            p50: all.p50,
            p99: all.p99,
            max: all.max,
            errors_by_kind,
            max_send_lag,
        }
    }
}

/// The nearest-rank `q` quantile (0 < q ≤ 1) of `sorted`: the smallest sample with at
/// least `q` of the samples at or below it. `None` for no samples.
pub fn percentile(sorted: &[Duration], q: f64) -> Option<Duration> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.clamp(1, sorted.len()) - 1).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: &[u64]) -> Vec<Duration> {
        v.iter().map(|&m| Duration::from_millis(m)).collect()
    }

    #[test]
    fn nearest_rank_percentiles() {
        let hundred = ms(&(1..=100).collect::<Vec<_>>());
        assert_eq!(percentile(&hundred, 0.50), Some(Duration::from_millis(50)));
        assert_eq!(percentile(&hundred, 0.99), Some(Duration::from_millis(99)));
        assert_eq!(percentile(&hundred, 1.0), Some(Duration::from_millis(100)));
        assert_eq!(percentile(&hundred, 0.001), Some(Duration::from_millis(1)));
        // 99th of ten: rank ceil(9.9) = 10, the largest.
        let ten = ms(&[1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
        assert_eq!(percentile(&ten, 0.99), Some(Duration::from_millis(10)));
        assert_eq!(percentile(&ten, 0.50), Some(Duration::from_millis(5)));
        assert_eq!(percentile(&ms(&[7]), 0.5), Some(Duration::from_millis(7)));
        assert_eq!(percentile(&ms(&[7]), 0.99), Some(Duration::from_millis(7)));
        assert_eq!(percentile(&[], 0.5), None);
        // 1,000 samples with ten slow ones: p99 is the last fast one, not a slow one.
        let mut tail = ms(&[1; 990]);
        tail.extend(ms(&[500; 10]));
        assert_eq!(percentile(&tail, 0.99), Some(Duration::from_millis(1)));
        tail.push(Duration::from_millis(500));
        assert_eq!(percentile(&tail, 0.99), Some(Duration::from_millis(500)));
    }

    #[test]
    fn intervals_reset_and_totals_keep_everything() {
        let r = Recorder::default();
        r.sent(Duration::ZERO);
        r.sent(Duration::from_millis(3));
        r.ok(Duration::from_millis(4));
        r.ok(Duration::from_millis(2));
        let first = r.take_interval();
        assert_eq!((first.sent, first.ok, first.errors), (2, 2, 0));
        assert_eq!(first.p50, Some(Duration::from_millis(2)));
        assert_eq!(first.p99, Some(Duration::from_millis(4)));
        r.sent(Duration::ZERO);
        r.error("timeout");
        let second = r.take_interval();
        assert_eq!((second.sent, second.ok, second.errors), (1, 0, 1));
        assert_eq!(second.p50, None);
        assert_eq!(r.take_interval(), Summary::default());
        let t = r.totals();
        assert_eq!((t.sent, t.ok, t.errors), (3, 2, 1));
        assert_eq!(t.max, Some(Duration::from_millis(4)));
        assert_eq!(t.max_send_lag, Duration::from_millis(3));
        assert_eq!(t.errors_by_kind.get("timeout"), Some(&1));
    }
}
