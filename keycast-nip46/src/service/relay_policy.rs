//! Which relays the bunker may connect to: the outbound relay address policy.
//!
//! A `nostrconnect://` URI names relays chosen by whoever made it, and the bunker connects
//! to them. Without a policy that is a blind SSRF: the server opens WebSockets to its own
//! loopback, the private network or a cloud metadata service. So:
//! - the configured relays (the embedded relay among them) are always allowed: the
//!   operator chose them;
//! - with an allow-list ([`super::BunkerConfig::relay_allow_list`]) every other relay's
//!   host must be on it, and then connects wherever it resolves (the operator vouches);
//! - without one, every other relay may connect only to public addresses: loopback,
//!   private (RFC 1918, IPv6 ULA), link-local, CGNAT, unspecified, multicast, broadcast,
//!   reserved and documentation ranges and cloud metadata addresses are refused, also when
//!   written as IPv4-mapped, NAT64 or 6to4 IPv6 forms.
//!
//! The check runs where connections are made: the transport filters the addresses a name
//! resolves to, just before connecting, so a name that resolves to a public address at
//! pairing and to an internal one later (DNS rebinding) still cannot reach it. Pairing
//! checks early too (see [`RelayPolicy::check`]) so the user gets a clear refusal.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use keycast_core::nostr::types::url::Host;
use keycast_core::nostr::{RelayUrl, Url};

use crate::{Error, Result};

/// How long pairing waits for a relay's host to resolve.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(5);

/// Why an address is not public, or `None` when it is.
pub(crate) fn internal_address(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => internal_v4(v4),
        IpAddr::V6(v6) => internal_v6(v6),
    }
}

fn internal_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, d] = ip.octets();
    Some(match (a, b, c, d) {
        // 169.254.169.254 (AWS, GCP, Azure, OpenStack …) is link-local too; named first so
        // the refusal says what it is.
        (169, 254, 169, 254) | (100, 100, 100, 200) | (168, 63, 129, 16) => "cloud metadata",
        (0, ..) => "unspecified",
        (127, ..) => "loopback",
        (10, ..) | (172, 16..=31, ..) | (192, 168, ..) => "private",
        (100, 64..=127, ..) => "carrier-grade NAT",
        (169, 254, ..) => "link-local",
        (255, 255, 255, 255) => "broadcast",
        (224..=239, ..) => "multicast",
        (240..=255, ..) => "reserved",
        (192, 0, 0, _) | (198, 18..=19, ..) => "reserved",
        (192, 0, 2, _) | (198, 51, 100, _) | (203, 0, 113, _) => "documentation",
        _ => return None,
    })
}

fn internal_v6(ip: Ipv6Addr) -> Option<&'static str> {
    if let Some(v4) = embedded_v4(ip) {
        return internal_v4(v4);
    }
    let s = ip.segments();
    Some(match s {
        [0, 0, 0, 0, 0, 0, 0, 0] => "unspecified",
        [0, 0, 0, 0, 0, 0, 0, 1] => "loopback",
        [0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254] => "cloud metadata",
        [0x64, 0xff9b, 1, ..] => "local-use NAT64",
        [0x100, 0, 0, 0, ..] => "discard-only",
        [0x2001, 0xdb8, ..] => "documentation",
        [0x2001, 0, ..] => "Teredo tunnel",
        [x, ..] if x & 0xfe00 == 0xfc00 => "private",
        [x, ..] if x & 0xffc0 == 0xfe80 => "link-local",
        [x, ..] if x & 0xffc0 == 0xfec0 => "private",
        [x, ..] if x & 0xff00 == 0xff00 => "multicast",
        // The rest of ::/8, reserved by the IETF.
        [x, ..] if x & 0xff00 == 0 => "reserved",
        _ => return None,
    })
}

/// The IPv4 address an IPv6 address stands for, where the forms carry one: IPv4-mapped
/// (`::ffff:a.b.c.d`), IPv4-translated (`::ffff:0:a.b.c.d`), IPv4-compatible (`::a.b.c.d`, deprecated), NAT64 (`64:ff9b::/96`)
/// and 6to4 (`2002:aabb:ccdd::/48`).
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = ip.segments();
    let tail = || Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    match s {
        [0, 0, 0, 0, 0, 0xffff, _, _] | [0, 0, 0, 0, 0xffff, 0, _, _] => Some(tail()),
        // `::` and `::1` are themselves, not 0.0.0.0 and 0.0.0.1.
        [0, 0, 0, 0, 0, 0, hi, _] if hi != 0 => Some(tail()),
        [0x64, 0xff9b, 0, 0, 0, 0, _, _] => Some(tail()),
        [0x2002, hi, lo, ..] => Some(Ipv4Addr::new(
            (hi >> 8) as u8,
            hi as u8,
            (lo >> 8) as u8,
            lo as u8,
        )),
        _ => None,
    }
}

/// What the policy says about one relay URL, before any name is resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Configured or on the allow-list: any address it resolves to.
    Trusted,
    /// Only the public addresses it resolves to.
    PublicOnly,
    /// Not at all, and why.
    Refused(&'static str),
}

/// The outbound relay policy; shared by the transport and pairing.
#[derive(Debug)]
pub(crate) struct RelayPolicy {
    /// `(host, port)` of the configured relays.
    configured: HashSet<(String, u16)>,
    /// Hosts of the allow-list (lowercase names, or IP addresses in canonical form).
    allow: Option<HashSet<String>>,
    /// Connection attempts refused because no address was allowed.
    refused: AtomicU64,
}

/// The host of `url` in canonical form (lowercase name, or the IP address without
/// brackets), and its port.
fn host_port(url: &Url) -> Option<(String, u16)> {
    let host = match url.host()? {
        Host::Domain(d) => d.trim_end_matches('.').to_ascii_lowercase(),
        Host::Ipv4(ip) => ip.to_string(),
        Host::Ipv6(ip) => ip.to_string(),
    };
    Some((host, url.port_or_known_default()?))
}

fn relay_url(relay: &RelayUrl) -> Option<Url> {
    Url::parse(relay.as_str()).ok()
}

/// An allow-list entry in the same form as [`host_port`]'s host.
fn canonical_host(entry: &str) -> String {
    let entry = entry.trim();
    let bare = entry.trim_start_matches('[').trim_end_matches(']');
    match bare.parse::<IpAddr>() {
        Ok(ip) => ip.to_string(),
        Err(_) => entry.trim_end_matches('.').to_ascii_lowercase(),
    }
}

impl RelayPolicy {
    /// The policy for a bunker on `configured` relays, with an optional allow-list of hosts
    /// that replaces the address rules for every other relay.
    pub(crate) fn new(configured: &[RelayUrl], allow: Option<&[String]>) -> Self {
        Self {
            configured: configured
                .iter()
                .filter_map(relay_url)
                .filter_map(|u| host_port(&u))
                .collect(),
            allow: allow.map(|hosts| hosts.iter().map(|h| canonical_host(h)).collect()),
            refused: AtomicU64::new(0),
        }
    }

    /// Whether `relay` is one of the configured relays (same host and port).
    pub(crate) fn is_configured(&self, relay: &RelayUrl) -> bool {
        relay_url(relay).is_some_and(|u| self.is_configured_url(&u))
    }

    /// [`Self::is_configured`] for a URL (an extra lane's included: the fragment that
    /// marks a lane is not part of host and port).
    pub(crate) fn is_configured_url(&self, url: &Url) -> bool {
        host_port(url).is_some_and(|hp| self.configured.contains(&hp))
    }

    /// What the policy says about `url` without resolving it.
    pub(crate) fn verdict(&self, url: &Url) -> Verdict {
        if !matches!(url.scheme(), "ws" | "wss") {
            return Verdict::Refused("not a ws:// or wss:// URL");
        }
        let Some((host, port)) = host_port(url) else {
            return Verdict::Refused("no host");
        };
        if self.configured.contains(&(host.clone(), port)) {
            return Verdict::Trusted;
        }
        if let Some(allow) = &self.allow {
            return if allow.contains(&host) {
                Verdict::Trusted
            } else {
                Verdict::Refused("not on the relay allow-list")
            };
        }
        if let Ok(ip) = host.parse::<IpAddr>() {
            if let Some(why) = internal_address(ip) {
                return Verdict::Refused(why);
            }
        }
        Verdict::PublicOnly
    }

    /// [`Self::verdict`] for a relay URL.
    pub(crate) fn relay_verdict(&self, relay: &RelayUrl) -> Verdict {
        match relay_url(relay) {
            Some(u) => self.verdict(&u),
            None => Verdict::Refused("not a URL"),
        }
    }

    /// Whether the transport may connect to `ip` for a relay with this verdict.
    pub(crate) fn permits(verdict: Verdict, ip: IpAddr) -> bool {
        match verdict {
            Verdict::Trusted => true,
            Verdict::PublicOnly => internal_address(ip).is_none(),
            Verdict::Refused(_) => false,
        }
    }

    /// Counts a connection attempt refused by the policy.
    pub(crate) fn count_refusal(&self) {
        self.refused.fetch_add(1, Ordering::Relaxed);
    }

    /// Connection attempts refused so far.
    pub(crate) fn refusals(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// The early check at pairing: the verdict, and for a name that only public addresses
    /// allow, every address it resolves to now (a name resolving to an internal address is
    /// refused, though the transport would only skip that address).
    pub(crate) async fn check(&self, relay: &RelayUrl) -> Result<()> {
        let refused = |reason: String| Error::RelayRefused {
            relay: relay.to_string(),
            reason,
        };
        let url = relay_url(relay).ok_or_else(|| refused("not a URL".into()))?;
        match self.verdict(&url) {
            Verdict::Trusted => Ok(()),
            Verdict::Refused(why) => Err(refused(why.into())),
            Verdict::PublicOnly => {
                let (host, port) = host_port(&url).ok_or_else(|| refused("no host".into()))?;
                let addrs = tokio::time::timeout(
                    RESOLVE_TIMEOUT,
                    tokio::net::lookup_host((host.as_str(), port)),
                )
                .await
                .map_err(|_| refused("its name did not resolve in time".into()))?
                .map_err(|_| refused("its name does not resolve".into()))?;
                let mut any = false;
                for addr in addrs {
                    any = true;
                    if let Some(why) = internal_address(addr.ip()) {
                        return Err(refused(format!("it resolves to a {why} address")));
                    }
                }
                if any {
                    Ok(())
                } else {
                    Err(refused("its name has no address".into()))
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect(s)
    }

    #[test]
    fn internal_addresses_are_classified() {
        let cases: &[(&str, &str)] = &[
            ("0.0.0.0", "unspecified"),
            ("0.1.2.3", "unspecified"),
            ("127.0.0.1", "loopback"),
            ("127.255.255.254", "loopback"),
            ("10.0.0.1", "private"),
            ("10.255.255.255", "private"),
            ("172.16.0.1", "private"),
            ("172.31.255.255", "private"),
            ("192.168.0.1", "private"),
            ("192.168.255.255", "private"),
            ("100.64.0.1", "carrier-grade NAT"),
            ("100.127.255.255", "carrier-grade NAT"),
            ("169.254.0.1", "link-local"),
            ("169.254.255.255", "link-local"),
            ("169.254.169.254", "cloud metadata"),
            ("100.100.100.200", "cloud metadata"),
            ("168.63.129.16", "cloud metadata"),
            ("224.0.0.1", "multicast"),
            ("239.255.255.250", "multicast"),
            ("240.0.0.1", "reserved"),
            ("255.255.255.254", "reserved"),
            ("255.255.255.255", "broadcast"),
            ("192.0.0.8", "reserved"),
            ("198.18.0.1", "reserved"),
            ("198.19.255.255", "reserved"),
            ("192.0.2.1", "documentation"),
            ("198.51.100.7", "documentation"),
            ("203.0.113.9", "documentation"),
            ("::", "unspecified"),
            ("::1", "loopback"),
            ("fc00::1", "private"),
            ("fd12:3456::1", "private"),
            ("fd00:ec2::254", "cloud metadata"),
            ("fe80::1", "link-local"),
            ("febf::1", "link-local"),
            ("fec0::1", "private"),
            ("ff02::1", "multicast"),
            ("ff05::2", "multicast"),
            ("2001:db8::1", "documentation"),
            ("2001:0:4136:e378::1", "Teredo tunnel"),
            ("100::1", "discard-only"),
            ("64:ff9b:1::1", "local-use NAT64"),
            ("::ffff:0:1", "unspecified"),
            ("::ffff:0:7f00:1", "loopback"),
            ("::1:0:0:0", "reserved"),
            ("0:0:0:1::", "reserved"),
            // IPv4 forms inside IPv6.
            ("::ffff:127.0.0.1", "loopback"),
            ("::ffff:10.1.2.3", "private"),
            ("::ffff:169.254.169.254", "cloud metadata"),
            ("::ffff:192.168.1.1", "private"),
            ("::ffff:0.0.0.0", "unspecified"),
            ("::127.0.0.1", "loopback"),
            ("::10.0.0.1", "private"),
            ("64:ff9b::7f00:1", "loopback"),
            ("64:ff9b::a9fe:a9fe", "cloud metadata"),
            ("2002:7f00:1::1", "loopback"),
            ("2002:c0a8:101::1", "private"),
            ("2002:a9fe:a9fe::", "cloud metadata"),
        ];
        for (addr, why) in cases {
            assert_eq!(internal_address(ip(addr)), Some(*why), "{addr}");
        }
    }

    #[test]
    fn public_addresses_are_allowed() {
        for addr in [
            "1.1.1.1",
            "8.8.8.8",
            "9.255.255.255",
            "11.0.0.0",
            "100.63.255.255",
            "100.128.0.0",
            "126.255.255.255",
            "128.0.0.0",
            "169.253.255.255",
            "169.255.0.0",
            "172.15.255.255",
            "172.32.0.0",
            "192.0.1.1",
            "192.167.255.255",
            "192.169.0.0",
            "198.17.255.255",
            "198.20.0.0",
            "223.255.255.255",
            "2606:4700::1111",
            "2a00:1450:4001::200e",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2002:808:808::1",
            "fbff::1",
            "fe7f::1",
            "2001:1::1",
        ] {
            assert_eq!(internal_address(ip(addr)), None, "{addr}");
        }
    }

    #[test]
    fn every_loopback_private_and_link_local_address_of_std_is_internal() {
        // Cross-check against the standard library's own (stable) predicates over a
        // sweep of the IPv4 space: nothing std calls internal may pass here.
        for hi in 0..=255u8 {
            for lo in [0u8, 1, 16, 31, 64, 127, 168, 169, 254, 255] {
                for last in [0u8, 1, 254, 255] {
                    let v4 = Ipv4Addr::new(hi, lo, 0, last);
                    let std_internal = v4.is_loopback()
                        || v4.is_private()
                        || v4.is_link_local()
                        || v4.is_unspecified()
                        || v4.is_multicast()
                        || v4.is_broadcast()
                        || v4.is_documentation();
                    if std_internal {
                        assert!(internal_address(IpAddr::V4(v4)).is_some(), "{v4}");
                        let mapped = IpAddr::V6(v4.to_ipv6_mapped());
                        assert!(internal_address(mapped).is_some(), "{mapped}");
                    }
                }
            }
        }
    }

    fn url(s: &str) -> Url {
        Url::parse(s).expect(s)
    }

    fn relay(s: &str) -> RelayUrl {
        RelayUrl::parse(s).expect(s)
    }

    #[test]
    fn configured_relays_are_trusted_and_literals_are_judged_by_address() {
        let policy = RelayPolicy::new(&[relay("ws://127.0.0.1:7777")], None);
        let v = |s: &str| policy.verdict(&url(s));
        assert_eq!(v("ws://127.0.0.1:7777"), Verdict::Trusted);
        assert_eq!(v("ws://127.0.0.1:7777/other/path"), Verdict::Trusted);
        assert_eq!(v("ws://127.0.0.1:7778"), Verdict::Refused("loopback"));
        assert_eq!(v("wss://10.0.0.1"), Verdict::Refused("private"));
        assert_eq!(v("ws://[::1]:7777"), Verdict::Refused("loopback"));
        assert_eq!(v("ws://[::ffff:7f00:1]:1"), Verdict::Refused("loopback"));
        assert_eq!(
            v("ws://169.254.169.254/latest"),
            Verdict::Refused("cloud metadata")
        );
        assert_eq!(
            v("ws://[fd00:ec2::254]"),
            Verdict::Refused("cloud metadata")
        );
        // The URL parser reads the odd IPv4 spellings as the address they mean.
        assert_eq!(v("ws://2130706433:80"), Verdict::Refused("loopback"));
        assert_eq!(v("ws://0x7f.1:80"), Verdict::Refused("loopback"));
        assert_eq!(v("ws://0177.0.0.1:80"), Verdict::Refused("loopback"));
        assert_eq!(v("ws://0:80"), Verdict::Refused("unspecified"));
        // Names are judged by what they resolve to, at connection time.
        assert_eq!(v("wss://relay.example.com"), Verdict::PublicOnly);
        assert_eq!(v("ws://localhost:7777"), Verdict::PublicOnly);
        assert_eq!(v("wss://8.8.8.8"), Verdict::PublicOnly);
        assert_eq!(
            v("https://8.8.8.8"),
            Verdict::Refused("not a ws:// or wss:// URL")
        );
        assert!(policy.is_configured(&relay("ws://127.0.0.1:7777")));
        assert!(!policy.is_configured(&relay("ws://127.0.0.1:7778")));
    }

    #[test]
    fn an_allow_list_replaces_the_address_rules_for_other_relays() {
        let allow = vec![
            "127.0.0.1".to_owned(),
            "Relay.Example.COM.".to_owned(),
            "[::1]".to_owned(),
        ];
        let policy = RelayPolicy::new(&[relay("wss://configured.example")], Some(&allow));
        let v = |s: &str| policy.verdict(&url(s));
        assert_eq!(v("ws://127.0.0.1:9000"), Verdict::Trusted);
        assert_eq!(v("ws://[::1]:9000"), Verdict::Trusted);
        assert_eq!(v("wss://relay.example.com"), Verdict::Trusted);
        assert_eq!(v("wss://configured.example"), Verdict::Trusted);
        assert_eq!(
            v("wss://8.8.8.8"),
            Verdict::Refused("not on the relay allow-list")
        );
        assert_eq!(
            v("ws://localhost:9000"),
            Verdict::Refused("not on the relay allow-list")
        );
        assert_eq!(
            v("ws://127.0.0.2:9000"),
            Verdict::Refused("not on the relay allow-list")
        );
    }

    #[test]
    fn the_transport_filters_addresses_by_verdict() {
        let lo = ip("127.0.0.1");
        let public = ip("1.1.1.1");
        assert!(RelayPolicy::permits(Verdict::Trusted, lo));
        assert!(!RelayPolicy::permits(Verdict::PublicOnly, lo));
        assert!(RelayPolicy::permits(Verdict::PublicOnly, public));
        assert!(!RelayPolicy::permits(Verdict::Refused("x"), public));
    }

    #[tokio::test]
    async fn pairing_resolves_names_and_refuses_internal_ones() {
        let policy = RelayPolicy::new(&[relay("ws://127.0.0.1:7777")], None);
        assert!(policy.check(&relay("ws://127.0.0.1:7777")).await.is_ok());
        for refused in [
            "ws://localhost:7777",
            "ws://127.0.0.1:1",
            "ws://10.1.2.3",
            "ws://[::1]:1",
        ] {
            match policy.check(&relay(refused)).await {
                Err(Error::RelayRefused { relay, reason }) => {
                    assert!(relay.starts_with("ws://"), "{relay}");
                    assert!(!reason.is_empty());
                }
                other => panic!("{refused}: {other:?}"),
            }
        }
        let err = policy.check(&relay("ws://localhost:7777")).await;
        assert!(
            matches!(&err, Err(Error::RelayRefused { reason, .. }) if reason.contains("loopback")),
            "{err:?}"
        );
    }
}
