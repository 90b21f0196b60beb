//! Memory of idle flows: the fixed bytes per flow (by part), and the peak RSS
//! (VmHWM) of one shard holding 1,000,000 concurrent idle UDP flows, each
//! created by one 64-byte datagram. Run: `cargo bench --bench flow_memory`.

use nightjar::capture::LinkType;
use nightjar::decode::decode;
use nightjar::flow::{FlowConfig, FlowFootprint, Shard};

fn vm_hwm_kib() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn main() {
    const FLOWS: u32 = 1_000_000;
    let f = FlowFootprint::get();
    println!(
        "fixed bytes per flow: {} (flow {}, slot {}, map entry {}, queue entry {}); a flow of two or more packets adds {} (its timing profile)",
        f.total(),
        f.flow,
        f.slot,
        f.map_entry,
        f.queue_entry,
        f.profile
    );
    let mut frame = vec![0u8; 14 + 20 + 8 + 22];
    frame[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    frame[14] = 0x45;
    frame[16..18].copy_from_slice(&50u16.to_be_bytes());
    frame[22] = 64;
    frame[23] = 17;
    frame[30..34].copy_from_slice(&[198, 18, 0, 1]);
    frame[34..36].copy_from_slice(&40000u16.to_be_bytes());
    frame[36..38].copy_from_slice(&9999u16.to_be_bytes());
    frame[38..40].copy_from_slice(&30u16.to_be_bytes());
    let mut shard = Shard::new(FlowConfig {
        max_flows: FLOWS as usize,
        ..FlowConfig::default()
    });
    let mut out = Vec::new();
    let before = vm_hwm_kib();
    for i in 0..FLOWS {
        let b = i.to_be_bytes();
        frame[26..30].copy_from_slice(&[10, b[1], b[2], b[3]]);
        let p = decode(LinkType(1), &frame).expect("decode");
        shard.process(1_000_000_000 + u64::from(i), &p, &mut out);
    }
    let after = vm_hwm_kib();
    assert_eq!(shard.active(), FLOWS as usize);
    assert!(out.is_empty());
    println!(
        "{FLOWS} idle flows: VmHWM {} MiB (+{} MiB over the empty shard: {} bytes per flow, allocator and map growth included)",
        after / 1024,
        (after - before) / 1024,
        (after - before) * 1024 / u64::from(FLOWS)
    );
}
