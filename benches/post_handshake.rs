//! Per-packet cost after the handshake: a TLS flow whose handshake has been
//! inspected against a plain TCP flow that never carried TLS, each fed the
//! same 1,448-byte data segments and ACKs through decode and the shard.
//!
//! Run under callgrind for instruction counts (deterministic, whatever else
//! the machine is doing): `bench/post_handshake.sh`. Run alone it prints
//! nanoseconds per packet for both flows (wall clock: noisy under load).
//! Usage: `post_handshake [tls|plain|both] [PACKETS]`.

use nightjar::capture::{open_path, LinkType};
use nightjar::decode::{decode, L4};
use nightjar::flow::{FlowConfig, Shard};
use nightjar::observation::Observation;
use nightjar::scenario::tcp_frame;
use std::hint::black_box;
use std::net::IpAddr;
use std::path::Path;
use std::time::Instant;

type Endpoints = ([u8; 4], u16, [u8; 4], u16);

/// A shard holding the first TLS connection of `pcaps/tls12-cert.pcap`, its
/// handshake inspected (up to, not including, its FIN or RST).
fn tls_flow(ts: &mut u64, out: &mut Vec<Observation>) -> (Shard, Endpoints) {
    let mut shard = Shard::new(FlowConfig::default());
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("pcaps/tls12-cert.pcap");
    let mut r = open_path(&path).expect("capture");
    let mut first = None;
    while let Some(f) = r.next_frame().expect("frame") {
        let p = decode(f.linktype, f.data).expect("decode");
        let (L4::Tcp(t), IpAddr::V4(s), IpAddr::V4(d)) = (p.l4, p.ip.src, p.ip.dst) else {
            continue;
        };
        let k = (s.octets(), t.src_port, d.octets(), t.dst_port);
        let f0 = *first.get_or_insert(k);
        if (k != f0 && (k.2, k.3, k.0, k.1) != f0) || t.flags & 0x05 != 0 {
            continue;
        }
        *ts += 1000;
        shard.process(*ts, &p, out);
    }
    (shard, first.expect("a TCP flow"))
}

/// A shard holding a plain TCP flow: handshake, then data that is not TLS.
fn plain_flow(ts: &mut u64, out: &mut Vec<Observation>) -> (Shard, Endpoints) {
    let mut shard = Shard::new(FlowConfig::default());
    let (c, s, cp, sp) = ([10, 0, 0, 2], [10, 0, 0, 1], 40_000, 5_000);
    let frames = [
        tcp_frame(c, s, cp, sp, 100, 0x02, &[]),
        tcp_frame(s, c, sp, cp, 900, 0x12, &[]),
        tcp_frame(c, s, cp, sp, 101, 0x10, &[]),
        tcp_frame(c, s, cp, sp, 101, 0x18, b"HELLO plain protocol\r\n"),
    ];
    for f in &frames {
        *ts += 1000;
        let p = decode(LinkType(1), f).expect("decode");
        shard.process(*ts, &p, out);
    }
    (shard, (c, cp, s, sp))
}

/// The data segments (server → client) and ACKs both flows get after setup.
fn data_frames((cip, cport, sip, sport): Endpoints) -> [Vec<u8>; 2] {
    let mut data = vec![0x42u8; 1448];
    data[..5].copy_from_slice(&[23, 3, 3, 0x05, 0xa3]);
    [
        tcp_frame(sip, cip, sport, cport, 0x4000_0000, 0x18, &data),
        tcp_frame(cip, sip, cport, sport, 0x2000_0000, 0x10, &[]),
    ]
}

/// The measured loop (callgrind collects only inside it: `--toggle-collect`).
#[inline(never)]
fn post_handshake_packets(
    shard: &mut Shard,
    out: &mut Vec<Observation>,
    ts: &mut u64,
    frames: &[Vec<u8>; 2],
    n: u32,
) {
    for i in 0..n {
        *ts += 20_000;
        let frame = &frames[usize::from(i % 3 == 2)];
        let p = decode(LinkType(1), black_box(frame)).expect("decode");
        shard.process(*ts, &p, out);
    }
}

fn run(kind: &str, n: u32) {
    let mut out = Vec::with_capacity(64);
    let mut ts = 1_000_000_000u64;
    let (mut shard, ends) = match kind {
        "tls" => tls_flow(&mut ts, &mut out),
        _ => plain_flow(&mut ts, &mut out),
    };
    let frames = data_frames(ends);
    // Warm-up, outside the measured function: the plain flow's probe for a
    // late TLS start ends, lazily sized state reaches its size.
    for i in 0..100u32 {
        ts += 20_000;
        let p = decode(LinkType(1), &frames[usize::from(i % 3 == 2)]).expect("decode");
        shard.process(ts, &p, &mut out);
    }
    let started = Instant::now();
    post_handshake_packets(&mut shard, &mut out, &mut ts, &frames, n);
    let ns = started.elapsed().as_nanos() as f64 / f64::from(n);
    assert!(out.is_empty(), "the flow stays live");
    assert_eq!(shard.active(), 1);
    println!("{kind}: {n} packets, {ns:.1} ns/packet");
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let kind = args.first().map_or("both", String::as_str);
    let n = args
        .get(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    match kind {
        "tls" | "plain" => run(kind, n),
        _ => {
            run("tls", n);
            run("plain", n);
        }
    }
}
