//! Benchmark capture generator (a development tool, not part of the sensor).
//!
//! Builds a large, deterministic pcap from real captures: every Ethernet
//! IPv4/IPv6 TCP/UDP conversation of the input files becomes a template; the
//! output replays templates as new flows (client and server addresses and
//! ports rewritten, time shifted, checksums recomputed), many at once, in
//! packet-time order. The mix follows real traffic: most packets are bulk
//! data after a TLS or QUIC handshake (the handshake of a real template,
//! then full-sized data segments, mostly server → client, with the client's
//! ACKs, then a FIN exchange), plus DNS exchanges and short flows replayed
//! as captured.
//!
//! Memory is bounded by the templates and [`CONCURRENT_FLOWS`]: packets are
//! written as they are generated. The same seed and inputs give the same bytes.
//!
//! Usage: `nightjar-benchgen --out FILE [--seed N] [--packets N] [--flows N] INPUT...`

use nightjar::capture::{open_path, LinkType};
use nightjar::scenario::Rng;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::io::{BufWriter, Write};
use std::path::PathBuf;

/// Flows in progress at once (each a few hundred bytes of state).
const CONCURRENT_FLOWS: usize = 4096;
/// Largest gap kept from a template between two packets of a flow.
const MAX_TEMPLATE_GAP_US: u64 = 50_000;
/// TCP payload of a full-sized data segment (1500-byte MTU, timestamps option).
const TCP_MSS: usize = 1448;
/// UDP payload of a full-sized QUIC 1-RTT packet.
const QUIC_DATAGRAM: usize = 1350;
/// Start of the output's packet time (2025-01-01T00:00:00Z).
const BASE_TS_US: u64 = 1_735_689_600_000_000;

/// Where the rewritable fields of one Ethernet frame are.
#[derive(Clone, Copy)]
struct Layout {
    ip: usize,
    v6: bool,
    l4: usize,
    tcp: bool,
    payload: usize,
}

fn layout(f: &[u8]) -> Option<Layout> {
    let mut off = 12;
    let mut et = u16::from_be_bytes([*f.get(off)?, *f.get(off + 1)?]);
    while et == 0x8100 || et == 0x88a8 {
        off += 4;
        et = u16::from_be_bytes([*f.get(off)?, *f.get(off + 1)?]);
    }
    let ip = off + 2;
    let (v6, proto, l4) = match et {
        0x0800 => {
            let ihl = usize::from(f.get(ip)? & 0x0f) * 4;
            let frag = u16::from_be_bytes([*f.get(ip + 6)?, *f.get(ip + 7)?]) & 0x3fff;
            if frag != 0 || ihl < 20 {
                return None;
            }
            (false, *f.get(ip + 9)?, ip + ihl)
        }
        0x86dd => (true, *f.get(ip + 6)?, ip + 40),
        _ => return None,
    };
    let (tcp, payload) = match proto {
        6 => (true, l4 + usize::from(f.get(l4 + 12)? >> 4) * 4),
        17 => (false, l4 + 8),
        _ => return None,
    };
    (payload <= f.len()).then_some(Layout {
        ip,
        v6,
        l4,
        tcp,
        payload,
    })
}

struct TPacket {
    frame: Vec<u8>,
    lay: Layout,
    /// Sent by the template's client (the first packet's sender).
    from_client: bool,
    /// Microseconds after the previous packet of the template (capped).
    gap_us: u64,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Tls,
    Quic,
    Dns,
    Other,
}

struct Template {
    kind: Kind,
    packets: Vec<TPacket>,
}

fn load_templates(inputs: &[PathBuf]) -> Vec<Template> {
    type Key = (Vec<u8>, u16, Vec<u8>, u16, bool);
    let mut out: Vec<Template> = Vec::new();
    for path in inputs {
        let Ok(mut r) = open_path(path) else { continue };
        let mut flows: HashMap<Key, usize> = HashMap::new();
        let mut last_ts: HashMap<usize, u64> = HashMap::new();
        while let Ok(Some(fr)) = r.next_frame() {
            if fr.linktype != LinkType(1) || fr.data.len() != fr.orig_len as usize {
                continue;
            }
            let f = fr.data;
            let Some(lay) = layout(f) else { continue };
            let alen = if lay.v6 { 16 } else { 4 };
            let (sa, da) = if lay.v6 {
                (lay.ip + 8, lay.ip + 24)
            } else {
                (lay.ip + 12, lay.ip + 16)
            };
            let src = (
                f[sa..sa + alen].to_vec(),
                u16::from_be_bytes([f[lay.l4], f[lay.l4 + 1]]),
            );
            let dst = (
                f[da..da + alen].to_vec(),
                u16::from_be_bytes([f[lay.l4 + 2], f[lay.l4 + 3]]),
            );
            let fwd: Key = (src.0.clone(), src.1, dst.0.clone(), dst.1, lay.tcp);
            let rev: Key = (dst.0, dst.1, src.0, src.1, lay.tcp);
            let ts_us = fr.ts.0 / 1000;
            let (idx, from_client) = if let Some(&i) = flows.get(&fwd) {
                (i, true)
            } else if let Some(&i) = flows.get(&rev) {
                (i, false)
            } else {
                out.push(Template {
                    kind: Kind::Other,
                    packets: Vec::new(),
                });
                flows.insert(fwd, out.len() - 1);
                (out.len() - 1, true)
            };
            let gap_us = last_ts
                .insert(idx, ts_us)
                .map_or(0, |p| ts_us.saturating_sub(p).min(MAX_TEMPLATE_GAP_US));
            out[idx].packets.push(TPacket {
                frame: f.to_vec(),
                lay,
                from_client,
                gap_us,
            });
        }
    }
    for t in &mut out {
        let first_payload = t
            .packets
            .iter()
            .map(|p| &p.frame[p.lay.payload..])
            .find(|p| !p.is_empty())
            .unwrap_or(&[]);
        let p0 = &t.packets[0];
        let port = |p: &TPacket, i: usize| {
            u16::from_be_bytes([p.frame[p.lay.l4 + i], p.frame[p.lay.l4 + i + 1]])
        };
        let dns = port(p0, 0) == 53 || port(p0, 2) == 53;
        let syn = p0.lay.tcp && p0.frame[p0.lay.l4 + 13] & 0x12 == 0x02;
        t.kind = if dns {
            Kind::Dns
        } else if syn && matches!(first_payload, [22, 3, ..]) {
            Kind::Tls
        } else if !p0.lay.tcp && first_payload.len() >= 1200 && first_payload[0] & 0xf0 == 0xc0 {
            Kind::Quic
        } else {
            Kind::Other
        };
    }
    out.retain(|t| t.packets.len() <= 400);
    out
}

/// A flow being written.
struct Live {
    tpl: usize,
    /// Next template packet to write.
    next: usize,
    /// Bulk data packets still to write after the template.
    bulk: u32,
    /// FIN exchange still to write (TCP bulk flows).
    fin: u8,
    client: [u8; 16],
    server: [u8; 16],
    cport: u16,
    sport: u16,
    /// Next sequence number per direction (client, server), once known.
    seq: [u32; 2],
    /// The last template frame per direction, the prototype for bulk packets.
    proto: [Option<usize>; 2],
}

fn checksum_add(mut sum: u32, b: &[u8]) -> u32 {
    let mut it = b.chunks_exact(2);
    for c in &mut it {
        sum += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [x] = it.remainder() {
        sum += u32::from(*x) << 8;
    }
    sum
}

fn fold(mut sum: u32) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Rewrites addresses, ports, lengths and checksums of a frame in place.
fn finish_frame(f: &mut [u8], lay: Layout, src: &[u8; 16], dst: &[u8; 16], sp: u16, dp: u16) {
    let l4len = f.len() - lay.l4;
    if lay.v6 {
        f[lay.ip + 8..lay.ip + 24].copy_from_slice(src);
        f[lay.ip + 24..lay.ip + 40].copy_from_slice(dst);
        f[lay.ip + 4..lay.ip + 6].copy_from_slice(&(l4len as u16).to_be_bytes());
    } else {
        f[lay.ip + 12..lay.ip + 16].copy_from_slice(&src[..4]);
        f[lay.ip + 16..lay.ip + 20].copy_from_slice(&dst[..4]);
        let total = (f.len() - lay.ip) as u16;
        f[lay.ip + 2..lay.ip + 4].copy_from_slice(&total.to_be_bytes());
        f[lay.ip + 10..lay.ip + 12].fill(0);
        let c = fold(checksum_add(0, &f[lay.ip..lay.l4]));
        f[lay.ip + 10..lay.ip + 12].copy_from_slice(&c.to_be_bytes());
    }
    f[lay.l4..lay.l4 + 2].copy_from_slice(&sp.to_be_bytes());
    f[lay.l4 + 2..lay.l4 + 4].copy_from_slice(&dp.to_be_bytes());
    let ck = if lay.tcp { lay.l4 + 16 } else { lay.l4 + 6 };
    if !lay.tcp {
        f[lay.l4 + 4..lay.l4 + 6].copy_from_slice(&(l4len as u16).to_be_bytes());
    }
    f[ck..ck + 2].fill(0);
    let (alen, proto) = (if lay.v6 { 16 } else { 4 }, if lay.tcp { 6u32 } else { 17 });
    let mut sum = checksum_add(0, &src[..alen]);
    sum = checksum_add(sum, &dst[..alen]);
    sum += proto + l4len as u32;
    sum = checksum_add(sum, &f[lay.l4..]);
    let mut c = fold(sum);
    if !lay.tcp && c == 0 {
        c = 0xffff;
    }
    f[ck..ck + 2].copy_from_slice(&c.to_be_bytes());
}

struct Args {
    out: PathBuf,
    seed: u64,
    packets: u64,
    flows: u64,
    inputs: Vec<PathBuf>,
}

fn args() -> Result<Args, String> {
    let mut a = Args {
        out: PathBuf::new(),
        seed: 1,
        packets: 5_000_000,
        flows: 200_000,
        inputs: Vec::new(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(s) = it.next() {
        let mut val = |name: &str| it.next().ok_or(format!("{name} needs a value"));
        match s.as_str() {
            "--out" => a.out = val("--out")?.into(),
            "--seed" => a.seed = val("--seed")?.parse().map_err(|e| format!("--seed: {e}"))?,
            "--packets" => {
                a.packets = val("--packets")?
                    .parse()
                    .map_err(|e| format!("--packets: {e}"))?
            }
            "--flows" => {
                a.flows = val("--flows")?
                    .parse()
                    .map_err(|e| format!("--flows: {e}"))?
            }
            _ => a.inputs.push(s.into()),
        }
    }
    if a.out.as_os_str().is_empty() || a.inputs.is_empty() {
        return Err(
            "usage: nightjar-benchgen --out FILE [--seed N] [--packets N] [--flows N] INPUT..."
                .into(),
        );
    }
    Ok(a)
}

fn main() {
    let a = match args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    let tpls = load_templates(&a.inputs);
    let by_kind =
        |k: Kind| -> Vec<usize> { (0..tpls.len()).filter(|&i| tpls[i].kind == k).collect() };
    let (tls, quic, dns, all) = (
        by_kind(Kind::Tls),
        by_kind(Kind::Quic),
        by_kind(Kind::Dns),
        (0..tpls.len()).collect::<Vec<_>>(),
    );
    eprintln!(
        "templates: {} ({} tls, {} quic, {} dns)",
        tpls.len(),
        tls.len(),
        quic.len(),
        dns.len()
    );
    if tls.is_empty() || all.is_empty() {
        eprintln!("nightjar-benchgen: no usable TLS templates in the inputs");
        std::process::exit(1);
    }
    let mut rng = Rng(a.seed);
    let mut noise = vec![0u8; 1 << 16];
    for b in noise.iter_mut() {
        *b = rng.next_u64() as u8;
    }
    let file = std::fs::File::create(&a.out).unwrap_or_else(|e| {
        eprintln!("{}: {e}", a.out.display());
        std::process::exit(1)
    });
    let mut w = BufWriter::with_capacity(1 << 20, file);
    // pcap global header: microsecond timestamps, Ethernet, snaplen 65535.
    let mut gh = Vec::new();
    gh.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    gh.extend_from_slice(&2u16.to_le_bytes());
    gh.extend_from_slice(&4u16.to_le_bytes());
    gh.extend_from_slice(&[0; 8]);
    gh.extend_from_slice(&65535u32.to_le_bytes());
    gh.extend_from_slice(&1u32.to_le_bytes());
    w.write_all(&gh).expect("write");

    let mut heap: BinaryHeap<Reverse<(u64, usize)>> = BinaryHeap::new();
    let mut live: Vec<Option<Live>> = Vec::new();
    let mut free: Vec<usize> = Vec::new();
    let (mut flows, mut packets, mut bytes) = (0u64, 0u64, 0u64);
    let mut now = 0u64;
    let mut frame = Vec::with_capacity(2048);
    let start_flow = |rng: &mut Rng, n: u64| -> Live {
        let r = rng.below(100);
        // 45% bulk TLS, 15% bulk QUIC, 20% DNS, 20% short flows as captured.
        let (tpl, bulk) = if r < 45 {
            (
                tls[rng.below(tls.len() as u64) as usize],
                8 + rng.below(36) as u32,
            )
        } else if r < 60 && !quic.is_empty() {
            (
                quic[rng.below(quic.len() as u64) as usize],
                8 + rng.below(36) as u32,
            )
        } else if r < 80 && !dns.is_empty() {
            (dns[rng.below(dns.len() as u64) as usize], 0)
        } else {
            (all[rng.below(all.len() as u64) as usize], 0)
        };
        let v6 = tpls[tpl].packets[0].lay.v6;
        let mut client = [0u8; 16];
        let mut server = [0u8; 16];
        let s = rng.below(4096) as u32;
        if v6 {
            client[..2].copy_from_slice(&[0xfd, 0x00]);
            client[12..].copy_from_slice(&(n as u32).to_be_bytes());
            server[..4].copy_from_slice(&[0x20, 0x01, 0x0d, 0xb8]);
            server[12..].copy_from_slice(&s.to_be_bytes());
        } else {
            client[..4].copy_from_slice(&[10, (n >> 16) as u8, (n >> 8) as u8, n as u8]);
            server[..4].copy_from_slice(&[198, 18, (s >> 8) as u8, s as u8]);
        }
        let kind = tpls[tpl].kind;
        Live {
            tpl,
            next: 0,
            bulk,
            fin: if kind == Kind::Tls && bulk > 0 { 3 } else { 0 },
            client,
            server,
            cport: 1024 + (n % 64_000) as u16 + (n / 64_000) as u16 % 512,
            sport: {
                let p0 = &tpls[tpl].packets[0];
                u16::from_be_bytes([p0.frame[p0.lay.l4 + 2], p0.frame[p0.lay.l4 + 3]])
            },
            seq: [0; 2],
            proto: [None; 2],
        }
    };
    loop {
        while heap.len() < CONCURRENT_FLOWS && (flows < a.flows || packets < a.packets) {
            let l = start_flow(&mut rng, flows);
            flows += 1;
            let slot = free.pop().unwrap_or_else(|| {
                live.push(None);
                live.len() - 1
            });
            live[slot] = Some(l);
            heap.push(Reverse((now + rng.below(2000), slot)));
        }
        let Some(Reverse((t, slot))) = heap.pop() else {
            break;
        };
        now = t;
        let l = live[slot].as_mut().expect("live flow");
        let tpl = &tpls[l.tpl];
        let bulk_flow = l.bulk > 0 || l.fin > 0;
        // Template packets (in a bulk flow, without its FIN/RST: the flow goes on).
        let mut gap = None;
        while l.next < tpl.packets.len() {
            let p = &tpl.packets[l.next];
            l.next += 1;
            let fl = if p.lay.tcp { p.frame[p.lay.l4 + 13] } else { 0 };
            if bulk_flow && fl & 0x05 != 0 {
                continue;
            }
            frame.clear();
            frame.extend_from_slice(&p.frame);
            let d = usize::from(!p.from_client);
            l.proto[d] = Some(l.next - 1);
            if p.lay.tcp {
                let seq =
                    u32::from_be_bytes(frame[p.lay.l4 + 4..p.lay.l4 + 8].try_into().expect("4"));
                let len = (frame.len() - p.lay.payload) as u32 + u32::from(fl & 0x03 != 0);
                l.seq[d] = seq.wrapping_add(len);
            }
            gap = Some(p.gap_us);
            break;
        }
        let (src, dst, sp, dp, lay) = if gap.is_some() {
            let p = &tpl.packets[l.next - 1];
            if p.from_client {
                (l.client, l.server, l.cport, l.sport, p.lay)
            } else {
                (l.server, l.client, l.sport, l.cport, p.lay)
            }
        } else if l.bulk > 0 || l.fin > 0 {
            // Bulk: two server data packets per client packet (ACK or request data).
            let from_client = if l.bulk > 0 {
                l.bulk % 3 == 0
            } else {
                l.fin != 2
            };
            let d = usize::from(!from_client);
            let Some(pi) = l.proto[d].or(l.proto[1 - d]) else {
                l.bulk = 0;
                l.fin = 0;
                heap.push(Reverse((now, slot)));
                continue;
            };
            let p = &tpl.packets[pi];
            let lay = p.lay;
            frame.clear();
            frame.extend_from_slice(&p.frame[..lay.payload]);
            let plen = if l.bulk == 0 {
                0
            } else if lay.tcp {
                if from_client {
                    if rng.below(8) == 0 {
                        80 + rng.below(400) as usize
                    } else {
                        0
                    }
                } else {
                    TCP_MSS - rng.below(4) as usize * 100
                }
            } else if from_client {
                40 + rng.below(30) as usize
            } else {
                QUIC_DATAGRAM - rng.below(300) as usize
            };
            let off = rng.below((noise.len() - 2048) as u64) as usize;
            if lay.tcp {
                // TLS application data records.
                frame.extend_from_slice(&noise[off..off + plen]);
                if plen >= 5 {
                    let n = (plen - 5) as u16;
                    frame[lay.payload..lay.payload + 5].copy_from_slice(&[
                        23,
                        3,
                        3,
                        (n >> 8) as u8,
                        n as u8,
                    ]);
                }
                let seq = l.seq[d];
                let ack = l.seq[1 - d];
                frame[lay.l4 + 4..lay.l4 + 8].copy_from_slice(&seq.to_be_bytes());
                frame[lay.l4 + 8..lay.l4 + 12].copy_from_slice(&ack.to_be_bytes());
                let fin = l.bulk == 0 && l.fin > 1;
                frame[lay.l4 + 13] = if fin {
                    0x11
                } else if plen > 0 {
                    0x18
                } else {
                    0x10
                };
                l.seq[d] = seq.wrapping_add(plen as u32 + u32::from(fin));
            } else {
                // QUIC short header: fixed bit, 8-byte connection id, protected payload.
                frame.extend_from_slice(&noise[off..off + plen]);
                frame[lay.payload] = 0x40 | (frame[lay.payload] & 0x07);
                let cid = (slot as u64 ^ u64::from(from_client)).to_be_bytes();
                frame[lay.payload + 1..lay.payload + 9].copy_from_slice(&cid);
            }
            if l.bulk > 0 {
                l.bulk -= 1;
            } else {
                l.fin -= 1;
            }
            gap = Some(if from_client {
                200 + rng.below(2000)
            } else {
                20 + rng.below(300)
            });
            if from_client {
                (l.client, l.server, l.cport, l.sport, lay)
            } else {
                (l.server, l.client, l.sport, l.cport, lay)
            }
        } else {
            live[slot] = None;
            free.push(slot);
            continue;
        };
        finish_frame(&mut frame, lay, &src, &dst, sp, dp);
        let ts = BASE_TS_US + now;
        let mut rh = [0u8; 16];
        rh[..4].copy_from_slice(&((ts / 1_000_000) as u32).to_le_bytes());
        rh[4..8].copy_from_slice(&((ts % 1_000_000) as u32).to_le_bytes());
        rh[8..12].copy_from_slice(&(frame.len() as u32).to_le_bytes());
        rh[12..16].copy_from_slice(&(frame.len() as u32).to_le_bytes());
        w.write_all(&rh).expect("write");
        w.write_all(&frame).expect("write");
        packets += 1;
        bytes += frame.len() as u64;
        heap.push(Reverse((now + gap.unwrap_or(0).max(1), slot)));
    }
    w.flush().expect("flush");
    eprintln!(
        "wrote {}: {packets} packets, {flows} flows, {bytes} bytes ({} bytes/packet)",
        a.out.display(),
        bytes / packets.max(1)
    );
}
