//! Conformance with the shared corpus: every capture replays (exit 0, JSON
//! lines, no hang), and `check.py` finds no disagreement and nothing missing
//! except the cases listed in `tests/conformance-exceptions.tsv`, each with
//! its reason. An exception that no longer occurs is an error too, so the
//! list stays true.

mod common;

use common::*;
use std::collections::BTreeSet;
use std::process::Command;
use std::time::Duration;

#[test]
fn every_corpus_capture_replays() {
    let Some(c) = corpus() else {
        return eprintln!("corpus absent: skipped");
    };
    let list = std::fs::read_to_string(c.join("PROVENANCE.tsv")).unwrap();
    let mut n = 0;
    for line in list.lines().skip(1) {
        let file = line.split('\t').next().unwrap();
        let path = c.join(file);
        let out = run(
            &["replay", "--quiet", path.to_str().unwrap()],
            Duration::from_secs(60),
        );
        assert!(
            out.status.success(),
            "{file}: exit {:?}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        let recs = records(&out);
        assert_eq!(
            recs.last().map(dataset),
            Some("nightjar.stats"),
            "{file}: no stats record"
        );
        n += 1;
    }
    assert!(n >= 331, "only {n} captures listed");
}

#[test]
fn checker_agrees_except_listed_cases() {
    let Some(c) = corpus() else {
        return eprintln!("corpus absent: skipped");
    };
    let report =
        std::env::temp_dir().join(format!("nightjar-conformance-{}.json", std::process::id()));
    let sensor = format!("{} replay --quiet {{pcap}}", bin());
    let status = Command::new("python3")
        .arg(c.join("check.py"))
        .args(["--expect", c.join("expect.jsonl").to_str().unwrap()])
        .args(["--corpus", c.to_str().unwrap()])
        .args([
            "--sensor",
            &sensor,
            "--jobs",
            "2",
            "--json",
            report.to_str().unwrap(),
        ])
        .status()
        .expect("python3 runs check.py");
    assert!(status.code().is_some(), "check.py was killed");
    let rep: serde_json::Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();

    let exceptions_text =
        std::fs::read_to_string(repo().join("tests/conformance-exceptions.tsv")).unwrap();
    let mut allowed = BTreeSet::new();
    for (i, line) in exceptions_text.lines().enumerate() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let cols: Vec<&str> = line.split('\t').collect();
        assert!(
            cols.len() == 4 && !cols[3].trim().is_empty(),
            "exceptions line {}: want file, flow, field, reason",
            i + 1
        );
        allowed.insert((
            cols[0].to_string(),
            cols[1].to_string(),
            cols[2].to_string(),
        ));
    }

    let mut unexpected = Vec::new();
    let mut seen = BTreeSet::new();
    for p in rep["problems"].as_array().unwrap() {
        let key = (
            p["file"].as_str().unwrap().to_string(),
            p["flow"].as_str().unwrap().to_string(),
            p["field"].as_str().unwrap().to_string(),
        );
        if allowed.contains(&key) {
            seen.insert(key);
        } else {
            unexpected.push(format!(
                "{} {} {}: {} expected {} got {} {}",
                key.0, key.1, key.2, p["result"], p["expected"], p["got"], p["why"]
            ));
        }
    }
    let stale: Vec<_> = allowed.difference(&seen).collect();
    let t = &rep["total"];
    eprintln!(
        "conformance: {} of {} checks agree; {} listed exceptions",
        t["agree"],
        t["checked"],
        allowed.len()
    );
    assert!(
        unexpected.is_empty(),
        "{} unexpected problems:\n{}",
        unexpected.len(),
        unexpected.join("\n")
    );
    assert!(
        stale.is_empty(),
        "exceptions that no longer occur (remove them): {stale:?}"
    );
}
