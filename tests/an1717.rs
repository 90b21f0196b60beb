//! Evaluation of attribution and AN1717 on generated, labelled scenarios.
//!
//! For each generator seed: three benign days train the baselines (carried from one
//! replay to the next as `--baseline` would), two benign days measure false alerts,
//! two days with malicious episodes measure recall. Attribution is measured on every
//! test-day flow whose app has a distinctive domain. The figures are printed (run with
//! `--nocapture` to see them) and asserted against the targets of issue 6:
//! recall ≥ 0.95, ≤ 0.05 false alerts per device-day on benign days, attribution
//! ≥ 97 %.

use nightjar::correlate::baseline::Baselines;
use nightjar::correlate::detect::DetectConfig;
use nightjar::correlate::{AnalysisOptions, Correlator, CorrelatorOptions};
use nightjar::mdm;
use nightjar::output::Sink;
use nightjar::pipeline::replay::{replay, ReplayOptions};
use nightjar::scenario::{generate, Scenario, ScenarioConfig};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

const DEVICES: usize = 5;
const SEEDS: [u64; 4] = [1, 2, 3, 4];
/// Benign days that train the baselines before anything is measured.
const TRAIN_DAYS: u32 = 3;
/// An alert matches a malicious episode when it overlaps its window widened by this.
const SLACK_NS: u64 = 600 * 1_000_000_000;

struct DayResult {
    records: Vec<Value>,
    baselines: Baselines,
}

fn tmpdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("nj-an1717-{}-{tag}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Replays one generated day in-process with the given baselines.
fn run_day(s: &Scenario, dir: &Path, baselines: Option<Baselines>) -> DayResult {
    let pcap = dir.join("day.pcap");
    std::fs::write(&pcap, &s.pcap).unwrap();
    let out = dir.join("out.json");
    let _ = std::fs::remove_file(&out);
    let inventory = mdm::parse_inventory(&s.inventory_json, "inventory").unwrap();
    let mut cb = mdm::CatalogBuilder::new();
    cb.add_text(&s.catalog_json, mdm::CatalogFormat::Json, "catalog")
        .unwrap();
    let events = mdm::read_events(s.events_ndjson.as_bytes(), "events").unwrap();
    let mut correlator = Correlator::new(CorrelatorOptions {
        inventory: Some(Arc::new(inventory)),
        analysis: Some(AnalysisOptions {
            baselines,
            detect: DetectConfig::default(),
            evidence: None,
        }),
        ..CorrelatorOptions::default()
    })
    .with_mdm(events, Some(cb.build()));
    let mut sink = Sink::file(&out).unwrap();
    let opts = ReplayOptions {
        inputs: vec![pcap],
        workers: 1,
        flow: Default::default(),
        progress: false,
    };
    let report = replay(&opts, &mut correlator, &mut sink).unwrap();
    assert!(report.error.is_none(), "{:?}", report.error);
    correlator.finish(&report, &mut sink).unwrap();
    sink.flush().unwrap();
    let records = std::fs::read_to_string(&out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    DayResult {
        records,
        baselines: correlator.baselines().unwrap().clone(),
    }
}

fn dataset(r: &Value) -> &str {
    r.pointer("/event/dataset")
        .and_then(Value::as_str)
        .unwrap_or("")
}

fn ns(r: &Value, p: &str) -> u64 {
    r.pointer(p)
        .and_then(Value::as_str)
        .and_then(mdm::parse_rfc3339)
        .unwrap_or(0)
}

/// Alerts (first revision of each alert id) as (device, app, start, end).
fn alerts(records: &[Value]) -> Vec<(String, String, u64, u64)> {
    let mut seen = BTreeSet::new();
    records
        .iter()
        .filter(|r| dataset(r) == "nightjar.alert")
        .filter(|r| {
            seen.insert(
                r.pointer("/nightjar/alert/id")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string(),
            )
        })
        .map(|r| {
            (
                r.pointer("/device/id")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string(),
                r.pointer("/nightjar/app/bundle_id")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string(),
                ns(r, "/event/start"),
                ns(r, "/event/end"),
            )
        })
        .collect()
}

#[derive(Default, Debug)]
struct Figures {
    malicious: usize,
    detected: usize,
    benign_device_days: usize,
    benign_false_alerts: usize,
    malicious_day_false_alerts: usize,
    distinctive_flows: usize,
    distinctive_correct: usize,
    by_kind: BTreeMap<&'static str, (usize, usize)>,
}

/// Attribution: flows with a distinctive domain whose record names the right app.
fn score_attribution(s: &Scenario, records: &[Value], f: &mut Figures) {
    let truth: HashMap<(String, u64), &str> = s
        .truth
        .flows
        .iter()
        .filter(|t| t.distinctive)
        .map(|t| {
            (
                (t.client_ip.clone(), u64::from(t.client_port)),
                t.bundle_id.as_str(),
            )
        })
        .collect();
    for r in records.iter().filter(|r| dataset(r) == "nightjar.flow") {
        let key = (
            r.pointer("/source/ip")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
            r.pointer("/source/port")
                .and_then(Value::as_u64)
                .unwrap_or(0),
        );
        if let Some(want) = truth.get(&key) {
            f.distinctive_flows += 1;
            if r.pointer("/nightjar/app/bundle_id").and_then(Value::as_str) == Some(want) {
                f.distinctive_correct += 1;
            }
        }
    }
}

fn evaluate(seed: u64) -> Figures {
    let dir = tmpdir(&format!("seed{seed}"));
    let mut f = Figures::default();
    let mut baselines = None;
    for day in 0..TRAIN_DAYS + 4 {
        let cfg = ScenarioConfig {
            seed,
            devices: DEVICES,
            day,
            malicious: day >= TRAIN_DAYS + 2,
            ..ScenarioConfig::default()
        };
        let s = generate(&cfg);
        let res = run_day(&s, &dir, baselines.take());
        baselines = Some(res.baselines);
        if day < TRAIN_DAYS {
            continue;
        }
        score_attribution(&s, &res.records, &mut f);
        let found = alerts(&res.records);
        let mut matched = vec![false; found.len()];
        for ep in &s.truth.episodes {
            f.malicious += 1;
            let hit = found.iter().enumerate().find(|(_, (d, a, st, en))| {
                *d == ep.device_id
                    && *a == ep.bundle_id
                    && *st <= ep.end_ns + SLACK_NS
                    && *en + SLACK_NS >= ep.start_ns
            });
            let k = f.by_kind.entry(ep.kind).or_default();
            k.0 += 1;
            if let Some((i, _)) = hit {
                f.detected += 1;
                k.1 += 1;
                matched[i] = true;
            } else {
                println!("seed {seed} day {day}: missed {ep:?}");
            }
        }
        // Every alert overlapping a malicious episode of the same device and app counts as a hit.
        for (i, (d, a, st, en)) in found.iter().enumerate() {
            if s.truth.episodes.iter().any(|ep| {
                *d == ep.device_id
                    && *a == ep.bundle_id
                    && *st <= ep.end_ns + SLACK_NS
                    && *en + SLACK_NS >= ep.start_ns
            }) {
                matched[i] = true;
            }
        }
        let false_alerts = matched.iter().filter(|m| !**m).count();
        for (i, a) in found.iter().enumerate() {
            if !matched[i] {
                println!("seed {seed} day {day}: false alert {a:?}");
            }
        }
        if cfg.malicious {
            f.malicious_day_false_alerts += false_alerts;
        } else {
            f.benign_device_days += DEVICES;
            f.benign_false_alerts += false_alerts;
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    f
}

#[test]
#[ignore = "evaluation over 4 seeds × 7 simulated days: minutes in a debug build; run with --release -- --ignored --nocapture"]
fn an1717_recall_false_alerts_and_attribution_over_seeds() {
    let mut total = Figures::default();
    for seed in SEEDS {
        let f = evaluate(seed);
        println!(
            "seed {seed}: recall {}/{}, benign false alerts {} over {} device-days, \
             malicious-day false alerts {}, attribution {}/{} by kind {:?}",
            f.detected,
            f.malicious,
            f.benign_false_alerts,
            f.benign_device_days,
            f.malicious_day_false_alerts,
            f.distinctive_correct,
            f.distinctive_flows,
            f.by_kind
        );
        total.malicious += f.malicious;
        total.detected += f.detected;
        total.benign_device_days += f.benign_device_days;
        total.benign_false_alerts += f.benign_false_alerts;
        total.malicious_day_false_alerts += f.malicious_day_false_alerts;
        total.distinctive_flows += f.distinctive_flows;
        total.distinctive_correct += f.distinctive_correct;
        for (k, (n, d)) in f.by_kind {
            let e = total.by_kind.entry(k).or_default();
            e.0 += n;
            e.1 += d;
        }
    }
    let recall = total.detected as f64 / total.malicious.max(1) as f64;
    let fa = total.benign_false_alerts as f64 / total.benign_device_days.max(1) as f64;
    let attr = total.distinctive_correct as f64 / total.distinctive_flows.max(1) as f64;
    println!(
        "TOTAL over seeds {SEEDS:?}: recall {recall:.3} ({}/{}), false alerts per benign \
         device-day {fa:.3} ({}/{}), attribution {attr:.4} ({}/{}), by kind {:?}",
        total.detected,
        total.malicious,
        total.benign_false_alerts,
        total.benign_device_days,
        total.distinctive_correct,
        total.distinctive_flows,
        total.by_kind
    );
    assert!(
        total.malicious >= 15,
        "too few malicious episodes generated"
    );
    assert!(
        total.distinctive_flows >= 1000,
        "too few flows to measure attribution"
    );
    assert!(recall >= 0.95, "AN1717 recall {recall:.3} < 0.95");
    assert!(
        fa <= 0.05,
        "{fa:.3} false alerts per benign device-day > 0.05"
    );
    assert!(attr >= 0.97, "attribution {attr:.4} < 0.97");
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn demo_args(extra: &[&str]) -> Vec<String> {
    let demo = repo().join("config/demo");
    let mut a: Vec<String> = vec![
        "replay".into(),
        "--quiet".into(),
        "--inventory".into(),
        demo.join("inventory.json").display().to_string(),
        "--events".into(),
        demo.join("events.ndjson").display().to_string(),
        "--catalog".into(),
        demo.join("catalog.json").display().to_string(),
    ];
    a.extend(extra.iter().map(|s| s.to_string()));
    a.push(repo().join("pcaps/demo-an1717.pcap").display().to_string());
    a
}

fn run_demo(extra: &[&str]) -> Vec<Value> {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_nightjar"))
        .args(demo_args(extra))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The shipped demo: flows with devices and apps, an AN1717 alert that explains
/// itself, coverage per device and governance per app.
#[test]
fn demo_prints_devices_apps_and_an_explained_alert() {
    let recs = run_demo(&[]);
    let flows: Vec<&Value> = recs
        .iter()
        .filter(|r| dataset(r) == "nightjar.flow")
        .collect();
    assert!(flows.iter().any(|r| r.pointer("/device/id").is_some()));
    assert!(flows
        .iter()
        .any(|r| r.pointer("/nightjar/app/method").and_then(Value::as_str) == Some("domain")));
    assert!(flows
        .iter()
        .any(|r| r.pointer("/nightjar/app/method").and_then(Value::as_str) == Some("system")));
    let alert = recs
        .iter()
        .find(|r| {
            dataset(r) == "nightjar.alert"
                && r.pointer("/nightjar/app/bundle_id").and_then(Value::as_str)
                    == Some("com.example.notes")
        })
        .expect("an AN1717 alert for the notes app");
    assert_eq!(alert["rule"]["id"], "AN1717");
    assert_eq!(alert["event"]["kind"], "alert");
    assert_eq!(alert["threat"]["technique"]["id"][0], "T1521");
    assert_eq!(alert["threat"]["tactic"]["id"][0], "TA0037");
    let msg = alert["message"].as_str().unwrap();
    assert!(
        msg.contains("uploaded") && msg.contains("declares no background mode"),
        "{msg}"
    );
    assert!(alert["event"]["risk_score"].as_f64().unwrap() >= 50.0);
    assert!(!alert["network"]["community_id"]
        .as_array()
        .unwrap()
        .is_empty());
    let coverage = recs
        .iter()
        .filter(|r| dataset(r) == "nightjar.coverage")
        .count();
    assert_eq!(coverage, 3, "one coverage record per demo device");
    assert!(recs.iter().any(|r| dataset(r) == "nightjar.governance"
        && r.pointer("/nightjar/governance/verdict")
            .and_then(Value::as_str)
            == Some("review")));
}

/// `--baseline` saves the baselines and loads them on the next run; a corrupt file is
/// one error line, not a panic.
#[test]
fn baseline_file_round_trip() {
    let dir = tmpdir("baseline");
    let path = dir.join("baselines.json");
    let p = path.display().to_string();
    run_demo(&["--baseline", &p]);
    let first = Baselines::load(&path).expect("saved");
    assert!(!first.scopes.is_empty() && !first.apps.is_empty());
    run_demo(&["--baseline", &p]);
    let second = Baselines::load(&path).unwrap();
    assert!(second.scopes.len() >= first.scopes.len());
    std::fs::write(&path, "{not json").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_nightjar"))
        .args(demo_args(&["--baseline", &p]))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Evidence bundles: manifest matches, the report is self-contained, and (when
/// Debian's `chromium` is installed) it renders to a screenshot.
#[test]
fn evidence_bundles_are_self_contained_and_render() {
    use sha2::{Digest, Sha256};
    let dir = tmpdir("evidence");
    let ev = dir.join("ev");
    let recs = run_demo(&["--evidence-dir", &ev.display().to_string()]);
    let ids: BTreeSet<String> = recs
        .iter()
        .filter(|r| dataset(r) == "nightjar.alert")
        .map(|r| r["nightjar"]["alert"]["id"].as_str().unwrap().to_string())
        .collect();
    assert!(!ids.is_empty());
    for id in &ids {
        let b = ev.join(id);
        let manifest = std::fs::read_to_string(b.join("manifest.sha256")).unwrap();
        assert_eq!(manifest.lines().count(), 3);
        for line in manifest.lines() {
            let (hash, name) = line.split_once("  ").unwrap();
            let data = std::fs::read(b.join(name)).unwrap();
            let got: String = Sha256::digest(&data)
                .iter()
                .map(|x| format!("{x:02x}"))
                .collect();
            assert_eq!(got, hash, "{id}/{name}");
        }
        let html = std::fs::read_to_string(b.join("report.html")).unwrap();
        assert!(html.contains("<svg") && html.contains("episode"));
        assert!(!html.contains("<script") && !html.contains("src=") && !html.contains("@import"));
        let alert: Value =
            serde_json::from_str(&std::fs::read_to_string(b.join("alert.json")).unwrap()).unwrap();
        assert_eq!(alert["nightjar"]["alert"]["id"].as_str(), Some(id.as_str()));
        let flows: Value =
            serde_json::from_str(&std::fs::read_to_string(b.join("flows.json")).unwrap()).unwrap();
        assert!(!flows.as_array().unwrap().is_empty());
    }
    let chromium = ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .into_iter()
        .find(|p| Path::new(p).exists());
    match chromium {
        None => println!("note: chromium not installed: rendering not checked"),
        Some(bin) => {
            let id = ids.iter().next().unwrap();
            let shot = dir.join("report.png");
            let status = std::process::Command::new(bin)
                .args([
                    "--headless",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--window-size=1200,900",
                    &format!("--screenshot={}", shot.display()),
                    &format!("file://{}", ev.join(id).join("report.html").display()),
                ])
                .output()
                .unwrap();
            assert!(
                status.status.success(),
                "{}",
                String::from_utf8_lossy(&status.stderr)
            );
            let png = std::fs::read(&shot).unwrap();
            assert!(
                png.starts_with(b"\x89PNG") && png.len() > 10_000,
                "screenshot too small"
            );
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
