//! The correlator's inputs while `nightjar run` runs: the `[mdm]` inventory, events and
//! catalog files and the `[identity] feed` file (loaded at start, reloaded on SIGHUP),
//! and what the MDM adapter tasks publish (their inventories and lifecycle events).
//!
//! One mechanism carries all of it to the correlator: [`Inputs`] keeps each source's
//! latest inventory, merges them (the file first, then the adapters by name) and hands
//! the merged `Arc<Inventory>` over as one `Update::Inventory` through the correlator's
//! bounded control queue (`pipeline::live::CONTROL_QUEUE`); events, the catalog and
//! feed lines travel the same queue. The control plane never blocks on that queue:
//! what does not fit waits here and is retried on the next tick. A newer inventory or
//! catalog replaces a waiting one (only the newest matters); events wait up to
//! [`MAX_WAITING_EVENTS`], beyond which the oldest are dropped and counted.
//!
//! Invariants: a file that fails to load on reload leaves the previous data in place,
//! logs one line (`nightjar: SIGHUP: <file>: <error>; keeping the previous <what>`) and
//! counts it; a reload hands over only events (by id) and feed lines not in the
//! previous load, so nothing is applied twice; a merge conflict the model cannot hold
//! keeps the previous merged inventory (logged, counted).

use super::metrics::{family, MetricSource};
use super::DaemonError;
use crate::config::Config;
use crate::correlate::identity::{load_feed, FeedEntry, FeedSocketStats};
use crate::correlate::Update;
use crate::mdm::adapter::{merge, AdapterStats};
use crate::mdm::{load_catalog, load_events, load_inventory, Catalog, Inventory, LifecycleEvent};
use crate::pipeline::live::CorrelatorMsg;
use crossbeam_channel::{Sender, TrySendError};
use std::collections::{BTreeMap, HashSet, VecDeque};
use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Lifecycle events waiting for room in the correlator's control queue: a burst of a
/// large fleet's derived events after a poll; beyond it the oldest are dropped (counted).
pub const MAX_WAITING_EVENTS: usize = 65_536;
/// Events per control message.
pub const EVENT_BATCH: usize = 256;

/// The files `[mdm]` and `[identity]` name.
#[derive(Clone, Debug, Default)]
struct Files {
    inventory: Option<PathBuf>,
    events: Option<PathBuf>,
    catalog: Option<PathBuf>,
    feed: Option<PathBuf>,
}

/// Counters of the inputs, for `/metrics`.
#[derive(Debug, Default)]
pub struct InputStats {
    /// SIGHUP reloads done.
    pub reloads: AtomicU64,
    /// Files that failed to load on reload, by `[mdm]`/`[identity]` key.
    pub reload_failures: Mutex<BTreeMap<&'static str, u64>>,
    /// Lifecycle events dropped because the correlator's queue stayed full.
    pub events_dropped: AtomicU64,
    /// Coverage ticks skipped because the correlator's queue was full.
    pub coverage_skipped: AtomicU64,
    /// Merges of the sources' inventories refused (the previous one was kept).
    pub merge_failures: AtomicU64,
    /// Devices in the merged inventory last handed to the correlator.
    pub inventory_devices: AtomicU64,
    /// The identity socket's counters, when it runs.
    pub feed_socket: Mutex<Option<Arc<FeedSocketStats>>>,
}

/// What the correlator starts with.
pub struct Initial {
    pub inventory: Option<Arc<Inventory>>,
    pub events: Vec<LifecycleEvent>,
    pub catalog: Option<Catalog>,
    pub feed: Vec<FeedEntry>,
}

/// The sources' latest data and what still has to reach the correlator.
pub struct Inputs {
    files: Files,
    file_inventory: Option<Arc<Inventory>>,
    adapters: BTreeMap<&'static str, Arc<Inventory>>,
    /// Ids of the events file's events already handed over.
    event_ids: HashSet<String>,
    /// The feed file's lines already handed over (their JSON form).
    feed_lines: HashSet<String>,
    inventory_dirty: bool,
    catalog: Option<Arc<Catalog>>,
    events: VecDeque<LifecycleEvent>,
    feed: Vec<FeedEntry>,
    merge_stats: AdapterStats,
    pub stats: Arc<InputStats>,
}

fn feed_key(e: &FeedEntry) -> String {
    serde_json::to_string(e).unwrap_or_default()
}

impl Inputs {
    /// Loads every configured file; any failure stops the start (like replay).
    pub fn load(cfg: &Config) -> Result<(Inputs, Initial), DaemonError> {
        let files = Files {
            inventory: cfg.mdm.inventory.clone(),
            events: cfg.mdm.events.clone(),
            catalog: cfg.mdm.catalog.clone(),
            feed: cfg.identity_feed.clone(),
        };
        let inventory = match &files.inventory {
            Some(p) => Some(Arc::new(load_inventory(p)?)),
            None => None,
        };
        let events = match &files.events {
            Some(p) => load_events(p)?,
            None => Vec::new(),
        };
        let catalog = match &files.catalog {
            Some(p) => Some(load_catalog(p)?),
            None => None,
        };
        let feed = match &files.feed {
            Some(p) => load_feed(p)?,
            None => Vec::new(),
        };
        let inputs = Inputs {
            files,
            file_inventory: inventory.clone(),
            adapters: BTreeMap::new(),
            event_ids: events.iter().map(|e| e.id.clone()).collect(),
            feed_lines: feed.iter().map(feed_key).collect(),
            inventory_dirty: false,
            catalog: None,
            events: VecDeque::new(),
            feed: Vec::new(),
            merge_stats: AdapterStats::default(),
            stats: Arc::new(InputStats::default()),
        };
        inputs.stats.inventory_devices.store(
            inventory.as_ref().map_or(0, |i| i.devices().len() as u64),
            Ordering::Relaxed,
        );
        Ok((
            inputs,
            Initial {
                inventory,
                events,
                catalog,
                feed,
            },
        ))
    }

    fn reload_failed(&self, key: &'static str, what: &str, err: &dyn std::fmt::Display) {
        eprintln!("nightjar: SIGHUP: {key}: {err}; keeping the previous {what}");
        if let Ok(mut m) = self.stats.reload_failures.lock() {
            *m.entry(key).or_insert(0) += 1;
        }
    }

    /// SIGHUP: reloads every configured file. A file that does not load keeps the
    /// previous data (one log line, counted).
    pub fn reload(&mut self) {
        AdapterStats::inc(&self.stats.reloads);
        let files = self.files.clone();
        if let Some(p) = &files.inventory {
            match load_inventory(p) {
                Ok(inv) => {
                    self.file_inventory = Some(Arc::new(inv));
                    self.inventory_dirty = true;
                }
                Err(e) => self.reload_failed("mdm.inventory", "inventory", &e),
            }
        }
        if let Some(p) = &files.catalog {
            match load_catalog(p) {
                Ok(c) => self.catalog = Some(Arc::new(c)),
                Err(e) => self.reload_failed("mdm.catalog", "catalog", &e),
            }
        }
        if let Some(p) = &files.events {
            match load_events(p) {
                Ok(events) => {
                    for e in events {
                        if self.event_ids.insert(e.id.clone()) {
                            self.push_event(e);
                        }
                    }
                }
                Err(e) => self.reload_failed("mdm.events", "events", &e),
            }
        }
        if let Some(p) = &files.feed {
            match load_feed(p) {
                Ok(lines) => {
                    for l in lines {
                        if self.feed_lines.insert(feed_key(&l)) {
                            self.feed.push(l);
                        }
                    }
                }
                Err(e) => self.reload_failed("identity.feed", "identity feed", &e),
            }
        }
    }

    /// An adapter published its current inventory.
    pub fn adapter_inventory(&mut self, adapter: &'static str, inv: Arc<Inventory>) {
        let same = self
            .adapters
            .get(adapter)
            .is_some_and(|have| Arc::ptr_eq(have, &inv));
        if !same {
            self.adapters.insert(adapter, inv);
            self.inventory_dirty = true;
        }
    }

    /// An adapter derived or reported a lifecycle event.
    pub fn push_event(&mut self, e: LifecycleEvent) {
        if self.events.len() >= MAX_WAITING_EVENTS {
            self.events.pop_front();
            AdapterStats::inc(&self.stats.events_dropped);
        }
        self.events.push_back(e);
    }

    /// The merged inventory of every source; `Err` when the sources conflict.
    fn merged(&self) -> Result<Option<Arc<Inventory>>, String> {
        let mut parts: Vec<&Arc<Inventory>> = self.file_inventory.iter().collect();
        parts.extend(self.adapters.values());
        match parts.as_slice() {
            [] => Ok(None),
            [one] => Ok(Some(Arc::clone(one))),
            many => {
                let refs: Vec<&Inventory> = many.iter().map(|a| a.as_ref()).collect();
                merge(&refs, &self.merge_stats)
                    .map(|i| Some(Arc::new(i)))
                    .map_err(|e| e.to_string())
            }
        }
    }

    /// Hands over what waits, as far as the correlator's queue has room.
    pub fn flush(&mut self, tx: &Sender<CorrelatorMsg>) {
        let send = |msg: CorrelatorMsg| match tx.try_send(msg) {
            Ok(()) => None,
            Err(TrySendError::Full(m)) => Some(m),
            // The correlator is gone (shutdown): nothing more to hand over.
            Err(TrySendError::Disconnected(_)) => None,
        };
        if self.inventory_dirty {
            match self.merged() {
                Ok(inv) => {
                    let n = inv.as_ref().map_or(0, |i| i.devices().len() as u64);
                    if send(CorrelatorMsg::Update(Update::Inventory(inv))).is_none() {
                        self.inventory_dirty = false;
                        self.stats.inventory_devices.store(n, Ordering::Relaxed);
                    }
                }
                Err(e) => {
                    eprintln!("nightjar: mdm: cannot merge the inventories ({e}); keeping the previous one");
                    AdapterStats::inc(&self.stats.merge_failures);
                    self.inventory_dirty = false;
                }
            }
        }
        if let Some(c) = self.catalog.take() {
            if let Some(CorrelatorMsg::Update(Update::Catalog(c))) =
                send(CorrelatorMsg::Update(Update::Catalog(c)))
            {
                self.catalog = Some(c);
            }
        }
        if !self.feed.is_empty() {
            let lines = std::mem::take(&mut self.feed);
            if let Some(CorrelatorMsg::Update(Update::Feed(lines))) =
                send(CorrelatorMsg::Update(Update::Feed(lines)))
            {
                self.feed = lines;
            }
        }
        while !self.events.is_empty() {
            let n = self.events.len().min(EVENT_BATCH);
            let batch: Vec<LifecycleEvent> = self.events.drain(..n).collect();
            if let Some(CorrelatorMsg::Update(Update::Events(batch))) =
                send(CorrelatorMsg::Update(Update::Events(batch)))
            {
                for e in batch.into_iter().rev() {
                    self.events.push_front(e);
                }
                break;
            }
        }
    }

    /// Asks the correlator for its coverage records; a full queue skips (counted).
    pub fn coverage(&self, tx: &Sender<CorrelatorMsg>) {
        if let Err(TrySendError::Full(_)) = tx.try_send(CorrelatorMsg::Coverage) {
            AdapterStats::inc(&self.stats.coverage_skipped);
        }
    }
}

impl MetricSource for InputStats {
    fn render(&self, out: &mut String) {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        family(
            out,
            "nightjar_reloads_total",
            "counter",
            "SIGHUP reloads of the inventory, events, catalog and identity files.",
        );
        let _ = writeln!(out, "nightjar_reloads_total {}", g(&self.reloads));
        family(
            out,
            "nightjar_reload_failures_total",
            "counter",
            "Files that failed to load on SIGHUP (the previous data was kept), by config key.",
        );
        if let Ok(m) = self.reload_failures.lock() {
            for (k, v) in m.iter() {
                let _ = writeln!(out, "nightjar_reload_failures_total{{file=\"{k}\"}} {v}");
            }
        }
        family(
            out,
            "nightjar_mdm_events_dropped_total",
            "counter",
            "Lifecycle events dropped because the correlator's queue stayed full.",
        );
        let _ = writeln!(
            out,
            "nightjar_mdm_events_dropped_total {}",
            g(&self.events_dropped)
        );
        family(
            out,
            "nightjar_coverage_skipped_total",
            "counter",
            "Periodic coverage writes skipped because the correlator's queue was full.",
        );
        let _ = writeln!(
            out,
            "nightjar_coverage_skipped_total {}",
            g(&self.coverage_skipped)
        );
        family(
            out,
            "nightjar_mdm_merge_failures_total",
            "counter",
            "Merges of the MDM sources' inventories refused (the previous inventory was kept).",
        );
        let _ = writeln!(
            out,
            "nightjar_mdm_merge_failures_total {}",
            g(&self.merge_failures)
        );
        family(
            out,
            "nightjar_inventory_devices",
            "gauge",
            "Devices in the merged MDM inventory the correlator uses.",
        );
        let _ = writeln!(
            out,
            "nightjar_inventory_devices {}",
            g(&self.inventory_devices)
        );
        let socket = self.feed_socket.lock().ok().and_then(|s| s.clone());
        if let Some(s) = socket {
            family(
                out,
                "nightjar_identity_socket_lines_total",
                "counter",
                "Identity feed lines received on the socket, by result.",
            );
            for (result, c) in [
                ("accepted", &s.accepted),
                ("bad", &s.bad_lines),
                ("dropped", &s.dropped_full),
            ] {
                let _ = writeln!(
                    out,
                    "nightjar_identity_socket_lines_total{{result=\"{result}\"}} {}",
                    g(c)
                );
            }
            family(
                out,
                "nightjar_identity_socket_connections_total",
                "counter",
                "Identity socket connections, by result.",
            );
            for (result, c) in [
                ("accepted", &s.connections),
                ("refused", &s.refused_connections),
            ] {
                let _ = writeln!(
                    out,
                    "nightjar_identity_socket_connections_total{{result=\"{result}\"}} {}",
                    g(c)
                );
            }
        }
    }
}

/// The MDM adapters' counters as metrics.
pub struct MdmMetrics {
    /// `(adapter, counters)`; the webhook receiver is the adapter "webhook".
    pub adapters: Vec<(&'static str, Arc<AdapterStats>)>,
}

impl MetricSource for MdmMetrics {
    fn render(&self, out: &mut String) {
        let now = crate::mdm::adapter::wall_clock_ns();
        let snaps: Vec<_> = self
            .adapters
            .iter()
            .map(|(n, s)| (*n, s.snapshot(now)))
            .collect();
        type Pick = fn(&crate::mdm::adapter::StatsSnapshot) -> u64;
        type ByResult<'a> = (&'a str, &'a str, [(&'a str, Pick); 2]);
        let by_result: [ByResult; 2] = [
            (
                "nightjar_mdm_polls_total",
                "Full inventory pulls, by adapter and result (a failure keeps the last good inventory).",
                [("success", |s| s.pulls_ok), ("failure", |s| s.pulls_failed)],
            ),
            (
                "nightjar_mdm_device_pulls_total",
                "Webhook-triggered one-device pulls, by adapter and result.",
                [
                    ("success", |s| s.device_pulls_ok),
                    ("failure", |s| s.device_pulls_failed),
                ],
            ),
        ];
        for (name, help, picks) in by_result {
            family(out, name, "counter", help);
            for (adapter, s) in &snaps {
                for (result, pick) in picks {
                    let _ = writeln!(
                        out,
                        "{name}{{adapter=\"{adapter}\",result=\"{result}\"}} {}",
                        pick(s)
                    );
                }
            }
        }
        let plain: [(&str, &str, Pick); 6] = [
            (
                "nightjar_mdm_http_requests_total",
                "HTTP requests sent to the MDM API (retries included).",
                |s| s.requests,
            ),
            (
                "nightjar_mdm_http_retries_total",
                "MDM API requests repeated after a 429, a 5xx or a transport error.",
                |s| s.retries,
            ),
            (
                "nightjar_mdm_http_throttled_total",
                "HTTP 429 answers from the MDM API.",
                |s| s.throttled,
            ),
            (
                "nightjar_mdm_bad_responses_total",
                "MDM API responses refused (too large, not JSON, wrong shape).",
                |s| s.bad_responses,
            ),
            (
                "nightjar_mdm_devices_skipped_total",
                "Devices skipped (no usable id, malformed, clashing).",
                |s| s.devices_skipped,
            ),
            (
                "nightjar_mdm_lifecycle_events_total",
                "Lifecycle events the adapter emitted (derived and reported).",
                |s| s.events_emitted,
            ),
        ];
        for (name, help, pick) in plain {
            family(out, name, "counter", help);
            for (adapter, s) in &snaps {
                let _ = writeln!(out, "{name}{{adapter=\"{adapter}\"}} {}", pick(s));
            }
        }
        family(
            out,
            "nightjar_mdm_inventory_age_seconds",
            "gauge",
            "Time since the adapter's last successful full pull (absent before the first).",
        );
        for (adapter, s) in &snaps {
            if let Some(age) = s.inventory_age_ns {
                let _ = writeln!(
                    out,
                    "nightjar_mdm_inventory_age_seconds{{adapter=\"{adapter}\"}} {}",
                    age as f64 / 1e9
                );
            }
        }
        family(
            out,
            "nightjar_mdm_webhooks_total",
            "counter",
            "Webhooks received, by result.",
        );
        for (adapter, s) in &snaps {
            for (result, v) in [
                ("accepted", s.webhooks_accepted),
                ("unauthorized", s.webhooks_unauthorized),
                ("too_large", s.webhooks_too_large),
                ("rate_limited", s.webhooks_rate_limited),
                ("queue_full", s.webhooks_queue_full),
                ("malformed", s.webhooks_malformed),
                ("ignored", s.webhooks_ignored),
            ] {
                if v > 0 || *adapter == "webhook" {
                    let _ = writeln!(
                        out,
                        "nightjar_mdm_webhooks_total{{adapter=\"{adapter}\",result=\"{result}\"}} {v}"
                    );
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inv(json: &str) -> Arc<Inventory> {
        Arc::new(crate::mdm::parse_inventory(json, "t").unwrap())
    }

    fn empty_inputs() -> Inputs {
        Inputs::load(&Config::default()).unwrap().0
    }

    #[test]
    fn merges_sources_and_waits_for_room() {
        let mut i = empty_inputs();
        let (tx, rx) = crossbeam_channel::bounded(1);
        i.adapter_inventory(
            "jamf",
            inv(r#"{"devices":[{"id":"a","wifi_mac":"02:00:00:00:00:01"}]}"#),
        );
        i.adapter_inventory("intune", inv(r#"{"devices":[{"id":"b"}]}"#));
        tx.send(CorrelatorMsg::Coverage).unwrap();
        // Queue full: the inventory waits, the coverage tick is skipped and counted.
        i.flush(&tx);
        i.coverage(&tx);
        assert_eq!(i.stats.coverage_skipped.load(Ordering::Relaxed), 1);
        assert!(i.inventory_dirty);
        rx.recv().unwrap();
        i.flush(&tx);
        match rx.try_recv().unwrap() {
            CorrelatorMsg::Update(Update::Inventory(Some(m))) => {
                let ids: Vec<&str> = m.devices().iter().map(|d| d.id.as_str()).collect();
                assert_eq!(ids, ["a", "b"]);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(i.stats.inventory_devices.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn bounded_events_drop_the_oldest() {
        let mut i = empty_inputs();
        let e = |n: usize| {
            crate::mdm::read_events(
                format!(
                    "{{\"id\":\"e{n}\",\"device_id\":\"d\",\"kind\":\"checkin\",\"ts\":\"2024-05-06T07:00:00Z\",\"source\":\"t\",\"confidence\":\"reported\"}}\n"
                )
                .as_bytes(),
                "t",
            )
            .unwrap()
            .remove(0)
        };
        for n in 0..MAX_WAITING_EVENTS + 2 {
            i.push_event(e(n));
        }
        assert_eq!(i.stats.events_dropped.load(Ordering::Relaxed), 2);
        assert_eq!(i.events.front().unwrap().id, "e2");
        let (tx, rx) = crossbeam_channel::bounded(4);
        i.flush(&tx);
        // Four batches fit; the rest waits for room.
        assert_eq!(rx.len(), 4);
        assert_eq!(i.events.len(), MAX_WAITING_EVENTS - 4 * EVENT_BATCH);
    }
}
