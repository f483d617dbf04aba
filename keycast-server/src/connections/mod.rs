//! Connection limits shared by the HTTP listener and the embedded relay: a cap on open
//! connections, a cap per client address, and idle timeouts ([`idle`]). Without them
//! anyone who can reach a port can hold sockets until the process runs out of file
//! descriptors, and then nothing (health checks included) is answered.

pub mod idle;
pub mod settings;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

pub use settings::{ConnectionSettings, Limits};

/// Descriptors kept for everything but client connections: the database pool, relay
/// connections, mail, the audit spool, logs.
const RESERVED_DESCRIPTORS: u64 = 256;

/// Raises the soft descriptor limit to the hard one (as servers commonly do; the soft
/// default is often 1024) and returns the limit now in force, if it can be read.
pub fn raise_descriptor_limit() -> Option<u64> {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let limit = getrlimit(Resource::Nofile);
    if let (Some(soft), Some(hard)) = (limit.current, limit.maximum) {
        if soft < hard {
            let raised = rustix::process::Rlimit {
                current: Some(hard),
                maximum: Some(hard),
            };
            if setrlimit(Resource::Nofile, raised).is_ok() {
                return Some(hard);
            }
        }
    }
    // `None` (unlimited) on either side: no cap needed from us beyond the defaults.
    limit.current.or(Some(u64::MAX))
}

/// The default caps (HTTP, relay) for a process allowed `descriptors` open files: half
/// of what is left after 256 spare ones for HTTP, a quarter for the relay, so
/// that a flood on both still leaves descriptors for everything else.
pub fn default_caps(descriptors: u64) -> (usize, usize) {
    let spare = descriptors
        .saturating_sub(RESERVED_DESCRIPTORS)
        .min(4_000_000);
    let share = |d: u64| usize::try_from(spare / d).unwrap_or(usize::MAX).max(16);
    (share(2), share(4))
}

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The listener holds as many connections as it may.
    Full,
    /// This client address holds as many as one address may.
    PerAddress,
}

/// What an address counts as: IPv4 addresses (and IPv4-mapped IPv6) one by one, IPv6 by
/// /64, the smallest block a client is usually given.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Source {
    V4(u32),
    V6(u64),
}

impl From<IpAddr> for Source {
    fn from(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(v4) => Source::V4(v4.into()),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Source::V4(v4.into()),
                None => Source::V6((u128::from(v6) >> 64) as u64),
            },
        }
    }
}

#[derive(Debug, Default)]
struct Open {
    total: usize,
    by_source: HashMap<Source, usize>,
}

/// Counts of one listener, for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GateSnapshot {
    /// Connections open now.
    pub open: usize,
    /// The cap.
    pub max: usize,
    /// Refused because the listener was full.
    pub refused_full: u64,
    /// Refused because their address held its share.
    pub refused_per_address: u64,
}

/// Admits connections under a total cap and a per-address cap.
#[derive(Debug)]
pub struct Gate {
    max: usize,
    max_per_address: usize,
    /// Peers the per-address cap does not apply to (trusted proxies, which carry many
    /// clients' connections).
    exempt: Vec<ipnet::IpNet>,
    open: Mutex<Open>,
    refused_full: AtomicU64,
    refused_per_address: AtomicU64,
}

impl Gate {
    /// A gate admitting at most `max` connections, `max_per_address` from one address.
    pub fn new(max: usize, max_per_address: usize) -> Arc<Self> {
        Self::exempting(max, max_per_address, Vec::new())
    }

    /// [`Gate::new`], with no per-address cap for peers in `exempt`.
    pub fn exempting(max: usize, max_per_address: usize, exempt: Vec<ipnet::IpNet>) -> Arc<Self> {
        Arc::new(Self {
            max: max.max(1),
            max_per_address: max_per_address.max(1),
            exempt,
            open: Mutex::default(),
            refused_full: AtomicU64::new(0),
            refused_per_address: AtomicU64::new(0),
        })
    }

    /// Admits a connection from `peer`, or says why not (counted). The connection counts
    /// until the returned [`Admission`] is dropped.
    pub fn admit(self: &Arc<Self>, peer: IpAddr) -> Result<Admission, Refused> {
        let source = Source::from(peer);
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        if open.total >= self.max {
            self.refused_full.fetch_add(1, Ordering::Relaxed);
            return Err(Refused::Full);
        }
        let capped = !self.exempt.iter().any(|net| net.contains(&peer));
        let mine = open.by_source.entry(source).or_insert(0);
        if capped && *mine >= self.max_per_address {
            self.refused_per_address.fetch_add(1, Ordering::Relaxed);
            return Err(Refused::PerAddress);
        }
        *mine += 1;
        open.total += 1;
        Ok(Admission {
            gate: self.clone(),
            source,
        })
    }

    /// Counts for metrics.
    pub fn snapshot(&self) -> GateSnapshot {
        let open = self
            .open
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .total;
        GateSnapshot {
            open,
            max: self.max,
            refused_full: self.refused_full.load(Ordering::Relaxed),
            refused_per_address: self.refused_per_address.load(Ordering::Relaxed),
        }
    }
}

/// One admitted connection; dropping it frees its place.
#[derive(Debug)]
pub struct Admission {
    gate: Arc<Gate>,
    source: Source,
}

impl Drop for Admission {
    fn drop(&mut self) {
        let mut open = self
            .gate
            .open
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        open.total = open.total.saturating_sub(1);
        if let Some(n) = open.by_source.get_mut(&self.source) {
            *n -= 1;
            if *n == 0 {
                open.by_source.remove(&self.source);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn caps_the_total_and_each_address_and_frees_on_drop() {
        let gate = Gate::new(3, 2);
        let a1 = gate.admit(ip("10.0.0.1")).expect("first");
        let a2 = gate.admit(ip("10.0.0.1")).expect("second");
        assert_eq!(gate.admit(ip("10.0.0.1")).err(), Some(Refused::PerAddress));
        // The IPv4-mapped form is the same address.
        assert_eq!(
            gate.admit(ip("::ffff:10.0.0.1")).err(),
            Some(Refused::PerAddress)
        );
        let b = gate.admit(ip("10.0.0.2")).expect("another address");
        assert_eq!(gate.admit(ip("10.0.0.3")).err(), Some(Refused::Full));
        drop(a1);
        let a3 = gate.admit(ip("10.0.0.1")).expect("room again");
        let s = gate.snapshot();
        assert_eq!(
            (s.open, s.max, s.refused_full, s.refused_per_address),
            (3, 3, 1, 2)
        );
        drop((a2, a3, b));
        assert_eq!(gate.snapshot().open, 0);
        assert!(
            gate.open.lock().expect("lock").by_source.is_empty(),
            "no entry left behind"
        );
    }

    #[test]
    fn trusted_proxies_are_not_capped_per_address() {
        let proxy: ipnet::IpNet = "10.1.0.0/16".parse().expect("net");
        let gate = Gate::exempting(3, 1, vec![proxy]);
        let _a = gate.admit(ip("10.1.2.3")).expect("first");
        let _b = gate.admit(ip("10.1.2.3")).expect("second: a proxy");
        let _c = gate.admit(ip("10.2.0.1")).expect("another");
        assert_eq!(gate.admit(ip("10.2.0.1")).err(), Some(Refused::Full));
        assert_eq!(
            gate.admit(ip("10.1.2.3")).err(),
            Some(Refused::Full),
            "the total cap holds"
        );
    }

    #[test]
    fn ipv6_counts_by_64() {
        let gate = Gate::new(100, 1);
        let _a = gate.admit(ip("2001:db8:1:2::1")).expect("first");
        assert_eq!(
            gate.admit(ip("2001:db8:1:2:ffff::9")).err(),
            Some(Refused::PerAddress),
            "same /64"
        );
        assert!(gate.admit(ip("2001:db8:1:3::1")).is_ok(), "another /64");
    }

    #[test]
    fn default_caps_leave_descriptors_for_the_rest() {
        assert_eq!(default_caps(1024), (384, 192));
        assert_eq!(default_caps(100), (16, 16));
        let (http, relay) = default_caps(1_048_576);
        assert!(http + relay < 1_048_576 - 256);
    }
}
