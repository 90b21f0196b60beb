//! The per-client DNS resolution cache: which names a client resolved to an
//! address, and when. Flows without SNI get their `destination.domain` here.
//!
//! Keyed by (client address, resolved address). Each entry keeps the name the
//! client asked for and the canonical name (end of the CNAME chain), the time
//! the answer was seen and its TTL. Lookups are by time: a flow sees only
//! answers seen before it started and not expired then (with
//! [`TTL_GRACE_NS`] of slack, since clients keep using addresses a little
//! past their TTL). Bounded by [`MAX_DNS_CACHE_ENTRIES`]: the oldest answers
//! are dropped first, counted.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;

/// Most (client, address) pairs remembered. At ~150 bytes each, 1M entries is
/// ~150 MB: sized for a gateway serving some thousands of devices.
pub const MAX_DNS_CACHE_ENTRIES: usize = 1_000_000;
/// Names kept per (client, address): CDNs put many names on one address.
pub const MAX_NAMES_PER_ADDRESS: usize = 4;
/// How long past its TTL an answer still names an address.
pub const TTL_GRACE_NS: u64 = 300 * 1_000_000_000;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CachedName {
    /// The name the client asked for.
    pub name: String,
    /// The end of the CNAME chain (equal to `name` without CNAMEs).
    pub canonical: String,
    pub seen_ns: u64,
    pub expires_ns: u64,
}

#[derive(Default)]
pub struct DnsCache {
    map: HashMap<(IpAddr, IpAddr), Vec<CachedName>>,
    order: VecDeque<(IpAddr, IpAddr)>,
    pub evicted: u64,
    pub inserted: u64,
}

impl DnsCache {
    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub fn insert(
        &mut self,
        client: IpAddr,
        addr: IpAddr,
        name: &str,
        canonical: &str,
        ttl_s: u32,
        seen_ns: u64,
    ) {
        self.inserted += 1;
        let expires_ns = seen_ns.saturating_add(u64::from(ttl_s) * 1_000_000_000);
        let entry = CachedName {
            name: name.to_string(),
            canonical: canonical.to_string(),
            seen_ns,
            expires_ns,
        };
        let key = (client, addr);
        if let Some(names) = self.map.get_mut(&key) {
            names.retain(|n| n.name != entry.name);
            if names.len() >= MAX_NAMES_PER_ADDRESS {
                names.remove(0);
            }
            names.push(entry);
            return;
        }
        if self.map.len() >= MAX_DNS_CACHE_ENTRIES {
            if let Some(old) = self.order.pop_front() {
                self.map.remove(&old);
                self.evicted += 1;
            }
        }
        self.map.insert(key, vec![entry]);
        self.order.push_back(key);
    }

    /// Names `client` resolved to `addr` that were valid at `at_ns`, most recent first.
    pub fn lookup(&self, client: IpAddr, addr: IpAddr, at_ns: u64) -> Vec<&CachedName> {
        let mut v: Vec<&CachedName> = self
            .map
            .get(&(client, addr))
            .map(|names| {
                names
                    .iter()
                    .filter(|n| {
                        n.seen_ns <= at_ns && at_ns <= n.expires_ns.saturating_add(TTL_GRACE_NS)
                    })
                    .collect()
            })
            .unwrap_or_default();
        v.sort_by_key(|n| std::cmp::Reverse(n.seen_ns));
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    #[test]
    fn lookup_respects_time_and_client() {
        let mut c = DnsCache::default();
        let cl: IpAddr = "10.0.0.2".parse().unwrap();
        let other: IpAddr = "10.0.0.3".parse().unwrap();
        let a: IpAddr = "93.184.216.34".parse().unwrap();
        c.insert(cl, a, "example.com", "example.com", 60, 100 * S);
        assert!(c.lookup(cl, a, 99 * S).is_empty(), "not before the answer");
        assert_eq!(c.lookup(cl, a, 101 * S)[0].name, "example.com");
        assert!(
            c.lookup(other, a, 101 * S).is_empty(),
            "another client did not resolve it"
        );
        assert!(
            c.lookup(cl, a, 100 * S + 60 * S + TTL_GRACE_NS + 1)
                .is_empty(),
            "expired"
        );
    }

    #[test]
    fn bounded_names_per_address() {
        let mut c = DnsCache::default();
        let cl: IpAddr = "10.0.0.2".parse().unwrap();
        let a: IpAddr = "1.1.1.1".parse().unwrap();
        for i in 0..10 {
            c.insert(cl, a, &format!("n{i}.example"), "x", 60, i * S);
        }
        let names = c.lookup(cl, a, 10 * S);
        assert_eq!(names.len(), MAX_NAMES_PER_ADDRESS);
        assert_eq!(names[0].name, "n9.example");
    }
}
