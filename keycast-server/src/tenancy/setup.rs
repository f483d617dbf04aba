//! Making the store match the configured tenants at start: each listed tenant exists and
//! is served at its listed hosts. Hosts added with the CLI are left alone; a listed host
//! that the store maps to another tenant stops the start rather than moving silently.

use std::collections::HashMap;

use keycast_core::{Error, KeyStore, Tenant, TenantId, TenantName};

use super::settings::ConfiguredTenant;
use crate::error::{Result, ServerError};
use crate::services::default_tenant;

/// Creates the missing tenants and host mappings of `configured`. A conflict is found
/// before anything is written, so a bad list changes nothing. Safe to run from many
/// instances at once.
pub async fn apply(store: &dyn KeyStore, configured: &[ConfiguredTenant]) -> Result<()> {
    let mapped: HashMap<_, _> = store.list_tenant_hosts().await?.into_iter().collect();
    for entry in configured {
        let id = existing(store, &entry.name).await?;
        if let Some(host) = entry
            .hosts
            .iter()
            .find(|h| mapped.get(*h).is_some_and(|owner| Some(*owner) != id))
        {
            return Err(ServerError::Config(format!(
                "tenants: host {host} is listed for {} but the database serves another tenant \
                 there; remove it with `keycast-server tenant remove-host {host}` or fix the list",
                entry.name
            )));
        }
    }
    for entry in configured {
        let tenant = ensure_tenant(store, &entry.name).await?;
        for host in entry.hosts.iter().filter(|h| !mapped.contains_key(*h)) {
            match store.add_tenant_host(host, tenant).await {
                Ok(()) => tracing::info!(tenant = %entry.name, %host, "tenant host added"),
                // Another instance applying the same list got there first.
                Err(Error::AlreadyExists { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(())
}

/// The id of the tenant named `name`, if it exists.
pub(crate) async fn existing(store: &dyn KeyStore, name: &TenantName) -> Result<Option<TenantId>> {
    if name.as_str() == "default" {
        return Ok(Some(default_tenant()));
    }
    match store.find_tenant(name).await {
        Ok(t) => Ok(Some(t.id)),
        Err(Error::NotFound { .. }) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// The id of the tenant named `name`, created when missing (`default` is the built-in one).
pub async fn ensure_tenant(store: &dyn KeyStore, name: &TenantName) -> Result<TenantId> {
    if let Some(id) = existing(store, name).await? {
        return Ok(id);
    }
    let tenant = Tenant::new(name.clone());
    match store.create_tenant(&tenant).await {
        Ok(()) => {
            tracing::info!(tenant = %name, "tenant created");
            Ok(tenant.id)
        }
        // Another instance created it first.
        Err(Error::AlreadyExists { .. }) => Ok(store.find_tenant(name).await?.id),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use keycast_core::{MemoryKeyStore, TenantHost};

    use super::*;

    fn entry(name: &str, hosts: &[&str]) -> ConfiguredTenant {
        ConfiguredTenant {
            name: TenantName::parse(name).expect("ok"),
            hosts: hosts
                .iter()
                .map(|h| TenantHost::parse(h).expect("ok"))
                .collect(),
        }
    }

    #[tokio::test]
    async fn configured_tenants_are_created_once_and_a_taken_host_stops_the_start() {
        let store = MemoryKeyStore::default();
        let mut default = Tenant::new(TenantName::parse("default").expect("ok"));
        default.id = default_tenant();
        store.create_tenant(&default).await.expect("ok");
        let list = [
            entry("acme", &["a.example"]),
            entry("default", &["d.example"]),
        ];
        apply(&store, &list).await.expect("ok");
        apply(&store, &list).await.expect("ok");
        let acme = store.find_tenant(&list[0].name).await.expect("ok");
        assert_eq!(store.list_tenants().await.expect("ok").len(), 2);
        assert_eq!(
            store.list_tenant_hosts().await.expect("ok"),
            vec![
                (TenantHost::parse("a.example").expect("ok"), acme.id),
                (
                    TenantHost::parse("d.example").expect("ok"),
                    default_tenant()
                ),
            ]
        );

        let moved = [entry("other", &["a.example"])];
        let err = apply(&store, &moved)
            .await
            .expect_err("refused")
            .to_string();
        assert!(err.contains("host a.example is listed for other"), "{err}");
        assert_eq!(
            store.list_tenant_hosts().await.expect("ok").len(),
            2,
            "nothing moved"
        );
        assert_eq!(
            store.list_tenants().await.expect("ok").len(),
            2,
            "nothing created"
        );
    }
}
