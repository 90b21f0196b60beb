//! pcapng: sections, interfaces and packet blocks.
//!
//! Handles Section Header Blocks in either byte order (several sections per file, each
//! resetting the interface table), Interface Description Blocks (link type, snap length,
//! `if_tsresol` in powers of 10 or 2, `if_tsoffset`), Enhanced, Simple and obsolete Packet
//! Blocks. Other blocks are skipped and counted by kind.
//! Invariants: a block is consumed whole; the interface table holds at most
//! [`MAX_INTERFACES`] entries; lengths inside a block are checked against the block.

use std::io::Read;

use super::input::Input;
use super::{
    CaptureError, CaptureStats, Endian, FrameMeta, LinkType, Timestamp, MAX_BLOCK_SIZE,
    MAX_INTERFACES,
};

/// The Section Header Block type; a palindrome, so readable before the byte order is known.
pub(super) const SHB_TYPE_BYTES: &[u8] = &[0x0a, 0x0d, 0x0d, 0x0a];
/// Block type + total length at the start, total length again at the end.
const BLOCK_OVERHEAD: usize = 12;

const IDB: u32 = 1;
const PB_OBSOLETE: u32 = 2;
const SPB: u32 = 3;
const NRB: u32 = 4;
const ISB: u32 = 5;
const EPB: u32 = 6;
const DSB: u32 = 0x0a;
const CUSTOM: u32 = 0x0bad;
const CUSTOM_NO_COPY: u32 = 0x4000_0bad;

/// Option codes of an IDB.
const OPT_END: u16 = 0;
const OPT_IF_TSRESOL: u16 = 9;
const OPT_IF_TSOFFSET: u16 = 14;

/// Timestamp unit of an interface: 10^-n or 2^-n seconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TsResolution {
    Pow10(u8),
    Pow2(u8),
}

impl TsResolution {
    fn from_option(byte: u8) -> Self {
        if byte & 0x80 == 0 {
            TsResolution::Pow10(byte)
        } else {
            TsResolution::Pow2(byte & 0x7f)
        }
    }

    /// Converts a count of units into nanoseconds, saturating.
    fn to_nanos(self, units: u64) -> u64 {
        match self {
            TsResolution::Pow10(n) if n <= 9 => units.saturating_mul(10u64.pow(u32::from(9 - n))),
            // 10^20 exceeds u64, so any finer unit rounds to zero nanoseconds.
            TsResolution::Pow10(n) => 10u64
                .checked_pow(u32::from(n - 9))
                .map_or(0, |div| units / div),
            TsResolution::Pow2(n) => {
                let scaled = (u128::from(units) * 1_000_000_000) >> n;
                u64::try_from(scaled).unwrap_or(u64::MAX)
            }
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Interface {
    linktype: LinkType,
    snaplen: u32,
    resolution: TsResolution,
    offset_secs: i64,
}

impl Interface {
    fn timestamp(&self, high: u32, low: u32) -> Timestamp {
        let units = (u64::from(high) << 32) | u64::from(low);
        let nanos = self.resolution.to_nanos(units);
        let shift = self
            .offset_secs
            .unsigned_abs()
            .saturating_mul(1_000_000_000);
        Timestamp(if self.offset_secs >= 0 {
            nanos.saturating_add(shift)
        } else {
            nanos.saturating_sub(shift)
        })
    }
}

pub(super) struct NgState {
    endian: Endian,
    interfaces: Vec<Interface>,
    last_ts: Timestamp,
}

/// A packet found in a block, relative to the block's first byte.
struct Packet {
    interface: u32,
    ts: Option<(u32, u32)>,
    data_start: usize,
    caplen: usize,
    orig_len: u32,
}

impl NgState {
    pub(super) fn new() -> Self {
        NgState {
            endian: Endian::Little,
            interfaces: Vec::new(),
            last_ts: Timestamp(0),
        }
    }

    /// Consumes blocks until one carries a packet; `Ok(None)` at a clean end of input.
    pub(super) fn next<R: Read>(
        &mut self,
        input: &mut Input<R>,
        stats: &mut CaptureStats,
    ) -> Result<Option<FrameMeta>, CaptureError> {
        loop {
            let offset = input.consumed();
            input.fill(BLOCK_OVERHEAD)?;
            let head = input.available();
            if head.is_empty() {
                return Ok(None);
            }
            if head.len() < BLOCK_OVERHEAD {
                return Err(CaptureError::Truncated { offset });
            }
            let is_shb = head.get(..4) == Some(SHB_TYPE_BYTES);
            if is_shb {
                // The byte-order magic 0x1a2b3c4d, as written by either kind of host.
                self.endian = match head.get(8..12) {
                    Some([0x4d, 0x3c, 0x2b, 0x1a]) => Endian::Little,
                    Some([0x1a, 0x2b, 0x3c, 0x4d]) => Endian::Big,
                    _ => {
                        return Err(CaptureError::BadBlock {
                            offset,
                            reason: "section header without byte-order magic",
                        })
                    }
                };
            } else if offset == 0 {
                return Err(CaptureError::BadBlock {
                    offset,
                    reason: "first block is not a section header",
                });
            }
            let e = self.endian;
            let block_type = e.u32_at(head, 0).unwrap_or(0);
            let len = e.u32_at(head, 4).unwrap_or(0);
            let len_usize = usize::try_from(len).unwrap_or(usize::MAX);
            if len_usize > MAX_BLOCK_SIZE {
                return Err(CaptureError::BlockTooLarge {
                    offset,
                    len: u64::from(len),
                });
            }
            if len_usize < BLOCK_OVERHEAD || len % 4 != 0 {
                return Err(CaptureError::BadBlock {
                    offset,
                    reason: "block length below 12 or not a multiple of 4",
                });
            }
            input.fill(len_usize)?;
            let Some(block) = input.available().get(..len_usize) else {
                return Err(CaptureError::Truncated { offset });
            };
            if e.u32_at(block, len_usize - 4) != Some(len) {
                stats.bad_block_trailer += 1;
            }
            let body = block.get(8..len_usize - 4).unwrap_or_default();
            let packet = if is_shb {
                stats.sections += 1;
                self.interfaces.clear();
                None
            } else {
                match block_type {
                    IDB => {
                        self.add_interface(body, stats);
                        None
                    }
                    EPB => self.enhanced(body, stats),
                    SPB => self.simple(body, stats),
                    PB_OBSOLETE => self.obsolete(body, stats),
                    other => {
                        count_skipped(other, stats);
                        None
                    }
                }
            };
            let range = input.consume(len_usize);
            let Some(p) = packet else { continue };
            let Some(iface) = self.interfaces.get(p.interface as usize).copied() else {
                stats.unknown_interface += 1;
                continue;
            };
            if iface.snaplen != 0 && p.caplen > iface.snaplen as usize {
                stats.caplen_over_snaplen += 1;
            }
            if p.caplen as u64 > u64::from(p.orig_len) {
                stats.caplen_over_orig_len += 1;
            }
            let ts = match p.ts {
                Some((high, low)) => iface.timestamp(high, low),
                // Simple Packet Blocks carry no time: reuse the previous packet's.
                None => self.last_ts,
            };
            self.last_ts = ts;
            // Body starts 8 bytes into the block.
            let start = range.start + 8 + p.data_start;
            return Ok(Some(FrameMeta {
                ts,
                linktype: iface.linktype,
                interface: p.interface,
                data: start..start + p.caplen,
                orig_len: p.orig_len,
            }));
        }
    }

    fn add_interface(&mut self, body: &[u8], stats: &mut CaptureStats) {
        let e = self.endian;
        let (Some(linktype), Some(snaplen)) = (e.u16_at(body, 0), e.u32_at(body, 4)) else {
            stats.malformed_blocks += 1;
            return;
        };
        stats.interfaces += 1;
        if self.interfaces.len() >= MAX_INTERFACES {
            stats.interfaces_over_limit += 1;
            return;
        }
        let mut iface = Interface {
            linktype: LinkType(linktype),
            snaplen,
            resolution: TsResolution::Pow10(6),
            offset_secs: 0,
        };
        let options = body.get(8..).unwrap_or_default();
        let complete = walk_options(e, options, |code, value| match (code, value) {
            (OPT_IF_TSRESOL, [byte, ..]) => iface.resolution = TsResolution::from_option(*byte),
            (OPT_IF_TSOFFSET, v) => {
                if let Some(secs) = e.i64_at(v, 0) {
                    iface.offset_secs = secs;
                }
            }
            _ => {}
        });
        if !complete {
            stats.bad_options += 1;
        }
        self.interfaces.push(iface);
    }

    /// An Enhanced Packet Block: a 32-bit interface id, then the timestamp and lengths.
    fn enhanced(&self, body: &[u8], stats: &mut CaptureStats) -> Option<Packet> {
        let interface = self.endian.u32_at(body, 0);
        self.timestamped(interface, body, stats)
    }

    /// The obsolete Packet Block: a 16-bit interface id and a drops count, then the same
    /// layout as an Enhanced Packet Block.
    fn obsolete(&self, body: &[u8], stats: &mut CaptureStats) -> Option<Packet> {
        let interface = self.endian.u16_at(body, 0).map(u32::from);
        self.timestamped(interface, body, stats)
    }

    /// The part both packet blocks share: timestamp high/low, captured and original
    /// length at bytes 4..20, the packet from byte 20.
    fn timestamped(
        &self,
        interface: Option<u32>,
        body: &[u8],
        stats: &mut CaptureStats,
    ) -> Option<Packet> {
        let e = self.endian;
        let fields = (
            interface,
            e.u32_at(body, 4),
            e.u32_at(body, 8),
            e.u32_at(body, 12),
            e.u32_at(body, 16),
        );
        let (Some(interface), Some(high), Some(low), Some(caplen), Some(orig_len)) = fields else {
            stats.malformed_blocks += 1;
            return None;
        };
        Some(Packet {
            interface,
            ts: Some((high, low)),
            data_start: 20,
            caplen: clamp_caplen(caplen, body.len().saturating_sub(20), stats),
            orig_len,
        })
    }

    fn simple(&self, body: &[u8], stats: &mut CaptureStats) -> Option<Packet> {
        let Some(orig_len) = self.endian.u32_at(body, 0) else {
            stats.malformed_blocks += 1;
            return None;
        };
        // The captured length is implied: the original length, cut by the snap length of
        // interface 0 and by the block (which also holds padding).
        let mut caplen = (orig_len as usize).min(body.len().saturating_sub(4));
        if let Some(snaplen) = self.interfaces.first().map(|i| i.snaplen as usize) {
            if snaplen != 0 {
                caplen = caplen.min(snaplen);
            }
        }
        Some(Packet {
            interface: 0,
            ts: None,
            data_start: 4,
            caplen,
            orig_len,
        })
    }
}

/// Limits a packet's captured length to the bytes its block holds, counting a mismatch.
fn clamp_caplen(caplen: u32, room: usize, stats: &mut CaptureStats) -> usize {
    let caplen = usize::try_from(caplen).unwrap_or(usize::MAX);
    if caplen > room {
        stats.malformed_blocks += 1;
        room
    } else {
        caplen
    }
}

fn count_skipped(block_type: u32, stats: &mut CaptureStats) {
    let kinds = &mut stats.skipped_blocks;
    match block_type {
        NRB => kinds.name_resolution += 1,
        ISB => kinds.interface_statistics += 1,
        DSB => kinds.decryption_secrets += 1,
        CUSTOM | CUSTOM_NO_COPY => kinds.custom += 1,
        _ => kinds.other += 1,
    }
}

/// Calls `visit(code, value)` for each option up to `opt_endofopt` or the end of the
/// list. Returns false when an option runs past the list.
fn walk_options(e: Endian, mut rest: &[u8], mut visit: impl FnMut(u16, &[u8])) -> bool {
    while rest.len() >= 4 {
        let (Some(code), Some(len)) = (e.u16_at(rest, 0), e.u16_at(rest, 2)) else {
            return false;
        };
        if code == OPT_END {
            return true;
        }
        let len = usize::from(len);
        let Some(value) = rest.get(4..4 + len) else {
            return false;
        };
        visit(code, value);
        let padded = 4 + len.div_ceil(4) * 4;
        rest = rest.get(padded..).unwrap_or_default();
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolutions_convert_to_nanoseconds() {
        assert_eq!(TsResolution::Pow10(6).to_nanos(1_500_000), 1_500_000_000);
        assert_eq!(TsResolution::Pow10(9).to_nanos(42), 42);
        assert_eq!(TsResolution::Pow10(12).to_nanos(5_000), 5);
        assert_eq!(TsResolution::Pow10(127).to_nanos(u64::MAX), 0);
        assert_eq!(TsResolution::Pow10(0).to_nanos(u64::MAX), u64::MAX);
        assert_eq!(TsResolution::Pow2(10).to_nanos(1024), 1_000_000_000);
        assert_eq!(TsResolution::Pow2(127).to_nanos(u64::MAX), 0);
        assert_eq!(TsResolution::Pow2(0).to_nanos(u64::MAX), u64::MAX);
        assert_eq!(TsResolution::from_option(0x8a), TsResolution::Pow2(10));
        assert_eq!(TsResolution::from_option(9), TsResolution::Pow10(9));
    }

    #[test]
    fn offsets_shift_and_saturate() {
        let mut iface = Interface {
            linktype: LinkType::ETHERNET,
            snaplen: 0,
            resolution: TsResolution::Pow10(6),
            offset_secs: 100,
        };
        assert_eq!(iface.timestamp(0, 1), Timestamp(100_000_001_000));
        iface.offset_secs = -200;
        assert_eq!(iface.timestamp(0, 1), Timestamp(0));
        iface.offset_secs = i64::MIN;
        assert_eq!(iface.timestamp(u32::MAX, u32::MAX), Timestamp(0));
    }

    #[test]
    fn options_walk_stops_on_overrun() {
        let e = Endian::Little;
        let good = [9, 0, 1, 0, 9, 0, 0, 0, 0, 0, 0, 0];
        let mut seen = Vec::new();
        assert!(walk_options(e, &good, |c, v| seen.push((c, v.to_vec()))));
        assert_eq!(seen, vec![(9, vec![9])]);
        let bad = [9, 0, 200, 0, 1, 2];
        assert!(!walk_options(e, &bad, |_, _| {}));
    }
}
