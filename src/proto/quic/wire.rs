//! A checked forward reader over untrusted bytes: every read returns `None`
//! instead of running past the end, so callers never index unchecked.

/// A cursor over a byte slice; `pos` never exceeds `buf.len()`.
pub(super) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(super) fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    /// Bytes consumed so far.
    pub(super) fn pos(&self) -> usize {
        self.pos
    }

    /// The unread bytes.
    pub(super) fn rest(&self) -> &'a [u8] {
        self.buf.get(self.pos..).unwrap_or_default()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.rest().is_empty()
    }

    /// Skips a run of zero bytes (PADDING frames); returns how many.
    pub(super) fn skip_zeros(&mut self) -> usize {
        let n = self.rest().iter().take_while(|&&b| b == 0).count();
        self.pos += n;
        n
    }

    pub(super) fn u8(&mut self) -> Option<u8> {
        let b = *self.rest().first()?;
        self.pos += 1;
        Some(b)
    }

    pub(super) fn u32(&mut self) -> Option<u32> {
        Some(u32::from_be_bytes(self.bytes(4)?.try_into().ok()?))
    }

    pub(super) fn bytes(&mut self, n: usize) -> Option<&'a [u8]> {
        let out = self.rest().get(..n)?;
        self.pos += n;
        Some(out)
    }

    /// `n` bytes where `n` comes off the wire as a `u64`.
    pub(super) fn bytes_u64(&mut self, n: u64) -> Option<&'a [u8]> {
        self.bytes(usize::try_from(n).ok()?)
    }

    /// A QUIC variable-length integer (RFC 9000 section 16).
    pub(super) fn varint(&mut self) -> Option<u64> {
        let first = *self.rest().first()?;
        let len = 1usize << (first >> 6);
        let raw = self.bytes(len)?;
        let mut value = u64::from(first & 0x3f);
        for &b in raw.iter().skip(1) {
            value = (value << 8) | u64::from(b);
        }
        Some(value)
    }
}

#[cfg(test)]
mod tests {
    use super::Reader;

    #[test]
    fn varints_from_rfc9000_appendix_a1() {
        let cases: [(&[u8], u64); 4] = [
            (
                &[0xc2, 0x19, 0x7c, 0x5e, 0xff, 0x14, 0xe8, 0x8c],
                151_288_809_941_952_652,
            ),
            (&[0x9d, 0x7f, 0x3e, 0x7d], 494_878_333),
            (&[0x7b, 0xbd], 15_293),
            (&[0x25], 37),
        ];
        for (bytes, value) in cases {
            let mut r = Reader::new(bytes);
            assert_eq!(r.varint(), Some(value));
            assert!(r.is_empty());
        }
        assert_eq!(Reader::new(&[0x7b]).varint(), None);
    }
}
