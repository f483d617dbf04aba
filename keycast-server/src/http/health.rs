//! Liveness, startup and readiness (design §8).
//!
//! - `/health`, `/healthz/startup`: the process is up and serving HTTP (the router is only
//!   served once start-up, migrations included, has finished).
//! - `/healthz/ready`: the database answers, and with NIP-46 on, at least one relay is
//!   connected. 503 with the failing checks otherwise.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use serde_json::json;

use super::AppState;
use crate::services::default_tenant;

pub(crate) async fn live() -> impl IntoResponse {
    Json(json!({"status": "ok"}))
}

pub(crate) async fn ready(State(state): State<AppState>) -> impl IntoResponse {
    let mut failing = Vec::new();
    if let Err(e) = state.services.store.get_tenant(default_tenant()).await {
        tracing::warn!(error = %e, "readiness: database check failed");
        failing.push("database");
    }
    if let Some(bunker) = &state.bunker {
        if bunker.connected_relays().await == 0 {
            failing.push("relays");
        }
    }
    if failing.is_empty() {
        (StatusCode::OK, Json(json!({"status": "ready"})))
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "not_ready", "failing": failing})),
        )
    }
}
