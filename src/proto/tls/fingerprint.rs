//! TLS fingerprints: JA3, JA3S (Salesforce, BSD-3) and JA4 (FoxIO, BSD-3), plus the
//! small helpers they share (GREASE test, text escaping).
//!
//! Invariants: fingerprints are computed from the parsed codepoints only; GREASE
//! values (RFC 8701: both bytes equal, low nibble 0xa) are removed from every list;
//! JA4 follows the FoxIO specification text (technical_details/JA4.md), including
//! where reference implementations differ from it (empty extension hash, no
//! trailing `_` without signature algorithms, hex rule for non-alphanumeric ALPN).

use md5::{Digest as _, Md5};
use sha2::Sha256;

use super::Transport;

/// Maximum count written in the two-digit JA4 cipher and extension counts.
pub const JA4_MAX_COUNT: usize = 99;

/// JA4 hash of an empty list (spec: make "no values" visible instead of hashing "").
const JA4_EMPTY_HASH: &str = "000000000000";

/// True for the RFC 8701 GREASE values 0x0a0a, 0x1a1a, ..., 0xfafa.
pub fn is_grease(v: u16) -> bool {
    v & 0x0f0f == 0x0a0a && (v >> 8) == (v & 0xff)
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        s.push(hex_digit(b >> 4));
        s.push(hex_digit(b & 15));
    }
    s
}

/// The lower-case hex digit of a nibble (fingerprints format hundreds per hello).
fn hex_digit(n: u8) -> char {
    char::from(b"0123456789abcdef"[usize::from(n & 15)])
}

/// Appends `n` in decimal (a JA3 string holds about a hundred numbers).
fn push_decimal(s: &mut String, n: u32) {
    let mut buf = [0u8; 20];
    for &d in crate::proto::text::decimal(n.into(), &mut buf) {
        s.push(char::from(d));
    }
}

/// Appends the values in decimal, joined by `-` (GREASE values left out if asked).
fn push_decimals<T: Into<u32> + Copy>(s: &mut String, values: &[T], skip_grease: bool) {
    let mut first = true;
    for v in values {
        let n: u32 = (*v).into();
        if skip_grease && u16::try_from(n).is_ok_and(is_grease) {
            continue;
        }
        if !first {
            s.push('-');
        }
        first = false;
        push_decimal(s, n);
    }
}

/// JA3 string: `SSLVersion,Ciphers,Extensions,EllipticCurves,EcPointFormats`.
pub fn ja3_string(
    legacy_version: u16,
    ciphers: &[u16],
    extensions: &[u16],
    groups: &[u16],
    point_formats: &[u8],
) -> String {
    let mut s = String::with_capacity(
        6 * (1 + ciphers.len() + extensions.len() + groups.len()) + 2 * point_formats.len(),
    );
    push_decimal(&mut s, legacy_version.into());
    s.push(',');
    push_decimals(&mut s, ciphers, true);
    s.push(',');
    push_decimals(&mut s, extensions, true);
    s.push(',');
    push_decimals(&mut s, groups, true);
    s.push(',');
    push_decimals(&mut s, point_formats, false);
    s
}

/// JA3S string: `SSLVersion,Cipher,Extensions`.
pub fn ja3s_string(legacy_version: u16, cipher: u16, extensions: &[u16]) -> String {
    let mut s = String::with_capacity(12 + 6 * extensions.len());
    push_decimal(&mut s, legacy_version.into());
    s.push(',');
    push_decimal(&mut s, cipher.into());
    s.push(',');
    push_decimals(&mut s, extensions, true);
    s
}

/// MD5 of a JA3/JA3S string, lower-case hex.
pub fn md5_hex(s: &str) -> String {
    hex(&Md5::digest(s.as_bytes()))
}

/// The inputs of JA4 taken from one ClientHello.
pub struct Ja4Input<'a> {
    pub transport: Transport,
    pub legacy_version: u16,
    pub supported_versions: &'a [u16],
    pub ciphers: &'a [u16],
    pub extensions: &'a [u16],
    pub first_alpn: Option<&'a [u8]>,
    pub sig_algs: &'a [u16],
}

/// JA4 and its raw (sorted, unhashed) form `JA4_r`.
pub fn ja4(input: &Ja4Input<'_>) -> (String, String) {
    let proto = match input.transport {
        Transport::Tcp => 't',
        Transport::Quic => 'q',
        Transport::Dtls => 'd',
    };
    let version = ja4_version(input);
    let sni = if input.extensions.contains(&0x0000) {
        'd'
    } else {
        'i'
    };
    let mut ciphers: Vec<u16> = input
        .ciphers
        .iter()
        .copied()
        .filter(|c| !is_grease(*c))
        .collect();
    let exts: Vec<u16> = input
        .extensions
        .iter()
        .copied()
        .filter(|e| !is_grease(*e))
        .collect();
    let (a1, a2) = alpn_chars(input.first_alpn);
    let prefix = format!(
        "{proto}{version}{sni}{:02}{:02}{a1}{a2}",
        ciphers.len().min(JA4_MAX_COUNT),
        exts.len().min(JA4_MAX_COUNT)
    );
    ciphers.sort_unstable();
    let mut sorted_exts: Vec<u16> = exts
        .into_iter()
        .filter(|e| *e != 0x0000 && *e != 0x0010)
        .collect();
    sorted_exts.sort_unstable();
    let cipher_list = hex_list(&ciphers);
    let ext_list = hex_list(&sorted_exts);
    let sigs: Vec<u16> = input
        .sig_algs
        .iter()
        .copied()
        .filter(|s| !is_grease(*s))
        .collect();
    let sig_list = hex_list(&sigs);
    let ext_part = if sig_list.is_empty() {
        ext_list.clone()
    } else {
        format!("{ext_list}_{sig_list}")
    };
    let cipher_hash = if ciphers.is_empty() {
        JA4_EMPTY_HASH.to_string()
    } else {
        sha256_12(&cipher_list)
    };
    let ext_hash = if sorted_exts.is_empty() {
        JA4_EMPTY_HASH.to_string()
    } else {
        sha256_12(&ext_part)
    };
    let ja4 = format!("{prefix}_{cipher_hash}_{ext_hash}");
    let ja4_r = format!("{prefix}_{cipher_list}_{ext_part}");
    (ja4, ja4_r)
}

/// JA4 version: the highest non-GREASE supported_versions entry, else the legacy
/// version. "Highest" is by protocol order among recognised versions: those JA4
/// names, and TLS 1.3 drafts 16–28 (0x7f10..=0x7f1c, ranked highest, named "00" as
/// the spec's "unknown"). Other values (earlier drafts, 0x7eNN and 0xfbNN vendor
/// experiments) are passed over; this reproduces the reference output on the corpus
/// (Chrome's 0x7e01 or draft 14 beside 0x0303 gives "12", draft 28 gives "00"). DTLS numbers count down (0xfeff = 1.0,
/// 0xfefd = 1.2, 0xfefc = 1.3) and are compared by protocol order too.
fn ja4_version(input: &Ja4Input<'_>) -> &'static str {
    let mut offered = input
        .supported_versions
        .iter()
        .copied()
        .filter(|v| !is_grease(*v))
        .peekable();
    if offered.peek().is_none() {
        return ja4_version_name(input.legacy_version).map_or("00", |(_, n)| n);
    }
    offered
        .filter_map(ja4_version_name)
        .max_by_key(|(rank, _)| *rank)
        .map_or("00", |(_, n)| n)
}

/// JA4's two-character name of a version, with its rank in protocol order.
fn ja4_version_name(v: u16) -> Option<(u8, &'static str)> {
    Some(match v {
        0x0002 => (0, "s2"),
        0x0300 => (1, "s3"),
        0x0301 => (2, "10"),
        0x0302 => (3, "11"),
        0x0303 => (4, "12"),
        0x0304 => (5, "13"),
        0xfeff => (2, "d1"),
        0xfefd => (4, "d2"),
        0xfefc => (5, "d3"),
        0x7f10..=0x7f1c => (6, "00"),
        _ => return None,
    })
}

/// First and last characters of the first ALPN value, or the first and last hex
/// digits of its hex form when its first or last byte is not ASCII alphanumeric.
fn alpn_chars(first: Option<&[u8]>) -> (char, char) {
    let Some(value) = first else {
        return ('0', '0');
    };
    let (Some(&f), Some(&l)) = (value.first(), value.last()) else {
        return ('0', '0');
    };
    if f.is_ascii_alphanumeric() && l.is_ascii_alphanumeric() {
        (char::from(f), char::from(l))
    } else {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let hi = DIGITS.get(usize::from(f >> 4)).copied().unwrap_or(b'0');
        let lo = DIGITS.get(usize::from(l & 0x0f)).copied().unwrap_or(b'0');
        (char::from(hi), char::from(lo))
    }
}

fn hex_list(values: &[u16]) -> String {
    let mut s = String::with_capacity(values.len() * 5);
    for v in values {
        if !s.is_empty() {
            s.push(',');
        }
        for shift in [12, 8, 4, 0] {
            s.push(hex_digit((v >> shift) as u8));
        }
    }
    s
}

fn sha256_12(s: &str) -> String {
    let digest = Sha256::digest(s.as_bytes());
    hex(digest.get(..6).unwrap_or(&[]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec_input<'a>(exts: &'a [u16], sigs: &'a [u16]) -> Ja4Input<'a> {
        Ja4Input {
            transport: Transport::Tcp,
            legacy_version: 0x0303,
            supported_versions: &[0x0304, 0x0303],
            ciphers: &[
                0x1301, 0x1302, 0x1303, 0xc02b, 0xc02f, 0xc02c, 0xc030, 0xcca9, 0xcca8, 0xc013,
                0xc014, 0x009c, 0x009d, 0x002f, 0x0035,
            ],
            extensions: exts,
            first_alpn: Some(b"h2"),
            sig_algs: sigs,
        }
    }

    const SPEC_EXTS: &[u16] = &[
        0x001b, 0x0000, 0x0033, 0x0010, 0x4469, 0x0017, 0x002d, 0x000d, 0x0005, 0x0023, 0x0012,
        0x002b, 0xff01, 0x000b, 0x000a, 0x0015,
    ];
    const SPEC_SIGS: &[u16] = &[
        0x0403, 0x0804, 0x0401, 0x0503, 0x0805, 0x0501, 0x0806, 0x0601,
    ];

    #[test]
    fn ja4_spec_example() {
        let (fp, raw) = ja4(&spec_input(SPEC_EXTS, SPEC_SIGS));
        assert_eq!(fp, "t13d1516h2_8daaf6152771_e5627efa2ab1");
        assert_eq!(
            raw,
            "t13d1516h2_002f,0035,009c,009d,1301,1302,1303,c013,c014,c02b,c02c,c02f,c030,\
             cca8,cca9_0005,000a,000b,000d,0012,0015,0017,001b,0023,002b,002d,0033,4469,\
             ff01_0403,0804,0401,0503,0805,0501,0806,0601"
        );
    }

    #[test]
    fn ja4_no_sig_algs_has_no_trailing_underscore() {
        let (fp, raw) = ja4(&spec_input(SPEC_EXTS, &[]));
        assert!(fp.ends_with("_6d807ffa2a79"), "{fp}");
        assert!(raw.ends_with("4469,ff01"));
    }

    #[test]
    fn ja4_empty_extensions_after_sni_alpn() {
        let (fp, _) = ja4(&spec_input(&[0x0000, 0x0010], &[]));
        assert!(fp.starts_with("t13d1502h2_"), "{fp}");
        assert!(fp.ends_with("_000000000000"));
        let mut no_ciphers = spec_input(&[], &[]);
        no_ciphers.ciphers = &[];
        no_ciphers.first_alpn = None;
        assert_eq!(ja4(&no_ciphers).0, "t13i000000_000000000000_000000000000");
    }

    #[test]
    fn ja4_grease_ignored_everywhere() {
        let mut exts = vec![0x0a0a];
        exts.extend_from_slice(SPEC_EXTS);
        exts.push(0xfafa);
        let mut sigs = vec![0x1a1a];
        sigs.extend_from_slice(SPEC_SIGS);
        let mut input = spec_input(&exts, &sigs);
        let ciphers = [
            0x2a2a, 0x1301, 0x1302, 0x1303, 0xc02b, 0xc02f, 0xc02c, 0xc030, 0xcca9, 0xcca8, 0xc013,
            0xc014, 0x009c, 0x009d, 0x002f, 0x0035,
        ];
        input.ciphers = &ciphers;
        input.supported_versions = &[0x3a3a, 0x0304, 0x0303];
        assert_eq!(ja4(&input).0, "t13d1516h2_8daaf6152771_e5627efa2ab1");
        assert!(is_grease(0xdada) && !is_grease(0x0a1a) && !is_grease(0x1301));
    }

    #[test]
    fn ja4_alpn_rules() {
        assert_eq!(alpn_chars(Some(b"http/1.1")), ('h', '1'));
        assert_eq!(alpn_chars(Some(b"h")), ('h', 'h'));
        assert_eq!(alpn_chars(Some(b"")), ('0', '0'));
        assert_eq!(alpn_chars(None), ('0', '0'));
        assert_eq!(alpn_chars(Some(&[0xab])), ('a', 'b'));
        assert_eq!(alpn_chars(Some(&[0xba, 0xad])), ('b', 'd'));
        assert_eq!(alpn_chars(Some(&[0xab, 0xcd])), ('a', 'd'));
        assert_eq!(alpn_chars(Some(&[0x30, 0xab])), ('3', 'b'));
        assert_eq!(alpn_chars(Some(&[0x30, 0x31, 0xab, 0xcd])), ('3', 'd'));
        assert_eq!(alpn_chars(Some(&[0x30, 0xab, 0xcd, 0x31])), ('0', '1'));
    }

    #[test]
    fn ja4_transport_and_versions() {
        let mut input = spec_input(SPEC_EXTS, SPEC_SIGS);
        input.transport = Transport::Quic;
        assert!(ja4(&input).0.starts_with("q13d"));
        input.transport = Transport::Dtls;
        input.supported_versions = &[0xfefc, 0xfefd];
        assert!(ja4(&input).0.starts_with("dd3d"));
        input.supported_versions = &[];
        input.legacy_version = 0xfefd;
        assert!(ja4(&input).0.starts_with("dd2d"));
        input.legacy_version = 0x0100;
        assert!(ja4(&input).0.starts_with("d00d"));
        input.transport = Transport::Tcp;
        input.supported_versions = &[0x7a7a, 0x7e01, 0x0303, 0x0302];
        assert!(ja4(&input).0.starts_with("t12d"));
        input.supported_versions = &[0x0304, 0xfb1a];
        assert!(ja4(&input).0.starts_with("t13d"));
        input.supported_versions = &[0x7f1c, 0x0303];
        assert!(ja4(&input).0.starts_with("t00d"));
        input.supported_versions = &[0x7f0e, 0x0303];
        assert!(ja4(&input).0.starts_with("t12d"));
    }

    #[test]
    fn ja4_counts_capped() {
        let many: Vec<u16> = (1..=150).collect();
        let mut input = spec_input(&many, &[]);
        input.ciphers = &many;
        assert!(ja4(&input).0.starts_with("t13i9999h2_"));
    }

    #[test]
    fn ja3_drops_grease() {
        let s = ja3_string(
            0x0303,
            &[0x0a0a, 0xc02b, 0x002f],
            &[0x1a1a, 0x0000, 0x000a, 0x000b],
            &[0x2a2a, 0x001d, 0x0017],
            &[0],
        );
        assert_eq!(s, "771,49195-47,0-10-11,29-23,0");
        assert_eq!(md5_hex(""), "d41d8cd98f00b204e9800998ecf8427e");
        assert_eq!(
            ja3s_string(771, 0x1301, &[0x002b, 0x0033]),
            "771,4865,43-51"
        );
    }

    #[test]
    fn escaping_keeps_everything() {}
}
