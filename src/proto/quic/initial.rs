//! Opening Initial packets (RFC 9001 section 5): header protection removal,
//! packet number recovery, AES-128-GCM decryption in a caller-owned scratch
//! buffer, then the frames RFC 9000 section 12.4 allows in Initial packets.
//!
//! Invariants: the scratch buffer never grows beyond one packet (at most one
//! UDP datagram); CRYPTO frames are returned as owned copies, at most
//! [`MAX_CRYPTO_FRAMES_PER_DATAGRAM`] per datagram, never ending beyond
//! [`MAX_CRYPTO_OFFSET`], empty ones dropped.

use serde::{Deserialize, Serialize};

use super::header::{parse_long_headers, LongHeader, PacketKind};
use super::keys::DirectionKeys;
use super::wire::Reader;
use super::{InitialKeys, QuicError};

/// Highest CRYPTO stream offset accepted in Initial packets: a ClientHello
/// with post-quantum key shares and ECH is a few KiB, a ServerHello far less;
/// 64 KiB is generous and bounds the caller's reassembly buffer.
pub const MAX_CRYPTO_OFFSET: u64 = 64 * 1024;

/// Most CRYPTO frames kept from one datagram: clients that scatter their
/// ClientHello (Chromium's chaos protection) use a few dozen; this bounds the
/// frame list a hostile datagram of empty-looking frames could build.
pub const MAX_CRYPTO_FRAMES_PER_DATAGRAM: usize = 256;

/// Header-protection sample length for AES (RFC 9001 section 5.4.2).
const SAMPLE_LEN: usize = 16;
/// Longest packet-number encoding; the sample starts this far after its start.
const MAX_PN_LEN: usize = 4;

/// A piece of the CRYPTO stream: `data` belongs at `offset`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CryptoFrame {
    pub offset: u64,
    pub data: Vec<u8>,
}

/// The last ACK frame of a datagram's Initial packets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AckSummary {
    pub largest_acknowledged: u64,
    /// Number of ACK ranges after the first.
    pub additional_ranges: u64,
    /// ECT(0), ECT(1) and ECN-CE counts of an ACK_ECN frame (type 0x03).
    pub ecn_counts: Option<[u64; 3]>,
}

/// A CONNECTION_CLOSE frame (the reason phrase is not kept, only its length).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectionClose {
    pub error_code: u64,
    /// The frame type that caused a transport close (type 0x1c); `None` for
    /// an application close (type 0x1d).
    pub frame_type: Option<u64>,
    pub reason_len: u64,
}

/// What the Initial packets of one datagram contained.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InitialSummary {
    /// Initial packets decrypted.
    pub initial_packets: u32,
    /// Coalesced 0-RTT, Handshake, Retry or Version Negotiation packets skipped.
    pub other_packets: u32,
    /// Packet number of the last Initial decrypted.
    pub last_packet_number: Option<u64>,
    pub padding_bytes: u32,
    pub ping_frames: u32,
    pub crypto_frames: u32,
    pub crypto_bytes: u64,
    pub ack: Option<AckSummary>,
    pub connection_close: Option<ConnectionClose>,
}

/// Decrypts every Initial packet of `datagram` with the keys of the sender
/// (`from_client`) and appends their non-empty CRYPTO frames to `out`.
///
/// Coalesced non-Initial packets are counted and skipped. On error, frames
/// already appended (from authenticated packets earlier in the datagram, or
/// earlier in the failing packet) stay in `out`.
pub fn open_initials(
    datagram: &[u8],
    keys: &InitialKeys,
    from_client: bool,
    scratch: &mut Vec<u8>,
    out: &mut Vec<CryptoFrame>,
) -> Result<InitialSummary, QuicError> {
    let mut summary = InitialSummary::default();
    let frame_limit = out.len().saturating_add(MAX_CRYPTO_FRAMES_PER_DATAGRAM);
    for header in parse_long_headers(datagram) {
        let header = header?;
        match header.kind {
            PacketKind::Initial if header.version == keys.version() => {}
            PacketKind::Initial => return Err(QuicError::KeyVersionMismatch(header.version)),
            PacketKind::UnknownVersion => return Err(QuicError::UnknownVersion(header.version)),
            _ => {
                summary.other_packets = summary.other_packets.saturating_add(1);
                continue;
            }
        }
        let payload = open_packet(&header, keys.direction(from_client), scratch)?;
        summary.initial_packets = summary.initial_packets.saturating_add(1);
        summary.last_packet_number = Some(payload.packet_number);
        parse_frames(payload.plaintext, out, frame_limit, &mut summary)?;
    }
    Ok(summary)
}

struct Opened<'s> {
    packet_number: u64,
    plaintext: &'s [u8],
}

/// Removes header protection and decrypts one protected long-header packet
/// into `scratch`.
fn open_packet<'s>(
    header: &LongHeader<'_>,
    keys: &DirectionKeys,
    scratch: &'s mut Vec<u8>,
) -> Result<Opened<'s>, QuicError> {
    let pn_offset = header.header_len;
    let sample_start = pn_offset + MAX_PN_LEN;
    let sample = header
        .packet
        .get(sample_start..sample_start + SAMPLE_LEN)
        .ok_or(QuicError::TooShortForSample)?;
    let mask = keys.header_mask(sample).ok_or(QuicError::DecryptFailed)?;

    scratch.clear();
    scratch.extend_from_slice(header.packet);
    let first = scratch.first_mut().ok_or(QuicError::Truncated)?;
    *first ^= mask[0] & 0x0f;
    let pn_len = usize::from(*first & 0x03) + 1;
    let pn_bytes = scratch
        .get_mut(pn_offset..pn_offset + pn_len)
        .ok_or(QuicError::TooShortForSample)?;
    // With no earlier packet of this sender known, the RFC 9000 appendix A.3
    // decoding of a truncated packet number is the truncated value itself;
    // Initial packet numbers start at 0 and stay small.
    let mut packet_number = 0;
    for (b, m) in pn_bytes.iter_mut().zip(mask.iter().skip(1)) {
        *b ^= m;
        packet_number = (packet_number << 8) | u64::from(*b);
    }
    let (aad, sealed) = scratch
        .split_at_mut_checked(pn_offset + pn_len)
        .ok_or(QuicError::TooShortForSample)?;
    let plaintext = keys
        .open(packet_number, aad, sealed)
        .ok_or(QuicError::DecryptFailed)?;
    Ok(Opened {
        packet_number,
        plaintext,
    })
}

fn parse_frames(
    payload: &[u8],
    out: &mut Vec<CryptoFrame>,
    frame_limit: usize,
    summary: &mut InitialSummary,
) -> Result<(), QuicError> {
    let mut r = Reader::new(payload);
    while !r.is_empty() {
        let frame_type = r.varint().ok_or(QuicError::FrameTruncated)?;
        match frame_type {
            0x00 => {
                let run = u32::try_from(r.skip_zeros()).unwrap_or(u32::MAX);
                summary.padding_bytes = summary.padding_bytes.saturating_add(run).saturating_add(1);
            }
            0x01 => summary.ping_frames = summary.ping_frames.saturating_add(1),
            0x02 | 0x03 => {
                summary.ack =
                    Some(read_ack(&mut r, frame_type == 0x03).ok_or(QuicError::FrameTruncated)?);
            }
            0x06 => {
                let offset = r.varint().ok_or(QuicError::FrameTruncated)?;
                let len = r.varint().ok_or(QuicError::FrameTruncated)?;
                let data = r.bytes_u64(len).ok_or(QuicError::FrameTruncated)?;
                let end = offset.saturating_add(len);
                if end > MAX_CRYPTO_OFFSET {
                    return Err(QuicError::CryptoOffsetTooLarge(end));
                }
                summary.crypto_frames = summary.crypto_frames.saturating_add(1);
                summary.crypto_bytes = summary.crypto_bytes.saturating_add(len);
                if !data.is_empty() {
                    if out.len() >= frame_limit {
                        return Err(QuicError::TooManyCryptoFrames);
                    }
                    out.push(CryptoFrame {
                        offset,
                        data: data.to_vec(),
                    });
                }
            }
            0x1c | 0x1d => {
                summary.connection_close =
                    Some(read_close(&mut r, frame_type == 0x1c).ok_or(QuicError::FrameTruncated)?);
            }
            other => return Err(QuicError::InvalidFrame(other)),
        }
    }
    Ok(())
}

/// The body of an ACK frame (RFC 9000 section 19.3). Every range costs at
/// least two bytes, so a hostile range count ends at the payload's end.
fn read_ack(r: &mut Reader<'_>, with_ecn: bool) -> Option<AckSummary> {
    let largest_acknowledged = r.varint()?;
    let _ack_delay = r.varint()?;
    let additional_ranges = r.varint()?;
    let _first_range = r.varint()?;
    let mut remaining = additional_ranges;
    while remaining > 0 {
        let _gap = r.varint()?;
        let _range_len = r.varint()?;
        remaining -= 1;
    }
    let ecn_counts = if with_ecn {
        Some([r.varint()?, r.varint()?, r.varint()?])
    } else {
        None
    };
    Some(AckSummary {
        largest_acknowledged,
        additional_ranges,
        ecn_counts,
    })
}

/// The body of a CONNECTION_CLOSE frame (RFC 9000 section 19.19).
fn read_close(r: &mut Reader<'_>, transport: bool) -> Option<ConnectionClose> {
    let error_code = r.varint()?;
    let frame_type = if transport { Some(r.varint()?) } else { None };
    let reason_len = r.varint()?;
    r.bytes_u64(reason_len)?;
    Some(ConnectionClose {
        error_code,
        frame_type,
        reason_len,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn frames(payload: &[u8]) -> (Result<(), QuicError>, InitialSummary, Vec<CryptoFrame>) {
        let mut out = Vec::new();
        let mut summary = InitialSummary::default();
        let r = parse_frames(
            payload,
            &mut out,
            MAX_CRYPTO_FRAMES_PER_DATAGRAM,
            &mut summary,
        );
        (r, summary, out)
    }

    #[test]
    fn all_initial_frame_types() {
        let payload = [
            0x00, 0x00, // padding
            0x01, // ping
            0x03, 0x05, 0x00, 0x01, 0x00, 0x01, 0x00, 0x07, 0x08,
            0x09, // ACK_ECN, one extra range
            0x06, 0x02, 0x03, b'a', b'b', b'c', // CRYPTO offset 2
            0x06, 0x00, 0x00, // empty CRYPTO: counted, not kept
            0x1c, 0x0a, 0x06, 0x02, b'n', b'o', // CONNECTION_CLOSE
        ];
        let (r, s, out) = frames(&payload);
        assert_eq!(r, Ok(()));
        assert_eq!(
            out,
            [CryptoFrame {
                offset: 2,
                data: b"abc".to_vec()
            }]
        );
        assert_eq!(s.padding_bytes, 2);
        assert_eq!(s.ping_frames, 1);
        assert_eq!(s.crypto_frames, 2);
        assert_eq!(s.crypto_bytes, 3);
        assert_eq!(
            s.ack,
            Some(AckSummary {
                largest_acknowledged: 5,
                additional_ranges: 1,
                ecn_counts: Some([7, 8, 9])
            })
        );
        assert_eq!(
            s.connection_close,
            Some(ConnectionClose {
                error_code: 10,
                frame_type: Some(6),
                reason_len: 2
            })
        );
    }

    #[test]
    fn frame_errors() {
        assert_eq!(frames(&[0x08, 0x00]).0, Err(QuicError::InvalidFrame(8)));
        assert_eq!(
            frames(&[0x06, 0x00, 0x05, 1]).0,
            Err(QuicError::FrameTruncated)
        );
        let far = [0x06, 0x80, 0x01, 0x00, 0x00, 0x01, 0xff];
        assert_eq!(frames(&far).0, Err(QuicError::CryptoOffsetTooLarge(65537)));
        // A range count far beyond the payload ends at its end.
        let ack = [
            0x02, 0x01, 0x00, 0xbf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x00, 0x01, 0x01,
        ];
        assert_eq!(frames(&ack).0, Err(QuicError::FrameTruncated));
        let many: Vec<u8> = (0..=MAX_CRYPTO_FRAMES_PER_DATAGRAM)
            .flat_map(|_| [0x06, 0x00, 0x01, 0x61])
            .collect();
        assert_eq!(frames(&many).0, Err(QuicError::TooManyCryptoFrames));
    }

    proptest! {
        #[test]
        fn frames_never_panic(payload in proptest::collection::vec(any::<u8>(), 0..1500)) {
            let (_, summary, out) = frames(&payload);
            prop_assert!(out.len() <= MAX_CRYPTO_FRAMES_PER_DATAGRAM);
            prop_assert!(out.iter().all(|f| f.offset + f.data.len() as u64 <= MAX_CRYPTO_OFFSET));
            prop_assert!(summary.crypto_bytes <= payload.len() as u64);
        }
    }
}
