//! The open loop: requests leave on a fixed schedule whether or not earlier ones were
//! answered, so a slow server meets the same offered load instead of slowing the client
//! down (which would hide the slowness: coordinated omission).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::stats::Recorder;

/// When each request of a run at `rate` per second for `length` is due.
#[derive(Debug, Clone, Copy)]
pub struct Schedule {
    start: Instant,
    rate: f64,
    count: u64,
}

impl Schedule {
    /// `rate` requests per second from `start` for `length`: request `i` is due at
    /// `start + i / rate`, and the last one is due before `start + length`.
    pub fn new(start: Instant, rate: f64, length: Duration) -> Self {
        let count = if rate > 0.0 && rate.is_finite() {
            // Due times strictly inside [0, length): ceil(rate × length).
            (rate * length.as_secs_f64()).ceil().max(0.0) as u64
        } else {
            0
        };
        Self { start, rate, count }
    }

    /// How many requests the run sends.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// When request `i` is due.
    pub fn due(&self, i: u64) -> Instant {
        self.start + Duration::from_secs_f64(i as f64 / self.rate)
    }
}

/// Sends `schedule.count()` requests, request `i` at `schedule.due(i)`, each in its own
/// task, and waits for the last of them. `request(i)` resolves to `Ok(())` for a correct
/// answer or `Err(kind)`; one without an answer `timeout` after it was due is an error of
/// kind `timeout`. Latency counts from when the request was due, not when it left, so a
/// sender that fell behind shows in the latencies too.
pub async fn drive<F, Fut>(
    schedule: Schedule,
    timeout: Duration,
    recorder: Arc<Recorder>,
    mut request: F,
) where
    F: FnMut(u64) -> Fut,
    Fut: Future<Output = Result<(), String>> + Send + 'static,
{
    let mut in_flight = JoinSet::new();
    for i in 0..schedule.count() {
        let due = schedule.due(i);
        tokio::time::sleep_until(due).await;
        recorder.sent(Instant::now().saturating_duration_since(due));
        let call = request(i);
        let recorder = recorder.clone();
        in_flight.spawn(async move {
            match tokio::time::timeout_at(due + timeout, call).await {
                Ok(Ok(())) => recorder.ok(Instant::now().saturating_duration_since(due)),
                Ok(Err(kind)) => recorder.error(&kind),
                Err(_) => recorder.error("timeout"),
            }
        });
        // Finished tasks keep their slot until joined; a long run would pile them up.
        while in_flight.try_join_next().is_some() {}
    }
    while in_flight.join_next().await.is_some() {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn count_is_rate_times_length_rounded_up() {
        let start = Instant::now();
        let cases = [
            (100.0, 600.0, 60_000),
            (10.0, 1.0, 10),
            (3.0, 1.0, 3),
            (2.5, 1.0, 3), // due at 0, 0.4, 0.8
            (0.5, 3.0, 2), // due at 0, 2
            (0.0, 10.0, 0),
            (f64::NAN, 10.0, 0),
        ];
        for (rate, seconds, want) in cases {
            let s = Schedule::new(start, rate, Duration::from_secs_f64(seconds));
            assert_eq!(s.count(), want, "rate {rate} for {seconds} s");
        }
    }

    #[test]
    fn requests_are_evenly_spaced_from_the_start_and_all_due_inside_the_run() {
        let start = Instant::now();
        let length = Duration::from_secs(2);
        let s = Schedule::new(start, 4.0, length);
        let due: Vec<Duration> = (0..s.count()).map(|i| s.due(i) - start).collect();
        let want: Vec<Duration> = (0..8).map(|i| Duration::from_millis(250 * i)).collect();
        assert_eq!(due, want);
        let big = Schedule::new(start, 100.0, Duration::from_secs(600));
        assert!(big.due(big.count() - 1) < start + Duration::from_secs(600));
        // No drift: the schedule is computed from the start, not by adding intervals.
        assert_eq!(big.due(59_999) - start, Duration::from_secs_f64(599.99));
    }

    #[tokio::test(start_paused = true)]
    async fn an_open_loop_keeps_sending_while_answers_are_slow_and_times_them_out() {
        let recorder = Arc::new(Recorder::default());
        let start = Instant::now();
        let schedule = Schedule::new(start, 10.0, Duration::from_secs(1));
        // Every request takes 3 s; the timeout is 2 s: all ten are sent on time anyway,
        // and all ten time out.
        drive(
            schedule,
            Duration::from_secs(2),
            recorder.clone(),
            |_| async {
                tokio::time::sleep(Duration::from_secs(3)).await;
                Ok(())
            },
        )
        .await;
        let totals = recorder.totals();
        assert_eq!((totals.sent, totals.ok, totals.errors), (10, 0, 10));
        assert_eq!(totals.errors_by_kind.get("timeout"), Some(&10));
        assert!(totals.max_send_lag < Duration::from_millis(1));
        // The last was due at 0.9 s and timed out 2 s later.
        assert_eq!(Instant::now() - start, Duration::from_millis(2_900));
    }

    #[tokio::test(start_paused = true)]
    async fn latency_counts_from_when_the_request_was_due() {
        let recorder = Arc::new(Recorder::default());
        let schedule = Schedule::new(Instant::now(), 2.0, Duration::from_secs(1));
        drive(
            schedule,
            Duration::from_secs(10),
            recorder.clone(),
            |i| async move {
                tokio::time::sleep(Duration::from_millis(100 * (i + 1))).await;
                if i == 0 {
                    Ok(())
                } else {
                    Err("refused".to_owned())
                }
            },
        )
        .await;
        let totals = recorder.totals();
        assert_eq!((totals.sent, totals.ok, totals.errors), (2, 1, 1));
        assert_eq!(totals.p50, Some(Duration::from_millis(100)));
        assert_eq!(totals.errors_by_kind.get("refused"), Some(&1));
    }
}
