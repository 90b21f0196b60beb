//! The correlator: turns the shards' observations into records.
//!
//! It owns the state that spans flows: the DNS resolution cache (names for
//! flows without SNI) and, as later stages join, device identity and app
//! attribution. It does no I/O except through the sink it is handed.

pub mod attribution;
pub mod baseline;
pub mod coverage;
pub mod detect;
pub mod dns_cache;
pub mod evidence;
pub mod timeline;

use crate::mdm::{Catalog, Inventory, LifecycleEvent, MacAddr};
use crate::observation::Observation;
use crate::output::records::{dns_record, flow_record};
use crate::output::{Record, Sink, SinkError};
use crate::pipeline::replay::ReplayReport;
use crate::pipeline::stats::linktype_name;
use dns_cache::{CachedName, DnsCache};
use serde_json::{json, Value};
use std::sync::Arc;

pub struct CorrelatorOptions {
    /// Write a `nightjar.dns` record per DNS message.
    pub dns_records: bool,
    /// App attribution and AN1717 detection (needs a catalog and/or an inventory).
    pub analysis: Option<AnalysisOptions>,
}

/// What attribution and detection run on.
pub struct AnalysisOptions {
    pub inventory: Arc<Inventory>,
    pub catalog: Arc<Catalog>,
    pub events: Vec<LifecycleEvent>,
    /// Baselines loaded from `--baseline` (else they start empty).
    pub baselines: Option<baseline::Baselines>,
    pub detect: detect::DetectConfig,
    /// `--evidence-dir`: write a bundle per alert.
    pub evidence: Option<evidence::EvidenceOptions>,
}

/// Sets a dotted path inside a JSON object, creating objects on the way.
fn put_path(v: &mut Value, path: &str, value: Value) {
    let mut cur = v;
    let mut parts = path.split('.').peekable();
    while let Some(p) = parts.next() {
        let Some(obj) = cur.as_object_mut() else {
            return;
        };
        if parts.peek().is_none() {
            obj.insert(p.to_string(), value);
            return;
        }
        cur = obj
            .entry(p.to_string())
            .or_insert_with(|| Value::Object(serde_json::Map::new()));
    }
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
}

pub struct Correlator {
    opts: CorrelatorOptions,
    detector: Option<detect::Detector>,
    evidence: Option<evidence::EvidenceWriter>,
    alert_records: u64,
    coverage_records: u64,
    dns: DnsCache,
    flow_records: u64,
    dns_records: u64,
    dhcp_messages: u64,
}

impl Correlator {
    pub fn new(mut opts: CorrelatorOptions) -> Correlator {
        let (detector, evidence) = match opts.analysis.take() {
            Some(a) => {
                let keep = a.evidence.is_some();
                (
                    Some(detect::Detector::new(
                        a.detect,
                        a.inventory,
                        a.catalog,
                        a.events,
                        a.baselines,
                        keep,
                    )),
                    a.evidence.map(evidence::EvidenceWriter::new),
                )
            }
            None => (None, None),
        };
        Correlator {
            opts,
            detector,
            evidence,
            alert_records: 0,
            coverage_records: 0,
            dns: DnsCache::default(),
            flow_records: 0,
            dns_records: 0,
            dhcp_messages: 0,
        }
    }

    pub fn handle(&mut self, obs: Observation, sink: &mut Sink) -> Result<(), SinkError> {
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
                self.flow_records += 1;
                let mut record = flow_record(&f, &ctx);
                let Some(det) = self.detector.as_mut() else {
                    return sink.write(&record);
                };
                // Device identity: the inventory device whose hardware Wi-Fi MAC sent the flow.
                let device = f
                    .client
                    .mac
                    .and_then(|m| det.inventory().by_wifi_mac(MacAddr(m)))
                    .map(|d| d.id.clone());
                let input = detect::FlowInput {
                    summary: &f,
                    domain: ctx.domain.as_deref(),
                    domain_source: ctx.domain_source,
                    device_id: device.as_deref(),
                    identity_method: device.as_ref().map(|_| "wifi_mac"),
                };
                let (attribution, alerts) =
                    det.on_flow(&input, self.evidence.is_some().then_some(&record));
                if let Some(d) = &device {
                    put_path(&mut record, "device.id", json!(d));
                }
                if let Ok(app) = serde_json::to_value(&attribution) {
                    put_path(&mut record, "nightjar.app", app);
                }
                sink.write(&record)?;
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
                    sink.write(&dns_record(&d))?;
                }
                Ok(())
            }
            Observation::Dhcp(d) => {
                self.dhcp_messages += 1;
                if let Some(det) = self.detector.as_mut() {
                    let alerts = det.advance(d.ts_ns);
                    self.write_alerts(alerts, sink)?;
                }
                Ok(())
            }
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

    /// The baselines as they stand (to save after a replay).
    pub fn baselines(&self) -> Option<&baseline::Baselines> {
        self.detector.as_ref().map(detect::Detector::baselines)
    }

    /// Writes the end-of-run `nightjar.stats` record.
    pub fn finish(&mut self, report: &ReplayReport, sink: &mut Sink) -> Result<(), SinkError> {
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
            let det = self
                .detector
                .as_ref()
                .map(|d| (d.stats.clone(), d.attribution_stats().clone()));
            analysis_stats = det;
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
        r.put("nightjar.stats.flows.created", f.created);
        r.put("nightjar.stats.flows.expired", f.expired);
        r.put("nightjar.stats.flows.evicted", f.evicted);
        r.put("nightjar.stats.flows.interim", f.interim);
        r.put("nightjar.stats.flows.peak_active", f.peak_active);
        r.put("nightjar.stats.flow_anomalies", json!(f.anomalies));
        r.put("nightjar.stats.ts_backwards", f.ts_backwards);
        r.put("nightjar.stats.unkeyed_packets", f.unkeyed_packets);
        r.put("nightjar.stats.records.flow", self.flow_records);
        r.put("nightjar.stats.records.dns", self.dns_records);
        r.put("nightjar.stats.dhcp_messages", self.dhcp_messages);
        if let Some((ds, at)) = &analysis_stats {
            r.put("nightjar.stats.records.alert", self.alert_records);
            r.put("nightjar.stats.records.coverage", self.coverage_records);
            r.put_ser("nightjar.stats.detect", ds);
            r.put_ser("nightjar.stats.attribution", at);
            if let Some(ev) = &self.evidence {
                r.put_ser("nightjar.stats.evidence", &ev.stats);
            }
        }
        r.put("nightjar.stats.dns_cache.entries", self.dns.len());
        r.put("nightjar.stats.dns_cache.evicted", self.dns.evicted);
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
        sink.write(&r.into_value())
    }
}
