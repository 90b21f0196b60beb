//! Evidence bundles (`--evidence-dir DIR`): per alert, a folder an analyst opens first.
//!
//! `DIR/<alert id>/` holds `alert.json` (the alert record, its latest revision),
//! `flows.json` (the flow records of the episode's flows, as written),
//! `packets.pcap` (the packets still held for the episode's flows by the shards'
//! packet keepers, [`crate::flow::keep`]: the first `packets_per_flow` packets of each
//! flow, each cut to `snap_bytes`, while the keeper's ring still holds them), `report.html`
//! (self-contained: inline CSS and SVG, no script, no external font or image: the
//! device's timeline with app states and their confidence, lifecycle events, each flow
//! as a bar sized by bytes up and down, the episode highlighted; the features against
//! their baselines and the evidence gaps in words) and `manifest.sha256`
//! (`sha256sum -c` format) over the other files.
//!
//! The pcap is classic pcap with nanosecond timestamps and the link type of the
//! packets; packets of another link type than the first (one alert's flows come from
//! one capture, so this does not happen in practice) are left out and counted
//! (`packets_other_linktype`). A revision rewrites the pcap only when it holds at
//! least as many packets as the one already written (the ring may have moved on).
//!
//! Bounds: the whole directory stays under `quota_bytes`; a bundle that would pass it
//! is not written and counted (`skipped_quota`). Write errors are counted, never fatal.

use super::detect::{AlertOut, HeldFlow};
use super::timeline::State;
use crate::flow::keep::{KeeperConfig, KeptPacket, PacketStore};
use crate::output::record::ts;
use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Arc;

/// Default disk quota of an evidence directory (1 GiB).
pub const DEFAULT_QUOTA_BYTES: u64 = 1 << 30;
/// Flows drawn in one report (400): more bars than a screen shows.
pub const MAX_REPORT_FLOWS: usize = 400;

#[derive(Clone, Debug)]
pub struct EvidenceOptions {
    pub dir: PathBuf,
    pub quota_bytes: u64,
    /// Keep packets for the bundles' pcaps (a keeper per shard with these bounds);
    /// `None`: bundles hold no packets and the data plane does no extra work.
    pub packets: Option<KeeperConfig>,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct EvidenceStats {
    pub bundles: u64,
    pub revisions: u64,
    pub bytes: u64,
    pub skipped_quota: u64,
    pub write_errors: u64,
    /// Packets written into bundles' pcaps.
    pub packets: u64,
    /// Packets left out of a pcap: another link type than the bundle's first.
    pub packets_other_linktype: u64,
    /// The shards' packet keepers (kept, snapped and every drop by reason).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keeper: Option<crate::flow::keep::KeeperStats>,
}

pub struct EvidenceWriter {
    opts: EvidenceOptions,
    store: Option<Arc<PacketStore>>,
    pub stats: EvidenceStats,
}

/// A classic pcap (nanosecond timestamps) of `packets`, all of the first packet's
/// link type; returns the file and how many packets of another link type were left out.
pub fn pcap_bytes(packets: &[KeptPacket], snaplen: u32) -> (Vec<u8>, u64) {
    let linktype = packets.first().map_or(1, |p| p.linktype);
    let mut out = Vec::with_capacity(24 + packets.iter().map(|p| 16 + p.data.len()).sum::<usize>());
    out.extend_from_slice(&0xa1b2_3c4du32.to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&4u16.to_le_bytes());
    out.extend_from_slice(&[0; 8]);
    out.extend_from_slice(&snaplen.to_le_bytes());
    out.extend_from_slice(&u32::from(linktype).to_le_bytes());
    let mut other = 0;
    for p in packets {
        if p.linktype != linktype {
            other += 1;
            continue;
        }
        out.extend_from_slice(&((p.ts_ns / 1_000_000_000) as u32).to_le_bytes());
        out.extend_from_slice(&((p.ts_ns % 1_000_000_000) as u32).to_le_bytes());
        out.extend_from_slice(&(p.data.len() as u32).to_le_bytes());
        out.extend_from_slice(&p.orig_len.max(p.data.len() as u32).to_le_bytes());
        out.extend_from_slice(&p.data);
    }
    (out, other)
}

/// Packets in a classic pcap written by [`pcap_bytes`] (0 if it is not one).
fn pcap_count(b: &[u8]) -> usize {
    let mut at = 24;
    let mut n = 0;
    while let Some(h) = b.get(at + 8..at + 12) {
        let len = u32::from_le_bytes([h[0], h[1], h[2], h[3]]) as usize;
        at += 16 + len;
        if at > b.len() {
            break;
        }
        n += 1;
    }
    n
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

impl EvidenceWriter {
    pub fn new(opts: EvidenceOptions) -> EvidenceWriter {
        EvidenceWriter {
            store: opts.packets.map(|c| Arc::new(PacketStore::new(c))),
            opts,
            stats: EvidenceStats::default(),
        }
    }

    /// The shards' packet store, when packets are kept.
    pub fn packet_store(&self) -> Option<&Arc<PacketStore>> {
        self.store.as_ref()
    }

    /// The counters, with the packet keepers' as they stand.
    pub fn stats(&self) -> EvidenceStats {
        let mut s = self.stats.clone();
        s.keeper = self.store.as_ref().map(|st| st.stats());
        s
    }

    /// The pcap of the episode's flows, or `None` when no packets are kept.
    fn pcap(&mut self, a: &AlertOut, dir: &std::path::Path) -> Option<Vec<u8>> {
        let store = self.store.as_ref()?;
        let mut packets = Vec::new();
        for h in &a.flows {
            store.collect(&h.key, h.start_ns, h.end_ns, &mut packets);
        }
        packets.sort_by_key(|p| p.ts_ns);
        packets.dedup();
        let (bytes, other) = pcap_bytes(&packets, u32::from(store.config().snap_bytes));
        // A revision keeps the earlier pcap when the ring has since let packets go.
        if let Ok(old) = std::fs::read(dir.join("packets.pcap")) {
            if pcap_count(&old) > packets.len() - other as usize {
                return Some(old);
            }
        }
        self.stats.packets_other_linktype += other;
        self.stats.packets += packets.len() as u64 - other;
        Some(bytes)
    }

    /// Writes (or rewrites, for a revision) the bundle of one alert.
    pub fn write(&mut self, a: &AlertOut) {
        let alert = serde_json::to_vec_pretty(&a.record).unwrap_or_default();
        let flows: Vec<&Value> = a.flows.iter().filter_map(|h| h.record.as_ref()).collect();
        let flows = serde_json::to_vec_pretty(&flows).unwrap_or_default();
        let html = report_html(a).into_bytes();
        let dir = self.opts.dir.join(&a.alert_id);
        let pcap = self.pcap(a, &dir);
        let mut files: Vec<(&str, &[u8])> = vec![
            ("alert.json", &alert),
            ("flows.json", &flows),
            ("report.html", &html),
        ];
        if let Some(p) = &pcap {
            files.push(("packets.pcap", p));
        }
        let mut manifest = String::new();
        for (name, data) in &files {
            let _ = writeln!(manifest, "{}  {name}", hex(&Sha256::digest(data)));
        }
        let total = files.iter().map(|(_, d)| d.len() as u64).sum::<u64>() + manifest.len() as u64;
        let previous: u64 = std::fs::read_dir(&dir)
            .map(|d| {
                d.flatten()
                    .filter_map(|e| e.metadata().ok())
                    .map(|m| m.len())
                    .sum()
            })
            .unwrap_or(0);
        if self.stats.bytes.saturating_sub(previous) + total > self.opts.quota_bytes {
            self.stats.skipped_quota += 1;
            return;
        }
        let res = std::fs::create_dir_all(&dir).and_then(|()| {
            for (name, data) in &files {
                std::fs::write(dir.join(name), data)?;
            }
            std::fs::write(dir.join("manifest.sha256"), manifest.as_bytes())
        });
        match res {
            Ok(()) => {
                self.stats.bytes = self.stats.bytes.saturating_sub(previous) + total;
                if a.revision == 1 {
                    self.stats.bundles += 1;
                } else {
                    self.stats.revisions += 1;
                }
            }
            Err(_) => self.stats.write_errors += 1,
        }
    }
}

fn human_bytes(b: u64) -> String {
    match b {
        0..=999 => format!("{b} B"),
        1000..=999_999 => format!("{:.0} KB", b as f64 / 1e3),
        _ => format!("{:.1} MB", b as f64 / 1e6),
    }
}

/// The self-contained HTML report of an alert.
pub fn report_html(a: &AlertOut) -> String {
    let r = &a.record;
    let s = |p: &str| r.pointer(p).and_then(Value::as_str).unwrap_or("");
    let (lo, hi) = {
        let mut lo = a.episode.0;
        let mut hi = a.episode.1;
        for h in &a.context_flows {
            lo = lo.min(h.start_ns);
            hi = hi.max(h.end_ns);
        }
        for (_, seg) in &a.segments {
            lo = lo.min(seg.start_ns);
        }
        (lo, hi.max(lo + 1))
    };
    let (w, left) = (1100.0f64, 190.0f64);
    let x = |t: u64| left + (t.saturating_sub(lo) as f64 / (hi - lo) as f64) * (w - left - 10.0);
    let mut apps: Vec<String> = a.segments.iter().map(|(app, _)| app.clone()).collect();
    for h in &a.context_flows {
        if let Some(app) = &h.app {
            apps.push(app.clone());
        }
    }
    apps.sort();
    apps.dedup();
    let mut flows: Vec<&HeldFlow> = a.context_flows.iter().take(MAX_REPORT_FLOWS).collect();
    flows.sort_by_key(|h| (h.app.clone(), h.start_ns));
    let row_h = 26.0;
    let state_rows = apps.len() as f64 * row_h;
    let flow_top = 60.0 + state_rows + 40.0;
    let height = flow_top + flows.len() as f64 * 12.0 + 40.0;
    let mut svg = String::new();
    let _ = write!(
        svg,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{height}" viewBox="0 0 {w} {height}" role="img" aria-label="device timeline">"##
    );
    // Episode highlight.
    let _ = write!(
        svg,
        r##"<rect x="{:.1}" y="30" width="{:.1}" height="{:.1}" fill="#ffe08a" opacity="0.55"/><text x="{:.1}" y="24" font-size="12" fill="#7a5c00">episode</text>"##,
        x(a.episode.0),
        (x(a.episode.1) - x(a.episode.0)).max(2.0),
        height - 50.0,
        x(a.episode.0)
    );
    // Axis ticks.
    for k in 0..=5 {
        let t = lo + (hi - lo) / 5 * k;
        let _ = write!(
            svg,
            r##"<line x1="{0:.1}" y1="40" x2="{0:.1}" y2="{1:.1}" stroke="#ddd"/><text x="{0:.1}" y="{2:.1}" font-size="10" text-anchor="middle" fill="#555">{3}</text>"##,
            x(t),
            height - 25.0,
            height - 10.0,
            esc(&ts(t)[11..19])
        );
    }
    for (i, app) in apps.iter().enumerate() {
        let y = 50.0 + i as f64 * row_h;
        let _ = write!(
            svg,
            r##"<text x="4" y="{:.1}" font-size="11" fill="#222">{}</text>"##,
            y + 14.0,
            esc(app)
        );
        for (_, seg) in a.segments.iter().filter(|(sa, _)| sa == app) {
            let color = match seg.state {
                State::Active => "#2e7d32",
                State::Background => "#c62828",
                State::Idle => "#9e9e9e",
            };
            let dash = match seg.confidence {
                crate::mdm::Confidence::Reported => "",
                crate::mdm::Confidence::Derived => r#" stroke-dasharray="6 2""#,
                crate::mdm::Confidence::Inferred => r#" stroke-dasharray="2 2""#,
            };
            let _ = write!(
                svg,
                r##"<rect x="{:.1}" y="{:.1}" width="{:.1}" height="16" fill="{color}" fill-opacity="0.35" stroke="{color}"{dash}><title>{:?} ({}) {} – {}</title></rect>"##,
                x(seg.start_ns),
                y + 2.0,
                (x(seg.end_ns.min(hi)) - x(seg.start_ns)).max(1.0),
                seg.state,
                seg.confidence.as_str(),
                esc(&ts(seg.start_ns)),
                esc(&ts(seg.end_ns))
            );
        }
    }
    for e in &a.events {
        let _ = write!(
            svg,
            r##"<line x1="{0:.1}" y1="40" x2="{0:.1}" y2="{1:.1}" stroke="#1565c0" stroke-width="2"><title>{2} ({3}, {4})</title></line><text x="{0:.1}" y="{5:.1}" font-size="9" fill="#1565c0">{2}</text>"##,
            x(e.ts),
            flow_top - 10.0,
            esc(e.kind.as_str()),
            e.confidence.as_str(),
            esc(&e.source),
            flow_top - 14.0
        );
    }
    let max_bytes = flows
        .iter()
        .map(|h| h.bytes_up.max(h.bytes_down))
        .max()
        .unwrap_or(1)
        .max(1) as f64;
    let in_episode: std::collections::HashSet<u64> = a.flows.iter().map(|h| h.id).collect();
    let _ = write!(
        svg,
        r##"<text x="4" y="{:.1}" font-size="11" font-weight="bold">flows (bar height: bytes up ▲ / down ▼)</text>"##,
        flow_top - 2.0
    );
    for (i, h) in flows.iter().enumerate() {
        let y = flow_top + 6.0 + i as f64 * 12.0;
        let up = 5.0 * (h.bytes_up as f64 / max_bytes).sqrt();
        let down = 5.0 * (h.bytes_down as f64 / max_bytes).sqrt();
        let stroke = if in_episode.contains(&h.id) {
            r##" stroke="#000" stroke-width="1""##
        } else {
            ""
        };
        let x0 = x(h.start_ns);
        let wd = (x(h.end_ns) - x0).max(2.0);
        let _ = write!(
            svg,
            r##"<g><title>{} → {} ({}) up {} down {}</title><rect x="{x0:.1}" y="{:.1}" width="{wd:.1}" height="{:.1}" fill="#ef6c00"{stroke}/><rect x="{x0:.1}" y="{y:.1}" width="{wd:.1}" height="{:.1}" fill="#0277bd"{stroke}/></g>"##,
            esc(h.app.as_deref().unwrap_or("?")),
            esc(&h.destination),
            h.method.as_str(),
            human_bytes(h.bytes_up),
            human_bytes(h.bytes_down),
            y - up.max(0.5),
            up.max(0.5),
            down.max(0.5)
        );
    }
    svg.push_str("</svg>");

    let mut feats = String::new();
    if let Some(list) = r
        .pointer("/nightjar/alert/features")
        .and_then(Value::as_array)
    {
        for f in list {
            let g = |k: &str| f.get(k).map(|v| v.to_string()).unwrap_or_default();
            let pct = f
                .get("percentile")
                .and_then(Value::as_f64)
                .map_or("—".to_string(), |p| format!("p{:.0}", p * 100.0));
            let _ = write!(
                feats,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(f.get("name").and_then(Value::as_str).unwrap_or("")),
                esc(&g("value")),
                esc(&pct),
                esc(f.get("baseline").and_then(Value::as_str).unwrap_or("")),
                esc(&g("score"))
            );
        }
    }
    let gaps: Vec<String> = r
        .pointer("/nightjar/alert/evidence_gaps")
        .and_then(Value::as_array)
        .map(|g| g.iter().filter_map(Value::as_str).map(gap_words).collect())
        .unwrap_or_default();
    let gap_list: String = gaps
        .iter()
        .map(|g| format!("<li>{}</li>", esc(g)))
        .collect();
    format!(
        r##"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>AN1717 alert {id}</title>
<style>body{{font-family:sans-serif;margin:24px;color:#222}}table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:3px 8px;font-size:13px}}.k{{color:#555}}</style></head>
<body>
<h1>AN1717 alert {id} (revision {rev})</h1>
<p>{msg}</p>
<p class="k">device {dev} · app {app} · risk {risk} · {start} – {end} · {tech} {techname}</p>
<h2>Device timeline</h2>
<p class="k">Rows: app states (green active, red background, grey idle; solid = reported, dashed = derived, dotted = inferred). Blue lines: lifecycle events. Bars: flows, orange up / blue down; outlined = the episode's flows. Yellow: the episode.</p>
{svg}
<h2>Features against baselines</h2>
<table><tr><th>feature</th><th>value</th><th>percentile</th><th>baseline</th><th>score</th></tr>{feats}</table>
<h2>What evidence is missing</h2>
<ul>{gap_list}</ul>
</body></html>
"##,
        id = esc(&a.alert_id),
        rev = a.revision,
        msg = esc(s("/message")),
        dev = esc(&a.device_key),
        app = esc(s("/nightjar/app/bundle_id")),
        risk = r
            .pointer("/event/risk_score")
            .map(|v| v.to_string())
            .unwrap_or_default(),
        start = esc(s("/event/start")),
        end = esc(s("/event/end")),
        tech = TECH,
        techname = "Encrypted Channel",
    )
}

const TECH: &str = super::detect::TECHNIQUE_ID;

/// An evidence gap code in words.
pub fn gap_words(code: &str) -> String {
    match code {
        "lifecycle_inferred" => "App foreground/background state was inferred from traffic: no SDK or MDM reported it.".into(),
        "identity_uncertain" => "The device or the app attribution of some flows is uncertain (inherited from a burst or a learned destination, or below 0.7 confidence).".into(),
        "names_missing" => "Some flows have neither SNI nor a DNS answer: their destination name is unknown.".into(),
        "quic_not_decrypted" => "Some QUIC Initials could not be decrypted: their ClientHello is unknown.".into(),
        "ech" => "Encrypted ClientHello was offered: the visible server name is the outer (provider) name.".into(),
        "encrypted_dns" => "The device uses encrypted DNS: names come from SNI only.".into(),
        "baseline_warming_up" => "Baselines for this app, its category and device groups are still warming up: fixed priors were used.".into(),
        "posture_unknown" => "The app is not in the catalog: its entitlements are unknown.".into(),
        "push_timing_unobserved" => "The app declares push, but no push wake was reported and no APNs connection of the device was seen: push wakes can neither explain the traffic nor be ruled out.".into(),
        "flows_dropped_from_window" => "The device's window overflowed: older flows were dropped.".into(),
        "payload_encrypted" => "Payloads are encrypted: the content of the transmission is not known, only its shape.".into(),
        other => other.to_string(),
    }
}
