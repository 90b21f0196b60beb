//! The bounded flow table of one shard, and the per-packet flow logic.
//!
//! Storage: a slab of flows (`Vec<Slot>`, flows held in place, with a free
//! list) indexed by a hash table of slot numbers: the key is stored once, in
//! the flow, and the table hashes and compares through the slab. Expiry: one FIFO queue of `(slot, generation)`
//! per timeout class; an entry whose flow was touched since it was queued is
//! re-queued behind, so every step of a sweep is O(1) amortized.
//!
//! The map hashes keys with foldhash (a few multiplies per key, where SipHash
//! took a tenth of the per-packet time) keyed once per run from the operating
//! system's randomness ([`flow_hash_state`]). The sensor never shows a hash
//! value or the map's order (records are emitted in packet-time order and
//! `flush` walks the slab), so a sender cannot learn the key to aim colliding
//! five-tuples at one bucket; and a flood of distinct tuples is bounded by
//! `max_flows` whatever the hash does.

use super::community_id::{community_id, DEFAULT_SEED};
use super::defrag::Defrag;
use super::inspect::{self, Inspector};
use super::key::{FlowKey, Side};
use super::profile::ProfileState;
use super::stats::FlowStats;
use crate::capture::LinkType;
use crate::decode::{decode, Encap, EncapChain, Fragment, Packet, Vlans, L4};
use crate::observation::{ClientReason, DirectionStats, FlowSummary, Observation, Termination};
use foldhash::fast::SeedableRandomState;
use foldhash::SharedSeed;
use hashbrown::HashTable;
use std::collections::VecDeque;
use std::hash::BuildHasher;
use std::sync::OnceLock;

const NS: u64 = 1_000_000_000;

/// How often, in packet time, idle flows are swept out of the table. Sweeps fall on
/// whole multiples of it (the sweep boundaries), the same for every shard.
pub const SWEEP_INTERVAL_NS: u64 = NS;

/// The last sweep boundary at or before `ns`.
fn boundary_at_or_before(ns: u64) -> u64 {
    ns - ns % SWEEP_INTERVAL_NS
}

/// The first sweep boundary at which a flow last seen at `last_ns` is idle past
/// `timeout`: the emit time of a flow that ends idle in a sweep. It depends on the flow
/// alone, not on which shard holds it or when that shard next sees a packet, so the
/// records and their order are the same for any number of workers.
fn idle_boundary(last_ns: u64, timeout: u64) -> u64 {
    let deadline = last_ns.saturating_add(timeout).saturating_add(1);
    deadline
        .div_ceil(SWEEP_INTERVAL_NS)
        .saturating_mul(SWEEP_INTERVAL_NS)
}

/// How many stale queue entries one eviction may skip before it takes the
/// oldest entry it has: bounds the work a full table adds to one packet.
const EVICT_SCAN_LIMIT: usize = 64;

/// Flow-table settings (validated: all durations are positive).
#[derive(Clone, Debug)]
pub struct FlowConfig {
    /// Most flows one shard holds at once.
    pub max_flows: usize,
    pub tcp_timeout_ns: u64,
    /// Idle time after FIN from both sides or RST before the record is written
    /// (late retransmissions and ACKs still join the flow).
    pub tcp_closed_timeout_ns: u64,
    pub udp_timeout_ns: u64,
    pub other_timeout_ns: u64,
    /// A flow active for this long gets an interim record, then again each period.
    pub active_timeout_ns: u64,
    /// Idle gap that separates bursts in the timing profile.
    pub burst_gap_ns: u64,
}

impl Default for FlowConfig {
    fn default() -> Self {
        FlowConfig {
            max_flows: 1_000_000,
            tcp_timeout_ns: 300 * NS,
            tcp_closed_timeout_ns: 5 * NS,
            udp_timeout_ns: 60 * NS,
            other_timeout_ns: 60 * NS,
            active_timeout_ns: 1800 * NS,
            burst_gap_ns: NS,
        }
    }
}

/// The flow map's hasher state: foldhash with a shared seed drawn once per run
/// and a per-shard seed, both from the OS's randomness (std's `RandomState`
/// keys come from it; hashing a constant with one yields 64 random bits).
fn flow_hash_state() -> SeedableRandomState {
    static SHARED: OnceLock<SharedSeed> = OnceLock::new();
    let random = || std::hash::RandomState::new().hash_one(0x6e6a_u64);
    let shared = SHARED.get_or_init(|| SharedSeed::from_u64(random()));
    SeedableRandomState::with_seed(random(), shared)
}

/// Timeout classes, each with its own expiry queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Class {
    Tcp = 0,
    TcpClosed = 1,
    Udp = 2,
    Other = 3,
}
const CLASSES: usize = 4;

/// TCP state of a flow: each side's initial sequence number and the FIN/RST seen.
#[derive(Default)]
struct Tcp {
    /// Valid where the `ISN_SEEN` bit of that side is set.
    isn: [u32; 2],
    /// `ISN_SEEN << side`, `FIN_SEEN << side`, `RST_SEEN`.
    bits: u8,
}

const ISN_SEEN: u8 = 0x01;
const FIN_SEEN: u8 = 0x04;
const RST_SEEN: u8 = 0x10;

impl Tcp {
    fn closed(&self) -> bool {
        self.rst() || self.bits & (FIN_SEEN * 3) == FIN_SEEN * 3
    }

    fn rst(&self) -> bool {
        self.bits & RST_SEEN != 0
    }

    fn isn(&self) -> [Option<u32>; 2] {
        [0, 1].map(|i| (self.bits & (ISN_SEEN << i) != 0).then_some(self.isn[i]))
    }
}

struct Flow {
    key: FlowKey,
    id: u64,
    client: Side,
    client_reason: ClientReason,
    class: Class,
    start_ns: u64,
    last_ns: u64,
    interim_from_ns: u64,
    sides: [DirectionStats; 2],
    /// Labels of the encapsulation layers (`None` for most flows: no allocation).
    encap: Option<Box<EncapLabels>>,
    tcp: Tcp,
    profile: ProfileState,
    /// Saturating (u32: a flow with four billion truncated packets is counted as that many).
    truncated_packets: u32,
    fragments: u32,
    inspector: Inspector,
}

/// The labels of a flow's encapsulation layers, outer first (boxed in the flow:
/// one pointer there, where a slice would take two).
struct EncapLabels(Vec<String>);

/// A slab entry: the flow held in place (no allocation per flow), and a
/// generation that changes each time the slot is freed.
struct Slot {
    gen: u32,
    flow: Option<Flow>,
}

struct QueueEntry {
    slot: u32,
    gen: u32,
    /// The flow's `last_ns` when it was queued: if it changed, the entry is stale.
    last_ns: u64,
}

/// One worker's flow table and the per-packet logic.
pub struct Shard {
    cfg: FlowConfig,
    /// Slot numbers, hashed by their flow's key (bounded by `max_flows`).
    map: HashTable<u32>,
    hasher: SeedableRandomState,
    slots: Vec<Slot>,
    free: Vec<u32>,
    queues: [VecDeque<QueueEntry>; CLASSES],
    defrag: Defrag,
    now_ns: u64,
    next_sweep_ns: u64,
    pub stats: FlowStats,
}

fn timeout_class(proto: u8) -> Class {
    match proto {
        6 => Class::Tcp,
        17 => Class::Udp,
        _ => Class::Other,
    }
}

/// Well-known service ports above 1023 that the port heuristic treats as servers.
const HIGH_SERVICE_PORTS: &[u16] = &[
    1194, 1812, 1813, 3478, 4500, 5060, 5061, 5223, 5228, 8080, 8443, 9001,
];

fn is_service_port(p: u16) -> bool {
    p < 1024 || HIGH_SERVICE_PORTS.contains(&p)
}

const TCP_FIN: u8 = 0x01;
const TCP_SYN: u8 = 0x02;
const TCP_RST: u8 = 0x04;
const TCP_ACK: u8 = 0x10;

/// The (up to two) VLAN ids of a packet as a fixed pair, 0 for none.
pub fn vlan_pair(v: &Vlans) -> [u16; 2] {
    let s = v.as_slice();
    [
        s.first().copied().unwrap_or(0),
        s.get(1).copied().unwrap_or(0),
    ]
}

/// The ports of a packet's transport header (0 when it has none).
pub fn ports(l4: &L4<'_>) -> (u16, u16) {
    match *l4 {
        L4::Tcp(t) => (t.src_port, t.dst_port),
        L4::Udp {
            src_port, dst_port, ..
        } => (src_port, dst_port),
        L4::Other { .. } => (0, 0),
    }
}

/// The canonical flow key of a decoded packet, and which side sent it.
pub fn packet_key(pkt: &Packet<'_>) -> (FlowKey, Side) {
    let (sport, dport) = ports(&pkt.l4);
    FlowKey::new(
        pkt.ip.src,
        sport,
        pkt.ip.dst,
        dport,
        pkt.ip.proto,
        vlan_pair(&pkt.vlans),
    )
}

/// A short label for one encapsulation layer, as records show it.
fn encap_label(e: &Encap) -> String {
    match *e {
        Encap::Vlan(id) => format!("vlan:{id}"),
        Encap::Mpls(label) => format!("mpls:{label}"),
        Encap::Pppoe(sid) => format!("pppoe:{sid}"),
        Encap::Gre { key: Some(k) } => format!("gre:{k}"),
        Encap::Gre { key: None } => "gre".into(),
        Encap::Erspan { version, session } => format!("erspan{}:{session}", version + 1),
        Encap::Vxlan(vni) => format!("vxlan:{vni}"),
        Encap::Geneve(vni) => format!("geneve:{vni}"),
        Encap::IpInIp => "ip-in-ip".into(),
        Encap::GtpU(teid) => format!("gtp-u:{teid}"),
        Encap::Teredo => "teredo".into(),
        Encap::VnTag => "vntag".into(),
    }
}

impl Shard {
    pub fn new(cfg: FlowConfig) -> Shard {
        Shard {
            cfg,
            map: HashTable::new(),
            hasher: flow_hash_state(),
            slots: Vec::new(),
            free: Vec::new(),
            queues: Default::default(),
            defrag: Defrag::default(),
            now_ns: 0,
            next_sweep_ns: 0,
            stats: FlowStats::default(),
        }
    }

    /// Packet time as this shard has seen it.
    pub fn now_ns(&self) -> u64 {
        self.now_ns
    }

    pub fn active(&self) -> usize {
        self.map.len()
    }

    fn timeout(&self, class: Class) -> u64 {
        match class {
            Class::Tcp => self.cfg.tcp_timeout_ns,
            Class::TcpClosed => self.cfg.tcp_closed_timeout_ns,
            Class::Udp => self.cfg.udp_timeout_ns,
            Class::Other => self.cfg.other_timeout_ns,
        }
    }

    /// Advances the shard clock to `now_ns` without a packet and sweeps idle
    /// flows (live capture on a quiet link: time still passes). A clock older
    /// than the shard's is ignored, so packet time stays monotonic.
    pub fn advance(&mut self, now_ns: u64, out: &mut Vec<Observation>) {
        if now_ns <= self.now_ns {
            return;
        }
        self.now_ns = now_ns;
        if now_ns >= self.next_sweep_ns {
            self.sweep(out);
        }
    }

    /// Processes one decoded packet at packet time `ts_ns`; finished flows and
    /// other observations are pushed to `out`.
    pub fn process(&mut self, ts_ns: u64, pkt: &Packet<'_>, out: &mut Vec<Observation>) {
        if ts_ns < self.now_ns {
            self.stats.ts_backwards += 1;
        } else {
            self.now_ns = ts_ns;
        }
        let clock = self.now_ns;
        if clock >= self.next_sweep_ns {
            self.sweep(out);
        }

        if pkt.fragment != Fragment::None {
            // Fragments are held until their datagram is whole, then counted once.
            if let Some(whole) = self.defrag.insert(ts_ns, pkt, &mut self.stats) {
                match decode(LinkType::RAW, &whole.bytes) {
                    Ok(mut inner) => {
                        if inner.vlans.as_slice().is_empty() {
                            inner.vlans = whole.vlans;
                        }
                        inner.src_mac = inner.src_mac.or(whole.src_mac);
                        inner.dst_mac = inner.dst_mac.or(whole.dst_mac);
                        inner.encap = EncapChain::nested(&whole.encap, &inner.encap);
                        self.process_packet(ts_ns, &inner, whole.fragments, out);
                    }
                    // The reason is a decode one (`decode_anomalies`); here it is the
                    // reassembly's outcome that is counted, under the `defrag_` prefix.
                    Err(_) => self.stats.anomaly("defrag_undecodable"),
                }
            }
            return;
        }
        self.process_packet(ts_ns, pkt, 0, out);
    }

    /// Accounts one whole packet (`fragments`: how many fragments it was rebuilt from).
    fn process_packet(
        &mut self,
        ts_ns: u64,
        pkt: &Packet<'_>,
        fragments: u32,
        out: &mut Vec<Observation>,
    ) {
        // The flow's own times are the packet's; the shard clock only drives sweeps.
        let now = ts_ns;
        let (sport, dport, tcp_flags, seq, payload) = match pkt.l4 {
            L4::Tcp(t) => (t.src_port, t.dst_port, t.flags, t.seq, t.payload),
            L4::Udp {
                src_port,
                dst_port,
                payload,
            } => (src_port, dst_port, 0, 0, payload),
            L4::Other { payload, .. } => (0, 0, 0, 0, payload),
        };
        let (key, side) = FlowKey::new(
            pkt.ip.src,
            sport,
            pkt.ip.dst,
            dport,
            pkt.ip.proto,
            vlan_pair(&pkt.vlans),
        );
        let is_syn = tcp_flags & (TCP_SYN | TCP_ACK) == TCP_SYN;

        let hash = self.hasher.hash_one(key);
        let slots = &self.slots;
        let mut slot = self
            .map
            .find(hash, |&s| {
                slots[s as usize]
                    .flow
                    .as_ref()
                    .is_some_and(|f| f.key == key)
            })
            .copied();
        if let Some(s) = slot {
            let flow = self.flow(s);
            let expired = now.saturating_sub(flow.last_ns) > self.timeout(flow.class);
            let reused = is_syn
                && flow.tcp.closed()
                && flow.tcp.isn()[side.index()].is_some_and(|isn| isn != seq);
            if expired || reused {
                // Not swept yet, so its idle boundary is still ahead: it ends now.
                let reason = Self::end_reason(flow, expired);
                out.push(self.finish(s, reason, now));
                slot = None;
            }
        }
        let s = match slot {
            Some(s) => s,
            None => self.create(key, hash, side, pkt, tcp_flags, payload, now, out),
        };

        let burst_gap = self.cfg.burst_gap_ns;
        let active_timeout = self.cfg.active_timeout_ns;
        let flow = self.slots[s as usize]
            .flow
            .as_mut()
            .expect("mapped slot holds a flow");
        let was_closed = flow.tcp.closed();
        let d = &mut flow.sides[side.index()];
        if d.packets == 0 {
            d.mac = pkt.src_mac;
        }
        d.packets += 1;
        d.ip_bytes += u64::from(pkt.ip.ip_len);
        d.payload_bytes += u64::from(pkt.l4_payload_len);
        d.tcp_flags |= tcp_flags;
        flow.last_ns = flow.last_ns.max(now);
        flow.truncated_packets = flow
            .truncated_packets
            .saturating_add(u32::from(pkt.truncated));
        flow.fragments = flow.fragments.saturating_add(fragments);
        flow.profile.update(
            now,
            pkt.l4_payload_len,
            side == flow.client,
            burst_gap,
            flow.start_ns,
        );

        if key.proto == 6 {
            let i = side.index();
            if tcp_flags & TCP_SYN != 0 {
                flow.tcp.isn[i] = seq;
                flow.tcp.bits |= ISN_SEEN << i;
            }
            if tcp_flags & TCP_FIN != 0 {
                flow.tcp.bits |= FIN_SEEN << i;
            }
            if tcp_flags & TCP_RST != 0 {
                flow.tcp.bits |= RST_SEEN;
            }
        }

        let seen = inspect::Seen {
            side,
            seq,
            tcp_flags,
            payload,
            ts_ns: now,
            src_mac: pkt.src_mac,
        };
        let outcome = inspect::on_packet(
            &mut flow.inspector,
            &key,
            flow.id,
            flow.client,
            seen,
            &flow.tcp.isn(),
            out,
            &mut self.stats,
        );
        if let Some(client) = outcome.client_is {
            // A ClientHello names the client more surely than ports or packet order.
            if client != flow.client && flow.client_reason > ClientReason::ClientHello {
                flow.client = client;
                flow.profile.swap_direction();
            }
            if flow.client_reason > ClientReason::ClientHello {
                flow.client_reason = ClientReason::ClientHello;
            }
        }

        let interim_due = now.saturating_sub(flow.interim_from_ns) >= active_timeout;
        let newly_closed = !was_closed && flow.tcp.closed();
        if newly_closed {
            flow.class = Class::TcpClosed;
        }
        if newly_closed {
            self.enqueue(s);
        }
        if interim_due {
            self.flow_mut(s).interim_from_ns = now;
            self.stats.interim += 1;
            out.push(Observation::Flow(self.summary(
                s,
                Termination::ActiveTimeout,
                now,
            )));
        }
    }

    fn end_reason(flow: &Flow, expired: bool) -> Termination {
        if flow.tcp.rst() {
            Termination::Rst
        } else if flow.tcp.closed() {
            Termination::Fin
        } else if expired {
            Termination::IdleTimeout
        } else {
            Termination::Fin
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn create(
        &mut self,
        key: FlowKey,
        hash: u64,
        side: Side,
        pkt: &Packet<'_>,
        flags: u8,
        payload: &[u8],
        now: u64,
        out: &mut Vec<Observation>,
    ) -> u32 {
        if self.map.len() >= self.cfg.max_flows {
            self.evict_one(out);
        }
        let (client, client_reason) = if key.proto == 6 && flags & (TCP_SYN | TCP_ACK) == TCP_SYN {
            (side, ClientReason::Syn)
        } else if key.proto == 6 && flags & (TCP_SYN | TCP_ACK) == (TCP_SYN | TCP_ACK) {
            (side.other(), ClientReason::SynAck)
        } else if inspect::looks_like_client_hello(key.proto, payload) {
            (side, ClientReason::ClientHello)
        } else {
            let (src, dst) = (key.endpoint(side).port, key.endpoint(side.other()).port);
            if is_service_port(dst) && !is_service_port(src) {
                (side, ClientReason::Port)
            } else if is_service_port(src) && !is_service_port(dst) {
                (side.other(), ClientReason::Port)
            } else {
                (side, ClientReason::FirstPacket)
            }
        };
        let id = key.symmetric_hash() ^ now.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        let encap = pkt.encap.as_slice();
        let flow = Flow {
            key,
            id,
            client,
            client_reason,
            class: timeout_class(key.proto),
            start_ns: now,
            last_ns: now,
            interim_from_ns: now,
            sides: Default::default(),
            encap: (!encap.is_empty())
                .then(|| Box::new(EncapLabels(encap.iter().map(encap_label).collect()))),
            tcp: Tcp::default(),
            profile: ProfileState::default(),
            truncated_packets: 0,
            fragments: 0,
            inspector: Inspector::new(&key),
        };
        let s = match self.free.pop() {
            Some(s) => {
                self.slots[s as usize].flow = Some(flow);
                s
            }
            None => {
                self.slots.push(Slot {
                    gen: 0,
                    flow: Some(flow),
                });
                (self.slots.len() - 1) as u32
            }
        };
        let (hasher, slots) = (&self.hasher, &self.slots);
        self.map.insert_unique(hash, s, |&t| {
            slots[t as usize]
                .flow
                .as_ref()
                .map_or(0, |f| hasher.hash_one(f.key))
        });
        self.stats.created += 1;
        self.stats.peak_active = self.stats.peak_active.max(self.map.len() as u64);
        self.enqueue(s);
        s
    }

    fn flow(&self, s: u32) -> &Flow {
        self.slots[s as usize]
            .flow
            .as_ref()
            .expect("mapped slot holds a flow")
    }

    fn flow_mut(&mut self, s: u32) -> &mut Flow {
        self.slots[s as usize]
            .flow
            .as_mut()
            .expect("mapped slot holds a flow")
    }

    fn enqueue(&mut self, s: u32) {
        let slot = &self.slots[s as usize];
        let flow = slot.flow.as_ref().expect("enqueued slot holds a flow");
        self.queues[flow.class as usize].push_back(QueueEntry {
            slot: s,
            gen: slot.gen,
            last_ns: flow.last_ns,
        });
    }

    /// The live flow an entry refers to, if the entry is still current for this queue.
    fn entry_flow(&self, e: &QueueEntry, class: usize) -> Option<&Flow> {
        let slot = self.slots.get(e.slot as usize)?;
        let flow = slot.flow.as_ref()?;
        (slot.gen == e.gen && flow.class as usize == class).then_some(flow)
    }

    /// Emits flows idle past their timeout as of the last sweep boundary, each at its
    /// own [`idle_boundary`] (every one of them later than anything this shard emitted
    /// before: those came from packets before the previous boundary it swept at).
    fn sweep(&mut self, out: &mut Vec<Observation>) {
        let now = self.now_ns;
        let boundary = boundary_at_or_before(now);
        self.next_sweep_ns = boundary.saturating_add(SWEEP_INTERVAL_NS);
        self.defrag.expire(now, &mut self.stats);
        let first = out.len();
        for class in 0..CLASSES {
            while let Some(e) = self.queues[class].pop_front() {
                let Some(flow) = self.entry_flow(&e, class) else {
                    continue;
                };
                let timeout = self.timeout(flow.class);
                if boundary.saturating_sub(flow.last_ns) > timeout {
                    let reason = Self::end_reason(flow, true);
                    let at = idle_boundary(flow.last_ns, timeout);
                    out.push(self.finish(e.slot, reason, at));
                } else if flow.last_ns != e.last_ns {
                    // Touched since queued: goes to the back with its new time.
                    let last_ns = flow.last_ns;
                    self.queues[class].push_back(QueueEntry { last_ns, ..e });
                } else {
                    self.queues[class].push_front(e);
                    break;
                }
            }
        }
        if let Some(swept) = out.get_mut(first..) {
            swept.sort_unstable_by_key(Observation::order_key);
        }
    }

    /// Makes room for one flow: evicts the least recently active flow found at
    /// the front of the expiry queues.
    fn evict_one(&mut self, out: &mut Vec<Observation>) {
        let mut best: Option<(u64, usize)> = None;
        let mut steps = 0;
        for class in 0..CLASSES {
            while let Some(e) = self.queues[class].pop_front() {
                steps += 1;
                let Some(flow) = self.entry_flow(&e, class) else {
                    continue;
                };
                let (last_ns, fresh) = (flow.last_ns, flow.last_ns == e.last_ns);
                if !fresh && steps < EVICT_SCAN_LIMIT {
                    self.queues[class].push_back(QueueEntry { last_ns, ..e });
                    continue;
                }
                self.queues[class].push_front(QueueEntry { last_ns, ..e });
                if best.is_none_or(|(t, _)| last_ns < t) {
                    best = Some((last_ns, class));
                }
                break;
            }
        }
        if let Some((_, class)) = best {
            if let Some(e) = self.queues[class].pop_front() {
                self.stats.evicted += 1;
                out.push(self.finish(e.slot, Termination::Evicted, self.now_ns));
            }
        }
    }

    /// Removes a flow from the table and returns its final record, emitted at `at_ns`.
    fn finish(&mut self, s: u32, reason: Termination, at_ns: u64) -> Observation {
        let obs = Observation::Flow(self.summary(s, reason, at_ns));
        let slot = &mut self.slots[s as usize];
        if let Some(flow) = slot.flow.take() {
            let hash = self.hasher.hash_one(flow.key);
            if let Ok(entry) = self.map.find_entry(hash, |&t| t == s) {
                entry.remove();
            }
        }
        slot.gen = slot.gen.wrapping_add(1);
        self.free.push(s);
        if reason != Termination::Evicted {
            self.stats.expired += 1;
        }
        obs
    }

    fn summary(&self, s: u32, reason: Termination, emitted_ns: u64) -> Box<FlowSummary> {
        let f = self.flow(s);
        let (c, sv) = (f.client, f.client.other());
        let k = &f.key;
        Box::new(FlowSummary {
            id: f.id,
            client_ip: k.ip(c),
            client_port: k.endpoint(c).port,
            server_ip: k.ip(sv),
            server_port: k.endpoint(sv).port,
            proto: k.proto,
            vlans: k.vlans.iter().copied().filter(|&v| v != 0).collect(),
            encap: f.encap.as_ref().map(|e| e.0.clone()).unwrap_or_default(),
            community_id: community_id(k, DEFAULT_SEED),
            client_reason: f.client_reason,
            start_ns: f.start_ns,
            end_ns: f.last_ns,
            emitted_ns,
            termination: reason,
            interim: reason == Termination::ActiveTimeout,
            client: f.sides[c.index()].clone(),
            server: f.sides[sv.index()].clone(),
            profile: f.profile.snapshot(),
            truncated_packets: u64::from(f.truncated_packets),
            fragments: u64::from(f.fragments),
            app: f.inspector.summary(),
        })
    }

    /// Ends every flow at the end of the input (or at shutdown). `end_ns` is the newest
    /// packet time of the whole input (all shards). A flow this shard would have swept
    /// at a boundary it never reached (it saw no packet after it) ends as in that sweep,
    /// at its [`idle_boundary`]; one idle past its timeout only since the last boundary
    /// ends idle at `end_ns`; the rest end with `reason` at `end_ns`. The output is in
    /// emit-time order, then start, then id, so the records and their order do not
    /// depend on how traffic was sharded.
    pub fn flush(&mut self, reason: Termination, end_ns: u64, out: &mut Vec<Observation>) {
        self.now_ns = self.now_ns.max(end_ns);
        let (now, boundary) = (self.now_ns, boundary_at_or_before(self.now_ns));
        let mut live: Vec<(u64, u64, u64, u32)> = Vec::with_capacity(self.map.len());
        for (i, slot) in self.slots.iter().enumerate() {
            if let Some(f) = slot.flow.as_ref() {
                let timeout = self.timeout(f.class);
                let at = if boundary.saturating_sub(f.last_ns) > timeout {
                    idle_boundary(f.last_ns, timeout)
                } else {
                    now
                };
                live.push((at, f.start_ns, f.id, i as u32));
            }
        }
        // The same order as Observation::order_key.
        live.sort_unstable();
        for (at, _, _, s) in live {
            let flow = self.flow(s);
            let idle = now.saturating_sub(flow.last_ns) > self.timeout(flow.class);
            let why = if idle {
                Self::end_reason(flow, true)
            } else {
                reason
            };
            out.push(self.finish(s, why, at));
        }
        for q in &mut self.queues {
            q.clear();
        }
    }
}

/// The fixed memory of one flow in a shard, by part (bytes; what an idle flow
/// costs before any handshake bytes, names or records are held).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowFootprint {
    /// The flow: key, counters, timing profile of its first packet, inspector state.
    pub flow: usize,
    /// What its slot in the slab adds to the flow (the generation).
    pub slot: usize,
    /// Its entry in the hash table (a slot number and one control byte, at 100% load).
    pub map_entry: usize,
    /// Its entry in an expiry queue.
    pub queue_entry: usize,
    /// Not in [`FlowFootprint::total`]: what a flow of two or more packets adds,
    /// allocated once at its second packet (its timing sequence and burst counters).
    pub profile: usize,
}

impl FlowFootprint {
    pub const fn get() -> FlowFootprint {
        FlowFootprint {
            flow: std::mem::size_of::<Flow>(),
            slot: std::mem::size_of::<Slot>() - std::mem::size_of::<Flow>(),
            map_entry: std::mem::size_of::<u32>() + 1,
            queue_entry: std::mem::size_of::<QueueEntry>(),
            profile: std::mem::size_of::<super::profile::ProfileMore>(),
        }
    }

    /// The fixed bytes of a flow of one packet.
    pub const fn total(&self) -> usize {
        self.flow + self.slot + self.map_entry + self.queue_entry
    }
}
