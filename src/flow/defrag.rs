//! IP reassembly for one shard: fragments in, whole IP packets out.
//!
//! Fragments are keyed by (source, destination, protocol, identification,
//! VLANs) and their payloads collected in a [`StreamReassembler`] at their
//! fragment offsets (first copy wins on overlap). A datagram is complete when
//! the last fragment (MF clear) has fixed its length and every byte up to it
//! is present; it is then rebuilt as a plain IP packet (a fresh header, no
//! fragmentation) for the caller to decode and account as one packet.
//!
//! Bounds: at most [`DEFRAG_MAX_DATAGRAMS`] datagrams in progress and
//! [`DEFRAG_MEMCAP`] payload bytes held; the oldest datagram is dropped first
//! (counted). Datagrams not completed within [`DEFRAG_TIMEOUT_NS`] of packet
//! time are dropped (counted). Reassembly allocates per fragmented datagram,
//! never per ordinary packet.

use super::reassembly::StreamReassembler;
use super::stats::FlowStats;
use crate::decode::{EncapChain, Fragment, Packet, Vlans};
use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;

/// Datagrams being reassembled at once per shard.
pub const DEFRAG_MAX_DATAGRAMS: usize = 4096;
/// Payload bytes held for reassembly per shard (all datagrams together).
pub const DEFRAG_MEMCAP: usize = 16 << 20;
/// Packet time after its first fragment within which a datagram must complete
/// (Linux's default `ipfrag_time` is 30 s).
pub const DEFRAG_TIMEOUT_NS: u64 = 30_000_000_000;
/// Largest IP payload a datagram may reassemble to (the IPv4/IPv6 length field limit).
pub const DEFRAG_MAX_PAYLOAD: usize = 65_535;

#[derive(Clone, Copy, PartialEq, Eq, Hash)]
struct Key {
    src: IpAddr,
    dst: IpAddr,
    proto: u8,
    id: u32,
    vlans: Vlans,
}

struct Datagram {
    first_ns: u64,
    payload: StreamReassembler,
    /// Payload length, known once the last fragment arrived.
    total: Option<usize>,
    fragments: u32,
    ttl: u8,
    src_mac: Option<[u8; 6]>,
    dst_mac: Option<[u8; 6]>,
    encap: EncapChain,
}

/// A reassembled datagram: a plain IP packet and the link context of its fragments.
pub struct Whole {
    pub bytes: Vec<u8>,
    pub fragments: u32,
    pub src_mac: Option<[u8; 6]>,
    pub dst_mac: Option<[u8; 6]>,
    pub vlans: Vlans,
    pub encap: EncapChain,
}

#[derive(Default)]
pub struct Defrag {
    table: HashMap<Key, Datagram>,
    order: VecDeque<(Key, u64)>,
    held: usize,
}

impl Defrag {
    pub fn in_progress(&self) -> usize {
        self.table.len()
    }

    /// Adds one fragment; returns the whole packet when this fragment completes it.
    pub fn insert(&mut self, ts_ns: u64, pkt: &Packet<'_>, stats: &mut FlowStats) -> Option<Whole> {
        let (id, offset, more) = match pkt.fragment {
            Fragment::None => return None,
            Fragment::First { id } => (id, 0usize, true),
            Fragment::Later { id, offset, more } => (id, offset as usize, more),
        };
        let key = Key {
            src: pkt.ip.src,
            dst: pkt.ip.dst,
            proto: pkt.ip.proto,
            id,
            vlans: pkt.vlans,
        };
        let data = pkt.ip_payload;
        if offset.saturating_add(data.len()) > DEFRAG_MAX_PAYLOAD {
            stats.anomaly("defrag_oversized");
            return None;
        }
        if !self.table.contains_key(&key) {
            self.make_room(stats);
            self.table.insert(
                key,
                Datagram {
                    first_ns: ts_ns,
                    payload: StreamReassembler::new(DEFRAG_MAX_PAYLOAD),
                    total: None,
                    fragments: 0,
                    ttl: pkt.ip.ttl,
                    src_mac: pkt.src_mac,
                    dst_mac: pkt.dst_mac,
                    encap: pkt.encap,
                },
            );
            self.order.push_back((key, ts_ns));
        }
        let d = self.table.get_mut(&key)?;
        d.fragments += 1;
        let before = d.payload.bytes_held();
        d.payload.insert(offset as u64, data);
        self.held += d.payload.bytes_held().saturating_sub(before);
        if !more {
            d.total = Some(offset + data.len());
        }
        if d.payload.range_limit_hit() {
            stats.anomaly("defrag_too_many_holes");
        }
        let total = d.total?;
        if d.payload.contiguous().len() < total {
            return None;
        }
        let d = self.table.remove(&key)?;
        self.held = self.held.saturating_sub(d.payload.bytes_held());
        stats.ip_reassembled += 1;
        Some(Whole {
            bytes: rebuild(&key, d.ttl, &d.payload.contiguous()[..total]),
            fragments: d.fragments,
            src_mac: d.src_mac,
            dst_mac: d.dst_mac,
            vlans: key.vlans,
            encap: d.encap,
        })
    }

    /// Drops datagrams whose first fragment is older than the timeout.
    pub fn expire(&mut self, now_ns: u64, stats: &mut FlowStats) {
        while let Some(&(key, first_ns)) = self.order.front() {
            if now_ns.saturating_sub(first_ns) <= DEFRAG_TIMEOUT_NS {
                break;
            }
            self.order.pop_front();
            self.drop_datagram(&key, first_ns, "defrag_timeout", stats);
        }
    }

    fn make_room(&mut self, stats: &mut FlowStats) {
        while self.table.len() >= DEFRAG_MAX_DATAGRAMS || self.held >= DEFRAG_MEMCAP {
            let Some((key, first_ns)) = self.order.pop_front() else {
                break;
            };
            self.drop_datagram(&key, first_ns, "defrag_evicted", stats);
        }
    }

    /// Removes an incomplete datagram (if the queue entry is still its own).
    fn drop_datagram(
        &mut self,
        key: &Key,
        first_ns: u64,
        reason: &'static str,
        stats: &mut FlowStats,
    ) {
        if self.table.get(key).is_some_and(|d| d.first_ns == first_ns) {
            if let Some(d) = self.table.remove(key) {
                self.held = self.held.saturating_sub(d.payload.bytes_held());
                stats.anomaly(reason);
            }
        }
    }
}

/// A plain IP packet carrying `payload`: a fresh header without fragmentation.
fn rebuild(key: &Key, ttl: u8, payload: &[u8]) -> Vec<u8> {
    match (key.src, key.dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let total = (20 + payload.len()) as u16;
            let mut b = Vec::with_capacity(20 + payload.len());
            b.extend_from_slice(&[0x45, 0]);
            b.extend_from_slice(&total.to_be_bytes());
            b.extend_from_slice(&[0, 0, 0, 0, ttl, key.proto, 0, 0]);
            b.extend_from_slice(&s.octets());
            b.extend_from_slice(&d.octets());
            b.extend_from_slice(payload);
            b
        }
        (s, d) => {
            let to16 = |a: IpAddr| match a {
                IpAddr::V6(v) => v.octets(),
                IpAddr::V4(v) => v.to_ipv6_mapped().octets(),
            };
            let mut b = Vec::with_capacity(40 + payload.len());
            b.extend_from_slice(&[0x60, 0, 0, 0]);
            b.extend_from_slice(&(payload.len() as u16).to_be_bytes());
            b.extend_from_slice(&[key.proto, ttl]);
            b.extend_from_slice(&to16(s));
            b.extend_from_slice(&to16(d));
            b.extend_from_slice(payload);
            b
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::LinkType;
    use crate::decode::{decode, L4};

    /// An IPv4 fragment carrying `data` at `offset` (bytes, multiple of 8).
    fn frag(id: u16, offset: u16, more: bool, proto: u8, data: &[u8]) -> Vec<u8> {
        let total = (20 + data.len()) as u16;
        let flags = (offset / 8) | if more { 0x2000 } else { 0 };
        let mut b = vec![0x45, 0];
        b.extend_from_slice(&total.to_be_bytes());
        b.extend_from_slice(&id.to_be_bytes());
        b.extend_from_slice(&flags.to_be_bytes());
        b.extend_from_slice(&[64, proto, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2]);
        b.extend_from_slice(data);
        b
    }

    fn udp(sport: u16, dport: u16, body: &[u8]) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&sport.to_be_bytes());
        b.extend_from_slice(&dport.to_be_bytes());
        b.extend_from_slice(&((8 + body.len()) as u16).to_be_bytes());
        b.extend_from_slice(&[0, 0]);
        b.extend_from_slice(body);
        b
    }

    #[test]
    fn out_of_order_fragments_make_one_packet() {
        let dgram = udp(5000, 53, &[7u8; 40]);
        let (a, b) = dgram.split_at(24);
        let f1 = frag(9, 0, true, 17, a);
        let f2 = frag(9, 24, false, 17, b);
        let mut d = Defrag::default();
        let mut st = FlowStats::default();
        let p2 = decode(LinkType::RAW, &f2).unwrap();
        assert!(d.insert(1, &p2, &mut st).is_none());
        let p1 = decode(LinkType::RAW, &f1).unwrap();
        let whole = d.insert(2, &p1, &mut st).expect("complete");
        assert_eq!(whole.fragments, 2);
        let p = decode(LinkType::RAW, &whole.bytes).unwrap();
        assert_eq!(p.fragment, Fragment::None);
        assert_eq!(p.ip.ip_len as usize, 20 + dgram.len());
        assert!(
            matches!(p.l4, L4::Udp { src_port: 5000, dst_port: 53, payload } if payload == [7u8; 40])
        );
        assert_eq!(d.in_progress(), 0);
    }

    #[test]
    fn incomplete_datagrams_time_out_and_are_counted() {
        let f1 = frag(3, 0, true, 17, &udp(1, 2, &[0; 16]));
        let mut d = Defrag::default();
        let mut st = FlowStats::default();
        assert!(d
            .insert(0, &decode(LinkType::RAW, &f1).unwrap(), &mut st)
            .is_none());
        d.expire(DEFRAG_TIMEOUT_NS + 1, &mut st);
        assert_eq!(d.in_progress(), 0);
        assert_eq!(st.anomalies.get("defrag_timeout"), Some(&1));
    }

    #[test]
    fn table_is_bounded() {
        let mut d = Defrag::default();
        let mut st = FlowStats::default();
        for id in 0..(DEFRAG_MAX_DATAGRAMS as u16 + 10) {
            let f = frag(id, 0, true, 17, &udp(1, 2, &[0; 8]));
            d.insert(u64::from(id), &decode(LinkType::RAW, &f).unwrap(), &mut st);
        }
        assert_eq!(d.in_progress(), DEFRAG_MAX_DATAGRAMS);
        assert_eq!(st.anomalies.get("defrag_evicted"), Some(&10));
    }
}
