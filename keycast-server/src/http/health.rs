//! Liveness, startup and readiness (design §8).
//!
//! - `/health`, `/healthz/startup`: the process is up and serving HTTP (the router is only
//!   served once start-up, migrations included, has finished).
//! - `/healthz/ready`: the database answers, with NIP-46 on at least one relay is
//!   connected, stored keys open (`keys`: the last cold load did not fail on the master
//!   key, the envelope or the pubkey check), the data dir's file system has at least
//!   `KEYCAST_MIN_FREE_DISK_MIB` free (`disk`: SQLite, the audit spool and mail live
//!   there, and a full disk fails every write), and in a cluster this instance is
//!   registered (not before start-up has joined, not while stopping). 503 with the
//!   failing checks otherwise. Redis trouble is
//!   reported but does not fail readiness: the last ring keeps routing, and Postgres, not
//!   Redis, is what safety rests on.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use serde::Serialize;

use super::AppState;
use crate::cluster::ClusterStatus;
use crate::services::default_tenant;

/// A health answer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct Health {
    /// `ok`, `ready` or `not_ready`.
    status: &'static str,
    /// The checks that failed (`database`, `relays`, `keys`, `disk`, `cluster`); only when
    /// not ready.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    failing: Vec<&'static str>,
    /// Cluster state, in cluster mode (readiness only).
    #[serde(skip_serializing_if = "Option::is_none")]
    cluster: Option<ClusterStatus>,
}

fn ok() -> Json<Health> {
    Json(Health {
        status: "ok",
        failing: Vec::new(),
        cluster: None,
    })
}

/// Liveness: the process serves HTTP.
#[utoipa::path(get, path = "/health", tag = "operations",
    responses((status = 200, description = "Alive", body = Health)))]
pub(crate) async fn live() -> Json<Health> {
    ok()
}

/// Start-up finished (migrations included); the router is only served after it.
#[utoipa::path(get, path = "/healthz/startup", tag = "operations",
    responses((status = 200, description = "Started", body = Health)))]
pub(crate) async fn startup() -> Json<Health> {
    ok()
}

/// Readiness: the database answers, with NIP-46 on a relay is connected, and in a cluster
/// this instance is registered.
#[utoipa::path(get, path = "/healthz/ready", tag = "operations", responses(
    (status = 200, description = "Ready", body = Health),
    (status = 503, description = "Not ready; `failing` names the checks", body = Health)))]
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
    if state.services.custody.stats().keys_unopenable {
        failing.push("keys");
    }
    if let Some(free) = free_disk_bytes(&state.services.config.data_dir) {
        if free < state.services.config.min_free_disk_bytes {
            tracing::warn!(free, "readiness: the data dir's disk is (nearly) full");
            failing.push("disk");
        }
    }
    let cluster = state.cluster.as_ref().map(|c| c.status());
    if cluster.as_ref().is_some_and(|c| !c.registered) {
        failing.push("cluster");
    }
    let status = if failing.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let health = Health {
        status: if failing.is_empty() {
            "ready"
        } else {
            "not_ready"
        },
        failing,
        cluster,
    };
    (status, Json(health))
}

/// Bytes an unprivileged writer may still use on `dir`'s file system (`None` when it
/// cannot be read, e.g. the directory is gone; the database check covers that).
fn free_disk_bytes(dir: &std::path::Path) -> Option<u64> {
    let stat = rustix::fs::statvfs(dir).ok()?;
    Some(stat.f_bavail.saturating_mul(stat.f_frsize))
}
