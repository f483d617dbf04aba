//! The tenant settings: `tenants_by_host` and `[[tenants]]` in the TOML file, or
//! `KEYCAST_TENANTS_BY_HOST` and `KEYCAST_TENANTS` (a JSON array of the same objects); the
//! variables win.
//!
//! ```toml
//! [[tenants]]
//! name = "acme"                                # created at start if missing
//! hosts = ["keys.acme.example", "acme.localhost"]
//!
//! [[tenants]]
//! name = "default"                             # the tenant of single-tenant installs
//! hosts = ["keys.example"]
//! ```
//!
//! Listing any tenant turns tenants by host on; `tenants_by_host = true` turns it on with
//! the hosts managed by `keycast-server tenant …` alone. Listing tenants with
//! `tenants_by_host = false` is an error, as is a host listed twice.

use std::collections::HashSet;

use keycast_core::{TenantHost, TenantName};
use serde::Deserialize;

use crate::config::parse_bool;
use crate::error::{Result, ServerError};

/// One `[[tenants]]` entry as written.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTenant {
    /// The tenant's name.
    pub name: String,
    /// Hosts it is served at.
    #[serde(default)]
    pub hosts: Vec<String>,
}

/// A configured tenant, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfiguredTenant {
    /// Its name.
    pub name: TenantName,
    /// Hosts it is served at (each in at most one entry).
    pub hosts: Vec<TenantHost>,
}

/// The resolved tenant settings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TenantSettings {
    /// Whether requests are told apart by host.
    pub by_host: bool,
    /// Tenants (and hosts) to make sure of at start.
    pub tenants: Vec<ConfiguredTenant>,
}

/// The settings from the environment, else the file.
pub(crate) fn resolve(
    env_flag: Option<String>,
    env_list: Option<String>,
    file_flag: Option<bool>,
    file_list: Option<Vec<RawTenant>>,
) -> Result<TenantSettings> {
    let (flag_setting, flag) = match env_flag {
        Some(v) => (
            "KEYCAST_TENANTS_BY_HOST",
            Some(parse_bool(&v).ok_or_else(|| {
                bad(
                    "KEYCAST_TENANTS_BY_HOST",
                    format!("{v:?}: expected true or false"),
                )
            })?),
        ),
        None => ("tenants_by_host", file_flag),
    };
    let (list_setting, raw) = match env_list {
        Some(json) => (
            "KEYCAST_TENANTS",
            serde_json::from_str(&json).map_err(|e| bad("KEYCAST_TENANTS", e))?,
        ),
        None => ("tenants", file_list.unwrap_or_default()),
    };
    let tenants = validate(raw).map_err(|e| bad(list_setting, e))?;
    let by_host = match flag {
        Some(false) if !tenants.is_empty() => {
            return Err(bad(
                flag_setting,
                format!("is false, but {list_setting} lists tenants: tenants need tenants by host"),
            ))
        }
        Some(on) => on,
        None => !tenants.is_empty(),
    };
    Ok(TenantSettings { by_host, tenants })
}

fn bad(setting: &str, reason: impl std::fmt::Display) -> ServerError {
    ServerError::Config(format!("{setting}: {reason}"))
}

fn validate(raw: Vec<RawTenant>) -> std::result::Result<Vec<ConfiguredTenant>, String> {
    let (mut names, mut hosts) = (HashSet::new(), HashSet::new());
    raw.into_iter()
        .map(|t| {
            let name =
                TenantName::parse(&t.name).map_err(|e| format!("tenant name {:?}: {e}", t.name))?;
            if !names.insert(name.clone()) {
                return Err(format!("tenant {name} is listed twice"));
            }
            let hosts = t
                .hosts
                .iter()
                .map(|h| {
                    let host = TenantHost::parse(h).map_err(|e| format!("host {h:?}: {e}"))?;
                    if !hosts.insert(host.clone()) {
                        return Err(format!("host {host} is listed twice"));
                    }
                    Ok(host)
                })
                .collect::<std::result::Result<_, String>>()?;
            Ok(ConfiguredTenant { name, hosts })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(name: &str, hosts: &[&str]) -> RawTenant {
        RawTenant {
            name: name.into(),
            hosts: hosts.iter().map(|h| (*h).to_owned()).collect(),
        }
    }

    #[test]
    fn listed_tenants_turn_hosts_on_and_the_environment_wins() {
        let off = resolve(None, None, None, None).expect("ok");
        assert_eq!(off, TenantSettings::default());
        let file = resolve(
            None,
            None,
            None,
            Some(vec![raw("acme", &["Keys.Acme.Example"])]),
        )
        .expect("ok");
        assert!(file.by_host);
        assert_eq!(file.tenants[0].hosts[0].as_str(), "keys.acme.example");
        let env = resolve(
            Some("yes".into()),
            Some(r#"[{"name":"b","hosts":["b.example"]}]"#.into()),
            Some(false),
            Some(vec![raw("acme", &["a.example"])]),
        )
        .expect("ok");
        assert_eq!(env.tenants.len(), 1);
        assert_eq!(env.tenants[0].name.as_str(), "b");
        assert!(resolve(None, None, Some(true), None).expect("ok").by_host);
    }

    /// Environment flag and list, file flag and list, and what the error must mention.
    type Case = (
        Option<&'static str>,
        Option<&'static str>,
        Option<bool>,
        Vec<RawTenant>,
        &'static str,
    );

    #[test]
    fn bad_tenant_settings_name_the_setting() {
        let cases: Vec<Case> = vec![
            (Some("maybe"), None, None, vec![], "KEYCAST_TENANTS_BY_HOST"),
            (None, Some("{"), None, vec![], "KEYCAST_TENANTS"),
            (
                None,
                Some(r#"[{"name":"a","hots":[]}]"#),
                None,
                vec![],
                "KEYCAST_TENANTS",
            ),
            (
                None,
                None,
                None,
                vec![raw("Bad Name", &[])],
                "tenants: tenant name",
            ),
            (
                None,
                None,
                None,
                vec![raw("a", &["a.example:80"])],
                "tenants: host",
            ),
            (
                None,
                None,
                None,
                vec![raw("a", &[]), raw("a", &[])],
                "listed twice",
            ),
            (
                None,
                None,
                None,
                vec![raw("a", &["x.example"]), raw("b", &["X.example"])],
                "host x.example is listed twice",
            ),
            (
                None,
                None,
                Some(false),
                vec![raw("a", &[])],
                "tenants_by_host: is false",
            ),
        ];
        for (flag, list, file_flag, file, want) in cases {
            let err = resolve(
                flag.map(Into::into),
                list.map(Into::into),
                file_flag,
                Some(file),
            )
            .expect_err("refused")
            .to_string();
            assert!(err.contains(want), "{err:?} should mention {want:?}");
        }
    }
}
