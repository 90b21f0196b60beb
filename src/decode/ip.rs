//! IPv4, IPv6 (extension headers, fragments) and the TCP/UDP headers; hands IP-in-IP,
//! GRE and UDP-encapsulated tunnels to the next step.
//!
//! Invariants: the IP payload handed on is cut at the length the IP header declares
//! (dropping Ethernet padding); fragments other than the first carry no L4 header; a
//! fragmented packet is never descended into as a tunnel, since its inner headers are
//! incomplete.

use std::net::IpAddr;

use etherparse::err::{ipv4, ipv6, ipv6_exts, tcp};
use etherparse::{
    Ipv4HeaderSlice, Ipv6ExtensionSlice, Ipv6ExtensionsSlice, Ipv6HeaderSlice, TcpHeaderSlice,
    UdpHeaderSlice,
};

use super::{
    be16, be32, tunnel, Ctx, DecodeError, Encap, Fragment, Inner, IpInfo, Layer, Next, Step, Tcp,
    L4,
};

const PROTO_IPV4: u8 = 4;
const PROTO_TCP: u8 = 6;
const PROTO_UDP: u8 = 17;
const PROTO_IPV6: u8 = 41;
const PROTO_GRE: u8 = 47;
const PROTO_NO_NEXT: u8 = 59;

/// TCP header without options.
const TCP_MIN_HEADER_LEN: usize = 20;

/// Fixed IPv6 header length.
const IPV6_HEADER_LEN: usize = 40;

/// IPv4 or IPv6 by the version nibble.
pub(super) fn ip_any<'a>(data: &'a [u8], ctx: &mut Ctx) -> Result<Step<'a>, DecodeError> {
    match data.first().map(|b| b >> 4) {
        Some(4) => ipv4(data, ctx),
        Some(6) => ipv6(data, ctx),
        Some(v) => Err(DecodeError::BadIpVersion(v)),
        None => Err(DecodeError::Truncated(Layer::Ipv4)),
    }
}

pub(super) fn ipv4<'a>(data: &'a [u8], ctx: &mut Ctx) -> Result<Step<'a>, DecodeError> {
    let h = Ipv4HeaderSlice::from_slice(data).map_err(|e| match e {
        ipv4::HeaderSliceError::Len(_) => DecodeError::Truncated(Layer::Ipv4),
        ipv4::HeaderSliceError::Content(ipv4::HeaderError::UnexpectedVersion {
            version_number,
        }) => DecodeError::BadIpVersion(version_number),
        ipv4::HeaderSliceError::Content(_) => DecodeError::BadIpHeader,
    })?;
    let header_len = h.slice().len();
    let total = usize::from(h.total_len());
    // 0 (TSO) or a length below the header: trust the capture instead.
    let len_from_capture = total < header_len;
    let ip_len = if len_from_capture { data.len() } else { total };
    let offset = u32::from(h.fragments_offset().byte_offset());
    let id = u32::from(h.identification());
    let fragment = if offset != 0 {
        Fragment::Later {
            id,
            offset,
            more: h.more_fragments(),
        }
    } else if h.more_fragments() {
        Fragment::First { id }
    } else {
        Fragment::None
    };
    let info = IpInfo {
        src: IpAddr::V4(h.source_addr()),
        dst: IpAddr::V4(h.destination_addr()),
        version: 4,
        proto: h.protocol().0,
        ttl: h.ttl(),
        ip_len: len32(ip_len),
        len_from_capture,
    };
    let payload = data
        .get(header_len..ip_len.min(data.len()))
        .unwrap_or_default();
    let declared = ip_len.saturating_sub(header_len);
    transport(info, fragment, payload, declared, data.len() < ip_len, ctx)
}

pub(super) fn ipv6<'a>(data: &'a [u8], ctx: &mut Ctx) -> Result<Step<'a>, DecodeError> {
    let h = Ipv6HeaderSlice::from_slice(data).map_err(|e| match e {
        ipv6::HeaderSliceError::Len(_) => DecodeError::Truncated(Layer::Ipv6),
        ipv6::HeaderSliceError::Content(ipv6::HeaderError::UnexpectedVersion {
            version_number,
        }) => DecodeError::BadIpVersion(version_number),
    })?;
    let payload_len = usize::from(h.payload_length());
    // 0 with a next header is TSO or a jumbogram: trust the capture instead.
    let len_from_capture = payload_len == 0 && h.next_header().0 != PROTO_NO_NEXT;
    let ip_len = if len_from_capture {
        data.len()
    } else {
        IPV6_HEADER_LEN + payload_len
    };
    let after_header = data
        .get(IPV6_HEADER_LEN..ip_len.min(data.len()))
        .unwrap_or_default();
    let (exts, proto, payload) = Ipv6ExtensionsSlice::from_slice(h.next_header(), after_header)
        .map_err(|e| match e {
            ipv6_exts::HeaderSliceError::Len(_) => DecodeError::Truncated(Layer::Ipv6Ext),
            ipv6_exts::HeaderSliceError::Content(_) => DecodeError::BadIpv6Extensions,
        })?;
    let ext_len = exts.slice().len();
    let mut fragment = Fragment::None;
    for ext in exts {
        if let Ipv6ExtensionSlice::Fragment(f) = ext {
            let id = f.identification();
            let offset = u32::from(f.fragment_offset().byte_offset());
            if offset != 0 {
                fragment = Fragment::Later {
                    id,
                    offset,
                    more: f.more_fragments(),
                };
            } else if f.more_fragments() {
                fragment = Fragment::First { id };
            }
        }
    }
    let info = IpInfo {
        src: IpAddr::V6(h.source_addr()),
        dst: IpAddr::V6(h.destination_addr()),
        version: 6,
        proto: proto.0,
        ttl: h.hop_limit(),
        ip_len: len32(ip_len),
        len_from_capture,
    };
    let declared = ip_len.saturating_sub(IPV6_HEADER_LEN + ext_len);
    transport(info, fragment, payload, declared, data.len() < ip_len, ctx)
}

/// The layer above IP: a tunnel to descend into, or the transport header.
fn transport<'a>(
    ip: IpInfo,
    fragment: Fragment,
    payload: &'a [u8],
    declared: usize,
    truncated: bool,
    ctx: &mut Ctx,
) -> Result<Step<'a>, DecodeError> {
    // `cut`: the capture also ends inside the L4 header.
    let done = |l4, l4_len: usize, cut: bool| {
        Step::Done(Inner {
            ip,
            fragment,
            ip_payload: payload,
            l4,
            l4_payload_len: len32(l4_len),
            truncated: truncated || cut,
        })
    };
    let whole = fragment == Fragment::None;
    match ip.proto {
        _ if matches!(fragment, Fragment::Later { .. }) => Ok(done(
            L4::Other {
                proto: ip.proto,
                payload,
            },
            declared,
            false,
        )),
        PROTO_IPV4 if whole => {
            ctx.encap.push(Encap::IpInIp);
            Ok(Step::Next(Next::Ipv4, payload))
        }
        PROTO_IPV6 if whole => {
            ctx.encap.push(Encap::IpInIp);
            Ok(Step::Next(Next::Ipv6, payload))
        }
        PROTO_GRE if whole => tunnel::gre(payload, ctx),
        PROTO_TCP => {
            let (l4, header_len, cut) = tcp(payload)?;
            Ok(done(l4, declared.saturating_sub(header_len), cut))
        }
        PROTO_UDP => {
            let h = UdpHeaderSlice::from_slice(payload)
                .map_err(|_| DecodeError::Truncated(Layer::Udp))?;
            let (src_port, dst_port) = (h.source_port(), h.destination_port());
            let body = payload.get(h.slice().len()..).unwrap_or_default();
            if whole {
                if let Some(step) = tunnel::udp(src_port, dst_port, body, ctx)? {
                    return Ok(step);
                }
            }
            let l4 = L4::Udp {
                src_port,
                dst_port,
                payload: body,
            };
            Ok(done(l4, declared.saturating_sub(h.slice().len()), false))
        }
        proto => Ok(done(L4::Other { proto, payload }, declared, false)),
    }
}

/// The TCP header: fields, header length, and whether the capture ends inside its
/// options (then the fixed 20 bytes still give ports and flags, and the payload is empty).
fn tcp(data: &[u8]) -> Result<(L4<'_>, usize, bool), DecodeError> {
    let cut = match TcpHeaderSlice::from_slice(data) {
        Ok(_) => false,
        Err(tcp::HeaderSliceError::Len(_)) if data.len() >= TCP_MIN_HEADER_LEN => true,
        Err(tcp::HeaderSliceError::Len(_)) => return Err(DecodeError::Truncated(Layer::Tcp)),
        Err(tcp::HeaderSliceError::Content(_)) => return Err(DecodeError::BadTcpHeader),
    };
    let field16 = |off| be16(data, off).unwrap_or(0);
    let field32 = |off| be32(data, off).unwrap_or(0);
    let header_len = usize::from(data.get(12).map_or(0, |b| b >> 4)) * 4;
    let l4 = L4::Tcp(Tcp {
        src_port: field16(0),
        dst_port: field16(2),
        seq: field32(4),
        ack: field32(8),
        flags: data.get(13).copied().unwrap_or(0),
        window: field16(14),
        payload: data.get(header_len..).unwrap_or_default(),
    });
    Ok((l4, header_len, cut))
}

/// A length that came from a 16-bit field plus a small header always fits a u32.
fn len32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}
