//! Text of names and identifiers taken from the wire (TLS server names and ALPN ids,
//! certificate names, DNS names, DHCP host names): one escaping rule for every record.
//!
//! Invariants: nothing is dropped and the escaping can be undone unambiguously; the
//! output is valid UTF-8 that a terminal or a SIEM shows without surprises (no control
//! characters, no invisible direction or zero-width characters).

use std::fmt::Write as _;

/// Appends `bytes` to `out` as text: valid UTF-8 is kept, except control characters,
/// invisible direction/zero-width characters, `\` and the characters in `extra`, which
/// are written byte by byte as `\xNN`, like every byte of invalid UTF-8. Nothing is
/// dropped, and the escaping can be undone unambiguously.
pub fn escape_into(bytes: &[u8], extra: &[char], out: &mut String) {
    let plain =
        |b: &u8| (0x20..0x7F).contains(b) && *b != b'\\' && !extra.contains(&char::from(*b));
    if bytes.iter().all(plain) {
        if let Ok(text) = std::str::from_utf8(bytes) {
            out.push_str(text);
            return;
        }
    }
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            let invisible = matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{FEFF}');
            if c.is_control() || invisible || c == '\\' || extra.contains(&c) {
                let mut buf = [0u8; 4];
                for b in c.encode_utf8(&mut buf).bytes() {
                    let _ = write!(out, "\\x{b:02x}");
                }
            } else {
                out.push(c);
            }
        }
        for b in chunk.invalid() {
            let _ = write!(out, "\\x{b:02x}");
        }
    }
}

/// [`escape_into`] with no extra characters, as a new string.
pub fn escape_name(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    escape_into(bytes, &[], &mut out);
    out
}

/// `n` in decimal ASCII digits, written into `buf` (no allocation, no `fmt`).
pub fn decimal(n: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut n = n;
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    &buf[i..]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_names_pass_and_the_rest_is_hex() {
        assert_eq!(escape_name(b"example.com"), "example.com");
        assert_eq!(escape_name(b"a\xffb\x01"), "a\\xffb\\x01");
        assert_eq!(escape_name("\u{e9}.fr".as_bytes()), "\u{e9}.fr");
        assert_eq!(escape_name(b"a\\b"), "a\\x5cb");
        assert_eq!(escape_name("a\u{202E}b".as_bytes()), "a\\xe2\\x80\\xaeb");
        let mut out = String::new();
        escape_into(b"a.b", &['.'], &mut out);
        assert_eq!(out, "a\\x2eb");
    }
}
