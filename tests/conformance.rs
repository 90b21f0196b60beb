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

/// Replays one corpus capture and returns all its records (flows, then stats).
fn replay(corpus: &std::path::Path, file: &str) -> Vec<serde_json::Value> {
    let path = corpus.join(file);
    let out = run(
        &["replay", "--quiet", path.to_str().unwrap()],
        Duration::from_secs(60),
    );
    assert!(out.status.success(), "{file}: exit {:?}", out.status);
    records(&out)
}

/// The flow records between two endpoints ("ip:port", or "ip" for ICMP), in
/// output order, each as (client packets, server packets, record), with the
/// counts read in the `a` → `b` direction whichever side nightjar chose as client.
fn between<'r>(
    recs: &'r [serde_json::Value],
    transport: &str,
    a: &str,
    b: &str,
) -> Vec<(u64, u64, &'r serde_json::Value)> {
    let end = |r: &serde_json::Value, side: &str| match r[side]["port"].as_u64() {
        Some(p) if r[side]["ip"].as_str().unwrap_or("").contains(':') => {
            format!("[{}]:{p}", r[side]["ip"].as_str().unwrap())
        }
        Some(p) => format!("{}:{p}", r[side]["ip"].as_str().unwrap_or("")),
        None => r[side]["ip"].as_str().unwrap_or("").to_string(),
    };
    recs.iter()
        .filter(|r| dataset(r) == "nightjar.flow" && r["network"]["transport"] == transport)
        .filter_map(|r| {
            let (s, d) = (end(r, "source"), end(r, "destination"));
            let (sp, dp) = (
                r["source"]["packets"].as_u64().unwrap(),
                r["destination"]["packets"].as_u64().unwrap(),
            );
            if (s.as_str(), d.as_str()) == (a, b) {
                Some((sp, dp, r))
            } else if (s.as_str(), d.as_str()) == (b, a) {
                Some((dp, sp, r))
            } else {
                None
            }
        })
        .collect()
}

/// Seconds since the epoch of a record timestamp `YYYY-MM-DDTHH:MM:SS[.frac]Z`.
fn epoch_seconds(ts: &str) -> f64 {
    let num = |r: std::ops::Range<usize>| ts[r].parse::<i64>().unwrap();
    let (y, m, d) = (num(0..4), num(5..7), num(8..10));
    // Days from 1970-01-01 to y-m-d (proleptic Gregorian), shifting the year to
    // start in March so the leap day is last.
    let (y, m) = if m <= 2 { (y - 1, m + 9) } else { (y, m - 3) };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * m + 2) / 5 + d - 1;
    let days = era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719_468;
    let secs: f64 = ts[17..ts.len() - 1].parse().unwrap();
    (days * 86_400 + num(11..13) * 3600 + num(14..16) * 60) as f64 + secs
}

/// Checks that consecutive records of one UDP 5-tuple were ended by the idle
/// timeout and are more than `flow.udp_timeout` (60 s by default) apart, and
/// that their packet counts add up to the peers' single-flow counts.
fn split_by_idle_gaps(flows: &[(u64, u64, &serde_json::Value)], want: (u64, u64), what: &str) {
    assert!(flows.len() >= 2, "{what}: expected several records");
    for w in flows.windows(2) {
        let (prev, next) = (w[0].2, w[1].2);
        assert_eq!(
            prev["nightjar"]["flow"]["termination"], "idle_timeout",
            "{what}"
        );
        let gap = epoch_seconds(next["event"]["start"].as_str().unwrap())
            - epoch_seconds(prev["event"]["end"].as_str().unwrap());
        assert!(gap > 60.0, "{what}: records only {gap} s apart");
    }
    let sum = flows
        .iter()
        .fold((0, 0), |(c, s), (fc, fs, _)| (c + fc, s + fs));
    assert_eq!(sum, want, "{what}: packets over all records");
}

#[test]
fn epoch_seconds_of_record_timestamps() {
    assert_eq!(epoch_seconds("1970-01-01T00:00:00Z"), 0.0);
    assert_eq!(epoch_seconds("2000-03-01T00:00:01.5Z"), 951_868_801.5);
    let gap = epoch_seconds("2017-10-13T16:26:21.436327000Z")
        - epoch_seconds("2017-10-13T16:25:21.101187000Z");
    assert!((gap - 60.33514).abs() < 1e-6, "{gap}");
}

/// Each reason in `tests/conformance-exceptions.tsv` is a claim about the
/// capture and nightjar's output; this checks the claims, so that a listed
/// exception stays justified and a new one cannot be listed without a check.
#[test]
fn listed_exception_reasons_hold() {
    let Some(c) = corpus() else {
        return eprintln!("corpus absent: skipped");
    };
    let text = std::fs::read_to_string(repo().join("tests/conformance-exceptions.tsv")).unwrap();
    let files: BTreeSet<&str> = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| l.split('\t').next().unwrap())
        .collect();
    for file in files {
        let recs = replay(&c, file);
        let stats = &recs.last().unwrap()["nightjar"]["stats"];
        let name = file.rsplit('/').next().unwrap();
        match name {
            "vxlan.pcap" => {
                // Same bytes in Arkime's and Zeek's suites.
                assert_eq!(stats["decode_anomalies"]["not_ip"], 2, "{file}");
                assert_eq!(between(&recs, "icmp", "10.0.0.1", "10.0.0.2").len(), 1);
                assert!(recs.iter().all(|r| !r.to_string().contains("192.168.56.")));
            }
            "4in4tunnel.pcap" => {
                let f = between(&recs, "udp", "10.10.100.25:62367", "10.10.101.2:17000");
                assert_eq!(f.len(), 5, "{file}");
                split_by_idle_gaps(&f, (5, 0), file);
            }
            "dtls2.pcap" => {
                let f = between(&recs, "udp", "61.68.110.153:53045", "212.32.214.39:61457");
                assert_eq!((f[0].0, f[0].1), (12, 14), "{file}");
                split_by_idle_gaps(&f, (14, 16), file);
            }
            "quic-mvfst-22.pcap" => {
                let f = between(&recs, "udp", "10.0.2.15:35601", "31.13.86.8:443");
                let first = f[0].2;
                assert_eq!((f[0].0, f[0].1), (188, 301), "{file}");
                assert_eq!(first["tls"]["client"]["server_name"], "graph.facebook.com");
                assert_eq!(first["nightjar"]["quic"]["version"], "0xfaceb001");
                assert_eq!(
                    first["tls"]["client"]["alpn"],
                    serde_json::json!(["h3-fb-05", "h1q-fb"])
                );
                split_by_idle_gaps(&f, (188, 302), file);
            }
            "smtp-starttls.pcap" => {
                let f = between(&recs, "tcp", "10.0.0.1:57406", "173.194.68.26:25");
                let tls = &f[0].2["tls"];
                assert_eq!(tls["client"]["ja3"], "fab507fe132c544e8a0eb7c394affeae");
                assert!(tls["client"].get("server_name").is_none(), "{file}");
                let subject = tls["server"]["x509"]["subject"]["distinguished_name"]
                    .as_str()
                    .unwrap();
                assert!(subject.ends_with("CN=mx.google.com"), "{subject}");
            }
            "input.pcap" if file.contains("bug-3616") => {
                let tcp = between(&recs, "tcp", "10.10.1.4:1470", "74.53.140.153:25");
                let icmp = between(&recs, "icmp", "192.168.1.1", "10.10.1.4");
                assert_eq!((tcp.len(), tcp[0].1), (1, 25), "{file}");
                assert_eq!((icmp.len(), icmp[0].0), (1, 4), "{file}");
            }
            "ayiya-large-identity.pcap" => {
                assert_eq!(stats["packets"], 1, "{file}");
                let outer = between(&recs, "udp", "10.0.0.1:12345", "10.0.0.2:5072");
                assert_eq!((outer.len(), outer[0].0), (1, 1), "{file}");
                assert!(recs.iter().all(|r| !r.to_string().contains("fd00::")));
            }
            "gre-aruba-amsdu.pcap" => {
                assert_eq!(stats["packets"], 1, "{file}");
                assert_eq!(stats["decode_anomalies"]["not_ip"], 1, "{file}");
                assert_eq!(stats["flows"]["created"], 0, "{file}");
            }
            "vntag_vlan_sandwich_clean.pcap" => {
                assert_eq!(stats["packets"], 1, "{file}");
                let f = between(&recs, "tcp", "10.10.10.2:56960", "10.10.10.1:443");
                assert_eq!((f.len(), f[0].0, f[0].1), (1, 0, 1), "{file}");
                assert_eq!(
                    f[0].2["source"]["ip"], "10.10.10.2",
                    "SYN-ACK receiver is the client"
                );
                assert_eq!(f[0].2["destination"]["bytes"], 60, "{file}");
            }
            _ => panic!(
                "{file}: listed in conformance-exceptions.tsv but its reason is not checked here"
            ),
        }
    }
}
