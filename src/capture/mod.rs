//! Capture input: a pure-Rust streaming reader for pcap and pcapng files, and
//! live interfaces through libpcap in [`live`] (which documents its own unsafe code).
//!
//! Owns: sniffing the file format, walking its records, converting timestamps to
//! [`Timestamp`] and handing out borrowed [`Frame`]s with the link type of the interface
//! that captured them (pcapng files may mix link types). It never looks past the link
//! type: decoding belongs to `decode`.
//!
//! Invariants:
//! - All bytes pass through one reused buffer of [`INITIAL_BUFFER_SIZE`] bytes, grown only
//!   for a record larger than it and never beyond [`MAX_BLOCK_SIZE`]; no allocation per
//!   frame. A frame borrows the reader until the next call.
//! - Every error is terminal: after `next_frame` returns `Err` once (e.g. `Truncated`
//!   after the last complete frame), later calls return `Ok(None)`.
//! - Recoverable oddities inside a file (caplen > orig_len, unknown blocks, timestamps
//!   going backwards, bad options...) are counted in [`CaptureStats`], never fatal.

mod input;
pub mod live;
mod pcap;
mod pcapng;
pub mod privileges;
mod time;

use std::io::Read;
use std::path::{Path, PathBuf};

use thiserror::Error;

use self::input::Input;
pub use self::time::{civil_from_days, Rfc3339, Timestamp};

/// Size of the read buffer allocated when a reader is created: holds many typical
/// frames per `read` call so reads stay large and cheap.
pub const INITIAL_BUFFER_SIZE: usize = 1 << 20;

/// Largest record (pcap record or pcapng block, headers included) the reader accepts.
/// Real captures stay below 256 KiB per frame; a larger length field is corruption and
/// must not make the reader allocate gigabytes.
pub const MAX_BLOCK_SIZE: usize = 256 << 20;

/// Most interfaces (IDBs) remembered per pcapng section; further IDBs are counted and
/// their packets skipped, so a hostile file cannot grow the table without bound.
pub const MAX_INTERFACES: usize = 4096;

/// A link-layer header type (the LINKTYPE_* registry number used in pcap files).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LinkType(pub u16);

impl LinkType {
    /// BSD loopback: 4-byte address family in the capturing host's byte order.
    pub const NULL: LinkType = LinkType(0);
    /// Ethernet II / 802.3.
    pub const ETHERNET: LinkType = LinkType(1);
    /// PPP, RFC 1661 (optionally with HDLC address/control bytes).
    pub const PPP: LinkType = LinkType(9);
    /// Raw IP as written by some systems using their DLT_RAW value 12.
    pub const RAW_DLT12: LinkType = LinkType(12);
    /// PPP in HDLC-like framing, RFC 1662.
    pub const PPP_HDLC: LinkType = LinkType(50);
    /// Raw IPv4 or IPv6, chosen by the version nibble.
    pub const RAW: LinkType = LinkType(101);
    /// OpenBSD loopback: 4-byte address family in network byte order.
    pub const LOOP: LinkType = LinkType(108);
    /// Linux "cooked" capture v1.
    pub const LINUX_SLL: LinkType = LinkType(113);
    /// Raw IPv4 only.
    pub const IPV4: LinkType = LinkType(228);
    /// Raw IPv6 only.
    pub const IPV6: LinkType = LinkType(229);
    /// Linux netfilter NFLOG messages.
    pub const NFLOG: LinkType = LinkType(239);
    /// Apple PKTAP metadata header followed by the inner link layer.
    pub const PKTAP: LinkType = LinkType(258);
    /// Linux "cooked" capture v2.
    pub const LINUX_SLL2: LinkType = LinkType(276);
}

/// Which container the reader found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CaptureFormat {
    /// Classic pcap with microsecond timestamps.
    PcapMicro,
    /// Classic pcap with nanosecond timestamps.
    PcapNano,
    /// pcapng.
    PcapNg,
}

/// One captured frame, borrowed from the reader's buffer.
#[derive(Clone, Copy, Debug)]
pub struct Frame<'a> {
    /// Capture time.
    pub ts: Timestamp,
    /// Link type of the interface that captured the frame.
    pub linktype: LinkType,
    /// Interface index within the pcapng section (0 for classic pcap).
    pub interface: u32,
    /// The captured bytes (possibly cut short by the snap length).
    pub data: &'a [u8],
    /// The frame's length on the wire.
    pub orig_len: u32,
}

/// pcapng blocks skipped because they carry no packets, by kind.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SkippedBlocks {
    /// Name Resolution Blocks.
    pub name_resolution: u64,
    /// Interface Statistics Blocks.
    pub interface_statistics: u64,
    /// Decryption Secrets Blocks (TLS key logs etc.).
    pub decryption_secrets: u64,
    /// Custom blocks (copyable or not).
    pub custom: u64,
    /// Any other block type.
    pub other: u64,
}

/// Counters describing what the reader consumed and which oddities it tolerated.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CaptureStats {
    /// Bytes consumed from the input so far (for a progress percentage).
    pub bytes_consumed: u64,
    /// Size of the input file when known (not for stdin).
    pub file_size: Option<u64>,
    /// Frames returned.
    pub frames: u64,
    /// pcapng sections seen.
    pub sections: u64,
    /// pcapng interfaces described (all sections).
    pub interfaces: u64,
    /// Non-packet pcapng blocks skipped.
    pub skipped_blocks: SkippedBlocks,
    /// Frames whose timestamp is earlier than the previous frame's.
    pub ts_backwards: u64,
    /// Frames with more captured bytes than the declared snap length.
    pub caplen_over_snaplen: u64,
    /// Frames with more captured bytes than their original length.
    pub caplen_over_orig_len: u64,
    /// Packets referring to an interface no IDB described (skipped).
    pub unknown_interface: u64,
    /// IDBs ignored because the section already had [`MAX_INTERFACES`].
    pub interfaces_over_limit: u64,
    /// pcapng blocks with inconsistent inner lengths (clamped to the block or skipped).
    pub malformed_blocks: u64,
    /// pcapng blocks whose trailing length differs from the leading one.
    pub bad_block_trailer: u64,
    /// Option lists that ran past their block (parsing of that list stopped).
    pub bad_options: u64,
}

/// Why a capture cannot be read (further). Every variant is one line of text.
#[derive(Debug, Error)]
pub enum CaptureError {
    /// Opening the input failed.
    #[error("cannot open {path}: {source}")]
    Open {
        /// The path given.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// Reading failed.
    #[error("read error: {0}")]
    Io(#[from] std::io::Error),
    /// The input holds no bytes at all.
    #[error("empty file, not a pcap")]
    Empty,
    /// The magic number matches neither pcap nor pcapng.
    #[error("not a pcap or pcapng file (first bytes: {first_bytes})")]
    NotACapture {
        /// Hex dump of up to the first 8 bytes.
        first_bytes: String,
    },
    /// The input ends inside a record; the frames before it were returned.
    #[error("capture truncated: input ends inside the record at byte offset {offset}")]
    Truncated {
        /// Offset of the incomplete record's first byte.
        offset: u64,
    },
    /// A length field asks for more than [`MAX_BLOCK_SIZE`] bytes.
    #[error(
        "record at byte offset {offset} claims {len} bytes, over the {MAX_BLOCK_SIZE}-byte limit"
    )]
    BlockTooLarge {
        /// Offset of the record.
        offset: u64,
        /// The length it claims.
        len: u64,
    },
    /// A pcapng structure that makes the rest of the file unreadable.
    #[error("corrupt pcapng block at byte offset {offset}: {reason}")]
    BadBlock {
        /// Offset of the block.
        offset: u64,
        /// What is wrong with it.
        reason: &'static str,
    },
}

/// Byte order of the fields of a capture file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Endian {
    Little,
    Big,
}

impl Endian {
    fn u16_at(self, b: &[u8], off: usize) -> Option<u16> {
        let raw: [u8; 2] = b.get(off..off.checked_add(2)?)?.try_into().ok()?;
        Some(match self {
            Endian::Little => u16::from_le_bytes(raw),
            Endian::Big => u16::from_be_bytes(raw),
        })
    }

    fn u32_at(self, b: &[u8], off: usize) -> Option<u32> {
        let raw: [u8; 4] = b.get(off..off.checked_add(4)?)?.try_into().ok()?;
        Some(match self {
            Endian::Little => u32::from_le_bytes(raw),
            Endian::Big => u32::from_be_bytes(raw),
        })
    }

    fn i64_at(self, b: &[u8], off: usize) -> Option<i64> {
        let raw: [u8; 8] = b.get(off..off.checked_add(8)?)?.try_into().ok()?;
        Some(match self {
            Endian::Little => i64::from_le_bytes(raw),
            Endian::Big => i64::from_be_bytes(raw),
        })
    }
}

/// Where a found frame lies in the buffer, and its metadata.
struct FrameMeta {
    ts: Timestamp,
    linktype: LinkType,
    interface: u32,
    data: std::ops::Range<usize>,
    orig_len: u32,
}

enum Format {
    Pcap(pcap::PcapState),
    PcapNg(pcapng::NgState),
}

/// A streaming pcap/pcapng reader over any byte source.
pub struct CaptureReader<R: Read> {
    input: Input<R>,
    format: Format,
    stats: CaptureStats,
    last_ts: Option<Timestamp>,
    done: bool,
}

impl<R: Read> CaptureReader<R> {
    /// Reads the file header and recognises the format from its magic number.
    pub fn new(reader: R) -> Result<Self, CaptureError> {
        let mut input = Input::new(reader);
        input.fill(4)?;
        let head = input.available();
        if head.is_empty() {
            return Err(CaptureError::Empty);
        }
        let format = match head.get(..4) {
            Some(pcapng::SHB_TYPE_BYTES) => Format::PcapNg(pcapng::NgState::new()),
            Some(magic) => match pcap::PcapState::from_magic(magic) {
                Some(partial) => Format::Pcap(partial.read_header(&mut input)?),
                None => return Err(not_a_capture(&mut input)?),
            },
            None => return Err(not_a_capture(&mut input)?),
        };
        Ok(CaptureReader {
            input,
            format,
            stats: CaptureStats::default(),
            last_ts: None,
            done: false,
        })
    }

    /// The container format found by [`CaptureReader::new`].
    pub fn format(&self) -> CaptureFormat {
        match &self.format {
            Format::Pcap(state) if state.nanos() => CaptureFormat::PcapNano,
            Format::Pcap(_) => CaptureFormat::PcapMicro,
            Format::PcapNg(_) => CaptureFormat::PcapNg,
        }
    }

    /// The next frame, `Ok(None)` at the end of the input. Errors are terminal.
    pub fn next_frame(&mut self) -> Result<Option<Frame<'_>>, CaptureError> {
        if self.done {
            return Ok(None);
        }
        let found = match &mut self.format {
            Format::Pcap(state) => state.next(&mut self.input, &mut self.stats),
            Format::PcapNg(state) => state.next(&mut self.input, &mut self.stats),
        };
        self.stats.bytes_consumed = self.input.consumed();
        let meta = match found {
            Ok(Some(meta)) => meta,
            Ok(None) => {
                self.done = true;
                return Ok(None);
            }
            Err(e) => {
                self.done = true;
                return Err(e);
            }
        };
        self.stats.frames += 1;
        if self.last_ts.is_some_and(|last| meta.ts < last) {
            self.stats.ts_backwards += 1;
        }
        self.last_ts = Some(meta.ts);
        Ok(Some(Frame {
            ts: meta.ts,
            linktype: meta.linktype,
            interface: meta.interface,
            data: self.input.slice(meta.data),
            orig_len: meta.orig_len,
        }))
    }

    /// Counters so far.
    pub fn stats(&self) -> &CaptureStats {
        &self.stats
    }
}

/// Builds the "bad magic" error, showing up to 8 leading bytes.
fn not_a_capture<R: Read>(input: &mut Input<R>) -> Result<CaptureError, CaptureError> {
    input.fill(8)?;
    let shown = input.available().iter().take(8);
    let first_bytes = shown
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(" ");
    Ok(CaptureError::NotACapture { first_bytes })
}

/// Opens a capture file, or standard input for `-`.
pub fn open_path(path: &Path) -> Result<CaptureReader<Box<dyn Read + Send>>, CaptureError> {
    let (source, size): (Box<dyn Read + Send>, Option<u64>) = if path.as_os_str() == "-" {
        (Box::new(std::io::stdin()), None)
    } else {
        let open_err = |source| CaptureError::Open {
            path: path.to_path_buf(),
            source,
        };
        let file = std::fs::File::open(path).map_err(open_err)?;
        let size = file
            .metadata()
            .ok()
            .filter(|m| m.is_file())
            .map(|m| m.len());
        (Box::new(file), size)
    };
    let mut reader = CaptureReader::new(source)?;
    reader.stats.file_size = size;
    Ok(reader)
}

#[cfg(test)]
mod tests;
