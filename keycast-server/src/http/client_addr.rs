//! The client's address, for the limits that count per client (logins, registrations,
//! forgot-password mail).
//!
//! It is the TCP peer from axum's `ConnectInfo<SocketAddr>`, which `serve` provides
//! (`into_make_service_with_connect_info`). Behind a load balancer every peer is the
//! balancer, so an operator names the header that carries the client address and the
//! proxies allowed to set it ([`TrustedProxy`]); the header is read only from those
//! peers, and only the part of it they appended: walking the list from the right, the
//! first address that is not a trusted proxy is the client. Anyone else's header is
//! ignored, so a client cannot pick its own address.
//!
//! A router served without `ConnectInfo` (an embedding application's own `axum::serve`,
//! or a test's `oneshot` that did not insert one) answers 500 on the routes that need the
//! address, and logs why: a silent shared fallback would let one client exhaust every
//! other client's budget.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName, StatusCode};
use ipnet::IpNet;

use super::{ApiError, AppState};

/// Which header carries the client address, and which peers may set it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustedProxy {
    /// Such as `x-forwarded-for` or `x-real-ip`: a comma-separated list of addresses,
    /// each proxy appending the peer it saw.
    pub header: HeaderName,
    /// Peers whose header is believed (and whose own entries in it are skipped).
    pub proxies: Vec<IpNet>,
}

impl TrustedProxy {
    /// Parses the two settings; each error names its setting.
    pub fn parse(
        header_setting: &str,
        header: Option<&str>,
        proxies_setting: &str,
        proxies: Option<&str>,
    ) -> Result<Option<Self>, String> {
        let (header, proxies) = match (header, proxies) {
            (None, None) => return Ok(None),
            (Some(_), None) => {
                return Err(format!(
                    "{proxies_setting}: must list the proxies allowed to set {header_setting}"
                ))
            }
            (None, Some(_)) => {
                return Err(format!(
                    "{header_setting}: must name the header the proxies in {proxies_setting} set"
                ))
            }
            (Some(h), Some(p)) => (h, p),
        };
        let header = HeaderName::from_bytes(header.trim().to_ascii_lowercase().as_bytes())
            .map_err(|_| format!("{header_setting}: {header:?} is not a header name"))?;
        let proxies = proxies
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(|p| {
                parse_net(p).ok_or_else(|| {
                    format!("{proxies_setting}: {p:?} is not an address or CIDR range")
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        if proxies.is_empty() {
            return Err(format!("{proxies_setting}: lists no proxy"));
        }
        Ok(Some(Self { header, proxies }))
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        self.proxies.iter().any(|net| net.contains(&ip))
    }

    /// The client behind `peer` (a trusted proxy) from `headers`: the rightmost entry that
    /// is not a trusted proxy; when every entry is one, the leftmost; when the header is
    /// missing or an entry does not parse, the last address known good (so a client's
    /// garbage cannot move it onto someone else's address).
    fn client(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let entries: Vec<&str> = headers
            .get_all(&self.header)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .collect();
        let mut client = peer;
        for entry in entries.iter().rev() {
            let Some(ip) = parse_entry(entry) else {
                break;
            };
            client = ip;
            if !self.trusts(ip) {
                break;
            }
        }
        client
    }
}

/// `10.0.0.0/8`, or a bare address as its own /32 or /128.
fn parse_net(s: &str) -> Option<IpNet> {
    s.parse::<IpNet>()
        .ok()
        .or_else(|| s.parse::<IpAddr>().ok().map(IpNet::from))
        .map(|n| n.trunc())
}

/// One entry of a forwarding header: `1.2.3.4`, `1.2.3.4:5678`, `2001:db8::1` or
/// `[2001:db8::1]:5678`.
fn parse_entry(s: &str) -> Option<IpAddr> {
    s.parse::<IpAddr>()
        .or_else(|_| s.parse::<SocketAddr>().map(|a| a.ip()))
        .ok()
        .map(canonical)
}

/// IPv4-mapped IPv6 addresses (a dual-stack listener's IPv4 peers) as IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// The client address of a request (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr(pub IpAddr);

impl ClientAddr {
    /// What per-client limits count by: an IPv4 address, or an IPv6 address's /64 (one
    /// host usually holds a whole /64, so counting single IPv6 addresses limits nothing).
    pub fn limit_key(&self) -> String {
        match self.0 {
            IpAddr::V4(v4) => v4.to_string(),
            IpAddr::V6(v6) => {
                let s = v6.segments();
                let prefix = Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0);
                format!("{prefix}/64")
            }
        }
    }

    /// The client of a request from `peer` with `headers`, under `trusted`.
    pub fn resolve(peer: IpAddr, headers: &HeaderMap, trusted: Option<&TrustedProxy>) -> Self {
        let peer = canonical(peer);
        match trusted {
            Some(t) if t.trusts(peer) => Self(t.client(peer, headers)),
            _ => Self(peer),
        }
    }
}

impl FromRequestParts<AppState> for ClientAddr {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let Some(ConnectInfo(peer)) = parts.extensions.get::<ConnectInfo<SocketAddr>>() else {
            tracing::error!(
                "served without ConnectInfo<SocketAddr>: serve app(state) with \
                 into_make_service_with_connect_info::<SocketAddr>()"
            );
            return Err(ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "internal error",
            ));
        };
        let trusted = state.services.config.accounts.trusted_proxy.as_ref();
        Ok(Self::resolve(peer.ip(), &parts.headers, trusted))
    }
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn proxy() -> TrustedProxy {
        TrustedProxy::parse(
            "H",
            Some("X-Forwarded-For"),
            "P",
            Some("127.0.0.1, 10.0.0.0/8"),
        )
        .expect("valid")
        .expect("set")
    }

    fn headers(values: &[&'static str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append("x-forwarded-for", HeaderValue::from_static(v));
        }
        h
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn the_header_counts_only_from_trusted_proxies_and_only_their_part() {
        let t = proxy();
        let from = |peer: &str, values: &[&'static str]| {
            ClientAddr::resolve(ip(peer), &headers(values), Some(&t)).0
        };
        assert_eq!(from("127.0.0.1", &["203.0.113.7"]), ip("203.0.113.7"));
        assert_eq!(
            from("198.51.100.1", &["203.0.113.7"]),
            ip("198.51.100.1"),
            "an untrusted peer's header is ignored"
        );
        assert_eq!(
            from("127.0.0.1", &["6.6.6.6, 203.0.113.7, 10.1.2.3"]),
            ip("203.0.113.7"),
            "what the client wrote itself (left of its real address) is skipped"
        );
        assert_eq!(
            from("127.0.0.1", &["6.6.6.6", "203.0.113.7:4444"]),
            ip("203.0.113.7"),
            "several header lines, ports"
        );
        assert_eq!(from("127.0.0.1", &["10.0.0.9, 10.0.0.8"]), ip("10.0.0.9"));
        assert_eq!(
            from("127.0.0.1", &[]),
            ip("127.0.0.1"),
            "no header: the peer"
        );
        assert_eq!(
            from("127.0.0.1", &["203.0.113.7, garbage"]),
            ip("127.0.0.1"),
            "garbage stops the walk at the last good hop"
        );
        assert_eq!(
            from("::ffff:127.0.0.1", &["[2001:db8::1]:80"]),
            ip("2001:db8::1")
        );
        assert_eq!(
            ClientAddr::resolve(ip("127.0.0.1"), &headers(&["203.0.113.7"]), None).0,
            ip("127.0.0.1"),
            "no trusted proxy configured"
        );
    }

    #[test]
    fn ipv6_counts_by_its_64() {
        let a = ClientAddr(ip("2001:db8:1:2:aaaa::1")).limit_key();
        let b = ClientAddr(ip("2001:db8:1:2:bbbb::2")).limit_key();
        let c = ClientAddr(ip("2001:db8:1:3::1")).limit_key();
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(ClientAddr(ip("192.0.2.1")).limit_key(), "192.0.2.1");
    }

    #[test]
    fn bad_settings_name_the_setting() {
        let parse = |h: Option<&str>, p: Option<&str>| {
            TrustedProxy::parse(
                "KEYCAST_TRUSTED_PROXY_HEADER",
                h,
                "KEYCAST_TRUSTED_PROXIES",
                p,
            )
        };
        assert_eq!(parse(None, None), Ok(None));
        let err = |h, p| parse(h, p).expect_err("refused");
        assert!(err(Some("x-forwarded-for"), None).contains("KEYCAST_TRUSTED_PROXIES"));
        assert!(err(None, Some("10.0.0.0/8")).contains("KEYCAST_TRUSTED_PROXY_HEADER"));
        assert!(err(Some("bad header"), Some("10.0.0.1")).contains("KEYCAST_TRUSTED_PROXY_HEADER"));
        assert!(err(Some("x-real-ip"), Some("10.0.0.0/33")).contains("KEYCAST_TRUSTED_PROXIES"));
        assert!(err(Some("x-real-ip"), Some(" , ")).contains("KEYCAST_TRUSTED_PROXIES"));
        let t = parse(Some("X-Real-IP"), Some("10.1.2.3/8, ::1"))
            .expect("ok")
            .expect("set");
        assert_eq!(t.header.as_str(), "x-real-ip");
        assert_eq!(t.proxies[0].to_string(), "10.0.0.0/8", "host bits dropped");
        assert_eq!(t.proxies[1].to_string(), "::1/128");
    }
}
