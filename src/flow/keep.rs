//! The evidence packet keeper: a bounded store of recent packets per shard, so an
//! alert's evidence bundle can carry the packets still held for its flows.
//!
//! Opt-in: it exists only when an evidence directory is configured; the pipeline
//! asks the correlator for a keeper per shard at start and, without one, does
//! nothing per packet. With one, each frame is offered after the shard processed
//! it ([`PacketKeeper::keep`]).
//!
//! Owns, per shard and allocated once: a byte ring of `memory_bytes` holding kept
//! frames (a 32-byte header and at most `snap_bytes` of the frame each, oldest
//! overwritten first), and a fixed open-addressing index of flows (keyed by the
//! canonical flow key's hash, outside the flow table) that counts the packets kept
//! per flow so no flow keeps more than `packets_per_flow`: the first packets of a
//! flow (its handshake and first exchanges) are the ones kept. A flow quiet for
//! `idle_reset_ns` starts counting again (the key was reused by a new flow).
//!
//! Invariants: no allocation per packet (the ring and index are allocated at
//! construction); memory is `memory_bytes` plus `memory_bytes /
//! RING_BYTES_PER_INDEX_ENTRY` index entries of 24 bytes; every packet offered is
//! either kept or counted in [`KeeperStats`] with the reason; a packet cut to the
//! snap length is counted too. Lookups ([`PacketKeeper::collect`]) match the flow
//! key's 64-bit hash and the flow's time range.

use super::key::FlowKey;
use super::table::packet_key;
use crate::decode::{Fragment, Packet};
use serde::Serialize;
use std::sync::{Arc, Mutex};

/// Packets kept per flow by default (64): a TLS or QUIC handshake and the first
/// exchanges of the application, enough to see how the transmission started.
pub const DEFAULT_PACKETS_PER_FLOW: u16 = 64;
/// Bytes kept of each frame by default (256): link, IP and transport headers and
/// the start of the payload (TLS record headers); payloads are encrypted anyway.
pub const DEFAULT_SNAP_BYTES: u16 = 256;
/// Ring size per shard by default (64 MiB): about 200,000 snapped packets.
pub const DEFAULT_MEMORY_BYTES: usize = 64 << 20;
/// Smallest ring accepted (1 MiB): a ring smaller than a few flows' packets keeps nothing useful.
pub const MIN_MEMORY_BYTES: usize = 1 << 20;
/// Largest ring accepted per shard (4 GiB).
pub const MAX_MEMORY_BYTES: usize = 4 << 30;
/// Ring bytes per flow index entry (1 KiB): the index holds about as many flows
/// as the ring can hold a few packets of.
pub const RING_BYTES_PER_INDEX_ENTRY: usize = 1024;
/// Index slots probed for a flow before the packet is counted as `index_full`.
pub const INDEX_PROBES: usize = 8;
/// Bytes of the header stored before each kept frame.
const HEADER: usize = 32;
/// Marks a ring record that only fills the end of the ring.
const SKIP: u32 = u32::MAX;

/// Keeper bounds (validated config: `[evidence]` in the configuration file).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeeperConfig {
    pub packets_per_flow: u16,
    pub snap_bytes: u16,
    pub memory_bytes: usize,
    /// A flow quiet this long counts its packets from zero again.
    pub idle_reset_ns: u64,
}

impl Default for KeeperConfig {
    fn default() -> Self {
        KeeperConfig {
            packets_per_flow: DEFAULT_PACKETS_PER_FLOW,
            snap_bytes: DEFAULT_SNAP_BYTES,
            memory_bytes: DEFAULT_MEMORY_BYTES,
            idle_reset_ns: 300_000_000_000,
        }
    }
}

/// What the keeper did with the packets offered (summed over shards in `nightjar.stats`).
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct KeeperStats {
    /// Packets stored.
    pub kept: u64,
    /// Frame bytes stored.
    pub kept_bytes: u64,
    /// Stored packets cut to the snap length.
    pub snapped: u64,
    /// Packets not stored: their flow already had `packets_per_flow`.
    pub over_flow_limit: u64,
    /// Packets not stored: no free index slot among the probes.
    pub index_full: u64,
    /// Stored packets overwritten by newer ones (the ring is full).
    pub overwritten: u64,
    /// Packets not stored: no flow key (not IP, or a non-first fragment).
    pub unkeyed: u64,
}

impl KeeperStats {
    pub fn merge(&mut self, o: &KeeperStats) {
        self.kept += o.kept;
        self.kept_bytes += o.kept_bytes;
        self.snapped += o.snapped;
        self.over_flow_limit += o.over_flow_limit;
        self.index_full += o.index_full;
        self.overwritten += o.overwritten;
        self.unkeyed += o.unkeyed;
    }
}

/// A packet handed out for an evidence bundle.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeptPacket {
    pub ts_ns: u64,
    pub linktype: u16,
    pub orig_len: u32,
    pub data: Vec<u8>,
}

#[derive(Clone, Copy, Default)]
struct Entry {
    /// Flow key hash; 0 = free.
    hash: u64,
    last_ns: u64,
    kept: u16,
}

/// One shard's packet keeper.
pub struct PacketKeeper {
    cfg: KeeperConfig,
    ring: Box<[u8]>,
    head: usize,
    tail: usize,
    used: usize,
    index: Box<[Entry]>,
    pub stats: KeeperStats,
}

fn rd32(b: &[u8], at: usize) -> u32 {
    let mut x = [0u8; 4];
    x.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(x)
}

fn rd64(b: &[u8], at: usize) -> u64 {
    let mut x = [0u8; 8];
    x.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(x)
}

/// The hash a kept packet is filed under: the canonical flow key's, never 0.
pub fn key_hash(key: &FlowKey) -> u64 {
    key.symmetric_hash().max(1)
}

impl PacketKeeper {
    /// Allocates the ring and the index (the config is validated: sizes in range).
    pub fn new(cfg: KeeperConfig) -> PacketKeeper {
        let memory = cfg.memory_bytes.clamp(MIN_MEMORY_BYTES, MAX_MEMORY_BYTES) & !7;
        let entries = (memory / RING_BYTES_PER_INDEX_ENTRY).next_power_of_two();
        PacketKeeper {
            cfg,
            ring: vec![0u8; memory].into_boxed_slice(),
            head: 0,
            tail: 0,
            used: 0,
            index: vec![Entry::default(); entries].into_boxed_slice(),
            stats: KeeperStats::default(),
        }
    }

    /// Offers one frame and its decoded packet at packet time `ts_ns`.
    pub fn keep(&mut self, ts_ns: u64, linktype: u16, frame: &[u8], orig_len: u32, pkt: &Packet) {
        if matches!(pkt.fragment, Fragment::Later { .. }) {
            self.stats.unkeyed += 1;
            return;
        }
        let (key, _) = packet_key(pkt);
        self.keep_hashed(key_hash(&key), ts_ns, linktype, frame, orig_len);
    }

    /// Offers a frame already filed under `hash`.
    pub fn keep_hashed(
        &mut self,
        hash: u64,
        ts_ns: u64,
        linktype: u16,
        frame: &[u8],
        orig_len: u32,
    ) {
        let mask = self.index.len() - 1;
        let mut found = None;
        let mut free = None;
        for i in 0..INDEX_PROBES {
            let slot = (hash as usize).wrapping_add(i) & mask;
            let e = self.index[slot];
            if e.hash == hash {
                found = Some(slot);
                break;
            }
            let stale = e.hash == 0 || ts_ns.saturating_sub(e.last_ns) > self.cfg.idle_reset_ns;
            if stale && free.is_none() {
                free = Some(slot);
            }
        }
        let slot = match (found, free) {
            (Some(s), _) => s,
            (None, Some(s)) => {
                self.index[s] = Entry {
                    hash,
                    last_ns: ts_ns,
                    kept: 0,
                };
                s
            }
            (None, None) => {
                self.stats.index_full += 1;
                return;
            }
        };
        let e = &mut self.index[slot];
        if ts_ns.saturating_sub(e.last_ns) > self.cfg.idle_reset_ns {
            e.kept = 0;
        }
        e.last_ns = e.last_ns.max(ts_ns);
        if e.kept >= self.cfg.packets_per_flow {
            self.stats.over_flow_limit += 1;
            return;
        }
        e.kept += 1;
        let cap = frame.len().min(usize::from(self.cfg.snap_bytes));
        if cap < frame.len() {
            self.stats.snapped += 1;
        }
        self.append(
            hash,
            ts_ns,
            linktype,
            &frame[..cap],
            orig_len.max(frame.len() as u32),
        );
    }

    fn evict_one(&mut self) {
        let len = rd32(&self.ring, self.tail) as usize;
        if rd32(&self.ring, self.tail + 4) != SKIP {
            self.stats.overwritten += 1;
        }
        self.used -= len;
        self.tail += len;
        if self.tail >= self.ring.len() {
            self.tail = 0;
        }
        if self.used == 0 {
            self.head = 0;
            self.tail = 0;
        }
    }

    fn make_room(&mut self, n: usize) {
        while self.ring.len() - self.used < n {
            self.evict_one();
        }
    }

    fn append(&mut self, hash: u64, ts_ns: u64, linktype: u16, data: &[u8], orig_len: u32) {
        let n = (HEADER + data.len() + 7) & !7;
        let cap = self.ring.len();
        if self.head + n > cap {
            // The record does not fit before the end: fill the end with a skip record.
            let gap = cap - self.head;
            self.make_room(gap);
            let at = self.head;
            self.ring[at..at + 4].copy_from_slice(&(gap as u32).to_le_bytes());
            self.ring[at + 4..at + 8].copy_from_slice(&SKIP.to_le_bytes());
            self.used += gap;
            self.head = 0;
        }
        self.make_room(n);
        let at = self.head;
        let r = &mut self.ring[at..at + n];
        r[0..4].copy_from_slice(&(n as u32).to_le_bytes());
        r[4..8].copy_from_slice(&(data.len() as u32).to_le_bytes());
        r[8..12].copy_from_slice(&orig_len.to_le_bytes());
        r[12..14].copy_from_slice(&linktype.to_le_bytes());
        r[14..16].copy_from_slice(&[0, 0]);
        r[16..24].copy_from_slice(&ts_ns.to_le_bytes());
        r[24..32].copy_from_slice(&hash.to_le_bytes());
        r[HEADER..HEADER + data.len()].copy_from_slice(data);
        self.used += n;
        self.head += n;
        if self.head >= cap {
            self.head = 0;
        }
        self.stats.kept += 1;
        self.stats.kept_bytes += data.len() as u64;
    }

    /// Appends to `out` the packets held for the flow key hash `hash` with a time in
    /// `[lo_ns, hi_ns]`, oldest first.
    pub fn collect(&self, hash: u64, lo_ns: u64, hi_ns: u64, out: &mut Vec<KeptPacket>) {
        let (mut at, mut left) = (self.tail, self.used);
        while left > 0 {
            let len = rd32(&self.ring, at) as usize;
            let cap = rd32(&self.ring, at + 4);
            if cap != SKIP && rd64(&self.ring, at + 24) == hash {
                let ts = rd64(&self.ring, at + 16);
                if (lo_ns..=hi_ns).contains(&ts) {
                    let cap = cap as usize;
                    out.push(KeptPacket {
                        ts_ns: ts,
                        linktype: u16::from_le_bytes([self.ring[at + 12], self.ring[at + 13]]),
                        orig_len: rd32(&self.ring, at + 8),
                        data: self.ring[at + HEADER..at + HEADER + cap].to_vec(),
                    });
                }
            }
            left -= len;
            at += len;
            if at >= self.ring.len() {
                at = 0;
            }
        }
    }
}

/// Offers a frame to a shard's keeper, if it has one (the pipeline's one call per
/// packet; without a keeper it costs a branch).
pub fn offer(
    keeper: Option<&Mutex<PacketKeeper>>,
    ts_ns: u64,
    linktype: u16,
    frame: &[u8],
    orig_len: u32,
    pkt: &Packet,
) {
    if let Some(k) = keeper {
        if let Ok(mut k) = k.lock() {
            k.keep(ts_ns, linktype, frame, orig_len, pkt);
        }
    }
}

/// The keepers of all shards, shared by the shards (which fill them) and the
/// correlator (which reads them when it writes an evidence bundle).
pub struct PacketStore {
    cfg: KeeperConfig,
    shards: Mutex<Vec<Arc<Mutex<PacketKeeper>>>>,
}

impl PacketStore {
    pub fn new(cfg: KeeperConfig) -> PacketStore {
        PacketStore {
            cfg,
            shards: Mutex::new(Vec::new()),
        }
    }

    pub fn config(&self) -> KeeperConfig {
        self.cfg
    }

    /// A new keeper for one shard (allocated now), registered for lookups.
    pub fn attach(&self) -> Arc<Mutex<PacketKeeper>> {
        let k = Arc::new(Mutex::new(PacketKeeper::new(self.cfg)));
        if let Ok(mut s) = self.shards.lock() {
            s.push(k.clone());
        }
        k
    }

    /// The packets held in any shard for `key` in `[lo_ns, hi_ns]`, oldest first.
    pub fn collect(&self, key: &FlowKey, lo_ns: u64, hi_ns: u64, out: &mut Vec<KeptPacket>) {
        let hash = key_hash(key);
        let shards: Vec<Arc<Mutex<PacketKeeper>>> = match self.shards.lock() {
            Ok(s) => s.clone(),
            Err(_) => return,
        };
        for k in shards {
            if let Ok(k) = k.lock() {
                k.collect(hash, lo_ns, hi_ns, out);
            }
        }
        out.sort_by_key(|p| p.ts_ns);
    }

    /// Counters summed over the shards.
    pub fn stats(&self) -> KeeperStats {
        let mut total = KeeperStats::default();
        if let Ok(s) = self.shards.lock() {
            for k in s.iter() {
                if let Ok(k) = k.lock() {
                    total.merge(&k.stats);
                }
            }
        }
        total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> PacketKeeper {
        PacketKeeper::new(KeeperConfig {
            packets_per_flow: 4,
            snap_bytes: 100,
            memory_bytes: MIN_MEMORY_BYTES,
            idle_reset_ns: 1_000,
        })
    }

    #[test]
    fn keeps_the_first_packets_of_a_flow_and_counts_the_rest() {
        let mut k = small();
        for i in 0..10u64 {
            k.keep_hashed(7, 100 + i, 1, &[i as u8; 60], 60);
        }
        let mut out = Vec::new();
        k.collect(7, 0, u64::MAX, &mut out);
        assert_eq!(out.len(), 4);
        assert_eq!(out[0].data, vec![0u8; 60]);
        assert_eq!(out[3].ts_ns, 103);
        assert_eq!(k.stats.kept, 4);
        assert_eq!(k.stats.over_flow_limit, 6);
        // Another flow, and a time range that excludes it.
        k.keep_hashed(9, 500, 1, &[1; 200], 1500);
        out.clear();
        k.collect(9, 0, 499, &mut out);
        assert!(out.is_empty());
        k.collect(9, 500, 500, &mut out);
        assert_eq!(out[0].data.len(), 100);
        assert_eq!(out[0].orig_len, 1500);
        assert_eq!(k.stats.snapped, 1);
        // After an idle gap the key counts from zero again (a new flow).
        k.keep_hashed(7, 5_000, 1, &[2; 60], 60);
        out.clear();
        k.collect(7, 5_000, 5_000, &mut out);
        assert_eq!(out.len(), 1);
    }

    #[test]
    fn the_ring_overwrites_the_oldest_and_counts_it() {
        let mut k = PacketKeeper::new(KeeperConfig {
            packets_per_flow: u16::MAX,
            snap_bytes: 1000,
            memory_bytes: MIN_MEMORY_BYTES,
            idle_reset_ns: u64::MAX,
        });
        // 3,000 records of 1,032 bytes: about three times the ring.
        for i in 0..3000u64 {
            k.keep_hashed(1 + i % 3, i, 1, &[i as u8; 1000], 1000);
        }
        assert!(k.stats.overwritten > 1500);
        assert_eq!(k.stats.kept, 3000);
        let mut out = Vec::new();
        for h in 1..=3 {
            k.collect(h, 0, u64::MAX, &mut out);
        }
        assert_eq!(out.len() as u64, k.stats.kept - k.stats.overwritten);
        // What is left is the newest, intact.
        assert!(out.iter().all(|p| p.ts_ns >= 3000 - out.len() as u64 - 3));
        assert!(out
            .iter()
            .all(|p| p.data.iter().all(|&b| b == p.ts_ns as u8)));
        assert!(k.used <= k.ring.len());
    }

    #[test]
    fn a_full_index_counts_the_packet() {
        let mut k = small();
        let n = k.index.len() as u64;
        // Every hash lands on the same probe run: the ninth flow finds no slot.
        for f in 0..=INDEX_PROBES as u64 {
            k.keep_hashed(1 + f * n, 10, 1, &[0; 10], 10);
        }
        assert_eq!(k.stats.index_full, 1);
        assert_eq!(k.stats.kept, INDEX_PROBES as u64);
    }
}
