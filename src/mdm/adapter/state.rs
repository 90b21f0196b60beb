//! The last good inventory of one adapter and its poll cursor, kept in memory and in
//! the state directory, and the diff that turns a new inventory into derived events.
//!
//! Files (in `[state] dir`): `mdm-<adapter>-inventory.json` (the `--inventory` format)
//! and `mdm-<adapter>-cursor.json` (`{"last_success", "fingerprint", "devices"}`).
//! Both are written atomically: a temporary file in the same directory, fsync, rename,
//! fsync of the directory. A crash leaves the old file or the new one, never half.
//!
//! Invariants: the current inventory changes only on a successful pull (a failure keeps
//! it); applying an inventory equal to the current one emits nothing, including after a
//! restart (the persisted one is loaded first); the very first inventory of an adapter
//! with no persisted state is a baseline and emits nothing (the fleet did not just
//! enroll).

use super::{AdapterError, AdapterStats};
use crate::mdm::{
    diff, format_rfc3339, inventory_to_json, parse_inventory, Device, EventKind, InstalledApp,
    Inventory, LifecycleEvent,
};
use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// Writes `bytes` to `path` atomically (temp file + fsync + rename + directory fsync).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map_or_else(|| "state".into(), |n| n.to_string_lossy().into_owned());
    let tmp = dir.join(format!(".{name}.tmp.{}", std::process::id()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, path)?;
        // Make the rename itself durable.
        std::fs::File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Cursor {
    last_success: String,
    fingerprint: String,
    devices: usize,
}

/// One adapter's current inventory and its persistence.
pub struct InventoryTracker {
    adapter: &'static str,
    dir: Option<PathBuf>,
    current: Arc<Inventory>,
    has_baseline: bool,
    stats: Arc<AdapterStats>,
}

impl InventoryTracker {
    /// A tracker for `adapter`, loading its persisted inventory from `dir` if there is
    /// one. `dir = None` keeps nothing on disk (one-shot `mdm sync`). A persisted file
    /// that does not load is reported and ignored (the next pull is a new baseline).
    pub fn open(
        adapter: &'static str,
        dir: Option<&Path>,
        stats: Arc<AdapterStats>,
    ) -> InventoryTracker {
        let mut t = InventoryTracker {
            adapter,
            dir: dir.map(Path::to_path_buf),
            current: Arc::new(Inventory::default()),
            has_baseline: false,
            stats,
        };
        if let Some(path) = t.inventory_path() {
            match std::fs::read_to_string(&path) {
                Ok(text) => match parse_inventory(&text, &path.display().to_string()) {
                    Ok(inv) => {
                        t.current = Arc::new(inv);
                        t.has_baseline = true;
                    }
                    Err(e) => eprintln!("nightjar: mdm {adapter}: ignoring saved state: {e}"),
                },
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => eprintln!(
                    "nightjar: mdm {adapter}: ignoring saved state {}: {e}",
                    path.display()
                ),
            }
        }
        t
    }

    fn inventory_path(&self) -> Option<PathBuf> {
        self.dir
            .as_ref()
            .map(|d| d.join(format!("mdm-{}-inventory.json", self.adapter)))
    }

    fn cursor_path(&self) -> Option<PathBuf> {
        self.dir
            .as_ref()
            .map(|d| d.join(format!("mdm-{}-cursor.json", self.adapter)))
    }

    /// The current (last good) inventory.
    pub fn current(&self) -> Arc<Inventory> {
        Arc::clone(&self.current)
    }

    /// True once an inventory was loaded or pulled.
    pub fn has_baseline(&self) -> bool {
        self.has_baseline
    }

    /// Takes a successfully pulled inventory: diffs it against the current one, makes it
    /// current, persists it, and returns the derived events (none for the first
    /// baseline). A persistence failure is logged and counted; the events stand.
    pub fn apply(&mut self, new: Inventory, now_ns: u64) -> Vec<LifecycleEvent> {
        self.apply_with_baseline(new, now_ns, &HashSet::new())
    }

    /// Like [`apply`](Self::apply), without `app_installed` events for the devices in
    /// `app_baseline` (devices whose app list is seen for the first time: their apps
    /// are their inventory, not installs).
    pub fn apply_with_baseline(
        &mut self,
        new: Inventory,
        now_ns: u64,
        app_baseline: &HashSet<String>,
    ) -> Vec<LifecycleEvent> {
        let events = if self.has_baseline {
            let mut ev = diff(&self.current, &new, now_ns, "inventory-diff");
            ev.retain(|e| {
                !(e.kind == EventKind::AppInstalled && app_baseline.contains(&e.device_id))
            });
            ev
        } else {
            Vec::new()
        };
        let changed = !self.has_baseline || self.current.fingerprint() != new.fingerprint();
        self.current = Arc::new(new);
        self.has_baseline = true;
        self.stats.last_success_ns.store(now_ns, Ordering::Relaxed);
        self.stats
            .events_emitted
            .fetch_add(events.len() as u64, Ordering::Relaxed);
        if let Err(e) = self.persist(changed, now_ns) {
            AdapterStats::inc(&self.stats.state_write_failures);
            eprintln!("nightjar: mdm {}: {e}", self.adapter);
        }
        events
    }

    /// Replaces (or adds, or with `None` removes) one device after a targeted pull and
    /// applies the result like a full pull.
    pub fn apply_device(
        &mut self,
        device_id: &str,
        entry: Option<(Device, Vec<InstalledApp>)>,
        now_ns: u64,
    ) -> Result<Vec<LifecycleEvent>, AdapterError> {
        let mut entries: Vec<(Device, Vec<InstalledApp>)> = self
            .current
            .devices()
            .iter()
            .filter(|d| d.id != device_id && entry.as_ref().is_none_or(|(n, _)| n.id != d.id))
            .map(|d| (d.clone(), self.current.apps(&d.id).to_vec()))
            .collect();
        entries.extend(entry);
        let inv = super::build_inventory(entries, self.adapter, &self.stats)?;
        Ok(self.apply(inv, now_ns))
    }

    /// Records a failed pull: counted, logged, the current inventory kept.
    pub fn fail(&self, err: &AdapterError, now_ns: u64) {
        self.stats
            .failure(self.adapter, &self.stats.pulls_failed, err, now_ns);
    }

    fn persist(&self, inventory_changed: bool, now_ns: u64) -> Result<(), AdapterError> {
        let (Some(inv_path), Some(cur_path)) = (self.inventory_path(), self.cursor_path()) else {
            return Ok(());
        };
        let io = |path: &Path, e: std::io::Error| AdapterError::State {
            path: path.display().to_string(),
            msg: e.to_string(),
        };
        if inventory_changed || !inv_path.exists() {
            write_atomic(&inv_path, inventory_to_json(&self.current).as_bytes())
                .map_err(|e| io(&inv_path, e))?;
        }
        let text = cursor_json(&self.current, now_ns);
        write_atomic(&cur_path, text.as_bytes()).map_err(|e| io(&cur_path, e))
    }

    /// The persisted cursor's last success time (ns), if any: where a restarted poller
    /// resumes its schedule.
    pub fn saved_last_success(&self) -> Option<u64> {
        parse_cursor(&std::fs::read_to_string(self.cursor_path()?).ok()?)
    }
}

/// The last success time (ns) of a cursor file's text; `None` if it is not a cursor
/// (the poller then starts its schedule afresh).
pub fn parse_cursor(text: &str) -> Option<u64> {
    let c: Cursor = serde_json::from_str(text).ok()?;
    crate::mdm::parse_rfc3339(&c.last_success)
}

/// A cursor file's text for an inventory pulled at `now_ns`.
pub fn cursor_json(inventory: &Inventory, now_ns: u64) -> String {
    let cursor = Cursor {
        last_success: format_rfc3339(now_ns),
        fingerprint: inventory.fingerprint().to_string(),
        devices: inventory.devices().len(),
    };
    serde_json::to_string(&cursor).unwrap_or_default() + "\n"
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mdm::Confidence;

    const INV: &str = r#"{"devices": [{"id": "d1", "os_version": "17.4",
        "apps": [{"bundle_id": "com.example.chat", "version": "2.1"},
                 {"bundle_id": "com.example.game", "version": "1.0"}]}]}"#;

    fn temp_dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("nj-state-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn restart_emits_nothing_and_removal_is_derived() {
        let dir = temp_dir("restart");
        let stats = Arc::new(AdapterStats::default());
        let inv = || parse_inventory(INV, "t").unwrap();
        let mut t = InventoryTracker::open("jamf", Some(&dir), Arc::clone(&stats));
        assert!(!t.has_baseline());
        assert!(
            t.apply(inv(), 1_000).is_empty(),
            "first pull is the baseline"
        );
        drop(t);
        let mut t = InventoryTracker::open("jamf", Some(&dir), Arc::clone(&stats));
        assert!(t.has_baseline());
        assert_eq!(t.saved_last_success(), Some(1_000));
        assert!(
            t.apply(inv(), 2_000).is_empty(),
            "restart with the same inventory"
        );
        let fewer = parse_inventory(
            &INV.replace(
                r#",
                 {"bundle_id": "com.example.game", "version": "1.0"}"#,
                "",
            ),
            "t",
        )
        .unwrap();
        let ev = t.apply(fewer, 3_000);
        assert_eq!(ev.len(), 1);
        assert_eq!(ev[0].kind, EventKind::AppRemoved);
        assert_eq!(ev[0].bundle_id.as_deref(), Some("com.example.game"));
        assert_eq!(ev[0].confidence, Confidence::Derived);
        assert_eq!(stats.snapshot(3_500).inventory_age_ns, Some(500));
        // A failure keeps the inventory.
        t.fail(
            &AdapterError::State {
                path: "x".into(),
                msg: "boom".into(),
            },
            4_000,
        );
        assert_eq!(t.current().apps("d1").len(), 1);
        assert_eq!(stats.snapshot(0).pulls_failed, 1);
        let names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 2, "no temporary files left: {names:?}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn corrupt_state_is_ignored_and_targeted_updates_apply() {
        let dir = temp_dir("corrupt");
        std::fs::write(dir.join("mdm-jamf-inventory.json"), "{not json").unwrap();
        let stats = Arc::new(AdapterStats::default());
        let mut t = InventoryTracker::open("jamf", Some(&dir), stats);
        assert!(!t.has_baseline());
        t.apply(parse_inventory(INV, "t").unwrap(), 1);
        let mut d = t.current().devices()[0].clone();
        d.os_version = Some("17.5".into());
        let ev = t.apply_device("d1", Some((d, vec![])), 2).unwrap();
        let kinds: Vec<_> = ev.iter().map(|e| e.kind).collect();
        assert_eq!(
            kinds,
            [
                EventKind::OsUpdated,
                EventKind::AppRemoved,
                EventKind::AppRemoved
            ]
        );
        let ev = t.apply_device("d1", None, 3).unwrap();
        assert_eq!(ev[0].kind, EventKind::Unenrolled);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
