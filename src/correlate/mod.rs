//! The correlator: turns the shards' observations into records.
//!
//! It owns the state that spans flows: the DNS resolution cache (names for
//! flows without SNI), the device identity table (which device a client
//! address or MAC was at a flow's start), the encrypted-DNS blind spots per
//! device, and (with MDM inputs) app attribution, AN1717 detection, coverage and
//! governance through the [`detect::Detector`]. It does no I/O except through the
//! sink it is handed (and the evidence writer, when `--evidence-dir` is given).
//!
//! Observations arrive in packet-time order; identity feed lines handed over at
//! start (replay's `--identity` file) are merged into that order by their `ts`.
//! Flows arrive at their end and are resolved at their start time.

pub mod attribution;
pub mod baseline;
pub mod blind_spot;
pub mod coverage;
pub mod detect;
pub mod dns_cache;
pub mod evidence;
pub mod identity;
pub mod timeline;

use crate::mdm::{Catalog, LifecycleEvent};
use crate::observation::Observation;
use crate::output::records::{dns_record, flow_record};
use crate::output::{Record, Sink, SinkError};
use crate::pipeline::replay::ReplayReport;
use crate::pipeline::stats::linktype_name;
use blind_spot::BlindSpot;
use dns_cache::{CachedName, DnsCache};
use identity::{FeedEntry, Identity, IdentityTable, StaticIdentity};
use serde_json::{json, Value};
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

/// Devices (or unidentified clients) whose blind-spot flows are counted one by one in
/// the stats record; flows of further devices are counted in `blind_spots_untracked`.
pub const MAX_BLIND_SPOT_DEVICES: usize = 65_536;

/// Identity feed lines waiting for packet time to reach their `ts` (a feed file, or
/// socket lines stamped ahead of the capture clock): a feed file's bound. Beyond it
/// the earliest line is applied at once rather than dropped.
pub const MAX_PENDING_FEED: usize = identity::MAX_FEED_FILE_LINES;

#[derive(Default)]
pub struct CorrelatorOptions {
    /// Write a `nightjar.dns` record per DNS message.
    pub dns_records: bool,
    /// MDM inventory (hardware Wi-Fi MACs, udids, serials).
    pub inventory: Option<Arc<crate::mdm::Inventory>>,
    /// Static identity mappings from the configuration.
    pub static_identities: Vec<StaticIdentity>,
    /// Identity feed lines known up front (a file), sorted by time; applied as the
    /// observation stream reaches their `ts`.
    pub feed: Vec<FeedEntry>,
    /// App attribution and AN1717 detection (with MDM inputs); the detector starts
    /// in [`Correlator::with_mdm`], which hands it the events and the catalog.
    pub analysis: Option<AnalysisOptions>,
}

/// An input replaced or extended while the correlator runs (the daemon's MDM
/// pollers, webhooks, identity socket and SIGHUP reloads hand these over).
#[derive(Debug)]
pub enum Update {
    /// The merged inventory of every MDM source, replacing the previous one.
    Inventory(Option<Arc<crate::mdm::Inventory>>),
    /// A reloaded app catalog.
    Catalog(Arc<Catalog>),
    /// New lifecycle events (derived, reported, or added to the events file).
    Events(Vec<LifecycleEvent>),
    /// Identity feed lines; applied in time order as packet time reaches their `ts`.
    Feed(Vec<FeedEntry>),
}

/// Queues identity feed lines in time order, to be applied as packet time
/// reaches them (lines of the same time keep their arrival order); beyond
/// [`MAX_PENDING_FEED`] the oldest is applied early rather than lost.
pub fn queue_feed(
    pending: &mut std::collections::VecDeque<FeedEntry>,
    identity: &mut IdentityTable,
    lines: Vec<FeedEntry>,
) {
    for e in lines {
        let at = pending.partition_point(|p| p.ts_ns <= e.ts_ns);
        pending.insert(at, e);
        if pending.len() > MAX_PENDING_FEED {
            if let Some(first) = pending.pop_front() {
                identity.apply_feed(&first);
            }
        }
    }
}

/// What attribution and detection run with, besides the MDM inputs.
#[derive(Default)]
pub struct AnalysisOptions {
    /// Baselines loaded from `--baseline` (else they start empty).
    pub baselines: Option<baseline::Baselines>,
    pub detect: detect::DetectConfig,
    /// `--evidence-dir`: write a bundle per alert.
    pub evidence: Option<evidence::EvidenceOptions>,
}

/// What the correlator adds to a flow record.
#[derive(Default)]
pub struct FlowContext {
    /// `destination.domain`: the SNI, else the newest name the client resolved to the server address.
    pub domain: Option<String>,
    /// Where `domain` came from: "sni" or "dns".
    pub domain_source: Option<&'static str>,
    /// Every name the client resolved to the server address before the flow, newest first.
    pub dns_names: Vec<CachedName>,
    /// The client's device identity at the flow's start.
    pub identity: Option<Identity>,
    /// Encrypted DNS the sensor cannot see into.
    pub blind_spot: Option<BlindSpot>,
}

pub struct Correlator {
    opts: CorrelatorOptions,
    dns: DnsCache,
    identity: IdentityTable,
    /// Feed lines not yet reached by the observation stream, oldest first.
    pending_feed: VecDeque<FeedEntry>,
    /// Blind-spot flows per device id (or unidentified client), by kind.
    blind_spots: BTreeMap<String, BTreeMap<&'static str, u64>>,
    blind_spots_untracked: u64,
    flow_records: u64,
    dns_records: u64,
    dhcp_messages: u64,
    /// Lifecycle events (`--events`), sorted by `ts` then id; read by detection.
    mdm_events: Vec<LifecycleEvent>,
    /// The app catalog (`--catalog`); read by attribution and detection.
    catalog: Option<Arc<Catalog>>,
    detector: Option<detect::Detector>,
    evidence: Option<evidence::EvidenceWriter>,
    alert_records: u64,
    coverage_records: u64,
    /// Lifecycle events handed over with [`Update::Events`].
    events_added: u64,
    /// The newest observation time seen (packet time of periodic coverage records).
    last_ts_ns: u64,
}

impl Correlator {
    pub fn new(mut opts: CorrelatorOptions) -> Correlator {
        let identity = IdentityTable::new(opts.inventory.clone(), &opts.static_identities);
        let mut feed = std::mem::take(&mut opts.feed);
        feed.sort_by_key(|e| e.ts_ns);
        Correlator {
            opts,
            dns: DnsCache::default(),
            identity,
            pending_feed: feed.into(),
            blind_spots: BTreeMap::new(),
            blind_spots_untracked: 0,
            flow_records: 0,
            dns_records: 0,
            dhcp_messages: 0,
            mdm_events: Vec::new(),
            catalog: None,
            detector: None,
            evidence: None,
            alert_records: 0,
            coverage_records: 0,
            events_added: 0,
            last_ts_ns: 0,
        }
    }

    /// Applies an [`Update`]: later flows are resolved and attributed with it.
    pub fn update(&mut self, u: Update) {
        match u {
            Update::Inventory(inv) => {
                self.identity.set_inventory(inv.clone());
                if let Some(det) = self.detector.as_mut() {
                    det.set_inventory(inv.clone().unwrap_or_default());
                }
                self.opts.inventory = inv;
            }
            Update::Catalog(cat) => {
                if let Some(det) = self.detector.as_mut() {
                    det.set_catalog(cat.clone());
                }
                self.catalog = Some(cat);
            }
            Update::Events(events) => {
                self.events_added += events.len() as u64;
                if let Some(det) = self.detector.as_mut() {
                    det.add_events(events);
                }
            }
            Update::Feed(lines) => queue_feed(&mut self.pending_feed, &mut self.identity, lines),
        }
    }

    /// Writes the `nightjar.coverage` records as they stand (the daemon's periodic
    /// coverage), stamped with the newest packet time seen. Nothing without detection.
    pub fn write_coverage(&mut self, sink: &mut Sink) -> Result<(), SinkError> {
        let Some(det) = self.detector.as_ref() else {
            return Ok(());
        };
        for r in det.coverage(self.last_ts_ns) {
            self.coverage_records += 1;
            sink.write(&r)?;
        }
        Ok(())
    }

    /// Applies the pending feed lines whose time is at or before `ts_ns`.
    fn release_feed(&mut self, ts_ns: u64) {
        while self.pending_feed.front().is_some_and(|e| e.ts_ns <= ts_ns) {
            if let Some(e) = self.pending_feed.pop_front() {
                self.identity.apply_feed(&e);
            }
        }
    }

    /// Hands the correlator the lifecycle events and the app catalog.
    pub fn with_mdm(
        mut self,
        mut events: Vec<LifecycleEvent>,
        catalog: Option<Catalog>,
    ) -> Correlator {
        events.sort_by(|a, b| a.ts.cmp(&b.ts).then_with(|| a.id.cmp(&b.id)));
        self.mdm_events = events;
        self.catalog = catalog.map(Arc::new);
        if let Some(a) = self.opts.analysis.take() {
            let inventory = self.opts.inventory.clone().unwrap_or_default();
            let catalog = self
                .catalog
                .clone()
                .unwrap_or_else(|| Arc::new(crate::mdm::CatalogBuilder::new().build()));
            self.detector = Some(detect::Detector::new(
                a.detect,
                inventory,
                catalog,
                self.mdm_events.clone(),
                a.baselines,
                a.evidence.is_some(),
            ));
            self.evidence = a.evidence.map(evidence::EvidenceWriter::new);
        }
        self
    }

    /// A packet keeper for one more shard, when evidence bundles keep packets
    /// (`--evidence-dir`); the pipeline asks once per shard before it starts and,
    /// given `None`, does no work per packet.
    pub fn packet_keeper(&self) -> Option<Arc<std::sync::Mutex<crate::flow::keep::PacketKeeper>>> {
        self.evidence.as_ref()?.packet_store().map(|s| s.attach())
    }

    /// The baselines as they stand (to save after a replay).
    pub fn baselines(&self) -> Option<&baseline::Baselines> {
        self.detector.as_ref().map(detect::Detector::baselines)
    }

    /// Shares the detector's baselines with a fleet (see
    /// [`detect::Detector::share_baselines`]); no detector, nothing to share.
    pub fn share_baselines(&mut self) {
        if let Some(d) = self.detector.as_mut() {
            d.share_baselines();
        }
    }

    /// What the detector learned since [`Self::share_baselines`].
    pub fn learned_baselines(&self) -> Option<&baseline::Baselines> {
        self.detector.as_ref()?.learned_baselines()
    }

    /// Scores against `fleet` ⊕ what this correlator learned.
    pub fn set_fleet_baselines(&mut self, fleet: &baseline::Baselines) {
        if let Some(d) = self.detector.as_mut() {
            d.set_fleet_baselines(fleet);
        }
    }

    fn write_alerts(
        &mut self,
        alerts: Vec<detect::AlertOut>,
        sink: &mut Sink,
    ) -> Result<(), SinkError> {
        for a in alerts {
            self.alert_records += 1;
            if let Some(ev) = self.evidence.as_mut() {
                ev.write(&a);
            }
            sink.write(&a.record)?;
        }
        Ok(())
    }

    /// AN1717 alert records written so far (created and updated).
    pub fn alert_records(&self) -> u64 {
        self.alert_records
    }

    /// The lifecycle events, sorted by `ts`.
    pub fn mdm_events(&self) -> &[LifecycleEvent] {
        &self.mdm_events
    }

    /// The app catalog, when one was loaded.
    pub fn catalog(&self) -> Option<&Catalog> {
        self.catalog.as_deref()
    }

    pub fn handle(&mut self, obs: Observation, sink: &mut Sink) -> Result<(), SinkError> {
        self.last_ts_ns = self.last_ts_ns.max(obs.ts());
        self.release_feed(obs.ts());
        match obs {
            Observation::Flow(f) => {
                let mut ctx = FlowContext {
                    dns_names: self
                        .dns
                        .lookup(f.client_ip, f.server_ip, f.start_ns)
                        .into_iter()
                        .cloned()
                        .collect(),
                    ..Default::default()
                };
                let sni = f.app.client_hello.as_ref().and_then(|c| c.sni.clone());
                if let Some(sni) = sni {
                    ctx.domain = Some(sni);
                    ctx.domain_source = Some("sni");
                } else if let Some(n) = ctx.dns_names.first() {
                    ctx.domain = Some(n.name.clone());
                    ctx.domain_source = Some("dns");
                }
                let id = self.identity.resolve(f.client_ip, f.client.mac, f.start_ns);
                let alpn = f
                    .app
                    .client_hello
                    .as_ref()
                    .map_or(&[][..], |c| c.alpn.as_slice());
                ctx.blind_spot = blind_spot::classify(&blind_spot::FlowFacts {
                    proto: f.proto,
                    server_ip: f.server_ip,
                    server_port: f.server_port,
                    name: ctx.domain.as_deref(),
                    alpn,
                });
                if !f.interim {
                    self.identity.count(&id, f.client_ip);
                    if let Some(b) = ctx.blind_spot {
                        self.count_blind_spot(&id, f.client_ip, b);
                    }
                }
                let device = id.device_id.clone();
                let method = id.method.as_str();
                ctx.identity = Some(id);
                self.flow_records += 1;
                let mut record = flow_record(&f, &ctx);
                let Some(det) = self.detector.as_mut() else {
                    return sink.write_record(&record);
                };
                let input = detect::FlowInput {
                    summary: &f,
                    domain: ctx.domain.as_deref(),
                    domain_source: ctx.domain_source,
                    device_id: device.as_deref(),
                    identity_method: Some(method),
                };
                let evidence_record = self.evidence.is_some().then(|| record.to_value());
                let (attribution, alerts) = det.on_flow(&input, evidence_record.as_ref());
                record.put_ser("nightjar.app", &attribution);
                sink.write_record(&record)?;
                self.write_alerts(alerts, sink)
            }
            Observation::Dns(d) => {
                if let Some(det) = self.detector.as_mut() {
                    let alerts = det.advance(d.ts_ns);
                    self.write_alerts(alerts, sink)?;
                }
                if d.message.is_response {
                    for r in &d.message.resolved_ips {
                        self.dns
                            .insert(d.client_ip, r.ip, &r.name, &r.canonical, r.ttl, d.ts_ns);
                    }
                }
                if self.opts.dns_records {
                    self.dns_records += 1;
                    sink.write_record(&dns_record(&d))?;
                }
                Ok(())
            }
            Observation::Dhcp(d) => {
                self.dhcp_messages += 1;
                if let Some(det) = self.detector.as_mut() {
                    let alerts = det.advance(d.ts_ns);
                    self.write_alerts(alerts, sink)?;
                }
                self.identity.apply_dhcp(d.ts_ns, d.src_mac, &d.message);
                Ok(())
            }
            Observation::Identity(e) => {
                self.identity.apply_feed(&e);
                Ok(())
            }
        }
    }

    fn count_blind_spot(&mut self, id: &Identity, ip: std::net::IpAddr, b: BlindSpot) {
        let key = match (&id.device_id, id.mac) {
            (Some(d), _) => d.clone(),
            (None, Some(m)) => crate::output::record::mac(&m),
            (None, None) => ip.to_string(),
        };
        if !self.blind_spots.contains_key(&key) && self.blind_spots.len() >= MAX_BLIND_SPOT_DEVICES
        {
            self.blind_spots_untracked += 1;
            return;
        }
        *self
            .blind_spots
            .entry(key)
            .or_default()
            .entry(b.as_str())
            .or_default() += 1;
    }

    /// Writes the end-of-run `nightjar.stats` record.
    pub fn finish(&mut self, report: &ReplayReport, sink: &mut Sink) -> Result<(), SinkError> {
        self.release_feed(u64::MAX);
        let mut analysis_stats = None;
        if let Some(det) = self.detector.as_mut() {
            let (alerts, records) = det.finish(report.data.last_ts_ns);
            self.write_alerts(alerts, sink)?;
            for r in records {
                if r.pointer("/event/dataset").and_then(Value::as_str) == Some("nightjar.coverage")
                {
                    self.coverage_records += 1;
                }
                sink.write(&r)?;
            }
            analysis_stats = self
                .detector
                .as_ref()
                .map(|d| (d.stats.clone(), d.attribution_stats().clone()));
        }
        let d = &report.data;
        let f = &report.flows;
        let secs = report.elapsed.as_secs_f64();
        let mut r = Record::new("nightjar.stats", d.last_ts_ns);
        r.put("event.kind", "metric");
        r.put("nightjar.stats.packets", d.frames);
        r.put("nightjar.stats.bytes", d.captured_bytes);
        r.put("nightjar.stats.wire_bytes", d.wire_bytes);
        r.put("nightjar.stats.snapped_frames", d.snapped_frames);
        let by_lt: serde_json::Map<String, serde_json::Value> = d
            .frames_by_linktype
            .iter()
            .map(|(k, v)| (linktype_name(*k), json!(v)))
            .collect();
        r.put("nightjar.stats.frames_by_linktype", by_lt);
        r.put("nightjar.stats.decode_anomalies", json!(d.decode_anomalies));
        r.put(
            "nightjar.stats.capture_anomalies",
            json!(d.capture_anomalies),
        );
        r.put("nightjar.stats.flows.created", f.created);
        r.put("nightjar.stats.flows.expired", f.expired);
        r.put("nightjar.stats.flows.evicted", f.evicted);
        r.put("nightjar.stats.flows.interim", f.interim);
        r.put("nightjar.stats.flows.peak_active", f.peak_active);
        r.put("nightjar.stats.flow_anomalies", json!(f.anomalies));
        r.put("nightjar.stats.ts_backwards", f.ts_backwards);
        r.put("nightjar.stats.unkeyed_packets", f.unkeyed_packets);
        r.put("nightjar.stats.ip_reassembled", f.ip_reassembled);
        r.put("nightjar.stats.records.flow", self.flow_records);
        r.put("nightjar.stats.records.dns", self.dns_records);
        r.put("nightjar.stats.dhcp_messages", self.dhcp_messages);
        r.put(
            "nightjar.stats.mdm.events",
            self.mdm_events.len() as u64 + self.events_added,
        );
        r.put(
            "nightjar.stats.mdm.catalog_apps",
            self.catalog.as_ref().map_or(0, |c| c.apps().len()),
        );
        if let Some((ds, at)) = &analysis_stats {
            r.put("nightjar.stats.records.alert", self.alert_records);
            r.put("nightjar.stats.records.coverage", self.coverage_records);
            r.put_ser("nightjar.stats.detect", ds);
            r.put_ser("nightjar.stats.attribution", at);
            if let Some(ev) = &self.evidence {
                r.put_ser("nightjar.stats.evidence", &ev.stats());
            }
        }
        r.put("nightjar.stats.dns_cache.entries", self.dns.len());
        r.put("nightjar.stats.dns_cache.evicted", self.dns.evicted);
        let c = &self.identity.counters;
        r.put("nightjar.stats.identity.feed_lines", c.feed_lines);
        r.put("nightjar.stats.identity.feed_releases", c.feed_releases);
        r.put("nightjar.stats.identity.dhcp_leases", c.dhcp_leases);
        r.put("nightjar.stats.identity.dhcp_releases", c.dhcp_releases);
        r.put("nightjar.stats.identity.dhcp_ignored", c.dhcp_ignored);
        r.put(
            "nightjar.stats.identity.flows_by_method",
            json!(c.flows_by_method),
        );
        r.put("nightjar.stats.identity.unknown_flows", c.unknown_flows);
        r.put(
            "nightjar.stats.identity.unknown_untracked",
            c.unknown_untracked,
        );
        r.put(
            "nightjar.stats.identity.private_mac_flows",
            c.private_mac_flows,
        );
        for (name, v) in self.identity.sizes() {
            r.put(&format!("nightjar.stats.identity.{name}"), v);
        }
        r.put("nightjar.stats.blind_spots", json!(self.blind_spots));
        r.put(
            "nightjar.stats.blind_spots_untracked",
            self.blind_spots_untracked,
        );
        r.put("nightjar.stats.elapsed_seconds", secs);
        r.put(
            "nightjar.stats.packets_per_second",
            if secs > 0.0 {
                d.frames as f64 / secs
            } else {
                0.0
            },
        );
        if let Some(e) = &report.error {
            r.put("nightjar.stats.input_error", e.clone());
        }
        sink.write_record(&r)
    }
}
