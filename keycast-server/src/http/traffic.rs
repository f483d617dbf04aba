//! Every HTTP answer counted by status class and timed, for the 5xx-rate and latency
//! alerts (`deploy/prometheus/keycast-alerts.yml`). Lock-free counters: one atomic add per
//! request for the class and one for the duration's bucket.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;

/// Upper bounds of the duration histogram, in seconds.
pub const DURATION_BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

/// Status classes, `1xx` to `5xx`.
pub const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// Answers by status class and their durations.
#[derive(Debug, Default)]
pub struct HttpTraffic {
    by_class: [AtomicU64; 5],
    /// One per bucket, plus the overflow (`+Inf`).
    buckets: [AtomicU64; DURATION_BUCKETS.len() + 1],
    micros: AtomicU64,
}

/// A copy of [`HttpTraffic`] for rendering.
#[derive(Debug, Clone, PartialEq)]
pub struct TrafficSnapshot {
    /// Answers per class, in [`CLASSES`] order.
    pub by_class: [u64; 5],
    /// Cumulative counts per bucket of [`DURATION_BUCKETS`], then `+Inf`.
    pub cumulative: Vec<u64>,
    /// Sum of durations, in seconds.
    pub seconds: f64,
}

impl HttpTraffic {
    /// Counts one answer.
    pub fn record(&self, status: u16, elapsed: std::time::Duration) {
        let class = usize::from(status / 100).clamp(1, 5) - 1;
        self.by_class[class].fetch_add(1, Ordering::Relaxed);
        let secs = elapsed.as_secs_f64();
        let bucket = DURATION_BUCKETS
            .iter()
            .position(|le| secs <= *le)
            .unwrap_or(DURATION_BUCKETS.len());
        self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        self.micros.fetch_add(
            u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }

    /// Reads the counters.
    pub fn snapshot(&self) -> TrafficSnapshot {
        let mut total = 0;
        let cumulative = self
            .buckets
            .iter()
            .map(|b| {
                total += b.load(Ordering::Relaxed);
                total
            })
            .collect();
        TrafficSnapshot {
            by_class: std::array::from_fn(|i| self.by_class[i].load(Ordering::Relaxed)),
            cumulative,
            seconds: self.micros.load(Ordering::Relaxed) as f64 / 1e6,
        }
    }
}

/// The middleware: times the handler and counts its status.
pub async fn measure(
    State(traffic): State<Arc<HttpTraffic>>,
    request: Request,
    next: Next,
) -> Response {
    let start = Instant::now();
    let response = next.run(request).await;
    traffic.record(response.status().as_u16(), start.elapsed());
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn answers_land_in_their_class_and_bucket() {
        let t = HttpTraffic::default();
        t.record(200, Duration::from_micros(500));
        t.record(503, Duration::from_millis(30));
        t.record(404, Duration::from_secs(60));
        let s = t.snapshot();
        assert_eq!(s.by_class, [0, 1, 0, 1, 1]);
        assert_eq!(s.cumulative[0], 1, "≤ 1 ms");
        assert_eq!(s.cumulative[5], 2, "≤ 50 ms");
        assert_eq!(s.cumulative[DURATION_BUCKETS.len() - 1], 2, "≤ 10 s");
        assert_eq!(s.cumulative[DURATION_BUCKETS.len()], 3, "+Inf counts all");
        assert!((s.seconds - 60.0305).abs() < 1e-6);
    }
}
