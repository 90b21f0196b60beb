//! Output faults: an output that cannot be opened, stdout on a full device, a
//! file system that fills up during the replay. Each gives one clear line on
//! stderr and a non-zero exit, and what was written holds only whole lines.
//!
//! The disk-full and read-only cases mount a small tmpfs in a private mount
//! namespace (`unshare -m`, needs root); where that is not possible they say
//! so and skip.

mod common;

use common::pcap::{PcapWriter, Rng};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

const T0: u64 = 1_700_000_000_000_000_000;

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("nightjar-faults-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A capture of `flows` one-packet UDP flows: about 1 KiB of records each.
fn udp_capture(path: &Path, flows: u64) {
    let mut w = PcapWriter::create(path);
    let mut rng = Rng(5);
    for i in 0..flows {
        let src = ([10, 9, (i >> 8) as u8, i as u8], 40_000);
        let dst = rng.endpoint();
        w.udp(T0 + i * 1_000, src, (dst.0, dst.1 | 0x8000), b"payload");
    }
    w.finish();
}

fn one_line(stderr: &str, want: &str) {
    assert_eq!(stderr.lines().count(), 1, "one line on stderr: {stderr:?}");
    assert!(stderr.contains(want), "{want:?} in {stderr:?}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// Every line of `text` is a complete JSON record.
fn whole_lines(text: &str) -> usize {
    assert!(
        text.is_empty() || text.ends_with('\n'),
        "ends in a partial line"
    );
    for l in text.lines() {
        serde_json::from_str::<serde_json::Value>(l)
            .unwrap_or_else(|e| panic!("partial or bad line ({e}): {l}"));
    }
    text.lines().count()
}

#[test]
fn output_that_cannot_be_opened_is_one_line() {
    let dir = scratch("open");
    let pcap = dir.join("in.pcap");
    udp_capture(&pcap, 3);
    let target = dir.join("no-such-dir/out.json");
    let out = common::run(
        &[
            "replay",
            "--quiet",
            "--output",
            target.to_str().unwrap(),
            pcap.to_str().unwrap(),
        ],
        Duration::from_secs(60),
    );
    assert!(!out.status.success());
    one_line(&String::from_utf8_lossy(&out.stderr), "cannot open output");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn stdout_on_a_full_device_is_one_line_and_non_zero() {
    let dir = scratch("devfull");
    let pcap = dir.join("in.pcap");
    udp_capture(&pcap, 200);
    let out = Command::new(common::bin())
        .args(["replay", "--quiet"])
        .arg(&pcap)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create("/dev/full").unwrap())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert!(!out.status.success(), "disk full is a failure");
    one_line(
        &String::from_utf8_lossy(&out.stderr),
        "No space left on device",
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Runs `script` (sh) in a private mount namespace with `$NJ` the binary,
/// `$D` a directory to mount on, `$IN` the capture. `None` if namespaces or
/// mounts are not available here.
fn in_mount_namespace(dir: &Path, pcap: &Path, script: &str) -> Option<std::process::Output> {
    let mnt = dir.join("mnt");
    std::fs::create_dir_all(&mnt).unwrap();
    let probe = Command::new("unshare")
        .args([
            "-m",
            "sh",
            "-c",
            "mount -t tmpfs -o size=64k none \"$0\"",
            mnt.to_str().unwrap(),
        ])
        .output()
        .ok()?;
    if !probe.status.success() {
        eprintln!(
            "skipped: cannot mount a tmpfs in a private namespace here ({})",
            String::from_utf8_lossy(&probe.stderr).trim()
        );
        return None;
    }
    Some(
        Command::new("unshare")
            .args(["-m", "sh", "-c", script])
            .env("NJ", common::bin())
            .env("D", &mnt)
            .env("IN", pcap)
            .env("SAVE", dir.join("saved.json"))
            .stdin(Stdio::null())
            .output()
            .unwrap(),
    )
}

#[test]
fn disk_full_mid_replay_leaves_only_whole_lines() {
    let dir = scratch("full");
    let pcap = dir.join("in.pcap");
    // About 2 MB of records into a 200 KiB file system.
    udp_capture(&pcap, 2_000);
    let script = r#"
        mount -t tmpfs -o size=200k none "$D" || exit 99
        "$NJ" replay --quiet --output "$D/out.json" "$IN"
        code=$?
        cp "$D/out.json" "$SAVE"
        exit $code
    "#;
    let Some(out) = in_mount_namespace(&dir, &pcap, script) else {
        return;
    };
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(99), "{stderr}");
    assert!(!out.status.success(), "disk full is a failure");
    one_line(&stderr, "No space left on device");
    let saved = std::fs::read_to_string(dir.join("saved.json")).unwrap();
    let lines = whole_lines(&saved);
    assert!(lines > 0, "the records that fitted were kept");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn read_only_output_directory_is_one_line() {
    let dir = scratch("ro");
    let pcap = dir.join("in.pcap");
    udp_capture(&pcap, 3);
    let script = r#"
        mount -t tmpfs -o size=64k,ro none "$D" || exit 99
        exec "$NJ" replay --quiet --output "$D/out.json" "$IN"
    "#;
    let Some(out) = in_mount_namespace(&dir, &pcap, script) else {
        return;
    };
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(99), "{stderr}");
    assert!(!out.status.success());
    one_line(&stderr, "Read-only file system");
    std::fs::remove_dir_all(&dir).unwrap();
}
