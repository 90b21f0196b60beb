//! The reader's single reusable byte buffer over a `Read` source.
//!
//! Invariants: `start <= end <= buf.len() <= MAX_BLOCK_SIZE`; bytes in `buf[start..end]`
//! are read but not yet consumed; `consumed` counts the bytes before `buf[start]`. The
//! buffer only moves data (compaction) or grows inside `fill`, so a range handed out by
//! `consume` stays valid until the next `fill`. It grows only when full of bytes
//! actually read, so its size is at most twice the input held, whatever a length field
//! claims.

use std::io::{ErrorKind, Read};
use std::ops::Range;

use super::{CaptureError, INITIAL_BUFFER_SIZE, MAX_BLOCK_SIZE};

pub(super) struct Input<R> {
    reader: R,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    consumed: u64,
}

impl<R: Read> Input<R> {
    pub(super) fn new(reader: R) -> Self {
        Input {
            reader,
            buf: vec![0; INITIAL_BUFFER_SIZE],
            start: 0,
            end: 0,
            consumed: 0,
        }
    }

    /// Tries to make `n` unconsumed bytes available; fewer are available only at the end
    /// of the input. `n` above [`MAX_BLOCK_SIZE`] is an error.
    pub(super) fn fill(&mut self, n: usize) -> Result<(), CaptureError> {
        if self.end - self.start >= n {
            return Ok(());
        }
        if n > MAX_BLOCK_SIZE {
            return Err(CaptureError::BlockTooLarge {
                offset: self.consumed,
                len: n as u64,
            });
        }
        if self.start + n > self.buf.len() {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        while self.end - self.start < n {
            if self.end == self.buf.len() {
                // Grow only once the bytes read so far fill the buffer, doubling up to
                // `n`: memory follows the bytes the input really holds, so a length
                // field that lies (a truncated or hostile file) costs no more than
                // twice the input, not `n` bytes.
                let grown = self.buf.len().saturating_mul(2).clamp(1, n);
                self.buf.resize(grown, 0);
            }
            let Some(space) = self.buf.get_mut(self.end..) else {
                break;
            };
            match self.reader.read(space) {
                Ok(0) => break,
                Ok(k) => self.end += k.min(space.len()),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// The unconsumed bytes read so far.
    pub(super) fn available(&self) -> &[u8] {
        self.buf.get(self.start..self.end).unwrap_or_default()
    }

    /// Marks `n` bytes (at most the available ones) consumed; returns their buffer range.
    pub(super) fn consume(&mut self, n: usize) -> Range<usize> {
        let n = n.min(self.end - self.start);
        let range = self.start..self.start + n;
        self.start += n;
        self.consumed += n as u64;
        range
    }

    /// Bytes of a range returned by `consume` (empty if it is no longer valid).
    pub(super) fn slice(&self, range: Range<usize>) -> &[u8] {
        self.buf.get(range).unwrap_or_default()
    }

    /// Total bytes consumed from the source.
    pub(super) fn consumed(&self) -> u64 {
        self.consumed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Fuzzing regression (`fuzz/regressions/capture/huge-record-length`): a short
    /// file whose record claims 200 MiB made the reader allocate (and zero) the
    /// claimed size before finding the input too short.
    #[test]
    fn a_lying_length_does_not_allocate_what_it_claims() {
        let data = [7u8; 100];
        let mut input = Input::new(&data[..]);
        input.fill(200 << 20).unwrap();
        assert_eq!(input.available(), &data[..]);
        assert_eq!(
            input.buf.len(),
            INITIAL_BUFFER_SIZE,
            "no growth past the input"
        );
    }

    #[test]
    fn grows_for_a_large_record_that_is_really_there() {
        let data: Vec<u8> = (0..3 * INITIAL_BUFFER_SIZE + 5).map(|i| i as u8).collect();
        let mut input = Input::new(&data[..]);
        input.fill(10).unwrap();
        let _ = input.consume(3);
        input.fill(data.len() - 3).unwrap();
        assert_eq!(input.available(), &data[3..]);
        assert!(input.buf.len() <= 2 * data.len());
    }
}
