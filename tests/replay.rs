//! Whole-binary replay behaviour: determinism, worker equivalence, errors.

mod common;

use common::*;
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(120);

/// Captures with TLS, QUIC, DNS, VLANs and tunnels, for the equivalence tests.
const MIXED: &[&str] = &[
    "arkime/tests/pcap/openssl-tls1.pcap",
    "arkime/tests/pcap/gre-sample.pcap",
    "arkime/tests/pcap/tls13.pcap",
    "arkime/tests/pcap/quic34.pcap",
    "arkime/tests/pcap/dns-https.pcap",
    "zeek/testing/btest/Traces/tls/tls13draft16-chrome55.0.2879.0-canary.pcap",
];

fn mixed_paths() -> Option<Vec<String>> {
    let c = corpus()?;
    Some(
        MIXED
            .iter()
            .map(|f| c.join(f).display().to_string())
            .filter(|p| std::path::Path::new(p).exists())
            .collect(),
    )
}

#[test]
fn same_input_gives_same_records() {
    let Some(files) = mixed_paths() else {
        return eprintln!("corpus absent: skipped");
    };
    let mut args = vec!["replay", "--quiet"];
    args.extend(files.iter().map(String::as_str));
    let a = run(&args, LIMIT);
    let b = run(&args, LIMIT);
    assert!(a.status.success() && b.status.success());
    let (ra, rb) = (records(&a), records(&b));
    assert!(sorted_flows(&ra).len() > 10, "expected many flows");
    // Everything but the stats record (which carries elapsed time) is identical, in order.
    let strip = |v: &[serde_json::Value]| {
        v.iter()
            .filter(|r| dataset(r) != "nightjar.stats")
            .map(|r| r.to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(strip(&ra), strip(&rb));
}

#[test]
fn two_workers_give_the_same_flows_as_one() {
    let Some(files) = mixed_paths() else {
        return eprintln!("corpus absent: skipped");
    };
    let mut one = vec!["replay", "--quiet", "--workers", "1"];
    one.extend(files.iter().map(String::as_str));
    let mut two = vec!["replay", "--quiet", "--workers", "2"];
    two.extend(files.iter().map(String::as_str));
    let a = records(&run(&one, LIMIT));
    let b = records(&run(&two, LIMIT));
    assert_eq!(sorted_flows(&a), sorted_flows(&b));
    let stats = |v: &[serde_json::Value]| {
        v.iter().find(|r| dataset(r) == "nightjar.stats").unwrap()["nightjar"]["stats"]["packets"]
            .clone()
    };
    assert_eq!(stats(&a), stats(&b));
}

/// The AN1717 demo with its MDM inputs: flows that end idle in a sweep are emitted
/// at their own idle boundary and shards emit in one order, so attribution, alerts,
/// coverage and governance (which keep state across flows) come out the same, in
/// the same order, for any number of workers.
#[test]
fn two_workers_give_the_same_records_in_order_with_detection() {
    let r = repo();
    let path = |p: &str| r.join(p).to_string_lossy().into_owned();
    let (inv, ev, cat, pcap) = (
        path("config/demo/inventory.json"),
        path("config/demo/events.ndjson"),
        path("config/demo/catalog.json"),
        path("pcaps/demo-an1717.pcap"),
    );
    let args = |w: &'static str| {
        let base = ["replay", "--quiet", "--workers", w, "--inventory"];
        let mut v: Vec<String> = base.iter().map(|s| s.to_string()).collect();
        v.extend([inv.clone(), "--events".into(), ev.clone()]);
        v.extend(["--catalog".into(), cat.clone(), pcap.clone()]);
        v
    };
    let lines = |w: &'static str| {
        let a = args(w);
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        let out = run(&a, LIMIT);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        records(&out)
            .iter()
            .filter(|r| dataset(r) != "nightjar.stats")
            .map(|r| r.to_string())
            .collect::<Vec<_>>()
    };
    let (one, two) = (lines("1"), lines("2"));
    assert!(
        one.iter().any(|l| l.contains("\"nightjar.alert\"")),
        "the demo alerts"
    );
    assert_eq!(one.len(), two.len());
    for (i, (a, b)) in one.iter().zip(&two).enumerate() {
        assert_eq!(a, b, "record {i} differs");
    }
}

#[test]
fn stats_record_closes_the_output() {
    let Some(files) = mixed_paths() else {
        return eprintln!("corpus absent: skipped");
    };
    let out = run(&["replay", "--quiet", &files[0]], LIMIT);
    let recs = records(&out);
    let last = recs.last().unwrap();
    assert_eq!(dataset(last), "nightjar.stats");
    let s = &last["nightjar"]["stats"];
    assert_eq!(s["packets"], 20);
    assert_eq!(s["flows"]["created"], 1);
    assert_eq!(s["frames_by_linktype"]["ethernet"], 20);
}

fn scratch(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("nightjar-test-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn one_error_line(out: &std::process::Output, want: &str) {
    assert!(!out.status.success(), "should fail");
    let err = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "one line on stderr, got: {err}");
    assert!(lines[0].contains(want), "{err}");
}

#[test]
fn missing_empty_and_foreign_files_are_one_clear_line() {
    let d = scratch("errors");
    let empty = d.join("empty.pcap");
    std::fs::write(&empty, b"").unwrap();
    let text = d.join("notes.txt");
    std::fs::write(&text, b"hello, this is not a capture\n").unwrap();
    one_error_line(
        &run(&["replay", "--quiet", "/nonexistent/x.pcap"], LIMIT),
        "x.pcap",
    );
    one_error_line(
        &run(&["replay", "--quiet", empty.to_str().unwrap()], LIMIT),
        "empty",
    );
    one_error_line(
        &run(&["replay", "--quiet", text.to_str().unwrap()], LIMIT),
        "notes.txt",
    );
}

#[test]
fn truncated_file_keeps_the_records_before_the_cut() {
    let Some(c) = corpus() else {
        return eprintln!("corpus absent: skipped");
    };
    let src = std::fs::read(c.join("arkime/tests/pcap/openssl-tls1.pcap")).unwrap();
    let d = scratch("trunc");
    let cut = d.join("cut.pcap");
    std::fs::write(&cut, &src[..src.len() - 100]).unwrap();
    let out = run(&["replay", "--quiet", cut.to_str().unwrap()], LIMIT);
    one_error_line(&out, "cut.pcap");
    let recs = records(&out); // every line is valid JSON
    let flow = recs
        .iter()
        .find(|r| dataset(r) == "nightjar.flow")
        .expect("the flow read so far is written");
    assert_eq!(
        flow["tls"]["client"]["ja3"],
        "503053a0c5b2bd9b9334bf7f3d3b8852"
    );
    assert!(recs.iter().any(|r| dataset(r) == "nightjar.stats"));
}

#[test]
fn several_files_are_one_stream_and_stdin_works() {
    let Some(c) = corpus() else {
        return eprintln!("corpus absent: skipped");
    };
    let f = c.join("arkime/tests/pcap/openssl-tls1.pcap");
    let fs = f.to_str().unwrap();
    let twice = records(&run(&["replay", "--quiet", fs, fs], LIMIT));
    let flow = twice
        .iter()
        .filter(|r| dataset(r) == "nightjar.flow")
        .count();
    // The same packets twice: the second copy continues the (closed) flow or starts a new one, never crashes.
    assert!(flow >= 1);
    let stdin = std::process::Command::new(bin())
        .args(["replay", "--quiet", "-"])
        .stdin(std::fs::File::open(&f).unwrap())
        .output()
        .unwrap();
    assert!(stdin.status.success());
    assert_eq!(
        sorted_flows(&records(&stdin)),
        sorted_flows(&records(&run(&["replay", "--quiet", fs], LIMIT)))
    );
}

#[test]
fn check_config_reports_problems_by_key() {
    let d = scratch("cfg");
    let cfg = d.join("n.toml");
    std::fs::write(&cfg, "[flow]\nudp_timeout = \"ten\"\n").unwrap();
    let out = run(&["check-config", "--config", cfg.to_str().unwrap()], LIMIT);
    one_error_line(&out, "flow.udp_timeout");
    std::fs::write(
        &cfg,
        format!(
            "[state]\ndir = {:?}\n[metrics]\nlisten = \"127.0.0.1:0\"\n",
            d.display()
        ),
    )
    .unwrap();
    let out = run(&["check-config", "--config", cfg.to_str().unwrap()], LIMIT);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}
