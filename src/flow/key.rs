//! The canonical bidirectional flow key.
//!
//! A key names both directions of a conversation: the innermost IP addresses,
//! transport ports and protocol, plus the VLAN ids of the frame that carried it.
//! The two endpoints are stored in a canonical order (`a` < `b`), so both
//! directions of a flow hash and compare equal. Which endpoint is the client is
//! decided by the flow table, not here.

use std::hash::{Hash, Hasher};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// One endpoint: a 16-byte address (IPv4 mapped into the first four bytes) and a port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Endpoint {
    pub addr: [u8; 16],
    pub port: u16,
}

/// Canonical key of a bidirectional flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowKey {
    pub a: Endpoint,
    pub b: Endpoint,
    /// IP protocol number of the innermost packet (6 TCP, 17 UDP, ...).
    pub proto: u8,
    pub ipv6: bool,
    /// VLAN ids of the carrying frame, outer first; unused slots are 0.
    pub vlans: [u16; 2],
}

impl Hash for FlowKey {
    fn hash<H: Hasher>(&self, h: &mut H) {
        h.write(&self.a.addr);
        h.write(&self.b.addr);
        h.write_u32(u32::from(self.a.port) << 16 | u32::from(self.b.port));
        h.write_u64(
            u64::from(self.proto) | u64::from(self.vlans[0]) << 8 | u64::from(self.vlans[1]) << 24,
        );
    }
}

/// Which canonical side sent a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    A,
    B,
}

impl Side {
    pub fn other(self) -> Side {
        match self {
            Side::A => Side::B,
            Side::B => Side::A,
        }
    }
    pub fn index(self) -> usize {
        match self {
            Side::A => 0,
            Side::B => 1,
        }
    }
}

pub fn addr_bytes(ip: IpAddr) -> [u8; 16] {
    match ip {
        IpAddr::V4(v4) => {
            let mut out = [0u8; 16];
            out[..4].copy_from_slice(&v4.octets());
            out
        }
        IpAddr::V6(v6) => v6.octets(),
    }
}

impl FlowKey {
    /// Builds the canonical key for a packet from `src` to `dst`, and says which side sent it.
    pub fn new(
        src: IpAddr,
        sport: u16,
        dst: IpAddr,
        dport: u16,
        proto: u8,
        vlans: [u16; 2],
    ) -> (FlowKey, Side) {
        let s = Endpoint {
            addr: addr_bytes(src),
            port: sport,
        };
        let d = Endpoint {
            addr: addr_bytes(dst),
            port: dport,
        };
        let ipv6 = src.is_ipv6();
        if s <= d {
            (
                FlowKey {
                    a: s,
                    b: d,
                    proto,
                    ipv6,
                    vlans,
                },
                Side::A,
            )
        } else {
            (
                FlowKey {
                    a: d,
                    b: s,
                    proto,
                    ipv6,
                    vlans,
                },
                Side::B,
            )
        }
    }

    pub fn endpoint(&self, side: Side) -> Endpoint {
        match side {
            Side::A => self.a,
            Side::B => self.b,
        }
    }

    pub fn ip(&self, side: Side) -> IpAddr {
        let e = self.endpoint(side);
        if self.ipv6 {
            IpAddr::V6(Ipv6Addr::from(e.addr))
        } else {
            IpAddr::V4(Ipv4Addr::new(e.addr[0], e.addr[1], e.addr[2], e.addr[3]))
        }
    }

    /// A hash of the key that does not depend on direction or on the process:
    /// used to pick a shard, so both directions reach the same worker.
    pub fn symmetric_hash(&self) -> u64 {
        // FNV-1a over the canonical bytes: stable across runs and machines.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        let mut eat = |bytes: &[u8]| {
            for &b in bytes {
                h ^= u64::from(b);
                h = h.wrapping_mul(0x0100_0000_01b3);
            }
        };
        eat(&self.a.addr);
        eat(&self.a.port.to_be_bytes());
        eat(&self.b.addr);
        eat(&self.b.port.to_be_bytes());
        eat(&[self.proto]);
        eat(&self.vlans[0].to_be_bytes());
        eat(&self.vlans[1].to_be_bytes());
        h
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_directions_give_one_key() {
        let c: IpAddr = "10.0.0.1".parse().unwrap();
        let s: IpAddr = "10.0.0.2".parse().unwrap();
        let (k1, s1) = FlowKey::new(c, 40000, s, 443, 6, [0, 0]);
        let (k2, s2) = FlowKey::new(s, 443, c, 40000, 6, [0, 0]);
        assert_eq!(k1, k2);
        assert_ne!(s1, s2);
        assert_eq!(k1.symmetric_hash(), k2.symmetric_hash());
        assert_eq!(k1.ip(s1), c);
    }

    #[test]
    fn vlans_separate_flows() {
        let c: IpAddr = "10.0.0.1".parse().unwrap();
        let s: IpAddr = "10.0.0.2".parse().unwrap();
        let (k1, _) = FlowKey::new(c, 1, s, 2, 17, [10, 0]);
        let (k2, _) = FlowKey::new(c, 1, s, 2, 17, [20, 0]);
        assert_ne!(k1, k2);
    }
}
