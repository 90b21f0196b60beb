//! QUIC Initial-packet processing for a passive sensor (RFC 9000, RFC 9001,
//! RFC 9369 for version 2, and the late IETF drafts and Facebook mvfst versions
//! still seen in old captures).
//!
//! Owns: splitting a UDP datagram into coalesced long-header packets
//! ([`parse_long_headers`]), cheap QUIC detection on any port
//! ([`is_quic_long_header`]), Initial key derivation ([`InitialKeys`]) and the
//! opening of Initial packets into CRYPTO frames ([`open_initials`]).
//!
//! Invariants:
//! - Every byte is untrusted: parsing never panics, never indexes unchecked, and
//!   every failure is a [`QuicError`] whose [`QuicError::reason`] is a static
//!   string for counters.
//! - Nothing here allocates per packet except the owned CRYPTO frame copies,
//!   which only exist during a handshake; decryption works in a caller-owned,
//!   reused scratch buffer.
//! - Versions this module has no layout for are kept as numbers
//!   ([`QuicVersion`]) and never decrypted.
//! - The caller (the flow stage) tracks per flow the DCID of the client's first
//!   Initial (or of its first Initial after a Retry) and caches the
//!   [`InitialKeys`] derived from it: both directions' keys come from that DCID.

mod header;
mod initial;
mod keys;
mod wire;

#[cfg(test)]
mod corpus_tests;
#[cfg(test)]
mod rfc_tests;

use std::fmt;

use serde::{Serialize, Serializer};

pub use header::{
    is_quic_long_header, parse_long_headers, LongHeader, LongHeaders, PacketKind, MAX_CID_LEN,
    RETRY_TAG_LEN,
};
pub use initial::{
    open_initials, AckSummary, ConnectionClose, CryptoFrame, InitialSummary,
    MAX_CRYPTO_FRAMES_PER_DATAGRAM, MAX_CRYPTO_OFFSET,
};
pub use keys::{DirectionKeys, InitialKeys};

/// A QUIC version number as it appears on the wire; unknown values are kept.
///
/// Displays and serializes as `0x%08x` (the record field `nightjar.quic.version`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct QuicVersion(pub u32);

impl QuicVersion {
    /// The version field of a Version Negotiation packet.
    pub const NEGOTIATION: Self = Self(0);
    /// QUIC version 1 (RFC 9000).
    pub const V1: Self = Self(0x0000_0001);
    /// QUIC version 2 (RFC 9369).
    pub const V2: Self = Self(0x6b33_43cf);

    /// True for the versions whose Initial packets this module can open:
    /// v1, v2, IETF drafts 22 to 34 and the mvfst versions based on them.
    pub fn is_known(self) -> bool {
        keys::version_params(self).is_some()
    }
}

impl fmt::Display for QuicVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "0x{:08x}", self.0)
    }
}

impl Serialize for QuicVersion {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// Everything that can go wrong reading a QUIC datagram; each is counted by
/// [`QuicError::reason`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum QuicError {
    /// The datagram ends inside a header field.
    #[error("QUIC header truncated")]
    Truncated,
    /// A connection ID longer than the version allows.
    #[error("QUIC connection ID of {0} bytes exceeds 20")]
    CidTooLong(u8),
    /// The Length field points past the end of the datagram, or a list does
    /// not fit its declared shape.
    #[error("QUIC length field exceeds the datagram")]
    BadLength,
    /// A version with no known layout or keys: counted, not decrypted.
    #[error("unknown QUIC version {0}")]
    UnknownVersion(QuicVersion),
    /// An Initial of a different version than the keys were derived for
    /// (compatible version negotiation): derive keys for this version from
    /// the same DCID.
    #[error("QUIC packet version {0} differs from the keys' version")]
    KeyVersionMismatch(QuicVersion),
    /// The packet is too short to hold the header-protection sample.
    #[error("QUIC packet too short for header protection")]
    TooShortForSample,
    /// The AEAD tag did not verify: wrong keys, wrong DCID or corruption.
    #[error("QUIC Initial decryption failed (authentication tag)")]
    DecryptFailed,
    /// A frame type that RFC 9000 does not allow in Initial packets.
    #[error("QUIC frame type 0x{0:x} not allowed in an Initial packet")]
    InvalidFrame(u64),
    /// A frame runs past the end of the decrypted payload.
    #[error("QUIC frame truncated")]
    FrameTruncated,
    /// CRYPTO data ending beyond [`MAX_CRYPTO_OFFSET`].
    #[error("QUIC CRYPTO data ends at offset {0}, beyond the bound")]
    CryptoOffsetTooLarge(u64),
    /// More CRYPTO frames in one datagram than [`MAX_CRYPTO_FRAMES_PER_DATAGRAM`].
    #[error("too many QUIC CRYPTO frames in one datagram")]
    TooManyCryptoFrames,
}

impl QuicError {
    /// A short, stable name for counters and anomaly fields.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Truncated => "truncated",
            Self::CidTooLong(_) => "cid_too_long",
            Self::BadLength => "bad_length",
            Self::UnknownVersion(_) => "unknown_version",
            Self::KeyVersionMismatch(_) => "key_version_mismatch",
            Self::TooShortForSample => "too_short_for_sample",
            Self::DecryptFailed => "decrypt_failed",
            Self::InvalidFrame(_) => "invalid_frame",
            Self::FrameTruncated => "frame_truncated",
            Self::CryptoOffsetTooLarge(_) => "crypto_offset_too_large",
            Self::TooManyCryptoFrames => "too_many_crypto_frames",
        }
    }

    /// The key counting this error in the `flow_anomalies` stats: the reason with the
    /// `quic_` prefix, so it cannot be mistaken for another parser's.
    pub fn anomaly_key(&self) -> &'static str {
        match self {
            Self::Truncated => "quic_truncated",
            Self::CidTooLong(_) => "quic_cid_too_long",
            Self::BadLength => "quic_bad_length",
            Self::UnknownVersion(_) => "quic_unknown_version",
            Self::KeyVersionMismatch(_) => "quic_key_version_mismatch",
            Self::TooShortForSample => "quic_too_short_for_sample",
            Self::DecryptFailed => "quic_decrypt_failed",
            Self::InvalidFrame(_) => "quic_invalid_frame",
            Self::FrameTruncated => "quic_frame_truncated",
            Self::CryptoOffsetTooLarge(_) => "quic_crypto_offset_too_large",
            Self::TooManyCryptoFrames => "quic_too_many_crypto_frames",
        }
    }
}

/// Builds a protected QUIC v1 client Initial carrying `frames` (plaintext frame
/// bytes, padded to 1,200 bytes), with a 4-byte packet number: test support for
/// the flow stage's multi-packet ClientHello tests.
#[cfg(test)]
pub fn seal_client_initial(dcid: &[u8], pn: u32, frames: &[u8]) -> Vec<u8> {
    let keys = InitialKeys::derive(QuicVersion(1), dcid).expect("v1 keys");
    let mut payload = frames.to_vec();
    let pad = 1200usize.saturating_sub(payload.len() + 64);
    payload.resize(payload.len() + pad, 0);
    let mut header = vec![0xc3];
    header.extend_from_slice(&1u32.to_be_bytes());
    header.push(dcid.len() as u8);
    header.extend_from_slice(dcid);
    header.extend_from_slice(&[0, 0]); // no SCID, no token
    let length = (4 + payload.len() + 16) as u16;
    header.extend_from_slice(&(0x4000 | length).to_be_bytes());
    let pn_offset = header.len();
    header.extend_from_slice(&pn.to_be_bytes());
    let dir = keys.direction(true);
    dir.seal(u64::from(pn), &header, &mut payload);
    let mut packet = header;
    packet.extend_from_slice(&payload);
    let sample = packet[pn_offset + 4..pn_offset + 20].to_vec();
    let mask = dir.header_mask(&sample).expect("mask");
    packet[0] ^= mask[0] & 0x0f;
    for i in 0..4 {
        packet[pn_offset + i] ^= mask[1 + i];
    }
    packet
}
