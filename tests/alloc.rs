//! Zero heap allocations per packet in steady state: after a flow's TLS
//! handshake has been inspected, its data packets and ACKs go through decode
//! and the shard without touching the allocator. A counting global allocator
//! (counting only on the test's own thread) measures it.

use nightjar::capture::{open_path, LinkType};
use nightjar::decode::{decode, L4};
use nightjar::flow::{FlowConfig, Shard};
use nightjar::scenario::tcp_frame;
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::net::IpAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);
thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        if COUNTING.with(Cell::get) {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        System.alloc(l)
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        System.dealloc(p, l)
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        if COUNTING.with(Cell::get) {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        System.realloc(p, l, n)
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocations made by `f` on this thread.
fn allocations(f: impl FnOnce()) -> u64 {
    let before = ALLOCS.load(Ordering::Relaxed);
    COUNTING.with(|c| c.set(true));
    f();
    COUNTING.with(|c| c.set(false));
    ALLOCS.load(Ordering::Relaxed) - before
}

#[test]
fn no_allocation_per_packet_after_the_handshake() {
    let mut shard = Shard::new(FlowConfig::default());
    let mut out = Vec::with_capacity(64);
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("pcaps/tls12-cert.pcap");
    let mut r = open_path(&path).expect("capture");
    let mut first = None;
    let mut ts = 1_000_000_000u64;
    // The first connection's handshake, up to (not including) its FIN.
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
        ts += 1000;
        shard.process(ts, &p, &mut out);
    }
    let (cip, cport, sip, sport) = first.expect("a TCP flow");
    assert!(out.is_empty(), "the handshake alone ends no flow");
    assert_eq!(shard.active(), 1);

    let mut data = vec![0x42u8; 1448];
    data[..5].copy_from_slice(&[23, 3, 3, 0x05, 0xa3]);
    let server = tcp_frame(sip, cip, sport, cport, 0x4000_0000, 0x18, &data);
    let ack = tcp_frame(cip, sip, cport, sport, 0x2000_0000, 0x10, &[]);
    let run = |shard: &mut Shard, out: &mut Vec<_>, ts: &mut u64, n: u32| {
        for i in 0..n {
            *ts += 20_000; // 20 µs: 100k packets span two sweeps of the table
            let frame = if i % 3 == 2 { &ack } else { &server };
            let p = decode(LinkType(1), frame).expect("decode");
            shard.process(*ts, &p, out);
        }
    };
    // Warm-up: any lazily sized state reaches its steady size.
    run(&mut shard, &mut out, &mut ts, 1_000);
    let small = allocations(|| run(&mut shard, &mut out, &mut ts, 1_000));
    let large = allocations(|| run(&mut shard, &mut out, &mut ts, 100_000));
    assert!(out.is_empty(), "the flow stays live");
    assert_eq!(shard.active(), 1);
    assert_eq!(
        (small, large),
        (0, 0),
        "allocations for 1,000 and 100,000 packets"
    );
}
