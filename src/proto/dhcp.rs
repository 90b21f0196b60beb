//! DHCPv4 (RFC 2131/2132) and DHCPv6 (RFC 8415) message summaries, from a UDP payload.
//!
//! Owns: [`parse_dhcpv4`], [`parse_dhcpv6`] and the port tests [`is_dhcp`] and
//! [`is_dhcpv6`]. The summaries carry what identifies a device on the network: its MAC
//! and addresses, host name, vendor class, client identifier / DUID, and the parameter
//! request list (a well-known device fingerprint).
//!
//! Invariants:
//! - Never panics. Option walking is bounded by the bytes given: every step consumes at
//!   least one byte (DHCPv4) or four (DHCPv6). A truncated option stops the walk of its
//!   area and is recorded in `anomalies` next to what was parsed before it; an option
//!   with a wrong length for its type is recorded and skipped.
//! - The first occurrence of an option wins (RFC 3396 long-option concatenation is not
//!   done). DHCPv4 option overload (option 52) is honoured: `file`, then `sname`.
//! - Text (host name, vendor class, FQDN) is escaped like DNS names (see
//!   `super::text::escape_into`): never dropped. Binary identifiers are lowercase hex.
//! - Unknown message types are kept as numbers. Lists are bounded by named constants.

use std::fmt::Write as _;
use std::net::{Ipv4Addr, Ipv6Addr};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::text::escape_into;

/// DHCPv4 server (and relay) port.
pub const DHCP_SERVER_PORT: u16 = 67;
/// DHCPv4 client port.
pub const DHCP_CLIENT_PORT: u16 = 68;
/// DHCPv6 client port.
pub const DHCPV6_CLIENT_PORT: u16 = 546;
/// DHCPv6 server and relay agent port.
pub const DHCPV6_SERVER_PORT: u16 = 547;
/// The fixed BOOTP header before the magic cookie (op .. file).
pub const BOOTP_FIXED_LEN: usize = 236;
/// RFC 2131 §3: the options area starts with 99.130.83.99.
pub const MAGIC_COOKIE: [u8; 4] = [99, 130, 83, 99];
/// Anomalies kept per message: one per options area (options, file, sname) plus a few
/// bad option lengths is all a real message produces.
pub const MAX_ANOMALIES: usize = 8;
/// DHCPv6 addresses kept from IA_NA options; a client asks for one or two.
pub const MAX_V6_ADDRESSES: usize = 16;
/// DHCPv6 option codes kept from the Option Request option (a fingerprint, like option
/// 55 in DHCPv4, whose length byte already bounds it to 255).
pub const MAX_V6_ORO: usize = 64;
/// Relay-forward/relay-reply wrappers unwrapped (RFC 8415 HOP_COUNT_LIMIT is 8).
pub const MAX_V6_RELAY_DEPTH: usize = 8;

const OFF_SNAME: usize = 44;
const OFF_FILE: usize = 108;
const SNAME_LEN: usize = 64;
const FILE_LEN: usize = 128;

/// Why a DHCP message (or an option in it) could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DhcpError {
    /// Shorter than the fixed header (236 + 4 bytes for v4, 4 bytes for v6).
    #[error("message shorter than the DHCP header")]
    TruncatedHeader,
    /// The DHCPv4 magic cookie is missing (plain BOOTP or not DHCP).
    #[error("no DHCP magic cookie")]
    BadMagicCookie,
    /// An option's length runs past the end of its area.
    #[error("option {0} truncated")]
    TruncatedOption(u16),
    /// An option whose length does not fit its type (e.g. option 50 not 4 bytes).
    #[error("option {0} has a bad length")]
    BadOptionLength(u16),
    /// DHCPv6 relay messages nested deeper than [`MAX_V6_RELAY_DEPTH`], or a relay
    /// message without a Relay Message option.
    #[error("bad DHCPv6 relay message")]
    BadRelay,
}

impl DhcpError {
    /// Stable snake_case reason, for anomaly counters and log fields.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::TruncatedHeader => "truncated_header",
            Self::BadMagicCookie => "bad_magic_cookie",
            Self::TruncatedOption(_) => "truncated_option",
            Self::BadOptionLength(_) => "bad_option_length",
            Self::BadRelay => "bad_relay",
        }
    }

    /// The key counting this error in the `flow_anomalies` stats: the reason with the
    /// `dhcp_` prefix, so it cannot be mistaken for another parser's.
    pub fn anomaly_key(&self) -> &'static str {
        match self {
            Self::TruncatedHeader => "dhcp_truncated_header",
            Self::BadMagicCookie => "dhcp_bad_magic_cookie",
            Self::TruncatedOption(_) => "dhcp_truncated_option",
            Self::BadOptionLength(_) => "dhcp_bad_option_length",
            Self::BadRelay => "dhcp_bad_relay",
        }
    }
}

impl Serialize for DhcpError {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.reason())
    }
}

impl<'de> Deserialize<'de> for DhcpError {
    /// From the reason (the option code of `TruncatedOption` and `BadOptionLength`
    /// comes back as 0: the reason does not carry it).
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let r = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        match r.as_ref() {
            "truncated_header" => Ok(Self::TruncatedHeader),
            "bad_magic_cookie" => Ok(Self::BadMagicCookie),
            "truncated_option" => Ok(Self::TruncatedOption(0)),
            "bad_option_length" => Ok(Self::BadOptionLength(0)),
            "bad_relay" => Ok(Self::BadRelay),
            r => Err(serde::de::Error::custom(format!(
                "unknown DHCP anomaly {r:?}"
            ))),
        }
    }
}

/// DHCPv4 message type (option 53); serialized as `"DISCOVER"` ... or the number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DhcpMessageType {
    Discover,
    Offer,
    Request,
    Decline,
    Ack,
    Nak,
    Release,
    Inform,
    /// Any other value (lease query, bulk lease query, ...).
    Other(u8),
}

impl DhcpMessageType {
    fn from_code(code: u8) -> Self {
        match code {
            1 => Self::Discover,
            2 => Self::Offer,
            3 => Self::Request,
            4 => Self::Decline,
            5 => Self::Ack,
            6 => Self::Nak,
            7 => Self::Release,
            8 => Self::Inform,
            other => Self::Other(other),
        }
    }
}

impl Serialize for DhcpMessageType {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let name = match self {
            Self::Discover => "DISCOVER",
            Self::Offer => "OFFER",
            Self::Request => "REQUEST",
            Self::Decline => "DECLINE",
            Self::Ack => "ACK",
            Self::Nak => "NAK",
            Self::Release => "RELEASE",
            Self::Inform => "INFORM",
            Self::Other(code) => return s.serialize_str(&code.to_string()),
        };
        s.serialize_str(name)
    }
}

/// One DHCPv4 message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DhcpSummary {
    /// 1 = BOOTREQUEST (client), 2 = BOOTREPLY (server).
    pub op: u8,
    /// Hardware type (1 = Ethernet).
    pub htype: u8,
    /// Transaction id.
    pub xid: u32,
    /// Broadcast flag.
    pub broadcast: bool,
    /// Client's current address.
    pub ciaddr: Ipv4Addr,
    /// Address the server assigns.
    pub yiaddr: Ipv4Addr,
    /// Next server.
    pub siaddr: Ipv4Addr,
    /// Relay agent.
    pub giaddr: Ipv4Addr,
    /// `aa:bb:cc:dd:ee:ff` when htype = 1 and hlen = 6.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_mac: Option<String>,
    /// Option 53; `None` for a message without it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_type: Option<DhcpMessageType>,
    /// Option 50.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested_ip: Option<Ipv4Addr>,
    /// Option 54.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_id: Option<Ipv4Addr>,
    /// Option 51, seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_time: Option<u32>,
    /// Option 12, escaped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// Option 60, escaped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vendor_class: Option<String>,
    /// Option 55, in the client's order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parameter_request_list: Vec<u8>,
    /// Option 61, hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// Option 81 domain name, escaped, without trailing dot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fqdn: Option<String>,
    /// What could not be decoded (at most [`MAX_ANOMALIES`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub anomalies: Vec<DhcpError>,
}

/// True for UDP between the DHCPv4 ports (client↔server, and relay↔server on 67/67).
pub fn is_dhcp(src_port: u16, dst_port: u16) -> bool {
    let dhcp = |p| p == DHCP_SERVER_PORT || p == DHCP_CLIENT_PORT;
    dhcp(src_port) && dhcp(dst_port)
}

/// True for UDP between the DHCPv6 ports.
pub fn is_dhcpv6(src_port: u16, dst_port: u16) -> bool {
    let dhcp = |p| p == DHCPV6_SERVER_PORT || p == DHCPV6_CLIENT_PORT;
    dhcp(src_port) && dhcp(dst_port)
}

fn ipv4_at(b: &[u8], off: usize) -> Ipv4Addr {
    match b.get(off..off + 4) {
        Some(&[a, b, c, d]) => Ipv4Addr::new(a, b, c, d),
        _ => Ipv4Addr::UNSPECIFIED,
    }
}

fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

fn text(bytes: &[u8]) -> String {
    let mut out = String::new();
    escape_into(bytes, &[], &mut out);
    out
}

fn push_anomaly(anomalies: &mut Vec<DhcpError>, e: DhcpError) {
    if anomalies.len() < MAX_ANOMALIES {
        anomalies.push(e);
    }
}

/// Decodes a DHCPv4 message (the UDP payload).
pub fn parse_dhcpv4(udp_payload: &[u8]) -> Result<DhcpSummary, DhcpError> {
    let b = udp_payload;
    let (Some(fixed), Some(cookie)) = (b.get(..BOOTP_FIXED_LEN), b.get(BOOTP_FIXED_LEN..240))
    else {
        return Err(DhcpError::TruncatedHeader);
    };
    if cookie != MAGIC_COOKIE {
        return Err(DhcpError::BadMagicCookie);
    }
    let byte = |i: usize| fixed.get(i).copied().unwrap_or(0);
    let (htype, hlen) = (byte(1), byte(2));
    let client_mac = match fixed.get(28..34) {
        Some(mac) if htype == 1 && hlen == 6 => Some(
            mac.iter()
                .map(|b| format!("{b:02x}"))
                .collect::<Vec<_>>()
                .join(":"),
        ),
        _ => None,
    };
    let mut sum = DhcpSummary {
        op: byte(0),
        htype,
        xid: u32::from_be_bytes([byte(4), byte(5), byte(6), byte(7)]),
        broadcast: byte(10) & 0x80 != 0,
        ciaddr: ipv4_at(fixed, 12),
        yiaddr: ipv4_at(fixed, 16),
        siaddr: ipv4_at(fixed, 20),
        giaddr: ipv4_at(fixed, 24),
        client_mac,
        message_type: None,
        requested_ip: None,
        server_id: None,
        lease_time: None,
        hostname: None,
        vendor_class: None,
        parameter_request_list: Vec::new(),
        client_id: None,
        fqdn: None,
        anomalies: Vec::new(),
    };
    let options = b.get(240..).unwrap_or_default();
    let overload = walk_v4_options(options, &mut sum);
    // RFC 2131 §4.1: with overload, `file` is read before `sname`.
    if overload & 1 != 0 {
        let file = fixed.get(OFF_FILE..OFF_FILE + FILE_LEN).unwrap_or_default();
        walk_v4_options(file, &mut sum);
    }
    if overload & 2 != 0 {
        let sname = fixed
            .get(OFF_SNAME..OFF_SNAME + SNAME_LEN)
            .unwrap_or_default();
        walk_v4_options(sname, &mut sum);
    }
    Ok(sum)
}

/// Walks one options area into `sum`; returns the option 52 value seen (0 if none).
fn walk_v4_options(mut area: &[u8], sum: &mut DhcpSummary) -> u8 {
    let mut overload = 0;
    while let Some((&code, rest)) = area.split_first() {
        match code {
            0 => {
                area = rest;
                continue;
            }
            255 => break,
            _ => {}
        }
        let value = rest
            .split_first()
            .and_then(|(&len, body)| body.get(..usize::from(len)).map(|v| (v, len)));
        let Some((value, len)) = value else {
            push_anomaly(&mut sum.anomalies, DhcpError::TruncatedOption(code.into()));
            break;
        };
        area = rest.get(1 + usize::from(len)..).unwrap_or_default();
        if !apply_v4_option(code, value, sum, &mut overload) {
            push_anomaly(&mut sum.anomalies, DhcpError::BadOptionLength(code.into()));
        }
    }
    overload
}

/// Stores one option; false when its length is wrong for its type.
fn apply_v4_option(code: u8, value: &[u8], sum: &mut DhcpSummary, overload: &mut u8) -> bool {
    let ipv4 = |v: &[u8]| match v {
        &[a, b, c, d] => Some(Ipv4Addr::new(a, b, c, d)),
        _ => None,
    };
    match code {
        53 => match value {
            &[t] => {
                sum.message_type
                    .get_or_insert(DhcpMessageType::from_code(t));
            }
            _ => return false,
        },
        50 | 54 => {
            let Some(ip) = ipv4(value) else {
                return false;
            };
            let slot = if code == 50 {
                &mut sum.requested_ip
            } else {
                &mut sum.server_id
            };
            slot.get_or_insert(ip);
        }
        51 => match value {
            &[a, b, c, d] => {
                sum.lease_time
                    .get_or_insert(u32::from_be_bytes([a, b, c, d]));
            }
            _ => return false,
        },
        52 => match value {
            &[v] => *overload = v,
            _ => return false,
        },
        12 => {
            sum.hostname.get_or_insert_with(|| text(value));
        }
        60 => {
            sum.vendor_class.get_or_insert_with(|| text(value));
        }
        55 if sum.parameter_request_list.is_empty() => {
            sum.parameter_request_list = value.to_vec();
        }
        61 => {
            sum.client_id.get_or_insert_with(|| hex(value));
        }
        81 => {
            // RFC 4702: flags, two deprecated rcode bytes, then the name.
            let Some((&flags, name)) = value.split_first() else {
                return false;
            };
            let Some(name) = name.get(2..) else {
                return false;
            };
            if sum.fqdn.is_none() {
                // E bit: canonical wire format; otherwise (deprecated) ASCII.
                sum.fqdn = Some(if flags & 0x04 != 0 {
                    wire_name_text(name)
                } else {
                    text(name.strip_suffix(b".").unwrap_or(name))
                });
            }
        }
        _ => {}
    }
    true
}

/// Renders an uncompressed wire-format name (DHCP FQDN options) like a DNS name. A
/// label running past the end is rendered with the bytes present.
fn wire_name_text(mut wire: &[u8]) -> String {
    let mut out = String::new();
    while let Some((&len, rest)) = wire.split_first() {
        if len == 0 {
            break;
        }
        let label = rest.get(..usize::from(len)).unwrap_or(rest);
        if !out.is_empty() {
            out.push('.');
        }
        escape_into(label, &['.'], &mut out);
        wire = rest.get(label.len()..).unwrap_or_default();
    }
    out
}

impl<'de> Deserialize<'de> for DhcpMessageType {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        let code = match name.as_ref() {
            "DISCOVER" => 1,
            "OFFER" => 2,
            "REQUEST" => 3,
            "DECLINE" => 4,
            "ACK" => 5,
            "NAK" => 6,
            "RELEASE" => 7,
            "INFORM" => 8,
            n => n.parse::<u8>().map_err(|_| {
                serde::de::Error::custom(format!("unknown DHCP message type {n:?}"))
            })?,
        };
        Ok(Self::from_code(code))
    }
}

/// DHCPv6 message type; serialized with the RFC 8415 name or the number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dhcpv6MessageType(pub u8);

impl Serialize for Dhcpv6MessageType {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let name = match self.0 {
            1 => "SOLICIT",
            2 => "ADVERTISE",
            3 => "REQUEST",
            4 => "CONFIRM",
            5 => "RENEW",
            6 => "REBIND",
            7 => "REPLY",
            8 => "RELEASE",
            9 => "DECLINE",
            10 => "RECONFIGURE",
            11 => "INFORMATION-REQUEST",
            12 => "RELAY-FORW",
            13 => "RELAY-REPL",
            other => return s.serialize_str(&other.to_string()),
        };
        s.serialize_str(name)
    }
}

/// One DHCPv6 message (the innermost one, when it came through relays).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Dhcpv6Summary {
    /// Message type of the innermost message.
    pub message_type: Dhcpv6MessageType,
    /// 24-bit transaction id.
    pub transaction_id: u32,
    /// Relay wrappers removed (0 when sent directly).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub relay_hops: u8,
    /// Client Identifier option (1): the DUID, hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_duid: Option<String>,
    /// Server Identifier option (2): the DUID, hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_duid: Option<String>,
    /// IA Address options (5) inside IA_NA options (3), at most [`MAX_V6_ADDRESSES`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<Ipv6Addr>,
    /// Option Request option (6), at most [`MAX_V6_ORO`] codes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub option_request: Vec<u16>,
    /// Client FQDN option (39), escaped, without trailing dot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fqdn: Option<String>,
    /// What could not be decoded (at most [`MAX_ANOMALIES`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub anomalies: Vec<DhcpError>,
}

fn is_zero(v: &u8) -> bool {
    *v == 0
}

/// Iterates DHCPv6 options (code u16, length u16, value); yields `Err` once and stops
/// when an option runs past the end.
fn v6_options(mut area: &[u8]) -> impl Iterator<Item = Result<(u16, &[u8]), DhcpError>> {
    std::iter::from_fn(move || {
        let (&[c0, c1, l0, l1], rest) = area.split_first_chunk::<4>()?;
        let code = u16::from_be_bytes([c0, c1]);
        let len = usize::from(u16::from_be_bytes([l0, l1]));
        match rest.get(..len) {
            Some(value) => {
                area = rest.get(len..).unwrap_or_default();
                Some(Ok((code, value)))
            }
            None => {
                area = &[];
                Some(Err(DhcpError::TruncatedOption(code)))
            }
        }
    })
}

/// Decodes a DHCPv6 message (the UDP payload), unwrapping relay messages.
pub fn parse_dhcpv6(udp_payload: &[u8]) -> Result<Dhcpv6Summary, DhcpError> {
    let mut msg = udp_payload;
    let mut relay_hops = 0u8;
    // RELAY-FORW / RELAY-REPL: type, hop count, link address, peer address, options.
    while let Some(&(12 | 13)) = msg.first() {
        if usize::from(relay_hops) >= MAX_V6_RELAY_DEPTH {
            return Err(DhcpError::BadRelay);
        }
        let options = msg.get(34..).ok_or(DhcpError::TruncatedHeader)?;
        let inner = v6_options(options)
            .filter_map(Result::ok)
            .find(|(code, _)| *code == 9)
            .ok_or(DhcpError::BadRelay)?;
        msg = inner.1;
        relay_hops += 1;
    }
    let (&[t, x0, x1, x2], options) = msg
        .split_first_chunk::<4>()
        .ok_or(DhcpError::TruncatedHeader)?;
    let mut sum = Dhcpv6Summary {
        message_type: Dhcpv6MessageType(t),
        transaction_id: u32::from_be_bytes([0, x0, x1, x2]),
        relay_hops,
        client_duid: None,
        server_duid: None,
        addresses: Vec::new(),
        option_request: Vec::new(),
        fqdn: None,
        anomalies: Vec::new(),
    };
    for option in v6_options(options) {
        let (code, value) = match option {
            Ok(o) => o,
            Err(e) => {
                push_anomaly(&mut sum.anomalies, e);
                break;
            }
        };
        match code {
            1 => {
                sum.client_duid.get_or_insert_with(|| hex(value));
            }
            2 => {
                sum.server_duid.get_or_insert_with(|| hex(value));
            }
            3 => ia_na_addresses(value, &mut sum),
            6 if sum.option_request.is_empty() => {
                sum.option_request = value
                    .chunks_exact(2)
                    .take(MAX_V6_ORO)
                    .filter_map(|c| c.first_chunk::<2>().map(|&a| u16::from_be_bytes(a)))
                    .collect();
            }
            39 => match value.split_first() {
                // RFC 4704: flags, then the name in wire format.
                Some((_, name)) => {
                    sum.fqdn.get_or_insert_with(|| wire_name_text(name));
                }
                None => push_anomaly(&mut sum.anomalies, DhcpError::BadOptionLength(code)),
            },
            _ => {}
        }
    }
    Ok(sum)
}

/// IA_NA: IAID, T1, T2 (12 bytes), then options; IA Address (5) starts with the address.
fn ia_na_addresses(value: &[u8], sum: &mut Dhcpv6Summary) {
    let Some(options) = value.get(12..) else {
        push_anomaly(&mut sum.anomalies, DhcpError::BadOptionLength(3));
        return;
    };
    for option in v6_options(options) {
        match option {
            Ok((5, addr)) => match addr.first_chunk::<16>() {
                Some(octets) if sum.addresses.len() < MAX_V6_ADDRESSES => {
                    sum.addresses.push(Ipv6Addr::from(*octets));
                }
                Some(_) => {}
                None => push_anomaly(&mut sum.anomalies, DhcpError::BadOptionLength(5)),
            },
            Ok(_) => {}
            Err(e) => push_anomaly(&mut sum.anomalies, e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A BOOTREQUEST from 02:00:00:aa:bb:cc with xid 0x01020304 and the given options.
    fn v4(options: &[u8]) -> Vec<u8> {
        let mut m = vec![0u8; BOOTP_FIXED_LEN];
        m[..4].copy_from_slice(&[1, 1, 6, 0]);
        m[4..8].copy_from_slice(&[1, 2, 3, 4]);
        m[10] = 0x80;
        m[12..16].copy_from_slice(&[192, 168, 1, 20]);
        m[28..34].copy_from_slice(&[2, 0, 0, 0xaa, 0xbb, 0xcc]);
        m.extend_from_slice(&MAGIC_COOKIE);
        m.extend_from_slice(options);
        m
    }

    #[test]
    fn request_with_fingerprint_options() {
        let mut opts = vec![
            53, 1, 3, 0, 0, 50, 4, 192, 168, 1, 20, 54, 4, 192, 168, 1, 1,
        ];
        opts.extend_from_slice(&[12, 7]);
        opts.extend_from_slice(b"iPhone\xff");
        opts.extend_from_slice(&[55, 4, 1, 121, 3, 6, 61, 7, 1, 2, 0, 0, 0xaa, 0xbb, 0xcc]);
        opts.extend_from_slice(&[60, 4]);
        opts.extend_from_slice(b"MSFT");
        opts.extend_from_slice(&[81, 15, 0x04, 0, 0, 5]);
        opts.extend_from_slice(b"phone\x04test\x00");
        opts.extend_from_slice(&[51, 4, 0, 0, 0x0e, 0x10, 255, 53, 1, 5]);
        let s = parse_dhcpv4(&v4(&opts)).unwrap();
        assert_eq!((s.op, s.xid, s.broadcast), (1, 0x0102_0304, true));
        assert_eq!(s.client_mac.as_deref(), Some("02:00:00:aa:bb:cc"));
        assert_eq!(s.ciaddr, Ipv4Addr::new(192, 168, 1, 20));
        assert_eq!(s.message_type, Some(DhcpMessageType::Request));
        assert_eq!(s.requested_ip, Some(Ipv4Addr::new(192, 168, 1, 20)));
        assert_eq!(s.server_id, Some(Ipv4Addr::new(192, 168, 1, 1)));
        assert_eq!(s.hostname.as_deref(), Some("iPhone\\xff"));
        assert_eq!(s.parameter_request_list, [1, 121, 3, 6]);
        assert_eq!(s.client_id.as_deref(), Some("01020000aabbcc"));
        assert_eq!(s.vendor_class.as_deref(), Some("MSFT"));
        assert_eq!(s.fqdn.as_deref(), Some("phone.test"));
        assert_eq!(s.lease_time, Some(3600));
        assert!(s.anomalies.is_empty());
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(json["message_type"], "REQUEST");
        assert_eq!(json["ciaddr"], "192.168.1.20");
    }

    #[test]
    fn overload_reads_file_then_sname() {
        let mut m = v4(&[52, 1, 3, 255]);
        m[OFF_FILE..OFF_FILE + 3].copy_from_slice(&[53, 1, 1]);
        m[OFF_SNAME..OFF_SNAME + 5].copy_from_slice(&[12, 2, b'h', b'x', 255]);
        let s = parse_dhcpv4(&m).unwrap();
        assert_eq!(s.message_type, Some(DhcpMessageType::Discover));
        assert_eq!(s.hostname.as_deref(), Some("hx"));
    }

    #[test]
    fn truncated_and_bad_options_are_anomalies() {
        let s = parse_dhcpv4(&v4(&[53, 1, 2, 50, 3, 1, 2, 3, 12, 9, b'a'])).unwrap();
        assert_eq!(s.message_type, Some(DhcpMessageType::Offer));
        assert_eq!(s.requested_ip, None);
        assert_eq!(
            s.anomalies,
            [
                DhcpError::BadOptionLength(50),
                DhcpError::TruncatedOption(12)
            ]
        );
        assert_eq!(
            serde_json::to_value(&s).unwrap()["anomalies"][1],
            "truncated_option"
        );
        let s = parse_dhcpv4(&v4(&[53])).unwrap();
        assert_eq!(s.anomalies, [DhcpError::TruncatedOption(53)]);
        let s = parse_dhcpv4(&v4(&[53, 1, 42])).unwrap();
        assert_eq!(serde_json::to_value(&s).unwrap()["message_type"], "42");
    }

    #[test]
    fn header_checks() {
        assert_eq!(parse_dhcpv4(&[1; 239]), Err(DhcpError::TruncatedHeader));
        let mut m = v4(&[]);
        m[239] = 0;
        assert_eq!(parse_dhcpv4(&m), Err(DhcpError::BadMagicCookie));
        m[2] = 8;
        m[239] = 99;
        assert_eq!(parse_dhcpv4(&m).unwrap().client_mac, None);
        assert!(is_dhcp(68, 67) && is_dhcp(67, 68) && is_dhcp(67, 67) && !is_dhcp(53, 67));
        assert!(is_dhcpv6(546, 547) && !is_dhcpv6(546, 53));
    }

    fn v6_opt(code: u16, value: &[u8]) -> Vec<u8> {
        let mut out = code.to_be_bytes().to_vec();
        out.extend_from_slice(&(value.len() as u16).to_be_bytes());
        out.extend_from_slice(value);
        out
    }

    #[test]
    fn dhcpv6_solicit_through_a_relay() {
        let addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x42);
        let mut ia_addr = addr.octets().to_vec();
        ia_addr.extend_from_slice(&[0; 8]);
        let mut ia_na = vec![0; 12];
        ia_na.extend_from_slice(&v6_opt(5, &ia_addr));
        let mut inner = vec![1, 0xab, 0xcd, 0xef];
        inner.extend_from_slice(&v6_opt(1, &[0, 3, 0, 1, 2, 0, 0, 0xaa, 0xbb, 0xcc]));
        inner.extend_from_slice(&v6_opt(6, &[0, 23, 0, 24, 0, 39]));
        inner.extend_from_slice(&v6_opt(3, &ia_na));
        inner.extend_from_slice(&v6_opt(39, b"\x01\x05phone\x04test\x00"));
        let mut relay = vec![12, 0];
        relay.extend_from_slice(&[0; 32]);
        relay.extend_from_slice(&v6_opt(9, &inner));
        let s = parse_dhcpv6(&relay).unwrap();
        assert_eq!(s.message_type, Dhcpv6MessageType(1));
        assert_eq!((s.transaction_id, s.relay_hops), (0xabcdef, 1));
        assert_eq!(s.client_duid.as_deref(), Some("00030001020000aabbcc"));
        assert_eq!(s.option_request, [23, 24, 39]);
        assert_eq!(s.addresses, [addr]);
        assert_eq!(s.fqdn.as_deref(), Some("phone.test"));
        assert!(s.anomalies.is_empty());
        assert_eq!(serde_json::to_value(&s).unwrap()["message_type"], "SOLICIT");
        let mut cut = inner.clone();
        cut.truncate(cut.len() - 3);
        assert_eq!(
            parse_dhcpv6(&cut).unwrap().anomalies,
            [DhcpError::TruncatedOption(39)]
        );
        assert_eq!(parse_dhcpv6(&[1, 2]), Err(DhcpError::TruncatedHeader));
        let mut deep = inner;
        for _ in 0..=MAX_V6_RELAY_DEPTH {
            let mut r = vec![13, 0];
            r.extend_from_slice(&[0; 32]);
            r.extend_from_slice(&v6_opt(9, &deep));
            deep = r;
        }
        assert_eq!(parse_dhcpv6(&deep), Err(DhcpError::BadRelay));
        assert_eq!(DhcpError::BadRelay.reason(), "bad_relay");
    }

    proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = parse_dhcpv4(&bytes);
            let _ = parse_dhcpv6(&bytes);
        }

        #[test]
        fn v4_options_never_panic(opts in proptest::collection::vec(any::<u8>(), 0..300), file in proptest::collection::vec(any::<u8>(), 0..128)) {
            let mut m = v4(&opts);
            m[OFF_FILE..OFF_FILE + file.len()].copy_from_slice(&file);
            m[OFF_SNAME..OFF_SNAME + 64].copy_from_slice(&file.get(..64).unwrap_or(&[0; 64]).iter().copied().chain([0; 64]).take(64).collect::<Vec<_>>());
            if let Ok(s) = parse_dhcpv4(&m) {
                prop_assert!(s.anomalies.len() <= MAX_ANOMALIES);
            }
        }

        #[test]
        fn v6_options_never_panic(body in proptest::collection::vec(any::<u8>(), 0..400), relay in any::<bool>()) {
            let mut m = if relay { vec![12, 0] } else { vec![1, 0, 0, 1] };
            if relay {
                m.extend_from_slice(&[0; 32]);
            }
            m.extend_from_slice(&body);
            let _ = parse_dhcpv6(&m);
        }
    }
}
