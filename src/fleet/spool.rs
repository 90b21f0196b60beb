//! The sensor's spool: observations the brokers did not take, kept on local
//! disk in a bounded directory until a broker answers again.
//!
//! The directory holds segment files `NNNNNNNNNNNNNNNNNNNN.spool` (a sequence
//! number, oldest first). A segment is a run of records `u32 key length, key,
//! u32 value length, value` (little endian); it is closed at
//! [`SPOOL_SEGMENT_BYTES`] and deleted once its records were handed back to the
//! producer. Invariants: the files' total size never exceeds the configured
//! bound (a record that would is dropped and counted); a torn record at the end
//! of a segment (a crash while appending) is skipped and counted, the records
//! before it are kept.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};

/// Size at which a segment is closed and a new one started: replay reads and
/// deletes whole segments, so this is also what a replay holds in memory.
pub const SPOOL_SEGMENT_BYTES: u64 = 256 << 10;
/// Largest key or value a spool record may hold (the wire format's bound).
pub const SPOOL_MAX_FIELD: usize = super::wire::MAX_MESSAGE_BYTES;

#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("spool {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

/// What the spool did, for metrics.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SpoolStats {
    /// Records appended.
    pub spooled: u64,
    /// Records handed back for sending.
    pub replayed: u64,
    /// Records dropped because the spool was at its bound.
    pub dropped_full: u64,
    /// Records dropped because the disk refused them (write error).
    pub dropped_io: u64,
    /// Torn or malformed records skipped while reading a segment.
    pub corrupt: u64,
}

pub struct Spool {
    dir: PathBuf,
    max_bytes: u64,
    /// Sequence numbers of the closed segments, oldest first, with their sizes.
    closed: std::collections::VecDeque<(u64, u64)>,
    /// The segment being appended to.
    open: Option<(u64, BufWriter<File>, u64)>,
    next_seq: u64,
    /// Bytes in all segment files.
    bytes: u64,
    pub stats: SpoolStats,
}

fn io(path: &Path, source: std::io::Error) -> SpoolError {
    SpoolError::Io {
        path: path.display().to_string(),
        source,
    }
}

impl Spool {
    /// Opens (creating) the directory and takes over the segments a previous
    /// run left there.
    pub fn open(dir: &Path, max_bytes: u64) -> Result<Spool, SpoolError> {
        std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
        let mut segs = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(|e| io(dir, e))? {
            let entry = entry.map_err(|e| io(dir, e))?;
            let name = entry.file_name();
            let Some(seq) = name
                .to_str()
                .and_then(|n| n.strip_suffix(".spool"))
                .and_then(|n| n.parse::<u64>().ok())
            else {
                continue;
            };
            let len = entry.metadata().map_err(|e| io(dir, e))?.len();
            segs.push((seq, len));
        }
        segs.sort_unstable();
        let bytes = segs.iter().map(|s| s.1).sum();
        let next_seq = segs.last().map_or(0, |s| s.0 + 1);
        Ok(Spool {
            dir: dir.to_path_buf(),
            max_bytes,
            closed: segs.into(),
            open: None,
            next_seq,
            bytes,
            stats: SpoolStats::default(),
        })
    }

    fn path(&self, seq: u64) -> PathBuf {
        self.dir.join(format!("{seq:020}.spool"))
    }

    /// Bytes on disk.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    pub fn is_empty(&self) -> bool {
        self.bytes == 0
    }

    /// Appends a record; drops (and counts) it when the bound would be passed.
    pub fn push(&mut self, key: &[u8], value: &[u8]) {
        let len = 8 + key.len() as u64 + value.len() as u64;
        if key.len() > SPOOL_MAX_FIELD
            || value.len() > SPOOL_MAX_FIELD
            || self.bytes + len > self.max_bytes
        {
            self.stats.dropped_full += 1;
            return;
        }
        if self
            .open
            .as_ref()
            .is_some_and(|o| o.2 >= SPOOL_SEGMENT_BYTES)
        {
            self.close_open();
        }
        if self.open.is_none() {
            let seq = self.next_seq;
            let path = self.path(seq);
            match OpenOptions::new().create(true).append(true).open(&path) {
                Ok(f) => {
                    self.next_seq += 1;
                    self.open = Some((seq, BufWriter::new(f), 0));
                }
                Err(_) => {
                    self.stats.dropped_io += 1;
                    return;
                }
            }
        }
        let Some((_, w, size)) = self.open.as_mut() else {
            return;
        };
        let ok = w
            .write_all(&(key.len() as u32).to_le_bytes())
            .and_then(|_| w.write_all(key))
            .and_then(|_| w.write_all(&(value.len() as u32).to_le_bytes()))
            .and_then(|_| w.write_all(value));
        match ok {
            Ok(()) => {
                *size += len;
                self.bytes += len;
                self.stats.spooled += 1;
            }
            Err(_) => {
                self.stats.dropped_io += 1;
                self.close_open();
            }
        }
    }

    fn close_open(&mut self) {
        if let Some((seq, mut w, size)) = self.open.take() {
            let _ = w.flush();
            self.closed.push_back((seq, size));
        }
    }

    /// Writes buffered records to the open segment (at shutdown).
    pub fn sync(&mut self) {
        if let Some((_, w, _)) = self.open.as_mut() {
            let _ = w.flush();
        }
    }

    /// Takes the oldest segment's records (closing the open segment when it is
    /// the only one) and deletes its file. `None` when the spool is empty.
    pub fn take_oldest(&mut self) -> Option<Vec<(Vec<u8>, Vec<u8>)>> {
        if self.closed.is_empty() {
            self.close_open();
        }
        let (seq, size) = self.closed.pop_front()?;
        let path = self.path(seq);
        let mut data = Vec::new();
        let read = File::open(&path).and_then(|mut f| f.read_to_end(&mut data));
        let _ = std::fs::remove_file(&path);
        self.bytes = self.bytes.saturating_sub(size);
        if read.is_err() {
            self.stats.corrupt += 1;
            return Some(Vec::new());
        }
        let records = parse_segment(&data, &mut self.stats.corrupt);
        self.stats.replayed += records.len() as u64;
        Some(records)
    }
}

/// Reads a segment's records; a torn or oversized record ends it (counted).
fn parse_segment(mut data: &[u8], corrupt: &mut u64) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut out = Vec::new();
    let field = |d: &mut &[u8]| -> Option<Vec<u8>> {
        let (len, rest) = d.split_first_chunk::<4>()?;
        let len = u32::from_le_bytes(*len) as usize;
        if len > SPOOL_MAX_FIELD {
            return None;
        }
        let v = rest.get(..len)?.to_vec();
        *d = &rest[len..];
        Some(v)
    };
    while !data.is_empty() {
        match (field(&mut data), field(&mut data)) {
            (Some(k), Some(v)) => out.push((k, v)),
            _ => {
                *corrupt += 1;
                break;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("nightjar-spool-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn records_come_back_in_order_across_segments_and_restarts() {
        let d = dir("order");
        let mut s = Spool::open(&d, 16 << 20).unwrap();
        let value = vec![7u8; 10_000];
        for i in 0..100u32 {
            s.push(&i.to_le_bytes(), &value);
        }
        assert!(s.closed.len() >= 2, "several segments");
        s.sync();
        drop(s);
        let mut s = Spool::open(&d, 16 << 20).unwrap();
        assert_eq!(s.bytes(), 100 * (8 + 4 + 10_000));
        let mut seen = Vec::new();
        while let Some(recs) = s.take_oldest() {
            seen.extend(recs.into_iter().map(|(k, v)| {
                assert_eq!(v.len(), 10_000);
                u32::from_le_bytes(k.try_into().unwrap())
            }));
        }
        assert_eq!(seen, (0..100).collect::<Vec<_>>());
        assert!(s.is_empty());
        assert_eq!(std::fs::read_dir(&d).unwrap().count(), 0);
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn bound_drops_and_counts() {
        let d = dir("bound");
        let mut s = Spool::open(&d, 1000).unwrap();
        for _ in 0..20 {
            s.push(b"k", &[0; 100]);
        }
        assert_eq!(s.stats.spooled, 9);
        assert_eq!(s.stats.dropped_full, 11);
        assert!(s.bytes() <= 1000);
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn torn_tail_keeps_the_records_before_it() {
        let mut seg = Vec::new();
        for v in [&b"one"[..], b"two"] {
            seg.extend_from_slice(&1u32.to_le_bytes());
            seg.push(b'k');
            seg.extend_from_slice(&(v.len() as u32).to_le_bytes());
            seg.extend_from_slice(v);
        }
        seg.extend_from_slice(&[5, 0, 0, 0, b'x']);
        let mut corrupt = 0;
        let recs = parse_segment(&seg, &mut corrupt);
        assert_eq!(recs.len(), 2);
        assert_eq!(recs[1].1, b"two");
        assert_eq!(corrupt, 1);
        let mut corrupt = 0;
        assert!(parse_segment(&[0xff; 9], &mut corrupt).is_empty());
        assert_eq!(corrupt, 1);
    }
}
