//! Encrypted DNS the sensor cannot see into: flows that carry a device's name
//! lookups where no `nightjar.dns` record, and no DNS-derived `destination.domain`,
//! can follow them.
//!
//! Owns the classification and its lists. A flow is a blind spot when:
//! - `private_relay`: its name (SNI, else the DNS-derived domain) is an iCloud Private
//!   Relay ingress name ([`PRIVATE_RELAY_NAMES`]); everything the device sends through
//!   the relay, its DNS included, is hidden;
//! - `doq`: DNS over QUIC (RFC 9250): UDP port 853, or the ALPN `doq`;
//! - `dot`: DNS over TLS (RFC 7858): TCP port 853, or the ALPN `dot`;
//! - `doh`: DNS over HTTPS (RFC 8484, also over HTTP/3): port 443 to a well-known public
//!   resolver address ([`DOH_RESOLVER_ADDRS`]) or name ([`DOH_RESOLVER_NAMES`]).
//!
//! The lists are small on purpose: they name the resolvers iOS offers or that apps and
//! encrypted-DNS profiles commonly use. A resolver not listed is not flagged (a miss,
//! never a false alarm on ordinary HTTPS). Invariant: pure functions, no allocation.

use std::net::IpAddr;
use std::sync::OnceLock;

/// iCloud Private Relay ingress names (Apple's guidance to networks that want to block
/// the relay names exactly these).
pub const PRIVATE_RELAY_NAMES: &[&str] = &["mask.icloud.com", "mask-h2.icloud.com"];

/// Public DoH resolver names; a name matches itself and its subdomains
/// (`mozilla.cloudflare-dns.com`, `<id>.dns.nextdns.io`).
pub const DOH_RESOLVER_NAMES: &[&str] = &[
    "cloudflare-dns.com",
    "one.one.one.one",
    "dns.google",
    "dns.google.com",
    "dns.quad9.net",
    "dns9.quad9.net",
    "dns10.quad9.net",
    "dns11.quad9.net",
    "doh.opendns.com",
    "dns.adguard-dns.com",
    "dns.adguard.com",
    "dns.nextdns.io",
    "doh.cleanbrowsing.org",
    "dns.mullvad.net",
    "doh.mullvad.net",
];

/// Public DoH/DoQ resolver addresses (Cloudflare, Google, Quad9, OpenDNS, AdGuard).
pub const DOH_RESOLVER_ADDRS: &[&str] = &[
    "1.1.1.1",
    "1.0.0.1",
    "2606:4700:4700::1111",
    "2606:4700:4700::1001",
    "8.8.8.8",
    "8.8.4.4",
    "2001:4860:4860::8888",
    "2001:4860:4860::8844",
    "9.9.9.9",
    "149.112.112.112",
    "2620:fe::fe",
    "2620:fe::9",
    "208.67.222.222",
    "208.67.220.220",
    "94.140.14.14",
    "94.140.15.15",
];

/// Port of DNS over TLS (TCP) and DNS over QUIC (UDP).
pub const DNS_ENCRYPTED_PORT: u16 = 853;

/// What kind of encrypted DNS a flow is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum BlindSpot {
    Dot,
    Doh,
    Doq,
    PrivateRelay,
}

impl BlindSpot {
    pub fn as_str(self) -> &'static str {
        match self {
            BlindSpot::Dot => "dot",
            BlindSpot::Doh => "doh",
            BlindSpot::Doq => "doq",
            BlindSpot::PrivateRelay => "private_relay",
        }
    }
}

fn name_in(name: &str, list: &[&str]) -> bool {
    let name = name.trim_end_matches('.');
    list.iter().any(|n| {
        name.eq_ignore_ascii_case(n)
            || (name.len() > n.len() + 1
                && name.as_bytes()[name.len() - n.len() - 1] == b'.'
                && name[name.len() - n.len()..].eq_ignore_ascii_case(n))
    })
}

fn resolver_addr(ip: IpAddr) -> bool {
    // Parsed once (the check runs for every flow to port 443).
    static ADDRS: OnceLock<Vec<IpAddr>> = OnceLock::new();
    ADDRS
        .get_or_init(|| {
            DOH_RESOLVER_ADDRS
                .iter()
                .filter_map(|a| a.parse().ok())
                .collect()
        })
        .contains(&ip)
}

/// The flow facts the classification needs.
pub struct FlowFacts<'a> {
    /// IP protocol: 6 TCP, 17 UDP.
    pub proto: u8,
    pub server_ip: IpAddr,
    pub server_port: u16,
    /// SNI, else the DNS-derived `destination.domain`.
    pub name: Option<&'a str>,
    /// ALPN ids the client offered.
    pub alpn: &'a [String],
}

/// Classifies a flow; `None` when it is not encrypted DNS the sensor knows of.
pub fn classify(f: &FlowFacts<'_>) -> Option<BlindSpot> {
    if f.name.is_some_and(|n| name_in(n, PRIVATE_RELAY_NAMES)) {
        return Some(BlindSpot::PrivateRelay);
    }
    if f.alpn.iter().any(|a| a == "doq") || (f.proto == 17 && f.server_port == DNS_ENCRYPTED_PORT) {
        return Some(BlindSpot::Doq);
    }
    if f.alpn.iter().any(|a| a == "dot") || (f.proto == 6 && f.server_port == DNS_ENCRYPTED_PORT) {
        return Some(BlindSpot::Dot);
    }
    if f.server_port == 443
        && matches!(f.proto, 6 | 17)
        && (resolver_addr(f.server_ip) || f.name.is_some_and(|n| name_in(n, DOH_RESOLVER_NAMES)))
    {
        return Some(BlindSpot::Doh);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts<'a>(
        proto: u8,
        ip: &str,
        port: u16,
        name: Option<&'a str>,
        alpn: &'a [String],
    ) -> FlowFacts<'a> {
        FlowFacts {
            proto,
            server_ip: ip.parse().unwrap(),
            server_port: port,
            name,
            alpn,
        }
    }

    #[test]
    fn lists_parse() {
        for a in DOH_RESOLVER_ADDRS {
            assert!(a.parse::<IpAddr>().is_ok(), "{a}");
        }
    }

    #[test]
    fn classifies() {
        let none: &[String] = &[];
        let c = |f| classify(&f).map(BlindSpot::as_str);
        assert_eq!(c(facts(6, "10.0.0.1", 853, None, none)), Some("dot"));
        assert_eq!(c(facts(17, "10.0.0.1", 853, None, none)), Some("doq"));
        assert_eq!(c(facts(6, "1.1.1.1", 443, None, none)), Some("doh"));
        assert_eq!(
            c(facts(17, "2606:4700:4700::1111", 443, None, none)),
            Some("doh")
        );
        assert_eq!(
            c(facts(
                6,
                "10.0.0.1",
                443,
                Some("mozilla.cloudflare-dns.com"),
                none
            )),
            Some("doh")
        );
        assert_eq!(
            c(facts(17, "10.0.0.1", 443, Some("MASK.icloud.com"), none)),
            Some("private_relay")
        );
        assert_eq!(
            c(facts(6, "10.0.0.1", 443, Some("mask-h2.icloud.com."), none)),
            Some("private_relay")
        );
        assert_eq!(
            c(facts(6, "10.0.0.1", 443, Some("notmask.icloud.com"), none)),
            None
        );
        assert_eq!(
            c(facts(6, "10.0.0.1", 443, Some("xcloudflare-dns.com"), none)),
            None
        );
        assert_eq!(c(facts(6, "1.1.1.1", 80, None, none)), None);
        let doq = ["doq".to_string()];
        assert_eq!(c(facts(17, "10.0.0.1", 8853, None, &doq)), Some("doq"));
    }
}
