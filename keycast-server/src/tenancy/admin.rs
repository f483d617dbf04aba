//! `keycast-server tenant …`: the admin-managed side of tenants by host. Changes reach
//! running instances within [`super::REFRESH`].

use anyhow::{bail, Context};
use clap::Subcommand;
use keycast_core::{Error, TenantHost, TenantId, TenantName};

use crate::services::Services;

/// `tenant …`
#[derive(Debug, Subcommand)]
pub enum TenantCommand {
    /// List tenants: name, id, and the hosts each is served at.
    List,
    /// Create a tenant, optionally served at some hosts; prints its id.
    Add {
        /// 1–63 of a-z, 0-9, `.`, `-`.
        name: String,
        /// A host to serve it at (repeatable).
        #[arg(long = "host")]
        hosts: Vec<String>,
    },
    /// Serve a tenant at one more host.
    AddHost {
        /// The tenant's name.
        name: String,
        /// The host, without a port.
        host: String,
    },
    /// Stop serving any tenant at a host; its requests are refused from then on.
    RemoveHost {
        /// The host.
        host: String,
    },
}

/// Runs one `tenant` command.
pub async fn run(s: &Services, cmd: TenantCommand) -> anyhow::Result<()> {
    let store = s.store.as_ref();
    match cmd {
        TenantCommand::List => {
            let hosts = store.list_tenant_hosts().await?;
            for t in store.list_tenants().await? {
                let mine: Vec<&str> = hosts
                    .iter()
                    .filter(|(_, id)| *id == t.id)
                    .map(|(h, _)| h.as_str())
                    .collect();
                println!("{} {} {}", t.name, t.id, mine.join(","));
            }
            if !s.tenancy.is_by_host() {
                eprintln!("note: tenants by host is off (tenants_by_host), so every host serves the default tenant");
            }
        }
        TenantCommand::Add { name, hosts } => {
            let name = TenantName::parse(&name).context("tenant name")?;
            let hosts = parse_hosts(&hosts)?;
            let taken = store.list_tenant_hosts().await?;
            if let Some((h, _)) = taken.iter().find(|(h, _)| hosts.contains(h)) {
                bail!("host {h} is already served (see `tenant list`); nothing was created");
            }
            let tenant = keycast_core::Tenant::new(name.clone());
            match store.create_tenant(&tenant).await {
                Ok(()) => {}
                Err(Error::AlreadyExists { .. }) => bail!("a tenant named {name} exists"),
                Err(e) => return Err(e.into()),
            }
            for host in &hosts {
                add_host(s, host, tenant.id).await?;
            }
            println!("{}", tenant.id);
        }
        TenantCommand::AddHost { name, host } => {
            let id = tenant_named(s, &name).await?;
            let host = parse_hosts(&[host])?.remove(0);
            add_host(s, &host, id).await?;
            println!("{host} serves {name}");
        }
        TenantCommand::RemoveHost { host } => {
            let host = parse_hosts(&[host])?.remove(0);
            if !store.remove_tenant_host(&host).await? {
                bail!("no tenant is served at {host} (see `tenant list`)");
            }
            println!("removed {host}");
        }
    }
    Ok(())
}

fn parse_hosts(hosts: &[String]) -> anyhow::Result<Vec<TenantHost>> {
    hosts
        .iter()
        .map(|h| TenantHost::parse(h).with_context(|| format!("host {h:?}")))
        .collect()
}

/// The id of the tenant named `name` (`default` always exists).
pub(crate) async fn tenant_named(s: &Services, name: &str) -> anyhow::Result<TenantId> {
    let name = TenantName::parse(name).context("tenant name")?;
    match super::setup::existing(s.store.as_ref(), &name).await? {
        Some(id) => Ok(id),
        None => bail!("no tenant {name} (see `tenant list`)"),
    }
}

async fn add_host(s: &Services, host: &TenantHost, tenant: TenantId) -> anyhow::Result<()> {
    match s.store.add_tenant_host(host, tenant).await {
        Ok(()) => Ok(()),
        Err(Error::AlreadyExists { .. }) => {
            bail!(
                "host {host} is already served (see `tenant list`; `tenant remove-host` frees it)"
            )
        }
        Err(e) => Err(e.into()),
    }
}
