//! The sensor role's publisher: observations to the observations topic, keyed
//! by device, with a bounded local spool while the brokers do not take them.
//!
//! The key is the device id the sensor's own identity table gives the
//! observation's client (inventory, static mappings, the identity feed file and
//! the DHCP it sees: the same sources the correlator uses), else the client's
//! MAC, else its address; so one partition, and one correlator of the group,
//! holds each device's state. Invariants: every observation is either handed
//! to librdkafka, written to the spool, or counted as dropped; a message
//! librdkafka reports undeliverable (timeout, purge at shutdown) goes to the
//! spool; while the spool holds anything, new observations are appended
//! behind it so a device's observations keep their order.

use super::config::FleetConfig;
use super::kafka::{client_config, FleetError};
use super::spool::{Spool, SpoolStats};
use super::wire;
use crate::correlate::identity::{FeedEntry, IdentityTable, StaticIdentity};
use crate::correlate::{queue_feed, Update};
use crate::daemon::metrics::{family, single, MetricSource};
use crate::observation::Observation;
use crate::output::{Sink, SinkError};
use crate::pipeline::live::LiveHandler;
use crate::pipeline::replay::ReplayReport;
use crate::pipeline::ObservationHandler;
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::{ClientContext, Message};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Messages librdkafka may hold in its own queue (`queue.buffering.max.messages`);
/// past it a send is refused and the observation goes to the spool.
pub const PRODUCER_QUEUE_MESSAGES: usize = 100_000;
/// How long librdkafka keeps trying one message before reporting it undeliverable
/// (then it is spooled).
pub const MESSAGE_TIMEOUT: Duration = Duration::from_secs(10);
/// While the spool is not empty and the last replayed segment failed, how often
/// another segment is tried.
pub const SPOOL_RETRY_INTERVAL: Duration = Duration::from_secs(5);
/// How long [`Publisher::finish`] waits for the brokers before spooling what is left.
pub const FINISH_TIMEOUT: Duration = Duration::from_secs(30);

/// Counters shared with librdkafka's delivery callback.
#[derive(Debug, Default)]
pub struct SensorCounters {
    /// Observations handed to librdkafka or to the spool.
    pub observations: AtomicU64,
    /// Messages the brokers acknowledged.
    pub delivered: AtomicU64,
    /// Messages librdkafka reported undeliverable (they went to the spool).
    pub produce_errors: AtomicU64,
    /// Observations that could not be encoded (over the message bound).
    pub encode_errors: AtomicU64,
}

pub struct SpoolingContext {
    spool: Mutex<Spool>,
    pub counters: SensorCounters,
}

impl SpoolingContext {
    pub fn stats(&self) -> SensorStats {
        let c = &self.counters;
        let (spool_bytes, spool) = self
            .spool
            .lock()
            .map(|s| (s.bytes(), s.stats.clone()))
            .unwrap_or_default();
        SensorStats {
            observations: c.observations.load(Ordering::Relaxed),
            delivered: c.delivered.load(Ordering::Relaxed),
            produce_errors: c.produce_errors.load(Ordering::Relaxed),
            encode_errors: c.encode_errors.load(Ordering::Relaxed),
            spool_bytes,
            spool,
        }
    }
}

impl ClientContext for SpoolingContext {}

/// The sensor's counters on the daemon's `/metrics`.
impl MetricSource for SpoolingContext {
    fn render(&self, out: &mut String) {
        use std::fmt::Write;
        let st = self.stats();
        let counters: [(&str, &str, u64); 6] = [
            (
                "nightjar_fleet_observations_total",
                "Observations handed to Kafka or to the spool.",
                st.observations,
            ),
            (
                "nightjar_fleet_delivered_total",
                "Observation messages the brokers acknowledged.",
                st.delivered,
            ),
            (
                "nightjar_fleet_produce_errors_total",
                "Observation messages librdkafka could not deliver (they were spooled).",
                st.produce_errors,
            ),
            (
                "nightjar_fleet_encode_errors_total",
                "Observations over the message bound (dropped).",
                st.encode_errors,
            ),
            (
                "nightjar_fleet_spooled_total",
                "Observation messages written to the spool.",
                st.spool.spooled,
            ),
            (
                "nightjar_fleet_spool_replayed_total",
                "Spooled messages handed back to Kafka.",
                st.spool.replayed,
            ),
        ];
        for (name, help, v) in counters {
            single(out, name, "counter", help, v);
        }
        family(
            out,
            "nightjar_fleet_spool_dropped_total",
            "counter",
            "Observation messages the spool dropped, by reason (full: at spool_max_bytes; io: disk error).",
        );
        let _ = writeln!(
            out,
            "nightjar_fleet_spool_dropped_total{{reason=\"full\"}} {}",
            st.spool.dropped_full
        );
        let _ = writeln!(
            out,
            "nightjar_fleet_spool_dropped_total{{reason=\"io\"}} {}",
            st.spool.dropped_io
        );
        family(
            out,
            "nightjar_fleet_spool_bytes",
            "gauge",
            "Bytes waiting in the spool directory.",
        );
        let _ = writeln!(out, "nightjar_fleet_spool_bytes {}", st.spool_bytes);
    }
}

impl ProducerContext for SpoolingContext {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(_) => {
                self.counters.delivered.fetch_add(1, Ordering::Relaxed);
            }
            Err((_, m)) => {
                self.counters.produce_errors.fetch_add(1, Ordering::Relaxed);
                if let Ok(mut s) = self.spool.lock() {
                    s.push(m.key().unwrap_or_default(), m.payload().unwrap_or_default());
                }
            }
        }
    }
}

/// What a sensor did, for its summary line and metrics.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SensorStats {
    pub observations: u64,
    pub delivered: u64,
    pub produce_errors: u64,
    pub encode_errors: u64,
    pub spool_bytes: u64,
    pub spool: SpoolStats,
}

/// The summary line's text.
impl std::fmt::Display for SensorStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} observations, {} delivered, {} produce errors, {} spooled ({} bytes left), {} dropped",
            self.observations,
            self.delivered,
            self.produce_errors,
            self.spool.spooled,
            self.spool_bytes,
            self.spool.dropped_full + self.spool.dropped_io + self.encode_errors
        )
    }
}

pub struct Publisher {
    producer: BaseProducer<SpoolingContext>,
    topic: String,
    identity: IdentityTable,
    pending_feed: VecDeque<FeedEntry>,
    buf: Vec<u8>,
    /// Failures counted when the last spool segment was handed back, and when.
    last_replay: Option<(u64, Instant)>,
}

/// What the sensor resolves keys with (the same sources the correlator loads).
#[derive(Default)]
pub struct KeyOptions {
    pub inventory: Option<Arc<crate::mdm::Inventory>>,
    pub static_identities: Vec<StaticIdentity>,
    pub feed: Vec<FeedEntry>,
}

impl Publisher {
    pub fn new(cfg: &FleetConfig, keys: KeyOptions) -> Result<Publisher, FleetError> {
        let spool = Spool::open(&cfg.spool_dir, cfg.spool_max_bytes)?;
        let ctx = SpoolingContext {
            spool: Mutex::new(spool),
            counters: SensorCounters::default(),
        };
        let producer: BaseProducer<SpoolingContext> = client_config(cfg)?
            .set(
                "queue.buffering.max.messages",
                PRODUCER_QUEUE_MESSAGES.to_string(),
            )
            .set(
                "message.timeout.ms",
                MESSAGE_TIMEOUT.as_millis().to_string(),
            )
            .set("linger.ms", "5")
            .set("compression.type", "lz4")
            // Per-key order across retries.
            .set("enable.idempotence", "false")
            .set("max.in.flight.requests.per.connection", "1")
            .create_with_context(ctx)?;
        let mut feed = keys.feed;
        feed.sort_by_key(|e| e.ts_ns);
        Ok(Publisher {
            producer,
            topic: cfg.observations_topic.clone(),
            identity: IdentityTable::new(keys.inventory, &keys.static_identities),
            pending_feed: feed.into(),
            buf: Vec::with_capacity(4096),
            last_replay: None,
        })
    }

    fn ctx(&self) -> &SpoolingContext {
        self.producer.context()
    }

    pub fn stats(&self) -> SensorStats {
        self.ctx().stats()
    }

    /// The counters, shared (the daemon's metrics endpoint reads them).
    pub fn counters(&self) -> Arc<SpoolingContext> {
        self.producer.context().clone()
    }

    /// The partition key of an observation (see the module documentation).
    fn key(&mut self, obs: &Observation) -> String {
        while self
            .pending_feed
            .front()
            .is_some_and(|e| e.ts_ns <= obs.ts())
        {
            if let Some(e) = self.pending_feed.pop_front() {
                self.identity.apply_feed(&e);
            }
        }
        let id = match obs {
            Observation::Flow(f) => self.identity.resolve(f.client_ip, f.client.mac, f.start_ns),
            Observation::Dns(d) => self.identity.resolve(d.client_ip, None, d.ts_ns),
            Observation::Dhcp(d) => {
                self.identity.apply_dhcp(d.ts_ns, d.src_mac, &d.message);
                let m = &d.message;
                let ip = if m.yiaddr.is_unspecified() {
                    m.ciaddr
                } else {
                    m.yiaddr
                };
                self.identity.resolve(ip.into(), d.src_mac, d.ts_ns)
            }
            Observation::Identity(e) => {
                self.identity.apply_feed(e);
                self.identity.resolve(e.ip, e.mac, e.ts_ns)
            }
        };
        match (id.device_id, id.mac) {
            (Some(d), _) => d,
            (None, Some(m)) => crate::output::record::mac(&m),
            (None, None) => match obs {
                Observation::Flow(f) => f.client_ip.to_string(),
                Observation::Dns(d) => d.client_ip.to_string(),
                Observation::Dhcp(d) => d
                    .src_mac
                    .map_or_else(String::new, |m| crate::output::record::mac(&m)),
                Observation::Identity(e) => e.ip.to_string(),
            },
        }
    }

    /// Publishes one observation (or spools it).
    pub fn publish(&mut self, obs: &Observation) {
        let key = self.key(obs);
        self.ctx()
            .counters
            .observations
            .fetch_add(1, Ordering::Relaxed);
        if wire::encode(obs, &mut self.buf).is_err() {
            self.ctx()
                .counters
                .encode_errors
                .fetch_add(1, Ordering::Relaxed);
            return;
        }
        self.producer.poll(Duration::ZERO);
        self.replay_spool();
        let spooling = self.ctx().spool.lock().map_or(true, |s| !s.is_empty());
        if spooling {
            if let Ok(mut s) = self.ctx().spool.lock() {
                s.push(key.as_bytes(), &self.buf);
            }
            return;
        }
        let record: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(&self.topic)
            .key(key.as_bytes())
            .payload(&self.buf[..]);
        if let Err((_, r)) = self.producer.send(record) {
            // Queue full (or a local error): keep it on disk instead.
            if let Ok(mut s) = self.ctx().spool.lock() {
                s.push(r.key.unwrap_or_default(), r.payload.unwrap_or_default());
            }
        }
    }

    /// Hands the oldest spool segment back to librdkafka when the previous one
    /// went through (or, after failures, every [`SPOOL_RETRY_INTERVAL`]).
    fn replay_spool(&mut self) {
        if self.producer.in_flight_count() > 0 {
            return;
        }
        let failures = self.ctx().counters.produce_errors.load(Ordering::Relaxed);
        let due = match self.last_replay {
            None => true,
            Some((f, at)) => f == failures || at.elapsed() >= SPOOL_RETRY_INTERVAL,
        };
        if !due {
            return;
        }
        let segment = match self.ctx().spool.lock() {
            Ok(mut s) => s.take_oldest(),
            Err(_) => None,
        };
        let Some(records) = segment else {
            self.last_replay = None;
            return;
        };
        self.last_replay = Some((failures, Instant::now()));
        for (k, v) in records {
            let record: BaseRecord<'_, [u8], [u8]> =
                BaseRecord::to(&self.topic).key(&k[..]).payload(&v[..]);
            if let Err((_, r)) = self.producer.send(record) {
                if let Ok(mut s) = self.ctx().spool.lock() {
                    s.push(r.key.unwrap_or_default(), r.payload.unwrap_or_default());
                }
            }
        }
    }

    /// Delivers what is queued and spooled, waiting up to [`FINISH_TIMEOUT`];
    /// what the brokers did not take by then stays in the spool for the next run.
    pub fn finish(&mut self) -> SensorStats {
        let deadline = Instant::now() + FINISH_TIMEOUT;
        loop {
            self.producer.poll(Duration::from_millis(50));
            self.replay_spool();
            let empty = self.ctx().spool.lock().map_or(true, |s| s.is_empty());
            if (empty && self.producer.in_flight_count() == 0) || Instant::now() >= deadline {
                break;
            }
        }
        let _ = self.producer.flush(Duration::from_secs(1));
        if self.producer.in_flight_count() > 0 {
            self.producer
                .purge(rdkafka::producer::PurgeConfig::default().queue().inflight());
            // Serves the purged messages' delivery callbacks: they go to the spool.
            self.producer.poll(Duration::from_millis(100));
        }
        if let Ok(mut s) = self.ctx().spool.lock() {
            s.sync();
        }
        self.stats()
    }
}

impl ObservationHandler for Publisher {
    fn handle(&mut self, obs: Observation, _sink: &mut Sink) -> Result<(), SinkError> {
        self.publish(&obs);
        Ok(())
    }
}

/// The live sensor (`nightjar run` with `role = "sensor"`): identity inputs
/// update the keys; idle seconds serve deliveries and retry the spool.
impl LiveHandler for Publisher {
    fn update(&mut self, u: Update) {
        match u {
            Update::Inventory(inv) => self.identity.set_inventory(inv),
            Update::Feed(lines) => queue_feed(&mut self.pending_feed, &mut self.identity, lines),
            // Detection inputs: the correlators load them.
            Update::Catalog(_) | Update::Events(_) => {}
        }
    }

    fn idle(&mut self) {
        self.producer.poll(Duration::ZERO);
        self.replay_spool();
    }

    fn finish(&mut self, _: &ReplayReport, _: &mut Sink) -> Result<(), SinkError> {
        eprintln!("nightjar: sensor: {}", Publisher::finish(self));
        Ok(())
    }
}
