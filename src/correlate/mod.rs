//! The correlator: turns the shards' observations into records.
//!
//! It owns the state that spans flows: the DNS resolution cache (names for
//! flows without SNI) and, as later stages join, device identity and app
//! attribution. It does no I/O except through the sink it is handed.

pub mod attribution;
pub mod baseline;
pub mod dns_cache;
pub mod timeline;

use crate::observation::Observation;
use crate::output::records::{dns_record, flow_record};
use crate::output::{Record, Sink, SinkError};
use crate::pipeline::replay::ReplayReport;
use crate::pipeline::stats::linktype_name;
use dns_cache::{CachedName, DnsCache};
use serde_json::json;

pub struct CorrelatorOptions {
    /// Write a `nightjar.dns` record per DNS message.
    pub dns_records: bool,
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
    dns: DnsCache,
    flow_records: u64,
    dns_records: u64,
    dhcp_messages: u64,
}

impl Correlator {
    pub fn new(opts: CorrelatorOptions) -> Correlator {
        Correlator {
            opts,
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
                sink.write(&flow_record(&f, &ctx))
            }
            Observation::Dns(d) => {
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
            Observation::Dhcp(_) => {
                self.dhcp_messages += 1;
                Ok(())
            }
        }
    }

    /// Writes the end-of-run `nightjar.stats` record.
    pub fn finish(&mut self, report: &ReplayReport, sink: &mut Sink) -> Result<(), SinkError> {
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
