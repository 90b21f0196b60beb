//! App attribution: which app on a device made a flow, how sure we are, and why.
//!
//! Owns the [`Attributor`]: the evidence model (catalog domains, Apple system names,
//! shared SDK domains, JA4 fingerprints from the catalog or learned from confident
//! attributions, co-occurrence in a burst on the same device, destinations learned
//! on a device) and its bounded learned state.
//!
//! Evidence for each candidate app is a strength in 0–1; a candidate's score is the
//! noisy-or of its evidence. The confidence of the best candidate is its score less
//! half the runner-up's, so an ambiguous flow (two installed apps own the name) is
//! reported with its candidates but not decided. Rules:
//! - candidates are the apps installed on the flow's device; with no device or no
//!   inventory entry, every catalog app, and every strength is scaled by
//!   [`UNSCOPED_FACTOR`];
//! - an Apple system name makes the flow `system`, never an app;
//! - a shared SDK domain never decides alone: it adds no strength, it only lets the
//!   flow inherit from its burst;
//! - a learned JA4 counts only when it is distinctive: seen at least
//!   [`JA4_LEARN_MIN`] times in confident attributions, at least
//!   [`JA4_DISTINCT_SHARE`] of them for one app (the system TLS stack that every app
//!   shares never qualifies), and only for a flow whose name is not an app's
//!   domain (so a learned stack never outvotes a catalog domain and every app's
//!   domain flows keep teaching);
//! - a flow with no telling name that starts within `burst_window` after a confident
//!   flow of a candidate on the same device inherits that app at lower strength
//!   (FlowPrint, NDSS 2020), and its destination is remembered for that device.
//!
//! Invariants: every table is bounded by a named constant and refuses (and counts)
//! insertions beyond it; time is the flow's packet time; no I/O.

use crate::mdm::{Catalog, Inventory};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::IpAddr;

/// Distinct JA4 fingerprints learned across the fleet (4096): apps bring a handful
/// of TLS stacks each; more is churn (randomized hellos) that would not be distinctive.
pub const MAX_LEARNED_JA4: usize = 4096;
/// Apps counted per learned JA4 (8): a fingerprint shared by more apps is already
/// not distinctive, only its total matters.
pub const MAX_APPS_PER_JA4: usize = 8;
/// Confident attributions remembered per device for burst inheritance (64): a burst
/// lasts seconds and opens a few dozen connections at most.
pub const MAX_RECENT_PER_DEVICE: usize = 64;
/// Undecided flows remembered per device for late burst inheritance (64).
pub const MAX_UNDECIDED_PER_DEVICE: usize = 64;
/// Destinations learned by inheritance per device (256).
pub const MAX_LEARNED_DEST_PER_DEVICE: usize = 256;
/// Devices (or unidentified clients) with attribution state (100 000, one fleet).
pub const MAX_DEVICES: usize = 100_000;
/// Candidates listed in `nightjar.app.candidates` (3).
pub const MAX_CANDIDATES_SHOWN: usize = 3;

/// A learned JA4 counts only after this many confident attributions.
pub const JA4_LEARN_MIN: u32 = 5;
/// ... and only when this share of them went to one app.
pub const JA4_DISTINCT_SHARE: f64 = 0.9;
/// Strengths are multiplied by this when the device's apps are unknown.
pub const UNSCOPED_FACTOR: f64 = 0.8;
/// Below this confidence the flow is `unknown` (candidates still listed).
pub const MIN_CONFIDENCE: f64 = 0.35;
/// At or above this confidence (by domain or catalog JA4) an attribution teaches:
/// JA4 statistics, burst inheritance and device destinations.
pub const CONFIDENT: f64 = 0.7;

/// How the decision was made (the strongest evidence of the chosen app).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Hash, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    /// The flow's name is one of the app's catalog domains.
    Domain,
    /// The flow's JA4 is the app's (catalog or learned, distinctive).
    Ja4,
    /// Inherited from a confidently attributed flow in the same burst on the device.
    Burst,
    /// The destination was attributed to the app earlier on this device.
    Destination,
    /// An Apple system service, not an app.
    System,
    /// Not decided.
    Unknown,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Domain => "domain",
            Method::Ja4 => "ja4",
            Method::Burst => "burst",
            Method::Destination => "destination",
            Method::System => "system",
            Method::Unknown => "unknown",
        }
    }

    /// Every method, in output order.
    pub const ALL: [Method; 6] = [
        Method::Domain,
        Method::Ja4,
        Method::Burst,
        Method::Destination,
        Method::System,
        Method::Unknown,
    ];
}

/// One candidate app with its score.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Candidate {
    pub bundle_id: String,
    pub score: f64,
}

/// `nightjar.app` of a flow.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Attribution {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bundle_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub confidence: f64,
    pub method: Method,
    pub reasons: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub candidates: Vec<Candidate>,
}

impl Attribution {
    pub fn unknown(reasons: Vec<String>) -> Attribution {
        Attribution {
            bundle_id: None,
            name: None,
            confidence: 0.0,
            method: Method::Unknown,
            reasons,
            candidates: Vec::new(),
        }
    }

    /// The app, when one was decided.
    pub fn app(&self) -> Option<&str> {
        self.bundle_id.as_deref()
    }
}

/// What attribution needs to know about a flow.
#[derive(Clone, Debug)]
pub struct FlowFacts<'a> {
    pub start_ns: u64,
    /// `destination.domain` (SNI, else DNS).
    pub name: Option<&'a str>,
    /// "sni" or "dns".
    pub name_source: Option<&'a str>,
    pub ja4: Option<&'a str>,
    pub server_ip: IpAddr,
    pub client_ip: IpAddr,
}

impl FlowFacts<'_> {
    /// Where the flow went: its name, else its server address.
    pub fn destination(&self) -> String {
        match self.name {
            Some(n) => n.to_ascii_lowercase(),
            None => self.server_ip.to_string(),
        }
    }
}

/// Tunables (from config, validated).
#[derive(Clone, Copy, Debug)]
pub struct AttributionConfig {
    /// A flow starting this long after a confident flow on its device is in its burst.
    pub burst_window_ns: u64,
}

impl Default for AttributionConfig {
    fn default() -> Self {
        AttributionConfig {
            burst_window_ns: 2_000_000_000,
        }
    }
}

#[derive(Default)]
struct Ja4Stats {
    total: u32,
    by_app: Vec<(String, u32)>,
}

#[derive(Default)]
struct DeviceMemory {
    /// (start time, app) of recent confident attributions, oldest first.
    recent: VecDeque<(u64, String)>,
    /// destination → app learned on this device.
    dest: HashMap<String, String>,
    /// (start time, destination) of recent undecided flows without an app domain:
    /// flow records arrive when flows end, so a burst's short flow can arrive before
    /// the confident flow it belongs with; that flow then teaches its destination.
    undecided: VecDeque<(u64, String)>,
}

/// Counters of the attributor (drops are counted, never silent).
#[derive(Clone, Debug, Default, Serialize)]
pub struct AttributionStats {
    pub ja4_table_full: u64,
    pub device_table_full: u64,
    pub dest_table_full: u64,
}

/// Attribution state: learned JA4s and per-device memory.
#[derive(Default)]
pub struct Attributor {
    cfg: AttributionConfig,
    ja4: HashMap<String, Ja4Stats>,
    devices: HashMap<String, DeviceMemory>,
    pub stats: AttributionStats,
}

#[derive(Clone)]
struct Evidence {
    /// Product of (1 − strength): the score is 1 − this.
    miss: f64,
    best: f64,
    best_method: Option<Method>,
}

impl Default for Evidence {
    fn default() -> Evidence {
        Evidence::new()
    }
}

impl Evidence {
    fn new() -> Evidence {
        Evidence {
            miss: 1.0,
            best: 0.0,
            best_method: None,
        }
    }
    fn add(&mut self, s: f64, m: Method) {
        let s = s.clamp(0.0, 1.0);
        self.miss *= 1.0 - s;
        if s > self.best {
            self.best = s;
            self.best_method = Some(m);
        }
    }
    fn score(&self) -> f64 {
        1.0 - self.miss
    }
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

impl Attributor {
    pub fn new(cfg: AttributionConfig) -> Attributor {
        Attributor {
            cfg,
            ..Attributor::default()
        }
    }

    /// The key of a flow's device memory: the device id, else the client address.
    fn device_key(device: Option<&str>, f: &FlowFacts<'_>) -> String {
        match device {
            Some(d) => format!("d:{d}"),
            None => format!("ip:{}", f.client_ip),
        }
    }

    /// Attributes one flow and learns from it when confident.
    pub fn attribute(
        &mut self,
        f: &FlowFacts<'_>,
        device: Option<&str>,
        inv: &Inventory,
        cat: &Catalog,
    ) -> Attribution {
        let mut reasons = Vec::new();
        // Candidates: the device's apps, else the catalog's.
        let (candidates, factor): (Vec<&str>, f64) = match device
            .filter(|d| inv.device(d).is_some())
        {
            Some(d) => (
                inv.apps(d).iter().map(|a| a.bundle_id.as_str()).collect(),
                1.0,
            ),
            None => {
                let mut all: Vec<&str> = cat.apps().iter().map(|a| a.bundle_id.as_str()).collect();
                all.sort_unstable();
                all.dedup();
                reasons.push("device apps unknown: every catalog app is a candidate".into());
                (all, UNSCOPED_FACTOR)
            }
        };
        let is_candidate = |b: &str| candidates.binary_search(&b).is_ok();
        let mut ev: HashMap<&str, Evidence> = HashMap::new();
        let mut app_domain = false;

        if let Some(name) = f.name {
            let src = f.name_source.unwrap_or("name");
            match cat.lookup(name) {
                Some(m) if m.is_system() => {
                    let conf = if m.exact { 0.95 } else { 0.9 };
                    return Attribution {
                        bundle_id: None,
                        name: None,
                        confidence: conf,
                        method: Method::System,
                        reasons: vec![format!(
                            "{src} name {name} is an Apple system domain ({}{})",
                            if m.exact { "" } else { "*." },
                            m.pattern
                        )],
                        candidates: Vec::new(),
                    };
                }
                Some(m) => {
                    let owners: Vec<&str> = m
                        .apps()
                        .map(|a| a.bundle_id.as_str())
                        .filter(|b| is_candidate(b))
                        .collect();
                    let mut owners = owners;
                    owners.sort_unstable();
                    owners.dedup();
                    let pat = format!("{}{}", if m.exact { "" } else { "*." }, m.pattern);
                    if !owners.is_empty() {
                        app_domain = true;
                        let base = if m.exact { 0.9 } else { 0.85 };
                        let s = factor * base / (owners.len() as f64).sqrt();
                        for o in &owners {
                            ev.entry(o).or_default().add(s, Method::Domain);
                        }
                        reasons.push(if owners.len() == 1 {
                            format!("{src} name {name} matches catalog domain {pat} of {}", owners[0])
                        } else {
                            format!(
                                "{src} name {name} matches catalog domain {pat} of {} installed apps",
                                owners.len()
                            )
                        });
                    } else if m.apps().next().is_some() {
                        reasons.push(format!(
                            "{src} name {name} matches {pat}, owned by apps not installed on the device"
                        ));
                    }
                    let sdks: Vec<&str> = m.sdks().map(|s| s.name.as_str()).collect();
                    if !sdks.is_empty() {
                        reasons.push(format!(
                            "{name} is a shared SDK domain ({}): it does not decide alone",
                            sdks.join(", ")
                        ));
                    }
                }
                None => reasons.push(format!("{src} name {name} is not in the catalog")),
            }
        } else {
            reasons.push("no server name (no SNI, no DNS answer seen)".into());
        }

        if let Some(ja4) = f.ja4 {
            let mut owners: Vec<&str> = cat
                .apps()
                .iter()
                .filter(|a| a.ja4.iter().any(|j| j == ja4))
                .map(|a| a.bundle_id.as_str())
                .filter(|b| is_candidate(b))
                .collect();
            owners.sort_unstable();
            owners.dedup();
            if !owners.is_empty() {
                let s = factor * 0.6 / (owners.len() as f64).sqrt();
                for o in &owners {
                    ev.entry(o).or_default().add(s, Method::Ja4);
                }
                reasons.push(format!(
                    "JA4 {ja4} is listed in the catalog for {}",
                    owners.join(", ")
                ));
            } else if let Some(st) = self.ja4.get(ja4).filter(|_| !app_domain) {
                if st.total >= JA4_LEARN_MIN {
                    if let Some((app, n)) = st.by_app.iter().max_by_key(|(_, n)| *n) {
                        let share = f64::from(*n) / f64::from(st.total);
                        if share >= JA4_DISTINCT_SHARE && is_candidate(app) {
                            let s = factor * 0.5 * share;
                            if let Some(key) = candidates.iter().find(|c| **c == app.as_str()) {
                                ev.entry(key).or_default().add(s, Method::Ja4);
                            }
                            reasons.push(format!(
                                "JA4 {ja4} was seen for {app} in {n} of {} confident attributions",
                                st.total
                            ));
                        }
                    }
                }
            }
        }

        let dkey = Self::device_key(device, f);
        let dest = f.destination();
        let shared = f
            .name
            .and_then(|n| cat.lookup(n))
            .is_some_and(|m| m.sdks().next().is_some());
        if !app_domain {
            if let Some(mem) = self.devices.get(&dkey) {
                let lo = f.start_ns.saturating_sub(self.cfg.burst_window_ns);
                // Each app inherits in proportion to its confident flows in the burst
                // (the foreground app opens several; a background fetch one).
                let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
                for (_, a) in mem
                    .recent
                    .iter()
                    .filter(|(t, _)| *t >= lo && *t <= f.start_ns + self.cfg.burst_window_ns)
                    .filter(|(_, a)| is_candidate(a))
                {
                    *counts.entry(a.as_str()).or_default() += 1;
                }
                let total: usize = counts.values().sum();
                if total > 0 {
                    for (a, n) in &counts {
                        let s = factor * 0.55 * *n as f64 / total as f64;
                        if let Some(key) = candidates.iter().find(|c| **c == *a) {
                            ev.entry(key).or_default().add(s, Method::Burst);
                        }
                    }
                    let names: Vec<String> =
                        counts.iter().map(|(a, n)| format!("{a} ({n})")).collect();
                    reasons.push(format!(
                        "starts within {} ms of confidently attributed flows of {} on the same device",
                        self.cfg.burst_window_ns / 1_000_000,
                        names.join(", ")
                    ));
                }
                if let Some(app) = mem.dest.get(&dest).filter(|_| !shared) {
                    if let Some(key) = candidates.iter().find(|c| **c == app.as_str()) {
                        ev.entry(key)
                            .or_default()
                            .add(factor * 0.6, Method::Destination);
                        reasons.push(format!(
                            "destination {dest} was attributed to {app} earlier on this device"
                        ));
                    }
                }
            }
        }

        let mut scored: Vec<(&str, f64, Method)> = ev
            .iter()
            .map(|(a, e)| (*a, e.score(), e.best_method.unwrap_or(Method::Unknown)))
            .collect();
        scored.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(b.0)));
        let shown: Vec<Candidate> = scored
            .iter()
            .take(MAX_CANDIDATES_SHOWN)
            .map(|(a, s, _)| Candidate {
                bundle_id: (*a).to_string(),
                score: round3(*s),
            })
            .collect();
        let Some(&(best, best_score, method)) = scored.first() else {
            if !app_domain && !shared {
                self.remember_undecided(&dkey, f.start_ns, dest);
            }
            let mut a = Attribution::unknown(reasons);
            a.candidates = shown;
            return a;
        };
        let second = scored.get(1).map_or(0.0, |c| c.1);
        let conf = round3((best_score - 0.5 * second).clamp(0.0, 1.0));
        if conf < MIN_CONFIDENCE {
            reasons.push(format!(
                "best candidate {best} below confidence {MIN_CONFIDENCE}"
            ));
            let mut a = Attribution::unknown(reasons);
            a.candidates = shown;
            return a;
        }
        let version = device
            .and_then(|d| inv.app(d, best))
            .and_then(|a| a.version.as_deref());
        let name = cat.app(best, version).and_then(|p| p.name.clone());
        let out = Attribution {
            bundle_id: Some(best.to_string()),
            name,
            confidence: conf,
            method,
            reasons,
            candidates: shown,
        };
        self.learn(&dkey, f, &out, shared);
        out
    }

    /// Learns from an attribution: confident domain/JA4 decisions seed bursts, JA4
    /// statistics and device destinations; inherited ones teach the destination only.
    fn learn(&mut self, dkey: &str, f: &FlowFacts<'_>, a: &Attribution, shared: bool) {
        let Some(app) = a.app() else { return };
        let strong = a.confidence >= CONFIDENT && matches!(a.method, Method::Domain | Method::Ja4);
        let inherited = matches!(a.method, Method::Burst);
        if !strong && !inherited {
            return;
        }
        if !self.devices.contains_key(dkey) && self.devices.len() >= MAX_DEVICES {
            self.stats.device_table_full += 1;
            return;
        }
        let mem = self.devices.entry(dkey.to_string()).or_default();
        if strong {
            if mem.recent.len() >= MAX_RECENT_PER_DEVICE {
                mem.recent.pop_front();
            }
            mem.recent.push_back((f.start_ns, app.to_string()));
            // Undecided flows that started in this flow's burst belong with it.
            let w = self.cfg.burst_window_ns;
            let late: Vec<String> = mem
                .undecided
                .iter()
                .filter(|(t, _)| t.abs_diff(f.start_ns) <= w)
                .map(|(_, d)| d.clone())
                .collect();
            mem.undecided.retain(|(t, _)| t.abs_diff(f.start_ns) > w);
            for d in late {
                if mem.dest.len() < MAX_LEARNED_DEST_PER_DEVICE || mem.dest.contains_key(&d) {
                    mem.dest.entry(d).or_insert_with(|| app.to_string());
                } else {
                    self.stats.dest_table_full += 1;
                }
            }
            if a.method == Method::Domain {
                if let Some(ja4) = f.ja4 {
                    self.learn_ja4(ja4, app);
                }
            }
        } else if !shared {
            let dest = f.destination();
            if mem.dest.len() >= MAX_LEARNED_DEST_PER_DEVICE && !mem.dest.contains_key(&dest) {
                self.stats.dest_table_full += 1;
            } else {
                mem.dest.insert(dest, app.to_string());
            }
        }
    }

    fn remember_undecided(&mut self, dkey: &str, start_ns: u64, dest: String) {
        if !self.devices.contains_key(dkey) && self.devices.len() >= MAX_DEVICES {
            self.stats.device_table_full += 1;
            return;
        }
        let mem = self.devices.entry(dkey.to_string()).or_default();
        if mem.undecided.len() >= MAX_UNDECIDED_PER_DEVICE {
            mem.undecided.pop_front();
        }
        mem.undecided.push_back((start_ns, dest));
    }

    fn learn_ja4(&mut self, ja4: &str, app: &str) {
        if !self.ja4.contains_key(ja4) && self.ja4.len() >= MAX_LEARNED_JA4 {
            self.stats.ja4_table_full += 1;
            return;
        }
        let st = self.ja4.entry(ja4.to_string()).or_default();
        st.total = st.total.saturating_add(1);
        if let Some(e) = st.by_app.iter_mut().find(|(a, _)| a == app) {
            e.1 = e.1.saturating_add(1);
        } else if st.by_app.len() < MAX_APPS_PER_JA4 {
            st.by_app.push((app.to_string(), 1));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mdm::{parse_inventory, CatalogBuilder};

    fn catalog() -> Catalog {
        let mut b = CatalogBuilder::new();
        b.add_text(
            r#"{"apps": [
              {"bundle_id": "com.a.chat", "name": "Chat", "domains": ["*.chat.example"], "ja4": ["t13d3113h2_1d947a95fc68_7e1102d2036b"]},
              {"bundle_id": "com.b.notes", "name": "Notes", "domains": ["api.notes.example", "*.shared-cdn.example"]},
              {"bundle_id": "com.c.mail", "name": "Mail", "domains": ["*.shared-cdn.example"]},
              {"bundle_id": "com.d.absent", "name": "Absent", "domains": ["*.absent.example"]}],
              "shared_sdks": [{"name": "Crash SDK", "domains": ["*.crash.example"]}],
              "system": {"domains": ["*.apple.com"]}}"#,
            crate::mdm::CatalogFormat::Json,
            "t.json",
        )
        .unwrap();
        b.build()
    }

    fn inventory() -> Inventory {
        parse_inventory(
            r#"{"devices": [{"id": "d1", "apps": [
                {"bundle_id": "com.a.chat"}, {"bundle_id": "com.b.notes"}, {"bundle_id": "com.c.mail"}]}]}"#,
            "inv",
        )
        .unwrap()
    }

    fn facts<'a>(name: Option<&'a str>, ja4: Option<&'a str>, t: u64) -> FlowFacts<'a> {
        FlowFacts {
            start_ns: t,
            name,
            name_source: name.map(|_| "sni"),
            ja4,
            server_ip: "192.0.2.1".parse().unwrap(),
            client_ip: "10.0.0.2".parse().unwrap(),
        }
    }

    #[test]
    fn domain_system_sdk_and_ambiguity() {
        let (cat, inv) = (catalog(), inventory());
        let mut at = Attributor::new(AttributionConfig::default());
        let a = at.attribute(
            &facts(Some("m.chat.example"), None, 0),
            Some("d1"),
            &inv,
            &cat,
        );
        assert_eq!(a.app(), Some("com.a.chat"));
        assert_eq!(a.method, Method::Domain);
        assert_eq!(a.name.as_deref(), Some("Chat"));
        assert!(a.confidence >= CONFIDENT, "{a:?}");

        let s = at.attribute(
            &facts(Some("gateway.icloud.apple.com"), None, 0),
            Some("d1"),
            &inv,
            &cat,
        );
        assert_eq!(s.method, Method::System);
        assert_eq!(s.app(), None);

        // Two installed owners: listed, not decided.
        let amb = at.attribute(
            &facts(Some("x.shared-cdn.example"), None, 0),
            Some("d1"),
            &inv,
            &cat,
        );
        assert_eq!(amb.method, Method::Unknown, "{amb:?}");
        assert_eq!(amb.candidates.len(), 2);

        // An SDK domain alone, far from any burst: unknown.
        let sdk = at.attribute(
            &facts(Some("r.crash.example"), None, 60_000_000_000),
            Some("d1"),
            &inv,
            &cat,
        );
        assert_eq!(sdk.method, Method::Unknown);
        assert!(sdk
            .reasons
            .iter()
            .any(|r| r.contains("does not decide alone")));

        // An app not installed on the device does not win.
        let absent = at.attribute(
            &facts(Some("absent.example"), None, 900_000_000_000),
            Some("d1"),
            &inv,
            &cat,
        );
        assert_eq!(absent.method, Method::Unknown);
    }

    #[test]
    fn burst_inheritance_and_destination_memory() {
        let (cat, inv) = (catalog(), inventory());
        let mut at = Attributor::new(AttributionConfig::default());
        let t0 = 1_000_000_000_000;
        at.attribute(
            &facts(Some("api.notes.example"), Some("t13d_sys"), t0),
            Some("d1"),
            &inv,
            &cat,
        );
        let sdk = at.attribute(
            &facts(Some("r.crash.example"), None, t0 + 500_000_000),
            Some("d1"),
            &inv,
            &cat,
        );
        assert_eq!(sdk.app(), Some("com.b.notes"), "{sdk:?}");
        assert_eq!(sdk.method, Method::Burst);
        assert!(sdk.confidence < CONFIDENT);
        // A shared SDK destination is not remembered: later, alone, it stays unknown.
        let later = at.attribute(
            &facts(Some("r.crash.example"), None, t0 + 600_000_000_000),
            Some("d1"),
            &inv,
            &cat,
        );
        assert_eq!(later.method, Method::Unknown, "{later:?}");
        // A destination unknown to the catalog inherited in a burst is remembered.
        at.attribute(
            &facts(Some("m.beacon.example"), None, t0 + 800_000_000),
            Some("d1"),
            &inv,
            &cat,
        );
        let later = at.attribute(
            &facts(Some("m.beacon.example"), None, t0 + 600_000_000_000),
            Some("d1"),
            &inv,
            &cat,
        );
        assert_eq!(later.app(), Some("com.b.notes"), "{later:?}");
        assert_eq!(later.method, Method::Destination);
        // Another device does not inherit.
        let other = at.attribute(
            &facts(Some("r.crash.example"), None, t0 + 500_000_000),
            None,
            &inv,
            &cat,
        );
        assert_eq!(other.method, Method::Unknown);
    }

    #[test]
    fn undecided_flow_arriving_first_teaches_its_destination() {
        let (cat, inv) = (catalog(), inventory());
        let mut at = Attributor::new(AttributionConfig::default());
        let t0 = 5_000_000_000_000;
        // The short beacon flow ends (and arrives) before the burst's confident flow.
        let first = at.attribute(
            &facts(Some("m.beacon.example"), None, t0 + 700_000_000),
            Some("d1"),
            &inv,
            &cat,
        );
        assert_eq!(first.method, Method::Unknown);
        at.attribute(
            &facts(Some("api.notes.example"), None, t0),
            Some("d1"),
            &inv,
            &cat,
        );
        let later = at.attribute(
            &facts(Some("m.beacon.example"), None, t0 + 300_000_000_000),
            Some("d1"),
            &inv,
            &cat,
        );
        assert_eq!(later.app(), Some("com.b.notes"), "{later:?}");
        assert_eq!(later.method, Method::Destination);
    }

    #[test]
    fn ja4_catalog_and_learned_distinctive_only() {
        let (cat, inv) = (catalog(), inventory());
        let mut at = Attributor::new(AttributionConfig::default());
        let a = at.attribute(
            &facts(None, Some("t13d3113h2_1d947a95fc68_7e1102d2036b"), 0),
            Some("d1"),
            &inv,
            &cat,
        );
        assert_eq!(a.app(), Some("com.a.chat"));
        assert_eq!(a.method, Method::Ja4);
        // A JA4 learned for notes only becomes evidence.
        for i in 0..JA4_LEARN_MIN {
            at.attribute(
                &facts(
                    Some("api.notes.example"),
                    Some("t13d_notes"),
                    u64::from(i) * 100_000_000_000,
                ),
                Some("d1"),
                &inv,
                &cat,
            );
        }
        let b = at.attribute(
            &facts(None, Some("t13d_notes"), 10_000_000_000_000),
            Some("d1"),
            &inv,
            &cat,
        );
        assert_eq!(b.app(), Some("com.b.notes"), "{b:?}");
        // A JA4 shared by two apps is not.
        for i in 0..JA4_LEARN_MIN {
            let t = u64::from(i) * 100_000_000_000;
            at.attribute(
                &facts(Some("api.notes.example"), Some("t13d_shared"), t),
                Some("d1"),
                &inv,
                &cat,
            );
            at.attribute(
                &facts(Some("m.chat.example"), Some("t13d_shared"), t),
                Some("d1"),
                &inv,
                &cat,
            );
        }
        let c = at.attribute(
            &facts(None, Some("t13d_shared"), 20_000_000_000_000),
            Some("d1"),
            &inv,
            &cat,
        );
        assert_eq!(c.method, Method::Unknown, "{c:?}");
    }

    #[test]
    fn unscoped_is_less_confident() {
        let (cat, inv) = (catalog(), inventory());
        let mut at = Attributor::new(AttributionConfig::default());
        let scoped = at.attribute(
            &facts(Some("m.chat.example"), None, 0),
            Some("d1"),
            &inv,
            &cat,
        );
        let unscoped = at.attribute(&facts(Some("m.chat.example"), None, 0), None, &inv, &cat);
        assert_eq!(unscoped.app(), Some("com.a.chat"));
        assert!(unscoped.confidence < scoped.confidence);
    }
}
