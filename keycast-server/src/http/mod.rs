//! The HTTP API: `app(state) -> Router`.
//!
//! Every request gets a `trace_id` (from `x-trace-id`, else generated) on its log span and
//! in the response header, a body-size limit, and CORS only for configured origins.

mod accounts;
mod approvals;
mod authorizations;
mod client_addr;
mod connect;
mod discovery;
mod email_flows;
mod error;
mod export;
mod health;
mod keys;
mod login_guard;
mod mail_limits;
mod metrics;
mod nip98;
mod oauth;
mod openapi;
mod policies;
mod rate_limit;
mod replace_key;
mod rpc;
mod teams;
mod tenant;
mod traffic;
mod ui;
mod verified;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderName, HeaderValue, Method, Request};
use axum::routing::{get, post};
use axum::Router;
use keycast_nip46::Bunker;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use accounts::CurrentUser;
pub use client_addr::{ClientAddr, TrustedProxy};
pub use error::ApiError;
pub use login_guard::LoginGuard;
pub use mail_limits::MailLimits;
#[doc(hidden)]
#[cfg(feature = "fuzzing")]
pub use rpc::fuzz_rpc_body;
pub use rpc::{token_cache, TokenCache};
pub use tenant::HostTenant;
pub use traffic::HttpTraffic;

use crate::services::Services;

/// The header a request's trace id travels in.
pub const TRACE_ID: &str = "x-trace-id";

/// What every handler can reach: one shared [`AppStateInner`] behind an `Arc`, so the clone
/// axum makes for each extractor and layer of every request is one counter increment
/// (cloning the fields one by one showed as ~4 % of a `sign_event`'s server CPU).
#[derive(Debug, Clone)]
pub struct AppState(Arc<AppStateInner>);

impl std::ops::Deref for AppState {
    type Target = AppStateInner;

    fn deref(&self) -> &AppStateInner {
        &self.0
    }
}

/// The fields of [`AppState`].
#[derive(Debug, Clone)]
pub struct AppStateInner {
    /// Store, key managers, engine.
    pub services: Arc<Services>,
    /// The NIP-46 service, when it runs.
    pub bunker: Option<Arc<Bunker>>,
    /// HTTP-layer counters.
    pub counters: Arc<HttpCounters>,
    /// Every answer by status class, and its duration.
    pub traffic: Arc<HttpTraffic>,
    /// HTTP RPC tokens by digest.
    pub tokens: TokenCache,
    /// Login and registration limits per client address and e-mail.
    pub login_guard: Arc<LoginGuard>,
    /// Mail budgets per account, recipient and client address.
    pub mail_limits: Arc<MailLimits>,
    /// The password hashing threads and their bounded queue.
    pub passwords: crate::passwords::PasswordHashing,
    /// NIP-98 events already accepted (replay protection).
    pub nip98_seen: nip98::SeenEvents,
    /// NIP-49 imports and exports running now: each scrypt call holds up to 256 MiB, so
    /// only a few run at once and the rest are told to retry.
    pub scrypt_slots: Arc<tokio::sync::Semaphore>,
    /// This instance's part in a cluster, when it runs in one.
    pub cluster: Option<Arc<crate::cluster::Cluster>>,
    /// Connection caps of the HTTP listener and the embedded relay, for metrics.
    pub gates: Gates,
}

/// The connection gates `serve` runs (none in-process).
#[derive(Debug, Clone, Default)]
pub struct Gates {
    /// The HTTP listener's.
    pub http: Option<Arc<crate::connections::Gate>>,
    /// The embedded relay's, when it runs.
    pub relay: Option<Arc<crate::connections::Gate>>,
}

/// NIP-49 (scrypt) calls one instance runs at once.
pub const SCRYPT_SLOTS: usize = 2;

impl AppState {
    /// State over `services`, with `bunker` if NIP-46 runs.
    pub fn new(services: Services, bunker: Option<Arc<Bunker>>) -> Self {
        let limits = &services.config.accounts;
        Self(Arc::new(AppStateInner {
            login_guard: Arc::new(LoginGuard::new(limits, None)),
            mail_limits: Arc::new(MailLimits::new(limits, None)),
            passwords: crate::passwords::PasswordHashing::new(
                limits.password_hash_slots,
                limits.password_hash_queue,
            ),
            services: Arc::new(services),
            bunker,
            counters: Arc::default(),
            traffic: Arc::default(),
            tokens: token_cache(),
            nip98_seen: nip98::seen_events(),
            scrypt_slots: Arc::new(tokio::sync::Semaphore::new(SCRYPT_SLOTS)),
            cluster: None,
            gates: Gates::default(),
        }))
    }

    /// The fields, to change while building (cloned if already shared).
    fn fields(&mut self) -> &mut AppStateInner {
        Arc::make_mut(&mut self.0)
    }

    /// The same state, reporting the connection gates in metrics.
    pub fn with_gates(
        mut self,
        http: Arc<crate::connections::Gate>,
        relay: Option<Arc<crate::connections::Gate>>,
    ) -> Self {
        self.fields().gates = Gates {
            http: Some(http),
            relay,
        };
        self
    }

    /// The same state, reporting `cluster` in readiness and sharing login and mail limits
    /// through it.
    pub fn with_cluster(mut self, cluster: Option<Arc<crate::cluster::Cluster>>) -> Self {
        let fields = self.fields();
        if let Some(c) = &cluster {
            let limits = &fields.services.config.accounts;
            fields.login_guard = Arc::new(LoginGuard::new(limits, Some(c.login_limits())));
            fields.mail_limits = Arc::new(MailLimits::new(limits, Some(c.login_limits())));
        }
        fields.cluster = cluster;
        self
    }
}

/// Counters of the HTTP layer.
#[derive(Debug, Default)]
pub struct HttpCounters {
    rpc_requests: AtomicU64,
    rpc_auth_errors: AtomicU64,
    registrations: AtomicU64,
    logins: AtomicU64,
    login_failures: AtomicU64,
}

/// A point-in-time copy of [`HttpCounters`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpSnapshot {
    /// HTTP RPC requests received.
    pub rpc_requests: u64,
    /// HTTP RPC requests refused for their credentials.
    pub rpc_auth_errors: u64,
    /// Accounts registered.
    pub registrations: u64,
    /// Successful logins.
    pub logins: u64,
    /// Failed or refused logins.
    pub login_failures: u64,
}

impl HttpCounters {
    /// Reads the counters.
    pub fn snapshot(&self) -> HttpSnapshot {
        HttpSnapshot {
            rpc_requests: self.rpc_requests.load(Ordering::Relaxed),
            rpc_auth_errors: self.rpc_auth_errors.load(Ordering::Relaxed),
            registrations: self.registrations.load(Ordering::Relaxed),
            logins: self.logins.load(Ordering::Relaxed),
            login_failures: self.login_failures.load(Ordering::Relaxed),
        }
    }
}

/// The whole HTTP API over `state`.
///
/// Serve it with `into_make_service_with_connect_info::<SocketAddr>()`: the login and
/// registration limits key on the peer address, and without it those routes answer 500.
pub fn app(state: AppState) -> Router {
    let config = &state.services.config;
    let trace_id = HeaderName::from_static(TRACE_ID);
    let origins: Vec<HeaderValue> = config
        .cors_origins
        .iter()
        .filter_map(|o| HeaderValue::from_str(o.trim_end_matches('/')).ok())
        .collect();
    let cors = CorsLayer::new()
        .allow_origin(AllowOrigin::list(origins))
        .allow_methods([Method::GET, Method::POST, Method::PATCH, Method::DELETE])
        .allow_headers([
            axum::http::header::AUTHORIZATION,
            axum::http::header::CONTENT_TYPE,
            trace_id.clone(),
        ]);
    let body_limit = config.max_body_bytes;
    let (router, api) = OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .routes(routes!(health::live))
        .routes(routes!(health::startup))
        .routes(routes!(health::ready))
        .routes(routes!(metrics::render))
        .routes(routes!(metrics::render_alias))
        .routes(routes!(discovery::nostr_json))
        .routes(routes!(rpc::rpc))
        .routes(routes!(accounts::register))
        .routes(routes!(accounts::login))
        .routes(routes!(accounts::logout))
        .routes(routes!(accounts::me))
        .routes(routes!(email_flows::request_verification))
        .routes(routes!(email_flows::verify))
        .routes(routes!(email_flows::forgot))
        .routes(routes!(email_flows::reset))
        .routes(routes!(email_flows::request_confirmation))
        .routes(routes!(policies::list, policies::create))
        .routes(routes!(policies::get, policies::replace, policies::delete))
        .routes(routes!(keys::list, keys::create))
        .routes(routes!(keys::rename, keys::delete))
        .routes(routes!(export::danger_export))
        .routes(routes!(replace_key::danger_replace))
        .routes(routes!(authorizations::list, authorizations::create))
        .routes(routes!(authorizations::revoke))
        .routes(routes!(approvals::list))
        .routes(routes!(approvals::decide_one))
        .routes(routes!(teams::list, teams::create))
        .routes(routes!(teams::get))
        .routes(routes!(teams::put_member))
        .routes(routes!(teams::remove_member))
        .routes(routes!(teams::list_keys, teams::create_key))
        .routes(routes!(teams::delete_key))
        .routes(routes!(teams::list_policies, teams::create_policy))
        .routes(routes!(teams::replace_policy, teams::delete_policy))
        .routes(routes!(
            teams::list_authorizations,
            teams::create_authorization
        ))
        .routes(routes!(teams::revoke_authorization))
        .split_for_parts();
    let document = openapi::json(api);
    let written = state.services.changes.local.clone();
    let traffic = state.traffic.clone();
    let tenancy = state.services.tenancy.clone();
    router
        .route("/api/openapi.json", get(move || openapi::serve(document.clone())))
        .route(
            "/oauth/authorize",
            get(oauth::authorize_page).post(oauth::authorize_decision),
        )
        .route("/oauth/login", post(oauth::login))
        .route("/oauth/token", post(oauth::token))
        .route(
            "/connect",
            get(connect::connect_page).post(connect::connect_decision),
        )
        .route("/connect/login", post(connect::connect_login))
        .merge(ui::routes())
        .fallback(|| async { ApiError::new(axum::http::StatusCode::NOT_FOUND, "not_found", "no such endpoint") })
        .with_state(state)
        .layer(axum::middleware::from_fn_with_state(tenancy, tenant::resolve))
        .layer(axum::middleware::from_fn_with_state(written, read_changes_after_writes))
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(cors)
        .layer(PropagateRequestIdLayer::new(trace_id.clone()))
        .layer(TraceLayer::new_for_http().on_response(DefaultOnResponse::new().level(tracing::Level::INFO)).make_span_with(|request: &Request<_>| {
            let trace_id = request
                .headers()
                .get(TRACE_ID)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            // Path only: query strings may carry codes or tokens.
            tracing::info_span!("http", method = %request.method(), path = %request.uri().path(), trace_id)
        }))
        .layer(SetRequestIdLayer::new(trace_id, MakeRequestUuid))
        .layer(axum::middleware::map_request(drop_unusable_trace_id))
        .layer(axum::middleware::from_fn_with_state(traffic, traffic::measure))
}

/// The operator's listener (`KEYCAST_METRICS_LISTEN`): health, readiness and metrics only.
pub fn operations_app(state: AppState) -> Router {
    Router::new()
        .route("/health", get(health::live))
        .route("/healthz/startup", get(health::startup))
        .route("/healthz/ready", get(health::ready))
        .route("/metrics", get(metrics::render))
        .route("/api/metrics", get(metrics::render_alias))
        .fallback(|| async {
            ApiError::new(
                axum::http::StatusCode::NOT_FOUND,
                "not_found",
                "no such endpoint",
            )
        })
        .with_state(state)
        .layer(axum::Extension(metrics::OperationsPort))
}

/// Marks the response of a write whose effects this instance has already applied in full
/// (a revocation: the engine's cache forgot it, the NIP-46 service was told), so the change
/// feed need not be read at once for it. Only outside a cluster: there the read is what
/// announces the change to the other instances. See [`AppState::applied_here`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct AppliedHere;

impl AppState {
    /// [`AppliedHere`] for a response, unless this instance is part of a cluster. The
    /// regular poll (every 250 ms) still reads the change: an extra row in a read made
    /// anyway, instead of a read of its own.
    pub(crate) fn applied_here(&self) -> Option<axum::Extension<AppliedHere>> {
        self.cluster
            .is_none()
            .then_some(axum::Extension(AppliedHere))
    }
}

/// After a successful write, wakes the change-feed reader, so this instance's caches and
/// (in a cluster, through it) the others' reflect the write at once rather than at the next
/// poll. RPC calls change no authorization or policy and are left out: they are the hot path;
/// so are writes marked [`AppliedHere`].
async fn read_changes_after_writes(
    axum::extract::State(written): axum::extract::State<Arc<tokio::sync::Notify>>,
    request: Request<axum::body::Body>,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let write = !matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    ) && request.uri().path() != "/api/nostr";
    let response = next.run(request).await;
    // Form posts that did something answer with a redirect (web UI, OAuth approval).
    let done = response.status().is_success() || response.status().is_redirection();
    if write && done && response.extensions().get::<AppliedHere>().is_none() {
        written.notify_one();
    }
    response
}

/// A client-sent trace id goes into logs and headers, so only a short, plain one is kept;
/// anything else is replaced by a generated one.
async fn drop_unusable_trace_id<B>(mut request: Request<B>) -> Request<B> {
    let usable = request.headers().get(TRACE_ID).is_none_or(|v| {
        let v = v.as_bytes();
        !v.is_empty()
            && v.len() <= 128
            && v.iter()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
    });
    if !usable {
        request.headers_mut().remove(TRACE_ID);
    }
    request
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use axum::body::Body;
    use axum::http::StatusCode;
    use axum::routing::{get, post};
    use axum::{Extension, Router};
    use tokio::sync::Notify;
    use tower::ServiceExt;

    use super::*;

    /// Whether `written` holds a wake-up (taking it).
    async fn woken(written: &Notify) -> bool {
        tokio::time::timeout(Duration::ZERO, written.notified())
            .await
            .is_ok()
    }

    #[tokio::test]
    async fn successful_writes_wake_the_feed_reader_unless_applied_here() {
        let written = Arc::new(Notify::new());
        let app = Router::new()
            .route("/write", post(|| async { "ok" }))
            .route(
                "/applied",
                post(|| async { (Some(Extension(AppliedHere)), "ok") }),
            )
            .route("/refused", post(|| async { StatusCode::BAD_REQUEST }))
            .route("/read", get(|| async { "ok" }))
            .route("/api/nostr", post(|| async { "ok" }))
            .layer(axum::middleware::from_fn_with_state(
                written.clone(),
                read_changes_after_writes,
            ));
        for (method, path, wakes) in [
            (Method::POST, "/write", true),
            (Method::POST, "/applied", false),
            (Method::POST, "/refused", false),
            (Method::GET, "/read", false),
            (Method::POST, "/api/nostr", false),
        ] {
            let request = Request::builder()
                .method(method.clone())
                .uri(path)
                .body(Body::empty())
                .expect("request");
            app.clone().oneshot(request).await.expect("response");
            assert_eq!(woken(&written).await, wakes, "{method} {path}");
        }
    }
}
