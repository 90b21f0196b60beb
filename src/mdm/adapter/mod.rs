//! MDM adapters: pull inventories from vendor APIs (Jamf Pro, Microsoft Intune via
//! Graph), receive webhooks (Jamf Pro, MicroMDM/NanoMDM), and turn inventory changes
//! into derived lifecycle events.
//!
//! Owns: the HTTP client with bounded retries and response sizes ([`http`]), OAuth
//! client-credential tokens, the vendor mappings into the vendor-neutral model, the
//! webhook receiver, the persisted last good inventory ([`InventoryTracker`]) and the
//! adapters' counters ([`AdapterStats`]).
//!
//! Invariants:
//! - Secrets live in [`Secret`], whose `Debug` and `Display` print `[redacted]`; no error
//!   message, log line or counter carries one.
//! - Every vendor byte is untrusted: responses are size-bounded, parsed per device (a bad
//!   device is skipped and counted, never the whole page), and a failed pull leaves the
//!   last good inventory in place — a failing MDM never empties the inventory.
//! - Device ids follow one rule across vendors ([`device_id`]): the UDID, else the
//!   serial number, else `<vendor>-<the vendor's id>`.
//! - Problems are logged as one line on stderr (`nightjar: mdm <adapter>: ...`), like the
//!   binary's other errors, and counted.

pub mod http;
pub mod intune;
pub mod jamf;
pub mod micromdm;
pub mod run;
pub mod state;
pub mod webhook;

pub use http::{Http, HttpOptions, RetryPolicy, Token, TokenSource};
pub use state::{write_atomic, InventoryTracker};

use super::{Device, InstalledApp, Inventory, MacAddr, MdmError};
use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// Largest secret file read (64 KiB): client secrets are under 100 bytes; a larger file
/// is the wrong file.
pub const MAX_SECRET_BYTES: u64 = 64 * 1024;

/// Most devices accepted from one pull (1 000 000): larger than any single MDM tenant;
/// beyond it the server is misbehaving and the pull fails (the last good data stays).
pub const MAX_DEVICES: usize = 1_000_000;

/// Most apps accepted for one device (10 000): an iPhone holds a few hundred; the rest
/// are dropped and counted.
pub const MAX_APPS_PER_DEVICE: usize = 10_000;

/// Every error of the adapters. Each renders as one line naming the adapter and, for
/// HTTP, the request; none carries a secret.
#[derive(Debug, thiserror::Error)]
pub enum AdapterError {
    /// A secret file could not be used.
    #[error("secret {path}: {msg}")]
    Secret {
        /// The file that was read.
        path: String,
        /// What is wrong (never the content).
        msg: String,
    },
    /// No response: connection refused, timeout, TLS failure.
    #[error("{adapter}: {method} {url}: {msg}")]
    Transport {
        /// Adapter name.
        adapter: &'static str,
        /// HTTP method.
        method: &'static str,
        /// Request URL.
        url: String,
        /// What failed.
        msg: String,
    },
    /// An HTTP status that is not success.
    #[error("{adapter}: {method} {url}: HTTP {status}{detail}")]
    Status {
        /// Adapter name.
        adapter: &'static str,
        /// HTTP method.
        method: &'static str,
        /// Request URL.
        url: String,
        /// The status code.
        status: u16,
        /// A short, sanitized excerpt of the body (may be empty).
        detail: String,
    },
    /// The response body exceeds the configured bound.
    #[error("{adapter}: {method} {url}: response larger than {limit} bytes")]
    TooLarge {
        /// Adapter name.
        adapter: &'static str,
        /// HTTP method.
        method: &'static str,
        /// Request URL.
        url: String,
        /// The bound.
        limit: usize,
    },
    /// A response that does not have the documented shape.
    #[error("{adapter}: {url}: malformed response: {msg}")]
    Malformed {
        /// Adapter name.
        adapter: &'static str,
        /// Request URL.
        url: String,
        /// What is wrong.
        msg: String,
    },
    /// Persisted state could not be read or written.
    #[error("state {path}: {msg}")]
    State {
        /// The state file.
        path: String,
        /// What failed.
        msg: String,
    },
    /// A model error (inventory validation).
    #[error(transparent)]
    Model(#[from] MdmError),
}

/// A secret (client secret, access token, webhook secret). `Debug` and `Display` never
/// show it; [`Secret::expose`] is the only way to the text.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(s: String) -> Secret {
        Secret(s)
    }

    /// The secret text, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// Where a secret file is: an absolute path as is; a relative path inside
/// `$CREDENTIALS_DIRECTORY` when systemd set it (`LoadCredential=jamf:/etc/...` and
/// `client_secret_file = "jamf"`), else relative to the working directory.
pub fn secret_path(path: &Path) -> PathBuf {
    if path.is_relative() {
        if let Some(dir) = std::env::var_os("CREDENTIALS_DIRECTORY") {
            return Path::new(&dir).join(path);
        }
    }
    path.to_path_buf()
}

/// Reads a secret file (see [`secret_path`]): at most [`MAX_SECRET_BYTES`], UTF-8,
/// surrounding whitespace (the trailing newline editors add) removed, not empty.
pub fn read_secret(path: &Path) -> Result<Secret, AdapterError> {
    use std::io::Read;
    let full = secret_path(path);
    let err = |msg: String| AdapterError::Secret {
        path: full.display().to_string(),
        msg,
    };
    let file = std::fs::File::open(&full).map_err(|e| err(e.to_string()))?;
    let mut bytes = Vec::new();
    file.take(MAX_SECRET_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| err(e.to_string()))?;
    if bytes.len() as u64 > MAX_SECRET_BYTES {
        return Err(err(format!("larger than {MAX_SECRET_BYTES} bytes")));
    }
    let text = String::from_utf8(bytes).map_err(|_| err("not UTF-8".into()))?;
    let text = text.trim();
    if text.is_empty() {
        return Err(err("is empty".into()));
    }
    Ok(Secret(text.to_string()))
}

/// Compares two byte strings in time that depends only on their lengths.
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// nightjar's id for a device reported by `vendor`: the UDID, else the serial number,
/// else `<vendor>-<vendor id>`. `None` if none of them is known.
pub fn device_id(
    udid: Option<&str>,
    serial: Option<&str>,
    vendor: &str,
    vendor_id: Option<&str>,
) -> Option<String> {
    udid.map(str::to_string)
        .or_else(|| serial.map(str::to_string))
        .or_else(|| vendor_id.map(|v| format!("{vendor}-{v}")))
}

/// `Some(trimmed)` for a non-empty string, else `None` (vendors send `""` for unknown).
pub(crate) fn non_empty(s: Option<&str>) -> Option<String> {
    s.map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

/// Parses a MAC the way vendors send it; empty means unknown. A malformed MAC is dropped
/// (the device is kept) and counted.
pub(crate) fn vendor_mac(s: Option<&str>, stats: &AdapterStats) -> Option<MacAddr> {
    let s = s.map(str::trim).filter(|s| !s.is_empty())?;
    match s.parse::<MacAddr>() {
        Ok(m) => Some(m),
        Err(_) => {
            AdapterStats::inc(&stats.fields_dropped);
            None
        }
    }
}

/// Builds an inventory from vendor data without failing on the vendor's mistakes: a
/// device whose id, UDID, serial or MAC repeats an earlier one is skipped, an app with an
/// invalid or repeated bundle id is skipped, and both are counted in `stats`. Fails only
/// beyond [`MAX_DEVICES`].
pub fn build_inventory(
    entries: Vec<(Device, Vec<InstalledApp>)>,
    origin: &str,
    stats: &AdapterStats,
) -> Result<Inventory, AdapterError> {
    if entries.len() > MAX_DEVICES {
        return Err(MdmError::Invalid {
            origin: origin.into(),
            at: "devices".into(),
            msg: format!("more than {MAX_DEVICES} devices"),
        }
        .into());
    }
    let mut ids = HashSet::new();
    let mut udids = HashSet::new();
    let mut serials = HashSet::new();
    let mut macs = HashSet::new();
    let mut kept = Vec::with_capacity(entries.len());
    for (device, apps) in entries {
        let clash = !ids.insert(device.id.clone())
            || device
                .udid
                .as_ref()
                .is_some_and(|u| !udids.insert(u.clone()))
            || device
                .serial
                .as_ref()
                .is_some_and(|s| !serials.insert(s.clone()))
            || device.wifi_mac.is_some_and(|m| !macs.insert(m));
        if clash || device.id.is_empty() {
            AdapterStats::inc(&stats.devices_skipped);
            continue;
        }
        let mut seen = HashSet::new();
        let mut good = Vec::with_capacity(apps.len().min(MAX_APPS_PER_DEVICE));
        for app in apps {
            let ok = good.len() < MAX_APPS_PER_DEVICE
                && super::model::validate_bundle_id(&app.bundle_id).is_ok()
                && seen.insert(app.bundle_id.clone());
            if ok {
                good.push(app);
            } else {
                AdapterStats::inc(&stats.apps_skipped);
            }
        }
        kept.push((device, good));
    }
    Ok(Inventory::new(kept, origin)?)
}

/// Merges inventories from several adapters into one. A device id present in several
/// keeps the first one's fields, gains the others' `mdm_ids` and groups, and the union of
/// apps (the first listing of a bundle id wins). Conflicts the result cannot hold (a
/// UDID, serial or MAC on two different ids) drop the later device, counted in `stats`.
pub fn merge(parts: &[&Inventory], stats: &AdapterStats) -> Result<Inventory, AdapterError> {
    let mut order: Vec<String> = Vec::new();
    let mut by_id: BTreeMap<String, (Device, Vec<InstalledApp>)> = BTreeMap::new();
    for inv in parts {
        for d in inv.devices() {
            let apps = inv.apps(&d.id);
            match by_id.get_mut(&d.id) {
                None => {
                    order.push(d.id.clone());
                    by_id.insert(d.id.clone(), (d.clone(), apps.to_vec()));
                }
                Some((have, have_apps)) => {
                    for (k, v) in &d.mdm_ids {
                        have.mdm_ids.entry(k.clone()).or_insert_with(|| v.clone());
                    }
                    have.groups.extend(d.groups.iter().cloned());
                    for a in apps {
                        if !have_apps.iter().any(|h| h.bundle_id == a.bundle_id) {
                            have_apps.push(a.clone());
                        }
                    }
                }
            }
        }
    }
    let entries = order
        .into_iter()
        .filter_map(|id| by_id.remove(&id))
        .collect();
    build_inventory(entries, "merged inventory", stats)
}

/// The adapters' counters. Shared (`Arc`) between an adapter's tasks; read with
/// [`AdapterStats::snapshot`]. The daemon exports them as metrics.
#[derive(Debug, Default)]
pub struct AdapterStats {
    /// Full pulls that produced an inventory.
    pub pulls_ok: AtomicU64,
    /// Full pulls that failed (the last good inventory was kept).
    pub pulls_failed: AtomicU64,
    /// Targeted one-device pulls (webhook-triggered) that succeeded.
    pub device_pulls_ok: AtomicU64,
    /// Targeted one-device pulls that failed.
    pub device_pulls_failed: AtomicU64,
    /// HTTP requests sent (retries included).
    pub requests: AtomicU64,
    /// Requests repeated after a 429, a 5xx or a transport error.
    pub retries: AtomicU64,
    /// HTTP 429 responses.
    pub throttled: AtomicU64,
    /// HTTP 5xx responses.
    pub server_errors: AtomicU64,
    /// Connection failures and timeouts.
    pub transport_errors: AtomicU64,
    /// Responses refused: too large, not JSON, wrong shape.
    pub bad_responses: AtomicU64,
    /// Access tokens fetched.
    pub token_fetches: AtomicU64,
    /// API calls answered 401 with a token believed valid (the token was refetched).
    pub token_rejected: AtomicU64,
    /// Devices skipped: no usable id, malformed, or clashing with another device.
    pub devices_skipped: AtomicU64,
    /// Apps skipped: invalid or repeated bundle id, or beyond the per-device bound.
    pub apps_skipped: AtomicU64,
    /// Malformed values dropped while the device was kept (a bad MAC).
    pub fields_dropped: AtomicU64,
    /// Webhooks accepted.
    pub webhooks_accepted: AtomicU64,
    /// Webhooks refused for missing or wrong credentials (401).
    pub webhooks_unauthorized: AtomicU64,
    /// Webhooks refused for their size (413).
    pub webhooks_too_large: AtomicU64,
    /// Webhooks refused by the rate limit (429).
    pub webhooks_rate_limited: AtomicU64,
    /// Webhooks refused because the processing queue was full (503).
    pub webhooks_queue_full: AtomicU64,
    /// Webhooks whose body did not parse (400).
    pub webhooks_malformed: AtomicU64,
    /// Webhooks well-formed but of an event nightjar does not use.
    pub webhooks_ignored: AtomicU64,
    /// Lifecycle events emitted (derived and reported).
    pub events_emitted: AtomicU64,
    /// State files that could not be written (the in-memory inventory is still current).
    pub state_write_failures: AtomicU64,
    /// Packet-independent wall time (ns since the epoch) of the last successful full pull; 0 = never.
    pub last_success_ns: AtomicU64,
    /// Wall time of the last failed pull; 0 = never.
    pub last_failure_ns: AtomicU64,
    /// The last error, one line.
    pub last_error: Mutex<Option<String>>,
}

/// A copy of [`AdapterStats`] at one time, with the inventory's age.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct StatsSnapshot {
    /// See [`AdapterStats`] for each counter.
    pub pulls_ok: u64,
    pub pulls_failed: u64,
    pub device_pulls_ok: u64,
    pub device_pulls_failed: u64,
    pub requests: u64,
    pub retries: u64,
    pub throttled: u64,
    pub server_errors: u64,
    pub transport_errors: u64,
    pub bad_responses: u64,
    pub token_fetches: u64,
    pub token_rejected: u64,
    pub devices_skipped: u64,
    pub apps_skipped: u64,
    pub fields_dropped: u64,
    pub webhooks_accepted: u64,
    pub webhooks_unauthorized: u64,
    pub webhooks_too_large: u64,
    pub webhooks_rate_limited: u64,
    pub webhooks_queue_full: u64,
    pub webhooks_malformed: u64,
    pub webhooks_ignored: u64,
    pub events_emitted: u64,
    pub state_write_failures: u64,
    /// Age of the inventory (now − last successful pull), ns; `None` before the first.
    pub inventory_age_ns: Option<u64>,
    /// The last error, one line.
    pub last_error: Option<String>,
}

impl AdapterStats {
    /// Adds one to a counter.
    pub fn inc(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// Records a failure: counts it in `counter`, remembers it as the last error and
    /// logs one line `nightjar: mdm <adapter>: <error>`.
    pub fn failure(&self, adapter: &str, counter: &AtomicU64, err: &AdapterError, now_ns: u64) {
        Self::inc(counter);
        self.last_failure_ns.store(now_ns, Ordering::Relaxed);
        let line = err.to_string();
        eprintln!("nightjar: mdm {adapter}: {line}; keeping the last good inventory");
        if let Ok(mut last) = self.last_error.lock() {
            *last = Some(line);
        }
    }

    /// A consistent-enough copy of the counters (each read atomically).
    pub fn snapshot(&self, now_ns: u64) -> StatsSnapshot {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let last = g(&self.last_success_ns);
        StatsSnapshot {
            pulls_ok: g(&self.pulls_ok),
            pulls_failed: g(&self.pulls_failed),
            device_pulls_ok: g(&self.device_pulls_ok),
            device_pulls_failed: g(&self.device_pulls_failed),
            requests: g(&self.requests),
            retries: g(&self.retries),
            throttled: g(&self.throttled),
            server_errors: g(&self.server_errors),
            transport_errors: g(&self.transport_errors),
            bad_responses: g(&self.bad_responses),
            token_fetches: g(&self.token_fetches),
            token_rejected: g(&self.token_rejected),
            devices_skipped: g(&self.devices_skipped),
            apps_skipped: g(&self.apps_skipped),
            fields_dropped: g(&self.fields_dropped),
            webhooks_accepted: g(&self.webhooks_accepted),
            webhooks_unauthorized: g(&self.webhooks_unauthorized),
            webhooks_too_large: g(&self.webhooks_too_large),
            webhooks_rate_limited: g(&self.webhooks_rate_limited),
            webhooks_queue_full: g(&self.webhooks_queue_full),
            webhooks_malformed: g(&self.webhooks_malformed),
            webhooks_ignored: g(&self.webhooks_ignored),
            events_emitted: g(&self.events_emitted),
            state_write_failures: g(&self.state_write_failures),
            inventory_age_ns: (last != 0).then(|| now_ns.saturating_sub(last)),
            last_error: self.last_error.lock().ok().and_then(|l| l.clone()),
        }
    }
}

/// Wall-clock time in ns since the epoch: the adapters' clock (control plane only; the
/// data plane runs on packet time).
pub fn wall_clock_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn device(id: &str) -> Device {
        Device::with_id(id)
    }

    fn app(b: &str) -> InstalledApp {
        InstalledApp {
            device_id: String::new(),
            bundle_id: b.into(),
            version: None,
            managed: false,
            first_seen: None,
            last_seen: None,
        }
    }

    #[test]
    fn secrets_never_print() {
        let s = Secret::new("hunter2".into());
        assert_eq!(format!("{s} {s:?}"), "[redacted] Secret([redacted])");
        assert_eq!(s.expose(), "hunter2");
    }

    #[test]
    fn secret_files() {
        let dir = std::env::temp_dir().join(format!("nj-secret-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("s");
        std::fs::write(&p, "  abc\n").unwrap();
        assert_eq!(read_secret(&p).unwrap().expose(), "abc");
        std::fs::write(&p, "\n").unwrap();
        let e = read_secret(&p).unwrap_err().to_string();
        assert!(e.ends_with("/s: is empty"), "{e}");
        std::fs::write(&p, vec![b'a'; MAX_SECRET_BYTES as usize + 1]).unwrap();
        assert!(read_secret(&p).unwrap_err().to_string().contains("larger"));
        assert!(read_secret(&dir.join("missing")).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn ids_and_tolerant_build() {
        assert_eq!(
            device_id(Some("U"), Some("S"), "jamf", Some("1")).unwrap(),
            "U"
        );
        assert_eq!(device_id(None, Some("S"), "jamf", Some("1")).unwrap(), "S");
        assert_eq!(device_id(None, None, "jamf", Some("1")).unwrap(), "jamf-1");
        assert_eq!(device_id(None, None, "jamf", None), None);
        let stats = AdapterStats::default();
        let mut a = device("a");
        a.serial = Some("S".into());
        let mut b = device("b");
        b.serial = Some("S".into());
        let inv = build_inventory(
            vec![
                (a, vec![app("x.y"), app("x.y"), app("bad id")]),
                (b, vec![]),
                (device("a"), vec![]),
            ],
            "t",
            &stats,
        )
        .unwrap();
        assert_eq!(inv.devices().len(), 1);
        assert_eq!(inv.apps("a").len(), 1);
        let s = stats.snapshot(0);
        assert_eq!((s.devices_skipped, s.apps_skipped), (2, 2));
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }

    #[test]
    fn merge_unions_ids_and_apps() {
        let stats = AdapterStats::default();
        let mut d1 = device("U1");
        d1.mdm_ids.insert("jamf".into(), "1".into());
        let mut d2 = device("U1");
        d2.mdm_ids.insert("intune".into(), "g".into());
        let j = Inventory::new(vec![(d1, vec![app("a.a")])], "j").unwrap();
        let i = Inventory::new(
            vec![(d2, vec![app("a.a"), app("b.b")]), (device("U2"), vec![])],
            "i",
        )
        .unwrap();
        let m = merge(&[&j, &i], &stats).unwrap();
        assert_eq!(m.devices().len(), 2);
        assert_eq!(m.device("U1").unwrap().mdm_ids.len(), 2);
        assert_eq!(m.apps("U1").len(), 2);
    }
}
