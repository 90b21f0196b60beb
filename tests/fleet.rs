//! The fleet roles over a Kafka-protocol broker.
//!
//! - Equivalence, against Tansu on loopback (`.ci/run` installs and starts it;
//!   `NIGHTJAR_KAFKA_BROKERS`, default 127.0.0.1:9092): a generated day replayed
//!   through sensor → broker → correlator gives the same records as `role = "all"`.
//!   Without a broker the test says why and skips, unless `NIGHTJAR_LIVE_TESTS=require`.
//! - Failover, against librdkafka's mock cluster (Tansu's group rebalancing is not
//!   reliable): two correlators in one group, one killed (SIGKILL, no goodbye), the
//!   other takes its partitions over; no record or alert is lost, none invented
//!   (alerts written during the rebalance may repeat whole). And a correlator
//!   killed and restarted alone repeats no alert.
//! - Sensor spool, against the mock cluster: the broker goes down, observations
//!   are spooled, the broker returns, everything arrives.
//! - Wire compatibility: a frozen 1.0 message still decodes.

mod common;

use nightjar::correlate::baseline::Baselines;
use nightjar::correlate::detect::DetectConfig;
use nightjar::correlate::{AnalysisOptions, Correlator, CorrelatorOptions};
use nightjar::fleet::config::{FleetConfig, RawFleet};
use nightjar::fleet::correlator::{consume, ConsumeOptions, ConsumerStats};
use nightjar::fleet::sensor::{KeyOptions, Publisher};
use nightjar::fleet::wire;
use nightjar::mdm;
use nightjar::output::Sink;
use nightjar::pipeline::replay::{replay, ReplayOptions};
use nightjar::scenario::{generate, Scenario, ScenarioConfig};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::mocking::MockCluster;
use rdkafka::ClientConfig;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn tmpdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("nj-fleet-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn scenario() -> Scenario {
    generate(&ScenarioConfig {
        seed: 3,
        devices: 4,
        day: 1,
        malicious: true,
        hours: 4,
        ..ScenarioConfig::default()
    })
}

fn make_correlator(s: &Scenario) -> impl FnMut() -> Correlator + Send + 'static {
    make_correlator_with(s, None)
}

fn make_correlator_with(
    s: &Scenario,
    baselines: Option<Baselines>,
) -> impl FnMut() -> Correlator + Send + 'static {
    let inventory = Arc::new(mdm::parse_inventory(&s.inventory_json, "inventory").unwrap());
    let catalog = s.catalog_json.clone();
    let events = mdm::read_events(s.events_ndjson.as_bytes(), "events").unwrap();
    move || {
        let mut cb = mdm::CatalogBuilder::new();
        cb.add_text(&catalog, mdm::CatalogFormat::Json, "catalog")
            .unwrap();
        Correlator::new(CorrelatorOptions {
            inventory: Some(inventory.clone()),
            analysis: Some(AnalysisOptions {
                baselines: baselines.clone(),
                detect: DetectConfig::default(),
                evidence: None,
            }),
            ..CorrelatorOptions::default()
        })
        .with_mdm(events.clone(), Some(cb.build()))
    }
}

fn replay_opts(pcap: &Path) -> ReplayOptions {
    ReplayOptions {
        inputs: vec![pcap.to_path_buf()],
        workers: 1,
        flow: Default::default(),
        progress: false,
    }
}

fn read_records(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn dataset(r: &Value) -> &str {
    r.pointer("/event/dataset")
        .and_then(Value::as_str)
        .unwrap_or("")
}

/// The records of the single process (without its stats record, which counts packets
/// a correlator never sees).
fn role_all(s: &Scenario, pcap: &Path, dir: &Path) -> Vec<Value> {
    role_all_with(s, pcap, dir, None).0
}

/// [`role_all`] starting from `baselines`; also gives the baselines it ends with.
fn role_all_with(
    s: &Scenario,
    pcap: &Path,
    dir: &Path,
    baselines: Option<Baselines>,
) -> (Vec<Value>, Baselines) {
    static RUN: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = RUN.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let out = dir.join(format!("all-{n}.json"));
    let mut correlator = make_correlator_with(s, baselines)();
    let mut sink = Sink::file(&out).unwrap();
    let report = replay(&replay_opts(pcap), &mut correlator, &mut sink).unwrap();
    correlator.finish(&report, &mut sink).unwrap();
    sink.flush().unwrap();
    let records = read_records(&out)
        .into_iter()
        .filter(|r| dataset(r) != "nightjar.stats")
        .collect();
    (records, correlator.baselines().unwrap().clone())
}

fn fleet_config(brokers: &str, topic: &str, spool: &Path, extra: &str) -> FleetConfig {
    let raw: RawFleet = toml::from_str(&format!(
        "role = \"sensor\"\nbrokers = [{brokers:?}]\nobservations_topic = \"{topic}.obs\"\n\
         records_topic = \"{topic}.rec\"\ngroup_id = \"{topic}.group\"\nspool_dir = {:?}\n{extra}",
        spool.display().to_string()
    ))
    .unwrap();
    FleetConfig::from_raw(&raw).unwrap()
}

fn publish(s: &Scenario, pcap: &Path, cfg: &FleetConfig) {
    let keys = KeyOptions {
        inventory: Some(Arc::new(
            mdm::parse_inventory(&s.inventory_json, "inventory").unwrap(),
        )),
        ..KeyOptions::default()
    };
    let mut publisher = Publisher::new(cfg, keys).unwrap();
    let mut sink = Sink::stdout();
    let report = replay(&replay_opts(pcap), &mut publisher, &mut sink).unwrap();
    assert!(report.error.is_none());
    let st = publisher.finish();
    assert!(st.observations > 0);
    assert_eq!(st.delivered, st.observations, "{st:?}");
    assert_eq!(st.spool_bytes, 0, "{st:?}");
}

fn correlate(s: &Scenario, cfg: &FleetConfig, out: &Path, idle: Duration) -> ConsumerStats {
    consume(
        cfg,
        ConsumeOptions {
            make_correlator: Box::new(make_correlator(s)),
            stop: Arc::new(AtomicBool::new(false)),
            until_idle: Some(idle),
            finish: true,
            metrics: None,
        },
        Sink::file(out).unwrap(),
    )
    .unwrap()
}

fn create_topics(brokers: &str, topics: &[(&str, i32)]) {
    create_topics_with(brokers, topics, &[]);
}

fn create_topics_with(brokers: &str, topics: &[(&str, i32)], config: &[(&str, &str)]) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let new: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|(t, p)| {
            config.iter().fold(
                NewTopic::new(t, *p, TopicReplication::Fixed(1)),
                |n, (k, v)| n.set(k, v),
            )
        })
        .collect();
    let res = rt
        .block_on(admin.create_topics(&new, &AdminOptions::new()))
        .unwrap();
    for r in res {
        r.unwrap();
    }
}

/// A broker answering a metadata request within a few seconds, or why not.
fn broker_reachable(brokers: &str) -> Result<(), String> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .map_err(|e| e.to_string())?;
    c.fetch_metadata(None, Duration::from_secs(5))
        .map(|_| ())
        .map_err(|e| format!("no Kafka-protocol broker at {brokers}: {e}"))
}

/// Flow, alert and coverage records as sorted lines (comparable as multisets).
fn lines(records: &[Value]) -> Vec<String> {
    let mut v: Vec<String> = records
        .iter()
        .filter(|r| dataset(r) != "nightjar.stats")
        .map(|r| r.to_string())
        .collect();
    v.sort();
    v
}

/// Asserts equal [`lines`]; on a difference, names the first differing lines
/// (records are long) and keeps both sides in `dir`.
fn same_lines(got: &[Value], want: &[Value], dir: &Path) {
    let (g, w) = (lines(got), lines(want));
    if g == w {
        return;
    }
    std::fs::write(dir.join("got.lines"), g.join("\n")).unwrap();
    std::fs::write(dir.join("want.lines"), w.join("\n")).unwrap();
    let gs: BTreeSet<&String> = g.iter().collect();
    let ws: BTreeSet<&String> = w.iter().collect();
    let extra: Vec<_> = gs
        .difference(&ws)
        .take(3)
        .map(|l| &l[..l.len().min(400)])
        .collect();
    let missing: Vec<_> = ws
        .difference(&gs)
        .take(3)
        .map(|l| &l[..l.len().min(400)])
        .collect();
    panic!(
        "{} lines vs {} expected; unexpected {extra:#?}; missing {missing:#?}; both in {}",
        g.len(),
        w.len(),
        dir.display()
    );
}

fn alerts(records: &[Value]) -> Vec<String> {
    let mut v: Vec<String> = records
        .iter()
        .filter(|r| dataset(r) == "nightjar.alert")
        .map(|r| r.to_string())
        .collect();
    v.sort();
    v
}

#[test]
fn sensor_broker_correlator_equals_role_all_on_tansu() {
    let Some(brokers) = tansu_or_skip() else {
        return;
    };
    let dir = tmpdir("tansu");
    let s = scenario();
    let pcap = dir.join("day.pcap");
    std::fs::write(&pcap, &s.pcap).unwrap();
    let expected = role_all(&s, &pcap, &dir);
    assert!(
        expected.iter().any(|r| dataset(r) == "nightjar.flow"),
        "the scenario makes flow records"
    );

    let topic = format!("nj-eq-{}", std::process::id());
    create_topics(
        &brokers,
        &[
            (&format!("{topic}.obs"), 1),
            (&format!("{topic}.rec"), 1),
            (&format!("{topic}.bl"), 1),
        ],
    );
    // Baselines shared (the default): one partition, so nothing of another's to merge.
    let cfg = fleet_config(
        &brokers,
        &topic,
        &dir.join("spool"),
        &format!("baselines_topic = \"{topic}.bl\""),
    );
    publish(&s, &pcap, &cfg);
    let out = dir.join("fleet.json");
    let stats = correlate(&s, &cfg, &out, Duration::from_secs(3));
    assert_eq!(stats.bad_messages, BTreeMap::new());
    assert_eq!(stats.suppressed, 0);
    let got = read_records(&out);
    assert_eq!(lines(&got), lines(&expected));
    eprintln!(
        "equivalence on Tansu: {} records ({} alerts), {} observations",
        expected.len(),
        alerts(&expected).len(),
        stats.messages
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Skips (or, with `NIGHTJAR_LIVE_TESTS=require`, fails) without a broker.
fn tansu_or_skip() -> Option<String> {
    let brokers =
        std::env::var("NIGHTJAR_KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".into());
    if let Err(why) = broker_reachable(&brokers) {
        if std::env::var("NIGHTJAR_LIVE_TESTS").as_deref() == Ok("require") {
            panic!("NIGHTJAR_LIVE_TESTS=require: {why}");
        }
        eprintln!("skipped: {why} (start Tansu as .ci/run does, or set NIGHTJAR_KAFKA_BROKERS)");
        return None;
    }
    Some(brokers)
}

/// A training day learned by one correlator reaches another correlator, of
/// another group and observations topic, through the compacted baselines topic,
/// exactly: its test day gives the records a single process gives when it
/// starts from the baselines its own replay of the training day saved.
#[test]
fn baselines_shared_through_the_compacted_topic_equal_saved_baselines_on_tansu() {
    let Some(brokers) = tansu_or_skip() else {
        return;
    };
    let dir = tmpdir("baselines");
    let day = |day: u32, malicious: bool| {
        generate(&ScenarioConfig {
            seed: 5,
            devices: 6,
            day,
            malicious,
            hours: 10,
            ..ScenarioConfig::default()
        })
    };
    let (train, test) = (day(0, false), day(1, true));
    let (train_pcap, test_pcap) = (dir.join("train.pcap"), dir.join("test.pcap"));
    std::fs::write(&train_pcap, &train.pcap).unwrap();
    std::fs::write(&test_pcap, &test.pcap).unwrap();

    // The single process: train, keep the baselines, test from them.
    let (_, learned) = role_all_with(&train, &train_pcap, &dir, None);
    assert!(
        !learned.scopes.is_empty(),
        "the training day teaches something"
    );
    let (expected, _) = role_all_with(&test, &test_pcap, &dir, Some(learned.clone()));
    let (cold, _) = role_all_with(&test, &test_pcap, &dir, None);
    assert_ne!(
        alerts(&expected),
        alerts(&cold),
        "the scenario's alerts depend on the baselines (else this test could not fail)"
    );

    // The fleet: the trainer's correlator publishes what it learned; a correlator
    // of another group reads it before scoring its own day.
    let topic = format!("nj-bl-{}", std::process::id());
    create_topics(
        &brokers,
        &[
            (&format!("{topic}.train.obs"), 1),
            (&format!("{topic}.test.obs"), 1),
            (&format!("{topic}.rec"), 1),
        ],
    );
    create_topics_with(
        &brokers,
        &[(&format!("{topic}.bl"), 1)],
        &[("cleanup.policy", "compact")],
    );
    let cfg = |part: &str| {
        let mut c = fleet_config(
            &brokers,
            &topic,
            &dir.join(format!("spool-{part}")),
            &format!("baselines_topic = \"{topic}.bl\"\nbaselines_interval = \"1h\""),
        );
        c.observations_topic = format!("{topic}.{part}.obs");
        c.group_id = format!("{topic}.{part}");
        c
    };
    publish(&train, &train_pcap, &cfg("train"));
    let trained = correlate(
        &train,
        &cfg("train"),
        &dir.join("train.json"),
        Duration::from_secs(3),
    );
    let shared = trained.baselines.expect("sharing on");
    assert!(
        shared.pieces_out > 0 && shared.produce_errors == 0,
        "{shared:?}"
    );

    publish(&test, &test_pcap, &cfg("test"));
    let out = dir.join("test.json");
    let tested = correlate(&test, &cfg("test"), &out, Duration::from_secs(3));
    let read = tested.baselines.expect("sharing on");
    assert_eq!(read.pieces_in, shared.pieces_out, "{read:?}");
    assert_eq!(read.pieces_refused, 0, "{read:?}");
    same_lines(&read_records(&out), &expected, &dir);
    eprintln!(
        "baselines over Tansu: {} pieces, {} scopes, test day {} alerts ({} without the training day)",
        shared.pieces_out,
        learned.scopes.len(),
        alerts(&expected).len(),
        alerts(&cold).len()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// The body of `GET path` on a loopback port (empty if it does not answer).
fn http_get(port: u16, path: &str) -> String {
    use std::io::{Read, Write};
    let Ok(mut c) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return String::new();
    };
    let _ = write!(
        c,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    );
    let mut out = String::new();
    let _ = c.read_to_string(&mut out);
    out
}

/// Waits (bounded) until `path` holds at least one record.
fn wait_for_records(path: &Path, limit: Duration) {
    let started = Instant::now();
    while read_records(path).is_empty() {
        assert!(started.elapsed() < limit, "{} stayed empty", path.display());
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A generated day published to a 4-partition topic of a fresh mock cluster,
/// and what one uninterrupted correlator writes for it.
struct Takeover {
    dir: PathBuf,
    _cluster: MockCluster<'static, rdkafka::producer::DefaultProducerContext>,
    brokers: String,
    topic: &'static str,
    extra: &'static str,
    cfg: FleetConfig,
    expected: Vec<Value>,
}

impl Takeover {
    fn new(topic: &'static str) -> Takeover {
        let dir = tmpdir(topic);
        let s = scenario();
        let pcap = dir.join("day.pcap");
        std::fs::write(&pcap, &s.pcap).unwrap();
        let cluster = MockCluster::new(1).unwrap();
        let brokers = cluster.bootstrap_servers();
        cluster.create_topic(&format!("{topic}.obs"), 4, 1).unwrap();
        cluster.create_topic(&format!("{topic}.rec"), 1, 1).unwrap();
        // Baselines not shared: each correlator scores alone, as the reference does.
        let extra =
            "commit_interval = \"100ms\"\nsession_timeout = \"6s\"\nbaselines_topic = \"\"\n";
        let cfg = fleet_config(&brokers, topic, &dir.join("spool"), extra);
        publish(&s, &pcap, &cfg);
        // What an uninterrupted correlator writes for this topic (state is per
        // partition, and learned JA4s are per correlator, so attribution can
        // differ from role = "all").
        let mut reference = cfg.clone();
        reference.group_id = format!("{topic}.reference");
        let expected = read_records(&{
            let out = dir.join("reference.json");
            correlate(&s, &reference, &out, Duration::from_secs(3));
            out
        });
        assert!(expected.iter().any(|r| dataset(r) == "nightjar.flow"));
        for (name, text) in [
            ("inventory.json", &s.inventory_json),
            ("catalog.json", &s.catalog_json),
            ("events.ndjson", &s.events_ndjson),
        ] {
            std::fs::write(dir.join(name), text).unwrap();
        }
        Takeover {
            dir,
            _cluster: cluster,
            brokers,
            topic,
            extra,
            cfg,
            expected,
        }
    }

    /// `nightjar correlate` (the binary) in the group, writing to `out`; its
    /// metrics port.
    fn spawn(&self, out: &Path) -> (std::process::Child, u16) {
        let (dir, topic, brokers, extra) = (&self.dir, self.topic, &self.brokers, self.extra);
        let conf = dir.join("a.toml");
        let metrics_port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        std::fs::write(
            &conf,
            format!(
                "[metrics]\nlisten = \"127.0.0.1:{metrics_port}\"\n\
                 [fleet]\nrole = \"correlator\"\nbrokers = [{brokers:?}]\n\
                 observations_topic = \"{topic}.obs\"\nrecords_topic = \"{topic}.rec\"\n\
                 group_id = \"{topic}.group\"\nspool_dir = {:?}\n{extra}",
                dir.join("spool-a").display().to_string()
            ),
        )
        .unwrap();
        let child = std::process::Command::new(common::bin())
            .arg("correlate")
            .arg("--config")
            .arg(&conf)
            .arg("--output")
            .arg(out)
            .arg("--inventory")
            .arg(dir.join("inventory.json"))
            .arg("--catalog")
            .arg(dir.join("catalog.json"))
            .arg("--events")
            .arg(dir.join("events.ndjson"))
            .stdin(std::process::Stdio::null())
            .spawn()
            .unwrap();
        (child, metrics_port)
    }

    /// A correlator of the group in a thread (catch-up mode); its stats arrive
    /// on the receiver.
    fn member(&self, out: &Path) -> std::sync::mpsc::Receiver<ConsumerStats> {
        let (done, rx) = std::sync::mpsc::channel();
        let s2 = scenario();
        let cfg = self.cfg.clone();
        let out = out.to_path_buf();
        std::thread::spawn(move || {
            let _ = done.send(correlate(&s2, &cfg, &out, Duration::from_secs(15)));
        });
        rx
    }

    /// Every record of the reference was written by one of `outs`.
    fn nothing_lost(&self, union: &[Value]) {
        let have: BTreeSet<String> = lines(union).into_iter().collect();
        for r in lines(&self.expected) {
            assert!(have.contains(&r), "lost: {r}");
        }
    }
}

/// A member that never catches up is a failure, not a hang.
fn stats_of(rx: std::sync::mpsc::Receiver<ConsumerStats>) -> ConsumerStats {
    rx.recv_timeout(Duration::from_secs(300))
        .expect("the correlator did not catch up within 5 minutes")
}

/// Kill and restart, no other member: the restarted correlator resumes from
/// the committed offsets, loses nothing and repeats no alert.
#[test]
fn killed_and_restarted_correlator_loses_and_repeats_no_alert() {
    let t = Takeover::new("nj-restart");
    let out_a = t.dir.join("a.json");
    let (mut a, _) = t.spawn(&out_a);
    // Killed some time after it wrote an alert (not at a moment tied to one),
    // with more to do.
    let started = Instant::now();
    while alerts(&read_records(&out_a)).is_empty() {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "A wrote no alert"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300));
    a.kill().unwrap();
    a.wait().unwrap();
    let rec_a = read_records(&out_a);
    let out_b = t.dir.join("b.json");
    let stats_b = stats_of(t.member(&out_b));
    let mut union = rec_a.clone();
    union.extend(read_records(&out_b));
    t.nothing_lost(&union);
    assert_eq!(alerts(&union), alerts(&t.expected));
    assert!(stats_b.suppressed > 0, "{stats_b:?}");
    eprintln!(
        "restart: A wrote {} ({} alerts), the restarted one suppressed {}",
        rec_a.len(),
        alerts(&rec_a).len(),
        stats_b.suppressed
    );
    let _ = std::fs::remove_dir_all(&t.dir);
}

/// Two members, one killed while the other holds partitions: the survivor takes
/// the dead one's partitions over and nothing is lost. Alerts written during the
/// rebalance B's arrival caused may repeat, whole and with the same `event.id`
/// (docs/fleet.md, Delivery); none is invented.
#[test]
fn failover_on_mock_cluster_loses_no_record_or_alert() {
    let t = Takeover::new("nj-failover");
    let dir = &t.dir;
    let out_a = dir.join("a.json");
    let (mut a, metrics_port) = t.spawn(&out_a);
    wait_for_records(&out_a, Duration::from_secs(120));
    // Its counters and lag are on /metrics.
    let started = Instant::now();
    let metrics = loop {
        let body = http_get(metrics_port, "/metrics");
        if body.lines().any(|l| {
            l.strip_prefix("nightjar_fleet_messages_total ")
                .is_some_and(|v| v != "0")
        }) {
            break body;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "{body}");
        std::thread::sleep(Duration::from_millis(200));
    };
    for family in [
        "# TYPE nightjar_fleet_consumer_lag gauge",
        "# TYPE nightjar_fleet_commits_total counter",
        "nightjar_fleet_records_total ",
    ] {
        assert!(metrics.contains(family), "{family} missing: {metrics}");
    }

    // Correlator B joins the group; once the rebalance gave it partitions (it
    // writes records), A dies while it still works through its own.
    let out_b = dir.join("b.json");
    let b = t.member(&out_b);
    wait_for_records(&out_b, Duration::from_secs(120));
    let a_before_kill = read_records(&out_a).len();
    a.kill().unwrap();
    a.wait().unwrap();
    let stats_b = stats_of(b);

    let rec_a = read_records(&out_a);
    let rec_b = read_records(&out_b);
    let mut union: Vec<Value> = rec_a.clone();
    union.extend(rec_b.iter().cloned());
    t.nothing_lost(&union);
    // Every alert of the uninterrupted run, none invented; repeats are whole copies.
    let want: BTreeSet<String> = alerts(&t.expected).into_iter().collect();
    let got: BTreeSet<String> = alerts(&union).into_iter().collect();
    assert_eq!(got, want);
    let repeated = alerts(&union).len() - alerts(&t.expected).len();
    // B took A's partitions over: it rebuilt them and left out what A had committed.
    assert!(
        stats_b.suppressed > 0 && a_before_kill < t.expected.len(),
        "no takeover to test: A wrote {a_before_kill} of {} records, B suppressed {}",
        t.expected.len(),
        stats_b.suppressed
    );
    eprintln!(
        "failover: A wrote {}, B wrote {} and suppressed {}, {} alerts ({repeated} repeated), {} expected records",
        rec_a.len(),
        rec_b.len(),
        stats_b.suppressed,
        alerts(&t.expected).len(),
        t.expected.len()
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn sensor_spools_while_the_broker_is_down_and_replays_on_return() {
    let dir = tmpdir("spool");
    let s = scenario();
    let pcap = dir.join("day.pcap");
    std::fs::write(&pcap, &s.pcap).unwrap();
    let cluster = MockCluster::new(1).unwrap();
    let brokers = cluster.bootstrap_servers();
    let topic = "nj-spool";
    cluster.create_topic(&format!("{topic}.obs"), 2, 1).unwrap();
    let cfg = fleet_config(
        &brokers,
        topic,
        &dir.join("spool"),
        "baselines_topic = \"\"",
    );
    let keys = || KeyOptions {
        inventory: Some(Arc::new(
            mdm::parse_inventory(&s.inventory_json, "inventory").unwrap(),
        )),
        ..KeyOptions::default()
    };

    // Broker down for the whole run: everything ends in the spool.
    cluster.broker_down(1).unwrap();
    let mut publisher = Publisher::new(&cfg, keys()).unwrap();
    let report = replay(&replay_opts(&pcap), &mut publisher, &mut Sink::stdout()).unwrap();
    assert!(report.error.is_none());
    let down = publisher.finish();
    drop(publisher);
    assert!(down.observations > 0);
    assert_eq!(down.delivered, 0, "{down:?}");
    assert!(down.spool_bytes > 0, "{down:?}");
    assert_eq!(down.spool.dropped_full + down.spool.dropped_io, 0);

    // Broker back: a new run sends the spool first.
    cluster.broker_up(1).unwrap();
    let mut publisher = Publisher::new(&cfg, keys()).unwrap();
    let up = publisher.finish();
    assert_eq!(up.spool_bytes, 0, "{up:?}");
    assert_eq!(up.delivered, down.observations, "{up:?}");

    // Every observation is on the topic once.
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("group.id", "nj-spool-check")
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    let mut total = 0;
    for p in 0..2 {
        let (lo, hi) = c
            .fetch_watermarks(&format!("{topic}.obs"), p, Duration::from_secs(10))
            .unwrap();
        total += hi - lo;
    }
    assert_eq!(total as u64, down.observations);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_frozen_v1_0_message_still_decodes() {
    let msg = std::fs::read(common::repo().join("tests/data/fleet/flow-v1.0.bin")).unwrap();
    assert_eq!(&msg[..4], b"NJ\x01\x00");
    match wire::decode(&msg).unwrap() {
        wire::Decoded::Observation(nightjar::observation::Observation::Flow(f)) => {
            assert!(
                f.app.client_hello.is_some(),
                "the frozen flow has a ClientHello"
            );
        }
        other => panic!("{other:?}"),
    }
    // A newer minor's sensor adds fields at every level: this build still reads it.
    let mut v: Value = serde_json::from_slice(&msg[4..]).unwrap();
    v["Flow"]["sensor_site"] = "gw-7".into();
    v["Flow"]["app"]["ech_config_id"] = 3.into();
    v["Flow"]["app"]["client_hello"]["ja4_o"] = "t13d".into();
    v["Flow"]["client"]["retransmits"] = 2.into();
    let newer = wire::encode_versioned(v.to_string().as_bytes(), 1, 1);
    match wire::decode(&newer).unwrap() {
        wire::Decoded::Observation(nightjar::observation::Observation::Flow(f)) => {
            // Everything of the 1.0 flow but what 2.0 dropped (the endpoints'
            // first and last packet times).
            let mut original: Value = serde_json::from_slice(&msg[4..]).unwrap();
            for side in ["client", "server"] {
                let end = original["Flow"][side].as_object_mut().unwrap();
                assert!(end.remove("first_ns").is_some() && end.remove("last_ns").is_some());
            }
            assert_eq!(serde_json::to_value(&f).unwrap(), original["Flow"]);
        }
        other => panic!("{other:?}"),
    }
    // A newer major is refused, saying what to do.
    let e = wire::decode(&wire::encode_versioned(&msg[4..], wire::MAJOR + 1, 0)).unwrap_err();
    assert!(e.to_string().contains("upgrade the correlators"), "{e}");
}
