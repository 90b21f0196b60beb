//! Classic pcap: the 24-byte global header and the per-record walk.
//!
//! Handles the four standard magics (little/big endian, micro/nanosecond timestamps) and
//! the "modified" (Kuznetzov) variant whose record headers carry 8 extra bytes.
//! Invariants: one link type per file; records are consumed whole or not at all.

use std::io::Read;

use super::input::Input;
use super::{CaptureError, CaptureStats, Endian, FrameMeta, LinkType, Timestamp};

/// Length of the file header.
const GLOBAL_HEADER_LEN: usize = 24;
/// Length of a standard record header.
const RECORD_HEADER_LEN: usize = 16;
/// Length of a record header in the modified (Kuznetzov) format.
const MODIFIED_RECORD_HEADER_LEN: usize = 24;

/// The magic number, decoded: byte order, timestamp unit, record header length.
pub(super) struct PcapMagic {
    endian: Endian,
    nanos: bool,
    record_header_len: usize,
}

impl PcapMagic {
    /// Reads the rest of the global header.
    pub(super) fn read_header<R: Read>(
        self,
        input: &mut Input<R>,
    ) -> Result<PcapState, CaptureError> {
        input.fill(GLOBAL_HEADER_LEN)?;
        let header = input.available();
        let fields = (
            self.endian.u32_at(header, 16),
            self.endian.u32_at(header, 20),
        );
        let (Some(snaplen), Some(network)) = fields else {
            return Err(CaptureError::Truncated { offset: 0 });
        };
        input.consume(GLOBAL_HEADER_LEN);
        Ok(PcapState {
            magic: self,
            snaplen,
            // The low 16 bits are the link type; upper bits may carry FCS information.
            linktype: LinkType((network & 0xffff) as u16),
        })
    }
}

pub(super) struct PcapState {
    magic: PcapMagic,
    snaplen: u32,
    linktype: LinkType,
}

impl PcapState {
    /// Recognises a pcap magic number (first 4 bytes of the file).
    pub(super) fn from_magic(magic: &[u8]) -> Option<PcapMagic> {
        let m: [u8; 4] = magic.try_into().ok()?;
        let (endian, value) = if u32::from_le_bytes(m) >> 16 == 0xa1b2 {
            (Endian::Little, u32::from_le_bytes(m))
        } else {
            (Endian::Big, u32::from_be_bytes(m))
        };
        let (nanos, record_header_len) = match value {
            0xa1b2_c3d4 => (false, RECORD_HEADER_LEN),
            0xa1b2_3c4d => (true, RECORD_HEADER_LEN),
            0xa1b2_cd34 => (false, MODIFIED_RECORD_HEADER_LEN),
            _ => return None,
        };
        Some(PcapMagic {
            endian,
            nanos,
            record_header_len,
        })
    }

    pub(super) fn nanos(&self) -> bool {
        self.magic.nanos
    }

    /// Consumes the next record; `Ok(None)` at a clean end of input.
    pub(super) fn next<R: Read>(
        &mut self,
        input: &mut Input<R>,
        stats: &mut CaptureStats,
    ) -> Result<Option<FrameMeta>, CaptureError> {
        let hdr_len = self.magic.record_header_len;
        let offset = input.consumed();
        input.fill(hdr_len)?;
        let header = input.available();
        if header.is_empty() {
            return Ok(None);
        }
        let e = self.magic.endian;
        let fields = (
            e.u32_at(header, 0),
            e.u32_at(header, 4),
            e.u32_at(header, 8),
            e.u32_at(header, 12),
        );
        let (Some(secs), Some(frac), Some(caplen), Some(orig_len)) = fields else {
            return Err(CaptureError::Truncated { offset });
        };
        let total = hdr_len as u64 + u64::from(caplen);
        let total = usize::try_from(total)
            .ok()
            .filter(|&t| t <= super::MAX_BLOCK_SIZE)
            .ok_or(CaptureError::BlockTooLarge { offset, len: total })?;
        input.fill(total)?;
        if input.available().len() < total {
            return Err(CaptureError::Truncated { offset });
        }
        if self.snaplen != 0 && caplen > self.snaplen {
            stats.caplen_over_snaplen += 1;
        }
        if caplen > orig_len {
            stats.caplen_over_orig_len += 1;
        }
        let range = input.consume(total);
        let nanos = if self.magic.nanos {
            u64::from(frac)
        } else {
            u64::from(frac) * 1000
        };
        Ok(Some(FrameMeta {
            ts: Timestamp::from_parts(u64::from(secs), nanos),
            linktype: self.linktype,
            interface: 0,
            data: range.start + hdr_len..range.end,
            orig_len,
        }))
    }
}
