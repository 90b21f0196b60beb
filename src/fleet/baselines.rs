//! Fleet-wide baselines: what each correlator learned, shared through a
//! compacted Kafka topic and merged exactly.
//!
//! The unit of sharing is one observations partition (a *source*, named
//! `<observations topic>/<partition>`): the correlator that owns the partition
//! learns its devices' episodes and publishes that store, one message per scope
//! and one per app memory, keyed `<source>|s|<scope>` or `<source>|a|<bundle>`.
//! Compaction keeps the newest piece per key, so the topic always holds every
//! source's latest store. A partition that moves is rebuilt by its new owner
//! from the observations and republished under the same keys: nothing is
//! counted twice. A correlator's view for one of its partitions is the start
//! baselines ⊕ every *other* source's store; the sketches merge exactly
//! (bucket weights add once decayed to one time) and app memories take the
//! earliest first-seen time, so the order pieces arrive in does not matter.
//!
//! A piece is `NB`, major 1, minor 0, then a baselines file
//! ([`Baselines::from_json`], validated) holding that one scope or app. A
//! newer major is refused and counted; an empty value (tombstone) removes the
//! piece. Bounds: [`MAX_SOURCES`] sources, each bounded like a baselines file.

use super::config::{BaselineSharing, FleetConfig};
use super::correlator::REQUEST_TIMEOUT;
use super::kafka::{client_config, FleetError};
use crate::correlate::baseline::{Baselines, MAX_SCOPES};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Message, Offset, TopicPartitionList};
use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};
use std::time::{Duration, Instant};

/// Sources (observations partitions) whose stores are kept (4,096: far more
/// partitions than an observations topic of a fleet needs).
pub const MAX_SOURCES: usize = 4096;
/// Major version of the piece format written and read.
pub const MAJOR: u8 = 1;
/// Minor version written.
pub const MINOR: u8 = 0;

/// What a piece's key says it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PieceKey {
    Scope { source: String, scope: String },
    App { source: String, app: String },
}

impl PieceKey {
    pub fn encode(&self) -> String {
        match self {
            PieceKey::Scope { source, scope } => format!("{source}|s|{scope}"),
            PieceKey::App { source, app } => format!("{source}|a|{app}"),
        }
    }

    pub fn decode(key: &[u8]) -> Option<PieceKey> {
        let key = std::str::from_utf8(key).ok()?;
        let (source, rest) = key.split_once('|')?;
        let (kind, name) = rest.split_once('|')?;
        let (source, name) = (source.to_string(), name.to_string());
        match kind {
            "s" => Some(PieceKey::Scope {
                source,
                scope: name,
            }),
            "a" => Some(PieceKey::App { source, app: name }),
            _ => None,
        }
    }

    fn source(&self) -> &str {
        match self {
            PieceKey::Scope { source, .. } | PieceKey::App { source, .. } => source,
        }
    }
}

/// The source name of one observations partition.
pub fn source_name(observations_topic: &str, partition: i32) -> String {
    format!("{observations_topic}/{partition}")
}

/// Every piece of `learned` as (key, value) messages.
pub fn pieces(source: &str, learned: &Baselines) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::with_capacity(learned.scopes.len() + learned.apps.len());
    for (scope, sb) in &learned.scopes {
        let mut one = Baselines::new(learned.half_life_seconds);
        one.scopes.insert(scope.clone(), sb.clone());
        let key = PieceKey::Scope {
            source: source.to_string(),
            scope: scope.clone(),
        };
        out.push((key.encode(), frame(&one)));
    }
    for (app, mem) in &learned.apps {
        let mut one = Baselines::new(learned.half_life_seconds);
        one.apps.insert(app.clone(), mem.clone());
        let key = PieceKey::App {
            source: source.to_string(),
            app: app.clone(),
        };
        out.push((key.encode(), frame(&one)));
    }
    out
}

fn frame(b: &Baselines) -> Vec<u8> {
    let mut v = vec![b'N', b'B', MAJOR, MINOR];
    // A Baselines value always serializes (string keys, finite numbers).
    v.extend(serde_json::to_vec(b).unwrap_or_default());
    v
}

/// Why a piece was not taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PieceError {
    BadKey,
    BadFrame,
    NewerMajor,
    Invalid,
    /// The key names one scope or app, the value holds something else.
    Mismatch,
    /// Decay half-lives differ: the sketches would not merge exactly.
    HalfLife,
    TooManySources,
}

impl PieceError {
    pub fn reason(self) -> &'static str {
        match self {
            PieceError::BadKey => "bad_key",
            PieceError::BadFrame => "bad_frame",
            PieceError::NewerMajor => "newer_major",
            PieceError::Invalid => "invalid",
            PieceError::Mismatch => "mismatch",
            PieceError::HalfLife => "half_life",
            PieceError::TooManySources => "too_many_sources",
        }
    }
}

/// The latest store of every source, as read from the topic.
#[derive(Debug, Default)]
pub struct FleetBaselines {
    half_life_seconds: u64,
    sources: BTreeMap<String, Baselines>,
    /// Pieces refused, by reason.
    pub refused: BTreeMap<&'static str, u64>,
    /// Pieces taken.
    pub pieces: u64,
}

impl FleetBaselines {
    pub fn new(half_life_seconds: u64) -> FleetBaselines {
        FleetBaselines {
            half_life_seconds,
            ..FleetBaselines::default()
        }
    }

    /// Takes one message of the topic (`value` empty: a tombstone).
    pub fn apply(&mut self, key: &[u8], value: &[u8]) {
        match self.try_apply(key, value) {
            Ok(()) => self.pieces += 1,
            Err(e) => *self.refused.entry(e.reason()).or_default() += 1,
        }
    }

    fn try_apply(&mut self, key: &[u8], value: &[u8]) -> Result<(), PieceError> {
        let key = PieceKey::decode(key).ok_or(PieceError::BadKey)?;
        if value.is_empty() {
            if let Some(b) = self.sources.get_mut(key.source()) {
                match &key {
                    PieceKey::Scope { scope, .. } => {
                        b.scopes.remove(scope);
                    }
                    PieceKey::App { app, .. } => {
                        b.apps.remove(app);
                    }
                }
            }
            return Ok(());
        }
        let body = match value {
            [b'N', b'B', major, _minor, body @ ..] => {
                if *major > MAJOR {
                    return Err(PieceError::NewerMajor);
                }
                if *major < MAJOR {
                    return Err(PieceError::BadFrame);
                }
                body
            }
            _ => return Err(PieceError::BadFrame),
        };
        let text = std::str::from_utf8(body).map_err(|_| PieceError::Invalid)?;
        let mut one =
            Baselines::from_json(text, "baseline piece").map_err(|_| PieceError::Invalid)?;
        if one.half_life_seconds != self.half_life_seconds {
            return Err(PieceError::HalfLife);
        }
        if !self.sources.contains_key(key.source()) && self.sources.len() >= MAX_SOURCES {
            return Err(PieceError::TooManySources);
        }
        // The value holds exactly what the key names.
        let named = match &key {
            PieceKey::Scope { scope, .. } => {
                one.apps.is_empty() && one.scopes.len() == 1 && one.scopes.contains_key(scope)
            }
            PieceKey::App { app, .. } => {
                one.scopes.is_empty() && one.apps.len() == 1 && one.apps.contains_key(app)
            }
        };
        if !named {
            return Err(PieceError::Mismatch);
        }
        let hl = self.half_life_seconds;
        let store = self
            .sources
            .entry(key.source().to_string())
            .or_insert_with(|| Baselines::new(hl));
        // Bounded like a baselines file: a new scope or app beyond the bound is refused.
        let full = match &key {
            PieceKey::Scope { scope, .. } => {
                !store.scopes.contains_key(scope) && store.scopes.len() >= MAX_SCOPES
            }
            PieceKey::App { app, .. } => {
                !store.apps.contains_key(app) && store.apps.len() >= MAX_SCOPES
            }
        };
        if full {
            return Err(PieceError::Invalid);
        }
        store.scopes.append(&mut one.scopes);
        store.apps.append(&mut one.apps);
        Ok(())
    }

    /// Sources read so far.
    pub fn sources(&self) -> impl Iterator<Item = (&str, &Baselines)> {
        self.sources.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// The merge of every source's store, with `live` replacing the topic's
    /// copy of the sources this process owns, and `except` left out (the
    /// partition the view is for: its own store is merged in by its detector).
    pub fn view(&self, live: &BTreeMap<String, &Baselines>, except: &str) -> Baselines {
        let mut out = Baselines::new(self.half_life_seconds);
        for (source, b) in &self.sources {
            if source != except && !live.contains_key(source) {
                out.merge(b);
            }
        }
        for (source, b) in live {
            if source != except {
                out.merge(b);
            }
        }
        out
    }
}

/// Which pieces were published, to send only what changed.
#[derive(Debug, Default)]
pub struct Published {
    sent: HashMap<String, u64>,
}

impl Published {
    /// The pieces of `learned` that differ from what was last sent for them.
    pub fn changed(&mut self, source: &str, learned: &Baselines) -> Vec<(String, Vec<u8>)> {
        pieces(source, learned)
            .into_iter()
            .filter(|(k, v)| {
                let mut h = std::collections::hash_map::DefaultHasher::new();
                v.hash(&mut h);
                let h = h.finish();
                self.sent.insert(k.clone(), h) != Some(h)
            })
            .collect()
    }

    /// Forgets a source (its partition moved away: the new owner publishes it).
    pub fn forget(&mut self, source: &str) {
        let prefix = format!("{source}|");
        self.sent.retain(|k, _| !k.starts_with(&prefix));
    }
}

fn take(fleet: &mut FleetBaselines, stats: &mut LinkStats, m: &impl Message) {
    let before = fleet.pieces;
    fleet.apply(m.key().unwrap_or_default(), m.payload().unwrap_or_default());
    if fleet.pieces > before {
        stats.pieces_in += 1;
    } else {
        stats.pieces_refused += 1;
    }
}

/// How long the start-up read of the baselines topic may take before the
/// correlator goes on with what it has (counted in `catch_up_timeouts`).
pub const CATCH_UP_LIMIT: Duration = Duration::from_secs(30);
/// Pieces taken from the topic per call of [`Link::drain`] (the rest wait for
/// the next call, so observations keep flowing).
pub const DRAIN_BATCH: usize = 10_000;
/// Pieces librdkafka may queue towards the baselines topic.
pub const PIECES_QUEUE_MESSAGES: usize = 100_000;

/// What the sharing did, for the correlator's summary and metrics.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LinkStats {
    /// Pieces read from the topic and taken.
    pub pieces_in: u64,
    /// Pieces read and refused (see [`PieceError`]).
    pub pieces_refused: u64,
    /// Pieces published.
    pub pieces_out: u64,
    /// Pieces the topic did not take.
    pub produce_errors: u64,
    /// Start-up reads that hit [`CATCH_UP_LIMIT`].
    pub catch_up_timeouts: u64,
}

/// A correlator's connection to the baselines topic: it reads every piece
/// (no consumer group: each correlator needs all of them) and publishes the
/// pieces of its partitions that changed.
pub struct Link {
    consumer: BaseConsumer,
    producer: BaseProducer,
    topic: String,
    pub interval: Duration,
    pub fleet: FleetBaselines,
    published: Published,
    pub stats: LinkStats,
}

impl Link {
    /// Connects and assigns every partition of the topic from its beginning.
    pub fn open(
        cfg: &FleetConfig,
        sharing: &BaselineSharing,
        half_life_seconds: u64,
    ) -> Result<Link, FleetError> {
        let consumer: BaseConsumer = client_config(cfg)?
            .set("group.id", format!("{}.baselines", cfg.group_id))
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .create()?;
        let producer: BaseProducer = client_config(cfg)?
            .set(
                "queue.buffering.max.messages",
                PIECES_QUEUE_MESSAGES.to_string(),
            )
            .set("linger.ms", "100")
            .set("compression.type", "lz4")
            .create()?;
        let md = consumer.fetch_metadata(Some(&sharing.topic), REQUEST_TIMEOUT)?;
        let mut tpl = TopicPartitionList::new();
        for t in md.topics().iter().filter(|t| t.name() == sharing.topic) {
            if let Some(e) = t.error() {
                return Err(FleetError::Consumer(format!(
                    "baselines topic {}: {} (create it compacted, or set [fleet] baselines_topic = \"\")",
                    sharing.topic,
                    rdkafka::error::RDKafkaErrorCode::from(e)
                )));
            }
            for p in t.partitions() {
                tpl.add_partition_offset(&sharing.topic, p.id(), Offset::Beginning)?;
            }
        }
        if tpl.count() == 0 {
            return Err(FleetError::Consumer(format!(
                "baselines topic {} has no partitions (create it compacted, or set [fleet] baselines_topic = \"\")",
                sharing.topic
            )));
        }
        consumer.assign(&tpl)?;
        Ok(Link {
            consumer,
            producer,
            topic: sharing.topic.clone(),
            interval: Duration::from_nanos(sharing.interval_ns),
            fleet: FleetBaselines::new(half_life_seconds),
            published: Published::default(),
            stats: LinkStats::default(),
        })
    }

    /// Reads the topic up to the end it had when called (the fleet's
    /// baselines before the first observation is scored).
    pub fn catch_up(&mut self) -> Result<(), FleetError> {
        let started = Instant::now();
        let assignment = self.consumer.assignment()?;
        let mut ends = BTreeMap::new();
        for e in assignment.elements() {
            let (_, high) =
                self.consumer
                    .fetch_watermarks(&self.topic, e.partition(), REQUEST_TIMEOUT)?;
            ends.insert(e.partition(), high);
        }
        let mut next: BTreeMap<i32, i64> = BTreeMap::new();
        while ends
            .iter()
            .any(|(p, &h)| next.get(p).copied().unwrap_or(0) < h)
        {
            if started.elapsed() >= CATCH_UP_LIMIT {
                self.stats.catch_up_timeouts += 1;
                break;
            }
            if let Some(Ok(m)) = self.consumer.poll(Duration::from_millis(100)) {
                next.insert(m.partition(), m.offset() + 1);
                take(&mut self.fleet, &mut self.stats, &m);
            }
        }
        Ok(())
    }

    /// Takes the pieces that arrived since the last call (at most [`DRAIN_BATCH`]).
    pub fn drain(&mut self) {
        for _ in 0..DRAIN_BATCH {
            match self.consumer.poll(Duration::ZERO) {
                Some(Ok(m)) => take(&mut self.fleet, &mut self.stats, &m),
                Some(Err(_)) => self.stats.pieces_refused += 1,
                None => break,
            }
        }
    }

    /// Publishes the pieces of `learned` that changed since they were last sent.
    pub fn publish(&mut self, source: &str, learned: &Baselines) {
        for (key, value) in self.published.changed(source, learned) {
            let record: BaseRecord<'_, str, [u8]> = BaseRecord::to(&self.topic)
                .key(key.as_str())
                .payload(value.as_slice());
            match self.producer.send(record) {
                Ok(()) => self.stats.pieces_out += 1,
                Err(_) => self.stats.produce_errors += 1,
            }
        }
        self.producer.poll(Duration::ZERO);
    }

    /// A partition moved away: its new owner publishes its pieces.
    pub fn forget(&mut self, source: &str) {
        self.published.forget(source);
    }

    /// Waits for the published pieces to be acknowledged.
    pub fn flush(&mut self) {
        if self.producer.flush(REQUEST_TIMEOUT).is_err() {
            self.stats.produce_errors += self.producer.in_flight_count().max(0) as u64;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    fn learned(seed: u64) -> Baselines {
        let mut b = Baselines::new(86_400);
        for i in 0..40u64 {
            let v = ((i * 7919 + seed * 104_729) % 10_000) as f64;
            b.insert(
                &format!("app:com.example.{}", (i + seed) % 3),
                &[("bytes_up", v * 100.0), ("connections", (i % 5) as f64)],
                (1_000 + i * 60 + seed) * S,
            );
            b.remember(
                &format!("com.example.{}", i % 4),
                &format!("d:host{}.example", (i + seed) % 6),
                (500 + i + seed) * S,
            );
        }
        b
    }

    #[test]
    fn pieces_read_back_merge_to_the_union_in_any_order() {
        let a = learned(1);
        let b = learned(2);
        let mut want = Baselines::new(86_400);
        want.merge(&a);
        want.merge(&b);
        let mut msgs = pieces("obs/0", &a);
        msgs.extend(pieces("obs/1", &b));
        for order in [false, true] {
            let mut fleet = FleetBaselines::new(86_400);
            let mut m = msgs.clone();
            if order {
                m.reverse();
            }
            for (k, v) in &m {
                fleet.apply(k.as_bytes(), v);
            }
            assert!(fleet.refused.is_empty(), "{:?}", fleet.refused);
            let got = fleet.view(&BTreeMap::new(), "");
            // Bucket weights add in another order: equal to the last bit here
            // (each bucket's weights are integers before decay, and both merges
            // decay to the same time).
            assert_eq!(
                got.scopes.keys().collect::<Vec<_>>(),
                want.scopes.keys().collect::<Vec<_>>()
            );
            for (scope, feats) in &want.scopes {
                for (f, s) in feats {
                    let g = &got.scopes[scope][f];
                    assert_eq!(g.as_of_ns, s.as_of_ns);
                    assert_eq!(
                        g.buckets.keys().collect::<Vec<_>>(),
                        s.buckets.keys().collect::<Vec<_>>()
                    );
                    for (i, w) in &s.buckets {
                        assert!(
                            (g.buckets[i] - w).abs() <= 1e-12 * w.max(1.0),
                            "{scope}.{f}[{i}]"
                        );
                    }
                }
            }
            assert_eq!(got.apps, want.apps);
        }
    }

    #[test]
    fn a_newer_piece_replaces_and_the_view_leaves_its_own_partition_out() {
        let mut fleet = FleetBaselines::new(86_400);
        for (k, v) in pieces("obs/0", &learned(1)) {
            fleet.apply(k.as_bytes(), &v);
        }
        let newer = learned(3);
        for (k, v) in pieces("obs/0", &newer) {
            fleet.apply(k.as_bytes(), &v);
        }
        for (k, v) in pieces("obs/1", &learned(2)) {
            fleet.apply(k.as_bytes(), &v);
        }
        let only_0 = fleet.view(&BTreeMap::new(), "obs/1");
        assert_eq!(only_0.apps, newer.apps);
        // A live store replaces the topic's copy of its source.
        let live_b = learned(5);
        let live = BTreeMap::from([("obs/0".to_string(), &live_b)]);
        assert_eq!(fleet.view(&live, "obs/1").apps, live_b.apps);
        // A tombstone removes a piece.
        let key = PieceKey::App {
            source: "obs/0".into(),
            app: "com.example.0".into(),
        };
        fleet.apply(key.encode().as_bytes(), b"");
        assert!(!fleet
            .view(&BTreeMap::new(), "obs/1")
            .apps
            .contains_key("com.example.0"));
    }

    #[test]
    fn bad_pieces_are_counted_not_taken() {
        let mut fleet = FleetBaselines::new(86_400);
        let (k, v) = pieces("obs/0", &learned(1)).remove(0);
        let mut newer = v.clone();
        newer[2] = MAJOR + 1;
        let mut other_hl = Baselines::new(3600);
        other_hl.insert("app:x", &[("bytes_up", 1.0)], S);
        let (k2, v2) = pieces("obs/0", &other_hl).remove(0);
        let cases: [(&[u8], &[u8], &str); 6] = [
            (b"no-separators", &v, "bad_key"),
            (k.as_bytes(), b"XX\x01\x00{}", "bad_frame"),
            (k.as_bytes(), &newer, "newer_major"),
            (k.as_bytes(), b"NB\x01\x00{\"version\":1", "invalid"),
            (b"obs/0|s|app:other", &v, "mismatch"),
            (k2.as_bytes(), &v2, "half_life"),
        ];
        for (key, value, reason) in cases {
            fleet.apply(key, value);
            assert_eq!(fleet.refused.get(reason), Some(&1), "{reason}");
        }
        assert_eq!(fleet.pieces, 0);
        assert_eq!(fleet.sources().count(), 0);
    }

    #[test]
    fn only_changed_pieces_are_sent_again() {
        let mut p = Published::default();
        let mut b = learned(1);
        let all = p.changed("obs/0", &b).len();
        assert_eq!(all, b.scopes.len() + b.apps.len());
        assert!(p.changed("obs/0", &b).is_empty());
        b.remember("com.example.new", "d:new.example", S);
        let again = p.changed("obs/0", &b);
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].0, "obs/0|a|com.example.new");
        p.forget("obs/0");
        assert_eq!(p.changed("obs/0", &b).len(), all + 1);
    }
}
