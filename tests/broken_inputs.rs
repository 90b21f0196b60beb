//! Broken inputs, each replayed by the binary: every one gives a counted
//! anomaly in the stats record or one clear error line, never a panic, and
//! the records of what could be read are written.

mod common;

use common::pcap::{rfc9001_client_hello, tls_record, Conn, PcapWriter, ACK, PSH};
use serde_json::Value;
use std::path::PathBuf;
use std::time::Duration;

const T0: u64 = 1_700_000_000_000_000_000;

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("nightjar-broken-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d.join(name)
}

/// Replays `path`; returns (exit ok, stderr, stats record, flow records).
fn replay(path: &std::path::Path) -> (bool, String, Value, Vec<Value>) {
    let out = common::run(
        &["replay", "--quiet", path.to_str().unwrap()],
        Duration::from_secs(120),
    );
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!stderr.contains("panicked"), "panic: {stderr}");
    let recs = common::records(&out);
    let stats = recs
        .iter()
        .find(|r| common::dataset(r) == "nightjar.stats")
        .cloned()
        .unwrap_or_else(|| panic!("no stats record; stderr: {stderr}"));
    let flows = recs
        .into_iter()
        .filter(|r| common::dataset(r) == "nightjar.flow")
        .collect();
    (out.status.success(), stderr, stats, flows)
}

fn stats<'a>(s: &'a Value, key: &str) -> &'a Value {
    &s["nightjar"]["stats"][key]
}

/// One TLS connection with a ClientHello, as a complete capture.
fn tls_capture(path: &std::path::Path) {
    let mut w = PcapWriter::create(path);
    let mut c = Conn::new(([192, 0, 2, 1], 50_000), ([198, 51, 100, 1], 443));
    c.handshake(&mut w, T0);
    c.send(
        &mut w,
        T0 + 3_000,
        true,
        ACK | PSH,
        &tls_record(&rfc9001_client_hello()),
    );
    c.send(&mut w, T0 + 4_000, false, ACK, &[]);
    w.finish();
}

#[test]
fn truncated_pcap_is_one_error_line_and_keeps_earlier_records() {
    let path = scratch("truncated.pcap");
    tls_capture(&path);
    let bytes = std::fs::read(&path).unwrap();
    // Cut inside the last record (header kept, frame cut).
    std::fs::write(&path, &bytes[..bytes.len() - 20]).unwrap();
    let (ok, stderr, st, flows) = replay(&path);
    assert!(!ok, "a truncated file is an error");
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    assert!(stderr.contains("truncated"), "{stderr}");
    assert_eq!(stats(&st, "packets"), 4);
    assert_eq!(flows.len(), 1);
    assert_eq!(flows[0]["tls"]["client"]["server_name"], "example.com");
    // Cut inside the file header: nothing to read, still one line and a stats record.
    std::fs::write(&path, &bytes[..10]).unwrap();
    let (ok, stderr, _, flows) = replay(&path);
    assert!(!ok);
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    assert!(flows.is_empty());
}

/// pcapng block helpers (little-endian).
fn block(kind: u32, body: &[u8]) -> Vec<u8> {
    let mut body = body.to_vec();
    while body.len() % 4 != 0 {
        body.push(0);
    }
    let len = (body.len() + 12) as u32;
    let mut b = Vec::new();
    b.extend_from_slice(&kind.to_le_bytes());
    b.extend_from_slice(&len.to_le_bytes());
    b.extend_from_slice(&body);
    b.extend_from_slice(&len.to_le_bytes());
    b
}

fn epb(ts_ns: u64, frame: &[u8]) -> Vec<u8> {
    // Default resolution is microseconds.
    let us = ts_ns / 1_000;
    let mut body = Vec::new();
    body.extend_from_slice(&0u32.to_le_bytes());
    body.extend_from_slice(&((us >> 32) as u32).to_le_bytes());
    body.extend_from_slice(&(us as u32).to_le_bytes());
    body.extend_from_slice(&(frame.len() as u32).to_le_bytes());
    body.extend_from_slice(&(frame.len() as u32).to_le_bytes());
    body.extend_from_slice(frame);
    block(6, &body)
}

/// The frames of a classic pcap written by [`PcapWriter`] (header 24 bytes, records 16).
fn frames_of(pcap: &[u8]) -> Vec<(u64, Vec<u8>)> {
    let mut out = Vec::new();
    let mut pos = 24;
    while pos + 16 <= pcap.len() {
        let u = |o: usize| u32::from_le_bytes(pcap[pos + o..pos + o + 4].try_into().unwrap());
        let ts = u64::from(u(0)) * 1_000_000_000 + u64::from(u(4));
        let len = u(8) as usize;
        out.push((ts, pcap[pos + 16..pos + 16 + len].to_vec()));
        pos += 16 + len;
    }
    out
}

#[test]
fn pcapng_with_unknown_blocks_is_counted_and_read_past() {
    let tmp = scratch("ng-src.pcap");
    tls_capture(&tmp);
    let frames = frames_of(&std::fs::read(&tmp).unwrap());
    let mut ng = Vec::new();
    let mut shb = Vec::new();
    shb.extend_from_slice(&0x1a2b_3c4d_u32.to_le_bytes());
    shb.extend_from_slice(&1u16.to_le_bytes());
    shb.extend_from_slice(&0u16.to_le_bytes());
    shb.extend_from_slice(&(-1i64).to_le_bytes());
    ng.extend(block(0x0a0d_0d0a, &shb));
    let mut idb = Vec::new();
    idb.extend_from_slice(&1u16.to_le_bytes());
    idb.extend_from_slice(&0u16.to_le_bytes());
    idb.extend_from_slice(&0u32.to_le_bytes());
    ng.extend(block(1, &idb));
    for (i, (ts, f)) in frames.iter().enumerate() {
        // An unknown block type and an unknown reserved one between packets.
        ng.extend(block(0x0000_0bad + i as u32, b"unknown block content"));
        ng.extend(epb(*ts, f));
    }
    let path = scratch("unknown-blocks.pcapng");
    std::fs::write(&path, &ng).unwrap();
    let (ok, stderr, st, flows) = replay(&path);
    assert!(ok, "{stderr}");
    assert_eq!(stats(&st, "packets"), frames.len() as u64);
    assert_eq!(
        stats(&st, "capture_anomalies")["unknown_blocks"],
        frames.len() as u64,
        "{st}"
    );
    assert_eq!(flows.len(), 1);
    assert_eq!(
        flows[0]["tls"]["client"]["ja3"],
        "41bc9ae914d6cb3bd0bd0a5453ab7d7f"
    );
}

#[test]
fn snaplen_shorter_than_headers_is_counted() {
    let tmp = scratch("snap-src.pcap");
    tls_capture(&tmp);
    let frames = frames_of(&std::fs::read(&tmp).unwrap());
    let path = scratch("snap20.pcap");
    // Snap length 20: Ethernet and 6 bytes of IPv4 header only.
    let mut w = PcapWriter::create_with(&path, 1, 20);
    for (ts, f) in &frames {
        w.raw_cut(*ts, f, 20.min(f.len()), f.len());
    }
    w.finish();
    let (ok, stderr, st, flows) = replay(&path);
    assert!(ok, "{stderr}");
    assert_eq!(stats(&st, "snapped_frames"), frames.len() as u64);
    assert_eq!(
        stats(&st, "decode_anomalies")["truncated_ipv4"],
        frames.len() as u64,
        "{st}"
    );
    assert!(flows.is_empty());
}

#[test]
fn timestamps_going_backwards_are_counted() {
    let path = scratch("backwards.pcap");
    let mut w = PcapWriter::create(&path);
    let mut c = Conn::new(([192, 0, 2, 1], 50_000), ([198, 51, 100, 1], 443));
    c.handshake(&mut w, T0 + 10_000_000_000);
    // The hello arrives stamped 10 s before the handshake.
    c.send(
        &mut w,
        T0,
        true,
        ACK | PSH,
        &tls_record(&rfc9001_client_hello()),
    );
    w.finish();
    let (ok, stderr, st, flows) = replay(&path);
    assert!(ok, "{stderr}");
    assert_eq!(stats(&st, "ts_backwards"), 1, "{st}");
    assert_eq!(stats(&st, "capture_anomalies")["ts_backwards"], 1, "{st}");
    assert_eq!(flows.len(), 1);
    assert_eq!(flows[0]["source"]["packets"], 3);
    assert_eq!(flows[0]["tls"]["client"]["server_name"], "example.com");
}

#[test]
fn zero_length_packets_are_counted() {
    let path = scratch("zero.pcap");
    let mut w = PcapWriter::create(&path);
    w.raw(T0, &[]);
    w.raw_cut(T0 + 1, &[], 0, 60);
    w.finish();
    let (ok, stderr, st, flows) = replay(&path);
    assert!(ok, "{stderr}");
    assert_eq!(stats(&st, "packets"), 2);
    assert_eq!(stats(&st, "decode_anomalies")["truncated_link"], 2, "{st}");
    assert!(flows.is_empty());
}

/// An IPv4 header claiming `total_len`, over a TCP segment of `payload` bytes.
fn ipv4_frame(total_len: u16, payload: usize) -> Vec<u8> {
    let mut f = vec![0x02, 0, 0, 0, 0, 0x0b, 0x02, 0, 0, 0, 0, 0x0a, 0x08, 0x00];
    f.extend_from_slice(&[0x45, 0, 0, 0, 0, 1, 0x40, 0, 64, 6, 0, 0]);
    f[16..18].copy_from_slice(&total_len.to_be_bytes());
    f.extend_from_slice(&[192, 0, 2, 1, 198, 51, 100, 1]);
    // TCP: ports, seq, ack, data offset 5, ACK|PSH, window.
    f.extend_from_slice(&50_000u16.to_be_bytes());
    f.extend_from_slice(&443u16.to_be_bytes());
    f.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 1, 0x50, 0x18, 0xff, 0xff, 0, 0, 0, 0]);
    f.extend((0..payload).map(|i| i as u8));
    f
}

#[test]
fn jumbo_and_gso_super_frames_are_accounted_not_dropped() {
    let path = scratch("jumbo.pcap");
    let mut w = PcapWriter::create(&path);
    // A 9000-byte jumbo frame with a consistent IPv4 length.
    let jumbo = ipv4_frame(9_000, 9_000 - 40);
    w.raw(T0, &jumbo);
    // A 64 KiB GSO/GRO super-frame: IPv4 total length 0 (as Linux writes for
    // TSO frames over 64 KiB) and then one with the length at 65535.
    let gso0 = ipv4_frame(0, 60_000);
    w.raw(T0 + 1_000, &gso0);
    let gso_max = ipv4_frame(65_535, 65_535 - 40);
    w.raw(T0 + 2_000, &gso_max);
    w.finish();
    let (ok, stderr, st, flows) = replay(&path);
    assert!(ok, "{stderr}");
    assert_eq!(stats(&st, "packets"), 3);
    assert_eq!(flows.len(), 1, "{st}");
    let f = &flows[0];
    // Every frame belongs to the flow: none is lost as undecodable.
    assert_eq!(f["source"]["packets"], 3, "{f}");
    let bytes = f["source"]["bytes"].as_u64().unwrap();
    assert!(
        bytes >= 9_000 + 65_535,
        "IP bytes counted for the large frames: {f}"
    );
}
