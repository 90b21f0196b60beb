//! Coverage and governance: what the sensor could and could not see, per device, and
//! how each app's observed background behaviour compares with its declared posture.
//!
//! Owns [`DeviceTally`] (→ `nightjar.coverage`, one per device or unidentified client
//! at the end of a replay) and [`AppTally`] (→ `nightjar.governance`, one per app seen).
//! These answer the seed's "validate that telemetry can correlate" and "document what
//! evidence is unavailable" points: shares of flows and bytes attributed (by method),
//! named, QUIC decrypted, ECH and encrypted DNS seen, lifecycle sources and confidences.
//!
//! Invariants: counters only (sets are bounded by [`MAX_SET`]); no I/O.

use super::attribution::{Attribution, Method};
use super::detect::{EpisodeFeatures, HeldFlow, Posture};
use crate::mdm::{AppProfile, LifecycleEvent};
use crate::output::record::Record;
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, BTreeSet};

/// Distinct values kept in a coverage set (sources, identity methods, devices per app):
/// 4096 keeps one fleet's devices per app and a handful of sources.
pub const MAX_SET: usize = 4096;

fn insert_bounded(set: &mut BTreeSet<String>, v: &str) {
    if set.len() < MAX_SET || set.contains(v) {
        set.insert(v.to_string());
    }
}

fn share(n: u64, d: u64) -> f64 {
    if d == 0 {
        0.0
    } else {
        ((n as f64 / d as f64) * 1000.0).round() / 1000.0
    }
}

/// Per-device coverage counters.
#[derive(Clone, Debug, Default)]
pub struct DeviceTally {
    pub flows: u64,
    pub bytes: u64,
    pub flows_by_method: BTreeMap<&'static str, u64>,
    pub bytes_by_method: BTreeMap<&'static str, u64>,
    pub named_flows: u64,
    pub tls_flows: u64,
    pub quic_flows: u64,
    pub quic_decrypted: u64,
    pub ech_flows: u64,
    pub encrypted_dns_flows: u64,
    pub identity_methods: BTreeSet<String>,
    pub lifecycle_sources: BTreeSet<String>,
    pub lifecycle_confidence: BTreeMap<&'static str, u64>,
    pub app_state_events: u64,
    pub held_dropped: u64,
}

impl DeviceTally {
    pub fn add_flow(
        &mut self,
        h: &HeldFlow,
        a: &Attribution,
        encrypted_dns: bool,
        _in_inventory: bool,
        identity: Option<&str>,
    ) {
        let bytes = h.bytes_up + h.bytes_down;
        self.flows += 1;
        self.bytes += bytes;
        *self.flows_by_method.entry(a.method.as_str()).or_default() += 1;
        *self.bytes_by_method.entry(a.method.as_str()).or_default() += bytes;
        if h.named {
            self.named_flows += 1;
        }
        if h.ja4.is_some() {
            self.tls_flows += 1;
        }
        if h.ja4.as_deref().is_some_and(|j| j.starts_with('q')) || h.quic_undecrypted {
            self.quic_flows += 1;
            if !h.quic_undecrypted {
                self.quic_decrypted += 1;
            }
        }
        if h.ech {
            self.ech_flows += 1;
        }
        if encrypted_dns {
            self.encrypted_dns_flows += 1;
        }
        insert_bounded(&mut self.identity_methods, identity.unwrap_or("none"));
    }

    pub fn add_event(&mut self, e: &LifecycleEvent) {
        insert_bounded(&mut self.lifecycle_sources, &e.source);
        *self
            .lifecycle_confidence
            .entry(e.confidence.as_str())
            .or_default() += 1;
        if matches!(
            e.kind,
            crate::mdm::EventKind::AppForeground
                | crate::mdm::EventKind::AppBackground
                | crate::mdm::EventKind::AppLaunched
                | crate::mdm::EventKind::PushWake
        ) {
            self.app_state_events += 1;
        }
    }

    /// The `nightjar.coverage` record.
    pub fn record(
        &self,
        key: &str,
        is_device: bool,
        client_ip: Option<&str>,
        in_inventory: bool,
        now_ns: u64,
    ) -> Value {
        let mut r = Record::new("nightjar.coverage", now_ns);
        r.put("event.kind", "metric");
        if is_device {
            r.put("device.id", key);
        } else if let Some(ip) = client_ip {
            r.put("source.ip", ip);
        }
        r.put("nightjar.coverage.inventory", in_inventory);
        r.put(
            "nightjar.coverage.identity_methods",
            json!(self.identity_methods),
        );
        r.put(
            "nightjar.coverage.lifecycle.sources",
            json!(self.lifecycle_sources),
        );
        let conf: Map<String, Value> = self
            .lifecycle_confidence
            .iter()
            .map(|(k, v)| ((*k).to_string(), json!(v)))
            .collect();
        r.put("nightjar.coverage.lifecycle.confidence", conf);
        r.put(
            "nightjar.coverage.lifecycle.app_state_events",
            self.app_state_events,
        );
        r.put("nightjar.coverage.flows", self.flows);
        r.put("nightjar.coverage.bytes", self.bytes);
        let attributed_flows: u64 = [
            Method::Domain,
            Method::Ja4,
            Method::Burst,
            Method::Destination,
        ]
        .iter()
        .map(|m| self.flows_by_method.get(m.as_str()).copied().unwrap_or(0))
        .sum();
        let attributed_bytes: u64 = [
            Method::Domain,
            Method::Ja4,
            Method::Burst,
            Method::Destination,
        ]
        .iter()
        .map(|m| self.bytes_by_method.get(m.as_str()).copied().unwrap_or(0))
        .sum();
        r.put(
            "nightjar.coverage.attributed.flow_share",
            share(attributed_flows, self.flows),
        );
        r.put(
            "nightjar.coverage.attributed.byte_share",
            share(attributed_bytes, self.bytes),
        );
        let by: Map<String, Value> = Method::ALL
            .iter()
            .filter_map(|m| {
                let n = self.flows_by_method.get(m.as_str()).copied()?;
                let b = self.bytes_by_method.get(m.as_str()).copied().unwrap_or(0);
                Some((
                    m.as_str().to_string(),
                    json!({"flows": n, "flow_share": share(n, self.flows), "byte_share": share(b, self.bytes)}),
                ))
            })
            .collect();
        r.put("nightjar.coverage.attributed.by_method", by);
        r.put(
            "nightjar.coverage.named_share",
            share(self.named_flows, self.flows),
        );
        r.put("nightjar.coverage.tls_flows", self.tls_flows);
        r.put("nightjar.coverage.quic_flows", self.quic_flows);
        r.put(
            "nightjar.coverage.quic_decrypted_share",
            share(self.quic_decrypted, self.quic_flows),
        );
        r.put("nightjar.coverage.ech_flows", self.ech_flows);
        r.put(
            "nightjar.coverage.encrypted_dns_flows",
            self.encrypted_dns_flows,
        );
        let mut gaps = Vec::new();
        if !in_inventory {
            gaps.push("no_inventory");
        }
        if self.app_state_events == 0 {
            gaps.push("lifecycle_inferred_only");
        }
        if self.identity_methods.iter().all(|m| m == "none") {
            gaps.push("identity_unresolved");
        }
        if self.named_flows < self.flows {
            gaps.push("names_missing");
        }
        if self.quic_decrypted < self.quic_flows {
            gaps.push("quic_not_decrypted");
        }
        if self.ech_flows > 0 {
            gaps.push("ech");
        }
        if self.encrypted_dns_flows > 0 {
            gaps.push("encrypted_dns");
        }
        if self.held_dropped > 0 {
            gaps.push("flows_dropped_from_window");
        }
        gaps.push("payload_encrypted");
        r.put("nightjar.coverage.gaps", json!(gaps));
        r.into_value()
    }
}

/// Per-app governance counters.
#[derive(Clone, Debug, Default)]
pub struct AppTally {
    pub flows: u64,
    pub devices_seen: BTreeSet<String>,
    pub background_episodes: u64,
    pub background_bytes_up: f64,
    pub background_bytes_down: f64,
    pub background_seconds: f64,
    pub periodic_episodes: u64,
    pub new_destination_episodes: u64,
    pub unusual_ja4_episodes: u64,
    pub alerts: u64,
    pub max_risk: u8,
}

impl AppTally {
    pub fn add_episode(&mut self, f: &EpisodeFeatures) {
        self.background_episodes += 1;
        self.background_bytes_up += f.bytes_up;
        self.background_bytes_down += f.bytes_down;
        self.background_seconds += f.duration_seconds;
        if f.periodicity >= 0.8 && f.connections >= 4.0 {
            self.periodic_episodes += 1;
        }
        if f.new_destinations > 0.0 {
            self.new_destination_episodes += 1;
        }
        if f.unusual_ja4 > 0.0 {
            self.unusual_ja4_episodes += 1;
        }
    }

    /// The `nightjar.governance` record.
    pub fn record(
        &self,
        app: &str,
        profile: Option<&AppProfile>,
        installed: usize,
        now_ns: u64,
    ) -> Value {
        let posture = Posture::of(profile);
        let mut r = Record::new("nightjar.governance", now_ns);
        r.put("event.kind", "metric");
        r.put("nightjar.app.bundle_id", app);
        r.put_opt("nightjar.app.name", profile.and_then(|p| p.name.clone()));
        r.put_opt(
            "nightjar.governance.category",
            profile.and_then(|p| p.category.clone()),
        );
        r.put("nightjar.governance.installed_devices", installed);
        r.put(
            "nightjar.governance.observed_devices",
            self.devices_seen.len(),
        );
        r.put("nightjar.governance.flows", self.flows);
        r.put(
            "nightjar.governance.background.episodes",
            self.background_episodes,
        );
        r.put(
            "nightjar.governance.background.bytes_up",
            self.background_bytes_up.round() as u64,
        );
        r.put(
            "nightjar.governance.background.bytes_down",
            self.background_bytes_down.round() as u64,
        );
        r.put(
            "nightjar.governance.background.seconds",
            self.background_seconds.round() as u64,
        );
        r.put(
            "nightjar.governance.background.periodic_episodes",
            self.periodic_episodes,
        );
        r.put(
            "nightjar.governance.background.new_destination_episodes",
            self.new_destination_episodes,
        );
        r.put(
            "nightjar.governance.background.unusual_ja4_episodes",
            self.unusual_ja4_episodes,
        );
        r.put("nightjar.governance.alerts", self.alerts);
        r.put("nightjar.governance.max_risk_score", self.max_risk);
        posture.put_into(&mut r, "nightjar.governance");
        let mut findings = Vec::new();
        if !posture.in_catalog {
            findings.push("not in the catalog: entitlement posture unknown".to_string());
        }
        if self.background_episodes > 0 && posture.in_catalog && !posture.declares_background() {
            findings.push(format!(
                "{} background episode(s) although it declares no background execution",
                self.background_episodes
            ));
        }
        if self.periodic_episodes > 0 {
            findings.push(format!(
                "{} periodic background episode(s)",
                self.periodic_episodes
            ));
        }
        if self.new_destination_episodes > 0 {
            findings.push(format!(
                "{} background episode(s) to destinations new for the app",
                self.new_destination_episodes
            ));
        }
        if self.unusual_ja4_episodes > 0 {
            findings.push(format!(
                "{} background episode(s) with an unusual TLS fingerprint",
                self.unusual_ja4_episodes
            ));
        }
        if self.alerts > 0 {
            findings.push(format!("{} AN1717 alert(s)", self.alerts));
        }
        let unexplained = self.background_episodes > 0 && !posture.declares_background();
        let verdict = if self.alerts > 0 || !posture.in_catalog || unexplained {
            "review"
        } else if self.background_episodes == 0 {
            "no_background_activity"
        } else {
            "consistent"
        };
        r.put("nightjar.governance.verdict", verdict);
        r.put("nightjar.governance.findings", json!(findings));
        r.into_value()
    }
}
