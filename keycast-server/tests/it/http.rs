//! The router in-process (`oneshot`): health, errors, trace ids, CORS.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use keycast_server::{app, AppState, Config};
use tower::ServiceExt;

async fn state(cors: &str) -> (AppState, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!("keycast-http-test-{}", uuid::Uuid::new_v4()));
    let d = dir.display().to_string();
    let config = Config::load(None, |k| match k {
        "KEYCAST_DATA_DIR" => Some(d.clone()),
        "KEYCAST_CORS_ORIGINS" => Some(cors.to_owned()),
        _ => None,
    })
    .expect("config");
    let services = keycast_server::services::Services::open(&config, None)
        .await
        .expect("services");
    (AppState::new(services, None), dir)
}

async fn call(
    state: &AppState,
    request: Request<Body>,
) -> (StatusCode, axum::http::HeaderMap, String) {
    let response = app(state.clone()).oneshot(request).await.expect("response");
    let status = response.status();
    let headers = response.headers().clone();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    (status, headers, String::from_utf8_lossy(&body).into_owned())
}

fn get(path: &str) -> Request<Body> {
    Request::get(path).body(Body::empty()).expect("request")
}

#[tokio::test]
async fn health_readiness_metrics_and_json_errors() {
    let (s, dir) = state("").await;
    for path in ["/health", "/healthz/startup", "/healthz/ready"] {
        let (status, _, body) = call(&s, get(path)).await;
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
    }
    let (status, headers, body) = call(&s, get("/metrics")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(headers["content-type"]
        .to_str()
        .expect("ct")
        .starts_with("text/plain"));
    for name in [
        "keycast_cache_hits_total",
        "keycast_cache_misses_total",
        "keycast_cache_size",
        "keycast_http_rpc_requests_total",
        "keycast_http_rpc_auth_errors_total",
        "keycast_kms_calls_total",
    ] {
        assert!(
            body.contains(&format!("\n{name} ")) || body.starts_with(name),
            "{name} missing"
        );
    }
    let (_, _, alias) = call(&s, get("/api/metrics")).await;
    assert!(alias.contains("keycast_cache_size"));

    let (status, _, body) = call(&s, get("/no/such/thing")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let json: serde_json::Value = serde_json::from_str(&body).expect("json error");
    assert_eq!(json["error"]["code"], "not_found");
    assert!(json["error"]["message"].is_string());
    // Every answer so far is counted by class and timed (the 404 above included).
    let (_, _, metrics) = call(&s, get("/metrics")).await;
    let value = |line: &str| -> u64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(line)?.strip_prefix(' '))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{line} missing"))
    };
    assert_eq!(value("keycast_http_requests_total{class=\"4xx\"}"), 1);
    assert_eq!(value("keycast_http_requests_total{class=\"5xx\"}"), 0);
    let ok = value("keycast_http_requests_total{class=\"2xx\"}");
    assert_eq!(
        ok, 5,
        "three health checks and two metrics pages (this one is not done yet)"
    );
    assert_eq!(value("keycast_http_request_duration_seconds_count"), ok + 1);
    assert_eq!(
        value("keycast_http_request_duration_seconds_bucket{le=\"+Inf\"}"),
        ok + 1
    );
    std::fs::remove_dir_all(dir).expect("cleanup");
}

#[tokio::test]
async fn trace_ids_are_kept_when_plain_and_replaced_otherwise() {
    let (s, dir) = state("").await;
    let with = |id: &str| {
        Request::get("/health")
            .header("x-trace-id", id)
            .body(Body::empty())
            .expect("request")
    };
    let (_, headers, _) = call(&s, with("req-42.a:b")).await;
    assert_eq!(headers["x-trace-id"], "req-42.a:b");
    let (_, headers, _) = call(&s, get("/health")).await;
    assert_eq!(headers["x-trace-id"].len(), 36, "a generated UUID");
    for hostile in ["has space", "quote\"", &"x".repeat(200)] {
        let (_, headers, _) = call(&s, with(hostile)).await;
        let echoed = headers["x-trace-id"].to_str().expect("ascii");
        assert_ne!(echoed, hostile);
        assert_eq!(echoed.len(), 36);
    }
    std::fs::remove_dir_all(dir).expect("cleanup");
}

#[tokio::test]
async fn cors_allows_only_listed_origins() {
    let (s, dir) = state("https://app.example").await;
    let from = |origin: &str| {
        Request::get("/health")
            .header("origin", origin)
            .body(Body::empty())
            .expect("request")
    };
    let (_, headers, _) = call(&s, from("https://app.example")).await;
    assert_eq!(
        headers["access-control-allow-origin"],
        "https://app.example"
    );
    let (_, headers, _) = call(&s, from("https://evil.example")).await;
    assert!(headers.get("access-control-allow-origin").is_none());
    std::fs::remove_dir_all(dir).expect("cleanup");
}
