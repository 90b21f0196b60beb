//! AN1717 detection: background encrypted-channel use that an app's entitlement
//! posture and its own history do not explain.
//!
//! Owns the [`Detector`]: per device, a bounded window of recent app flows and
//! lifecycle events; per device and app, the episodes found by
//! [`timeline::build`](super::timeline::build) and their alert state; the
//! [`Baselines`] the episodes are scored against; the coverage and governance tallies.
//!
//! Flow of data: every flow record goes through [`Detector::on_flow`] (attribution,
//! novelty against the app's history, held in the device window); packet time moves
//! with [`Detector::advance`], which releases lifecycle events whose `observed_ts` has
//! passed (late events revise the held window) and scores episodes that are quiet for
//! `episode_idle` or open longer than `review`; [`Detector::finish`] scores the rest and
//! writes coverage and governance records.
//!
//! Scoring (documented in docs/schema.md, "How AN1717 scores"): each feature gets a
//! surprise in 0–1 against the warmest baseline scope (app, then category, then
//! device group), or against fixed priors while the baselines warm up; volume,
//! beaconing and novelty combine by noisy-or; the entitlement posture multiplies
//! (0.7 for the most persistent apps to 1.3 for an app that declares no background
//! execution) but never raises a weak base, and a bulk upload or a beacon to a new
//! destination keeps a floor whatever the posture. Recent install/update, lost mode or
//! compliance change raise the priority. One alert per episode: `alert_created` when it
//! first crosses the threshold, `alert_updated` (same `nightjar.alert.id`, next
//! revision) when the closed episode or a late event changed it. Episodes that alerted
//! are not learned into the baselines.
//!
//! Invariants: all tables bounded by named constants, drops counted in
//! [`DetectStats`]; time is packet time; output depends only on the inputs.

use super::attribution::{Attribution, AttributionConfig, Attributor, FlowFacts, Method};
use super::baseline::Baselines;
use super::coverage::{AppTally, DeviceTally};
use super::timeline::{self, AppFlow, Mark, Segment, TimelineConfig};
use crate::mdm::{AppProfile, Catalog, Confidence, EventKind, Inventory, LifecycleEvent};
use crate::observation::{FlowSummary, Termination};
use crate::output::record::{ts, Record};
use serde::Serialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Arc;

const S: u64 = 1_000_000_000;

/// App flows held per device (8192): a busy device opens a few thousand connections
/// in the two-hour window; beyond, the oldest are dropped and counted.
pub const MAX_HELD_FLOWS_PER_DEVICE: usize = 8192;
/// Lifecycle events held per device (1024).
pub const MAX_EVENTS_PER_DEVICE: usize = 1024;
/// Devices (or unidentified clients) tracked (100 000).
pub const MAX_TRACKED_DEVICES: usize = 100_000;
/// Episode alert states kept per device (4096): one per episode in the window.
pub const MAX_EPISODES_PER_DEVICE: usize = 4096;
/// Lifecycle events handed over while running (MDM pollers, webhooks, reloads) and not
/// yet observed: a day of a large fleet's derived events; beyond it the oldest is
/// dropped (counted in `events_dropped`).
pub const MAX_PENDING_EVENTS: usize = 1_000_000;
/// APNs activity times held per device (1024, about a day of pushes and keep-alives);
/// beyond, the oldest are dropped and counted.
pub const MAX_APNS_ACTIVITY_PER_DEVICE: usize = 1024;
/// Flows listed in an alert's `network.community_id` (256).
pub const MAX_ALERT_FLOWS: usize = 256;
/// Distinct apps remembered per JA4 to tell a shared TLS stack (16).
pub const MAX_APPS_PER_STACK: usize = 16;
/// A JA4 used by this many apps is the platform's stack, never unusual for one app.
pub const COMMON_STACK_APPS: usize = 5;
/// Risk change that makes a revised alert worth writing.
pub const RISK_UPDATE_STEP: u8 = 5;

/// The analytic's reference data (checked against attack.mitre.org: detection
/// strategy DET0641 "Detection of Encrypted Channel" holds AN1716 and AN1717 and
/// detects Mobile technique T1521 "Encrypted Channel", tactic Command and Control).
pub const RULE_ID: &str = "AN1717";
pub const RULE_NAME: &str = "Background encrypted channel not explained by app posture or history";
pub const RULE_REFERENCE: &str = "https://attack.mitre.org/detectionstrategies/DET0641/";
pub const TECHNIQUE_ID: &str = "T1521";
pub const TECHNIQUE_NAME: &str = "Encrypted Channel";
pub const TECHNIQUE_REFERENCE: &str = "https://attack.mitre.org/techniques/T1521/";
pub const TACTIC_ID: &str = "TA0037";
pub const TACTIC_NAME: &str = "Command and Control";
pub const TACTIC_REFERENCE: &str = "https://attack.mitre.org/tactics/TA0037/";

/// Features of a background episode, in output order.
pub const FEATURES: [&str; 7] = [
    "bytes_up",
    "bytes_down",
    "duration_seconds",
    "connections",
    "periodicity",
    "new_destinations",
    "unusual_ja4",
];

/// Detector tunables (validated config).
#[derive(Clone, Debug)]
pub struct DetectConfig {
    pub timeline: TimelineConfig,
    pub attribution: AttributionConfig,
    /// How long flows and events are held per device (late events reach this far back).
    pub window_ns: u64,
    /// An episode still open after this long is scored without waiting for its end.
    pub review_ns: u64,
    /// Risk score (0–100) at which an episode alerts.
    pub alert_threshold: u8,
    /// Baseline weight a scope needs before it is used (else category, group, priors).
    pub warmup: f64,
    /// A destination or JA4 first seen for the app less than this before the episode is new.
    pub new_age_ns: u64,
    /// Lifecycle changes (install, update, lost mode, compliance) this recent raise priority.
    pub recent_change_ns: u64,
    /// Half-life of the baselines' decay, seconds.
    pub half_life_seconds: u64,
    /// A new flow of an app starting this soon after activity on the device's APNs
    /// connection marks an inferred push wake.
    pub apns_wake_ns: u64,
}

impl Default for DetectConfig {
    fn default() -> Self {
        DetectConfig {
            timeline: TimelineConfig::default(),
            attribution: AttributionConfig::default(),
            window_ns: 7200 * S,
            review_ns: 900 * S,
            alert_threshold: 50,
            warmup: 5.0,
            new_age_ns: 6 * 3600 * S,
            recent_change_ns: 24 * 3600 * S,
            half_life_seconds: 14 * 86_400,
            apns_wake_ns: 5 * S,
        }
    }
}

/// Counters (drops and revisions), reported in `nightjar.stats`.
#[derive(Clone, Debug, Default, Serialize)]
pub struct DetectStats {
    pub held_flows_dropped: u64,
    pub events_dropped: u64,
    pub devices_refused: u64,
    pub episodes_scored: u64,
    pub episodes_learned: u64,
    pub alerts_created: u64,
    pub alerts_updated: u64,
    pub late_events: u64,
    pub late_events_outside_window: u64,
    pub events_unknown_device: u64,
    /// APNs activity times seen (connection starts, its first packets with data,
    /// each record's last packet).
    pub apns_activity: u64,
    pub apns_activity_dropped: u64,
}

/// What the detector needs of one flow record.
pub struct FlowInput<'a> {
    pub summary: &'a FlowSummary,
    /// `destination.domain` and where it came from ("sni", "dns").
    pub domain: Option<&'a str>,
    pub domain_source: Option<&'a str>,
    /// The inventory device id, when identity resolved it.
    pub device_id: Option<&'a str>,
    /// How identity resolved it ("wifi_mac", "dhcp", ...), for coverage.
    pub identity_method: Option<&'a str>,
}

/// A flow held in a device window.
#[derive(Clone, Debug)]
pub struct HeldFlow {
    pub id: u64,
    pub community_id: String,
    /// The canonical flow key (to find the flow's kept packets).
    pub key: crate::flow::FlowKey,
    pub start_ns: u64,
    pub end_ns: u64,
    pub bytes_up: u64,
    pub bytes_down: u64,
    pub app: Option<String>,
    pub method: Method,
    pub confidence: f64,
    pub destination: String,
    pub named: bool,
    pub ja4: Option<String>,
    pub quic_undecrypted: bool,
    pub ech: bool,
    /// The flow record, kept only for evidence bundles.
    pub record: Option<Value>,
}

#[derive(Clone, Debug, Default)]
struct EpisodeState {
    revision: u32,
    risk: u8,
    flows: usize,
    learned: bool,
    closed_emitted: bool,
}

#[derive(Default)]
struct AppWork {
    dirty: bool,
    /// A lifecycle event arrived: closed episodes are scored again.
    revise: bool,
    last_activity_ns: u64,
    last_eval_ns: u64,
}

#[derive(Default)]
struct DeviceState {
    flows: VecDeque<HeldFlow>,
    events: VecDeque<LifecycleEvent>,
    apps: BTreeMap<String, AppWork>,
    episodes: HashMap<String, EpisodeState>,
    episode_order: VecDeque<String>,
    tally: DeviceTally,
    is_device: bool,
    client_ip: Option<String>,
    /// Activity times on the device's APNs connection(s), oldest first.
    apns: VecDeque<u64>,
    /// An APNs connection was seen for the device.
    apns_seen: bool,
}

/// True for a flow to Apple's push service (APNs): a `*.push.apple.com` name on port
/// 5223 or 443, or port 5223 to Apple's 17.0.0.0/8 when the flow has no name.
pub fn is_apns(domain: Option<&str>, proto: u8, server_ip: std::net::IpAddr, port: u16) -> bool {
    if proto != 6 || !matches!(port, 5223 | 443) {
        return false;
    }
    match domain {
        Some(d) => {
            let d = d.trim_end_matches('.').to_ascii_lowercase();
            d == "push.apple.com" || d.ends_with(".push.apple.com")
        }
        None => port == 5223 && matches!(server_ip, std::net::IpAddr::V4(v) if v.octets()[0] == 17),
    }
}

/// Activity times of an APNs flow record: its start, the packets carrying data
/// among the first ones (the timing profile), and its last packet.
fn apns_activity_times(f: &FlowSummary) -> Vec<u64> {
    let mut out = vec![f.start_ns];
    let mut t = f.start_ns;
    for (len, iat) in f.profile.lengths.iter().zip(&f.profile.iat_us) {
        t = t.saturating_add(iat.saturating_mul(1000));
        if *len != 0 {
            out.push(t);
        }
    }
    out.push(f.end_ns);
    out.sort_unstable();
    out.dedup();
    out
}

/// Push wakes inferred from APNs activity: an activity time followed within
/// `window_ns` by the start of one of the app's flows.
pub fn infer_push_wakes(activity: &[u64], app_flow_starts: &[u64], window_ns: u64) -> Vec<Mark> {
    let mut starts = app_flow_starts.to_vec();
    starts.sort_unstable();
    let mut out: Vec<Mark> = Vec::new();
    for &t in activity {
        let i = starts.partition_point(|&s| s <= t);
        if starts.get(i).is_some_and(|&s| s - t <= window_ns)
            && out.last().is_none_or(|m| m.ts_ns != t)
        {
            out.push(Mark {
                ts_ns: t,
                kind: EventKind::PushWake,
                confidence: Confidence::Inferred,
            });
        }
    }
    out
}

/// An alert and what an evidence bundle needs to explain it.
pub struct AlertOut {
    pub record: Value,
    pub alert_id: String,
    pub revision: u32,
    pub device_key: String,
    pub episode: (u64, u64),
    /// The episode's flows (with records when evidence is kept).
    pub flows: Vec<HeldFlow>,
    /// Every held app flow of the device in the report's time range.
    pub context_flows: Vec<HeldFlow>,
    /// Timelines of the device's apps over the range.
    pub segments: Vec<(String, Segment)>,
    pub events: Vec<LifecycleEvent>,
}

/// The AN1717 detector.
pub struct Detector {
    cfg: DetectConfig,
    inv: Arc<Inventory>,
    cat: Arc<Catalog>,
    attributor: Attributor,
    /// What episodes are scored against: the loaded or learned baselines, and,
    /// when shared with a fleet, the other correlators' too.
    baselines: Baselines,
    /// When shared with a fleet: the baselines it started with, and what it
    /// learned itself since (the part it publishes); `baselines` is then
    /// start ⊕ fleet's ⊕ learned.
    shared: Option<SharedBaselines>,
    devices: HashMap<String, DeviceState>,
    /// Events not yet observed (sorted by observed_ts, then ts).
    pending: VecDeque<LifecycleEvent>,
    /// JA4 → apps that used it (to tell the platform's shared stack).
    stacks: HashMap<String, BTreeSet<String>>,
    apps: BTreeMap<String, AppTally>,
    keep_records: bool,
    last_check_ns: u64,
    pub stats: DetectStats,
}

fn hex16(bytes: &[u8]) -> String {
    bytes.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

fn clamp01(x: f64) -> f64 {
    if x.is_nan() {
        0.0
    } else {
        x.clamp(0.0, 1.0)
    }
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// The entitlement posture of an app, as scored.
#[derive(Clone, Debug, Serialize)]
pub struct Posture {
    pub in_catalog: bool,
    pub background_modes: Vec<String>,
    pub network_extensions: Vec<String>,
    pub push: bool,
    pub persistence_score: u8,
    /// Multiplier applied to the base score.
    pub weight: f64,
}

impl Posture {
    pub fn of(p: Option<&AppProfile>) -> Posture {
        match p {
            Some(p) => {
                let score = p.persistence_score();
                Posture {
                    in_catalog: true,
                    background_modes: p
                        .background_modes
                        .iter()
                        .map(|m| m.as_str().to_string())
                        .collect(),
                    network_extensions: p
                        .network_extensions
                        .iter()
                        .map(|m| m.as_str().to_string())
                        .collect(),
                    push: p.push,
                    persistence_score: score,
                    weight: round3(1.3 - 0.12 * f64::from(score)),
                }
            }
            None => Posture {
                in_catalog: false,
                background_modes: Vec::new(),
                network_extensions: Vec::new(),
                push: false,
                persistence_score: 0,
                weight: 1.0,
            },
        }
    }

    /// Writes the declared posture (not the weight) under `{prefix}.posture.*`: alerts
    /// and the governance summary show it the same way.
    pub fn put_into(&self, r: &mut Record, prefix: &str) {
        let key = |field: &str| format!("{prefix}.posture.{field}");
        r.put(&key("in_catalog"), self.in_catalog);
        r.put(&key("background_modes"), json!(self.background_modes));
        r.put(&key("network_extensions"), json!(self.network_extensions));
        r.put(&key("push"), self.push);
        r.put(&key("persistence_score"), self.persistence_score);
    }

    /// True when the posture declares any way to run in the background.
    pub fn declares_background(&self) -> bool {
        !self.background_modes.is_empty() || !self.network_extensions.is_empty() || self.push
    }
}

/// One scored feature.
#[derive(Clone, Debug, Serialize)]
pub struct ScoredFeature {
    pub name: &'static str,
    pub value: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub percentile: Option<f64>,
    /// The baseline scope used, or "prior".
    pub baseline: String,
    pub baseline_count: f64,
    pub score: f64,
}

/// The result of scoring one episode.
#[derive(Clone, Debug)]
pub struct Scored {
    pub features: Vec<ScoredFeature>,
    pub volume: f64,
    pub beacon: f64,
    pub novelty: f64,
    pub base: f64,
    pub risk: u8,
    pub priority_reasons: Vec<String>,
}

/// Raw feature values of an episode.
#[derive(Clone, Debug, Default)]
pub struct EpisodeFeatures {
    pub bytes_up: f64,
    pub bytes_down: f64,
    pub duration_seconds: f64,
    pub connections: f64,
    pub periodicity: f64,
    pub new_destinations: f64,
    pub unusual_ja4: f64,
}

impl EpisodeFeatures {
    pub fn get(&self, name: &str) -> f64 {
        match name {
            "bytes_up" => self.bytes_up,
            "bytes_down" => self.bytes_down,
            "duration_seconds" => self.duration_seconds,
            "connections" => self.connections,
            "periodicity" => self.periodicity,
            "new_destinations" => self.new_destinations,
            "unusual_ja4" => self.unusual_ja4,
            _ => 0.0,
        }
    }
}

/// Periodicity of event times: 1 − coefficient of variation of the gaps (0 with
/// fewer than four events).
pub fn periodicity(times: &[u64]) -> f64 {
    if times.len() < 4 {
        return 0.0;
    }
    let mut t = times.to_vec();
    t.sort_unstable();
    let gaps: Vec<f64> = t.windows(2).map(|w| (w[1] - w[0]) as f64).collect();
    let n = gaps.len() as f64;
    let mean = gaps.iter().sum::<f64>() / n;
    if mean <= 0.0 {
        return 0.0;
    }
    let var = gaps.iter().map(|g| (g - mean).powi(2)).sum::<f64>() / n;
    clamp01(1.0 - var.sqrt() / mean)
}

/// Absolute surprise of a volume feature: 0 below the size at which background
/// traffic starts to matter, 1 at a size no background sync explains.
fn abs_surprise(name: &str, v: f64) -> f64 {
    let log_ramp = |lo: f64, hi: f64| {
        if v <= lo {
            0.0
        } else {
            clamp01((v / lo).ln() / (hi / lo).ln())
        }
    };
    match name {
        "bytes_up" => log_ramp(250e3, 2.5e6),
        "bytes_down" => log_ramp(5e6, 100e6),
        "duration_seconds" => clamp01((v - 180.0) / 720.0),
        "connections" => clamp01((v - 8.0) / 22.0),
        _ => 0.0,
    }
}

/// The value below which a volume feature is not learned (baselines of volume
/// features describe the app's significant background transfers, not its pings).
pub fn learn_floor(name: &str) -> f64 {
    match name {
        "bytes_up" => 100e3,
        "bytes_down" => 1e6,
        "duration_seconds" => 120.0,
        "connections" => 5.0,
        _ => 0.0,
    }
}

/// How far a value exceeds the baseline's 95th percentile: 0 at or below it, 1 at
/// four times it.
fn over_q95(v: f64, q95: f64) -> f64 {
    if q95 <= 0.0 {
        return 1.0;
    }
    if v <= q95 {
        0.0
    } else {
        clamp01((v / q95).ln() / 4f64.ln())
    }
}

/// A detector's baselines when it shares them with a fleet.
struct SharedBaselines {
    start: Baselines,
    learned: Baselines,
}

/// JA4 → the apps whose memory holds it (at most [`MAX_APPS_PER_STACK`] each).
fn stacks_of(b: &Baselines) -> HashMap<String, BTreeSet<String>> {
    let mut stacks: HashMap<String, BTreeSet<String>> = HashMap::new();
    for (app, mem) in &b.apps {
        for k in mem.first_seen.keys() {
            if let Some(j) = k.strip_prefix("j:") {
                let set = stacks.entry(j.to_string()).or_default();
                if set.len() < MAX_APPS_PER_STACK {
                    set.insert(app.clone());
                }
            }
        }
    }
    stacks
}

impl Detector {
    pub fn new(
        cfg: DetectConfig,
        inv: Arc<Inventory>,
        cat: Arc<Catalog>,
        mut events: Vec<LifecycleEvent>,
        baselines: Option<Baselines>,
        keep_records: bool,
    ) -> Detector {
        events.sort_by(|a, b| (a.observed_ts, a.ts, &a.id).cmp(&(b.observed_ts, b.ts, &b.id)));
        let baselines = baselines.unwrap_or_else(|| Baselines::new(cfg.half_life_seconds));
        let stacks = stacks_of(&baselines);
        Detector {
            attributor: Attributor::new(cfg.attribution),
            cfg,
            inv,
            cat,
            baselines,
            shared: None,
            devices: HashMap::new(),
            pending: events.into(),
            stacks,
            apps: BTreeMap::new(),
            keep_records,
            last_check_ns: 0,
            stats: DetectStats::default(),
        }
    }

    pub fn inventory(&self) -> &Inventory {
        &self.inv
    }

    /// Replaces the inventory (a reload or a new MDM pull); flows already held keep
    /// the attribution they got.
    pub fn set_inventory(&mut self, inv: Arc<Inventory>) {
        self.inv = inv;
    }

    /// Replaces the app catalog (a reload).
    pub fn set_catalog(&mut self, cat: Arc<Catalog>) {
        self.cat = cat;
    }

    /// Adds lifecycle events learnt while running; each is applied once packet time
    /// reaches its `observed_ts`, like the events given at the start. Bounded by
    /// [`MAX_PENDING_EVENTS`] (the oldest pending go first, counted).
    pub fn add_events(&mut self, events: Vec<LifecycleEvent>) {
        if events.is_empty() {
            return;
        }
        let mut all: Vec<LifecycleEvent> = self.pending.drain(..).collect();
        all.extend(events);
        all.sort_by(|a, b| (a.observed_ts, a.ts, &a.id).cmp(&(b.observed_ts, b.ts, &b.id)));
        let over = all.len().saturating_sub(MAX_PENDING_EVENTS);
        self.stats.events_dropped += over as u64;
        self.pending = all.into_iter().skip(over).collect();
    }

    /// The `nightjar.coverage` records as they stand (one per device or unidentified
    /// client), without ending anything: the daemon writes them periodically.
    pub fn coverage(&self, now_ns: u64) -> Vec<Value> {
        let mut dks: Vec<&String> = self.devices.keys().collect();
        dks.sort();
        dks.into_iter()
            .map(|dk| {
                let dev = &self.devices[dk];
                dev.tally.record(
                    dk,
                    dev.is_device,
                    dev.client_ip.as_deref(),
                    self.inv.device(dk).is_some(),
                    now_ns,
                )
            })
            .collect()
    }

    pub fn baselines(&self) -> &Baselines {
        &self.baselines
    }

    /// Keeps what this detector learns apart from here on, so that it can be
    /// published and the fleet's baselines merged in ([`Self::set_fleet_baselines`]).
    pub fn share_baselines(&mut self) {
        if self.shared.is_none() {
            self.shared = Some(SharedBaselines {
                start: self.baselines.clone(),
                learned: Baselines::new(self.cfg.half_life_seconds),
            });
        }
    }

    /// What this detector learned since [`Self::share_baselines`].
    pub fn learned_baselines(&self) -> Option<&Baselines> {
        self.shared.as_ref().map(|s| &s.learned)
    }

    /// Scores from now on against `fleet` ⊕ what this detector learned (exact:
    /// sketch buckets add, first-seen times take the minimum). Without
    /// [`Self::share_baselines`] it does nothing.
    pub fn set_fleet_baselines(&mut self, fleet: &Baselines) {
        let Some(shared) = &self.shared else {
            return;
        };
        let mut view = shared.start.clone();
        view.merge(fleet);
        view.merge(&shared.learned);
        self.stacks = stacks_of(&view);
        self.baselines = view;
    }

    fn remember(&mut self, app: &str, key: &str, ts: u64) {
        self.baselines.remember(app, key, ts);
        if let Some(l) = self.shared.as_mut().map(|s| &mut s.learned) {
            l.remember(app, key, ts);
        }
    }

    pub fn attribution_stats(&self) -> &super::attribution::AttributionStats {
        &self.attributor.stats
    }

    fn profile(&self, device: Option<&str>, app: &str) -> Option<&AppProfile> {
        let version = device
            .and_then(|d| self.inv.app(d, app))
            .and_then(|a| a.version.as_deref());
        self.cat.app(app, version)
    }

    fn device_state<'a>(
        devices: &'a mut HashMap<String, DeviceState>,
        stats: &mut DetectStats,
        key: &str,
        is_device: bool,
    ) -> Option<&'a mut DeviceState> {
        if !devices.contains_key(key) {
            if devices.len() >= MAX_TRACKED_DEVICES {
                stats.devices_refused += 1;
                return None;
            }
            devices.insert(
                key.to_string(),
                DeviceState {
                    is_device,
                    ..DeviceState::default()
                },
            );
        }
        devices.get_mut(key)
    }

    /// Attributes a flow, holds it and updates coverage; returns its attribution and
    /// any alerts that became due.
    pub fn on_flow(
        &mut self,
        input: &FlowInput<'_>,
        record: Option<&Value>,
    ) -> (Attribution, Vec<AlertOut>) {
        let f = input.summary;
        let ch = f.app.client_hello.as_deref();
        let ja4 = ch.map(|c| c.ja4.as_str());
        let facts = FlowFacts {
            start_ns: f.start_ns,
            name: input.domain,
            name_source: input.domain_source,
            ja4,
            server_ip: f.server_ip,
            client_ip: f.client_ip,
        };
        let attribution = self
            .attributor
            .attribute(&facts, input.device_id, &self.inv, &self.cat);
        let device_key = match input.device_id {
            Some(d) => d.to_string(),
            None => format!("ip:{}", f.client_ip),
        };
        let dest = facts.destination();
        let app = attribution.bundle_id.clone();
        // Novelty memory: first-seen times of this app's destinations and stacks.
        if let Some(a) = &app {
            if !matches!(attribution.method, Method::Unknown | Method::System) {
                self.remember(a, &format!("d:{dest}"), f.start_ns);
                if let Some(j) = ja4 {
                    self.remember(a, &format!("j:{j}"), f.start_ns);
                    let set = self.stacks.entry(j.to_string()).or_default();
                    if set.len() < MAX_APPS_PER_STACK {
                        set.insert(a.clone());
                    }
                }
            }
        }
        let held = HeldFlow {
            id: f.id,
            community_id: f.community_id.clone(),
            key: crate::flow::FlowKey::new(
                f.client_ip,
                f.client_port,
                f.server_ip,
                f.server_port,
                f.proto,
                [
                    f.vlans.first().copied().unwrap_or(0),
                    f.vlans.get(1).copied().unwrap_or(0),
                ],
            )
            .0,
            start_ns: f.start_ns,
            end_ns: f.end_ns,
            bytes_up: f.client.ip_bytes,
            bytes_down: f.server.ip_bytes,
            app: app.clone(),
            method: attribution.method,
            confidence: attribution.confidence,
            destination: dest,
            named: input.domain.is_some(),
            ja4: ja4.map(str::to_string),
            quic_undecrypted: f.app.quic.as_ref().is_some_and(|q| !q.decrypted),
            ech: ch.is_some_and(|c| c.ech),
            record: if self.keep_records {
                record.cloned()
            } else {
                None
            },
        };
        let is_device = input.device_id.is_some();
        let encrypted_dns = matches!(f.server_port, 853)
            || input.domain.is_some_and(|d| {
                let d = d.to_ascii_lowercase();
                d.starts_with("dns.") || d.contains("doh") || d == "mask.icloud.com"
            });
        let in_inventory = input
            .device_id
            .is_some_and(|d| self.inv.device(d).is_some());
        let window = self.cfg.window_ns;
        let identity = input.identity_method.map(str::to_string);
        let client_ip = f.client_ip.to_string();
        let interim = f.interim;
        let mut dropped = 0;
        let apns = is_apns(input.domain, f.proto, f.server_ip, f.server_port)
            .then(|| apns_activity_times(f));
        if let Some(dev) =
            Self::device_state(&mut self.devices, &mut self.stats, &device_key, is_device)
        {
            dev.client_ip.get_or_insert(client_ip);
            if let Some(times) = apns {
                dev.apns_seen = true;
                for t in times {
                    if dev.apns.contains(&t) {
                        continue;
                    }
                    if dev.apns.len() >= MAX_APNS_ACTIVITY_PER_DEVICE {
                        dev.apns.pop_front();
                        self.stats.apns_activity_dropped += 1;
                    }
                    let at = dev.apns.partition_point(|&x| x < t);
                    dev.apns.insert(at, t);
                    self.stats.apns_activity += 1;
                }
                // Apps already scored may now be explained by a push: score again.
                for w in dev.apps.values_mut() {
                    w.dirty = true;
                    w.revise = true;
                }
            }
            if !interim {
                dev.tally.add_flow(
                    &held,
                    &attribution,
                    encrypted_dns,
                    in_inventory,
                    identity.as_deref(),
                );
            }
            if held.app.is_some() {
                // An interim record's flow is replaced by its later totals.
                if let Some(old) = dev.flows.iter_mut().find(|h| h.id == held.id) {
                    *old = held.clone();
                } else {
                    if dev.flows.len() >= MAX_HELD_FLOWS_PER_DEVICE {
                        dev.flows.pop_front();
                        dev.tally.held_dropped += 1;
                        dropped += 1;
                    }
                    dev.flows.push_back(held.clone());
                }
                if let Some(a) = &held.app {
                    let w = dev.apps.entry(a.clone()).or_default();
                    w.dirty = true;
                    w.last_activity_ns = w.last_activity_ns.max(held.end_ns);
                }
            }
            let horizon = f.end_ns.saturating_sub(window);
            while dev.flows.front().is_some_and(|h| h.end_ns < horizon) {
                dev.flows.pop_front();
            }
        }
        self.stats.held_flows_dropped += dropped;
        if let Some(a) = &app {
            if !interim {
                let t = self.apps.entry(a.clone()).or_default();
                t.flows += 1;
                if let Some(d) = input.device_id {
                    t.devices_seen.insert(d.to_string());
                }
            }
        }
        // A flow flushed because the input ended or the sensor stopped was emitted at
        // the stop, which says nothing about traffic after its last packet: it moves
        // time only to its end (the final scoring is `finish`).
        let now = match f.termination {
            Termination::EndOfInput | Termination::Shutdown => f.end_ns,
            _ => f.emitted_ns.max(f.end_ns),
        };
        let alerts = self.advance(now);
        (attribution, alerts)
    }

    /// Moves packet time: releases observed lifecycle events and scores due episodes.
    pub fn advance(&mut self, now_ns: u64) -> Vec<AlertOut> {
        let mut out = Vec::new();
        while self
            .pending
            .front()
            .is_some_and(|e| e.observed_ts <= now_ns)
        {
            if let Some(e) = self.pending.pop_front() {
                self.apply_event(e, now_ns);
            }
        }
        if now_ns < self.last_check_ns + 10 * S {
            return out;
        }
        self.last_check_ns = now_ns;
        let mut due: Vec<(String, String)> = Vec::new();
        let (idle, review) = (self.cfg.timeline.episode_idle_ns, self.cfg.review_ns);
        for (dk, dev) in &self.devices {
            for (app, w) in &dev.apps {
                if w.dirty
                    && (now_ns >= w.last_activity_ns + idle || now_ns >= w.last_eval_ns + review)
                {
                    due.push((dk.clone(), app.clone()));
                }
            }
        }
        due.sort();
        for (dk, app) in due {
            out.extend(self.evaluate(&dk, &app, now_ns, false));
        }
        out
    }

    fn apply_event(&mut self, e: LifecycleEvent, now_ns: u64) {
        let late = e.observed_ts > e.ts;
        if late {
            self.stats.late_events += 1;
        }
        if self.inv.device(&e.device_id).is_none() {
            self.stats.events_unknown_device += 1;
        }
        let window = self.cfg.window_ns;
        if late && e.ts < now_ns.saturating_sub(window) {
            self.stats.late_events_outside_window += 1;
        }
        let full = self
            .devices
            .get(&e.device_id)
            .is_some_and(|d| d.events.len() >= MAX_EVENTS_PER_DEVICE);
        if full {
            self.stats.events_dropped += 1;
        }
        let Some(dev) = Self::device_state(&mut self.devices, &mut self.stats, &e.device_id, true)
        else {
            return;
        };
        dev.tally.add_event(&e);
        match &e.bundle_id {
            Some(b) => {
                let w = dev.apps.entry(b.clone()).or_default();
                w.dirty = true;
                w.revise = true;
            }
            None => {
                for w in dev.apps.values_mut() {
                    w.dirty = true;
                    w.revise = true;
                }
            }
        }
        if full {
            dev.events.pop_front();
        }
        dev.events.push_back(e);
    }

    /// Scores everything still open and writes coverage and governance records.
    pub fn finish(&mut self, now_ns: u64) -> (Vec<AlertOut>, Vec<Value>) {
        let mut alerts = Vec::new();
        while let Some(e) = self.pending.pop_front() {
            self.apply_event(e, now_ns);
        }
        let mut keys: Vec<(String, String)> = self
            .devices
            .iter()
            .flat_map(|(dk, d)| d.apps.keys().map(move |a| (dk.clone(), a.clone())))
            .collect();
        keys.sort();
        for (dk, app) in keys {
            alerts.extend(self.evaluate(&dk, &app, now_ns, true));
        }
        let mut records = self.coverage(now_ns);
        for (app, t) in &self.apps {
            let installed = self
                .inv
                .devices()
                .iter()
                .filter(|d| self.inv.app(&d.id, app).is_some())
                .count();
            let profile = self.cat.app(app, None);
            records.push(t.record(app, profile, installed, now_ns));
        }
        (alerts, records)
    }

    fn marks_for(&self, dev: &DeviceState, app: &str) -> Vec<Mark> {
        let mut marks: Vec<Mark> = dev
            .events
            .iter()
            .filter(|e| e.bundle_id.as_deref() == Some(app))
            .map(|e| Mark {
                ts_ns: e.ts,
                kind: e.kind,
                confidence: e.confidence,
            })
            .collect();
        if !dev.apns.is_empty() {
            let starts: Vec<u64> = dev
                .flows
                .iter()
                .filter(|h| h.app.as_deref() == Some(app))
                .map(|h| h.start_ns)
                .collect();
            let apns: Vec<u64> = dev.apns.iter().copied().collect();
            marks.extend(infer_push_wakes(&apns, &starts, self.cfg.apns_wake_ns));
        }
        marks
    }

    fn evaluate(&mut self, dk: &str, app: &str, now_ns: u64, final_: bool) -> Vec<AlertOut> {
        let mut out = Vec::new();
        let Some(dev) = self.devices.get(dk) else {
            return out;
        };
        let flows: Vec<&HeldFlow> = dev
            .flows
            .iter()
            .filter(|h| h.app.as_deref() == Some(app))
            .collect();
        let app_flows: Vec<AppFlow> = flows
            .iter()
            .map(|h| AppFlow {
                start_ns: h.start_ns,
                end_ns: h.end_ns,
            })
            .collect();
        let marks = self.marks_for(dev, app);
        let tl = timeline::build(&app_flows, &marks, &self.cfg.timeline);
        let device_id = dev.is_device.then_some(dk);
        let revise = dev.apps.get(app).is_some_and(|w| w.revise);
        let mut results = Vec::new();
        for ep in &tl.episodes {
            let closed = final_ || now_ns >= ep.end_ns + self.cfg.timeline.episode_idle_ns;
            let long_open = now_ns >= ep.start_ns + self.cfg.review_ns;
            if !closed && !long_open {
                continue;
            }
            let first_id = ep
                .flows
                .iter()
                .map(|&(i, _)| flows[i].id)
                .min()
                .unwrap_or(0);
            let mut h = Sha256::new();
            h.update(dk.as_bytes());
            h.update([0]);
            h.update(app.as_bytes());
            h.update(first_id.to_le_bytes());
            let alert_id = hex16(&h.finalize());
            // A closed, processed episode is scored again only when an event arrived.
            if !revise && dev.episodes.get(&alert_id).is_some_and(|st| st.learned) {
                continue;
            }
            let ep_flows: Vec<HeldFlow> = ep.flows.iter().map(|&(i, _)| flows[i].clone()).collect();
            let feats = self.features(app, ep, &flows);
            results.push((alert_id, ep.clone(), ep_flows, feats, closed));
        }
        let state_conf = tl.state_confidence;
        let segments = tl.segments.clone();
        let profile = self.profile(device_id, app).cloned();
        let posture = Posture::of(profile.as_ref());
        let category = profile.as_ref().and_then(|p| p.category.clone());
        let groups: Vec<String> = device_id
            .and_then(|d| self.inv.device(d))
            .map(|d| d.groups.clone())
            .unwrap_or_default();
        let mut scopes = vec![format!("app:{app}")];
        if let Some(c) = &category {
            scopes.push(format!("category:{c}"));
        }
        // Business-role baselines: the app's category within each device group.
        let cat_name = category.clone().unwrap_or_else(|| format!("app:{app}"));
        scopes.extend(groups.iter().map(|g| format!("group:{g}/{cat_name}")));
        let device_events: Vec<LifecycleEvent> = dev.events.iter().cloned().collect();

        for (alert_id, ep, ep_flows, feats, closed) in results {
            self.stats.episodes_scored += 1;
            let scored = self.score(
                &feats,
                &scopes,
                &posture,
                &device_events,
                app,
                &ep,
                ep.end_ns,
            );
            let gaps = self.evidence_gaps(
                &ep_flows, state_conf, device_id, &scored, &posture, dk, &marks,
            );
            let Some(dev) = self.devices.get_mut(dk) else {
                break;
            };
            let st = dev.episodes.entry(alert_id.clone()).or_default();
            let threshold = self.cfg.alert_threshold;
            let mut emit: Option<&'static str> = None;
            if scored.risk >= threshold && st.revision == 0 {
                emit = Some("alert_created");
            } else if st.revision > 0 {
                let changed =
                    scored.risk.abs_diff(st.risk) >= RISK_UPDATE_STEP || ep_flows.len() != st.flows;
                if changed
                    && (closed || scored.risk.abs_diff(st.risk) >= RISK_UPDATE_STEP)
                    && !(st.closed_emitted
                        && ep_flows.len() == st.flows
                        && scored.risk.abs_diff(st.risk) < RISK_UPDATE_STEP)
                {
                    emit = Some("alert_updated");
                }
            }
            if let Some(action) = emit {
                st.revision += 1;
                st.risk = scored.risk;
                st.flows = ep_flows.len();
                st.closed_emitted = closed;
                let revision = st.revision;
                if action == "alert_created" {
                    self.stats.alerts_created += 1;
                    let mut keys: Vec<String> = Vec::new();
                    for h in &ep_flows {
                        keys.push(format!("d:{}", h.destination));
                        if let Some(j) = &h.ja4 {
                            keys.push(format!("j:{j}"));
                        }
                    }
                    self.baselines.forget_since(app, &keys, ep.start_ns);
                    if let Some(l) = self.shared.as_mut().map(|s| &mut s.learned) {
                        l.forget_since(app, &keys, ep.start_ns);
                    }
                    for h in &ep_flows {
                        if let Some(j) = &h.ja4 {
                            if self.baselines.first_seen(app, &format!("j:{j}")).is_none() {
                                if let Some(set) = self.stacks.get_mut(j) {
                                    set.remove(app);
                                }
                            }
                        }
                    }
                } else {
                    self.stats.alerts_updated += 1;
                }
                let tally = self.apps.entry(app.to_string()).or_default();
                if revision == 1 {
                    tally.alerts += 1;
                }
                tally.max_risk = tally.max_risk.max(scored.risk);
                let record = self.alert_record(
                    &alert_id,
                    revision,
                    action,
                    dk,
                    device_id,
                    app,
                    &ep,
                    &ep_flows,
                    &scored,
                    &posture,
                    state_conf,
                    &gaps,
                    &device_events,
                    now_ns,
                );
                let lo = ep
                    .after_active_ns
                    .unwrap_or(ep.start_ns)
                    .min(ep.start_ns)
                    .saturating_sub(600 * S);
                let hi = ep.end_ns + 300 * S;
                let (context_flows, seg_all) = self.device_context(dk, lo, hi);
                let _ = &segments;
                out.push(AlertOut {
                    record,
                    alert_id: alert_id.clone(),
                    revision,
                    device_key: dk.to_string(),
                    episode: (ep.start_ns, ep.end_ns),
                    flows: ep_flows.clone(),
                    context_flows,
                    segments: seg_all,
                    events: device_events
                        .iter()
                        .filter(|e| e.ts >= lo && e.ts <= hi)
                        .cloned()
                        .collect(),
                });
            }
            let Some(dev) = self.devices.get_mut(dk) else {
                break;
            };
            let st = dev.episodes.entry(alert_id.clone()).or_default();
            let alerted = st.revision > 0;
            if closed && !st.learned {
                st.learned = true;
                // Alerted episodes are not learned, except while the volume baselines
                // are still warming up (else a legitimate bulk transfer that alerts on
                // priors would keep its app cold forever).
                let warming = scored
                    .features
                    .iter()
                    .any(|f| f.baseline == "prior" && f.score > 0.0);
                if !alerted || warming {
                    let vals: Vec<(&str, f64)> = FEATURES
                        .iter()
                        .map(|n| (*n, feats.get(n)))
                        .filter(|(n, v)| *v >= learn_floor(n))
                        .filter(|(n, _)| *n != "periodicity" || feats.connections >= 4.0)
                        .collect();
                    for s in &scopes {
                        self.baselines.insert(s, &vals, ep.end_ns);
                        if let Some(l) = self.shared.as_mut().map(|s| &mut s.learned) {
                            l.insert(s, &vals, ep.end_ns);
                        }
                    }
                    self.stats.episodes_learned += 1;
                }
                let tally = self.apps.entry(app.to_string()).or_default();
                tally.add_episode(&feats);
            }
            if let Some(dev) = self.devices.get_mut(dk) {
                if !dev.episode_order.contains(&alert_id) {
                    dev.episode_order.push_back(alert_id.clone());
                    if dev.episode_order.len() > MAX_EPISODES_PER_DEVICE {
                        if let Some(old) = dev.episode_order.pop_front() {
                            dev.episodes.remove(&old);
                        }
                    }
                }
            }
        }
        if let Some(w) = self.devices.get_mut(dk).and_then(|d| d.apps.get_mut(app)) {
            w.last_eval_ns = now_ns;
            w.revise = false;
            // Still dirty while an episode may grow.
            w.dirty = !final_ && now_ns < w.last_activity_ns + self.cfg.timeline.episode_idle_ns;
        }
        out
    }

    /// Held flows of all apps of a device in [lo, hi] and their timelines.
    fn device_context(
        &self,
        dk: &str,
        lo: u64,
        hi: u64,
    ) -> (Vec<HeldFlow>, Vec<(String, Segment)>) {
        let Some(dev) = self.devices.get(dk) else {
            return (Vec::new(), Vec::new());
        };
        let flows: Vec<HeldFlow> = dev
            .flows
            .iter()
            .filter(|h| h.end_ns >= lo && h.start_ns <= hi)
            .cloned()
            .collect();
        let mut segs = Vec::new();
        let apps: BTreeSet<&str> = flows.iter().filter_map(|h| h.app.as_deref()).collect();
        for app in apps {
            let af: Vec<AppFlow> = dev
                .flows
                .iter()
                .filter(|h| h.app.as_deref() == Some(app))
                .map(|h| AppFlow {
                    start_ns: h.start_ns,
                    end_ns: h.end_ns,
                })
                .collect();
            let tl = timeline::build(&af, &self.marks_for(dev, app), &self.cfg.timeline);
            for s in tl.segments {
                if s.end_ns >= lo && s.start_ns <= hi {
                    segs.push((app.to_string(), s));
                }
            }
        }
        (flows, segs)
    }

    fn features(&self, app: &str, ep: &timeline::Episode, flows: &[&HeldFlow]) -> EpisodeFeatures {
        let mut f = EpisodeFeatures::default();
        let mut starts = Vec::new();
        let mut dests: BTreeSet<&str> = BTreeSet::new();
        let mut stacks: BTreeSet<&str> = BTreeSet::new();
        let profile = self.cat.app(app, None);
        let cutoff = ep.start_ns.saturating_sub(self.cfg.new_age_ns);
        // Novelty needs history: the app's memory must reach back past the cutoff.
        let history = self.baselines.apps.get(app).is_some_and(|m| {
            m.first_seen
                .iter()
                .any(|(k, &t)| k.starts_with("d:") && t < cutoff)
        });
        let stack_history = self.baselines.apps.get(app).is_some_and(|m| {
            m.first_seen
                .iter()
                .any(|(k, &t)| k.starts_with("j:") && t < cutoff)
        });
        for &(i, share) in &ep.flows {
            let h = flows[i];
            f.bytes_up += h.bytes_up as f64 * share;
            f.bytes_down += h.bytes_down as f64 * share;
            starts.push(h.start_ns.max(ep.start_ns));
            let in_catalog = h.named
                && self
                    .cat
                    .lookup(&h.destination)
                    .is_some_and(|m| m.apps().any(|a| a.bundle_id == app));
            if history
                && !in_catalog
                && self
                    .baselines
                    .first_seen(app, &format!("d:{}", h.destination))
                    .is_none_or(|t| t >= cutoff)
            {
                dests.insert(&h.destination);
            }
            if let Some(j) = &h.ja4 {
                let catalog_known = profile.is_some_and(|p| p.ja4.iter().any(|x| x == j));
                // The platform's stack: established (seen before the cutoff) for many apps.
                let common = self.stacks.get(j).is_some_and(|apps| {
                    apps.iter()
                        .filter(|a| {
                            self.baselines
                                .first_seen(a, &format!("j:{j}"))
                                .is_some_and(|t| t < cutoff)
                        })
                        .count()
                        >= COMMON_STACK_APPS
                });
                if stack_history
                    && !catalog_known
                    && !common
                    && self
                        .baselines
                        .first_seen(app, &format!("j:{j}"))
                        .is_none_or(|t| t >= cutoff)
                {
                    stacks.insert(j);
                }
            }
        }
        f.bytes_up = f.bytes_up.round();
        f.bytes_down = f.bytes_down.round();
        f.duration_seconds = ((ep.end_ns - ep.start_ns) as f64 / S as f64).round();
        f.connections = ep.flows.len() as f64;
        f.periodicity = round3(periodicity(&starts));
        f.new_destinations = dests.len() as f64;
        f.unusual_ja4 = stacks.len() as f64;
        f
    }

    #[allow(clippy::too_many_arguments)]
    fn score(
        &self,
        feats: &EpisodeFeatures,
        scopes: &[String],
        posture: &Posture,
        events: &[LifecycleEvent],
        app: &str,
        ep: &timeline::Episode,
        now_ns: u64,
    ) -> Scored {
        let mut out = Vec::new();
        let mut s = BTreeMap::new();
        for name in FEATURES {
            let v = feats.get(name);
            let warm = scopes.iter().find_map(|sc| {
                let sk = self.baselines.sketch(sc, name, now_ns)?;
                (sk.count() >= self.cfg.warmup).then(|| (sc.clone(), sk))
            });
            let (pct, base, count, surprise) = match (name, &warm) {
                (
                    "bytes_up" | "bytes_down" | "duration_seconds" | "connections",
                    Some((sc, sk)),
                ) => {
                    let p = sk.percentile(v).unwrap_or(0.5);
                    let q95 = sk.quantile(0.95).unwrap_or(0.0);
                    let sur = abs_surprise(name, v) * over_q95(v, q95);
                    (Some(p), sc.clone(), sk.count(), sur)
                }
                ("bytes_up" | "bytes_down" | "duration_seconds" | "connections", None) => {
                    (None, "prior".to_string(), 0.0, abs_surprise(name, v))
                }
                ("periodicity", w) => {
                    let gate = feats.connections >= 4.0 && feats.duration_seconds >= 180.0;
                    let mut sur = if gate { v } else { 0.0 };
                    let pct = w.as_ref().and_then(|(_, sk)| sk.percentile(v));
                    if let Some(p) = pct {
                        if p < 0.9 {
                            sur *= 0.3; // the app is usually this regular
                        }
                    }
                    let (b, c) = w.as_ref().map_or(("prior".to_string(), 0.0), |(sc, sk)| {
                        (sc.clone(), sk.count())
                    });
                    (pct, b, c, sur)
                }
                ("new_destinations", w) => {
                    let pct = w.as_ref().and_then(|(_, sk)| sk.percentile(v));
                    let (b, c) = w.as_ref().map_or(("prior".to_string(), 0.0), |(sc, sk)| {
                        (sc.clone(), sk.count())
                    });
                    (pct, b, c, clamp01(0.6 * v))
                }
                (_, w) => {
                    let pct = w.as_ref().and_then(|(_, sk)| sk.percentile(v));
                    let (b, c) = w.as_ref().map_or(("prior".to_string(), 0.0), |(sc, sk)| {
                        (sc.clone(), sk.count())
                    });
                    (pct, b, c, if v >= 1.0 { 1.0 } else { 0.0 })
                }
            };
            s.insert(name, surprise);
            out.push(ScoredFeature {
                name,
                value: v,
                percentile: pct.map(round3),
                baseline: base,
                baseline_count: round3(count),
                score: round3(surprise),
            });
        }
        let g = |n: &str| s.get(n).copied().unwrap_or(0.0);
        let volume = clamp01(
            0.6 * g("bytes_up")
                + 0.15 * g("bytes_down")
                + 0.25 * g("duration_seconds")
                + 0.1 * g("connections"),
        );
        let beacon = g("periodicity") * (0.3 + 0.7 * g("new_destinations"));
        let novelty = (0.6 * g("new_destinations")).max(0.9 * g("unusual_ja4"));
        let base = 1.0 - (1.0 - volume) * (1.0 - beacon) * (1.0 - novelty);
        let mut risk = if base >= 0.2 {
            base * posture.weight
        } else {
            base * posture.weight.min(1.0)
        };
        if g("bytes_up") >= 0.9 {
            risk = risk.max(0.6);
        }
        if beacon >= 0.6 && g("new_destinations") > 0.0 {
            risk = risk.max(0.6);
        }
        let mut priority_reasons = Vec::new();
        if base >= 0.2 {
            let lo = ep.start_ns.saturating_sub(self.cfg.recent_change_ns);
            for e in events.iter().filter(|e| e.ts >= lo && e.ts <= ep.end_ns) {
                let reason = match e.kind {
                    EventKind::AppInstalled | EventKind::AppUpdated
                        if e.bundle_id.as_deref() == Some(app) =>
                    {
                        Some(format!(
                            "{} {} before the episode",
                            e.kind.as_str(),
                            human_dur(ep.start_ns.saturating_sub(e.ts))
                        ))
                    }
                    EventKind::LostMode => Some("device in lost mode".to_string()),
                    EventKind::ComplianceChanged => Some("device compliance changed".to_string()),
                    _ => None,
                };
                if let Some(r) = reason {
                    if !priority_reasons.contains(&r) {
                        priority_reasons.push(r);
                        risk += 0.1;
                    }
                }
            }
        }
        let risk = (clamp01(risk) * 100.0).round() as u8;
        Scored {
            features: out,
            volume: round3(volume),
            beacon: round3(beacon),
            novelty: round3(novelty),
            base: round3(base),
            risk,
            priority_reasons,
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn evidence_gaps(
        &self,
        flows: &[HeldFlow],
        state_conf: Option<Confidence>,
        device_id: Option<&str>,
        scored: &Scored,
        posture: &Posture,
        dk: &str,
        marks: &[Mark],
    ) -> Vec<&'static str> {
        let mut gaps = Vec::new();
        if state_conf != Some(Confidence::Reported) {
            gaps.push("lifecycle_inferred");
        }
        if device_id.is_none()
            || flows.iter().any(|h| {
                h.confidence < 0.7 || matches!(h.method, Method::Burst | Method::Destination)
            })
        {
            gaps.push("identity_uncertain");
        }
        if flows.iter().any(|h| !h.named) {
            gaps.push("names_missing");
        }
        if flows.iter().any(|h| h.quic_undecrypted) {
            gaps.push("quic_not_decrypted");
        }
        if flows.iter().any(|h| h.ech) {
            gaps.push("ech");
        }
        if self
            .devices
            .get(dk)
            .is_some_and(|d| d.tally.encrypted_dns_flows > 0)
        {
            gaps.push("encrypted_dns");
        }
        if scored
            .features
            .iter()
            .any(|f| f.baseline == "prior" && matches!(f.name, "bytes_up" | "duration_seconds"))
        {
            gaps.push("baseline_warming_up");
        }
        if !posture.in_catalog {
            gaps.push("posture_unknown");
        }
        // Push timing is observed when pushes are reported or the device's APNs
        // connection was seen (its activity marks inferred push wakes).
        let apns_seen = self.devices.get(dk).is_some_and(|d| d.apns_seen);
        if posture.push
            && !apns_seen
            && !marks
                .iter()
                .any(|m| m.kind == EventKind::PushWake && m.confidence == Confidence::Reported)
        {
            gaps.push("push_timing_unobserved");
        }
        if self
            .devices
            .get(dk)
            .is_some_and(|d| d.tally.held_dropped > 0)
        {
            gaps.push("flows_dropped_from_window");
        }
        gaps.push("payload_encrypted");
        gaps
    }

    #[allow(clippy::too_many_arguments)]
    fn alert_record(
        &self,
        alert_id: &str,
        revision: u32,
        action: &str,
        dk: &str,
        device_id: Option<&str>,
        app: &str,
        ep: &timeline::Episode,
        flows: &[HeldFlow],
        scored: &Scored,
        posture: &Posture,
        state_conf: Option<Confidence>,
        gaps: &[&str],
        events: &[LifecycleEvent],
        now_ns: u64,
    ) -> Value {
        let mut r = Record::new("nightjar.alert", now_ns.max(ep.end_ns));
        r.put("event.kind", "alert");
        r.put("event.category", json!(["network", "intrusion_detection"]));
        r.put("event.type", json!(["info"]));
        r.put("event.action", action);
        r.put("event.id", alert_id);
        r.put("event.start", ts(ep.start_ns));
        r.put("event.end", ts(ep.end_ns));
        r.put("event.duration", ep.end_ns - ep.start_ns);
        r.put("event.risk_score", f64::from(scored.risk));
        r.put("event.severity", severity(scored.risk));
        r.put("rule.id", RULE_ID);
        r.put("rule.name", RULE_NAME);
        r.put("rule.reference", RULE_REFERENCE);
        r.put("rule.ruleset", "MITRE ATT&CK Mobile analytics");
        r.put("threat.framework", "MITRE ATT&CK");
        r.put("threat.technique.id", json!([TECHNIQUE_ID]));
        r.put("threat.technique.name", json!([TECHNIQUE_NAME]));
        r.put("threat.technique.reference", json!([TECHNIQUE_REFERENCE]));
        r.put("threat.tactic.id", json!([TACTIC_ID]));
        r.put("threat.tactic.name", json!([TACTIC_NAME]));
        r.put("threat.tactic.reference", json!([TACTIC_REFERENCE]));
        match device_id {
            Some(d) => r.put("device.id", d),
            None => {
                if let Some(ip) = dk.strip_prefix("ip:") {
                    r.put("source.ip", ip);
                }
            }
        }
        // The app: the episode's attribution (its most confident flow).
        let best = flows
            .iter()
            .max_by(|a, b| a.confidence.total_cmp(&b.confidence))
            .map(|h| (h.method, h.confidence));
        let name = self.profile(device_id, app).and_then(|p| p.name.clone());
        r.put("nightjar.app.bundle_id", app);
        r.put_opt("nightjar.app.name", name.clone());
        if let Some((m, c)) = best {
            r.put("nightjar.app.confidence", c);
            r.put("nightjar.app.method", m.as_str());
        }
        let mut methods: BTreeMap<&str, usize> = BTreeMap::new();
        for h in flows {
            *methods.entry(h.method.as_str()).or_default() += 1;
        }
        r.put(
            "nightjar.app.reasons",
            json!([format!(
                "{} background flow(s) attributed to {app}: {}",
                flows.len(),
                methods
                    .iter()
                    .map(|(m, n)| format!("{n} by {m}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )]),
        );
        r.put("nightjar.alert.id", alert_id);
        r.put("nightjar.alert.revision", revision);
        r.put("nightjar.alert.score.volume", scored.volume);
        r.put("nightjar.alert.score.beacon", scored.beacon);
        r.put("nightjar.alert.score.novelty", scored.novelty);
        r.put("nightjar.alert.score.base", scored.base);
        r.put("nightjar.alert.score.posture_weight", posture.weight);
        r.put_ser("nightjar.alert.features", &scored.features);
        posture.put_into(&mut r, "nightjar.alert");
        r.put(
            "nightjar.alert.posture.declares_background",
            posture.declares_background(),
        );
        r.put(
            "nightjar.alert.lifecycle.state_confidence",
            state_conf.map_or("inferred", Confidence::as_str),
        );
        if let Some(a) = ep.after_active_ns {
            r.put(
                "nightjar.alert.lifecycle.since_active_seconds",
                (ep.start_ns.saturating_sub(a)) / S,
            );
        }
        r.put(
            "nightjar.alert.lifecycle.grace_seconds",
            self.cfg.timeline.grace_ns / S,
        );
        r.put("nightjar.alert.lifecycle.push_wakes", ep.push_wakes);
        r.put(
            "nightjar.alert.lifecycle.push_wakes_inferred",
            ep.push_wakes_inferred,
        );
        let lo = ep.start_ns.saturating_sub(self.cfg.recent_change_ns);
        let evs: Vec<Value> = events
            .iter()
            .filter(|e| e.ts >= lo && e.ts <= ep.end_ns)
            .filter(|e| e.bundle_id.is_none() || e.bundle_id.as_deref() == Some(app))
            .take(32)
            .map(|e| json!({"kind": e.kind.as_str(), "ts": ts(e.ts), "confidence": e.confidence.as_str(), "source": e.source}))
            .collect();
        if !evs.is_empty() {
            r.put("nightjar.alert.lifecycle.events", evs);
        }
        if !scored.priority_reasons.is_empty() {
            r.put(
                "nightjar.alert.priority_reasons",
                json!(scored.priority_reasons),
            );
        }
        let cids: Vec<&str> = flows
            .iter()
            .take(MAX_ALERT_FLOWS)
            .map(|h| h.community_id.as_str())
            .collect();
        r.put("network.community_id", json!(cids));
        r.put("nightjar.alert.flows", flows.len());
        let mut dests: Vec<&str> = flows.iter().map(|h| h.destination.as_str()).collect();
        dests.sort_unstable();
        dests.dedup();
        dests.truncate(16);
        r.put("destination.domain", json!(dests));
        r.put("nightjar.alert.evidence_gaps", json!(gaps));
        r.put(
            "message",
            explain(app, name.as_deref(), scored, posture, ep, state_conf),
        );
        r.into_value()
    }
}

/// ECS severity by risk (the Elastic detection-rule convention).
pub fn severity(risk: u8) -> u8 {
    match risk {
        90.. => 99,
        70..=89 => 73,
        50..=69 => 47,
        _ => 21,
    }
}

fn human_bytes(b: f64) -> String {
    if b >= 1e6 {
        format!("{:.1} MB", b / 1e6)
    } else if b >= 1e3 {
        format!("{:.0} KB", b / 1e3)
    } else {
        format!("{b:.0} B")
    }
}

fn human_dur(ns: u64) -> String {
    let s = ns / S;
    if s >= 3600 {
        format!("{}h{:02}m", s / 3600, (s % 3600) / 60)
    } else if s >= 60 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{s}s")
    }
}

/// The alert in one paragraph.
fn explain(
    app: &str,
    name: Option<&str>,
    sc: &Scored,
    posture: &Posture,
    ep: &timeline::Episode,
    state_conf: Option<Confidence>,
) -> String {
    let who = name.map_or_else(|| app.to_string(), |n| format!("{n} ({app})"));
    let f = |n: &str| sc.features.iter().find(|x| x.name == n);
    let mut parts = Vec::new();
    if let Some(x) = f("bytes_up") {
        if x.score > 0.0 {
            parts.push(format!(
                "uploaded {} ({})",
                human_bytes(x.value),
                x.percentile.map_or("no baseline yet".into(), |p| format!(
                    "p{:.0} of {}",
                    p * 100.0,
                    x.baseline
                ))
            ));
        }
    }
    if let Some(x) = f("periodicity") {
        if x.score > 0.0 {
            parts.push(format!(
                "connected at regular intervals (periodicity {:.2})",
                x.value
            ));
        }
    }
    if let Some(x) = f("new_destinations") {
        if x.value > 0.0 {
            parts.push(format!(
                "reached {} destination(s) new for this app",
                x.value
            ));
        }
    }
    if let Some(x) = f("unusual_ja4") {
        if x.value > 0.0 {
            parts.push("used a TLS client fingerprint (JA4) never seen for this app".to_string());
        }
    }
    if let Some(x) = f("duration_seconds") {
        if x.score > 0.0 {
            parts.push(format!(
                "kept transmitting for {}",
                human_dur((x.value as u64) * S)
            ));
        }
    }
    let when = match ep.after_active_ns {
        Some(a) => format!(
            "{} after it was last active",
            human_dur(ep.start_ns.saturating_sub(a))
        ),
        None => "with no foreground activity seen before".to_string(),
    };
    let posture_text = if !posture.in_catalog {
        "its entitlements are unknown (not in the catalog)".to_string()
    } else if posture.declares_background() {
        let mut declared: Vec<String> = posture.background_modes.clone();
        declared.extend(
            posture
                .network_extensions
                .iter()
                .map(|n| format!("network extension {n}")),
        );
        if posture.push {
            declared.push("push".to_string());
        }
        format!(
            "it declares [{}] (persistence {}/5), which weighs the score by {}",
            declared.join(", "),
            posture.persistence_score,
            posture.weight
        )
    } else {
        "it declares no background mode, network extension or push, so nothing explains it"
            .to_string()
    };
    format!(
        "AN1717: {who} was in the background ({} state) and, {when}, {}; {posture_text}. Risk {} of 100.",
        state_conf.map_or("inferred", Confidence::as_str),
        if parts.is_empty() { "transmitted".to_string() } else { parts.join(", ") },
        sc.risk
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periodicity_of_regular_and_irregular_series() {
        let regular: Vec<u64> = (0..10).map(|i| i * 60 * S).collect();
        assert!(periodicity(&regular) > 0.99);
        let irregular = [0, 5 * S, 200 * S, 210 * S, 900 * S, 901 * S];
        assert!(periodicity(&irregular) < 0.3);
        assert_eq!(periodicity(&[0, S, 2 * S]), 0.0);
    }

    #[test]
    fn apns_connections_are_recognised() {
        let ip: std::net::IpAddr = "17.57.146.20".parse().unwrap();
        let other: std::net::IpAddr = "203.0.113.5".parse().unwrap();
        assert!(is_apns(Some("courier.push.apple.com"), 6, other, 5223));
        assert!(is_apns(Some("17-courier.push.apple.com."), 6, other, 443));
        assert!(!is_apns(Some("courier.push.apple.com"), 6, other, 80));
        assert!(!is_apns(Some("push.apple.com.evil.example"), 6, other, 443));
        assert!(!is_apns(Some("courier.push.apple.com"), 17, other, 443));
        assert!(is_apns(None, 6, ip, 5223));
        assert!(!is_apns(None, 6, other, 5223));
        assert!(!is_apns(None, 6, ip, 443));
    }

    #[test]
    fn push_wakes_are_inferred_from_apns_activity_then_an_app_flow() {
        let activity = [100 * S, 500 * S, 900 * S];
        // A flow 2 s after the first activity, one 30 s after the second (too late),
        // none after the third.
        let starts = [102 * S, 530 * S];
        let m = infer_push_wakes(&activity, &starts, 5 * S);
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].ts_ns, 100 * S);
        assert_eq!(m[0].kind, EventKind::PushWake);
        assert_eq!(m[0].confidence, Confidence::Inferred);
        assert!(infer_push_wakes(&[], &starts, 5 * S).is_empty());
        // A flow that starts before the activity is no wake.
        assert!(infer_push_wakes(&[103 * S], &[102 * S], 5 * S).is_empty());
    }

    #[test]
    fn priors_ramp() {
        assert_eq!(abs_surprise("bytes_up", 50e3), 0.0);
        assert!((abs_surprise("bytes_up", 5e6) - 1.0).abs() < 1e-9);
        assert_eq!(abs_surprise("duration_seconds", 60.0), 0.0);
        assert_eq!(over_q95(10.0, 20.0), 0.0);
        assert!((over_q95(80.0, 20.0) - 1.0).abs() < 1e-9);
        assert_eq!(severity(95), 99);
        assert_eq!(severity(50), 47);
    }
}
