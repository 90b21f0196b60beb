//! Golden captures: runs the built `nightjar replay` on every `pcaps/*.pcap` that has a
//! `.expected.jsonl` beside it and compares the flow records field by field.
//!
//! The expectations come from `pcaps/make-expected.py` (tshark's view of each capture, not
//! nightjar's), one JSON object per expected flow whose keys are dotted paths into the flow
//! record. The 5-tuple keys pick the flow; every other key is compared:
//! - `null` expects the field to be absent or null;
//! - an object expects each of its keys to match (the record may hold more keys);
//! - an array expects the same length and each element to match;
//! - anything else expects equality.
//!
//! Every capture must yield exactly as many flow records as it has expected lines.
//! The captures are made by `pcaps/make-captures.sh`; see `pcaps/README.md`.

use serde_json::Value;
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Keys of an expected line that identify its flow rather than being compared.
const FLOW_KEY: [&str; 5] = [
    "source.ip",
    "source.port",
    "destination.ip",
    "destination.port",
    "network.transport",
];

fn pcaps_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("pcaps")
}

/// The captures that have expectations, sorted by name.
fn golden_captures() -> Vec<PathBuf> {
    let dir = pcaps_dir();
    let entries = fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let mut pcaps: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "pcap"))
        .filter(|p| expected_path(p).exists())
        .collect();
    pcaps.sort();
    pcaps
}

fn expected_path(pcap: &Path) -> PathBuf {
    pcap.with_extension("expected.jsonl")
}

fn name(pcap: &Path) -> String {
    pcap.file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned())
}

/// All records `nightjar replay --quiet` prints for one capture.
fn replay(pcap: &Path) -> Vec<Value> {
    let out = Command::new(env!("CARGO_BIN_EXE_nightjar"))
        .args(["replay", "--quiet"])
        .arg(pcap)
        .output()
        .unwrap_or_else(|e| panic!("{}: cannot run nightjar: {e}", name(pcap)));
    assert!(
        out.status.success(),
        "{}: nightjar replay failed ({}): {}",
        name(pcap),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            serde_json::from_str(l)
                .unwrap_or_else(|e| panic!("{}: output line is not JSON ({e}): {l}", name(pcap)))
        })
        .collect()
}

fn flow_records(pcap: &Path) -> Vec<Value> {
    let records = replay(pcap);
    assert!(
        records
            .iter()
            .any(|r| dotted(r, "event.dataset") == Some(&Value::from("nightjar.stats"))),
        "{}: no nightjar.stats record at the end of the output",
        name(pcap)
    );
    records
        .into_iter()
        .filter(|r| dotted(r, "event.dataset") == Some(&Value::from("nightjar.flow")))
        .collect()
}

fn expected_flows(pcap: &Path) -> Vec<serde_json::Map<String, Value>> {
    let path = expected_path(pcap);
    let text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| match serde_json::from_str(l) {
            Ok(Value::Object(m)) => m,
            _ => panic!("{}: not a JSON object: {l}", path.display()),
        })
        .collect()
}

/// The value at a dotted path ("tls.client.ja4") in nested JSON objects.
fn dotted<'a>(record: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(record, |v, key| v.get(key))
}

/// "10.77.0.2:46472 -> 10.77.0.1:443/tcp" for messages; works on records and expectations.
fn describe(get: impl Fn(&str) -> Option<Value>) -> String {
    let s = |k: &str| get(k).map_or_else(|| "?".to_string(), |v| v.to_string().replace('"', ""));
    format!(
        "{}:{} -> {}:{}/{}",
        s(FLOW_KEY[0]),
        s(FLOW_KEY[1]),
        s(FLOW_KEY[2]),
        s(FLOW_KEY[3]),
        s(FLOW_KEY[4])
    )
}

/// Why `actual` does not match `expected` (rules in the module comment), if it does not.
fn mismatch(expected: &Value, actual: Option<&Value>) -> Option<String> {
    let actual = actual.filter(|a| !a.is_null());
    match (expected, actual) {
        (Value::Null, None) => None,
        (Value::Null, Some(a)) => Some(format!("expected absent, got {a}")),
        (e, None) => Some(format!("expected {e}, field absent")),
        (Value::Object(e), Some(a)) => e
            .iter()
            .find_map(|(k, ev)| mismatch(ev, a.get(k)).map(|why| format!(".{k}: {why} (in {a})"))),
        (Value::Array(e), Some(Value::Array(a))) if e.len() != a.len() => Some(format!(
            "expected {} elements {}, got {} elements {}",
            e.len(),
            expected,
            a.len(),
            Value::Array(a.clone())
        )),
        (Value::Array(e), Some(Value::Array(a))) => e
            .iter()
            .zip(a)
            .enumerate()
            .find_map(|(i, (ev, av))| mismatch(ev, Some(av)).map(|why| format!("[{i}]: {why}"))),
        (e, Some(a)) if e == a => None,
        (e, Some(a)) => Some(format!("expected {e}, got {a}")),
    }
}

/// Every disagreement between one capture's flow records and its expectations.
fn check_capture(pcap: &Path) -> Vec<String> {
    let capture = name(pcap);
    let flows = flow_records(pcap);
    let expected = expected_flows(pcap);
    let mut problems = Vec::new();
    if flows.len() != expected.len() {
        let seen: Vec<String> = flows
            .iter()
            .map(|f| describe(|k| dotted(f, k).cloned()))
            .collect();
        problems.push(format!(
            "{capture}: {} flow records, {} expected; records: {seen:?}",
            flows.len(),
            expected.len()
        ));
    }
    for exp in &expected {
        let flow_name = describe(|k| exp.get(k).cloned());
        let matching: Vec<&Value> = flows
            .iter()
            .filter(|f| FLOW_KEY.iter().all(|k| dotted(f, k) == exp.get(*k)))
            .collect();
        let [flow] = matching.as_slice() else {
            problems.push(format!(
                "{capture}: flow {flow_name}: {} matching flow records, expected 1",
                matching.len()
            ));
            continue;
        };
        for (field, value) in exp.iter().filter(|(k, _)| !FLOW_KEY.contains(&k.as_str())) {
            if let Some(why) = mismatch(value, dotted(flow, field)) {
                problems.push(format!("{capture}: flow {flow_name}: field {field}: {why}"));
            }
        }
    }
    problems
}

#[test]
fn golden_captures_match_expectations() {
    let captures = golden_captures();
    assert!(
        !captures.is_empty(),
        "no pcaps/*.pcap with a .expected.jsonl beside it under {}",
        pcaps_dir().display()
    );
    let problems: Vec<String> = captures.iter().flat_map(|p| check_capture(p)).collect();
    assert!(
        problems.is_empty(),
        "{} mismatch(es) in {} golden captures:\n{}",
        problems.len(),
        captures.len(),
        problems.join("\n")
    );
}

/// ja3 and ja4 of each TLS flow, keyed by its 5-tuple.
fn fingerprints(pcap: &Path) -> BTreeMap<String, (Value, Value)> {
    flow_records(pcap)
        .iter()
        .filter_map(|f| {
            let ja3 = dotted(f, "tls.client.ja3")?.clone();
            let ja4 = dotted(f, "tls.client.ja4")?.clone();
            Some((describe(|k| dotted(f, k).cloned()), (ja3, ja4)))
        })
        .collect()
}

#[test]
fn reordered_split_hello_gives_the_same_fingerprints() {
    let dir = pcaps_dir();
    let in_order = fingerprints(&dir.join("tls13-split-hello.pcap"));
    let reordered = fingerprints(&dir.join("tls13-split-hello-reordered.pcap"));
    assert!(
        !in_order.is_empty(),
        "tls13-split-hello.pcap: no TLS flow with ja3 and ja4"
    );
    assert_eq!(
        in_order, reordered,
        "tls13-split-hello-reordered.pcap: ja3/ja4 per flow differ from tls13-split-hello.pcap"
    );
}

#[test]
fn mismatch_rules() {
    let v = |s: &str| -> Value { serde_json::from_str(s).unwrap_or(Value::Null) };
    assert_eq!(mismatch(&Value::Null, None), None);
    assert_eq!(mismatch(&Value::Null, Some(&Value::Null)), None);
    assert!(mismatch(&Value::Null, Some(&v("1"))).is_some());
    assert!(mismatch(&v("1"), None).is_some());
    assert_eq!(
        mismatch(&v(r#"{"a":1}"#), Some(&v(r#"{"a":1,"b":2}"#))),
        None
    );
    assert!(mismatch(&v(r#"[{"a":1}]"#), Some(&v(r#"[{"a":1},{"a":2}]"#))).is_some());
    assert!(mismatch(&v(r#"["x"]"#), Some(&v(r#"["y"]"#))).is_some());
    let rec = v(r#"{"tls":{"client":{"ja4":"t13"}}}"#);
    assert_eq!(dotted(&rec, "tls.client.ja4"), Some(&v(r#""t13""#)));
    assert_eq!(dotted(&rec, "tls.server.ja3s"), None);
}
