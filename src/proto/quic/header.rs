//! Long-header packet parsing (RFC 9000 section 17.2, RFC 8999 invariants,
//! RFC 9369 section 3.2 packet types): splits a UDP datagram into its
//! coalesced long-header packets.
//!
//! Invariants: headers are borrowed views into the datagram; iteration stops
//! at the first short-header packet (or trailing padding), after a packet that
//! has no Length field (Retry, Version Negotiation, unknown version), and
//! after the first error.

use serde::{Deserialize, Serialize};

use super::wire::Reader;
use super::{keys, QuicError, QuicVersion};

/// Longest connection ID in versions 1 and 2 (RFC 9000 section 17.2); longer
/// ones only exist in Version Negotiation packets and unknown versions.
pub const MAX_CID_LEN: usize = 20;

/// Size of the Retry Integrity Tag ending every Retry packet (RFC 9001 section 5.8).
pub const RETRY_TAG_LEN: usize = 16;

/// The long-header packet type, already mapped through the version's numbering.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PacketKind {
    Initial,
    ZeroRtt,
    Handshake,
    Retry,
    VersionNegotiation,
    /// A version this module has no layout for: only the invariant fields
    /// (version, DCID, SCID) were read.
    UnknownVersion,
}

/// One long-header packet, borrowed from the datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LongHeader<'a> {
    pub version: QuicVersion,
    pub kind: PacketKind,
    pub dcid: &'a [u8],
    /// For a Retry: the server's new connection ID, which the client's next
    /// Initial uses as its DCID (and so as the key-derivation input).
    pub scid: &'a [u8],
    /// The Initial's token, or a Retry's new token; empty otherwise.
    pub token: &'a [u8],
    /// The whole packet, header included, ending where the Length field says.
    pub packet: &'a [u8],
    /// Where the header ends in `packet`: for Initial, 0-RTT and Handshake
    /// packets the protected packet number starts here.
    pub header_len: usize,
}

impl<'a> LongHeader<'a> {
    /// What follows the header: the protected packet number and payload; a
    /// Retry's integrity tag; a Version Negotiation packet's version list.
    pub fn body(&self) -> &'a [u8] {
        self.packet.get(self.header_len..).unwrap_or_default()
    }

    /// The versions a Version Negotiation packet lists (empty for other kinds).
    pub fn supported_versions(&self) -> impl Iterator<Item = QuicVersion> + 'a {
        let list = match self.kind {
            PacketKind::VersionNegotiation => self.body(),
            _ => &[],
        };
        list.chunks_exact(4)
            .map(|c| QuicVersion(c.iter().fold(0, |acc, &b| (acc << 8) | u32::from(b))))
    }
}

/// Iterator over the coalesced long-header packets of one datagram.
#[derive(Debug, Clone)]
pub struct LongHeaders<'a> {
    rest: &'a [u8],
}

/// Splits a UDP payload into its long-header packets, in order.
pub fn parse_long_headers(datagram: &[u8]) -> LongHeaders<'_> {
    LongHeaders { rest: datagram }
}

/// Cheap test for QUIC on any port: the payload starts with a well-formed
/// long header of a known version, or a Version Negotiation packet.
pub fn is_quic_long_header(udp_payload: &[u8]) -> bool {
    matches!(parse_long_headers(udp_payload).next(),
        Some(Ok(h)) if h.kind != PacketKind::UnknownVersion)
}

impl<'a> Iterator for LongHeaders<'a> {
    type Item = Result<LongHeader<'a>, QuicError>;

    fn next(&mut self) -> Option<Self::Item> {
        let first = *self.rest.first()?;
        if first & 0x80 == 0 {
            self.rest = &[];
            return None;
        }
        match parse_one(self.rest) {
            Ok(header) => {
                self.rest = self.rest.get(header.packet.len()..).unwrap_or_default();
                Some(Ok(header))
            }
            Err(e) => {
                self.rest = &[];
                Some(Err(e))
            }
        }
    }
}

/// Maps the two type bits of the first byte through the version's numbering.
fn packet_kind(version: QuicVersion, first: u8) -> PacketKind {
    let bits = (first >> 4) & 0x03;
    let v1_bits = if version == QuicVersion::V2 {
        // RFC 9369 section 3.2: Initial 0b01, 0-RTT 0b10, Handshake 0b11, Retry 0b00.
        bits.wrapping_sub(1) & 0x03
    } else {
        bits
    };
    match v1_bits {
        0 => PacketKind::Initial,
        1 => PacketKind::ZeroRtt,
        2 => PacketKind::Handshake,
        _ => PacketKind::Retry,
    }
}

/// A length-prefixed connection ID; only known versions limit its length.
fn read_cid<'a>(r: &mut Reader<'a>, known: bool) -> Result<&'a [u8], QuicError> {
    let len = r.u8().ok_or(QuicError::Truncated)?;
    if known && usize::from(len) > MAX_CID_LEN {
        return Err(QuicError::CidTooLong(len));
    }
    r.bytes(usize::from(len)).ok_or(QuicError::Truncated)
}

fn parse_one(datagram: &[u8]) -> Result<LongHeader<'_>, QuicError> {
    let mut r = Reader::new(datagram);
    let first = r.u8().ok_or(QuicError::Truncated)?;
    let version = QuicVersion(r.u32().ok_or(QuicError::Truncated)?);
    let known = keys::version_params(version).is_some();
    let dcid = read_cid(&mut r, known)?;
    let scid = read_cid(&mut r, known)?;
    let whole = |kind, token, header_len| LongHeader {
        version,
        kind,
        dcid,
        scid,
        token,
        packet: datagram,
        header_len,
    };

    if version == QuicVersion::NEGOTIATION {
        if r.rest().len() % 4 != 0 {
            return Err(QuicError::BadLength);
        }
        return Ok(whole(PacketKind::VersionNegotiation, &[], r.pos()));
    }
    if !known {
        return Ok(whole(PacketKind::UnknownVersion, &[], r.pos()));
    }
    let kind = packet_kind(version, first);
    let token = match kind {
        PacketKind::Retry => {
            let token_len = r
                .rest()
                .len()
                .checked_sub(RETRY_TAG_LEN)
                .ok_or(QuicError::Truncated)?;
            let token = r.bytes(token_len).ok_or(QuicError::Truncated)?;
            return Ok(whole(PacketKind::Retry, token, r.pos()));
        }
        PacketKind::Initial => {
            let token_len = r.varint().ok_or(QuicError::Truncated)?;
            r.bytes_u64(token_len).ok_or(QuicError::BadLength)?
        }
        _ => &[],
    };
    let length = r.varint().ok_or(QuicError::Truncated)?;
    let header_len = r.pos();
    r.bytes_u64(length).ok_or(QuicError::BadLength)?;
    Ok(LongHeader {
        version,
        kind,
        dcid,
        scid,
        token,
        packet: datagram.get(..r.pos()).unwrap_or_default(),
        header_len,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// RFC 9001 appendix A.4: a Retry answering the client Initial of A.2.
    const RFC9001_RETRY: &str =
        "ff000000010008f067a5502a4262b5746f6b656e04a265ba2eff4d829058fb3f0f2496ba";

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("test hex"))
            .collect()
    }

    #[test]
    fn retry_records_new_scid_and_token() {
        let d = hex(RFC9001_RETRY);
        let mut it = parse_long_headers(&d);
        let h = it.next().expect("one packet").expect("valid");
        assert_eq!(h.kind, PacketKind::Retry);
        assert_eq!(h.version, QuicVersion::V1);
        assert!(h.dcid.is_empty());
        assert_eq!(h.scid, hex("f067a5502a4262b5"));
        assert_eq!(h.token, b"token");
        assert_eq!(h.body().len(), RETRY_TAG_LEN);
        assert!(it.next().is_none());
        assert!(is_quic_long_header(&d));
    }

    #[test]
    fn version_negotiation_lists_versions() {
        let mut d = vec![0x80, 0, 0, 0, 0, 2, 0xaa, 0xbb, 1, 0xcc];
        d.extend_from_slice(&[0, 0, 0, 1, 0x6b, 0x33, 0x43, 0xcf, 0x1a, 0x2a, 0x3a, 0x4a]);
        let h = parse_long_headers(&d).next().expect("one").expect("valid");
        assert_eq!(h.kind, PacketKind::VersionNegotiation);
        assert_eq!(h.dcid, [0xaa, 0xbb]);
        assert_eq!(h.scid, [0xcc]);
        let versions: Vec<_> = h.supported_versions().collect();
        assert_eq!(
            versions,
            [QuicVersion::V1, QuicVersion::V2, QuicVersion(0x1a2a_3a4a)]
        );
        d.push(0);
        assert_eq!(
            parse_long_headers(&d).next(),
            Some(Err(QuicError::BadLength))
        );
    }

    #[test]
    fn coalesced_packets_then_short_header() {
        // v2 Initial (type bits 01) with a 3-byte payload, then a v2
        // Handshake (type bits 11), then a short-header packet.
        let mut d = vec![0xd0, 0x6b, 0x33, 0x43, 0xcf, 1, 9, 0, 0, 3, 1, 2, 3];
        d.extend_from_slice(&[0xf0, 0x6b, 0x33, 0x43, 0xcf, 0, 0, 1, 7]);
        d.extend_from_slice(&[0x40, 1, 2, 3]);
        let kinds: Vec<_> = parse_long_headers(&d)
            .map(|h| h.map(|h| (h.kind, h.body().len())))
            .collect();
        assert_eq!(
            kinds,
            [Ok((PacketKind::Initial, 3)), Ok((PacketKind::Handshake, 1))]
        );
    }

    #[test]
    fn errors_and_unknown_versions() {
        assert_eq!(
            parse_long_headers(&[0xc0, 0, 0]).next(),
            Some(Err(QuicError::Truncated))
        );
        let long_cid = [0xc0, 0, 0, 0, 1, 21];
        assert_eq!(
            parse_long_headers(&long_cid).next(),
            Some(Err(QuicError::CidTooLong(21)))
        );
        let bad_len = [0xc0, 0, 0, 0, 1, 0, 0, 0, 0x10, 1];
        assert_eq!(
            parse_long_headers(&bad_len).next(),
            Some(Err(QuicError::BadLength))
        );
        let unknown = [0xc0, 0x51, 0x30, 0x34, 0x36, 0, 0, 9, 9];
        let h = parse_long_headers(&unknown)
            .next()
            .expect("one")
            .expect("valid");
        assert_eq!(h.kind, PacketKind::UnknownVersion);
        assert_eq!(h.version.to_string(), "0x51303436");
        assert!(!is_quic_long_header(&unknown));
        assert!(!is_quic_long_header(&[0x40, 1, 2, 3]));
        assert!(parse_long_headers(&[]).next().is_none());
    }

    proptest! {
        #[test]
        fn never_panics_on_random_bytes(d in proptest::collection::vec(any::<u8>(), 0..1500)) {
            let mut total = 0;
            for h in parse_long_headers(&d).flatten() {
                total += h.packet.len();
                prop_assert!(h.header_len <= h.packet.len());
                let _ = h.supported_versions().count();
            }
            prop_assert!(total <= d.len());
            let _ = is_quic_long_header(&d);
        }
    }
}
