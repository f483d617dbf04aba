//! Prometheus text exposition at `/metrics` (alias `/api/metrics`), read from the
//! engine's, the bunker's and the HTTP layer's counters at scrape time.

use std::fmt::Write;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use keycast_nip46::{RelayConnection, QUEUE_WAIT_BUCKETS_MICROS};

use super::AppState;

/// Marks requests that came in on the operator's listener (`KEYCAST_METRICS_LISTEN`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct OperationsPort;

/// `/api/metrics`: the same as `/metrics`, for deployments that route only `/api`.
#[utoipa::path(get, path = "/api/metrics", tag = "operations", responses(
    (status = 200, description = "Prometheus text exposition", body = String, content_type = "text/plain"),
    (status = 404, description = "Metrics are served on `KEYCAST_METRICS_LISTEN` instead", body = super::error::ErrorBody)))]
pub(crate) async fn render_alias(
    state: State<AppState>,
    port: Option<Extension<OperationsPort>>,
) -> Response {
    render(state, port).await
}

/// Accumulates exposition text; `# HELP`/`# TYPE` once per metric.
struct Exposition(String);

impl Exposition {
    fn metric(&mut self, name: &str, kind: &str, help: &str, value: impl std::fmt::Display) {
        self.header(name, kind, help);
        let _ = writeln!(self.0, "{name} {value}");
    }

    fn header(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }
}

/// Prometheus metrics (design §8 names). With `KEYCAST_METRICS_LISTEN` set they are
/// served only there, and the public listener answers 404.
#[utoipa::path(get, path = "/metrics", tag = "operations", responses(
    (status = 200, description = "Prometheus text exposition", body = String, content_type = "text/plain"),
    (status = 404, description = "Metrics are served on `KEYCAST_METRICS_LISTEN` instead", body = super::error::ErrorBody)))]
pub(crate) async fn render(
    State(state): State<AppState>,
    port: Option<Extension<OperationsPort>>,
) -> Response {
    if state.services.config.metrics_listen.is_some() && port.is_none() {
        return super::ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such endpoint")
            .into_response();
    }
    exposition(&state).await.into_response()
}

async fn exposition(state: &AppState) -> impl IntoResponse {
    let mut out = Exposition(String::with_capacity(4096));
    let engine = state.services.custody.stats();
    out.metric(
        "keycast_cache_hits_total",
        "counter",
        "Signing-key cache hits.",
        engine.key_cache_hits,
    );
    out.metric(
        "keycast_cache_misses_total",
        "counter",
        "Signing-key cache misses (cold loads).",
        engine.key_cache_misses,
    );
    out.metric(
        "keycast_cache_size",
        "gauge",
        "Signing keys cached.",
        engine.key_cache_size,
    );
    out.metric(
        "keycast_crypto_queue_depth",
        "gauge",
        "Jobs waiting for the crypto pool.",
        engine.crypto_queue_len,
    );
    out.metric(
        "keycast_crypto_queue_capacity",
        "gauge",
        "Crypto pool queue capacity.",
        engine.crypto_queue_capacity,
    );
    out.metric(
        "keycast_audit_queue_depth",
        "gauge",
        "Audit records waiting to be stored.",
        engine.audit_queue_len,
    );
    out.metric(
        "keycast_stale_served_total",
        "counter",
        "Authorizations and policies answered from a stale copy while the database was unavailable.",
        engine.stale_served,
    );
    out.metric(
        "keycast_key_open_failures_total",
        "counter",
        "Cold loads of a stored key that failed to open: master key missing or refusing, envelope or pubkey check failed.",
        engine.key_open_failures,
    );
    out.metric(
        "keycast_keys_unopenable",
        "gauge",
        "1 while the last cold load of a stored key failed to open it (readiness fails).",
        u8::from(engine.keys_unopenable),
    );
    gates(&mut out, &state.gates);
    let spool = state
        .services
        .audit_spool
        .as_ref()
        .map(|s| s.stats())
        .unwrap_or_default();
    out.metric(
        "keycast_audit_spooled_total",
        "counter",
        "Audit records kept in the local spool because the database could not take them.",
        spool.spooled,
    );
    out.metric(
        "keycast_audit_spool_drained_total",
        "counter",
        "Spooled audit records moved into the database.",
        spool.drained,
    );
    out.metric(
        "keycast_audit_spool_pending",
        "gauge",
        "1 while audit records wait in the local spool.",
        u64::from(spool.pending),
    );
    if let Some((rss, fds)) = process_stats() {
        out.metric(
            "process_resident_memory_bytes",
            "gauge",
            "Resident memory of this process.",
            rss,
        );
        out.metric(
            "process_open_fds",
            "gauge",
            "Open file descriptors of this process.",
            fds,
        );
    }
    let traffic = state.traffic.snapshot();
    let name = "keycast_http_requests_total";
    out.header(name, "counter", "HTTP answers by status class.");
    for (class, count) in super::traffic::CLASSES.iter().zip(traffic.by_class) {
        let _ = writeln!(out.0, "{name}{{class=\"{class}\"}} {count}");
    }
    let name = "keycast_http_request_duration_seconds";
    out.header(name, "histogram", "Time from request to response head.");
    for (i, count) in traffic.cumulative.iter().enumerate() {
        let le = super::traffic::DURATION_BUCKETS
            .get(i)
            .map_or("+Inf".to_owned(), |s| s.to_string());
        let _ = writeln!(out.0, "{name}_bucket{{le=\"{le}\"}} {count}");
    }
    let _ = writeln!(out.0, "{name}_sum {}", traffic.seconds);
    let _ = writeln!(
        out.0,
        "{name}_count {}",
        traffic.cumulative.last().copied().unwrap_or(0)
    );
    let http = state.counters.snapshot();
    out.metric(
        "keycast_http_rpc_requests_total",
        "counter",
        "HTTP RPC requests.",
        http.rpc_requests,
    );
    out.metric(
        "keycast_http_rpc_auth_errors_total",
        "counter",
        "HTTP RPC requests refused for their credentials.",
        http.rpc_auth_errors,
    );
    out.metric(
        "keycast_registrations_total",
        "counter",
        "Accounts registered.",
        http.registrations,
    );
    out.metric(
        "keycast_logins_total",
        "counter",
        "Successful logins.",
        http.logins,
    );
    out.metric(
        "keycast_login_failures_total",
        "counter",
        "Failed or refused logins.",
        http.login_failures,
    );
    let kms = state.services.kms_metrics.snapshot();
    out.metric(
        "keycast_kms_calls_total",
        "counter",
        "Key manager calls.",
        kms.calls,
    );
    out.metric(
        "keycast_kms_failures_total",
        "counter",
        "Key manager calls that failed.",
        kms.failures,
    );
    out.metric(
        "keycast_kms_call_seconds_sum",
        "counter",
        "Total key manager call time.",
        kms.seconds,
    );
    if let Some(bunker) = &state.bunker {
        let b = bunker.stats();
        out.metric(
            "keycast_nip46_requests_total",
            "counter",
            "NIP-46 request events received.",
            b.requests,
        );
        out.metric(
            "keycast_nip46_standby_kept_total",
            "counter",
            "NIP-46 requests to keys this instance stands by for, kept unparsed in case ownership moves.",
            b.standby_kept,
        );
        out.metric(
            "keycast_nip46_rejected_hashring_total",
            "counter",
            "NIP-46 requests owned by another instance.",
            b.rejected_hashring,
        );
        out.metric(
            "keycast_nip46_claims_lost_total",
            "counter",
            "NIP-46 requests routed here that another instance had claimed.",
            b.claims_lost,
        );
        out.metric(
            "keycast_nip46_rerouted_total",
            "counter",
            "NIP-46 requests taken over after a ring change because nobody had claimed them.",
            b.rerouted,
        );
        out.metric(
            "keycast_nip46_processed_total",
            "counter",
            "NIP-46 requests answered.",
            b.processed,
        );
        out.metric(
            "keycast_nip46_queue_dropped_total",
            "counter",
            "NIP-46 requests refused because the queue was full.",
            b.queue_dropped,
        );
        out.metric(
            "keycast_nip46_invalid_total",
            "counter",
            "NIP-46 events dropped as unusable.",
            b.invalid,
        );
        out.metric(
            "keycast_nip46_replayed_total",
            "counter",
            "NIP-46 events outside the created_at window.",
            b.replayed,
        );
        out.metric(
            "keycast_nip46_duplicates_total",
            "counter",
            "NIP-46 events seen before.",
            b.duplicates,
        );
        let name = "keycast_nip46_limited_total";
        out.header(
            name,
            "counter",
            "NIP-46 requests dropped by a rate limit before any crypto of ours: at intake, or (on_arrival) before the relay pool parsed them.",
        );
        for (limit, count) in [
            ("client", b.limited_client),
            ("bunker", b.limited_bunker),
            ("unbound_client", b.limited_unbound_client),
            ("unbound_bunker", b.limited_unbound_bunker),
            ("unbound", b.limited_unbound),
            ("on_arrival", b.limited_on_arrival),
        ] {
            let _ = writeln!(out.0, "{name}{{limit=\"{limit}\"}} {count}");
        }
        out.metric(
            "keycast_nip46_unknown_bunker_total",
            "counter",
            "NIP-46 requests to a bunker key no active authorization has.",
            b.unknown_bunker,
        );
        out.metric(
            "keycast_nip46_limiter_keys",
            "gauge",
            "Keys the NIP-46 intake limiters track now.",
            b.limiter_keys,
        );
        out.metric(
            "keycast_nip46_limiter_resets_total",
            "counter",
            "Times an intake limiter tracked too many keys and was reset.",
            b.limiter_resets,
        );
        out.metric(
            "keycast_nip46_relays_refused_total",
            "counter",
            "Connections to client-named relays refused by the relay address policy.",
            b.relays_refused,
        );
        out.metric(
            "keycast_nip46_pairings_refused_total",
            "counter",
            "nostrconnect:// pairings refused (relay policy, relay caps, pairing rate).",
            b.pairings_refused,
        );
        out.metric(
            "keycast_nip46_subscribed_authorizations",
            "gauge",
            "Active authorizations the NIP-46 subscriptions cover.",
            b.subscribed_authorizations,
        );
        out.metric(
            "keycast_nip46_subscription_reqs",
            "gauge",
            "Subscription REQs open over all relays (each at most req_max_bytes).",
            b.open_reqs,
        );
        out.metric(
            "keycast_nip46_extra_connections",
            "gauge",
            "Connection sets besides the main one, for relays that take fewer REQs per connection than needed.",
            b.extra_lanes,
        );
        out.metric(
            "keycast_nip46_reqs_sent_total",
            "counter",
            "Subscription REQs sent (one per changed shard per relay).",
            b.reqs_sent,
        );
        out.metric(
            "keycast_nip46_req_bytes_total",
            "counter",
            "Bytes of the subscription REQs sent.",
            b.req_bytes,
        );
        out.metric(
            "keycast_nip46_reqs_refused_total",
            "counter",
            "Subscription REQs a relay refused (CLOSED, or a NOTICE about size or count).",
            b.reqs_refused,
        );
        out.metric(
            "keycast_nip46_req_shrinks_total",
            "counter",
            "Times a relay's subscription was split smaller or spread wider after a refusal.",
            b.req_shrinks,
        );
        out.metric(
            "keycast_nip46_panics_total",
            "counter",
            "NIP-46 handler panics caught.",
            b.panics,
        );
        out.metric(
            "keycast_nip46_replies_refused_total",
            "counter",
            "NIP-46 replies a relay refused.",
            b.replies_refused,
        );
        out.metric(
            "keycast_nip46_approvals_pending",
            "gauge",
            "NIP-46 requests waiting for approval.",
            b.approvals_pending,
        );
        out.metric(
            "keycast_nip46_pinned",
            "gauge",
            "Bunker keys answered here whoever owns them, their URI handed out here lately.",
            b.pinned,
        );
        out.metric(
            "keycast_nip46_parked",
            "gauge",
            "Other instances' NIP-46 requests kept in case ownership moves.",
            b.parked,
        );
        out.metric(
            "keycast_nip46_queue_depth",
            "gauge",
            "NIP-46 requests waiting for a worker.",
            b.queue_depth,
        );
        out.metric(
            "keycast_nip46_queue_capacity",
            "gauge",
            "NIP-46 queue capacity.",
            b.queue_capacity,
        );
        let name = "keycast_nip46_queue_wait_seconds";
        out.header(
            name,
            "histogram",
            "Time NIP-46 requests waited for a worker.",
        );
        let mut cumulative = 0;
        for (i, count) in b.queue_wait_histogram.iter().enumerate() {
            cumulative += count;
            let le = QUEUE_WAIT_BUCKETS_MICROS
                .get(i)
                .map_or("+Inf".to_owned(), |us| (*us as f64 / 1e6).to_string());
            let _ = writeln!(out.0, "{name}_bucket{{le=\"{le}\"}} {cumulative}");
        }
        let _ = writeln!(out.0, "{name}_sum {}", b.queue_wait_micros as f64 / 1e6);
        let _ = writeln!(out.0, "{name}_count {cumulative}");
        let name = "keycast_nip46_relay_connected";
        out.header(name, "gauge", "1 when the relay is connected.");
        let relays = bunker.relay_states().await;
        for r in &relays {
            let up = u8::from(r.connection == RelayConnection::Connected);
            let _ = writeln!(out.0, "{name}{{relay=\"{}\"}} {up}", label(r.url.as_str()));
        }
        let name = "keycast_nip46_relay_reconnects_total";
        out.header(name, "counter", "Reconnect attempts per relay.");
        for r in &relays {
            let _ = writeln!(
                out.0,
                "{name}{{relay=\"{}\"}} {}",
                label(r.url.as_str()),
                r.reconnects
            );
        }
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        out.0,
    )
}

/// Open connections and refusals of the HTTP listener and the embedded relay.
fn gates(out: &mut Exposition, gates: &super::Gates) {
    let listeners = [("http", &gates.http), ("relay", &gates.relay)];
    let snapshots: Vec<_> = listeners
        .iter()
        .filter_map(|(l, g)| g.as_ref().map(|g| (*l, g.snapshot())))
        .collect();
    if snapshots.is_empty() {
        return;
    }
    let name = "keycast_connections_open";
    out.header(name, "gauge", "Connections open now, by listener.");
    for (l, s) in &snapshots {
        let _ = writeln!(out.0, "{name}{{listener=\"{l}\"}} {}", s.open);
    }
    let name = "keycast_connections_max";
    out.header(name, "gauge", "Connections a listener may hold at once.");
    for (l, s) in &snapshots {
        let _ = writeln!(out.0, "{name}{{listener=\"{l}\"}} {}", s.max);
    }
    let name = "keycast_connections_refused_total";
    out.header(
        name,
        "counter",
        "Connections refused: the listener was full, or their address held its share.",
    );
    for (l, s) in &snapshots {
        let _ = writeln!(
            out.0,
            "{name}{{listener=\"{l}\",reason=\"full\"}} {}",
            s.refused_full
        );
        let _ = writeln!(
            out.0,
            "{name}{{listener=\"{l}\",reason=\"per_address\"}} {}",
            s.refused_per_address
        );
    }
}

/// Resident bytes and open descriptors, from `/proc` (Linux; `None` elsewhere). A few
/// small reads per scrape, off the signing path.
fn process_stats() -> Option<(u64, u64)> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    let fds = std::fs::read_dir("/proc/self/fd").ok()?.count() as u64;
    Some((kib * 1024, fds))
}

/// Escapes a label value (relay URLs come from configuration and clients).
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
