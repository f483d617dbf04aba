//! Tenants by host: one deployment serving several domains.
//!
//! Off by default: a single-organisation install serves its one (default) tenant at every
//! host. With `tenants_by_host` (or any `[[tenants]]` listed, see [`settings`]), each
//! request's tenant is the one its `Host` header (HTTP/2: the URI authority; the port is
//! ignored) is mapped to, and a host that is mapped to none is refused with 421 before any
//! handler runs: tenants are never created on the fly. `X-Forwarded-Host` is not read, so a
//! reverse proxy must pass `Host` through.
//!
//! The mappings live in the store (`tenant_hosts`), written by the configured list at start
//! ([`setup::apply`]) and by `keycast-server tenant …`. Each instance holds all of them in
//! memory (a request looks its host up without I/O, and unknown hosts cost nothing) and
//! re-reads them every [`REFRESH`], so a host added or removed anywhere takes effect
//! everywhere within that time. When the store cannot be read the last map is kept.

pub mod admin;
pub mod settings;
pub mod setup;

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use keycast_core::{KeyStore, TenantHost, TenantId};

use crate::services::default_tenant;

/// How often each instance re-reads the host mappings.
pub const REFRESH: Duration = Duration::from_secs(5);

/// Why a request's host has no tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostRefusal {
    /// The request names no host.
    Missing,
    /// The host is not a valid host name.
    Malformed,
    /// No tenant is served at the host.
    Unknown,
}

/// Which tenant a request is for.
#[derive(Debug)]
pub struct Tenancy {
    by_host: bool,
    hosts: RwLock<HashMap<TenantHost, TenantId>>,
}

impl Tenancy {
    /// Every request is for the default tenant.
    pub fn single() -> Self {
        Self {
            by_host: false,
            hosts: RwLock::default(),
        }
    }

    /// Requests are for the tenant their host is mapped to in `store`.
    pub async fn by_host(store: &dyn KeyStore) -> keycast_core::Result<Self> {
        let tenancy = Self {
            by_host: true,
            hosts: RwLock::default(),
        };
        tenancy.refresh(store).await?;
        Ok(tenancy)
    }

    /// Whether tenants are told apart by host.
    pub fn is_by_host(&self) -> bool {
        self.by_host
    }

    /// The tenant of a request whose host (with or without a port) is `authority`.
    pub fn resolve(&self, authority: Option<&str>) -> Result<TenantId, HostRefusal> {
        if !self.by_host {
            return Ok(default_tenant());
        }
        let authority = authority.ok_or(HostRefusal::Missing)?;
        let host = TenantHost::from_authority(authority).map_err(|_| HostRefusal::Malformed)?;
        self.hosts().get(&host).copied().ok_or(HostRefusal::Unknown)
    }

    /// Number of hosts mapped now.
    pub fn host_count(&self) -> usize {
        self.hosts().len()
    }

    /// Re-reads the mappings from `store`; on error the previous ones stay.
    pub async fn refresh(&self, store: &dyn KeyStore) -> keycast_core::Result<()> {
        let fresh: HashMap<_, _> = store.list_tenant_hosts().await?.into_iter().collect();
        *self.hosts.write().unwrap_or_else(|p| p.into_inner()) = fresh;
        Ok(())
    }

    /// Re-reads the mappings every [`REFRESH`] until the returned task is aborted.
    pub fn spawn_refresh(
        self: &Arc<Self>,
        store: Arc<dyn KeyStore>,
    ) -> tokio::task::JoinHandle<()> {
        let tenancy = self.clone();
        tokio::spawn(async move {
            if !tenancy.by_host {
                return;
            }
            let mut tick = tokio::time::interval(REFRESH);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tick.tick().await;
                if let Err(e) = tenancy.refresh(store.as_ref()).await {
                    tracing::warn!(error = %e, "cannot re-read tenant hosts; keeping the last ones");
                }
            }
        })
    }

    fn hosts(&self) -> std::sync::RwLockReadGuard<'_, HashMap<TenantHost, TenantId>> {
        self.hosts.read().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use keycast_core::{MemoryKeyStore, Tenant, TenantName};

    use super::*;

    #[tokio::test]
    async fn hosts_resolve_to_their_tenant_and_others_are_refused() {
        let store = MemoryKeyStore::default();
        let acme = Tenant::new(TenantName::parse("acme").expect("ok"));
        store.create_tenant(&acme).await.expect("ok");
        let host = TenantHost::parse("keys.acme.example").expect("ok");
        store.add_tenant_host(&host, acme.id).await.expect("ok");
        let tenancy = Tenancy::by_host(&store).await.expect("ok");
        assert_eq!(tenancy.resolve(Some("Keys.Acme.Example:8443")), Ok(acme.id));
        assert_eq!(
            tenancy.resolve(Some("other.example")),
            Err(HostRefusal::Unknown)
        );
        assert_eq!(
            tenancy.resolve(Some("bad host")),
            Err(HostRefusal::Malformed)
        );
        assert_eq!(tenancy.resolve(None), Err(HostRefusal::Missing));

        store.remove_tenant_host(&host).await.expect("ok");
        assert_eq!(
            tenancy.resolve(Some("keys.acme.example")),
            Ok(acme.id),
            "until refreshed"
        );
        tenancy.refresh(&store).await.expect("ok");
        assert_eq!(
            tenancy.resolve(Some("keys.acme.example")),
            Err(HostRefusal::Unknown)
        );
    }

    #[test]
    fn a_single_tenant_install_serves_the_default_tenant_at_any_host() {
        let tenancy = Tenancy::single();
        assert_eq!(
            tenancy.resolve(Some("anything.example")),
            Ok(default_tenant())
        );
        assert_eq!(tenancy.resolve(None), Ok(default_tenant()));
    }
}
