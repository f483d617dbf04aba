//! `serve`: the data-dir lock, the backends, NIP-46, the HTTP listener, and a graceful
//! shutdown on SIGTERM or SIGINT.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use keycast_nip46::{Bunker, BunkerConfig};
use tokio::net::TcpListener;

use crate::cluster::Cluster;
use crate::config::Config;
use crate::connections::Gate;
use crate::embedded_relay::EmbeddedRelay;
use crate::error::{Result, ServerError};
use crate::fence::Fence;
use crate::http::{app, AppState};
use crate::lock::DataDirLock;
use crate::services::Services;

/// How long open HTTP requests may finish after a stop signal.
pub const HTTP_DRAIN: Duration = Duration::from_secs(15);
/// How long background work (NIP-46) may finish after HTTP has drained.
pub const BACKGROUND_DRAIN: Duration = Duration::from_secs(10);

/// Runs the service until `stop` resolves (use [`stop_signal`] in production), then
/// drains and closes. Returns once everything is closed.
pub async fn serve(
    mut config: Config,
    stop: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let _lock = DataDirLock::acquire(&config.data_dir)?;
    // Bound before the backends open: with port 0 (tests, benches) the address the kernel
    // picks is what the URLs built from `listen` must name.
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|e| ServerError::io(format!("listen on {}", config.listen), e))?;
    let metrics_listener = match config.metrics_listen {
        Some(addr) => Some(
            TcpListener::bind(addr)
                .await
                .map_err(|e| ServerError::io(format!("listen on {addr} (metrics)"), e))?,
        ),
        None => None,
    };
    adopt_bound_address(&mut config, &listener)?;
    let descriptors = crate::connections::raise_descriptor_limit().unwrap_or(1024);
    let (http_cap, relay_cap) = crate::connections::default_caps(descriptors);
    let limits = &config.connections;
    // Behind a load balancer every connection comes from it: no per-address cap for the
    // proxies the operator trusts (the total cap still holds).
    let proxies = config
        .accounts
        .trusted_proxy
        .as_ref()
        .map(|t| t.proxies.clone())
        .unwrap_or_default();
    let http_gate = Gate::exempting(
        limits.http.max.unwrap_or(http_cap),
        limits.http.max_per_address,
        proxies,
    );
    let relay_gate = Gate::new(
        limits.relay.max.unwrap_or(relay_cap),
        limits.relay.max_per_address,
    );
    // Cluster mode connects first: without Redis it must not start at all.
    let cluster = match &config.cluster {
        Some(settings) => {
            let defaults = BunkerConfig::new(Vec::new());
            let claim_ttl = defaults.max_age + defaults.max_skew;
            Some(Arc::new(Cluster::connect(settings, claim_ttl).await?))
        }
        None => None,
    };
    // Also before the backends open, for the same reason as the HTTP listener: the relay
    // URLs they hand out name the address bound.
    let embedded = if config.relays.is_empty() {
        let relay = EmbeddedRelay::start_limited(
            config.embedded_relay_listen,
            relay_gate.clone(),
            limits.relay,
        )
        .await?;
        tracing::warn!(
            relay = %relay.url,
            "no relays configured (KEYCAST_RELAYS): running an embedded NIP-46 relay for \
             single-machine use; apps must reach this address"
        );
        if config.embedded_relay_listen.port() == 0 {
            config.embedded_relay_listen = relay.local_addr;
        }
        Some(relay)
    } else {
        None
    };
    let services = Services::open_serving(&config, cluster.as_ref().map(|c| c.router())).await?;
    let relays = match &embedded {
        Some(r) => vec![r.url.clone()],
        None => config.relays.clone(),
    };
    // Recorded for the CLI, which prints bunker URIs on these relays.
    crate::serving_relays::record(&services.database, &relays).await?;
    let mut bunker_config = BunkerConfig::new(relays);
    if let Some(n) = config.nip46_workers {
        bunker_config.workers = n;
    }
    if let Some(n) = config.nip46_queue_capacity {
        bunker_config.queue_capacity = n;
    }
    config.nip46_limits.apply(&mut bunker_config);
    let bunker = Arc::new(Bunker::start(services.custody.clone(), bunker_config).await?);
    // The addresses actually bound, so whoever started the server on port 0 can find it.
    let metrics_listen = match &metrics_listener {
        Some(l) => l
            .local_addr()
            .map_err(|e| ServerError::io("metrics listener address", e))?
            .to_string(),
        None => String::new(),
    };
    let embedded_relay = embedded
        .as_ref()
        .map_or_else(String::new, |r| r.url.to_string());
    tracing::info!(
        listen = %config.listen,
        embedded_relay = %embedded_relay,
        metrics_listen = %metrics_listen,
        data_dir = %config.data_dir.display(),
        database = scheme(&config.database_url),
        kms = ?config.kms,
        tenants_by_host = services.tenancy.is_by_host(),
        "keycast-server is serving"
    );

    let cursor = services.store.latest_change().await?;
    let fence = tokio::spawn(crate::fence::follow(
        Fence {
            store: services.store.clone(),
            custody: services.custody.clone(),
            bunker: Some(bunker.clone()),
            poll: config.change_poll,
            signals: services.changes.clone(),
            announcer: cluster.as_ref().map(|c| c.announcer()),
        },
        cursor,
    ));
    let tenant_hosts = services.tenancy.spawn_refresh(services.store.clone());
    if let Some(cluster) = &cluster {
        cluster.follow_changes(services.changes.clone());
        // Only now, listening on the relays, does this instance take its share.
        cluster.register().await?;
    }
    let state = AppState::new(services.clone(), Some(bunker.clone()))
        .with_cluster(cluster.clone())
        .with_gates(
            http_gate.clone(),
            embedded.as_ref().map(|_| relay_gate.clone()),
        );
    let (stopping_tx, stopping_rx) = tokio::sync::watch::channel(false);
    let leaving = cluster.clone();
    let left_at = Arc::new(std::sync::OnceLock::new());
    let left = left_at.clone();
    let metrics_server = metrics_listener.map(|l| {
        // The operator's port: a small fixed cap of its own, so a flood of the public
        // listener cannot take health checks and scrapes with it.
        let gate = Gate::new(64, 64);
        tokio::spawn(crate::listener::serve_http(
            l,
            crate::http::operations_app(state.clone()),
            gate,
            limits.http,
            std::future::pending(),
        ))
    });
    let router = app(state);
    let server =
        crate::listener::serve_http(listener, router, http_gate, limits.http, async move {
            stop.await;
            if let Some(cluster) = leaving {
                // Before draining: the others take this instance's share now, while it still
                // answers (claims settle the overlap), so no request finds nobody.
                cluster.leave().await;
                let _ = left.set(std::time::Instant::now());
            }
            tracing::info!("stop requested: draining HTTP for up to {HTTP_DRAIN:?}");
            let _ = stopping_tx.send(true);
        });
    let mut stopping = stopping_rx;
    let drained = async {
        // The drain deadline starts at the stop signal, not at start-up.
        let _ = stopping.wait_for(|s| *s).await;
        tokio::time::sleep(HTTP_DRAIN).await;
    };
    tokio::select! {
        () = server => {}
        () = drained => tracing::warn!("HTTP drain deadline passed; closing open connections"),
    }
    if let Some(m) = metrics_server {
        m.abort();
    }

    fence.abort();
    tenant_hosts.abort();
    if let (Some(cluster), Some(left)) = (&cluster, left_at.get()) {
        let handover = cluster.handover().min(BACKGROUND_DRAIN);
        tokio::time::sleep(handover.saturating_sub(left.elapsed())).await;
    }
    if tokio::time::timeout(BACKGROUND_DRAIN, bunker.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("NIP-46 service did not stop within {BACKGROUND_DRAIN:?}");
    }
    if let Some(relay) = &embedded {
        relay.shutdown();
    }
    services.database.close().await;
    tracing::info!("keycast-server stopped");
    Ok(())
}

/// Resolves on SIGTERM or SIGINT (Ctrl-C).
pub async fn stop_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(
            tokio::signal::unix::SignalKind::terminate(),
        ) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM; only Ctrl-C stops the server");
                let _ = interrupt.await;
                return;
            }
        };
        tokio::select! {
            _ = interrupt => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
}

/// With `listen` on port 0, records the address bound instead, and in the default
/// `public_url` (`http://<listen>`) too: links and NIP-98 checks must name a reachable port.
fn adopt_bound_address(config: &mut Config, listener: &TcpListener) -> Result<()> {
    if config.listen.port() != 0 {
        return Ok(());
    }
    let bound = listener
        .local_addr()
        .map_err(|e| ServerError::io("listener address", e))?;
    if config.public_url == format!("http://{}", config.listen) {
        config.public_url = format!("http://{bound}");
    }
    config.listen = bound;
    Ok(())
}

/// The URL scheme only: the rest may hold a password.
fn scheme(url: &str) -> &str {
    url.split(':').next().unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(vars: &[(&str, &str)]) -> Config {
        Config::load(None, |k| {
            let set = vars.iter().find(|(name, _)| *name == k).map(|(_, v)| v);
            match k {
                "KEYCAST_DATA_DIR" => Some("/nonexistent/keycast".to_owned()),
                _ => set.map(|v| (*v).to_owned()),
            }
        })
        .expect("config")
    }

    #[tokio::test]
    async fn port_0_becomes_the_bound_port_in_listen_and_the_default_public_url() {
        let mut c = config(&[
            ("KEYCAST_LISTEN", "127.0.0.1:0"),
            ("KEYCAST_METRICS_LISTEN", "127.0.0.1:0"),
        ]);
        let listener = TcpListener::bind(c.listen).await.expect("bind");
        let bound = listener.local_addr().expect("addr");
        adopt_bound_address(&mut c, &listener).expect("adopt");
        assert_eq!(c.listen, bound);
        assert_eq!(c.public_url, format!("http://{bound}"));
    }

    #[tokio::test]
    async fn a_public_url_that_was_set_is_kept() {
        let mut c = config(&[
            ("KEYCAST_LISTEN", "127.0.0.1:0"),
            ("KEYCAST_PUBLIC_URL", "https://keys.example.org"),
        ]);
        let listener = TcpListener::bind(c.listen).await.expect("bind");
        adopt_bound_address(&mut c, &listener).expect("adopt");
        assert_ne!(c.listen.port(), 0);
        assert_eq!(c.public_url, "https://keys.example.org");
    }
}
