//! Replays every saved fuzz input in `fuzz/regressions/<target>/` through the
//! same harness the cargo-fuzz target uses (`fuzz/harness/mod.rs`), so a crash
//! found once stays fixed. Also runs each harness over a few fixed inputs so
//! the harnesses themselves keep compiling and working without the fuzzer.

#[path = "../fuzz/harness/mod.rs"]
#[allow(dead_code)]
mod harness;

use std::path::Path;

type Target = fn(&[u8]);

const TARGETS: [(&str, Target); 14] = [
    ("decode", harness::decode),
    ("reassembly", harness::reassembly),
    ("tls", harness::tls),
    ("quic_initial", harness::quic_initial),
    ("capture", harness::capture),
    ("pipeline", harness::pipeline),
    ("mdm_files", harness::mdm_files),
    ("plist", harness::plist),
    ("config", harness::config),
    ("mdm_api", harness::mdm_api),
    ("mdm_webhook", harness::mdm_webhook),
    ("state", harness::state),
    ("webhook", harness::webhook),
    ("identity", harness::identity),
];

#[test]
fn saved_fuzz_inputs_do_not_fail() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/regressions");
    let mut replayed = 0;
    for (name, run) in TARGETS {
        let dir = root.join(name);
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries {
            let path = entry.expect("dir entry").path();
            if path.extension().is_some_and(|e| e == "md") {
                continue;
            }
            let bytes = std::fs::read(&path).expect("read regression input");
            eprintln!("replaying {}", path.display());
            run(&bytes);
            replayed += 1;
        }
    }
    eprintln!("{replayed} saved inputs replayed");
}

#[test]
fn harnesses_accept_empty_and_small_inputs() {
    for (_, run) in TARGETS {
        run(&[]);
        for b in 0..=255u8 {
            run(&[b]);
            run(&[b, 0, 0, 0, 0, 0, 0, 0]);
        }
    }
}

#[test]
fn quic_harness_reaches_the_client_hello() {
    // A CRYPTO frame holding the start of a ClientHello, sealed by the harness:
    // it opens, so the frame parser and the hello scanner run on it.
    let mut input = vec![0b0000_0111]; // client, 4-byte packet numbers
    let frame = [0x06, 0x00, 0x04, 0x01, 0x00, 0x00, 0x40];
    input.extend_from_slice(&(frame.len() as u16).to_le_bytes());
    input.extend_from_slice(&frame);
    harness::quic_initial(&input);
    let mut datagram = Vec::new();
    harness::seal_initial(true, 0, 4, &frame, &mut datagram);
    let keys = nightjar::proto::quic::InitialKeys::derive(
        nightjar::proto::quic::QuicVersion::V1,
        &harness::QUIC_DCID,
    )
    .unwrap();
    let mut out = Vec::new();
    let summary =
        nightjar::proto::quic::open_initials(&datagram, &keys, true, &mut Vec::new(), &mut out)
            .expect("sealed packet opens");
    assert_eq!(summary.initial_packets, 1);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].data, [0x01, 0x00, 0x00, 0x40]);
}
