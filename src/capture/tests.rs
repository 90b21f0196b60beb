//! Tests of the capture reader: files built in code for each format variant, and a walk
//! over the shared corpus compared with capinfos' frame counts.

use super::*;

/// Appends integers to a test file in one byte order.
struct Writer {
    big: bool,
    out: Vec<u8>,
}

impl Writer {
    fn new(big: bool) -> Self {
        Writer {
            big,
            out: Vec::new(),
        }
    }
    /// Appends a value given in both byte orders, keeping the writer's.
    fn put<const N: usize>(&mut self, be: [u8; N], le: [u8; N]) -> &mut Self {
        self.out.extend(if self.big { be } else { le });
        self
    }
    fn u16(&mut self, v: u16) -> &mut Self {
        self.put(v.to_be_bytes(), v.to_le_bytes())
    }
    fn u32(&mut self, v: u32) -> &mut Self {
        self.put(v.to_be_bytes(), v.to_le_bytes())
    }
    fn i64(&mut self, v: i64) -> &mut Self {
        self.put(v.to_be_bytes(), v.to_le_bytes())
    }
    fn bytes(&mut self, b: &[u8]) -> &mut Self {
        self.out.extend(b);
        self
    }
}

/// Builds a classic pcap file with the given magic written in the given byte order.
fn pcap_file(magic: u32, big: bool, linktype: u32, records: &[(u32, u32, &[u8], u32)]) -> Vec<u8> {
    let mut f = Writer::new(big);
    f.u32(magic)
        .u16(2)
        .u16(4)
        .u32(0)
        .u32(0)
        .u32(65535)
        .u32(linktype);
    for (secs, frac, data, orig) in records {
        f.u32(*secs).u32(*frac).u32(data.len() as u32).u32(*orig);
        if magic == 0xa1b2_cd34 {
            f.bytes(&[0u8; 8]);
        }
        f.bytes(data);
    }
    f.out
}

/// Builds one pcapng block (type, body padded to 4) in the given byte order.
fn block(big: bool, block_type: u32, body: &[u8]) -> Vec<u8> {
    let padded = body.len().div_ceil(4) * 4;
    let len = (padded + 12) as u32;
    let mut b = Writer::new(big);
    b.u32(block_type).u32(len).bytes(body);
    b.out.resize(8 + padded, 0);
    b.u32(len);
    b.out
}

fn shb(big: bool) -> Vec<u8> {
    let mut body = Writer::new(big);
    body.u32(0x1a2b_3c4d).u16(1).u16(0).bytes(&[0xff; 8]);
    block(big, 0x0a0d_0d0a, &body.out)
}

/// An IDB with optional if_tsresol and if_tsoffset options.
fn idb(big: bool, linktype: u16, tsresol: Option<u8>, tsoffset: Option<i64>) -> Vec<u8> {
    let mut body = Writer::new(big);
    body.u16(linktype).u16(0).u32(262_144);
    if let Some(r) = tsresol {
        body.u16(9).u16(1).bytes(&[r, 0, 0, 0]);
    }
    if let Some(o) = tsoffset {
        body.u16(14).u16(8).i64(o);
    }
    body.bytes(&[0u8; 4]);
    block(big, 1, &body.out)
}

fn epb(big: bool, iface: u32, units: u64, data: &[u8], orig: u32) -> Vec<u8> {
    let mut body = Writer::new(big);
    body.u32(iface)
        .u32((units >> 32) as u32)
        .u32(units as u32)
        .u32(data.len() as u32)
        .u32(orig)
        .bytes(data);
    block(big, 6, &body.out)
}

/// Frames as owned tuples (ts, linktype, interface, data, orig_len).
type Frames = Vec<(Timestamp, LinkType, u32, Vec<u8>, u32)>;

fn read_all(bytes: &[u8]) -> (Frames, Option<CaptureError>, CaptureStats) {
    let mut r = CaptureReader::new(bytes).expect("header");
    let mut out = Vec::new();
    let err = loop {
        match r.next_frame() {
            Ok(Some(f)) => out.push((f.ts, f.linktype, f.interface, f.data.to_vec(), f.orig_len)),
            Ok(None) => break None,
            Err(e) => break Some(e),
        }
    };
    assert!(matches!(r.next_frame(), Ok(None)), "errors are terminal");
    (out, err, r.stats().clone())
}

#[test]
fn classic_pcap_all_magics() {
    for (magic, nanos) in [
        (0xa1b2_c3d4u32, false),
        (0xa1b2_3c4d, true),
        (0xa1b2_cd34, false),
    ] {
        for big in [false, true] {
            let file = pcap_file(magic, big, 1, &[(1_000, 7, b"abc", 60), (999, 0, b"", 0)]);
            let (frames, err, stats) = read_all(&file);
            assert!(err.is_none(), "{magic:x} {big}");
            assert_eq!(frames.len(), 2);
            let (ts, lt, iface, data, orig) = &frames[0];
            let frac = if nanos { 7 } else { 7_000 };
            assert_eq!(*ts, Timestamp::from_parts(1_000, frac));
            assert_eq!(
                (*lt, *iface, data.as_slice(), *orig),
                (LinkType::ETHERNET, 0, &b"abc"[..], 60)
            );
            assert_eq!(stats.ts_backwards, 1);
            assert_eq!(stats.frames, 2);
            assert_eq!(stats.bytes_consumed, file.len() as u64);
        }
    }
    let file = pcap_file(0xa1b2_3c4d, false, 101, &[]);
    let r = CaptureReader::new(&file[..]).unwrap();
    assert_eq!(r.format(), CaptureFormat::PcapNano);
}

#[test]
fn classic_pcap_anomalies_are_counted() {
    // caplen 3 > orig_len 1; FCS bits above the link type are ignored.
    let file = pcap_file(0xa1b2_c3d4, false, (1 << 28) | 1, &[(1, 0, b"abc", 1)]);
    let (frames, err, stats) = read_all(&file);
    assert!(err.is_none());
    assert_eq!(frames[0].1, LinkType::ETHERNET);
    assert_eq!(stats.caplen_over_orig_len, 1);
}

#[test]
fn truncation_returns_frames_then_one_error() {
    let file = pcap_file(
        0xa1b2_c3d4,
        false,
        1,
        &[(1, 0, b"abcd", 4), (2, 0, b"efgh", 4)],
    );
    let cut = &file[..file.len() - 2];
    let (frames, err, _) = read_all(cut);
    assert_eq!(frames.len(), 1);
    match err {
        Some(CaptureError::Truncated { offset }) => assert_eq!(offset, 24 + 16 + 4),
        other => panic!("{other:?}"),
    }
    // Cut inside the record header too.
    let (frames, err, _) = read_all(&file[..24 + 20 + 5]);
    assert_eq!(frames.len(), 1);
    assert!(matches!(err, Some(CaptureError::Truncated { .. })));
    // A file shorter than the global header.
    assert!(matches!(
        CaptureReader::new(&file[..10]),
        Err(CaptureError::Truncated { offset: 0 })
    ));
}

#[test]
fn header_errors_are_clear() {
    let empty: &[u8] = &[];
    let e = CaptureReader::new(empty).err().unwrap();
    assert_eq!(e.to_string(), "empty file, not a pcap");
    let e = CaptureReader::new(&b"\x1f\x8b\x08\x00hello world"[..])
        .err()
        .unwrap();
    assert_eq!(
        e.to_string(),
        "not a pcap or pcapng file (first bytes: 1f 8b 08 00 68 65 6c 6c)"
    );
    let e = CaptureReader::new(&b"ab"[..]).err().unwrap();
    assert!(e.to_string().contains("61 62"));
    let e = open_path(Path::new("/nonexistent/x.pcap")).err().unwrap();
    assert!(e
        .to_string()
        .starts_with("cannot open /nonexistent/x.pcap: "));
}

#[test]
fn oversized_records_are_rejected_not_allocated() {
    let mut file = pcap_file(0xa1b2_c3d4, false, 1, &[]);
    file.extend(1u32.to_le_bytes());
    file.extend(0u32.to_le_bytes());
    file.extend(u32::MAX.to_le_bytes());
    file.extend(u32::MAX.to_le_bytes());
    let (_, err, _) = read_all(&file);
    assert!(matches!(
        err,
        Some(CaptureError::BlockTooLarge { offset: 24, .. })
    ));
}

#[test]
fn frames_larger_than_the_initial_buffer_grow_it() {
    let big = vec![0x55u8; INITIAL_BUFFER_SIZE + 123];
    let file = pcap_file(
        0xa1b2_c3d4,
        false,
        1,
        &[(1, 0, b"x", 1), (2, 0, &big, 9), (3, 0, b"y", 1)],
    );
    let (frames, err, _) = read_all(&file);
    assert!(err.is_none());
    assert_eq!(frames.len(), 3);
    assert_eq!(frames[1].3.len(), big.len());
    assert_eq!(frames[2].3, b"y");
}

/// A reader that returns at most 7 bytes per call, to exercise refills and compaction.
struct Trickle<'a>(&'a [u8]);

impl Read for Trickle<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = buf.len().min(7).min(self.0.len());
        buf[..n].copy_from_slice(&self.0[..n]);
        self.0 = &self.0[n..];
        Ok(n)
    }
}

#[test]
fn pcapng_two_link_types_sections_and_byte_orders() {
    let mut file = shb(false);
    file.extend(idb(false, 1, None, None));
    file.extend(idb(false, 101, Some(9), Some(10)));
    file.extend(block(false, 4, &[0; 4])); // NRB, skipped
    file.extend(epb(false, 0, 1_500_000, b"eth", 3));
    file.extend(epb(false, 1, 5, b"raw", 3));
    file.extend(epb(false, 2, 5, b"nope", 4)); // no such interface
                                               // Second section, big endian, power-of-2 resolution, an SPB and an obsolete PB.
    file.extend(shb(true));
    file.extend(idb(true, 113, Some(0x80 | 10), None));
    let mut pb = Vec::new();
    pb.extend(0u16.to_be_bytes());
    pb.extend(0u16.to_be_bytes());
    pb.extend(0u32.to_be_bytes());
    pb.extend(2048u32.to_be_bytes());
    pb.extend(2u32.to_be_bytes());
    pb.extend(2u32.to_be_bytes());
    pb.extend(b"pb");
    file.extend(block(true, 2, &pb));
    let mut spb = 5u32.to_be_bytes().to_vec();
    spb.extend(b"simpl");
    file.extend(block(true, 3, &spb));
    file.extend(block(true, 5, &[0; 8])); // ISB
    file.extend(block(true, 0x0bad, &[0; 4]));
    file.extend(block(true, 0x0a, &[0; 8]));
    file.extend(block(true, 0x1234, &[]));

    for bytes in [read_all(&file), {
        let mut r = CaptureReader::new(Trickle(&file)).unwrap();
        let mut out = Vec::new();
        while let Some(f) = r.next_frame().unwrap() {
            out.push((f.ts, f.linktype, f.interface, f.data.to_vec(), f.orig_len));
        }
        (out, None, r.stats().clone())
    }] {
        let (frames, err, stats) = bytes;
        assert!(err.is_none());
        let summary: Vec<_> = frames
            .iter()
            .map(|f| (f.0, f.1, f.2, f.3.as_slice()))
            .collect();
        assert_eq!(
            summary,
            vec![
                (Timestamp(1_500_000_000), LinkType::ETHERNET, 0, &b"eth"[..]),
                (Timestamp(10_000_000_005), LinkType::RAW, 1, &b"raw"[..]),
                (Timestamp(2_000_000_000), LinkType::LINUX_SLL, 0, &b"pb"[..]),
                (
                    Timestamp(2_000_000_000),
                    LinkType::LINUX_SLL,
                    0,
                    &b"simpl"[..]
                ),
            ]
        );
        assert_eq!(stats.sections, 2);
        assert_eq!(stats.interfaces, 3);
        assert_eq!(stats.unknown_interface, 1);
        assert_eq!(
            stats.skipped_blocks,
            SkippedBlocks {
                name_resolution: 1,
                interface_statistics: 1,
                decryption_secrets: 1,
                custom: 1,
                other: 1
            }
        );
        assert_eq!(stats.bytes_consumed, file.len() as u64);
    }
}

#[test]
fn pcapng_corruption() {
    let mut file = shb(false);
    file.extend(idb(false, 1, None, None));
    // EPB claiming more captured bytes than it holds: clamped and counted.
    let mut e = epb(false, 0, 1, b"abcd", 4);
    e[20..24].copy_from_slice(&1000u32.to_le_bytes());
    file.extend(e);
    let (frames, err, stats) = read_all(&file);
    assert!(err.is_none());
    assert_eq!(frames[0].3, b"abcd");
    assert_eq!(stats.malformed_blocks, 1);

    // A block length that is not a multiple of 4 is fatal.
    let mut bad = file.clone();
    bad.extend(7u32.to_le_bytes());
    bad.extend(13u32.to_le_bytes());
    bad.extend([0u8; 8]);
    let (frames, err, _) = read_all(&bad);
    assert_eq!(frames.len(), 1);
    assert!(matches!(err, Some(CaptureError::BadBlock { .. })));

    // Truncated inside a block.
    let (frames, err, _) = read_all(&file[..file.len() - 3]);
    assert!(frames.is_empty());
    assert!(matches!(err, Some(CaptureError::Truncated { .. })));

    // A pcapng whose first block is not a section header.
    let mut not_first = shb(false);
    not_first[8..12].copy_from_slice(&[1, 2, 3, 4]);
    let mut r = CaptureReader::new(&not_first[..]).unwrap();
    assert!(matches!(
        r.next_frame(),
        Err(CaptureError::BadBlock { offset: 0, .. })
    ));
}

/// Files of the shared corpus (absent on machines without it).
fn corpus_files() -> Vec<PathBuf> {
    let root = Path::new("/work/shared/corpus");
    let Ok(tsv) = std::fs::read_to_string(root.join("PROVENANCE.tsv")) else {
        return Vec::new();
    };
    tsv.lines()
        .skip(1)
        .filter_map(|l| l.split('\t').next())
        .map(|f| root.join(f))
        .collect()
}

/// capinfos' frame count, if capinfos is installed.
fn capinfos_count(path: &Path) -> Option<u64> {
    let out = std::process::Command::new("capinfos")
        .args(["-c", "-M", "-T", "-r"])
        .arg(path)
        .output()
        .ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    text.lines().next()?.split('\t').nth(1)?.trim().parse().ok()
}

#[test]
fn corpus_reads_to_the_end_with_capinfos_counts() {
    let files = corpus_files();
    let (mut total, mut compared) = (0u64, 0);
    for path in &files {
        let mut r = open_path(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let mut n = 0u64;
        loop {
            match r.next_frame() {
                Ok(Some(_)) => n += 1,
                Ok(None) => break,
                Err(e) => panic!("{}: {e}", path.display()),
            }
        }
        assert_eq!(r.stats().bytes_consumed, r.stats().file_size.unwrap());
        if let Some(expected) = capinfos_count(path) {
            assert_eq!(n, expected, "{}", path.display());
            compared += 1;
        }
        total += n;
    }
    eprintln!(
        "corpus: {} files, {total} frames, {compared} compared with capinfos",
        files.len()
    );
}
