//! Evaluation of attribution and AN1717 on generated, labelled scenarios.
//!
//! Training: benign days of separate training fleets (their own generator seeds, the
//! same app population) build the baselines, carried from one replay to the next as
//! `--baseline` would; the fleets' baselines are merged (they are mergeable sketches).
//! Test: for each test seed, a new fleet starts from the trained baselines and is
//! replayed over test days on which about half of the devices get malicious episodes
//! (recall) and the others stay benign (false alerts). Attribution is measured on
//! every test-day flow whose app has a distinctive domain. The figures are printed
//! (`--nocapture`) and asserted against the targets of issue 6: recall ≥ 0.95,
//! ≤ 0.05 false alerts per benign device-day, attribution ≥ 97 %.
//!
//! The default run ([`QUICK`]) simulates 6 active hours per test day so that it fits
//! the debug-build `cargo test`; its false alerts are counted per benign device-hour
//! and scaled to the 14-hour day of the generator's default (conservative: a short
//! day still carries a whole day's background jobs). The ignored [`FULL`] run
//! simulates whole 14-hour days (`cargo test --release --test an1717 --
//! --include-ignored`).

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

/// An alert matches a malicious episode when it overlaps its window widened by this.
const SLACK_NS: u64 = 600 * 1_000_000_000;
/// Active hours of the generator's default day, the unit of the false-alert target.
const DAY_HOURS: f64 = 14.0;

/// One evaluation plan.
struct Plan {
    /// Training fleets (generator seeds), each replayed over `train_days` benign days.
    train_seeds: &'static [u64],
    train_days: u32,
    train_hours: u32,
    /// Test fleets (generator seeds), each replayed over `test_days` days after the
    /// training days, with `malicious_share` of their devices given episodes.
    seeds: &'static [u64],
    test_days: u32,
    hours: u32,
    devices: usize,
    malicious_share: f64,
    /// Sample sizes below which the figures mean too little (asserted).
    min_episodes: usize,
    min_benign_device_days: f64,
    min_distinctive_flows: usize,
}

/// The default `cargo test` run: 2 training fleets × 2 days × 8 devices × 10 hours,
/// then 6 test fleets × 2 days × 8 devices × 6 hours. Measured: 48 malicious episodes,
/// 56 benign simulated device-days (24 days of 14 hours) and 47,224 distinctive flows.
const QUICK: Plan = Plan {
    train_seeds: &[101, 102],
    train_days: 2,
    train_hours: 10,
    seeds: &[1, 2, 3, 4, 5, 6],
    test_days: 2,
    hours: 6,
    devices: 8,
    malicious_share: 0.5,
    min_episodes: 40,
    min_benign_device_days: 15.0,
    min_distinctive_flows: 10_000,
};

/// The whole evaluation: 2 training fleets × 3 days, then 6 test fleets × 4 days,
/// 8 devices, whole 14-hour days.
const FULL: Plan = Plan {
    train_seeds: &[101, 102],
    train_days: 3,
    train_hours: 14,
    seeds: &[1, 2, 3, 4, 5, 6],
    test_days: 4,
    hours: 14,
    devices: 8,
    malicious_share: 0.5,
    min_episodes: 100,
    min_benign_device_days: 80.0,
    min_distinctive_flows: 100_000,
};

/// Replays one generated day in-process with the given baselines; returns its records
/// and the baselines after it.
fn run_day(s: &Scenario, baselines: Option<Baselines>) -> (Vec<Value>, Baselines) {
    let dir = std::env::temp_dir().join(format!(
        "nj-an1717-{}-{}-{}",
        std::process::id(),
        s.truth.seed,
        s.truth.day
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let pcap = dir.join("day.pcap");
    std::fs::write(&pcap, &s.pcap).unwrap();
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
    let mut sink = Sink::memory();
    let opts = ReplayOptions {
        inputs: vec![pcap],
        workers: 1,
        flow: Default::default(),
        progress: false,
    };
    let report = replay(&opts, &mut correlator, &mut sink).unwrap();
    assert!(report.error.is_none(), "{:?}", report.error);
    correlator.finish(&report, &mut sink).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    (sink.take_records(), correlator.baselines().unwrap().clone())
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

/// Alerts (first revision of each alert id) as (device, app, start, end, message).
fn alerts(records: &[Value]) -> Vec<(String, String, u64, u64, String)> {
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
                r.pointer("/message")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string(),
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
    malicious_device_false_alerts: usize,
    distinctive_flows: usize,
    distinctive_correct: usize,
    by_kind: BTreeMap<&'static str, (usize, usize)>,
}

impl Figures {
    fn add(&mut self, f: Figures) {
        self.malicious += f.malicious;
        self.detected += f.detected;
        self.benign_device_days += f.benign_device_days;
        self.benign_false_alerts += f.benign_false_alerts;
        self.malicious_device_false_alerts += f.malicious_device_false_alerts;
        self.distinctive_flows += f.distinctive_flows;
        self.distinctive_correct += f.distinctive_correct;
        for (k, (n, d)) in f.by_kind {
            let e = self.by_kind.entry(k).or_default();
            e.0 += n;
            e.1 += d;
        }
    }
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

/// Trains baselines on one training fleet's benign days.
fn train(plan: &Plan, seed: u64) -> Baselines {
    let mut baselines = None;
    for day in 0..plan.train_days {
        let cfg = ScenarioConfig {
            seed,
            devices: plan.devices,
            hours: plan.train_hours,
            day,
            ..ScenarioConfig::default()
        };
        let (_, b) = run_day(&generate(&cfg), baselines.take());
        baselines = Some(b);
    }
    baselines.expect("at least one training day")
}

fn evaluate(plan: &Plan, seed: u64, trained: &Baselines) -> Figures {
    let mut f = Figures::default();
    let mut baselines = Some(trained.clone());
    for day in plan.train_days..plan.train_days + plan.test_days {
        let cfg = ScenarioConfig {
            seed,
            devices: plan.devices,
            hours: plan.hours,
            day,
            malicious: true,
            malicious_share: plan.malicious_share,
            ..ScenarioConfig::default()
        };
        let s = generate(&cfg);
        let (records, b) = run_day(&s, baselines.take());
        baselines = Some(b);
        score_attribution(&s, &records, &mut f);
        let found = alerts(&records);
        let overlaps = |(d, a, st, en, _): &(String, String, u64, u64, String)| {
            s.truth.episodes.iter().any(|ep| {
                *d == ep.device_id
                    && *a == ep.bundle_id
                    && *st <= ep.end_ns + SLACK_NS
                    && *en + SLACK_NS >= ep.start_ns
            })
        };
        for ep in &s.truth.episodes {
            f.malicious += 1;
            let hit = found.iter().any(|(d, a, st, en, _)| {
                *d == ep.device_id
                    && *a == ep.bundle_id
                    && *st <= ep.end_ns + SLACK_NS
                    && *en + SLACK_NS >= ep.start_ns
            });
            let k = f.by_kind.entry(ep.kind).or_default();
            k.0 += 1;
            if hit {
                f.detected += 1;
                k.1 += 1;
            } else {
                println!("seed {seed} day {day}: missed {ep:?}");
            }
        }
        // An alert overlapping a malicious episode of its device and app is a hit;
        // any other alert is false (on a benign device, or beside the episodes).
        for a in found.iter().filter(|a| !overlaps(a)) {
            println!("seed {seed} day {day}: false alert {a:?}");
            if s.truth.malicious_devices.contains(&a.0) {
                f.malicious_device_false_alerts += 1;
            } else {
                f.benign_false_alerts += 1;
            }
        }
        f.benign_device_days += plan.devices - s.truth.malicious_devices.len();
    }
    f
}

/// Runs `job` for every seed, in parallel (one thread per seed up to the cores).
fn par_map<T: Send>(seeds: &[u64], job: impl Fn(u64) -> T + Sync) -> Vec<(u64, T)> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut out = Vec::new();
    for chunk in seeds.chunks(threads.max(1)) {
        std::thread::scope(|sc| {
            let hs: Vec<_> = chunk
                .iter()
                .map(|&seed| {
                    let job = &job;
                    (seed, sc.spawn(move || job(seed)))
                })
                .collect();
            for (seed, h) in hs {
                out.push((seed, h.join().expect("evaluation thread")));
            }
        });
    }
    out
}

/// Trains, runs every test seed of a plan and checks the targets.
fn run_plan(plan: &Plan) {
    // NIGHTJAR_EVAL_SEEDS=7,8,9 runs those test seeds instead (other fleets, or one to
    // look into); the sample-size minimums still apply.
    let seeds: Vec<u64> = match std::env::var("NIGHTJAR_EVAL_SEEDS") {
        Ok(v) => v.split(',').filter_map(|x| x.trim().parse().ok()).collect(),
        Err(_) => plan.seeds.to_vec(),
    };
    let mut trained: Option<Baselines> = None;
    for (_, b) in par_map(plan.train_seeds, |seed| train(plan, seed)) {
        match trained.as_mut() {
            None => trained = Some(b),
            Some(t) => t.merge(&b),
        }
    }
    let trained = trained.expect("a training fleet");
    let results = par_map(&seeds, |seed| evaluate(plan, seed, &trained));
    let mut total = Figures::default();
    for (seed, f) in results {
        println!(
            "seed {seed}: recall {}/{}, benign false alerts {} over {} device-days, \
             false alerts beside episodes {}, attribution {}/{} by kind {:?}",
            f.detected,
            f.malicious,
            f.benign_false_alerts,
            f.benign_device_days,
            f.malicious_device_false_alerts,
            f.distinctive_correct,
            f.distinctive_flows,
            f.by_kind
        );
        total.add(f);
    }
    let recall = total.detected as f64 / total.malicious.max(1) as f64;
    // Benign exposure in days of DAY_HOURS active hours.
    let benign_days = total.benign_device_days as f64 * f64::from(plan.hours) / DAY_HOURS;
    let fa = total.benign_false_alerts as f64 / benign_days.max(1e-9);
    let attr = total.distinctive_correct as f64 / total.distinctive_flows.max(1) as f64;
    println!(
        "TOTAL over seeds {:?}: recall {recall:.3} ({}/{}), false alerts per benign \
         {DAY_HOURS}-hour device-day {fa:.3} ({} over {} simulated {}-hour device-days = \
         {benign_days:.1} days), false alerts beside episodes {}, attribution {attr:.4} \
         ({}/{}), by kind {:?}",
        seeds,
        total.detected,
        total.malicious,
        total.benign_false_alerts,
        total.benign_device_days,
        plan.hours,
        total.malicious_device_false_alerts,
        total.distinctive_correct,
        total.distinctive_flows,
        total.by_kind
    );
    assert!(
        total.malicious >= plan.min_episodes,
        "too few malicious episodes generated: {}",
        total.malicious
    );
    assert!(
        benign_days >= plan.min_benign_device_days,
        "too few benign device-days: {benign_days:.1}"
    );
    assert!(
        total.distinctive_flows >= plan.min_distinctive_flows,
        "too few flows to measure attribution: {}",
        total.distinctive_flows
    );
    assert!(recall >= 0.95, "AN1717 recall {recall:.3} < 0.95");
    assert!(
        fa <= 0.05,
        "{fa:.3} false alerts per benign device-day > 0.05"
    );
    assert!(attr >= 0.97, "attribution {attr:.4} < 0.97");
}

#[test]
fn an1717_recall_false_alerts_and_attribution_over_seeds() {
    run_plan(&QUICK);
}

#[test]
#[ignore = "whole 14-hour days: minutes in a debug build; run with --release -- --include-ignored --nocapture"]
fn an1717_full_evaluation_over_whole_days() {
    run_plan(&FULL);
}

fn tmpdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("nj-an1717-{}-{tag}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
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

/// Evidence bundles: manifest matches, the pcap opens (our reader, and tshark when
/// installed) and holds packets of every flow of the alert and of no other flow, the
/// report is self-contained, and it renders in headless Chromium (Debian's
/// `chromium`; skipped, saying so, when it is absent unless
/// `NIGHTJAR_LIVE_TESTS=require`).
#[test]
fn evidence_bundles_are_self_contained_and_render() {
    use nightjar::flow::community_id::{community_id, DEFAULT_SEED};
    use nightjar::flow::packet_key;
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
    let stats = recs
        .iter()
        .find(|r| dataset(r) == "nightjar.stats")
        .unwrap();
    assert!(
        stats["nightjar"]["stats"]["evidence"]["keeper"]["kept"]
            .as_u64()
            .unwrap()
            > 0
    );
    let mut total_packets = 0;
    for id in &ids {
        let b = ev.join(id);
        let manifest = std::fs::read_to_string(b.join("manifest.sha256")).unwrap();
        assert_eq!(manifest.lines().count(), 4, "{manifest}");
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
        // The pcap: every packet belongs to one of the alert's flows, every flow has packets.
        let want: BTreeSet<String> = alert["network"]["community_id"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap().to_string())
            .collect();
        let mut seen: BTreeMap<String, usize> = BTreeMap::new();
        let mut reader = nightjar::capture::open_path(&b.join("packets.pcap")).unwrap();
        let mut n = 0;
        while let Some(frame) = reader.next_frame().unwrap() {
            n += 1;
            let pkt = nightjar::decode::decode(frame.linktype, frame.data).unwrap();
            let (key, _) = packet_key(&pkt);
            let cid = community_id(&key, DEFAULT_SEED);
            assert!(want.contains(&cid), "{id}: packet of another flow {cid}");
            *seen.entry(cid).or_default() += 1;
        }
        assert_eq!(
            seen.keys().cloned().collect::<BTreeSet<_>>(),
            want,
            "{id}: flows without packets"
        );
        assert!(seen.values().all(|&c| c <= 64), "{seen:?}");
        total_packets += n;
        if Path::new("/usr/bin/tshark").exists() {
            let out = std::process::Command::new("tshark")
                .args([
                    "-r",
                    &b.join("packets.pcap").display().to_string(),
                    "-T",
                    "fields",
                    "-e",
                    "frame.number",
                ])
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            assert_eq!(
                String::from_utf8_lossy(&out.stdout).lines().count(),
                n,
                "tshark"
            );
        }
    }
    assert!(total_packets > 0);
    let chromium = ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .into_iter()
        .find(|p| Path::new(p).exists());
    match chromium {
        None => {
            assert!(
                std::env::var("NIGHTJAR_LIVE_TESTS").as_deref() != Ok("require"),
                "chromium is not installed and NIGHTJAR_LIVE_TESTS=require"
            );
            println!("SKIPPED: rendering in headless Chromium: /usr/bin/chromium is not installed (apt-get install chromium)");
        }
        Some(bin) => {
            let id = ids.iter().next().unwrap();
            let shot = dir.join("report.png");
            let status = std::process::Command::new(bin)
                .args([
                    "--headless",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--hide-scrollbars",
                    "--window-size=1200,900",
                    &format!("--screenshot={}", shot.display()),
                    &format!("file://{}", ev.join(id).join("report.html").display()),
                ])
                .env("HOME", &dir)
                .output()
                .unwrap();
            assert!(
                status.status.success(),
                "{}",
                String::from_utf8_lossy(&status.stderr)
            );
            let png = std::fs::read(&shot).unwrap();
            assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
            // IHDR: the window's size.
            assert_eq!(&png[12..16], b"IHDR");
            assert_eq!(
                u32::from_be_bytes([png[16], png[17], png[18], png[19]]),
                1200
            );
            assert_eq!(
                u32::from_be_bytes([png[20], png[21], png[22], png[23]]),
                900
            );
            // A blank 1200×900 page compresses to a few KB; text and the timeline do not.
            assert!(
                png.len() > 20_000,
                "screenshot of {} bytes looks blank",
                png.len()
            );
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
