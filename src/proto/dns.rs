//! DNS message summaries (RFC 1035 wire format, via `hickory-proto`) for DNS over UDP
//! and TCP on port 53, shaped like the ECS `dns.*` fields.
//!
//! Owns: [`parse_message`] (one message → owned [`DnsSummary`]), the DNS-over-TCP framing
//! helper [`split_tcp_messages`]. Names are escaped by [`super::text::escape_into`].
//!
//! Invariants:
//! - Never panics on any input. The 12-byte header and the question section must parse,
//!   otherwise the result is a [`DnsError`]. A failure after that (a bad record, a bad
//!   name in the answer section, a truncated message) keeps what was parsed so far and
//!   records the failure in [`DnsSummary::anomalies`].
//! - At most [`MAX_ANSWERS`] answers are kept; the rest are counted in
//!   [`DnsSummary::answers_dropped`]. Names are at most 255 octets (enforced by
//!   `hickory-proto`). Compression pointers must point strictly backwards
//!   (`hickory-proto` enforces it), so a compression loop cannot exist: it is reported as
//!   `bad_compression_pointer`.
//! - Names are kept as received (case preserved), without the trailing dot; the root
//!   name is `"."`. Label bytes that are not printable UTF-8, and a `.` or `\` inside a
//!   label, are written as `\xNN`, so a name is never dropped and never ambiguous.
//! - Unknown values are kept as numbers: record types as `TYPE65400`, classes as
//!   `CLASS32`, response codes and opcodes as the decimal number.
//! - Answer `data` text: A/AAAA the address; CNAME/NS/PTR/DNAME the target name;
//!   MX `"pref name"`; SRV `"prio weight port target"`; SOA `"mname rname serial refresh
//!   retry expire minimum"`; TXT each character-string in double quotes, separated by a
//!   space (`"v=spf1 -all" "x"`), with `"`, `\` and non-printable bytes as `\xNN`;
//!   HTTPS/SVCB `"prio target key=value ..."` (see [`SvcbSummary`], `ech=<N bytes>`);
//!   any other type, or rdata that does not decode, lowercase hex of the rdata (at most
//!   [`MAX_HEX_RDATA`] bytes, then `...`).

use std::borrow::Cow;
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::text::escape_into;
use hickory_proto::rr::rdata::svcb::{SvcParamValue, SVCB};
use hickory_proto::rr::{Name, RData, RecordType};
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder, DecodeError, Restrict};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The well-known DNS port, for UDP and TCP.
pub const DNS_PORT: u16 = 53;
/// Size of the fixed DNS header.
pub const HEADER_LEN: usize = 12;
/// Largest DNS message: the TCP length prefix is 16 bits, and compression offsets are
/// 14 bits into a message of at most this size. Longer input is rejected.
pub const MAX_MESSAGE_LEN: usize = 65_535;
/// Answers kept per message. Real responses carry a handful; a message stuffed with
/// thousands of records must not turn into thousands of owned strings.
pub const MAX_ANSWERS: usize = 64;
/// Distinct anomalies kept per message (the first ones; one bad record usually ends
/// the walk anyway).
pub const MAX_ANOMALIES: usize = 8;
/// Rdata bytes rendered as hex for unknown or undecodable records, and TXT bytes
/// rendered as text: enough to identify the data, bounded so a 64 KiB record does not
/// become a 128 KiB log field.
pub const MAX_HEX_RDATA: usize = 256;
/// TXT payload bytes rendered per record (see [`MAX_HEX_RDATA`] for the reason).
pub const MAX_TXT_BYTES: usize = 1024;
/// CNAME hops followed from the question name when building
/// [`DnsSummary::resolved_ips`]; resolvers themselves give up near 8–16.
pub const MAX_CNAME_CHAIN: usize = 16;

const TYPE_OPT: u16 = 41;
const TYPE_DNAME: u16 = 39;
/// hickory maps the private-use value 65305 to "ANAME", which is no registered type.
const TYPE_HICKORY_ANAME: u16 = 65_305;

/// Why a DNS message (or part of it) could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DnsError {
    /// Fewer than 12 bytes: no DNS header.
    #[error("message shorter than the DNS header")]
    TruncatedHeader,
    /// The message ended inside a name, a question or a record.
    #[error("message truncated")]
    Truncated,
    /// More than [`MAX_MESSAGE_LEN`] bytes.
    #[error("message longer than 65535 bytes")]
    TooLong,
    /// A compression pointer points forward, into itself, or forms a loop.
    #[error("bad compression pointer")]
    BadCompressionPointer,
    /// A label length byte above 63.
    #[error("label longer than 63 bytes")]
    LabelTooLong,
    /// A name longer than 255 bytes.
    #[error("name longer than 255 bytes")]
    NameTooLong,
    /// A label type other than a length or a pointer (0b01 / 0b10 prefixes).
    #[error("unknown label type")]
    BadLabelType,
    /// The rdata of a record of this type did not decode; its hex is kept.
    #[error("rdata of type {0} does not decode")]
    BadRdata(u16),
    /// Anything else `hickory-proto` rejected.
    #[error("malformed message")]
    Malformed,
}

impl DnsError {
    /// Stable snake_case reason, for anomaly counters and log fields.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::TruncatedHeader => "truncated_header",
            Self::Truncated => "truncated",
            Self::TooLong => "too_long",
            Self::BadCompressionPointer => "bad_compression_pointer",
            Self::LabelTooLong => "label_too_long",
            Self::NameTooLong => "name_too_long",
            Self::BadLabelType => "bad_label_type",
            Self::BadRdata(_) => "bad_rdata",
            Self::Malformed => "malformed",
        }
    }

    /// The key counting this error in the `flow_anomalies` stats: the reason with the
    /// `dns_` prefix, so it cannot be mistaken for another parser's.
    pub fn anomaly_key(&self) -> &'static str {
        match self {
            Self::TruncatedHeader => "dns_truncated_header",
            Self::Truncated => "dns_truncated",
            Self::TooLong => "dns_too_long",
            Self::BadCompressionPointer => "dns_bad_compression_pointer",
            Self::LabelTooLong => "dns_label_too_long",
            Self::NameTooLong => "dns_name_too_long",
            Self::BadLabelType => "dns_bad_label_type",
            Self::BadRdata(_) => "dns_bad_rdata",
            Self::Malformed => "dns_malformed",
        }
    }
}

impl Serialize for DnsError {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.reason())
    }
}

impl From<DecodeError> for DnsError {
    fn from(e: DecodeError) -> Self {
        match e {
            DecodeError::InsufficientBytes => Self::Truncated,
            DecodeError::PointerNotPriorToLabel { .. }
            | DecodeError::LabelOverlapsWithOther { .. } => Self::BadCompressionPointer,
            DecodeError::LabelBytesTooLong(_) => Self::LabelTooLong,
            DecodeError::DomainNameTooLong(_) => Self::NameTooLong,
            DecodeError::UnrecognizedLabelCode(_) => Self::BadLabelType,
            _ => Self::Malformed,
        }
    }
}

/// One decoded DNS message, shaped like ECS `dns.*`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DnsSummary {
    /// `dns.id`.
    pub id: u16,
    /// QR bit; serialized as `dns.type`: `"query"` or `"answer"`.
    #[serde(
        rename = "type",
        serialize_with = "ser_message_type",
        deserialize_with = "de_message_type"
    )]
    pub is_response: bool,
    /// `dns.op_code`: `QUERY`, `NOTIFY`, `UPDATE`, ... or the number.
    pub op_code: Cow<'static, str>,
    /// `dns.header_flags`: the set flags among AA, TC, RD, RA, AD, CD, and DO (from EDNS).
    #[serde(deserialize_with = "de_header_flags")]
    pub header_flags: Vec<&'static str>,
    /// `dns.response_code`: `NOERROR`, `NXDOMAIN`, ... (with the EDNS extended bits).
    pub response_code: Cow<'static, str>,
    /// The first question (`dns.question.*`); `None` when QDCOUNT is 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub question: Option<DnsQuestion>,
    /// The answer section, at most [`MAX_ANSWERS`].
    pub answers: Vec<DnsAnswer>,
    /// Answers counted in the header but not kept (beyond [`MAX_ANSWERS`] or after a
    /// decoding failure).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub answers_dropped: u16,
    /// A/AAAA answers reachable from the question name through the CNAME chain.
    /// Addresses whose owner is not on that chain are left out (they are still in
    /// `answers`): they were not asked for, and mapping them to the question name
    /// would let a response attribute arbitrary addresses to it.
    pub resolved_ips: Vec<ResolvedIp>,
    /// What went wrong after the question section (at most [`MAX_ANOMALIES`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub anomalies: Vec<DnsError>,
}

/// `dns.question.*`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DnsQuestion {
    /// Escaped name without trailing dot.
    pub name: String,
    /// Type mnemonic (`A`, `HTTPS`, `TYPE65400`).
    #[serde(rename = "type")]
    pub qtype: Cow<'static, str>,
    /// Class mnemonic (`IN`, `CLASS32`).
    pub class: Cow<'static, str>,
}

/// One entry of `dns.answers`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DnsAnswer {
    /// Owner name, escaped, without trailing dot.
    pub name: String,
    /// Type mnemonic.
    #[serde(rename = "type")]
    pub rtype: Cow<'static, str>,
    /// Class mnemonic.
    pub class: Cow<'static, str>,
    /// Time to live in seconds.
    pub ttl: u32,
    /// Rdata as text (format in the module documentation).
    pub data: String,
    /// The decoded parameters of an HTTPS or SVCB record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub svcb: Option<SvcbSummary>,
}

/// Parameters of an HTTPS/SVCB record (RFC 9460).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SvcbSummary {
    /// SvcPriority; 0 is alias mode.
    pub priority: u16,
    /// TargetName, escaped; `"."` means the owner name.
    pub target: String,
    /// `alpn` protocol ids, escaped.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub alpn: Vec<String>,
    /// `no-default-alpn` present.
    #[serde(default, skip_serializing_if = "is_false")]
    pub no_default_alpn: bool,
    /// `port`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// `ech`: length in bytes of the ECHConfigList, when present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ech_len: Option<usize>,
    /// `ipv4hint`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ipv4hint: Vec<Ipv4Addr>,
    /// `ipv6hint`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ipv6hint: Vec<Ipv6Addr>,
    /// Other keys (mandatory, keyNNNNN), as numbers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub other_keys: Vec<u16>,
}

/// An address from the answer section mapped back to the name the client asked for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResolvedIp {
    /// The question name.
    pub name: String,
    /// The owner of the A/AAAA record: the question name or the end of its CNAME chain.
    pub canonical: String,
    /// The address.
    pub ip: IpAddr,
    /// TTL of the A/AAAA record.
    pub ttl: u32,
}

fn ser_message_type<S: Serializer>(is_response: &bool, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(if *is_response { "answer" } else { "query" })
}

fn de_message_type<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    match <std::borrow::Cow<'de, str>>::deserialize(d)?.as_ref() {
        "answer" => Ok(true),
        "query" => Ok(false),
        t => Err(serde::de::Error::custom(format!(
            "dns type {t:?} is not \"query\" or \"answer\""
        ))),
    }
}

/// The header flags a summary can hold (see `header_flags`); others are refused.
const HEADER_FLAGS: [&str; 7] = ["AA", "TC", "RD", "RA", "AD", "CD", "DO"];

fn de_header_flags<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<&'static str>, D::Error> {
    let names = <Vec<std::borrow::Cow<'de, str>>>::deserialize(d)?;
    names
        .iter()
        .map(|n| {
            HEADER_FLAGS
                .iter()
                .find(|f| **f == n.as_ref())
                .copied()
                .ok_or_else(|| serde::de::Error::custom(format!("unknown DNS header flag {n:?}")))
        })
        .collect()
}

impl<'de> Deserialize<'de> for DnsError {
    /// From the reason (`BadRdata` comes back with type 0: the reason does not carry it).
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let r = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Ok(match r.as_ref() {
            "truncated_header" => Self::TruncatedHeader,
            "truncated" => Self::Truncated,
            "too_long" => Self::TooLong,
            "bad_compression_pointer" => Self::BadCompressionPointer,
            "label_too_long" => Self::LabelTooLong,
            "name_too_long" => Self::NameTooLong,
            "bad_label_type" => Self::BadLabelType,
            "bad_rdata" => Self::BadRdata(0),
            _ => Self::Malformed,
        })
    }
}

fn is_zero(v: &u16) -> bool {
    *v == 0
}

fn is_false(v: &bool) -> bool {
    !*v
}

/// The fixed-size part of a resource record, located in the message.
struct RawRecord {
    rtype: u16,
    class: u16,
    ttl: u32,
    rdata_start: usize,
    rdlen: u16,
}

/// Decodes one DNS message (a UDP payload, or one message from [`split_tcp_messages`]).
pub fn parse_message(bytes: &[u8]) -> Result<DnsSummary, DnsError> {
    if bytes.len() > MAX_MESSAGE_LEN {
        return Err(DnsError::TooLong);
    }
    let mut dec = BinDecoder::new(bytes);
    let header = dec
        .read_slice(HEADER_LEN)
        .map_err(|_| DnsError::TruncatedHeader)?
        .unverified();
    let be16 = |i: usize| match header.get(i..i + 2) {
        Some(&[a, b]) => u16::from_be_bytes([a, b]),
        _ => 0,
    };
    let (id, flags) = (be16(0), be16(2));
    let (qdcount, ancount, nscount, arcount) = (be16(4), be16(6), be16(8), be16(10));

    let mut question = None;
    for _ in 0..qdcount {
        let name = Name::read(&mut dec)?;
        let qtype = read_u16(&mut dec)?;
        let qclass = read_u16(&mut dec)?;
        if question.is_none() {
            question = Some(DnsQuestion {
                name: name_text(&name),
                qtype: type_name(qtype),
                class: class_name(qclass),
            });
        }
    }

    let mut summary = DnsSummary {
        id,
        is_response: flags & 0x8000 != 0,
        op_code: opcode_name(((flags >> 11) & 0xF) as u8),
        header_flags: Vec::new(),
        response_code: Cow::Borrowed(""),
        question,
        answers: Vec::new(),
        answers_dropped: 0,
        resolved_ips: Vec::new(),
        anomalies: Vec::new(),
    };
    let mut rcode = flags & 0xF;
    let mut dnssec_ok = false;

    let total = u32::from(ancount) + u32::from(nscount) + u32::from(arcount);
    for index in 0..total {
        let in_answers = index < u32::from(ancount);
        let keep = in_answers && summary.answers.len() < MAX_ANSWERS;
        let parsed = if keep {
            read_answer(bytes, &mut dec, &mut summary.anomalies).map(|a| {
                summary.answers.push(a);
            })
        } else {
            skip_name(&mut dec)
                .and_then(|()| read_record_fixed(&mut dec))
                .map(|raw| {
                    if !in_answers && raw.rtype == TYPE_OPT {
                        // RFC 6891: the OPT TTL carries the extended rcode and the DO bit.
                        rcode |= ((raw.ttl >> 24) as u16) << 4;
                        dnssec_ok = raw.ttl & 0x8000 != 0;
                    }
                })
        };
        if let Err(e) = parsed {
            push_anomaly(&mut summary.anomalies, e);
            break;
        }
    }
    let kept = u16::try_from(summary.answers.len()).unwrap_or(u16::MAX);
    summary.answers_dropped = ancount.saturating_sub(kept);

    summary.header_flags = header_flags(flags, dnssec_ok);
    summary.response_code = rcode_name(rcode);
    summary.resolved_ips = resolve_ips(summary.question.as_ref(), &summary.answers);
    Ok(summary)
}

fn push_anomaly(anomalies: &mut Vec<DnsError>, e: DnsError) {
    if anomalies.len() < MAX_ANOMALIES {
        anomalies.push(e);
    }
}

fn read_u16(dec: &mut BinDecoder<'_>) -> Result<u16, DnsError> {
    Ok(dec.read_u16()?.unverified())
}

/// Skips a (possibly compressed) name without following pointers or allocating.
fn skip_name(dec: &mut BinDecoder<'_>) -> Result<(), DnsError> {
    loop {
        let len = dec.read_u8()?.unverified();
        match len & 0xC0 {
            0x00 if len == 0 => return Ok(()),
            0x00 => {
                dec.read_slice(usize::from(len))?;
            }
            0xC0 => {
                dec.read_u8()?;
                return Ok(());
            }
            _ => return Err(DnsError::BadLabelType),
        }
    }
}

/// Reads TYPE, CLASS, TTL, RDLENGTH and steps over the rdata.
fn read_record_fixed(dec: &mut BinDecoder<'_>) -> Result<RawRecord, DnsError> {
    let rtype = read_u16(dec)?;
    let class = read_u16(dec)?;
    let ttl = dec.read_u32()?.unverified();
    let rdlen = read_u16(dec)?;
    let rdata_start = dec.index();
    dec.read_slice(usize::from(rdlen))?;
    Ok(RawRecord {
        rtype,
        class,
        ttl,
        rdata_start,
        rdlen,
    })
}

fn read_answer(
    msg: &[u8],
    dec: &mut BinDecoder<'_>,
    anomalies: &mut Vec<DnsError>,
) -> Result<DnsAnswer, DnsError> {
    let owner = Name::read(dec)?;
    let raw = read_record_fixed(dec)?;
    let rdata = msg
        .get(raw.rdata_start..raw.rdata_start + usize::from(raw.rdlen))
        .unwrap_or_default();
    let (data, svcb) = match render_rdata(msg, &raw) {
        Some(rendered) => rendered,
        None => {
            push_anomaly(anomalies, DnsError::BadRdata(raw.rtype));
            (hex_text(rdata), None)
        }
    };
    Ok(DnsAnswer {
        name: name_text(&owner),
        rtype: type_name(raw.rtype),
        class: class_name(raw.class),
        ttl: raw.ttl,
        data,
        svcb,
    })
}

/// Renders the rdata of a record; `None` when a type we decode does not decode.
fn render_rdata(msg: &[u8], raw: &RawRecord) -> Option<(String, Option<SvcbSummary>)> {
    // `parse_message` rejects messages above 65535 bytes, so every offset fits in u16.
    let start = u16::try_from(raw.rdata_start).ok()?;
    let mut dec = BinDecoder::new(msg).clone(start);
    if raw.rtype == TYPE_DNAME {
        let target = Name::read(&mut dec).ok()?;
        let consumed = dec.index() - raw.rdata_start;
        return (consumed == usize::from(raw.rdlen)).then(|| (name_text(&target), None));
    }
    let rtype = RecordType::from(raw.rtype);
    let decoded = matches!(
        rtype,
        RecordType::A
            | RecordType::AAAA
            | RecordType::CNAME
            | RecordType::NS
            | RecordType::PTR
            | RecordType::MX
            | RecordType::TXT
            | RecordType::SRV
            | RecordType::SOA
            | RecordType::HTTPS
            | RecordType::SVCB
    );
    if !decoded {
        let rdata = msg.get(raw.rdata_start..raw.rdata_start + usize::from(raw.rdlen))?;
        return Some((hex_text(rdata), None));
    }
    let rdata = RData::read(&mut dec, rtype, Restrict::new(raw.rdlen)).ok()?;
    let text = match &rdata {
        RData::A(a) => a.0.to_string(),
        RData::AAAA(a) => a.0.to_string(),
        RData::CNAME(n) => name_text(&n.0),
        RData::NS(n) => name_text(&n.0),
        RData::PTR(n) => name_text(&n.0),
        RData::MX(mx) => format!("{} {}", mx.preference, name_text(&mx.exchange)),
        RData::SRV(srv) => format!(
            "{} {} {} {}",
            srv.priority,
            srv.weight,
            srv.port,
            name_text(&srv.target)
        ),
        RData::SOA(soa) => format!(
            "{} {} {} {} {} {} {}",
            name_text(&soa.mname),
            name_text(&soa.rname),
            soa.serial,
            soa.refresh,
            soa.retry,
            soa.expire,
            soa.minimum
        ),
        RData::TXT(txt) => txt_text(txt.txt_data.iter().map(|s| &s[..])),
        RData::HTTPS(https) => return Some(svcb_text(&https.0)),
        RData::SVCB(svcb) => return Some(svcb_text(svcb)),
        _ => return None,
    };
    Some((text, None))
}

fn txt_text<'a>(strings: impl Iterator<Item = &'a [u8]>) -> String {
    let mut out = String::new();
    let mut budget = MAX_TXT_BYTES;
    for s in strings {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push('"');
        let shown = s.get(..budget).unwrap_or(s);
        escape_into(shown, &['"'], &mut out);
        out.push('"');
        budget -= shown.len();
        if shown.len() < s.len() {
            out.push_str("...");
            break;
        }
    }
    out
}

fn svcb_text(svcb: &SVCB) -> (String, Option<SvcbSummary>) {
    let mut sum = SvcbSummary {
        priority: svcb.svc_priority,
        target: name_text(&svcb.target_name),
        ..SvcbSummary::default()
    };
    let mut text = format!("{} {}", sum.priority, sum.target);
    for (key, value) in &svcb.svc_params {
        match value {
            SvcParamValue::Alpn(alpn) => {
                for id in &alpn.0 {
                    let mut s = String::new();
                    escape_into(id.as_bytes(), &[','], &mut s);
                    sum.alpn.push(s);
                }
                let _ = write!(text, " alpn={}", sum.alpn.join(","));
            }
            SvcParamValue::NoDefaultAlpn => {
                sum.no_default_alpn = true;
                text.push_str(" no-default-alpn");
            }
            SvcParamValue::Port(port) => {
                sum.port = Some(*port);
                let _ = write!(text, " port={port}");
            }
            SvcParamValue::EchConfigList(ech) => {
                sum.ech_len = Some(ech.0.len());
                let _ = write!(text, " ech=<{} bytes>", ech.0.len());
            }
            SvcParamValue::Ipv4Hint(hint) => {
                sum.ipv4hint = hint.0.iter().map(|a| a.0).collect();
                let list: Vec<String> = sum.ipv4hint.iter().map(|a| a.to_string()).collect();
                let _ = write!(text, " ipv4hint={}", list.join(","));
            }
            SvcParamValue::Ipv6Hint(hint) => {
                sum.ipv6hint = hint.0.iter().map(|a| a.0).collect();
                let list: Vec<String> = sum.ipv6hint.iter().map(|a| a.to_string()).collect();
                let _ = write!(text, " ipv6hint={}", list.join(","));
            }
            SvcParamValue::Mandatory(_) | SvcParamValue::Unknown(_) => {
                let code = u16::from(*key);
                sum.other_keys.push(code);
                let _ = write!(text, " key{code}");
            }
        }
    }
    (text, Some(sum))
}

fn resolve_ips(question: Option<&DnsQuestion>, answers: &[DnsAnswer]) -> Vec<ResolvedIp> {
    let Some(question) = question else {
        return Vec::new();
    };
    let mut chain: Vec<&str> = vec![&question.name];
    while chain.len() <= MAX_CNAME_CHAIN {
        let Some(last) = chain.last().copied() else {
            break;
        };
        let next = answers.iter().find(|a| {
            a.rtype == "CNAME"
                && a.name.eq_ignore_ascii_case(last)
                && !chain.iter().any(|c| c.eq_ignore_ascii_case(&a.data))
        });
        match next {
            Some(a) => chain.push(&a.data),
            None => break,
        }
    }
    answers
        .iter()
        .filter(|a| a.rtype == "A" || a.rtype == "AAAA")
        .filter(|a| chain.iter().any(|c| c.eq_ignore_ascii_case(&a.name)))
        .filter_map(|a| {
            Some(ResolvedIp {
                name: question.name.clone(),
                canonical: a.name.clone(),
                ip: a.data.parse().ok()?,
                ttl: a.ttl,
            })
        })
        .collect()
}

/// Renders a name: labels joined by `.`, no trailing dot, root as `"."`.
fn name_text(name: &Name) -> String {
    let mut out = String::with_capacity(name.len());
    for label in name.iter() {
        if !out.is_empty() {
            out.push('.');
        }
        escape_into(label, &['.'], &mut out);
    }
    if out.is_empty() {
        out.push('.');
    }
    out
}

fn hex_text(bytes: &[u8]) -> String {
    let shown = bytes.get(..MAX_HEX_RDATA).unwrap_or(bytes);
    let mut out = String::with_capacity(shown.len() * 2 + 3);
    for b in shown {
        let _ = write!(out, "{b:02x}");
    }
    if shown.len() < bytes.len() {
        out.push_str("...");
    }
    out
}

fn header_flags(flags: u16, dnssec_ok: bool) -> Vec<&'static str> {
    const BITS: [(u16, &str); 6] = [
        (0x0400, "AA"),
        (0x0200, "TC"),
        (0x0100, "RD"),
        (0x0080, "RA"),
        (0x0020, "AD"),
        (0x0010, "CD"),
    ];
    let mut out: Vec<&'static str> = BITS
        .iter()
        .filter(|(bit, _)| flags & bit != 0)
        .map(|(_, name)| *name)
        .collect();
    if dnssec_ok {
        out.push("DO");
    }
    out
}

/// Record type mnemonic, `TYPEn` (RFC 3597) when unknown.
fn type_name(code: u16) -> Cow<'static, str> {
    match RecordType::from(code) {
        RecordType::Unknown(_) | RecordType::ZERO => Cow::Owned(format!("TYPE{code}")),
        _ if code == TYPE_HICKORY_ANAME => Cow::Owned(format!("TYPE{code}")),
        known => Cow::Borrowed(known.into()),
    }
}

/// Class mnemonic, `CLASSn` (RFC 3597) when unknown.
fn class_name(code: u16) -> Cow<'static, str> {
    Cow::Borrowed(match code {
        1 => "IN",
        3 => "CH",
        4 => "HS",
        254 => "NONE",
        255 => "ANY",
        _ => return Cow::Owned(format!("CLASS{code}")),
    })
}

fn opcode_name(code: u8) -> Cow<'static, str> {
    let name = match code {
        0 => "QUERY",
        1 => "IQUERY",
        2 => "STATUS",
        4 => "NOTIFY",
        5 => "UPDATE",
        6 => "DSO",
        _ => return Cow::Owned(code.to_string()),
    };
    Cow::Borrowed(name)
}

/// Response code name (IANA registry); with EDNS, 16 is BADVERS.
fn rcode_name(code: u16) -> Cow<'static, str> {
    let name = match code {
        0 => "NOERROR",
        1 => "FORMERR",
        2 => "SERVFAIL",
        3 => "NXDOMAIN",
        4 => "NOTIMP",
        5 => "REFUSED",
        6 => "YXDOMAIN",
        7 => "YXRRSET",
        8 => "NXRRSET",
        9 => "NOTAUTH",
        10 => "NOTZONE",
        11 => "DSOTYPENI",
        16 => "BADVERS",
        17 => "BADKEY",
        18 => "BADTIME",
        19 => "BADMODE",
        20 => "BADNAME",
        21 => "BADALG",
        22 => "BADTRUNC",
        23 => "BADCOOKIE",
        _ => return Cow::Owned(code.to_string()),
    };
    Cow::Borrowed(name)
}

/// Splits a reassembled DNS-over-TCP byte stream (RFC 1035 §4.2.2: each message is
/// preceded by a 2-byte big-endian length) into complete messages.
///
/// Iterate to get the complete messages; afterwards [`TcpMessages::consumed`] says how
/// many bytes they took (drop them from the buffer) and [`TcpMessages::needs_more`]
/// whether a partial message is left.
pub fn split_tcp_messages(stream: &[u8]) -> TcpMessages<'_> {
    TcpMessages {
        rest: stream,
        consumed: 0,
    }
}

/// Iterator over the complete length-prefixed messages of a TCP stream prefix.
#[derive(Debug, Clone)]
pub struct TcpMessages<'a> {
    rest: &'a [u8],
    consumed: usize,
}

impl<'a> TcpMessages<'a> {
    /// Bytes taken by the messages yielded so far, prefixes included.
    pub fn consumed(&self) -> usize {
        self.consumed
    }

    /// True when bytes are left that start a message not yet complete.
    pub fn needs_more(&self) -> bool {
        !self.rest.is_empty()
    }

    /// The bytes not yet yielded.
    pub fn remainder(&self) -> &'a [u8] {
        self.rest
    }
}

impl<'a> Iterator for TcpMessages<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        let (&[hi, lo], body) = self.rest.split_first_chunk::<2>()?;
        let len = usize::from(u16::from_be_bytes([hi, lo]));
        let msg = body.get(..len)?;
        self.rest = body.get(len..).unwrap_or_default();
        self.consumed += 2 + len;
        Some(msg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const A: u16 = 1;
    const CNAME: u16 = 5;

    fn wire_name(name: &str) -> Vec<u8> {
        let mut out = Vec::new();
        for label in name.split('.').filter(|l| !l.is_empty()) {
            out.push(label.len() as u8);
            out.extend_from_slice(label.as_bytes());
        }
        out.push(0);
        out
    }

    fn rr(owner: &[u8], rtype: u16, ttl: u32, rdata: &[u8]) -> Vec<u8> {
        let mut out = owner.to_vec();
        out.extend_from_slice(&rtype.to_be_bytes());
        out.extend_from_slice(&1u16.to_be_bytes());
        out.extend_from_slice(&ttl.to_be_bytes());
        out.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
        out.extend_from_slice(rdata);
        out
    }

    /// A message with one question (unless `qname` is empty) and the given sections.
    fn message(flags: u16, qname: &str, qtype: u16, an: &[Vec<u8>], ar: &[Vec<u8>]) -> Vec<u8> {
        let qd = u16::from(!qname.is_empty());
        let mut out = vec![0x12, 0x34];
        for v in [flags, qd, an.len() as u16, 0, ar.len() as u16] {
            out.extend_from_slice(&v.to_be_bytes());
        }
        if qd == 1 {
            out.extend_from_slice(&wire_name(qname));
            out.extend_from_slice(&qtype.to_be_bytes());
            out.extend_from_slice(&1u16.to_be_bytes());
        }
        an.iter().chain(ar).for_each(|r| out.extend_from_slice(r));
        out
    }

    /// Pointer to the question name, which always starts at offset 12.
    const QPTR: [u8; 2] = [0xC0, 0x0C];

    #[test]
    fn response_with_cname_chain() {
        let an = [
            rr(&QPTR, CNAME, 60, &wire_name("Edge.Example.NET")),
            rr(&wire_name("edge.example.net"), A, 30, &[192, 0, 2, 1]),
            rr(
                &wire_name("edge.example.net"),
                28,
                30,
                &[0x20, 1, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
            ),
            rr(&wire_name("evil.example"), A, 30, &[198, 51, 100, 7]),
        ];
        let s = parse_message(&message(0x8180, "WWW.example.com", A, &an, &[])).unwrap();
        assert!(s.is_response);
        assert_eq!(s.id, 0x1234);
        assert_eq!(s.op_code, "QUERY");
        assert_eq!(s.header_flags, ["RD", "RA"]);
        assert_eq!(s.response_code, "NOERROR");
        let q = s.question.as_ref().unwrap();
        assert_eq!(
            (q.name.as_str(), &*q.qtype, &*q.class),
            ("WWW.example.com", "A", "IN")
        );
        assert_eq!(s.answers.len(), 4);
        assert_eq!(s.answers[0].name, "WWW.example.com");
        assert_eq!(s.answers[0].data, "Edge.Example.NET");
        assert_eq!(s.answers[2].data, "2001:db8::1");
        assert!(s.anomalies.is_empty());
        let ips: Vec<_> = s
            .resolved_ips
            .iter()
            .map(|r| {
                (
                    r.name.as_str(),
                    r.canonical.as_str(),
                    r.ip.to_string(),
                    r.ttl,
                )
            })
            .collect();
        assert_eq!(
            ips,
            [
                (
                    "WWW.example.com",
                    "edge.example.net",
                    "192.0.2.1".to_owned(),
                    30
                ),
                (
                    "WWW.example.com",
                    "edge.example.net",
                    "2001:db8::1".to_owned(),
                    30
                ),
            ]
        );
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(json["type"], "answer");
        assert_eq!(json["answers"][1]["type"], "A");
        assert!(json.get("anomalies").is_none());
    }

    #[test]
    fn cname_loop_in_answers_is_bounded() {
        let an = [
            rr(&QPTR, CNAME, 1, &wire_name("b.test")),
            rr(&wire_name("b.test"), CNAME, 1, &wire_name("a.test")),
            rr(&wire_name("a.test"), A, 1, &[10, 0, 0, 1]),
        ];
        let s = parse_message(&message(0x8000, "a.test", A, &an, &[])).unwrap();
        assert_eq!(s.resolved_ips.len(), 1);
    }

    #[test]
    fn compression_pointer_to_itself_is_an_anomaly() {
        let mut m = message(0x8000, "x.test", A, &[], &[]);
        m[7] = 2; // ANCOUNT = 2
        m.extend_from_slice(&rr(&QPTR, A, 5, &[1, 2, 3, 4]));
        let self_ptr = m.len() as u16 | 0xC000;
        m.extend_from_slice(&rr(&self_ptr.to_be_bytes(), A, 5, &[1, 2, 3, 4]));
        let s = parse_message(&m).unwrap();
        assert_eq!(s.answers.len(), 1);
        assert_eq!(s.answers_dropped, 1);
        assert_eq!(s.anomalies, [DnsError::BadCompressionPointer]);
        assert_eq!(
            serde_json::to_value(&s).unwrap()["anomalies"][0],
            "bad_compression_pointer"
        );
    }

    #[test]
    fn compression_loop_in_question_is_an_error() {
        // Two labels whose pointers point at each other: 12 → "a" + ptr 16, 16 → ptr 12.
        let mut m = vec![0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        m.extend_from_slice(&[1, b'a', 0xC0, 16, 0xC0, 12, 0, 1, 0, 1]);
        assert_eq!(parse_message(&m), Err(DnsError::BadCompressionPointer));
        assert_eq!(
            DnsError::BadCompressionPointer.reason(),
            "bad_compression_pointer"
        );
    }

    #[test]
    fn overlong_names_and_bad_labels() {
        let long = vec!["x".repeat(63); 5].join(".");
        let m = message(0, &long, A, &[], &[]);
        assert_eq!(parse_message(&m), Err(DnsError::NameTooLong));
        let mut m = vec![0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        m.extend_from_slice(&[0x40, b'a', 0, 0, 1, 0, 1]);
        assert_eq!(parse_message(&m), Err(DnsError::BadLabelType));
    }

    #[test]
    fn truncation() {
        assert_eq!(parse_message(&[0; 11]), Err(DnsError::TruncatedHeader));
        let an = [
            rr(&QPTR, A, 5, &[1, 2, 3, 4]),
            rr(&QPTR, A, 5, &[5, 6, 7, 8]),
        ];
        let m = message(0x8000, "t.test", A, &an, &[]);
        let s = parse_message(&m[..m.len() - 2]).unwrap();
        assert_eq!(s.answers.len(), 1);
        assert_eq!(s.answers_dropped, 1);
        assert_eq!(s.anomalies, [DnsError::Truncated]);
        assert_eq!(parse_message(&m[..20]), Err(DnsError::Truncated));
        assert_eq!(
            parse_message(&vec![0; MAX_MESSAGE_LEN + 1]),
            Err(DnsError::TooLong)
        );
    }

    #[test]
    fn bad_rdata_keeps_hex_and_continues() {
        let an = [rr(&QPTR, A, 5, &[1, 2, 3]), rr(&QPTR, A, 5, &[5, 6, 7, 8])];
        let s = parse_message(&message(0x8000, "t.test", A, &an, &[])).unwrap();
        assert_eq!(s.answers[0].data, "010203");
        assert_eq!(s.answers[1].data, "5.6.7.8");
        assert_eq!(s.anomalies, [DnsError::BadRdata(1)]);
    }

    #[test]
    fn non_printable_label_bytes_are_escaped() {
        let mut m = vec![0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        m.extend_from_slice(&[
            5, 0xff, b'A', b'.', b'\\', 0x07, 3, 0xc3, 0xa9, b'z', 0, 0, 1, 0, 1,
        ]);
        let s = parse_message(&m).unwrap();
        assert_eq!(s.question.unwrap().name, "\\xffA\\x2e\\x5c\\x07.éz");
    }

    #[test]
    fn record_data_formats() {
        let mut mx = 10u16.to_be_bytes().to_vec();
        mx.extend_from_slice(&wire_name("mail.test"));
        let mut srv = [1u16, 2, 443]
            .iter()
            .flat_map(|v| v.to_be_bytes())
            .collect::<Vec<_>>();
        srv.extend_from_slice(&wire_name("svc.test"));
        let mut soa = wire_name("ns.test");
        soa.extend_from_slice(&wire_name("admin.test"));
        [7u32, 3600, 600, 86400, 300]
            .iter()
            .for_each(|v| soa.extend_from_slice(&v.to_be_bytes()));
        let txt = [&[3u8][..], b"a\"b", &[2], &[0xff, b'c']].concat();
        let an = [
            rr(&QPTR, 15, 1, &mx),
            rr(&QPTR, 33, 1, &srv),
            rr(&QPTR, 6, 1, &soa),
            rr(&QPTR, 16, 1, &txt),
            rr(&QPTR, 39, 1, &wire_name("other.test")),
            rr(&QPTR, 65400, 1, &[0xde, 0xad]),
            rr(&QPTR, 12, 1, &wire_name(".")),
        ];
        let s = parse_message(&message(0x8000, "q.test", 65400, &an, &[])).unwrap();
        let data: Vec<_> = s
            .answers
            .iter()
            .map(|a| (&*a.rtype, a.data.as_str()))
            .collect();
        assert_eq!(
            data,
            [
                ("MX", "10 mail.test"),
                ("SRV", "1 2 443 svc.test"),
                ("SOA", "ns.test admin.test 7 3600 600 86400 300"),
                ("TXT", "\"a\\x22b\" \"\\xffc\""),
                ("DNAME", "other.test"),
                ("TYPE65400", "dead"),
                ("PTR", "."),
            ]
        );
        assert_eq!(s.question.unwrap().qtype, "TYPE65400");
        assert!(s.anomalies.is_empty(), "{:?}", s.anomalies);
    }

    #[test]
    fn https_record_parameters() {
        let mut rdata = 1u16.to_be_bytes().to_vec();
        rdata.push(0); // target "."
        let params: [(u16, Vec<u8>); 4] = [
            (1, b"\x02h3\x02h2".to_vec()),
            (4, vec![192, 0, 2, 1, 192, 0, 2, 2]),
            (5, vec![0xAB; 70]),
            (
                6,
                [0x20, 1, 0x0d, 0xb8]
                    .into_iter()
                    .chain([0; 11])
                    .chain([9])
                    .collect(),
            ),
        ];
        for (key, value) in &params {
            rdata.extend_from_slice(&key.to_be_bytes());
            rdata.extend_from_slice(&(value.len() as u16).to_be_bytes());
            rdata.extend_from_slice(value);
        }
        let s = parse_message(&message(
            0x8180,
            "h.test",
            65,
            &[rr(&QPTR, 65, 300, &rdata)],
            &[],
        ))
        .unwrap();
        let a = &s.answers[0];
        assert_eq!(a.rtype, "HTTPS");
        assert_eq!(
            a.data,
            "1 . alpn=h3,h2 ipv4hint=192.0.2.1,192.0.2.2 ech=<70 bytes> ipv6hint=2001:db8::9"
        );
        let svcb = a.svcb.as_ref().unwrap();
        assert_eq!(svcb.alpn, ["h3", "h2"]);
        assert_eq!(svcb.ech_len, Some(70));
        assert_eq!(svcb.ipv4hint.len(), 2);
        assert_eq!(s.question.unwrap().qtype, "HTTPS");
    }

    #[test]
    fn answers_are_bounded_and_edns_is_read() {
        let an: Vec<_> = (0..70u8).map(|i| rr(&QPTR, A, 1, &[10, 0, 0, i])).collect();
        // OPT: root owner, class = UDP size, TTL = ext-rcode 1 (→ 16 BADVERS) and DO.
        let mut opt = vec![0];
        opt.extend_from_slice(&41u16.to_be_bytes());
        opt.extend_from_slice(&1232u16.to_be_bytes());
        opt.extend_from_slice(&0x0100_8000u32.to_be_bytes());
        opt.extend_from_slice(&0u16.to_be_bytes());
        let s = parse_message(&message(0x8500, "b.test", A, &an, &[opt])).unwrap();
        assert_eq!(s.answers.len(), MAX_ANSWERS);
        assert_eq!(s.answers_dropped, 6);
        assert_eq!(s.resolved_ips.len(), MAX_ANSWERS);
        assert_eq!(s.response_code, "BADVERS");
        assert_eq!(s.header_flags, ["AA", "RD", "DO"]);
        assert!(s.anomalies.is_empty());
    }

    #[test]
    fn unknown_codes_stay_numbers() {
        let s = parse_message(&message(0x780C, "", 0, &[], &[])).unwrap();
        assert!(!s.is_response);
        assert_eq!((&*s.op_code, &*s.response_code), ("15", "12"));
        assert!(s.question.is_none());
        assert_eq!(class_name(32), "CLASS32");
        assert_eq!(type_name(65305), "TYPE65305");
        assert_eq!(serde_json::to_value(&s).unwrap()["type"], "query");
    }

    #[test]
    fn tcp_framing() {
        let m1 = message(0x8000, "a.test", A, &[], &[]);
        let m2 = message(0x8000, "b.test", A, &[], &[]);
        let mut stream = Vec::new();
        for m in [&m1, &m2] {
            stream.extend_from_slice(&(m.len() as u16).to_be_bytes());
            stream.extend_from_slice(m);
        }
        let full = stream.len();
        stream.extend_from_slice(&[0, 40, 1, 2]);
        let mut it = split_tcp_messages(&stream);
        assert_eq!(it.next(), Some(&m1[..]));
        assert_eq!(it.next(), Some(&m2[..]));
        assert_eq!(it.next(), None);
        assert_eq!(it.consumed(), full);
        assert!(it.needs_more());
        assert_eq!(it.remainder(), [0, 40, 1, 2]);
        let mut it = split_tcp_messages(&stream[..1]);
        assert_eq!(it.next(), None);
        assert!(it.needs_more() && it.consumed() == 0);
        let mut it = split_tcp_messages(&stream[..full]);
        assert_eq!(it.by_ref().count(), 2);
        assert!(!it.needs_more());
    }

    /// Conformance against the shared corpus: for every expectation with `dns_answers`,
    /// find the server's responses of that flow in the capture, decode the last one and
    /// compare {name, type, data} the way `check.py` does (only A/AAAA/CNAME/PTR/NS).
    /// Skips itself when the corpus is not there.
    #[test]
    fn corpus_dns_answers_agree() {
        let dir = std::path::Path::new("/work/shared/corpus");
        let Ok(expect) = std::fs::read_to_string(dir.join("expect.jsonl")) else {
            eprintln!("corpus not found, skipped");
            return;
        };
        let (mut agree, mut problems) = (0, Vec::new());
        for line in expect.lines() {
            let e: serde_json::Value = serde_json::from_str(line).unwrap();
            let Some(want) = e["checks"]["dns_answers"].as_array() else {
                continue;
            };
            let file = e["file"].as_str().unwrap();
            let f = &e["flow"];
            let flow = pcap::Flow {
                client: (
                    f["client_ip"].as_str().unwrap().parse().unwrap(),
                    f["client_port"].as_u64().unwrap() as u16,
                ),
                server: (
                    f["server_ip"].as_str().unwrap().parse().unwrap(),
                    f["server_port"].as_u64().unwrap() as u16,
                ),
                tcp: f["transport"] == "tcp",
            };
            let capture = std::fs::read(dir.join(file)).unwrap();
            let responses = pcap::server_messages(&capture, &flow);
            let got = responses
                .iter()
                .rev()
                .find_map(|m| parse_message(m).ok().filter(|s| s.is_response));
            let want: Vec<_> = want
                .iter()
                .map(|a| {
                    (
                        a["name"].as_str().unwrap(),
                        a["type"].as_str().unwrap(),
                        a["data"].as_str().unwrap(),
                    )
                })
                .collect();
            let got_norm = got.as_ref().map(|s| {
                norm(
                    s.answers
                        .iter()
                        .map(|a| (a.name.as_str(), &*a.rtype, a.data.as_str())),
                )
            });
            if got_norm.as_ref() == Some(&norm(want.into_iter())) {
                agree += 1;
            } else {
                problems.push(format!(
                    "{file} {flow:?}: got {got_norm:?}, anomalies {:?}",
                    got.map(|s| s.anomalies)
                ));
            }
        }
        eprintln!(
            "corpus dns_answers: {agree} agree, {} disagree",
            problems.len()
        );
        assert!(problems.is_empty(), "{problems:#?}");
        assert!(agree > 0);
    }

    fn norm<'a>(
        answers: impl Iterator<Item = (&'a str, &'a str, &'a str)>,
    ) -> Vec<(String, String, String)> {
        let name = |s: &str| s.strip_suffix('.').unwrap_or(s).to_ascii_lowercase();
        let mut out: Vec<_> = answers
            .filter(|(_, t, _)| ["A", "AAAA", "CNAME", "PTR", "NS"].contains(t))
            .map(|(n, t, d)| {
                let data = d
                    .parse::<IpAddr>()
                    .map(|ip| ip.to_string())
                    .unwrap_or_else(|_| name(d));
                (name(n), t.to_owned(), data)
            })
            .collect();
        out.sort();
        out
    }

    /// A throwaway pcap/pcapng reader for the corpus test: Ethernet (VLAN), SLL, SLL2,
    /// raw IP and NULL links; IPv4/IPv6 with IP-in-IP; UDP and TCP (TCP payloads of one
    /// direction ordered by sequence number, duplicates dropped).
    mod pcap {
        use std::collections::BTreeMap;
        use std::net::IpAddr;

        #[derive(Debug)]
        pub struct Flow {
            pub client: (IpAddr, u16),
            pub server: (IpAddr, u16),
            pub tcp: bool,
        }

        fn u16_at(b: &[u8], i: usize, le: bool) -> Option<u16> {
            let v: [u8; 2] = b.get(i..i + 2)?.try_into().ok()?;
            Some(if le {
                u16::from_le_bytes(v)
            } else {
                u16::from_be_bytes(v)
            })
        }

        fn u32_at(b: &[u8], i: usize, le: bool) -> Option<u32> {
            let v: [u8; 4] = b.get(i..i + 4)?.try_into().ok()?;
            Some(if le {
                u32::from_le_bytes(v)
            } else {
                u32::from_be_bytes(v)
            })
        }

        /// (linktype, frame) for every packet of a pcap or pcapng file.
        fn frames(file: &[u8]) -> Vec<(u16, &[u8])> {
            let mut out = Vec::new();
            match file.get(..4) {
                Some([0x0a, 0x0d, 0x0d, 0x0a]) => {
                    let le = file.get(8..12) == Some(&[0x4d, 0x3c, 0x2b, 0x1a]);
                    let (mut off, mut links) = (0, Vec::new());
                    while let (Some(kind), Some(len)) =
                        (u32_at(file, off, le), u32_at(file, off + 4, le))
                    {
                        let Some(body) = file.get(off + 8..off + len as usize - 4) else {
                            break;
                        };
                        match kind {
                            1 => links.push(u16_at(body, 0, le).unwrap_or(0)),
                            6 => {
                                let (iface, cap) =
                                    (u32_at(body, 0, le).unwrap(), u32_at(body, 12, le).unwrap());
                                if let (Some(&lt), Some(data)) =
                                    (links.get(iface as usize), body.get(20..20 + cap as usize))
                                {
                                    out.push((lt, data));
                                }
                            }
                            _ => {}
                        }
                        off += len as usize;
                    }
                }
                Some(magic) => {
                    let le = matches!(magic, [0xd4, 0xc3, 0xb2, 0xa1] | [0x4d, 0x3c, 0xb2, 0xa1]);
                    let lt = u32_at(file, 20, le).unwrap_or(1) as u16;
                    let mut off = 24;
                    while let Some(cap) = u32_at(file, off + 8, le) {
                        let Some(data) = file.get(off + 16..off + 16 + cap as usize) else {
                            break;
                        };
                        out.push((lt, data));
                        off += 16 + cap as usize;
                    }
                }
                None => {}
            }
            out
        }

        /// The IP packet inside a frame.
        fn ip_of(lt: u16, f: &[u8]) -> Option<&[u8]> {
            match lt {
                1 => {
                    let mut off = 12;
                    while matches!(u16_at(f, off, false)?, 0x8100 | 0x88a8 | 0x9100) {
                        off += 4;
                    }
                    f.get(off + 2..)
                }
                113 => f.get(16..),
                276 => f.get(20..),
                0 | 108 => f.get(4..),
                _ => Some(f),
            }
        }

        /// Source, destination, is-TCP, TCP sequence number and payload of a packet.
        type Segment<'a> = ((IpAddr, u16), (IpAddr, u16), bool, u32, &'a [u8]);

        /// The UDP or TCP segment of an IP packet, through IP-in-IP.
        fn transport(ip: &[u8]) -> Option<Segment<'_>> {
            let (src, dst, mut proto, mut l4) = match ip.first()? >> 4 {
                4 => {
                    let hl = usize::from(ip.first()? & 0xf) * 4;
                    let total = usize::from(u16_at(ip, 2, false)?).min(ip.len());
                    let s: [u8; 4] = ip.get(12..16)?.try_into().ok()?;
                    let d: [u8; 4] = ip.get(16..20)?.try_into().ok()?;
                    (
                        IpAddr::from(s),
                        IpAddr::from(d),
                        *ip.get(9)?,
                        ip.get(hl..total)?,
                    )
                }
                6 => {
                    let total = (40 + usize::from(u16_at(ip, 4, false)?)).min(ip.len());
                    let s: [u8; 16] = ip.get(8..24)?.try_into().ok()?;
                    let d: [u8; 16] = ip.get(24..40)?.try_into().ok()?;
                    (
                        IpAddr::from(s),
                        IpAddr::from(d),
                        *ip.get(6)?,
                        ip.get(40..total)?,
                    )
                }
                _ => return None,
            };
            while matches!(proto, 0 | 43 | 44 | 60) {
                let len = if proto == 44 {
                    8
                } else {
                    (usize::from(*l4.get(1)?) + 1) * 8
                };
                proto = *l4.first()?;
                l4 = l4.get(len..)?;
            }
            match proto {
                4 | 41 => transport(l4),
                17 => {
                    let len = usize::from(u16_at(l4, 4, false)?).min(l4.len());
                    Some((
                        (src, u16_at(l4, 0, false)?),
                        (dst, u16_at(l4, 2, false)?),
                        false,
                        0,
                        l4.get(8..len)?,
                    ))
                }
                6 => {
                    let off = usize::from(l4.get(12)? >> 4) * 4;
                    let seq = u32_at(l4, 4, false)?;
                    Some((
                        (src, u16_at(l4, 0, false)?),
                        (dst, u16_at(l4, 2, false)?),
                        true,
                        seq,
                        l4.get(off..)?,
                    ))
                }
                _ => None,
            }
        }

        /// DNS messages sent by the server of `flow`, in order.
        pub fn server_messages(file: &[u8], flow: &Flow) -> Vec<Vec<u8>> {
            let mut udp = Vec::new();
            let mut tcp = BTreeMap::new();
            for (lt, frame) in frames(file) {
                let Some((src, dst, is_tcp, seq, payload)) = ip_of(lt, frame).and_then(transport)
                else {
                    continue;
                };
                if src != flow.server
                    || dst != flow.client
                    || is_tcp != flow.tcp
                    || payload.is_empty()
                {
                    continue;
                }
                if is_tcp {
                    tcp.entry(seq).or_insert(payload);
                } else {
                    udp.push(payload.to_vec());
                }
            }
            if !flow.tcp {
                return udp;
            }
            let mut stream = Vec::new();
            let mut next = None;
            for (seq, payload) in tcp {
                let skip = next.map_or(0, |n: u32| n.wrapping_sub(seq) as usize);
                if let Some(rest) = payload.get(skip..) {
                    stream.extend_from_slice(rest);
                    next = Some(seq.wrapping_add(payload.len() as u32));
                }
            }
            super::split_tcp_messages(&stream)
                .map(<[u8]>::to_vec)
                .collect()
        }
    }

    /// A response exercising most decoders: CNAME, A, HTTPS, TXT, MX and an OPT record.
    fn rich_response() -> Vec<u8> {
        let mut https = vec![0, 1, 0, 0, 1, 0, 3, 2, b'h', b'3', 0, 4, 0, 4, 192, 0, 2, 9];
        https.extend_from_slice(&[0, 5, 0, 2, 0xfe, 0x0d]);
        let mut mx = vec![0, 5];
        mx.extend_from_slice(&QPTR);
        let an = [
            rr(&QPTR, CNAME, 9, &[3, b'c', b'd', b'n', 0xC0, 0x0C]),
            rr(&[0xC0, 0x2D], A, 9, &[192, 0, 2, 1]),
            rr(&QPTR, 65, 9, &https),
            rr(&QPTR, 16, 9, &[2, b'o', b'k']),
            rr(&QPTR, 15, 9, &mx),
        ];
        let opt = [0, 0, 41, 4, 0xd0, 0, 0, 0x80, 0, 0, 0].to_vec();
        message(0x8180, "www.example.com", A, &an, &[opt])
    }

    #[test]
    fn rich_response_decodes() {
        let s = parse_message(&rich_response()).unwrap();
        assert!(s.anomalies.is_empty(), "{:?}", s.anomalies);
        assert_eq!(s.answers[1].name, "cdn.www.example.com");
        assert_eq!(
            s.answers[2].data,
            "1 . alpn=h3 ipv4hint=192.0.2.9 ech=<2 bytes>"
        );
        assert_eq!(s.resolved_ips[0].canonical, "cdn.www.example.com");
        assert_eq!(s.header_flags, ["RD", "RA", "DO"]);
    }

    proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = parse_message(&bytes);
            for m in split_tcp_messages(&bytes) {
                let _ = parse_message(m);
            }
        }

        #[test]
        fn never_panics_past_the_header(
            counts in proptest::collection::vec(0u8..4, 4),
            body in proptest::collection::vec(any::<u8>(), 0..400),
        ) {
            let mut m = vec![0, 1, 0x81, 0x80];
            counts.iter().for_each(|&c| m.extend_from_slice(&[0, c]));
            m.extend_from_slice(&body);
            if let Ok(s) = parse_message(&m) {
                prop_assert!(s.answers.len() <= MAX_ANSWERS);
                let _ = serde_json::to_string(&s);
            }
        }

        #[test]
        fn mutated_responses_never_panic(
            edits in proptest::collection::vec((any::<u16>(), any::<u8>()), 1..6),
            cut in any::<u16>(),
        ) {
            let mut m = rich_response();
            for (at, byte) in edits {
                let i = usize::from(at) % m.len();
                m[i] = byte;
            }
            m.truncate(usize::from(cut).max(HEADER_LEN));
            if let Ok(s) = parse_message(&m) {
                let _ = serde_json::to_string(&s);
            }
        }
    }
}
