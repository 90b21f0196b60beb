//! The correlator role: observations from Kafka through a consumer group,
//! records to the output and to the records topic, offsets committed after
//! the records are written.
//!
//! State is per partition: each assigned partition gets its own
//! [`Correlator`], and since the sensors key observations by device, a
//! device's state lives in exactly one of them. When a partition is assigned,
//! its correlator rebuilds its state by reading the partition from its first
//! retained offset; the records of offsets below the group's committed offset
//! were written before (by this or another member) and are suppressed, so a
//! takeover neither loses nor repeats them. Invariants: offsets are committed
//! only after the records of every offset below them were written to the
//! output and acknowledged by the records topic; a partition being revoked is
//! committed in the rebalance callback before it moves, and a message fetched
//! before its partition was revoked is left to the new owner. An alert is
//! written only after a commit up to its message succeeded (the group
//! confirms the partition is still this member's; else the alert and the
//! partition's state are left to its next owner) and is committed at once
//! after, so only a crash, or a rebalance, in the milliseconds between the
//! two commits can repeat an alert (with the same `event.id`); a crash can
//! repeat the flow records of at most one `commit_interval`, which carry their
//! flow ids and Community IDs.

use super::baselines::{source_name, Link, LinkStats};
use super::config::FleetConfig;
use super::kafka::{client_config, FleetError};
use super::wire::{self, Decoded};
use crate::correlate::Correlator;
use crate::output::Sink;
use crate::pipeline::replay::ReplayReport;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{ClientContext, Message, Offset, TopicPartitionList};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a broker request of the consumer loop (committed offsets,
/// watermarks, seek, commit) may take before it counts as failed.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one poll waits for a message (also the stop flag's latency).
pub const POLL_INTERVAL: Duration = Duration::from_millis(100);
/// How often the counters and the consumer lag are published to
/// [`ConsumeOptions::metrics`].
pub const STATS_INTERVAL: Duration = Duration::from_secs(5);
/// Records librdkafka may queue towards the records topic.
pub const RECORDS_QUEUE_MESSAGES: usize = 100_000;

/// What a correlator did, for its summary and metrics.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConsumerStats {
    /// Observation messages read (state rebuilds included).
    pub messages: u64,
    /// Messages that did not decode, by reason.
    pub bad_messages: BTreeMap<&'static str, u64>,
    /// Messages of newer observation kinds, skipped.
    pub unknown_kinds: u64,
    /// Records written (output and records topic).
    pub records: u64,
    /// Records not written again: their offsets were committed before (state rebuild).
    pub suppressed: u64,
    /// Records the records topic did not take (they are in the output file).
    pub records_topic_errors: u64,
    /// Commits done.
    pub commits: u64,
    /// Alerts not written because the commit before them failed (a rebalance):
    /// the partition's next owner writes them.
    pub alerts_deferred: u64,
    /// Commits the group refused (a partition already moved to another member).
    pub commit_errors: u64,
    /// Messages of a partition revoked before they were processed (left to its new owner).
    pub not_owned: u64,
    /// Offsets skipped because the partition no longer held them (retention).
    pub offset_gaps: u64,
    /// Messages behind the partitions' ends at the last check (consumer lag).
    pub lag: u64,
    /// Fleet-wide baselines (`None` when not shared).
    pub baselines: Option<LinkStats>,
}

/// Output shared with the rebalance callback, which commits before a partition moves.
struct Shared {
    out: Sink,
    records: Option<BaseProducer>,
    records_topic: String,
    topic: String,
    /// Next offset per partition whose records are all written (or suppressed).
    processed: BTreeMap<i32, i64>,
    committed: BTreeMap<i32, i64>,
    /// Partitions revoked by the last rebalance: their correlators are dropped.
    revoked: Vec<i32>,
    /// Partitions the group gives this member now. A message of any other
    /// partition (fetched before a revocation) is not processed: its new owner
    /// writes its records.
    owned: BTreeSet<i32>,
    stats: ConsumerStats,
    error: Option<String>,
}

impl Shared {
    /// Flushes the output and the records topic, then commits what they hold;
    /// false when the flush or the commit failed (nothing to commit is success).
    fn commit(&mut self, consumer: &BaseConsumer<CorrelatorContext>) -> bool {
        if let Err(e) = self.out.flush() {
            self.error.get_or_insert(e.to_string());
            return false;
        }
        if let Some(p) = &self.records {
            if p.flush(REQUEST_TIMEOUT).is_err() {
                self.error
                    .get_or_insert("records topic: flush timed out".into());
                return false;
            }
        }
        let mut tpl = TopicPartitionList::new();
        for (&p, &next) in &self.processed {
            if self.committed.get(&p) != Some(&next) {
                let _ = tpl.add_partition_offset(&self.topic, p, Offset::Offset(next));
            }
        }
        if tpl.count() == 0 {
            return true;
        }
        match consumer.commit(&tpl, CommitMode::Sync) {
            Ok(()) => {
                self.stats.commits += 1;
                for e in tpl.elements() {
                    if let Offset::Offset(o) = e.offset() {
                        self.committed.insert(e.partition(), o);
                    }
                }
                true
            }
            // A partition lost to the group (session timeout) cannot be committed:
            // its next owner rewrites what was not committed (at least once).
            Err(_) => {
                self.stats.commit_errors += 1;
                false
            }
        }
    }
}

pub struct CorrelatorContext {
    shared: Mutex<Shared>,
}

impl ClientContext for CorrelatorContext {}

impl ConsumerContext for CorrelatorContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
            if let Ok(mut s) = self.shared.lock() {
                s.commit(consumer);
                for e in tpl.elements() {
                    let p = e.partition();
                    s.revoked.push(p);
                    s.owned.remove(&p);
                    s.processed.remove(&p);
                    s.committed.remove(&p);
                }
            }
        }
    }

    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = rebalance {
            if let Ok(mut s) = self.shared.lock() {
                s.owned.extend(tpl.elements().iter().map(|e| e.partition()));
            }
        }
    }
}

/// One assigned partition's correlator.
struct PartitionState {
    correlator: Correlator,
    /// Records of offsets below this were written before: suppressed.
    suppress_below: i64,
    /// The next offset to process.
    next: i64,
    /// Newest observation time seen (the end time handed to `finish`).
    last_ts_ns: u64,
}

pub struct ConsumeOptions {
    /// Makes the correlator of a newly assigned partition.
    pub make_correlator: Box<dyn FnMut() -> Correlator + Send>,
    /// Set to stop after the current message (SIGTERM).
    pub stop: Arc<AtomicBool>,
    /// Return once every assigned partition is read to its end and nothing
    /// arrived for this long (a one-shot catch-up run); `None` runs until `stop`.
    pub until_idle: Option<Duration>,
    /// At the end, let each partition's correlator write its end-of-run records
    /// (pending alerts, coverage, stats), as a replay does at the end of input.
    pub finish: bool,
    /// Where the counters are published every [`STATS_INTERVAL`] (`/metrics`).
    pub metrics: Option<Arc<CorrelatorMetrics>>,
}

/// Runs the correlator role until `stop` (or idle); records go to `out`.
pub fn consume(
    cfg: &FleetConfig,
    mut opts: ConsumeOptions,
    out: Sink,
) -> Result<ConsumerStats, FleetError> {
    let records = client_config(cfg)?
        .set(
            "queue.buffering.max.messages",
            RECORDS_QUEUE_MESSAGES.to_string(),
        )
        .set("linger.ms", "20")
        .set("compression.type", "lz4")
        .create::<BaseProducer>()?;
    let ctx = CorrelatorContext {
        shared: Mutex::new(Shared {
            out,
            records: Some(records),
            records_topic: cfg.records_topic.clone(),
            topic: cfg.observations_topic.clone(),
            processed: BTreeMap::new(),
            committed: BTreeMap::new(),
            revoked: Vec::new(),
            owned: BTreeSet::new(),
            stats: ConsumerStats::default(),
            error: None,
        }),
    };
    let consumer: BaseConsumer<CorrelatorContext> = client_config(cfg)?
        .set("group.id", &cfg.group_id)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("partition.assignment.strategy", "range")
        .set("session.timeout.ms", cfg.session_timeout_ms.to_string())
        .set(
            "heartbeat.interval.ms",
            (cfg.session_timeout_ms / 3).max(100).to_string(),
        )
        .create_with_context(ctx)?;
    let topic = cfg.observations_topic.clone();
    // Fleet-wide baselines: read what the fleet learned before scoring anything.
    let mut link = match &cfg.baselines {
        Some(sharing) => match (opts.make_correlator)().baselines() {
            Some(b) => {
                let mut l = Link::open(cfg, sharing, b.half_life_seconds)?;
                l.catch_up()?;
                Some(l)
            }
            None => None, // no detector: nothing to share
        },
        None => None,
    };
    let mut last_share = Instant::now();
    let mut last_stats = Instant::now();
    consumer.subscribe(&[&topic])?;

    let (tx, rx) = crossbeam_channel::unbounded::<Vec<u8>>();
    let mut capture = Sink::channel(tx);
    let mut states: BTreeMap<i32, PartitionState> = BTreeMap::new();
    let commit_every = Duration::from_nanos(cfg.commit_interval_ns);
    let mut last_commit = Instant::now();
    let mut last_message = Instant::now();

    while !opts.stop.load(Ordering::Relaxed) {
        if let Some(mut s) = shared(&consumer) {
            for p in std::mem::take(&mut s.revoked) {
                drop_partition(&mut states, link.as_mut(), &topic, p);
            }
            if let Some(e) = s.error.take() {
                return Err(FleetError::Consumer(e));
            }
        }
        if let Some(m) = &opts.metrics {
            if last_stats.elapsed() >= STATS_INTERVAL {
                standing(&consumer, &topic, &states);
                if let (Some(s), Ok(mut slot)) = (shared(&consumer), m.0.lock()) {
                    *slot = s.stats.clone();
                    slot.baselines = link.as_ref().map(|l| l.stats.clone());
                }
                last_stats = Instant::now();
            }
        }
        if let Some(l) = link.as_mut() {
            l.drain();
            if last_share.elapsed() >= l.interval {
                share(l, &topic, &mut states);
                last_share = Instant::now();
            }
        }
        let msg = match consumer.poll(POLL_INTERVAL) {
            None => {
                if last_commit.elapsed() >= commit_every {
                    if let Some(mut s) = shared(&consumer) {
                        s.commit(&consumer);
                    }
                    last_commit = Instant::now();
                }
                if let Some(idle) = opts.until_idle {
                    if last_message.elapsed() >= idle {
                        match standing(&consumer, &topic, &states) {
                            // Partitions whose messages were all committed before:
                            // read them once, so their state and end-of-run records
                            // exist (their records are suppressed).
                            Some(st) if opts.finish && !st.unread.is_empty() => {
                                for (p, low) in st.unread {
                                    let _ = consumer.seek(
                                        &topic,
                                        p,
                                        Offset::Offset(low),
                                        REQUEST_TIMEOUT,
                                    );
                                }
                                last_message = Instant::now();
                            }
                            Some(st) if st.lag == 0 => break,
                            _ => {}
                        }
                    }
                }
                continue;
            }
            Some(Err(_)) => {
                // Transient broker errors: librdkafka retries; counted.
                if let Some(mut s) = shared(&consumer) {
                    *s.stats.bad_messages.entry("consumer_error").or_default() += 1;
                }
                continue;
            }
            Some(Ok(m)) => m,
        };
        last_message = Instant::now();
        let p = msg.partition();
        let off = msg.offset();
        // A rebalance inside this poll may have revoked the partition.
        if let Some(mut s) = shared(&consumer) {
            for r in std::mem::take(&mut s.revoked) {
                drop_partition(&mut states, link.as_mut(), &topic, r);
            }
            if !s.owned.contains(&p) {
                s.stats.not_owned += 1;
                continue;
            }
        }
        if let std::collections::btree_map::Entry::Vacant(slot) = states.entry(p) {
            // Newly assigned: rebuild the partition's state from its first offset.
            let mut tpl = TopicPartitionList::new();
            tpl.add_partition(&topic, p);
            let committed = consumer
                .committed_offsets(tpl, REQUEST_TIMEOUT)?
                .find_partition(&topic, p)
                .and_then(|e| match e.offset() {
                    Offset::Offset(o) => Some(o),
                    _ => None,
                })
                .unwrap_or(0);
            let (low, _) = consumer.fetch_watermarks(&topic, p, REQUEST_TIMEOUT)?;
            let mut correlator = (opts.make_correlator)();
            if let Some(l) = &link {
                correlator.share_baselines();
                let live = BTreeMap::new();
                correlator.set_fleet_baselines(&l.fleet.view(&live, &source_name(&topic, p)));
            }
            slot.insert(PartitionState {
                correlator,
                suppress_below: committed,
                next: low,
                last_ts_ns: 0,
            });
            if let Some(mut s) = shared(&consumer) {
                s.processed.insert(p, committed.max(low));
                s.committed.insert(p, committed);
            }
            if off != low {
                consumer.seek(&topic, p, Offset::Offset(low), REQUEST_TIMEOUT)?;
                continue;
            }
        }
        let Some(st) = states.get_mut(&p) else {
            continue;
        };
        if off < st.next {
            // Fetched before the seek took effect.
            continue;
        }
        let Some(mut s) = consumer.context().shared.lock().ok() else {
            continue;
        };
        if off > st.next {
            s.stats.offset_gaps += (off - st.next) as u64;
        }
        s.stats.messages += 1;
        match wire::decode(msg.payload().unwrap_or_default()) {
            Ok(Decoded::Observation(o)) => {
                st.last_ts_ns = st.last_ts_ns.max(o.ts());
                st.correlator.handle(o, &mut capture)?;
                capture.flush()?;
            }
            Ok(Decoded::UnknownKind(_)) => s.stats.unknown_kinds += 1,
            Err(e) => *s.stats.bad_messages.entry(e.reason()).or_default() += 1,
        }
        let key = msg.key().unwrap_or_default().to_vec();
        let out: Vec<Vec<u8>> = rx.try_iter().collect();
        if off < st.suppress_below {
            s.stats.suppressed += out.iter().map(|l| line_count(l)).sum::<u64>();
            st.next = off + 1;
            s.processed.insert(p, off + 1);
            continue;
        }
        let alert = out.iter().any(|l| contains(l, b"\"nightjar.alert\""));
        if alert {
            // Before an alert is written, the group must confirm this member
            // still owns the partition: commit up to this message. If it does
            // not (a rebalance is moving partitions, or the broker is away),
            // the alert is not written and the partition's state is dropped:
            // whoever owns it next (this member again, after a rebuild from
            // the committed offset) writes it, once.
            s.processed.insert(p, off);
            if !s.commit(&consumer) {
                s.stats.alerts_deferred += 1;
                s.processed.remove(&p);
                s.committed.remove(&p);
                states.remove(&p);
                drop(s);
                // Fetch this message again: if the partition is still ours, its
                // state is rebuilt from the committed offset and the alert retried
                // (after a pause, as the group or the broker needs time).
                std::thread::sleep(POLL_INTERVAL);
                let _ = consumer.seek(&topic, p, Offset::Offset(off), REQUEST_TIMEOUT);
                continue;
            }
        }
        for lines in &out {
            write_records(&mut s, &key, lines)?;
        }
        st.next = off + 1;
        s.processed.insert(p, off + 1);
        if alert || last_commit.elapsed() >= commit_every {
            s.commit(&consumer);
            last_commit = Instant::now();
        }
    }
    if opts.finish {
        for st in states.values_mut() {
            let mut report = ReplayReport::default();
            report.data.last_ts_ns = st.last_ts_ns;
            st.correlator.finish(&report, &mut capture)?;
            capture.flush()?;
            if let Some(mut s) = shared(&consumer) {
                for lines in rx.try_iter() {
                    write_records(&mut s, b"", &lines)?;
                }
            }
        }
    }
    // Last: what the end of the run taught is published too.
    if let Some(l) = link.as_mut() {
        share(l, &topic, &mut states);
        l.flush();
    }
    let mut s = consumer
        .context()
        .shared
        .lock()
        .map_err(|_| FleetError::Consumer("output lock poisoned".into()))?;
    s.commit(&consumer);
    if let Some(e) = s.error.take() {
        return Err(FleetError::Consumer(e));
    }
    s.out.flush()?;
    let mut stats = s.stats.clone();
    stats.baselines = link.map(|l| l.stats);
    Ok(stats)
}

/// A partition left this member: its state goes, and its new owner publishes
/// its baselines from now on.
fn drop_partition(
    states: &mut BTreeMap<i32, PartitionState>,
    link: Option<&mut Link>,
    topic: &str,
    p: i32,
) {
    states.remove(&p);
    if let Some(l) = link {
        l.forget(&source_name(topic, p));
    }
}

/// Publishes what each owned partition learned, then gives each the fleet's
/// baselines: every other source, this member's own partitions live.
fn share(link: &mut Link, topic: &str, states: &mut BTreeMap<i32, PartitionState>) {
    let views: Vec<(i32, crate::correlate::baseline::Baselines)> = {
        let live: BTreeMap<String, &crate::correlate::baseline::Baselines> = states
            .iter()
            .filter_map(|(&p, st)| {
                Some((source_name(topic, p), st.correlator.learned_baselines()?))
            })
            .collect();
        for (source, learned) in &live {
            link.publish(source, learned);
        }
        states
            .keys()
            .map(|&p| (p, link.fleet.view(&live, &source_name(topic, p))))
            .collect()
    };
    for (p, view) in views {
        if let Some(st) = states.get_mut(&p) {
            st.correlator.set_fleet_baselines(&view);
        }
    }
}

fn shared(c: &BaseConsumer<CorrelatorContext>) -> Option<std::sync::MutexGuard<'_, Shared>> {
    c.context().shared.lock().ok()
}

fn line_count(lines: &[u8]) -> u64 {
    lines.iter().filter(|&&b| b == b'\n').count() as u64
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Writes whole lines to the output and, one message per record, to the records topic.
fn write_records(s: &mut Shared, key: &[u8], lines: &[u8]) -> Result<(), FleetError> {
    s.out.write_lines(lines)?;
    s.stats.records += line_count(lines);
    if let Some(p) = &s.records {
        for line in lines.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            let mut record: BaseRecord<'_, [u8], [u8]> =
                BaseRecord::to(&s.records_topic).payload(line);
            if !key.is_empty() {
                record = record.key(key);
            }
            let mut pending = Some(record);
            // Queue full: serve deliveries and retry, for at most REQUEST_TIMEOUT.
            let deadline = Instant::now() + REQUEST_TIMEOUT;
            while let Some(r) = pending.take() {
                match p.send(r) {
                    Ok(()) => {}
                    Err((_, r)) if Instant::now() < deadline => {
                        p.poll(Duration::from_millis(10));
                        pending = Some(r);
                    }
                    Err(_) => s.stats.records_topic_errors += 1,
                }
            }
        }
        p.poll(Duration::ZERO);
    }
    Ok(())
}

/// Where this member stands on its assigned partitions.
struct Standing {
    /// Messages behind the partitions' ends (also kept in the stats).
    lag: u64,
    /// Partitions with retained messages whose state was never built (every
    /// message was committed before they came here), with their first offset.
    unread: Vec<(i32, i64)>,
}

/// `None` with nothing assigned or a broker that does not answer.
fn standing(
    consumer: &BaseConsumer<CorrelatorContext>,
    topic: &str,
    states: &BTreeMap<i32, PartitionState>,
) -> Option<Standing> {
    let assignment = consumer.assignment().ok()?;
    if assignment.count() == 0 {
        return None;
    }
    let positions = consumer.position().ok()?;
    let mut st = Standing {
        lag: 0,
        unread: Vec::new(),
    };
    for e in assignment.elements_for_topic(topic) {
        let p = e.partition();
        let (low, high) = consumer.fetch_watermarks(topic, p, REQUEST_TIMEOUT).ok()?;
        let next = match states.get(&p) {
            Some(s) => s.next,
            None => {
                if high > low {
                    st.unread.push((p, low));
                }
                // Where the fetcher stands (the committed offset), else the start.
                positions
                    .find_partition(topic, p)
                    .and_then(|e| match e.offset() {
                        Offset::Offset(o) => Some(o),
                        _ => None,
                    })
                    .unwrap_or(low)
            }
        };
        st.lag += (high - next).max(0) as u64;
    }
    if let Ok(mut s) = consumer.context().shared.lock() {
        s.stats.lag = st.lag;
    }
    Some(st)
}

/// The correlator's counters, published for `/metrics` every [`STATS_INTERVAL`].
#[derive(Debug, Default)]
pub struct CorrelatorMetrics(pub Mutex<ConsumerStats>);

impl crate::daemon::metrics::MetricSource for CorrelatorMetrics {
    fn render(&self, out: &mut String) {
        use crate::daemon::metrics::{family, single};
        use std::fmt::Write;
        let Ok(st) = self.0.lock().map(|s| s.clone()) else {
            return;
        };
        let bl = st.baselines.clone().unwrap_or_default();
        let counters: [(&str, &str, u64); 13] = [
            (
                "nightjar_fleet_messages_total",
                "Observation messages read (state rebuilds included).",
                st.messages,
            ),
            (
                "nightjar_fleet_records_total",
                "Records written (output and records topic).",
                st.records,
            ),
            (
                "nightjar_fleet_suppressed_total",
                "Records not written again after a takeover (their offsets were committed).",
                st.suppressed,
            ),
            (
                "nightjar_fleet_unknown_kinds_total",
                "Messages of newer observation kinds, skipped.",
                st.unknown_kinds,
            ),
            (
                "nightjar_fleet_records_topic_errors_total",
                "Records the records topic did not take.",
                st.records_topic_errors,
            ),
            (
                "nightjar_fleet_commits_total",
                "Offset commits.",
                st.commits,
            ),
            (
                "nightjar_fleet_commit_errors_total",
                "Offset commits the group refused.",
                st.commit_errors,
            ),
            (
                "nightjar_fleet_not_owned_total",
                "Messages of a partition revoked before they were processed (left to its new owner).",
                st.not_owned,
            ),
            (
                "nightjar_fleet_alerts_deferred_total",
                "Alerts left to the partition's next owner because the commit before them failed.",
                st.alerts_deferred,
            ),
            (
                "nightjar_fleet_offset_gaps_total",
                "Offsets skipped because retention removed them first.",
                st.offset_gaps,
            ),
            (
                "nightjar_fleet_baseline_pieces_in_total",
                "Baseline pieces read from the baselines topic.",
                bl.pieces_in,
            ),
            (
                "nightjar_fleet_baseline_pieces_out_total",
                "Baseline pieces published.",
                bl.pieces_out,
            ),
            (
                "nightjar_fleet_baseline_produce_errors_total",
                "Baseline pieces the topic did not take.",
                bl.produce_errors,
            ),
        ];
        for (name, help, v) in counters {
            single(out, name, "counter", help, v);
        }
        family(
            out,
            "nightjar_fleet_bad_messages_total",
            "counter",
            "Observation or baseline messages refused, by reason.",
        );
        for (reason, v) in &st.bad_messages {
            let _ = writeln!(
                out,
                "nightjar_fleet_bad_messages_total{{reason=\"{reason}\"}} {v}"
            );
        }
        let _ = writeln!(
            out,
            "nightjar_fleet_bad_messages_total{{reason=\"baseline_piece\"}} {}",
            bl.pieces_refused
        );
        family(
            out,
            "nightjar_fleet_consumer_lag",
            "gauge",
            "Observation messages behind the assigned partitions' ends.",
        );
        let _ = writeln!(out, "nightjar_fleet_consumer_lag {}", st.lag);
    }
}
