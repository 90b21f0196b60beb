//! Tunnel headers: GRE (RFC 2784/2890 and the PPTP variant), ERSPAN types I/II/III,
//! and the UDP tunnels VXLAN (4789), Geneve (6081), GTP-U (2152), Teredo (3544) and GRE-in-UDP (4754).
//!
//! Invariants: a UDP payload on a tunnel port is only treated as a tunnel when its header
//! validates (VXLAN I flag, Geneve version 0, GTPv1 G-PDU, Teredo carrying IPv6);
//! otherwise it stays an ordinary UDP packet. Each function records one [`Encap`] entry
//! per tunnel header it accepts.

use super::{be16, be32, Ctx, DecodeError, Encap, Layer, Next, Step};

const GRE_CHECKSUM: u16 = 0x8000;
const GRE_ROUTING: u16 = 0x4000;
const GRE_KEY: u16 = 0x2000;
const GRE_SEQ: u16 = 0x1000;
/// PPTP's enhanced GRE (version 1) acknowledgment-present flag.
const GRE_ACK: u16 = 0x0080;
const GRE_VERSION_MASK: u16 = 0x0007;

const GRE_PROTO_ERSPAN_1_2: u16 = 0x88be;
const GRE_PROTO_ERSPAN_3: u16 = 0x22eb;
const GRE_PROTO_PPP: u16 = 0x880b;

const UDP_PORT_VXLAN: u16 = 4789;
const UDP_PORT_GENEVE: u16 = 6081;
const UDP_PORT_GTP_U: u16 = 2152;
const UDP_PORT_TEREDO: u16 = 3544;
/// GRE-in-UDP, RFC 8086.
const UDP_PORT_GRE: u16 = 4754;

/// VXLAN "VNI valid" flag.
const VXLAN_FLAG_I: u8 = 0x08;
/// GTP message type of a user-plane packet.
const GTP_G_PDU: u8 = 0xff;

pub(super) fn gre<'a>(data: &'a [u8], ctx: &mut Ctx) -> Result<Step<'a>, DecodeError> {
    let (Some(flags), Some(proto)) = (be16(data, 0), be16(data, 2)) else {
        return Err(truncated(Layer::Gre));
    };
    let version = flags & GRE_VERSION_MASK;
    if flags & GRE_ROUTING != 0 || version > 1 {
        return Err(DecodeError::UnsupportedGre);
    }
    let mut off = 4;
    if flags & GRE_CHECKSUM != 0 {
        off += 4;
    }
    let key = if flags & GRE_KEY != 0 {
        let key = be32(data, off).ok_or(truncated(Layer::Gre))?;
        off += 4;
        Some(key)
    } else {
        None
    };
    let has_seq = flags & GRE_SEQ != 0;
    if has_seq {
        off += 4;
    }
    if version == 1 && flags & GRE_ACK != 0 {
        off += 4;
    }
    let rest = data.get(off..).ok_or(truncated(Layer::Gre))?;
    ctx.encap.push(Encap::Gre { key });
    match proto {
        // Type I has no header and no sequence number; type II has both.
        GRE_PROTO_ERSPAN_1_2 if !has_seq => {
            ctx.encap.push(Encap::Erspan {
                version: 0,
                session: 0,
            });
            Ok(Step::Next(Next::Ethernet, rest))
        }
        GRE_PROTO_ERSPAN_1_2 => erspan2(rest, ctx),
        GRE_PROTO_ERSPAN_3 => erspan3(rest, ctx),
        GRE_PROTO_PPP => {
            let ppp = match rest {
                [0xff, 0x03, ppp @ ..] => ppp,
                _ => rest,
            };
            Ok(Step::Next(Next::PppProtocol, ppp))
        }
        ethertype => Ok(Step::Next(Next::EtherType(ethertype), rest)),
    }
}

/// ERSPAN type II: 8-byte header (version, VLAN, session id, index), then Ethernet.
fn erspan2<'a>(data: &'a [u8], ctx: &mut Ctx) -> Result<Step<'a>, DecodeError> {
    let (Some(word0), Some(rest)) = (be16(data, 2), data.get(8..)) else {
        return Err(truncated(Layer::Erspan));
    };
    ctx.encap.push(Encap::Erspan {
        version: data.first().map_or(0, |b| b >> 4),
        session: word0 & 0x03ff,
    });
    Ok(Step::Next(Next::Ethernet, rest))
}

/// ERSPAN type III: 12-byte header, an 8-byte platform subheader when the O flag is set,
/// then an Ethernet frame (frame type 0) or an IP packet (frame type 2).
fn erspan3<'a>(data: &'a [u8], ctx: &mut Ctx) -> Result<Step<'a>, DecodeError> {
    let (Some(word0), Some(word5)) = (be16(data, 2), be16(data, 10)) else {
        return Err(truncated(Layer::Erspan));
    };
    let header_len = if word5 & 1 != 0 { 20 } else { 12 };
    let rest = data.get(header_len..).ok_or(truncated(Layer::Erspan))?;
    ctx.encap.push(Encap::Erspan {
        version: data.first().map_or(0, |b| b >> 4),
        session: word0 & 0x03ff,
    });
    match (word5 >> 10) & 0x1f {
        0 => Ok(Step::Next(Next::Ethernet, rest)),
        2 => Ok(Step::Next(Next::Ip, rest)),
        other => Err(DecodeError::NotIp(other)),
    }
}

/// A UDP payload on a tunnel port; `None` when it is not (a valid) tunnel header.
pub(super) fn udp<'a>(
    src_port: u16,
    dst_port: u16,
    payload: &'a [u8],
    ctx: &mut Ctx,
) -> Result<Option<Step<'a>>, DecodeError> {
    let either = |port| src_port == port || dst_port == port;
    if dst_port == UDP_PORT_VXLAN {
        Ok(vxlan(payload, ctx))
    } else if dst_port == UDP_PORT_GENEVE {
        geneve(payload, ctx)
    } else if either(UDP_PORT_GTP_U) {
        gtp_u(payload, ctx)
    } else if dst_port == UDP_PORT_GRE {
        gre(payload, ctx).map(Some)
    } else if either(UDP_PORT_TEREDO) {
        Ok(teredo(payload, ctx, false))
    } else {
        // Teredo relays use any port: recognised by content alone, strictly.
        Ok(teredo(payload, ctx, true))
    }
}

fn vxlan<'a>(data: &'a [u8], ctx: &mut Ctx) -> Option<Step<'a>> {
    let flags = *data.first()?;
    let vni = be32(data, 4)? >> 8;
    if flags & VXLAN_FLAG_I == 0 {
        return None;
    }
    ctx.encap.push(Encap::Vxlan(vni));
    Some(Step::Next(Next::Ethernet, data.get(8..)?))
}

fn geneve<'a>(data: &'a [u8], ctx: &mut Ctx) -> Result<Option<Step<'a>>, DecodeError> {
    let (Some(b0), Some(proto), Some(vni)) = (data.first(), be16(data, 2), be32(data, 4)) else {
        return Ok(None);
    };
    if b0 >> 6 != 0 {
        return Ok(None);
    }
    let header_len = 8 + usize::from(b0 & 0x3f) * 4;
    let rest = data.get(header_len..).ok_or(truncated(Layer::UdpTunnel))?;
    ctx.encap.push(Encap::Geneve(vni >> 8));
    Ok(Some(Step::Next(Next::EtherType(proto), rest)))
}

/// GTPv1-U: only G-PDUs carry user packets; the optional sequence/N-PDU/extension word
/// and a chain of extension headers (each a multiple of 4 bytes, last byte = next type).
fn gtp_u<'a>(data: &'a [u8], ctx: &mut Ctx) -> Result<Option<Step<'a>>, DecodeError> {
    let (Some(flags), Some(msg_type), Some(teid)) = (data.first(), data.get(1), be32(data, 4))
    else {
        return Ok(None);
    };
    let version_1_gtp = flags >> 5 == 1 && flags & 0x10 != 0;
    if !version_1_gtp || *msg_type != GTP_G_PDU {
        return Ok(None);
    }
    let mut off = 8;
    if flags & 0x07 != 0 {
        let mut next_type = *data.get(11).ok_or(truncated(Layer::UdpTunnel))?;
        off = 12;
        if flags & 0x04 != 0 {
            // Each extension is at least 4 bytes, so this ends within the payload.
            while next_type != 0 {
                let units = usize::from(*data.get(off).ok_or(truncated(Layer::UdpTunnel))?);
                if units == 0 {
                    return Err(truncated(Layer::UdpTunnel));
                }
                off += units * 4;
                next_type = *data.get(off - 1).ok_or(truncated(Layer::UdpTunnel))?;
            }
        }
    }
    let rest = data.get(off..).ok_or(truncated(Layer::UdpTunnel))?;
    ctx.encap.push(Encap::GtpU(teid));
    Ok(Some(Step::Next(Next::Ip, rest)))
}

/// Teredo: optional authentication and origin indicators, then an IPv6 packet.
/// Off the Teredo port (`strict`), the IPv6 header must account for every byte
/// of the datagram and one address must be Teredo (2001::/32) or link-local,
/// so ordinary UDP payloads are not mistaken for tunnels.
fn teredo<'a>(data: &'a [u8], ctx: &mut Ctx, strict: bool) -> Option<Step<'a>> {
    let mut rest = data;
    if be16(rest, 0) == Some(0x0001) {
        let id_len = usize::from(*rest.get(2)?);
        let auth_len = usize::from(*rest.get(3)?);
        // Indicator, lengths, client id, auth value, 8-byte nonce, confirmation byte.
        rest = rest.get(4 + id_len + auth_len + 9..)?;
    }
    if be16(rest, 0) == Some(0x0000) {
        rest = rest.get(8..)?;
    }
    if rest.len() < 40 || rest.first().map(|b| b >> 4) != Some(6) {
        return None;
    }
    if strict {
        let exact = be16(rest, 4).map(usize::from) == Some(rest.len() - 40);
        let teredo_or_link_local = |a: &[u8]| {
            a.starts_with(&[0x20, 0x01, 0x00, 0x00]) || (a[0] == 0xfe && a[1] & 0xc0 == 0x80)
        };
        let addrs = rest.get(8..24).zip(rest.get(24..40));
        if !exact || !addrs.is_some_and(|(s, d)| teredo_or_link_local(s) || teredo_or_link_local(d))
        {
            return None;
        }
    }
    ctx.encap.push(Encap::Teredo);
    Some(Step::Next(Next::Ipv6, rest))
}

fn truncated(layer: Layer) -> DecodeError {
    DecodeError::Truncated(layer)
}
