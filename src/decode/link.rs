//! Link layers and the headers between them and IP: Ethernet, Linux SLL/SLL2, BSD
//! NULL/LOOP, PPP, NFLOG, PKTAP, 802.1Q/802.1ad tags, VN-Tag, MPLS and PPPoE.
//!
//! Invariants: every function reads through checked accessors and returns the next
//! header with the bytes after the one it parsed; unknown protocol numbers become
//! `DecodeError::NotIp(number)`.

use etherparse::{Ethernet2HeaderSlice, SingleVlanHeaderSlice};

use super::{be16, be32, Ctx, DecodeError, Encap, Layer, LinkType, Next, Step};

const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_IPV6: u16 = 0x86dd;
const ETHERTYPE_VLAN: u16 = 0x8100;
const ETHERTYPE_QINQ: u16 = 0x88a8;
const ETHERTYPE_QINQ_OLD: u16 = 0x9100;
const ETHERTYPE_QINQ_OLD2: u16 = 0x9200;
const ETHERTYPE_MPLS: u16 = 0x8847;
const ETHERTYPE_MPLS_MULTICAST: u16 = 0x8848;
const ETHERTYPE_PPPOE_SESSION: u16 = 0x8864;
const ETHERTYPE_VNTAG: u16 = 0x8926;
/// Ethernet frames (GRE transparent Ethernet bridging, Geneve).
const ETHERTYPE_TEB: u16 = 0x6558;

const PPP_IPV4: u16 = 0x0021;
const PPP_IPV6: u16 = 0x0057;
const PPP_MPLS: u16 = 0x0281;

/// Linux ARPHRD_ETHER: the SLL address is a MAC.
const ARPHRD_ETHER: u16 = 1;

/// BSD address families meaning IPv4 / IPv6 (NetBSD/OpenBSD 24, FreeBSD 28, Darwin 30).
const AF_INET: u32 = 2;
const AF_INET6_BSD: [u32; 3] = [24, 28, 30];

/// NFLOG TLV type carrying the packet.
const NFULA_PAYLOAD: u16 = 9;

/// Dispatches on the capture's link type.
pub(super) fn link<'a>(
    lt: LinkType,
    data: &'a [u8],
    ctx: &mut Ctx,
) -> Result<Step<'a>, DecodeError> {
    match lt {
        LinkType::ETHERNET => ethernet(data, ctx),
        LinkType::RAW | LinkType::RAW_DLT12 => Ok(Step::Next(Next::Ip, data)),
        LinkType::IPV4 => Ok(Step::Next(Next::Ipv4, data)),
        LinkType::IPV6 => Ok(Step::Next(Next::Ipv6, data)),
        LinkType::NULL | LinkType::LOOP => null(data),
        LinkType::LINUX_SLL => sll(data, ctx),
        LinkType::LINUX_SLL2 => sll2(data, ctx),
        LinkType::PPP | LinkType::PPP_HDLC => {
            // Optional HDLC address (0xff) and control (0x03) bytes.
            let rest = match data {
                [0xff, 0x03, rest @ ..] => rest,
                _ => data,
            };
            Ok(Step::Next(Next::PppProtocol, rest))
        }
        LinkType::NFLOG => nflog(data),
        LinkType::PKTAP => pktap(data),
        other => Err(DecodeError::UnsupportedLinkType(other.0)),
    }
}

pub(super) fn ethernet<'a>(data: &'a [u8], ctx: &mut Ctx) -> Result<Step<'a>, DecodeError> {
    let eth = Ethernet2HeaderSlice::from_slice(data).map_err(|_| truncated(Layer::Link))?;
    ctx.enter_frame();
    ctx.src_mac = Some(eth.source());
    ctx.dst_mac = Some(eth.destination());
    let rest = data.get(eth.slice().len()..).unwrap_or_default();
    let ethertype = eth.ether_type().0;
    if ethertype < 0x0600 {
        return llc(ethertype, rest);
    }
    Ok(Step::Next(Next::EtherType(ethertype), rest))
}

/// An 802.3 length field: only LLC/SNAP with an ethertype leads anywhere.
fn llc(length: u16, data: &[u8]) -> Result<Step<'_>, DecodeError> {
    match data {
        [0xaa, 0xaa, 0x03, 0, 0, 0, t0, t1, rest @ ..] => Ok(Step::Next(
            Next::EtherType(u16::from_be_bytes([*t0, *t1])),
            rest,
        )),
        _ => Err(DecodeError::NotIp(length)),
    }
}

/// The payload of anything naming its content by ethertype.
pub(super) fn ethertype<'a>(
    ethertype: u16,
    data: &'a [u8],
    ctx: &mut Ctx,
) -> Result<Step<'a>, DecodeError> {
    match ethertype {
        ETHERTYPE_IPV4 => Ok(Step::Next(Next::Ipv4, data)),
        ETHERTYPE_IPV6 => Ok(Step::Next(Next::Ipv6, data)),
        ETHERTYPE_VLAN | ETHERTYPE_QINQ | ETHERTYPE_QINQ_OLD | ETHERTYPE_QINQ_OLD2 => {
            let tag =
                SingleVlanHeaderSlice::from_slice(data).map_err(|_| truncated(Layer::Vlan))?;
            ctx.vlans.push(tag.vlan_identifier().value());
            let rest = data.get(tag.slice().len()..).unwrap_or_default();
            Ok(Step::Next(Next::EtherType(tag.ether_type().0), rest))
        }
        ETHERTYPE_MPLS | ETHERTYPE_MPLS_MULTICAST => Ok(Step::Next(Next::Mpls, data)),
        ETHERTYPE_PPPOE_SESSION => {
            // ver/type, code, session id, length; then the PPP protocol.
            let session = be16(data, 2).ok_or(truncated(Layer::Pppoe))?;
            ctx.encap.push(Encap::Pppoe(session));
            let rest = data.get(6..).ok_or(truncated(Layer::Pppoe))?;
            Ok(Step::Next(Next::PppProtocol, rest))
        }
        ETHERTYPE_VNTAG => {
            let inner = be16(data, 4).ok_or(truncated(Layer::Vlan))?;
            ctx.encap.push(Encap::VnTag);
            Ok(Step::Next(
                Next::EtherType(inner),
                data.get(6..).unwrap_or_default(),
            ))
        }
        ETHERTYPE_TEB => Ok(Step::Next(Next::Ethernet, data)),
        other => Err(DecodeError::NotIp(other)),
    }
}

/// A PPP protocol field, one byte when compressed (odd first byte) or two.
pub(super) fn ppp_protocol(data: &[u8]) -> Result<Step<'_>, DecodeError> {
    let (proto, rest) = match data {
        [b, rest @ ..] if b & 1 == 1 => (u16::from(*b), rest),
        [b0, b1, rest @ ..] => (u16::from_be_bytes([*b0, *b1]), rest),
        _ => return Err(truncated(Layer::Link)),
    };
    match proto {
        PPP_IPV4 => Ok(Step::Next(Next::Ipv4, rest)),
        PPP_IPV6 => Ok(Step::Next(Next::Ipv6, rest)),
        PPP_MPLS => Ok(Step::Next(Next::Mpls, rest)),
        other => Err(DecodeError::NotIp(other)),
    }
}

/// One MPLS label stack entry; after the bottom of stack, the payload is guessed from its
/// first nibble: 4/6 for IP, 0 for a pseudowire control word before Ethernet, else Ethernet.
pub(super) fn mpls<'a>(data: &'a [u8], ctx: &mut Ctx) -> Result<Step<'a>, DecodeError> {
    let entry = be32(data, 0).ok_or(truncated(Layer::Mpls))?;
    ctx.encap.push(Encap::Mpls(entry >> 12));
    let rest = data.get(4..).unwrap_or_default();
    if entry & 0x100 == 0 {
        return Ok(Step::Next(Next::Mpls, rest));
    }
    match rest.first().map(|b| b >> 4) {
        Some(4) => Ok(Step::Next(Next::Ipv4, rest)),
        Some(6) => Ok(Step::Next(Next::Ipv6, rest)),
        Some(0) => Ok(Step::Next(
            Next::Ethernet,
            rest.get(4..).unwrap_or_default(),
        )),
        Some(_) => Ok(Step::Next(Next::Ethernet, rest)),
        None => Err(truncated(Layer::Mpls)),
    }
}

/// BSD loopback: a 4-byte address family in host (NULL) or network (LOOP) order; both
/// orders are accepted since captures move between hosts.
fn null(data: &[u8]) -> Result<Step<'_>, DecodeError> {
    let raw: [u8; 4] = data
        .get(..4)
        .and_then(|b| b.try_into().ok())
        .ok_or(truncated(Layer::Link))?;
    let le = u32::from_le_bytes(raw);
    let family = if le > 0xffff {
        u32::from_be_bytes(raw)
    } else {
        le
    };
    let rest = data.get(4..).unwrap_or_default();
    match family {
        AF_INET => Ok(Step::Next(Next::Ipv4, rest)),
        f if AF_INET6_BSD.contains(&f) => Ok(Step::Next(Next::Ipv6, rest)),
        f => Err(DecodeError::NotIp(u16::try_from(f).unwrap_or(u16::MAX))),
    }
}

/// Linux cooked capture v1: 16-byte header, protocol last.
fn sll<'a>(data: &'a [u8], ctx: &mut Ctx) -> Result<Step<'a>, DecodeError> {
    let (Some(hatype), Some(addr_len), Some(proto)) =
        (be16(data, 2), be16(data, 4), be16(data, 14))
    else {
        return Err(truncated(Layer::Link));
    };
    sll_address(ctx, hatype, addr_len, data.get(6..12));
    sll_protocol(proto, data.get(16..).unwrap_or_default())
}

/// Linux cooked capture v2: 20-byte header, protocol first.
fn sll2<'a>(data: &'a [u8], ctx: &mut Ctx) -> Result<Step<'a>, DecodeError> {
    let (Some(proto), Some(hatype), Some(addr_len)) = (be16(data, 0), be16(data, 8), data.get(11))
    else {
        return Err(truncated(Layer::Link));
    };
    if data.len() < 20 {
        return Err(truncated(Layer::Link));
    }
    sll_address(ctx, hatype, u16::from(*addr_len), data.get(12..18));
    sll_protocol(proto, data.get(20..).unwrap_or_default())
}

/// Records the sender's MAC when the cooked header carries an Ethernet address.
fn sll_address(ctx: &mut Ctx, hatype: u16, addr_len: u16, addr: Option<&[u8]>) {
    ctx.enter_frame();
    if hatype == ARPHRD_ETHER && addr_len == 6 {
        ctx.src_mac = addr.and_then(|a| a.try_into().ok());
    }
}

/// The SLL protocol field: an ethertype, or small values for non-Ethernet-II frames.
fn sll_protocol(proto: u16, rest: &[u8]) -> Result<Step<'_>, DecodeError> {
    if proto < 0x0600 {
        return Err(DecodeError::NotIp(proto));
    }
    Ok(Step::Next(Next::EtherType(proto), rest))
}

/// NFLOG: a 4-byte header then TLVs whose length and type are in host byte order; the
/// packet is the NFULA_PAYLOAD TLV.
fn nflog(data: &[u8]) -> Result<Step<'_>, DecodeError> {
    let mut rest = data.get(4..).ok_or(truncated(Layer::Nflog))?;
    while rest.len() >= 4 {
        let (Some(le_len), Some(be_len)) = (le16(rest, 0), be16(rest, 0)) else {
            break;
        };
        // The plausible reading is the one that fits in the remaining bytes.
        let (len, tlv_type) = if (4..=rest.len()).contains(&usize::from(le_len)) {
            (le_len, le16(rest, 2))
        } else {
            (be_len, be16(rest, 2))
        };
        let len = usize::from(len);
        if len < 4 {
            return Err(truncated(Layer::Nflog));
        }
        let value = rest.get(4..len).ok_or(truncated(Layer::Nflog))?;
        if tlv_type.map(|t| t & 0x7fff) == Some(NFULA_PAYLOAD) {
            return Ok(Step::Next(Next::Ip, value));
        }
        rest = rest.get(len.div_ceil(4) * 4..).unwrap_or_default();
    }
    Err(DecodeError::NoPayload)
}

/// Apple PKTAP: a little-endian header giving its own length and the inner DLT.
fn pktap(data: &[u8]) -> Result<Step<'_>, DecodeError> {
    let (Some(len), Some(dlt)) = (le32(data, 0), le32(data, 4)) else {
        return Err(truncated(Layer::Pktap));
    };
    let rest = usize::try_from(len)
        .ok()
        .and_then(|l| data.get(l..))
        .ok_or(truncated(Layer::Pktap))?;
    let inner = match u16::try_from(dlt) {
        // A PKTAP inside PKTAP would loop; refuse it.
        Ok(lt) if LinkType(lt) != LinkType::PKTAP => LinkType(lt),
        _ => {
            return Err(DecodeError::UnsupportedLinkType(
                u16::try_from(dlt).unwrap_or(u16::MAX),
            ))
        }
    };
    Ok(Step::Next(Next::Link(inner), rest))
}

fn truncated(layer: Layer) -> DecodeError {
    DecodeError::Truncated(layer)
}

/// Little-endian u16 at `off`, if present.
fn le16(b: &[u8], off: usize) -> Option<u16> {
    Some(u16::from_le_bytes(
        b.get(off..off.checked_add(2)?)?.try_into().ok()?,
    ))
}

/// Little-endian u32 at `off`, if present.
fn le32(b: &[u8], off: usize) -> Option<u32> {
    Some(u32::from_le_bytes(
        b.get(off..off.checked_add(4)?)?.try_into().ok()?,
    ))
}
