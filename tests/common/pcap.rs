//! A small pcap writer for tests that generate their captures in code, and
//! packet builders for the shapes they need (Ethernet/IPv4/TCP or UDP).

#![allow(dead_code)]

use etherparse::PacketBuilder;
use std::io::{BufWriter, Write};
use std::path::Path;

/// Writes a classic little-endian, nanosecond pcap with Ethernet frames.
pub struct PcapWriter {
    out: BufWriter<std::fs::File>,
    frame: Vec<u8>,
    pub packets: u64,
}

impl PcapWriter {
    pub fn create(path: &Path) -> PcapWriter {
        Self::create_with(path, 1, 262_144)
    }

    /// A pcap with the given link type and snap length.
    pub fn create_with(path: &Path, linktype: u32, snaplen: u32) -> PcapWriter {
        let mut out = BufWriter::with_capacity(1 << 20, std::fs::File::create(path).unwrap());
        out.write_all(&0xa1b2_3c4d_u32.to_le_bytes()).unwrap();
        out.write_all(&2u16.to_le_bytes()).unwrap();
        out.write_all(&4u16.to_le_bytes()).unwrap();
        out.write_all(&[0; 8]).unwrap();
        out.write_all(&snaplen.to_le_bytes()).unwrap();
        out.write_all(&linktype.to_le_bytes()).unwrap();
        PcapWriter {
            out,
            frame: Vec::with_capacity(2048),
            packets: 0,
        }
    }

    /// One record with the frame's full length captured.
    pub fn raw(&mut self, ts_ns: u64, frame: &[u8]) {
        self.raw_cut(ts_ns, frame, frame.len(), frame.len());
    }

    /// One record holding `frame[..caplen]` of a frame `orig_len` bytes long.
    pub fn raw_cut(&mut self, ts_ns: u64, frame: &[u8], caplen: usize, orig_len: usize) {
        let secs = (ts_ns / 1_000_000_000) as u32;
        let nanos = (ts_ns % 1_000_000_000) as u32;
        for v in [secs, nanos, caplen as u32, orig_len as u32] {
            self.out.write_all(&v.to_le_bytes()).unwrap();
        }
        self.out.write_all(&frame[..caplen]).unwrap();
        self.packets += 1;
    }

    /// An Ethernet/IPv4/TCP packet.
    pub fn tcp(&mut self, ts_ns: u64, p: Tcp<'_>) {
        let mut b = PacketBuilder::ethernet2(p.src_mac, p.dst_mac)
            .ipv4(p.src, p.dst, 64)
            .tcp(p.sport, p.dport, p.seq, 65_535);
        if p.flags & SYN != 0 {
            b = b.syn();
        }
        if p.flags & ACK != 0 {
            b = b.ack(p.ack);
        }
        if p.flags & FIN != 0 {
            b = b.fin();
        }
        if p.flags & PSH != 0 {
            b = b.psh();
        }
        self.frame.clear();
        b.write(&mut self.frame, p.payload).unwrap();
        let frame = std::mem::take(&mut self.frame);
        self.raw(ts_ns, &frame);
        self.frame = frame;
    }

    /// An Ethernet/IPv4/UDP packet.
    pub fn udp(&mut self, ts_ns: u64, src: ([u8; 4], u16), dst: ([u8; 4], u16), payload: &[u8]) {
        let b = PacketBuilder::ethernet2(MAC_A, MAC_B)
            .ipv4(src.0, dst.0, 64)
            .udp(src.1, dst.1);
        self.frame.clear();
        b.write(&mut self.frame, payload).unwrap();
        let frame = std::mem::take(&mut self.frame);
        self.raw(ts_ns, &frame);
        self.frame = frame;
    }

    pub fn finish(mut self) {
        self.out.flush().unwrap();
    }
}

pub const SYN: u8 = 1;
pub const ACK: u8 = 2;
pub const FIN: u8 = 4;
pub const PSH: u8 = 8;
pub const MAC_A: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0a];
pub const MAC_B: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0b];

/// The fields of one TCP packet.
#[derive(Clone, Copy)]
pub struct Tcp<'a> {
    pub src_mac: [u8; 6],
    pub dst_mac: [u8; 6],
    pub src: [u8; 4],
    pub dst: [u8; 4],
    pub sport: u16,
    pub dport: u16,
    pub seq: u32,
    pub ack: u32,
    pub flags: u8,
    pub payload: &'a [u8],
}

/// A scripted TCP connection: client `c` to server `s`, tracking sequence numbers.
pub struct Conn {
    pub c: ([u8; 4], u16),
    pub s: ([u8; 4], u16),
    pub c_seq: u32,
    pub s_seq: u32,
}

impl Conn {
    pub fn new(c: ([u8; 4], u16), s: ([u8; 4], u16)) -> Conn {
        Conn {
            c,
            s,
            c_seq: 1000,
            s_seq: 5000,
        }
    }

    fn pkt<'a>(&self, from_client: bool, flags: u8, payload: &'a [u8]) -> Tcp<'a> {
        let (src, dst, seq, ack) = if from_client {
            (self.c, self.s, self.c_seq, self.s_seq)
        } else {
            (self.s, self.c, self.s_seq, self.c_seq)
        };
        let (src_mac, dst_mac) = if from_client {
            (MAC_A, MAC_B)
        } else {
            (MAC_B, MAC_A)
        };
        Tcp {
            src_mac,
            dst_mac,
            src: src.0,
            dst: dst.0,
            sport: src.1,
            dport: dst.1,
            seq,
            ack,
            flags,
            payload,
        }
    }

    /// Sends one segment and advances the sender's sequence number.
    pub fn send(
        &mut self,
        w: &mut PcapWriter,
        ts: u64,
        from_client: bool,
        flags: u8,
        payload: &[u8],
    ) {
        w.tcp(ts, self.pkt(from_client, flags, payload));
        let used = payload.len() as u32 + u32::from(flags & (SYN | FIN) != 0);
        if from_client {
            self.c_seq = self.c_seq.wrapping_add(used);
        } else {
            self.s_seq = self.s_seq.wrapping_add(used);
        }
    }

    /// SYN, SYN-ACK, ACK.
    pub fn handshake(&mut self, w: &mut PcapWriter, ts: u64) {
        self.send(w, ts, true, SYN, &[]);
        self.send(w, ts + 1_000, false, SYN | ACK, &[]);
        self.send(w, ts + 2_000, true, ACK, &[]);
    }
}

/// The ClientHello of RFC 9001 appendix A.2 (a TLS 1.3 hello for
/// "example.com"), as a handshake message.
pub fn rfc9001_client_hello() -> Vec<u8> {
    hex(concat!(
        "010000ed0303ebf8fa56f12939b9584a3896472ec40bb863cfd3e86804fe3a47",
        "f06a2b69484c00000413011302010000c000000010000e00000b6578616d706c",
        "652e636f6dff01000100000a00080006001d0017001800100007000504616c70",
        "6e000500050100000000003300260024001d00209370b2c9caa47fbabaf4559f",
        "edba753de171fa71f50f1ce15d43e994ec74d748002b0003020304000d001000",
        "0e0403050306030203080408050806002d00020101001c000240010039003204",
        "08ffffffffffffffff05048000ffff07048000ffff0801100104800075300901",
        "100f088394c8f03e51570806048000ffff"
    ))
}

/// `msg` in one TLS handshake record.
pub fn tls_record(msg: &[u8]) -> Vec<u8> {
    let mut r = vec![0x16, 0x03, 0x01];
    r.extend_from_slice(&(msg.len() as u16).to_be_bytes());
    r.extend_from_slice(msg);
    r
}

pub fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// A small deterministic generator (xorshift64*) for random addresses and ports.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A unicast address in 10.0.0.0/8 and a port above 1023.
    pub fn endpoint(&mut self) -> ([u8; 4], u16) {
        let v = self.next();
        let ip = [10, (v >> 8) as u8, (v >> 16) as u8, (v >> 24) as u8 | 1];
        (ip, 1024 + (v >> 40) as u16 % 60_000)
    }

    pub fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let v = self.next().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
}
