//! Handshake inspection inside a flow: which application protocol a flow
//! speaks and what its handshake says (TLS over TCP, QUIC Initials, DNS, DHCP).
//!
//! The flow table calls [`on_packet`] for every packet of a flow while its
//! [`Inspector`] still wants bytes. Handshake bytes are reassembled per
//! direction in bounded [`StreamReassembler`]s and handed to the pure
//! parsers in `proto`. Once the handshake is read (or cannot be), the state
//! is dropped and the inspector answers in O(1) with no work: packets after
//! the handshake cost one match.
//!
//! Bounds: [`HANDSHAKE_BYTES_SERVER`] per TCP
//! direction, [`QUIC_CRYPTO_BYTES`] per QUIC direction, [`MAX_HANDSHAKE_PACKETS`]
//! packets before giving up, [`DNS_TCP_BYTES`] per DNS-over-TCP direction.

use super::key::{FlowKey, Side};
use super::reassembly::{tcp_clip, tcp_offset, StreamReassembler, HANDSHAKE_BYTES_SERVER};
use super::stats::FlowStats;
use crate::observation::{DhcpObservation, DnsObservation, Observation};
use crate::proto::quic::{self, CryptoFrame, InitialKeys, PacketKind, QuicVersion};
use crate::proto::tls::{self, ClientHello, Scan, ServerHandshake};
use crate::proto::{dhcp, dns};
use serde::{Deserialize, Serialize};

/// Packets of a flow inspected before a handshake that has not completed is
/// given up on (reported as truncated).
pub const MAX_HANDSHAKE_PACKETS: u32 = 64;
/// Payload packets of a TCP flow searched for the start of a TLS handshake
/// (after STARTTLS, a proxy's CONNECT or a database's TLS request) before
/// the flow is taken to be something else.
pub const MAX_PROBE_PACKETS: u32 = 16;
/// Bytes of a QUIC CRYPTO stream kept per direction (ClientHello, or
/// ServerHello: the server's certificate travels in Handshake packets).
pub const QUIC_CRYPTO_BYTES: usize = 16 * 1024;
/// Smallest UDP payload carrying a client Initial (RFC 9000 §14.1).
const QUIC_MIN_CLIENT_DATAGRAM: usize = 1200;
/// Bytes of a DTLS client's first datagrams kept to join a fragmented ClientHello.
pub const DTLS_CLIENT_BYTES: usize = 16 * 1024;
/// Bytes of a DNS-over-TCP stream parsed per direction.
pub const DNS_TCP_BYTES: usize = 16 * 1024;
/// DNS messages parsed per flow (a resolver flow can carry many).
pub const MAX_DNS_MESSAGES: u32 = 1024;

const DNS_PORT: u16 = 53;

/// What one packet told the flow table.
#[derive(Default)]
pub struct Outcome {
    /// The side that sent a ClientHello or QUIC client Initial.
    pub client_is: Option<Side>,
}

/// A packet as the inspector sees it.
pub struct Seen<'a> {
    pub side: Side,
    pub seq: u32,
    pub tcp_flags: u8,
    pub payload: &'a [u8],
    pub ts_ns: u64,
    pub src_mac: Option<[u8; 6]>,
}

/// What a flow's handshake said, kept after the handshake state is dropped.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct AppSummary {
    /// "tls", "quic", "dns", "dhcp" when recognised.
    #[serde(deserialize_with = "de_protocol")]
    pub protocol: Option<ProtocolName>,
    pub client_hello: Option<Box<ClientHello>>,
    pub server: Option<Box<ServerHandshake>>,
    /// A hello was started but could not be completed (gap, bound, flow ended).
    pub tls_truncated: bool,
    pub quic: Option<QuicSummary>,
    /// The first DNS response of the flow (else the first query).
    pub dns: Option<Box<dns::DnsSummary>>,
    pub dns_messages: u32,
}

/// A protocol name of [`PROTOCOLS`]. (An alias, so that serde's derive does not
/// take `Option<&'static str>` for a string borrowed from the input.)
pub type ProtocolName = &'static str;

/// The protocol names [`AppSummary::protocol`] can hold; others are refused.
const PROTOCOLS: [&str; 5] = ["tls", "quic", "dns", "dhcp", "dtls"];

fn de_protocol<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<ProtocolName>, D::Error> {
    let Some(name) = <Option<std::borrow::Cow<'de, str>>>::deserialize(d)? else {
        return Ok(None);
    };
    PROTOCOLS
        .iter()
        .find(|p| **p == name.as_ref())
        .map(|p| Some(*p))
        .ok_or_else(|| serde::de::Error::custom(format!("unknown protocol {name:?}")))
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct QuicSummary {
    /// The client Initial's version.
    pub version: u32,
    /// A ClientHello was decrypted from the Initials.
    pub decrypted: bool,
    pub retry: bool,
    pub version_negotiation: bool,
    pub initial_packets: u32,
}

/// Per-flow inspection state. What a handshake said is boxed, and only for a
/// flow whose protocol was recognised: a flow that carried none holds 24 bytes here.
pub struct Inspector {
    state: State,
    summary: Option<Box<AppSummary>>,
}

enum State {
    /// No payload yet.
    Pending,
    Tls(Box<TlsState>),
    Quic(Box<QuicState>),
    DnsUdp,
    DnsTcp(Box<[StreamReassembler; 2]>, [u32; 2]),
    Dhcp,
    /// DTLS: the client's datagrams so far (bounded by [`DTLS_CLIENT_BYTES`]).
    /// (Boxed: the variant would otherwise set the size of every flow's state.)
    Dtls(Box<(Side, Vec<u8>)>),
    /// Nothing more to learn from this flow.
    Done,
}

/// TLS over TCP. Each direction first tries the stream start (from the ISN,
/// so out-of-order segments are reassembled); if the stream does not start
/// with a TLS record (STARTTLS, proxies, database protocols), it probes the
/// next segments for one that starts a handshake record and reassembles from there.
struct TlsState {
    dirs: [TcpDir; 2],
    /// Payload packets inspected.
    packets: u32,
}

struct TcpDir {
    /// Sequence number of reassembly offset 0.
    base: Option<u32>,
    buf: StreamReassembler,
    mode: DirMode,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum DirMode {
    /// Reassembling the stream start, not yet known to be TLS.
    Start,
    /// The stream start was not TLS: watching segment starts for a TLS record.
    Probe,
    /// Reassembling a handshake that starts at `base`.
    Hello,
    Done,
}

struct QuicState {
    client: Side,
    version: QuicVersion,
    keys: Option<InitialKeys>,
    /// The client DCID the keys were derived from.
    dcid: Vec<u8>,
    /// The connection id a Retry asked the client to use next.
    retry_scid: Option<Vec<u8>>,
    crypto: [StreamReassembler; 2],
    done: [bool; 2],
    packets: u32,
    scratch: Vec<u8>,
    frames: Vec<CryptoFrame>,
}

impl Inspector {
    pub fn new(_key: &FlowKey) -> Inspector {
        Inspector {
            state: State::Pending,
            summary: None,
        }
    }

    /// The summary as it stands (an incomplete handshake counts as truncated).
    pub fn summary(&self) -> AppSummary {
        let mut s = self.summary.as_deref().cloned().unwrap_or_default();
        let started = match &self.state {
            State::Tls(t) => {
                s.client_hello.is_none()
                    && t.dirs.iter().any(|d| {
                        d.mode == DirMode::Hello
                            && first_handshake_type(d.buf.contiguous()) == Some(1)
                    })
            }
            State::Quic(q) => {
                !q.done[q.client.index()] && !q.crypto[q.client.index()].contiguous().is_empty()
            }
            _ => false,
        };
        s.tls_truncated |= started;
        s
    }
}

/// Does this first payload start a TLS ClientHello or a QUIC client Initial?
pub fn looks_like_client_hello(proto: u8, payload: &[u8]) -> bool {
    match proto {
        6 => tls::looks_like_tls_client(payload),
        17 => quic_client_initial(payload).is_some() || looks_like_dtls_client_hello(payload),
        _ => false,
    }
}

/// A DTLS handshake record (version 1.0/1.2/1.3, or OpenSSL's pre-standard 0x0100)
/// carrying a ClientHello.
fn looks_like_dtls_client_hello(p: &[u8]) -> bool {
    matches!(p, [22, 0xfe, 0xff | 0xfd | 0xfc, ..] | [22, 0x01, 0x00, ..]) && p.get(13) == Some(&1)
}

/// The version and DCID of a datagram's first packet if it is a client Initial of a known version.
fn quic_client_initial(payload: &[u8]) -> Option<(QuicVersion, &[u8])> {
    let h = quic::parse_long_headers(payload).next()?.ok()?;
    // Only clients send Initial and 0-RTT packets (0-RTT may arrive first when
    // packets are reordered); an unknown version (e.g. one that forces version
    // negotiation) counts when the datagram has a client Initial's 1,200-byte padding.
    let client_kind = match h.kind {
        PacketKind::Initial | PacketKind::ZeroRtt => h.version.is_known(),
        PacketKind::UnknownVersion => payload.len() >= QUIC_MIN_CLIENT_DATAGRAM,
        _ => false,
    };
    (client_kind && h.dcid.len() >= 8).then_some((h.version, h.dcid))
}

/// Handles one packet of a flow. `isn` are the TCP initial sequence numbers seen, per side.
#[allow(clippy::too_many_arguments)]
pub fn on_packet(
    insp: &mut Inspector,
    key: &FlowKey,
    flow_id: u64,
    client: Side,
    pkt: Seen<'_>,
    isn: &[Option<u32>; 2],
    out: &mut Vec<Observation>,
    stats: &mut FlowStats,
) -> Outcome {
    let mut outcome = Outcome::default();
    if matches!(insp.state, State::Done) || pkt.payload.is_empty() {
        return outcome;
    }
    if matches!(insp.state, State::Pending) {
        let mut summary = AppSummary::default();
        insp.state = start(key, &pkt, &mut summary, &mut outcome);
        if !matches!(insp.state, State::Done | State::Pending) || summary.protocol.is_some() {
            insp.summary = Some(Box::new(summary));
        }
    }
    if matches!(insp.state, State::Done | State::Pending) {
        return outcome;
    }
    // Every state past `start` other than Done has its summary (boxed just above).
    let summary = insp.summary.get_or_insert_with(Box::default);
    match &mut insp.state {
        State::Pending | State::Done => {}
        State::Tls(t) => {
            if tls_packet(t, &pkt, isn, summary, stats, &mut outcome) {
                insp.state = State::Done;
            }
        }
        State::Quic(q) => {
            if quic_packet(q, &pkt, summary, stats) {
                insp.state = State::Done;
            }
        }
        State::Dhcp => {
            if let Some(o) = dhcp_observation(pkt.payload, pkt.src_mac, pkt.ts_ns, stats) {
                out.push(o);
            }
        }
        State::Dtls(dtls) => {
            let (client, buf) = &mut **dtls;
            if pkt.side == *client {
                outcome.client_is = Some(*client);
                let room = DTLS_CLIENT_BYTES.saturating_sub(buf.len());
                buf.extend_from_slice(&pkt.payload[..pkt.payload.len().min(room)]);
                let full = buf.len() >= DTLS_CLIENT_BYTES;
                match tls::scan_client_dtls(buf).or_truncated(full) {
                    Scan::NeedMore => {}
                    Scan::Done(ch) => {
                        summary.client_hello = Some(Box::new(ch));
                        insp.state = State::Done;
                    }
                    Scan::Truncated => {
                        summary.tls_truncated = true;
                        stats.anomaly("dtls_client_hello_truncated");
                        insp.state = State::Done;
                    }
                    Scan::NotTls | Scan::Malformed(_) => {
                        stats.anomaly("dtls_client_hello_malformed");
                        insp.state = State::Done;
                    }
                }
            }
        }
        State::DnsUdp => {
            if summary.dns_messages < MAX_DNS_MESSAGES {
                dns_message(
                    pkt.payload,
                    key,
                    flow_id,
                    client,
                    pkt.ts_ns,
                    summary,
                    out,
                    stats,
                );
            }
        }
        State::DnsTcp(bufs, consumed) => {
            let i = pkt.side.index();
            if let Some(base) = isn[i].map(|s| s.wrapping_add(1)) {
                if let Some((off, data)) = tcp_clip(base, pkt.seq, pkt.payload) {
                    bufs[i].insert(off, data);
                }
            }
            let stream = bufs[i].contiguous();
            let from = (consumed[i] as usize).min(stream.len());
            let mut msgs = dns::split_tcp_messages(&stream[from..]);
            for m in msgs.by_ref() {
                dns_message(m, key, flow_id, client, pkt.ts_ns, summary, out, stats);
            }
            consumed[i] += msgs.consumed() as u32;
        }
    }
    outcome
}

fn start(key: &FlowKey, pkt: &Seen<'_>, summary: &mut AppSummary, outcome: &mut Outcome) -> State {
    let dns_port = key.a.port == DNS_PORT || key.b.port == DNS_PORT;
    match key.proto {
        6 if dns_port => {
            summary.protocol = Some("dns");
            State::DnsTcp(
                Box::new([
                    StreamReassembler::new(DNS_TCP_BYTES),
                    StreamReassembler::new(DNS_TCP_BYTES),
                ]),
                [0; 2],
            )
        }
        6 => State::Tls(Box::new(TlsState::new())),
        17 if dns_port => {
            summary.protocol = Some("dns");
            State::DnsUdp
        }
        17 if dhcp::is_dhcp(key.a.port, key.b.port) => {
            summary.protocol = Some("dhcp");
            State::Dhcp
        }
        17 => match quic_client_initial(pkt.payload) {
            Some((version, _)) => {
                outcome.client_is = Some(pkt.side);
                summary.protocol = Some("quic");
                summary.quic = Some(QuicSummary {
                    version: version.0,
                    ..Default::default()
                });
                State::Quic(Box::new(QuicState {
                    client: pkt.side,
                    version,
                    keys: None,
                    dcid: Vec::new(),
                    retry_scid: None,
                    crypto: [
                        StreamReassembler::new(QUIC_CRYPTO_BYTES),
                        StreamReassembler::new(QUIC_CRYPTO_BYTES),
                    ],
                    done: [false; 2],
                    packets: 0,
                    scratch: Vec::new(),
                    frames: Vec::new(),
                }))
            }
            None if looks_like_dtls_client_hello(pkt.payload) => {
                summary.protocol = Some("dtls");
                State::Dtls(Box::new((pkt.side, Vec::new())))
            }
            None => State::Done,
        },
        _ => State::Done,
    }
}

impl TlsState {
    fn new() -> TlsState {
        let dir = || TcpDir {
            base: None,
            buf: StreamReassembler::new(HANDSHAKE_BYTES_SERVER),
            mode: DirMode::Start,
        };
        TlsState {
            dirs: [dir(), dir()],
            packets: 0,
        }
    }
}

/// A TLS handshake (22) or alert (21) record header, version 3.0 to 3.4: what a
/// handshake direction starts with (a server may send a warning alert first).
fn tls_record_start(b: &[u8]) -> bool {
    matches!(b, [21 | 22, 3, 0..=4, ..])
}

/// The type of the first handshake message, past any leading alert records.
fn first_handshake_type(buf: &[u8]) -> Option<u8> {
    let mut pos = 0usize;
    loop {
        let header = buf.get(pos..pos + 5)?;
        match header[0] {
            22 => return buf.get(pos + 5).copied(),
            21 => pos += 5 + usize::from(u16::from_be_bytes([header[3], header[4]])),
            _ => return None,
        }
    }
}

/// Feeds one TCP segment; true when nothing more is to be learned.
fn tls_packet(
    t: &mut TlsState,
    pkt: &Seen<'_>,
    isn: &[Option<u32>; 2],
    summary: &mut AppSummary,
    stats: &mut FlowStats,
    outcome: &mut Outcome,
) -> bool {
    t.packets += 1;
    let i = pkt.side.index();
    // Data in a SYN (TCP Fast Open) starts one past the SYN's sequence number.
    let seq = if pkt.tcp_flags & 0x02 != 0 {
        pkt.seq.wrapping_add(1)
    } else {
        pkt.seq
    };
    let dir = &mut t.dirs[i];
    match dir.mode {
        DirMode::Start => {
            // From the ISN, unless the first data lies outside the handshake window
            // from it (a repeated SYN-ACK with another ISN): then from this segment.
            let base = *dir
                .base
                .get_or_insert_with(|| match isn[i].map(|s| s.wrapping_add(1)) {
                    Some(b)
                        if tcp_offset(b, seq)
                            .is_some_and(|off| off < HANDSHAKE_BYTES_SERVER as u64) =>
                    {
                        b
                    }
                    _ => seq,
                });
            if let Some((off, data)) = tcp_clip(base, seq, pkt.payload) {
                dir.buf.insert(off, data);
            }
            let head = dir.buf.contiguous();
            if head.len() >= 3 {
                if tls_record_start(head) {
                    dir.mode = DirMode::Hello;
                } else {
                    dir.buf.release();
                    dir.mode = DirMode::Probe;
                }
            }
        }
        DirMode::Probe if tls_record_start(pkt.payload) => {
            dir.base = Some(seq);
            dir.buf = StreamReassembler::new(HANDSHAKE_BYTES_SERVER);
            dir.buf.insert(0, pkt.payload);
            dir.mode = DirMode::Hello;
        }
        DirMode::Hello => {
            if let Some((off, data)) = dir.base.and_then(|b| tcp_clip(b, seq, pkt.payload)) {
                dir.buf.insert(off, data);
            }
        }
        DirMode::Probe | DirMode::Done => {}
    }
    if dir.mode == DirMode::Hello {
        summary.protocol = Some("tls");
        scan_tls_dir(dir, pkt.side, summary, stats, outcome);
    }
    let finished = t.dirs.iter().all(|d| d.mode == DirMode::Done);
    let probing = t
        .dirs
        .iter()
        .all(|d| matches!(d.mode, DirMode::Start | DirMode::Probe | DirMode::Done));
    if !finished && t.packets >= MAX_HANDSHAKE_PACKETS {
        for d in &t.dirs {
            if d.mode == DirMode::Hello && first_handshake_type(d.buf.contiguous()) == Some(1) {
                summary.tls_truncated = true;
                stats.anomaly("tls_client_hello_truncated");
            }
        }
        return true;
    }
    finished || (probing && t.packets >= MAX_PROBE_PACKETS)
}

/// Scans one direction's reassembled handshake bytes.
fn scan_tls_dir(
    dir: &mut TcpDir,
    side: Side,
    summary: &mut AppSummary,
    stats: &mut FlowStats,
    outcome: &mut Outcome,
) {
    let stuck = dir.buf.is_full() || dir.buf.overflowed() || dir.buf.range_limit_hit();
    let buf = dir.buf.contiguous();
    match first_handshake_type(buf) {
        // A ClientHello: this side is the client.
        Some(1) => {
            outcome.client_is = Some(side);
            match tls::scan_client_records(buf).or_truncated(stuck) {
                Scan::NeedMore => return,
                Scan::Done(ch) => {
                    if summary.client_hello.is_none() {
                        summary.client_hello = Some(Box::new(ch));
                    }
                }
                Scan::NotTls => {}
                Scan::Truncated => {
                    summary.tls_truncated = true;
                    stats.anomaly("tls_client_hello_truncated");
                }
                Scan::Malformed(_) => stats.anomaly("tls_client_hello_malformed"),
            }
        }
        Some(2) => {
            if outcome.client_is.is_none() && summary.client_hello.is_none() {
                outcome.client_is = Some(side.other());
            }
            match tls::scan_server_records(buf).or_truncated(stuck) {
                Scan::NeedMore => return,
                Scan::Done(sh) => {
                    if sh.certificate_error.is_some() {
                        stats.anomaly("tls_certificate_malformed");
                    }
                    let complete = sh.complete;
                    summary.server = Some(Box::new(sh));
                    if !complete && !stuck {
                        return;
                    }
                }
                Scan::NotTls => {}
                Scan::Truncated => stats.anomaly("tls_server_hello_truncated"),
                Scan::Malformed(_) => stats.anomaly("tls_server_hello_malformed"),
            }
        }
        None if !stuck => return,
        // Another handshake message first (or bytes that are not a hello).
        _ => {}
    }
    dir.mode = DirMode::Done;
    dir.buf.release();
}

/// Feeds one UDP datagram of a QUIC flow; true when nothing more is to be learned.
fn quic_packet(
    q: &mut QuicState,
    pkt: &Seen<'_>,
    summary: &mut AppSummary,
    stats: &mut FlowStats,
) -> bool {
    q.packets += 1;
    let from_client = pkt.side == q.client;
    let qs = summary.quic.get_or_insert_with(Default::default);
    let Some(Ok(first)) = quic::parse_long_headers(pkt.payload).next() else {
        // Short-header packets: the handshake is over or was not seen.
        return q.packets >= MAX_HANDSHAKE_PACKETS;
    };
    match first.kind {
        // Clients act on the first Retry only (RFC 9000 §17.2.5.2).
        PacketKind::Retry if !from_client && !qs.retry => {
            qs.retry = true;
            q.retry_scid = Some(first.scid.to_vec());
        }
        PacketKind::VersionNegotiation => qs.version_negotiation = true,
        _ => {}
    }
    if from_client && first.kind == PacketKind::Initial && first.version.is_known() {
        // Keys come from the first Initial of a known version (after version
        // negotiation, the client's Initial in the version the server accepts).
        if q.keys.is_none() {
            q.version = first.version;
            qs.version = first.version.0;
        }
        let rekey = q.keys.is_none() || q.retry_scid.as_deref() == Some(first.dcid);
        if rekey {
            if q.retry_scid.as_deref() == Some(first.dcid) {
                q.retry_scid = None;
                q.crypto = [
                    StreamReassembler::new(QUIC_CRYPTO_BYTES),
                    StreamReassembler::new(QUIC_CRYPTO_BYTES),
                ];
                q.done = [false; 2];
            }
            q.keys = InitialKeys::derive(q.version, first.dcid);
            q.dcid = first.dcid.to_vec();
            if q.keys.is_none() {
                stats.anomaly("quic_unknown_version");
                return true;
            }
        }
    }
    let i = pkt.side.index();
    if let Some(keys) = &q.keys {
        if !q.done[i] {
            q.frames.clear();
            match quic::open_initials(
                pkt.payload,
                keys,
                from_client,
                &mut q.scratch,
                &mut q.frames,
            ) {
                Ok(s) => qs.initial_packets += s.initial_packets,
                Err(e) => stats.anomaly(e.anomaly_key()),
            }
            for f in &q.frames {
                q.crypto[i].insert(f.offset, &f.data);
            }
            let stuck =
                q.crypto[i].is_full() || q.crypto[i].overflowed() || q.crypto[i].range_limit_hit();
            let buf = q.crypto[i].contiguous();
            if from_client {
                match tls::scan_client_messages(buf).or_truncated(stuck) {
                    Scan::NeedMore => {}
                    Scan::Done(ch) => {
                        summary.client_hello = Some(Box::new(ch));
                        qs.decrypted = true;
                        q.done[i] = true;
                    }
                    Scan::Truncated => {
                        summary.tls_truncated = true;
                        stats.anomaly("quic_client_hello_truncated");
                        q.done[i] = true;
                    }
                    Scan::NotTls | Scan::Malformed(_) => {
                        stats.anomaly("quic_client_hello_malformed");
                        q.done[i] = true;
                    }
                }
            } else {
                match tls::scan_server_messages(buf).or_truncated(stuck) {
                    Scan::NeedMore => {}
                    Scan::Done(sh) => {
                        q.done[i] = sh.hello.is_some();
                        summary.server = Some(Box::new(sh));
                    }
                    Scan::Truncated | Scan::NotTls | Scan::Malformed(_) => {
                        stats.anomaly("quic_server_hello_unreadable");
                        q.done[i] = true;
                    }
                }
            }
            if q.done[i] {
                q.crypto[i].release();
            }
        }
    }
    if q.done[0] && q.done[1] {
        return true;
    }
    if q.packets >= MAX_HANDSHAKE_PACKETS {
        if !q.done[q.client.index()] && !q.crypto[q.client.index()].contiguous().is_empty() {
            summary.tls_truncated = true;
        }
        return true;
    }
    false
}

#[allow(clippy::too_many_arguments)]
fn dns_message(
    bytes: &[u8],
    key: &FlowKey,
    flow_id: u64,
    client: Side,
    ts_ns: u64,
    summary: &mut AppSummary,
    out: &mut Vec<Observation>,
    stats: &mut FlowStats,
) {
    summary.dns_messages += 1;
    let msg = match dns::parse_message(bytes) {
        Ok(m) => m,
        Err(e) => {
            stats.anomaly(e.anomaly_key());
            return;
        }
    };
    for a in &msg.anomalies {
        stats.anomaly(a.anomaly_key());
    }
    let keep = match &summary.dns {
        None => true,
        Some(prev) => !prev.is_response && msg.is_response,
    };
    if keep {
        summary.dns = Some(Box::new(msg.clone()));
    }
    let server = client.other();
    out.push(Observation::Dns(Box::new(DnsObservation {
        ts_ns,
        flow_id,
        client_ip: key.ip(client),
        client_port: key.endpoint(client).port,
        server_ip: key.ip(server),
        server_port: key.endpoint(server).port,
        proto: key.proto,
        community_id: super::community_id::community_id(key, super::community_id::DEFAULT_SEED),
        message: msg,
    })));
}

/// Parses a DHCP datagram into an observation for the identity stage.
fn dhcp_observation(
    payload: &[u8],
    src_mac: Option<[u8; 6]>,
    ts_ns: u64,
    stats: &mut FlowStats,
) -> Option<Observation> {
    match dhcp::parse_dhcpv4(payload) {
        Ok(message) => Some(Observation::Dhcp(Box::new(DhcpObservation {
            ts_ns,
            src_mac,
            message,
        }))),
        Err(e) => {
            stats.anomaly(e.anomaly_key());
            None
        }
    }
}
