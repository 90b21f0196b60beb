//! Observations per second through a Kafka-protocol broker.
//!
//! `cargo bench --bench fleet` with a broker at `NIGHTJAR_KAFKA_BROKERS`
//! (default 127.0.0.1:9092; `.ci/run` shows how to start Tansu). It generates a
//! scenario, replays it through the sensor publisher `ROUNDS` times (so the topic
//! holds `ROUNDS` × the day's observations), then runs a correlator over the topic
//! until it is idle, and prints both rates. Without a broker it says so and exits.

use nightjar::correlate::{Correlator, CorrelatorOptions};
use nightjar::fleet::config::{FleetConfig, RawFleet};
use nightjar::fleet::correlator::{consume, ConsumeOptions};
use nightjar::fleet::sensor::{KeyOptions, Publisher};
use nightjar::output::Sink;
use nightjar::pipeline::replay::{replay, ReplayOptions};
use nightjar::scenario::{generate, ScenarioConfig};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::ClientConfig;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Replays of the generated day published per run.
const ROUNDS: usize = 3;
/// Partitions of the benchmark's observations topic.
const PARTITIONS: i32 = 4;

fn main() {
    let brokers =
        std::env::var("NIGHTJAR_KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".into());
    let probe: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .create()
        .expect("kafka client");
    if let Err(e) = probe.fetch_metadata(None, Duration::from_secs(5)) {
        println!("fleet bench skipped: no broker at {brokers}: {e}");
        return;
    }
    let dir = std::env::temp_dir().join(format!("nj-fleet-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let s = generate(&ScenarioConfig {
        seed: 7,
        devices: 8,
        day: 1,
        hours: 14,
        ..ScenarioConfig::default()
    });
    let pcap = dir.join("day.pcap");
    std::fs::write(&pcap, &s.pcap).unwrap();

    let topic = format!("nj-bench-{}", std::process::id());
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .create()
        .unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let obs_topic = format!("{topic}.obs");
    let rec_topic = format!("{topic}.rec");
    let topics = [
        NewTopic::new(&obs_topic, PARTITIONS, TopicReplication::Fixed(1)),
        NewTopic::new(&rec_topic, PARTITIONS, TopicReplication::Fixed(1)),
    ];
    for r in rt
        .block_on(admin.create_topics(&topics, &AdminOptions::new()))
        .unwrap()
    {
        r.unwrap();
    }
    let raw: RawFleet = toml::from_str(&format!(
        "role = \"sensor\"\nbrokers = [{brokers:?}]\nobservations_topic = \"{obs_topic}\"\n\
         records_topic = \"{rec_topic}\"\nbaselines_topic = \"\"\ngroup_id = \"{topic}.group\"\nspool_dir = {:?}\n",
        dir.join("spool").display().to_string()
    ))
    .unwrap();
    let cfg = FleetConfig::from_raw(&raw).unwrap();

    let opts = ReplayOptions {
        inputs: vec![pcap.clone()],
        workers: 1,
        flow: Default::default(),
        progress: false,
    };
    let started = Instant::now();
    let mut publisher = Publisher::new(&cfg, KeyOptions::default()).unwrap();
    for _ in 0..ROUNDS {
        replay(&opts, &mut publisher, &mut Sink::stdout()).unwrap();
    }
    let st = publisher.finish();
    let produce = started.elapsed().as_secs_f64();
    println!(
        "fleet/publish: {} observations in {produce:.2} s = {:.0} observations/s (replay, encode, produce, acknowledged; {} delivered, {} spooled)",
        st.observations,
        st.observations as f64 / produce,
        st.delivered,
        st.spool.spooled
    );

    let started = Instant::now();
    let idle = Duration::from_secs(2);
    // When the first partition was handed out: the group join before it is
    // the broker's (Kafka delays a new group's first assignment by design).
    let first = Arc::new(std::sync::Mutex::new(None::<Instant>));
    let make = {
        let first = first.clone();
        move || {
            if let Ok(mut f) = first.lock() {
                f.get_or_insert_with(Instant::now);
            }
            Correlator::new(CorrelatorOptions::default())
        }
    };
    let stats = consume(
        &cfg,
        ConsumeOptions {
            make_correlator: Box::new(make),
            stop: Arc::new(AtomicBool::new(false)),
            until_idle: Some(idle),
            finish: false,
            metrics: None,
        },
        Sink::file(&dir.join("records.json")).unwrap(),
    )
    .unwrap();
    let end = Instant::now() - idle;
    let whole = (end - started).as_secs_f64();
    let from_first = first
        .lock()
        .ok()
        .and_then(|f| *f)
        .map_or(whole, |f| (end - f).as_secs_f64());
    println!(
        "fleet/consume: {} observations in {from_first:.2} s from the first assignment = {:.0} observations/s \
         (fetch, decode, correlate, records to file and records topic, commits); {whole:.2} s with the group join = {:.0}/s",
        stats.messages,
        stats.messages as f64 / from_first,
        stats.messages as f64 / whole
    );
    let _ = std::fs::remove_dir_all(&dir);
}
