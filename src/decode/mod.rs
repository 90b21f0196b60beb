//! Packet decoding: from a captured frame and its link type to a view of the innermost
//! IP packet.
//!
//! Owns link layers (Ethernet, Linux SLL/SLL2, raw IP, BSD NULL/LOOP, PPP, NFLOG, PKTAP),
//! 802.1Q/QinQ, MPLS, PPPoE, tunnels (GRE, ERSPAN I/II/III, VXLAN, Geneve, IP-in-IP,
//! GTP-U, Teredo), IPv4/IPv6 (with extension headers and fragments) and the TCP/UDP
//! headers. Uses `etherparse` header slices where they fit, hand-written checked reads
//! elsewhere.
//!
//! Invariants: [`decode`] is a pure function: no allocation, no logging, no clock. Every
//! read is bounds-checked; nothing panics on any input. At most [`MAX_LAYERS`] headers
//! are walked, so nested tunnels terminate. Unknown protocol numbers are reported as
//! numbers in [`DecodeError::NotIp`], never guessed.
//!
//! Truncation policy: a frame cut inside the link, IP or TCP/UDP header is an error
//! (`Truncated(layer)`); a frame cut inside the L4 payload decodes with
//! `truncated = true`, the captured part in the payload slice and the declared length in
//! `l4_payload_len`. When the innermost packet sits in a tunnel whose inner headers do not
//! decode (e.g. VXLAN carrying ARP), the whole frame gets that inner error.

mod ip;
mod link;
mod tunnel;

use std::net::IpAddr;

use thiserror::Error;

// Link types are the capture reader's LINKTYPE_* numbers.
use super::capture::LinkType;

/// Most headers (link, tags, labels, tunnels, IP) walked for one frame; bounds the work
/// on hostile nesting such as endless IP-in-IP or MPLS stacks.
pub const MAX_LAYERS: usize = 32;

/// Encapsulation entries recorded per packet; deeper chains only bump `overflow`.
/// Real traffic rarely exceeds 4 (e.g. VLAN, GRE, ERSPAN, VLAN).
pub const MAX_ENCAP: usize = 8;

/// VLAN ids recorded for the frame carrying the innermost packet (802.1ad + 802.1Q).
pub const MAX_VLANS: usize = 2;

/// One encapsulation layer around the innermost packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encap {
    /// 802.1Q/802.1ad tag of an outer frame (VLAN id).
    Vlan(u16),
    /// MPLS label.
    Mpls(u32),
    /// PPPoE session (session id).
    Pppoe(u16),
    /// GRE, with its key when present.
    Gre {
        /// The GRE key field.
        key: Option<u32>,
    },
    /// ERSPAN (version 0 for type I without a header, 1 for II, 2 for III).
    Erspan {
        /// ERSPAN header version.
        version: u8,
        /// Session id (0 for type I).
        session: u16,
    },
    /// VXLAN (VNI).
    Vxlan(u32),
    /// Geneve (VNI).
    Geneve(u32),
    /// IPv4/IPv6 carried directly in IPv4/IPv6.
    IpInIp,
    /// GTP-U G-PDU (TEID).
    GtpU(u32),
    /// Teredo (IPv6 in UDP).
    Teredo,
    /// Cisco VN-Tag.
    VnTag,
}

/// The encapsulation chain, outer to inner, in a fixed array.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EncapChain {
    items: [Encap; MAX_ENCAP],
    len: u8,
    /// Entries that did not fit in the array.
    pub overflow: u16,
}

impl Default for EncapChain {
    fn default() -> Self {
        EncapChain {
            items: [Encap::IpInIp; MAX_ENCAP],
            len: 0,
            overflow: 0,
        }
    }
}

impl EncapChain {
    /// The chain of an outer frame followed by the chain found inside it (after
    /// IP reassembly, the reassembled packet is decoded on its own).
    pub fn nested(outer: &EncapChain, inner: &EncapChain) -> EncapChain {
        let mut c = *outer;
        for e in inner.as_slice() {
            c.push(*e);
        }
        c.overflow = c.overflow.saturating_add(inner.overflow);
        c
    }

    /// The recorded entries, outer first.
    pub fn as_slice(&self) -> &[Encap] {
        self.items.get(..usize::from(self.len)).unwrap_or_default()
    }

    fn push(&mut self, e: Encap) {
        self.insert(usize::from(self.len), e);
    }

    /// Inserts at `at`, shifting later entries; the last entry falls off when full.
    fn insert(&mut self, at: usize, e: Encap) {
        let len = usize::from(self.len);
        if at >= MAX_ENCAP {
            self.overflow = self.overflow.saturating_add(1);
            return;
        }
        if len == MAX_ENCAP {
            self.overflow = self.overflow.saturating_add(1);
        } else {
            self.len += 1;
        }
        let end = usize::from(self.len);
        if let Some(tail) = self.items.get_mut(at..end) {
            tail.rotate_right(1);
            if let Some(first) = tail.first_mut() {
                *first = e;
            }
        }
    }
}

/// VLAN ids of the frame carrying the innermost packet, outer first.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Vlans {
    ids: [u16; MAX_VLANS],
    len: u8,
    /// Further tags beyond [`MAX_VLANS`] (not recorded).
    pub overflow: u8,
}

impl Vlans {
    /// The recorded ids, outer first.
    pub fn as_slice(&self) -> &[u16] {
        self.ids.get(..usize::from(self.len)).unwrap_or_default()
    }

    /// The innermost recorded id (the customer VLAN for QinQ).
    pub fn inner(&self) -> Option<u16> {
        self.as_slice().last().copied()
    }

    fn push(&mut self, id: u16) {
        match self.ids.get_mut(usize::from(self.len)) {
            Some(slot) => {
                *slot = id;
                self.len += 1;
            }
            None => self.overflow = self.overflow.saturating_add(1),
        }
    }
}

/// IP-layer facts of the innermost packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IpInfo {
    /// Source address.
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// 4 or 6.
    pub version: u8,
    /// Transport protocol (after IPv6 extension headers).
    pub proto: u8,
    /// TTL or hop limit.
    pub ttl: u8,
    /// IP-layer bytes per the header, header included (IPv4 total length, IPv6 40 +
    /// payload length).
    pub ip_len: u32,
    /// The length field was 0 (TSO, jumbogram) or smaller than the headers, so `ip_len`
    /// is the captured length instead.
    pub len_from_capture: bool,
}

/// Fragmentation state of the innermost packet.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Fragment {
    /// Not a fragment.
    #[default]
    None,
    /// First fragment (offset 0, more to come): carries the L4 header.
    First {
        /// IPv4 identification or IPv6 fragment id.
        id: u32,
    },
    /// A later fragment: no L4 header, so no ports.
    Later {
        /// IPv4 identification or IPv6 fragment id.
        id: u32,
        /// Offset of this fragment's data in bytes.
        offset: u32,
        /// More fragments follow (false on the last one).
        more: bool,
    },
}

/// TCP header fields and payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tcp<'a> {
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// Sequence number.
    pub seq: u32,
    /// Acknowledgment number.
    pub ack: u32,
    /// Flag bits CWR ECE URG ACK PSH RST SYN FIN (byte 13 of the header).
    pub flags: u8,
    /// Window (unscaled).
    pub window: u16,
    /// Captured payload bytes.
    pub payload: &'a [u8],
}

impl Tcp<'_> {
    /// FIN flag bit.
    pub const FIN: u8 = 0x01;
    /// SYN flag bit.
    pub const SYN: u8 = 0x02;
    /// RST flag bit.
    pub const RST: u8 = 0x04;
    /// PSH flag bit.
    pub const PSH: u8 = 0x08;
    /// ACK flag bit.
    pub const ACK: u8 = 0x10;
}

/// The transport layer of the innermost packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum L4<'a> {
    /// TCP.
    Tcp(Tcp<'a>),
    /// UDP.
    Udp {
        /// Source port.
        src_port: u16,
        /// Destination port.
        dst_port: u16,
        /// Captured payload bytes.
        payload: &'a [u8],
    },
    /// Any other protocol, or a later fragment: the captured IP payload.
    Other {
        /// IP protocol number.
        proto: u8,
        /// Captured IP payload bytes.
        payload: &'a [u8],
    },
}

/// A decoded frame: the innermost IP packet and what wraps it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Packet<'a> {
    /// Source MAC of the innermost Ethernet header (or the SLL source address).
    pub src_mac: Option<[u8; 6]>,
    /// Destination MAC of the innermost Ethernet header.
    pub dst_mac: Option<[u8; 6]>,
    /// VLAN ids of the frame carrying the innermost packet.
    pub vlans: Vlans,
    /// Tunnels, labels and outer-frame VLANs, outer to inner.
    pub encap: EncapChain,
    /// The innermost IP header.
    pub ip: IpInfo,
    /// Fragmentation of the innermost packet.
    pub fragment: Fragment,
    /// Transport header and captured payload.
    pub l4: L4<'a>,
    /// L4 payload length per the headers (may exceed the captured payload).
    pub l4_payload_len: u32,
    /// The capture ends before the IP length says (snap length).
    pub truncated: bool,
    /// The captured bytes after the innermost IP header and its extension headers
    /// (what a fragment carries, for reassembly).
    pub ip_payload: &'a [u8],
}

/// The header in which a frame ended too early.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layer {
    /// Link-layer header (Ethernet, SLL, NULL, PPP...).
    Link,
    /// 802.1Q/802.1ad tag.
    Vlan,
    /// MPLS label stack.
    Mpls,
    /// PPPoE header.
    Pppoe,
    /// IPv4 header.
    Ipv4,
    /// IPv6 header.
    Ipv6,
    /// IPv6 extension headers.
    Ipv6Ext,
    /// TCP header.
    Tcp,
    /// UDP header.
    Udp,
    /// GRE header.
    Gre,
    /// ERSPAN header.
    Erspan,
    /// VXLAN, Geneve, GTP-U or Teredo header.
    UdpTunnel,
    /// NFLOG TLVs.
    Nflog,
    /// PKTAP header.
    Pktap,
}

/// Why a frame yields no IP packet. `reason()` names it for counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Error)]
pub enum DecodeError {
    /// The capture's link type is not decoded.
    #[error("unsupported link type {0}")]
    UnsupportedLinkType(u16),
    /// A non-IP payload: the ethertype, address family, PPP or GRE protocol number.
    #[error("not IP (protocol 0x{0:04x})")]
    NotIp(u16),
    /// The frame ends inside a header.
    #[error("truncated {0:?} header")]
    Truncated(Layer),
    /// An IP header whose version nibble is neither 4 nor 6 (or not the expected one).
    #[error("bad IP version {0}")]
    BadIpVersion(u8),
    /// An IPv4 header length below 20 bytes.
    #[error("bad IPv4 header length")]
    BadIpHeader,
    /// Malformed IPv6 extension headers.
    #[error("bad IPv6 extension headers")]
    BadIpv6Extensions,
    /// A TCP data offset below 5 words.
    #[error("bad TCP header length")]
    BadTcpHeader,
    /// A GRE header with routing or an unknown version.
    #[error("unsupported GRE header")]
    UnsupportedGre,
    /// An NFLOG message without a packet payload.
    #[error("NFLOG message without payload")]
    NoPayload,
    /// More than [`MAX_LAYERS`] headers.
    #[error("more than {MAX_LAYERS} nested headers")]
    TooManyLayers,
}

impl DecodeError {
    /// A stable snake_case name for counters.
    pub fn reason(&self) -> &'static str {
        match self {
            DecodeError::UnsupportedLinkType(_) => "unsupported_link_type",
            DecodeError::NotIp(_) => "not_ip",
            DecodeError::Truncated(layer) => match layer {
                Layer::Link => "truncated_link",
                Layer::Vlan => "truncated_vlan",
                Layer::Mpls => "truncated_mpls",
                Layer::Pppoe => "truncated_pppoe",
                Layer::Ipv4 => "truncated_ipv4",
                Layer::Ipv6 => "truncated_ipv6",
                Layer::Ipv6Ext => "truncated_ipv6_ext",
                Layer::Tcp => "truncated_tcp",
                Layer::Udp => "truncated_udp",
                Layer::Gre => "truncated_gre",
                Layer::Erspan => "truncated_erspan",
                Layer::UdpTunnel => "truncated_udp_tunnel",
                Layer::Nflog => "truncated_nflog",
                Layer::Pktap => "truncated_pktap",
            },
            DecodeError::BadIpVersion(_) => "bad_ip_version",
            DecodeError::BadIpHeader => "bad_ip_header",
            DecodeError::BadIpv6Extensions => "bad_ipv6_extensions",
            DecodeError::BadTcpHeader => "bad_tcp_header",
            DecodeError::UnsupportedGre => "unsupported_gre",
            DecodeError::NoPayload => "no_payload",
            DecodeError::TooManyLayers => "too_many_layers",
        }
    }
}

/// What the next header is.
#[derive(Clone, Copy, Debug)]
enum Next {
    /// A link layer of the given type.
    Link(LinkType),
    /// An Ethernet II header.
    Ethernet,
    /// The payload of a header naming it by ethertype.
    EtherType(u16),
    /// IPv4 or IPv6, chosen by the version nibble.
    Ip,
    /// Exactly IPv4.
    Ipv4,
    /// Exactly IPv6.
    Ipv6,
    /// A PPP protocol field (after any address/control bytes).
    PppProtocol,
    /// An MPLS label stack entry.
    Mpls,
}

/// The outcome of one header: the next header, or the finished packet.
enum Step<'a> {
    Next(Next, &'a [u8]),
    Done(Inner<'a>),
}

/// The innermost IP packet, before link-level context is added.
struct Inner<'a> {
    ip: IpInfo,
    fragment: Fragment,
    ip_payload: &'a [u8],
    l4: L4<'a>,
    l4_payload_len: u32,
    truncated: bool,
}

/// Link-level context gathered while walking headers.
#[derive(Default)]
struct Ctx {
    src_mac: Option<[u8; 6]>,
    dst_mac: Option<[u8; 6]>,
    vlans: Vlans,
    encap: EncapChain,
    /// Index in `encap` where the current frame's VLANs belong if an inner frame follows.
    frame_encap_start: usize,
    /// An Ethernet header (or SLL address) was already seen.
    seen_frame: bool,
}

impl Ctx {
    /// Starts a new (inner) Ethernet frame: the previous frame's VLANs become encap
    /// entries at the place that frame began.
    fn enter_frame(&mut self) {
        if self.seen_frame {
            for (i, id) in self.vlans.as_slice().iter().enumerate() {
                self.encap
                    .insert(self.frame_encap_start + i, Encap::Vlan(*id));
            }
            self.vlans = Vlans::default();
        }
        self.seen_frame = true;
        self.frame_encap_start = usize::from(self.encap.len);
    }
}

/// Every link type [`decode`] understands; any other gives
/// [`DecodeError::UnsupportedLinkType`].
pub const SUPPORTED_LINK_TYPES: [LinkType; 13] = [
    LinkType::NULL,
    LinkType::ETHERNET,
    LinkType::PPP,
    LinkType::RAW_DLT12,
    LinkType::PPP_HDLC,
    LinkType::RAW,
    LinkType::LOOP,
    LinkType::LINUX_SLL,
    LinkType::IPV4,
    LinkType::IPV6,
    LinkType::NFLOG,
    LinkType::PKTAP,
    LinkType::LINUX_SLL2,
];

/// Decodes a frame of the given link type down to its innermost IP packet.
pub fn decode(linktype: LinkType, data: &[u8]) -> Result<Packet<'_>, DecodeError> {
    let mut ctx = Ctx::default();
    let mut next = Next::Link(linktype);
    let mut rest = data;
    for _ in 0..MAX_LAYERS {
        let step = match next {
            Next::Link(lt) => link::link(lt, rest, &mut ctx)?,
            Next::Ethernet => link::ethernet(rest, &mut ctx)?,
            Next::EtherType(t) => link::ethertype(t, rest, &mut ctx)?,
            Next::PppProtocol => link::ppp_protocol(rest)?,
            Next::Mpls => link::mpls(rest, &mut ctx)?,
            Next::Ip => ip::ip_any(rest, &mut ctx)?,
            Next::Ipv4 => ip::ipv4(rest, &mut ctx)?,
            Next::Ipv6 => ip::ipv6(rest, &mut ctx)?,
        };
        match step {
            Step::Next(n, r) => {
                next = n;
                rest = r;
            }
            Step::Done(inner) => {
                return Ok(Packet {
                    src_mac: ctx.src_mac,
                    dst_mac: ctx.dst_mac,
                    vlans: ctx.vlans,
                    encap: ctx.encap,
                    ip: inner.ip,
                    fragment: inner.fragment,
                    l4: inner.l4,
                    l4_payload_len: inner.l4_payload_len,
                    truncated: inner.truncated,
                    ip_payload: inner.ip_payload,
                })
            }
        }
    }
    Err(DecodeError::TooManyLayers)
}

/// Big-endian u16 at `off`, if present.
fn be16(b: &[u8], off: usize) -> Option<u16> {
    Some(u16::from_be_bytes(
        b.get(off..off.checked_add(2)?)?.try_into().ok()?,
    ))
}

/// Big-endian u32 at `off`, if present.
fn be32(b: &[u8], off: usize) -> Option<u32> {
    Some(u32::from_be_bytes(
        b.get(off..off.checked_add(4)?)?.try_into().ok()?,
    ))
}

#[cfg(test)]
mod tests;
