//! Micro-benchmarks of the data plane: decode, flow lookup/update, ClientHello
//! parse, JA4, QUIC Initial decryption, DNS parse, and the per-packet cost of a
//! flow after its handshake against a flow that never had one.
//!
//! Inputs are real packets from `pcaps/` and `../shared/corpus` where needed,
//! and frames built here for the data packets. Run: `cargo bench --bench dataplane`.

use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use nightjar::capture::{open_path, LinkType};
use nightjar::decode::{decode, L4};
use nightjar::flow::{FlowConfig, Shard};
use nightjar::observation::Observation;
use nightjar::proto::dns;
use nightjar::proto::quic::{open_initials, parse_long_headers, InitialKeys, PacketKind};
use nightjar::proto::tls::{self, Ja4Input, Scan, Transport};
use nightjar::scenario::tcp_frame;
use std::path::{Path, PathBuf};

const ETHER: LinkType = LinkType(1);

fn repo(p: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(p)
}

fn corpus(p: &str) -> PathBuf {
    let local = repo("../shared/corpus").join(p);
    if local.exists() {
        local
    } else {
        Path::new("/work/shared/corpus").join(p)
    }
}

/// Every frame of a capture, with its link type.
fn frames(path: &Path) -> Vec<(LinkType, Vec<u8>)> {
    let mut r = open_path(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut out = Vec::new();
    while let Some(f) = r.next_frame().expect("frame") {
        out.push((f.linktype, f.data.to_vec()));
    }
    out
}

/// The L4 payloads of a capture's frames, in order.
fn payloads(path: &Path) -> Vec<(u8, u16, u16, Vec<u8>)> {
    frames(path)
        .iter()
        .filter_map(|(lt, f)| {
            let p = decode(*lt, f).ok()?;
            Some(match p.l4 {
                L4::Tcp(t) => (6, t.src_port, t.dst_port, t.payload.to_vec()),
                L4::Udp {
                    src_port,
                    dst_port,
                    payload,
                } => (17, src_port, dst_port, payload.to_vec()),
                L4::Other { .. } => return None,
            })
        })
        .collect()
}

fn app_data(len: usize) -> Vec<u8> {
    let mut p: Vec<u8> = (0..len).map(|i| (i * 31 + 7) as u8).collect();
    let n = (len - 5) as u16;
    p[..5].copy_from_slice(&[23, 3, 3, (n >> 8) as u8, n as u8]);
    p
}

fn bench_decode(c: &mut Criterion) {
    let data = tcp_frame(
        [10, 0, 0, 1],
        [10, 0, 0, 2],
        443,
        50000,
        1,
        0x18,
        &app_data(1448),
    );
    let dns_frames = frames(&corpus("arkime/tests/pcap/dns-https.pcap"));
    let mut g = c.benchmark_group("decode");
    g.throughput(Throughput::Elements(1));
    g.bench_function("ipv4_tcp_1502B", |b| {
        b.iter(|| decode(ETHER, black_box(&data)).is_ok())
    });
    g.bench_function("ipv4_udp_dns", |b| {
        b.iter(|| decode(dns_frames[0].0, black_box(&dns_frames[0].1)).is_ok())
    });
    g.finish();
}

/// A TLS 1.2 handshake from a real capture, replayed into a shard, then
/// returned with the flow's addresses and next sequence numbers.
fn handshaken_shard() -> (Shard, [u8; 4], [u8; 4], u16, u16, u32) {
    let mut shard = Shard::new(FlowConfig::default());
    let mut out = Vec::new();
    let fr = frames(&repo("pcaps/tls12-cert.pcap"));
    let mut first = None;
    let mut ts = 1_000_000_000u64;
    for (lt, f) in &fr {
        let p = decode(*lt, f).expect("decode");
        let L4::Tcp(t) = p.l4 else { continue };
        let (std::net::IpAddr::V4(s), std::net::IpAddr::V4(d)) = (p.ip.src, p.ip.dst) else {
            continue;
        };
        let key = (s.octets(), d.octets(), t.src_port, t.dst_port);
        let first = *first.get_or_insert(key);
        // Only the first connection, and only until its FIN.
        let same =
            key == first || (key.0, key.1, key.2, key.3) == (first.1, first.0, first.3, first.2);
        if !same || t.flags & 0x05 != 0 {
            continue;
        }
        ts += 1000;
        shard.process(ts, &p, &mut out);
    }
    let (cli, srv, cp, sp) = first.expect("a TCP flow");
    // Server data continues from a sequence number past the handshake.
    (shard, srv, cli, sp, cp, 0x4000_0000)
}

fn bench_flow(c: &mut Criterion) {
    let mut g = c.benchmark_group("flow");
    g.throughput(Throughput::Elements(1));

    // Post-handshake data packets of a TLS flow whose handshake was inspected.
    let (mut shard, src, dst, sp, dp, seq) = handshaken_shard();
    let frame = tcp_frame(src, dst, sp, dp, seq, 0x18, &app_data(1448));
    let pkt = decode(ETHER, &frame).expect("decode");
    let mut out: Vec<Observation> = Vec::with_capacity(16);
    let mut ts = 2_000_000_000u64;
    for _ in 0..100 {
        ts += 1000;
        shard.process(ts, &pkt, &mut out);
    }
    g.bench_function("data_after_tls_handshake", |b| {
        b.iter(|| {
            ts += 1000;
            shard.process(ts, black_box(&pkt), &mut out);
            out.clear();
        })
    });

    // The same data packets on a flow that never had a handshake (not TLS).
    let mut plain = Shard::new(FlowConfig::default());
    let frame2 = tcp_frame(
        [10, 9, 0, 1],
        [10, 9, 0, 2],
        7000,
        40000,
        1,
        0x18,
        &[0x55; 1453],
    );
    let pkt2 = decode(ETHER, &frame2).expect("decode");
    let mut ts2 = 2_000_000_000u64;
    for _ in 0..100 {
        ts2 += 1000;
        plain.process(ts2, &pkt2, &mut out);
    }
    out.clear();
    g.bench_function("data_without_handshake", |b| {
        b.iter(|| {
            ts2 += 1000;
            plain.process(ts2, black_box(&pkt2), &mut out);
            out.clear();
        })
    });

    // Lookup/update spread over 100k live flows (cache misses of a busy table).
    const N: u32 = 100_000;
    let mut big = Shard::new(FlowConfig::default());
    let many: Vec<Vec<u8>> = (0..N)
        .map(|i| {
            let c = i.to_be_bytes();
            tcp_frame(
                [10, c[1], c[2], c[3]],
                [198, 18, 0, 1],
                443,
                50000,
                1,
                0x10,
                &[],
            )
        })
        .collect();
    let mut ts3 = 3_000_000_000u64;
    for f in &many {
        ts3 += 10;
        big.process(ts3, &decode(ETHER, f).expect("decode"), &mut out);
    }
    out.clear();
    let mut i = 0usize;
    g.bench_function("update_among_100k_flows", |b| {
        b.iter(|| {
            // A stride through the table, so consecutive packets hit different flows.
            i = (i + 7919) % many.len();
            ts3 += 10;
            let p = decode(ETHER, &many[i]).expect("decode");
            big.process(ts3, &p, &mut out);
            out.clear();
        })
    });

    // A new flow: create on the first packet, end at the table flush.
    g.bench_function("create_and_finish_flow", |b| {
        b.iter_batched(
            || Shard::new(FlowConfig::default()),
            |mut s| {
                s.process(1, &pkt2, &mut out);
                s.flush(nightjar::observation::Termination::EndOfInput, 1, &mut out);
                out.clear();
                s
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

fn client_hello_record() -> Vec<u8> {
    payloads(&repo("pcaps/tls12-cert.pcap"))
        .into_iter()
        .find(|(proto, _, _, p)| *proto == 6 && tls::looks_like_tls_client(p))
        .expect("a ClientHello")
        .3
}

fn bench_tls(c: &mut Criterion) {
    let rec = client_hello_record();
    let mut g = c.benchmark_group("tls");
    g.bench_function("client_hello_parse_ja3_ja4", |b| {
        b.iter(|| matches!(tls::scan_client_records(black_box(&rec)), Scan::Done(_)))
    });
    let Scan::Done(ch) = tls::scan_client_records(&rec) else {
        panic!("ClientHello")
    };
    let sv: Vec<u16> = ch.supported_versions.clone();
    g.bench_function("ja4", |b| {
        b.iter(|| {
            tls::ja4(black_box(&Ja4Input {
                transport: Transport::Tcp,
                legacy_version: ch.legacy_version,
                supported_versions: &sv,
                ciphers: &ch.ciphers,
                extensions: &ch.extensions,
                first_alpn: ch.alpn.first().map(|a| a.as_bytes()),
                sig_algs: &ch.sig_algs,
            }))
        })
    });
    g.finish();
}

fn bench_quic(c: &mut Criterion) {
    let dgram = payloads(&corpus(
        "foxio-ja4/pcap/quic-with-several-tls-frames.pcapng",
    ))
    .into_iter()
    .map(|(_, _, _, p)| p)
    .find(|p| {
        matches!(parse_long_headers(p).next(), Some(Ok(h)) if h.kind == PacketKind::Initial)
            && p.len() >= 1200
    })
    .expect("a client Initial");
    let h = parse_long_headers(&dgram)
        .next()
        .expect("header")
        .expect("header");
    let (version, dcid) = (h.version, h.dcid.to_vec());
    let mut g = c.benchmark_group("quic");
    g.bench_function("initial_keys_derive", |b| {
        b.iter(|| InitialKeys::derive(version, black_box(&dcid)).is_some())
    });
    let keys = InitialKeys::derive(version, &dcid).expect("keys");
    let (mut scratch, mut frames) = (Vec::new(), Vec::new());
    g.bench_function("client_initial_decrypt", |b| {
        b.iter(|| {
            frames.clear();
            open_initials(black_box(&dgram), &keys, true, &mut scratch, &mut frames).is_ok()
        })
    });
    g.finish();
}

fn bench_dns(c: &mut Criterion) {
    let msgs: Vec<Vec<u8>> = payloads(&corpus("arkime/tests/pcap/dns-https.pcap"))
        .into_iter()
        .filter(|(proto, sp, dp, _)| *proto == 17 && (*sp == 53 || *dp == 53))
        .map(|m| m.3)
        .collect();
    let resp = msgs.last().expect("a DNS message").clone();
    c.bench_function("dns/parse_response", |b| {
        b.iter(|| dns::parse_message(black_box(&resp)).is_ok())
    });
}

criterion_group!(
    benches,
    bench_decode,
    bench_flow,
    bench_tls,
    bench_quic,
    bench_dns
);
criterion_main!(benches);
