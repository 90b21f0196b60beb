//! Helpers shared by the integration tests: running the built binary and
//! reading its JSON-lines output.

#![allow(dead_code)]

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_nightjar")
}

/// The shared conformance corpus: `$NIGHTJAR_CORPUS` if set (it must then hold the
/// corpus: a wrong path fails rather than skips), else `../shared/corpus` beside this
/// checkout, if it is there.
pub fn corpus() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("NIGHTJAR_CORPUS").map(PathBuf::from) {
        assert!(
            p.join("expect.jsonl").exists(),
            "NIGHTJAR_CORPUS={} holds no expect.jsonl",
            p.display()
        );
        return Some(p);
    }
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/corpus");
    p.join("expect.jsonl").exists().then_some(p)
}

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Runs the binary with a wall-clock limit (a hang is a failure, not a stuck test).
pub fn run(args: &[&str], limit: Duration) -> Output {
    let mut child = Command::new(bin())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start nightjar");
    let started = Instant::now();
    let stdout = child.stdout.take().unwrap();
    let stderr = child.stderr.take().unwrap();
    let out_t = std::thread::spawn(move || std::io::read_to_string(stdout).unwrap_or_default());
    let err_t = std::thread::spawn(move || std::io::read_to_string(stderr).unwrap_or_default());
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            panic!("nightjar {args:?} ran longer than {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    Output {
        status,
        stdout: out_t.join().unwrap().into_bytes(),
        stderr: err_t.join().unwrap().into_bytes(),
    }
}

/// Every stdout line parsed as JSON (panics on a line that is not).
pub fn records(out: &Output) -> Vec<Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line: {e}: {l}")))
        .collect()
}

pub fn dataset(r: &Value) -> &str {
    r["event"]["dataset"].as_str().unwrap_or("")
}

/// Flow records as sorted JSON texts (order-independent comparison).
pub fn sorted_flows(recs: &[Value]) -> Vec<String> {
    let mut v: Vec<String> = recs
        .iter()
        .filter(|r| dataset(r) == "nightjar.flow")
        .map(|r| r.to_string())
        .collect();
    v.sort();
    v
}
pub mod pcap;
