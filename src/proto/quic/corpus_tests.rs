//! Corpus test: opens the client and server Initials of every QUIC capture in
//! /work/shared/corpus, reassembles each direction's CRYPTO stream by offset
//! and checks for a complete ClientHello (carrying the expected SNI) and
//! ServerHello. Skips itself when the corpus is absent.
//!
//! The pcap/pcapng reader and the link/IP/UDP decoding here are throwaway
//! test helpers (Ethernet with VLAN tags, NULL, PPP, raw IP, SLL, SLL2; no IP
//! reassembly), not the sensor's `capture`/`decode` stages.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::path::Path;

use super::*;

const CORPUS: &str = "/work/shared/corpus";

type Endpoint = (IpAddr, u16);

fn u16_be(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_with(b: &[u8], at: usize, le: bool) -> Option<u32> {
    let raw: [u8; 4] = b.get(at..at + 4)?.try_into().ok()?;
    Some(if le {
        u32::from_le_bytes(raw)
    } else {
        u32::from_be_bytes(raw)
    })
}

/// (link type, frame) for every packet of a pcap or pcapng file.
fn read_capture(file: &[u8]) -> Vec<(u32, &[u8])> {
    let mut frames = Vec::new();
    let Some(magic) = u32_with(file, 0, true) else {
        return frames;
    };
    if magic == 0x0a0d_0d0a {
        // pcapng: section header, interface descriptions, (enhanced/simple) packets.
        let (mut pos, mut le, mut links) = (0, true, Vec::new());
        while let Some(kind) = u32_with(file, pos, le) {
            if kind == 0x0a0d_0d0a {
                le = u32_with(file, pos + 8, true) == Some(0x1a2b_3c4d);
                links.clear();
            }
            let Some(len) = u32_with(file, pos, le).and(u32_with(file, pos + 4, le)) else {
                break;
            };
            let len = len as usize;
            if len < 12 {
                break;
            }
            let block = file.get(pos..pos + len).unwrap_or_default();
            match kind {
                1 => links.push(u32::from(u16_with(block, 8, le).unwrap_or(0))),
                6 => {
                    let iface = u32_with(block, 8, le).unwrap_or(0) as usize;
                    let cap = u32_with(block, 20, le).unwrap_or(0) as usize;
                    if let (Some(&link), Some(data)) = (links.get(iface), block.get(28..28 + cap)) {
                        frames.push((link, data));
                    }
                }
                3 => {
                    if let (Some(&link), Some(data)) = (links.first(), block.get(12..len - 4)) {
                        frames.push((link, data));
                    }
                }
                _ => {}
            }
            pos += len;
        }
        return frames;
    }
    let le = matches!(magic, 0xa1b2_c3d4 | 0xa1b2_3c4d);
    let Some(link) = u32_with(file, 20, le) else {
        return frames;
    };
    let mut pos = 24;
    while let Some(cap) = u32_with(file, pos + 8, le) {
        let Some(data) = file.get(pos + 16..pos + 16 + cap as usize) else {
            break;
        };
        frames.push((link & 0xffff, data));
        pos += 16 + cap as usize;
    }
    frames
}

fn u16_with(b: &[u8], at: usize, le: bool) -> Option<u16> {
    let raw: [u8; 2] = b.get(at..at + 2)?.try_into().ok()?;
    Some(if le {
        u16::from_le_bytes(raw)
    } else {
        u16::from_be_bytes(raw)
    })
}

/// The IP packet inside a link-layer frame.
fn ip_of(link: u32, frame: &[u8]) -> Option<&[u8]> {
    let (mut ethertype, mut at) = match link {
        0 => return frame.get(4..),                      // NULL/loopback
        101 | 228 | 229 | 12 | 14 => return Some(frame), // raw IP
        1 => (u16_be(frame, 12)?, 14),
        9 => {
            let skip = if frame.starts_with(&[0xff, 0x03]) {
                2
            } else {
                0
            };
            let proto = u16_be(frame, skip)?;
            let ethertype = match proto {
                0x0021 => 0x0800,
                0x0057 => 0x86dd,
                _ => return None,
            };
            (ethertype, skip + 2)
        }
        113 => (u16_be(frame, 14)?, 16),
        276 => (u16_be(frame, 0)?, 20),
        _ => return None,
    };
    while matches!(ethertype, 0x8100 | 0x88a8 | 0x9100) {
        ethertype = u16_be(frame, at + 2)?;
        at += 4;
    }
    matches!(ethertype, 0x0800 | 0x86dd)
        .then(|| frame.get(at..))
        .flatten()
}

/// (source, destination, UDP payload) of an unfragmented UDP packet.
fn udp_of(ip: &[u8]) -> Option<(Endpoint, Endpoint, &[u8])> {
    let (src, dst, udp) = match ip.first()? >> 4 {
        4 => {
            let ihl = usize::from(ip.first()? & 0x0f) * 4;
            let frag = u16_be(ip, 6)?;
            if *ip.get(9)? != 17 || frag & 0x3fff != 0 {
                return None;
            }
            let total = usize::from(u16_be(ip, 2)?).min(ip.len());
            let src: [u8; 4] = ip.get(12..16)?.try_into().ok()?;
            let dst: [u8; 4] = ip.get(16..20)?.try_into().ok()?;
            (IpAddr::from(src), IpAddr::from(dst), ip.get(ihl..total)?)
        }
        6 => {
            let (mut next, mut at) = (*ip.get(6)?, 40);
            while matches!(next, 0 | 43 | 60) {
                next = *ip.get(at)?;
                at += (usize::from(*ip.get(at + 1)?) + 1) * 8;
            }
            if next != 17 {
                return None;
            }
            let src: [u8; 16] = ip.get(8..24)?.try_into().ok()?;
            let dst: [u8; 16] = ip.get(24..40)?.try_into().ok()?;
            (IpAddr::from(src), IpAddr::from(dst), ip.get(at..)?)
        }
        _ => return None,
    };
    let len = usize::from(u16_be(udp, 4)?).min(udp.len());
    Some((
        (src, u16_be(udp, 0)?),
        (dst, u16_be(udp, 2)?),
        udp.get(8..len)?,
    ))
}

/// Per-connection state, as the flow stage would keep it.
struct Flow {
    client: Endpoint,
    server: Endpoint,
    /// DCID of the client's first Initial (or first Initial after a Retry).
    dcid: Vec<u8>,
    /// A client accepts one Retry per connection (RFC 9000 section 17.2.5.2).
    retried: bool,
    keys: HashMap<QuicVersion, InitialKeys>,
    version: QuicVersion,
    client_frames: Vec<CryptoFrame>,
    server_frames: Vec<CryptoFrame>,
    errors: BTreeMap<&'static str, u32>,
}

impl Flow {
    fn new(client: Endpoint, server: Endpoint, header: &LongHeader<'_>) -> Self {
        Self {
            client,
            server,
            dcid: header.dcid.to_vec(),
            retried: false,
            keys: HashMap::new(),
            version: header.version,
            client_frames: Vec::new(),
            server_frames: Vec::new(),
            errors: BTreeMap::new(),
        }
    }

    fn open(
        &mut self,
        d: &[u8],
        from_client: bool,
        scratch: &mut Vec<u8>,
    ) -> Result<(), QuicError> {
        let version = match parse_long_headers(d).next() {
            Some(Ok(h)) if h.kind != PacketKind::VersionNegotiation => h.version,
            _ => return Ok(()),
        };
        let keys = match self.keys.entry(version) {
            Entry::Occupied(e) => e.into_mut(),
            Entry::Vacant(e) => e.insert(
                InitialKeys::derive(version, &self.dcid)
                    .ok_or(QuicError::UnknownVersion(version))?,
            ),
        };
        let mut out = Vec::new();
        let result = open_initials(d, keys, from_client, scratch, &mut out);
        let frames = if from_client {
            &mut self.client_frames
        } else {
            &mut self.server_frames
        };
        frames.extend(out);
        result.map(|_| ())
    }
}

/// The contiguous CRYPTO stream from offset 0 (frames sorted by offset).
fn reassemble(frames: &[CryptoFrame]) -> Vec<u8> {
    let mut sorted: Vec<&CryptoFrame> = frames.iter().collect();
    sorted.sort_by_key(|f| f.offset);
    let mut stream = Vec::new();
    for f in sorted {
        let (start, end) = (f.offset as usize, f.offset as usize + f.data.len());
        if start > stream.len() {
            break;
        }
        if end > stream.len() {
            stream.extend_from_slice(&f.data[stream.len() - start..]);
        }
    }
    stream
}

/// True when `stream` starts with a complete handshake message of `kind`.
fn complete_message(stream: &[u8], kind: u8) -> bool {
    match stream {
        [t, a, b, c, rest @ ..] if *t == kind => {
            rest.len() >= (usize::from(*a) << 16 | usize::from(*b) << 8 | usize::from(*c))
        }
        _ => false,
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

fn run_capture(file: &[u8]) -> Vec<Flow> {
    let mut flows: Vec<Flow> = Vec::new();
    let mut by_tuple: HashMap<(Endpoint, Endpoint), usize> = HashMap::new();
    let mut scratch = Vec::new();
    for (link, frame) in read_capture(file) {
        let Some((src, dst, d)) = ip_of(link, frame).and_then(udp_of) else {
            continue;
        };
        let Some(Ok(first)) = parse_long_headers(d).next() else {
            continue;
        };
        let existing = by_tuple
            .get(&(src, dst))
            .or_else(|| by_tuple.get(&(dst, src)))
            .copied();
        let idx = match existing {
            Some(i) => i,
            None if first.kind == PacketKind::Initial && first.version.is_known() => {
                flows.push(Flow::new(src, dst, &first));
                by_tuple.insert((src, dst), flows.len() - 1);
                flows.len() - 1
            }
            None => continue,
        };
        let flow = &mut flows[idx];
        let from_client = src == flow.client;
        if !from_client && !flow.retried {
            if let Some(retry) = parse_long_headers(d)
                .flatten()
                .find(|h| h.kind == PacketKind::Retry)
            {
                // The client's next Initial uses the Retry's SCID as DCID, and
                // both directions' keys now come from it.
                flow.dcid = retry.scid.to_vec();
                flow.retried = true;
                flow.keys.clear();
                flow.client_frames.clear();
                flow.server_frames.clear();
                continue;
            }
        }
        let mut result = flow.open(d, from_client, &mut scratch);
        if result == Err(QuicError::DecryptFailed)
            && from_client
            && first.kind == PacketKind::Initial
        {
            // A new connection on the same ports (after Version Negotiation,
            // or a client restart): start over from this Initial's DCID.
            let mut fresh = Flow::new(src, dst, &first);
            if fresh.open(d, true, &mut scratch).is_ok() {
                fresh.errors = std::mem::take(&mut flow.errors);
                *flow = fresh;
                result = Ok(());
            }
        }
        if let Err(e) = result {
            *flow.errors.entry(e.reason()).or_default() += 1;
        }
        if from_client && first.kind == PacketKind::Initial {
            flow.version = first.version;
        }
    }
    flows
}

/// Expected SNI per (file, client, server) from expect.jsonl.
fn expected_sni(root: &Path) -> HashMap<(String, String), String> {
    let text = std::fs::read_to_string(root.join("expect.jsonl")).unwrap_or_default();
    let mut map = HashMap::new();
    for line in text.lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let (Some(file), Some(sni)) = (v["file"].as_str(), v["checks"]["sni"].as_str()) else {
            continue;
        };
        let f = &v["flow"];
        let key = format!(
            "{}:{}>{}:{}",
            f["client_ip"].as_str().unwrap_or(""),
            f["client_port"],
            f["server_ip"].as_str().unwrap_or(""),
            f["server_port"]
        );
        map.insert((file.to_string(), key), sni.to_string());
    }
    map
}

#[test]
fn corpus_client_and_server_hellos() {
    let root = Path::new(CORPUS);
    let Ok(provenance) = std::fs::read_to_string(root.join("PROVENANCE.tsv")) else {
        eprintln!("corpus absent: skipped");
        return;
    };
    let snis = expected_sni(root);
    let (mut flows_total, mut ch_total, mut sh_total) = (0, 0, 0);
    let (mut sni_expected, mut sni_found) = (0, 0);
    let mut server_crypto_flows = 0;
    let mut failures = Vec::new();
    for line in provenance.lines().skip(1) {
        let cols: Vec<&str> = line.split('\t').collect();
        let (Some(name), Some(features)) = (cols.first(), cols.get(4)) else {
            continue;
        };
        if !features
            .split(',')
            .any(|f| f == "quic" || f == "quic_multi_packet_clienthello")
        {
            continue;
        }
        let Ok(bytes) = std::fs::read(root.join(name)) else {
            continue;
        };
        let flows = run_capture(&bytes);
        let (mut ch, mut sh) = (0, 0);
        for flow in &flows {
            let client = reassemble(&flow.client_frames);
            let server = reassemble(&flow.server_frames);
            let has_ch = complete_message(&client, 0x01);
            ch += usize::from(has_ch);
            let has_sh = complete_message(&server, 0x02);
            sh += usize::from(has_sh);
            if !flow.server_frames.is_empty() {
                server_crypto_flows += 1;
                if !has_sh {
                    failures.push(format!(
                        "{name}: server CRYPTO without a complete ServerHello"
                    ));
                }
            }
            let key = format!(
                "{}:{}>{}:{}",
                flow.client.0, flow.client.1, flow.server.0, flow.server.1
            );
            if let Some(sni) = snis.get(&(name.to_string(), key.clone())) {
                sni_expected += 1;
                if has_ch && contains(&client, sni.as_bytes()) {
                    sni_found += 1;
                } else {
                    failures.push(format!(
                        "{name} {key} {} sni {sni}: stream {} bytes, errors {:?}",
                        flow.version,
                        client.len(),
                        flow.errors
                    ));
                }
            }
        }
        let errors: BTreeMap<&str, u32> =
            flows
                .iter()
                .flat_map(|f| f.errors.clone())
                .fold(BTreeMap::new(), |mut m, (k, v)| {
                    *m.entry(k).or_default() += v;
                    m
                });
        eprintln!("{name}: {} flows, {ch} complete ClientHello, {sh} complete ServerHello, errors {errors:?}", flows.len());
        flows_total += flows.len();
        ch_total += ch;
        sh_total += sh;
    }
    eprintln!(
        "TOTAL: {flows_total} QUIC flows, {ch_total} complete ClientHello, {sh_total} complete ServerHello \
         (of {server_crypto_flows} with server CRYPTO data); expected SNI found in {sni_found} of {sni_expected}"
    );
    for f in &failures {
        eprintln!("MISSING: {f}");
    }
    assert!(
        failures.is_empty(),
        "{} flows without their ClientHello/SNI",
        failures.len()
    );
}
