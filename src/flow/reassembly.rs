//! Bounded reassembly of the first bytes of one direction of a byte stream.
//!
//! Owns [`StreamReassembler`], used for TCP handshakes (TLS records) and QUIC CRYPTO
//! streams, and [`tcp_offset`], which turns a TCP sequence number into a stream offset.
//!
//! Invariants:
//! - only stream offsets `0..bound` are ever held; bytes at or beyond the bound are
//!   dropped and flagged with [`StreamReassembler::overflowed`];
//! - nothing is allocated until the first piece arrives, and the buffer never grows
//!   past the bound; [`StreamReassembler::release`] frees it;
//! - filled ranges are kept sorted, disjoint and non-adjacent in a fixed array of
//!   [`MAX_RANGES`] entries (no heap), so out-of-order data costs no extra memory;
//! - overlapping data: the first copy of a byte wins. Later copies (retransmissions,
//!   overlapping segments with different content) never overwrite held bytes. This is
//!   what most operating systems' TCP stacks do, and it keeps a sensor from being
//!   steered by a forged retransmission that the endpoint itself ignored.

/// Bytes a ClientHello needs. A ClientHello with a post-quantum hybrid key share
/// (X25519MLKEM768: 1,216 bytes of key share) plus padding, ECH and session tickets
/// stays below 4 KiB in practice; 16 KiB is one full TLS record, the largest plaintext
/// a single record may carry (RFC 8446 §5.1). The flow stage buffers each TCP direction
/// up to [`HANDSHAKE_BYTES_SERVER`] all the same, since which side is the client may
/// only be known from its hello.
pub const HANDSHAKE_BYTES_CLIENT: usize = 16 * 1024;

/// Bytes kept from the server side of a handshake. In TLS ≤ 1.2 the ServerHello is
/// followed by the certificate chain in clear; typical chains are 3–6 KiB, large ones
/// (long SAN lists, RSA-4096 intermediates) reach 10–20 KiB. 32 KiB covers them with
/// margin while bounding the cost per flow.
pub const HANDSHAKE_BYTES_SERVER: usize = 32 * 1024;

/// Maximum number of disjoint filled ranges tracked. Handshakes arrive in a handful of
/// segments; more than this many holes at once means heavy loss or an adversarial
/// sender, and the stream is flagged ([`StreamReassembler::range_limit_hit`]) instead
/// of growing a list.
pub const MAX_RANGES: usize = 8;

/// A TCP segment whose sequence number lies up to this many bytes before the stream
/// start is treated as a retransmission that overlaps the start; further back it is
/// rejected by [`tcp_offset`] as unrelated (e.g. a wrapped or forged sequence number).
pub const TCP_MAX_BEFORE_START: u32 = 64 * 1024;

/// Stream offset of a TCP segment's first byte: `seq − (ISN + 1)` in wrapping `u32`
/// arithmetic (RFC 9293 sequence space). A sequence number more than 2^31 bytes ahead
/// is read as lying before the stream start and gives `None`; use [`tcp_clip`] to keep
/// the useful tail of a segment that starts shortly before the start.
pub fn tcp_offset(isn_plus_one: u32, seq: u32) -> Option<u64> {
    let delta = seq.wrapping_sub(isn_plus_one);
    // Deltas in the upper half of the u32 space are "before the start".
    if delta > u32::MAX / 2 {
        None
    } else {
        Some(u64::from(delta))
    }
}

/// Like [`tcp_offset`], but a segment starting shortly before the stream start (by at
/// most [`TCP_MAX_BEFORE_START`] bytes, e.g. a retransmitted SYN payload or a
/// re-segmented retransmission) is clipped to the part at or after the start.
/// Returns the offset and the remaining payload, or `None` if nothing is left.
pub fn tcp_clip(isn_plus_one: u32, seq: u32, payload: &[u8]) -> Option<(u64, &[u8])> {
    match tcp_offset(isn_plus_one, seq) {
        Some(off) => Some((off, payload)),
        None => {
            let before = isn_plus_one.wrapping_sub(seq);
            if before > TCP_MAX_BEFORE_START {
                return None;
            }
            let tail = payload.get(usize::try_from(before).ok()?..)?;
            (!tail.is_empty()).then_some((0, tail))
        }
    }
}

/// One filled range `[start, end)` of stream offsets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Range {
    start: usize,
    end: usize,
}

/// Reassembles the first `bound` bytes of one direction of a stream. See the module
/// documentation for the invariants.
#[derive(Debug, Clone)]
pub struct StreamReassembler {
    bound: usize,
    buf: Vec<u8>,
    ranges: [Range; MAX_RANGES],
    n_ranges: usize,
    overflowed: bool,
    range_limit_hit: bool,
    duplicates: u64,
    out_of_order: u64,
}

impl StreamReassembler {
    /// An empty reassembler that will hold at most `bound` bytes (from offset 0).
    /// Allocates nothing.
    pub fn new(bound: usize) -> Self {
        StreamReassembler {
            bound,
            buf: Vec::new(),
            ranges: [Range::default(); MAX_RANGES],
            n_ranges: 0,
            overflowed: false,
            range_limit_hit: false,
            duplicates: 0,
            out_of_order: 0,
        }
    }

    /// Adds the piece `data` found at stream offset `offset`. Bytes at or beyond the
    /// bound are dropped (flag [`Self::overflowed`]); bytes already held are kept as they
    /// are (first copy wins). A piece that would need more than [`MAX_RANGES`] disjoint
    /// ranges is dropped and flags [`Self::range_limit_hit`]; pieces that extend or
    /// join existing ranges are still accepted afterwards, so the holes can still close.
    pub fn insert(&mut self, offset: u64, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        let start = match usize::try_from(offset) {
            Ok(s) if s < self.bound => s,
            _ => {
                self.overflowed = true;
                return;
            }
        };
        let wanted_end = start.saturating_add(data.len());
        let end = wanted_end.min(self.bound);
        if wanted_end > end {
            self.overflowed = true;
        }
        let new = Range { start, end };
        if !self.can_merge(new) {
            self.range_limit_hit = true;
            return;
        }
        if start > self.contiguous_len() {
            self.out_of_order += 1;
        }
        self.grow_to(end);
        let mut duplicate = false;
        let mut cursor = start;
        // Copy only the parts of `new` not already covered (first copy wins).
        let held = self.ranges;
        for r in held.iter().take(self.n_ranges) {
            if r.end <= cursor || r.start >= end {
                continue;
            }
            duplicate = true;
            if r.start > cursor {
                self.copy_in(cursor, r.start, start, data);
            }
            cursor = cursor.max(r.end);
        }
        if cursor < end {
            self.copy_in(cursor, end, start, data);
        }
        if duplicate {
            self.duplicates += 1;
        }
        self.merge(new);
    }

    /// Bytes from offset 0 up to the first hole (or everything held if there is none).
    pub fn contiguous(&self) -> &[u8] {
        self.buf.get(..self.contiguous_len()).unwrap_or(&[])
    }

    /// True if some held bytes lie beyond a hole, or nothing starts at offset 0 yet
    /// although pieces arrived.
    pub fn has_gap(&self) -> bool {
        self.n_ranges > 1 || (self.n_ranges == 1 && self.ranges[0].start != 0)
    }

    /// True once a piece reached past the bound (those bytes were dropped).
    pub fn overflowed(&self) -> bool {
        self.overflowed
    }

    /// True once a piece was dropped because it would have needed more than
    /// [`MAX_RANGES`] disjoint ranges.
    pub fn range_limit_hit(&self) -> bool {
        self.range_limit_hit
    }

    /// True when no further byte can extend [`Self::contiguous`]: the contiguous part
    /// reached the bound, or the reassembler was released.
    pub fn is_full(&self) -> bool {
        self.contiguous_len() >= self.bound
    }

    /// Number of distinct stream bytes held.
    pub fn bytes_held(&self) -> usize {
        self.ranges
            .iter()
            .take(self.n_ranges)
            .map(|r| r.end - r.start)
            .sum()
    }

    /// Number of pieces that repeated at least one byte already held.
    pub fn duplicates(&self) -> u64 {
        self.duplicates
    }

    /// Number of pieces that arrived beyond a hole.
    pub fn out_of_order(&self) -> u64 {
        self.out_of_order
    }

    /// Frees the buffer once the handshake is done. Afterwards the reassembler holds
    /// nothing and accepts nothing (its bound becomes 0); counters and flags stay.
    pub fn release(&mut self) {
        self.buf = Vec::new();
        self.n_ranges = 0;
        self.bound = 0;
    }

    fn contiguous_len(&self) -> usize {
        match self.ranges.first() {
            Some(r) if self.n_ranges > 0 && r.start == 0 => r.end,
            _ => 0,
        }
    }

    /// Grows the buffer to `end` bytes, never reserving past the bound.
    fn grow_to(&mut self, end: usize) {
        if end <= self.buf.len() {
            return;
        }
        if end > self.buf.capacity() {
            let target = self
                .buf
                .capacity()
                .saturating_mul(2)
                .max(end)
                .min(self.bound);
            self.buf.reserve_exact(target - self.buf.len());
        }
        self.buf.resize(end, 0);
    }

    /// Copies stream bytes `[from, to)` of the piece that starts at `piece_start`.
    fn copy_in(&mut self, from: usize, to: usize, piece_start: usize, data: &[u8]) {
        let src = data.get(from - piece_start..to - piece_start);
        let dst = self.buf.get_mut(from..to);
        if let (Some(src), Some(dst)) = (src, dst) {
            dst.copy_from_slice(src);
        }
    }

    /// Whether merging `new` keeps the range count within [`MAX_RANGES`].
    fn can_merge(&self, new: Range) -> bool {
        let touching = self
            .ranges
            .iter()
            .take(self.n_ranges)
            .filter(|r| r.start <= new.end && new.start <= r.end)
            .count();
        touching > 0 || self.n_ranges < MAX_RANGES
    }

    /// Merges `new` into the sorted range list; the caller checked [`Self::can_merge`].
    fn merge(&mut self, new: Range) {
        let mut merged = new;
        let mut out = [Range::default(); MAX_RANGES];
        let mut n = 0;
        let mut placed = false;
        for r in self.ranges.iter().take(self.n_ranges) {
            if r.end < merged.start {
                // Entirely before, not adjacent.
                if let Some(slot) = out.get_mut(n) {
                    *slot = *r;
                    n += 1;
                }
            } else if r.start > merged.end {
                if !placed {
                    if let Some(slot) = out.get_mut(n) {
                        *slot = merged;
                        n += 1;
                    }
                    placed = true;
                }
                if let Some(slot) = out.get_mut(n) {
                    *slot = *r;
                    n += 1;
                }
            } else {
                merged.start = merged.start.min(r.start);
                merged.end = merged.end.max(r.end);
            }
        }
        if !placed {
            if let Some(slot) = out.get_mut(n) {
                *slot = merged;
                n += 1;
            }
        }
        self.ranges = out;
        self.n_ranges = n;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn lazy_allocation_and_release() {
        let mut r = StreamReassembler::new(HANDSHAKE_BYTES_CLIENT);
        assert_eq!(r.buf.capacity(), 0);
        assert!(r.contiguous().is_empty());
        assert!(!r.has_gap());
        r.insert(0, b"hello");
        assert_eq!(r.contiguous(), b"hello");
        assert!(r.buf.capacity() <= HANDSHAKE_BYTES_CLIENT);
        r.release();
        assert_eq!(r.buf.capacity(), 0);
        r.insert(0, b"more");
        assert!(r.contiguous().is_empty());
    }

    #[test]
    fn out_of_order_gap_and_fill() {
        let mut r = StreamReassembler::new(100);
        r.insert(5, b"world");
        assert!(r.has_gap());
        assert!(r.contiguous().is_empty());
        assert_eq!(r.out_of_order(), 1);
        r.insert(0, b"hello");
        assert!(!r.has_gap());
        assert_eq!(r.contiguous(), b"helloworld");
        assert_eq!(r.bytes_held(), 10);
    }

    #[test]
    fn first_copy_wins() {
        let mut r = StreamReassembler::new(100);
        r.insert(0, b"abcd");
        r.insert(2, b"XXXXef");
        assert_eq!(r.contiguous(), b"abcdXXef");
        assert_eq!(r.duplicates(), 1);
        r.insert(0, b"ZZZZZZ");
        assert_eq!(r.contiguous(), b"abcdXXef");
        assert_eq!(r.duplicates(), 2);
    }

    #[test]
    fn bound_is_enforced() {
        let mut r = StreamReassembler::new(8);
        r.insert(4, b"efghijkl");
        assert!(r.overflowed());
        r.insert(0, b"abcd");
        assert_eq!(r.contiguous(), b"abcdefgh");
        assert!(r.is_full());
        assert!(r.buf.capacity() <= 8);
        r.insert(u64::MAX, b"x");
        assert_eq!(r.bytes_held(), 8);
    }

    #[test]
    fn range_limit() {
        let mut r = StreamReassembler::new(1000);
        for i in 0..MAX_RANGES as u64 {
            r.insert(10 + i * 10, b"x");
        }
        assert!(!r.range_limit_hit());
        r.insert(500, b"y");
        assert!(r.range_limit_hit());
        // Pieces that join existing ranges are still accepted.
        r.insert(0, &[b'a'; 11]);
        assert_eq!(r.contiguous().len(), 11);
    }

    #[test]
    fn tcp_offsets() {
        assert_eq!(tcp_offset(1000, 1000), Some(0));
        assert_eq!(tcp_offset(u32::MAX, 9), Some(10));
        assert_eq!(tcp_offset(1000, 999), None);
        assert_eq!(tcp_clip(1000, 998, b"abcd"), Some((0, &b"cd"[..])));
        assert_eq!(tcp_clip(1000, 990, b"abcd"), None);
        assert_eq!(tcp_clip(1_000_000, 1, b"abcd"), None);
    }

    proptest! {
        #[test]
        fn permutations_and_duplicates_give_same_bytes(
            data in proptest::collection::vec(any::<u8>(), 1..400),
            cuts in proptest::collection::vec(any::<u16>(), 0..12),
            dups in proptest::collection::vec(any::<u16>(), 0..6),
            seed in any::<u64>(),
        ) {
            // Split `data` at the given cut points into pieces.
            let mut points: Vec<usize> = cuts.iter().map(|c| *c as usize % data.len()).collect();
            points.push(0);
            points.push(data.len());
            points.sort_unstable();
            points.dedup();
            let mut pieces: Vec<(usize, usize)> = points.windows(2).map(|w| (w[0], w[1])).collect();
            for d in &dups {
                let i = *d as usize % pieces.len();
                pieces.push(pieces[i]);
            }
            // Deterministic shuffle from the seed.
            let mut s = seed | 1;
            for i in (1..pieces.len()).rev() {
                s ^= s << 13; s ^= s >> 7; s ^= s << 17;
                pieces.swap(i, (s % (i as u64 + 1)) as usize);
            }
            let mut r = StreamReassembler::new(HANDSHAKE_BYTES_CLIENT);
            for (a, b) in pieces {
                r.insert(a as u64, &data[a..b]);
            }
            // At most 13 pieces: never more than 7 disjoint ranges at once.
            prop_assert!(!r.range_limit_hit());
            prop_assert_eq!(r.contiguous(), &data[..]);
            prop_assert!(!r.has_gap());
        }

        #[test]
        fn arbitrary_inserts_never_exceed_bound(
            ops in proptest::collection::vec((any::<u64>(), proptest::collection::vec(any::<u8>(), 0..64)), 0..40),
            bound in 0usize..512,
        ) {
            let mut r = StreamReassembler::new(bound);
            for (off, d) in ops {
                r.insert(off % 600, &d);
                prop_assert!(r.buf.len() <= bound);
                prop_assert!(r.buf.capacity() <= bound);
                prop_assert!(r.n_ranges <= MAX_RANGES);
            }
        }
    }
}
