//! Device identity: which managed device held a client address (or MAC) at a time.
//!
//! Owns the identity table and its inputs, in order of trust:
//! 1. the identity feed: NDJSON lines saying who holds an address from `ts` on, written
//!    by a VPN concentrator's connect/disconnect hook or RADIUS accounting (see
//!    docs/identity.md), read from a file ([`load_feed`]) or a Unix socket
//!    ([`FeedListener`]);
//! 2. DHCPv4 leases seen on the wire (ACK binds address ↔ MAC until the lease ends,
//!    RELEASE ends it), with the client's host name, vendor class, parameter request
//!    list and client identifier;
//! 3. the MDM inventory: a device's hardware Wi-Fi MAC;
//! 4. static mappings from the configuration.
//!
//! Invariants:
//! - Lookups are by (address or MAC, time): addresses are reassigned, so every binding
//!   has a validity interval `[from, until)` in packet time and a flow is resolved at
//!   its start time, whenever its record is written. Bindings of one key never overlap;
//!   a newer binding cuts the one it overlaps.
//! - Bounded: [`MAX_IP_KEYS`] addresses and [`MAX_MAC_KEYS`] MACs per source, each with
//!   at most [`MAX_BINDINGS_PER_KEY`] bindings; the oldest key (or binding) goes first
//!   and every drop is counted in [`IdentityCounters`].
//! - Feed input is untrusted: a bad line is an [`IdentityError`] naming the file and line
//!   when read from a file, and a counted anomaly (never a stop) on the socket.
//! - No clock is read: time comes with each input.

use crate::mdm::{parse_rfc3339, Inventory, MacAddr};
use crate::proto::dhcp::{DhcpMessageType, DhcpSummary};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::hash::Hash;
use std::io::{BufRead, BufReader, Read};
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Addresses remembered per source (feed, DHCP): a gateway or concentrator serving
/// tens of thousands of devices, each with a few addresses over a day.
pub const MAX_IP_KEYS: usize = 262_144;
/// MACs remembered per source (feed lines naming a MAC, DHCP client details).
pub const MAX_MAC_KEYS: usize = 262_144;
/// Bindings kept per address or MAC: enough to resolve flows that started a few
/// reassignments ago (flows are resolved at their end, up to `flow.active_timeout`
/// after they started); older bindings are dropped, counted.
pub const MAX_BINDINGS_PER_KEY: usize = 8;
/// Distinct unidentified clients remembered for the `unknown_devices` count; past it
/// new ones are counted in `unknown_untracked` instead.
pub const MAX_UNKNOWN_TRACKED: usize = 65_536;
/// Longest feed line: a line is about 200 bytes; longer is corrupt input.
pub const MAX_FEED_LINE_BYTES: usize = 4096;
/// Longest text value in a feed line (device id, udid, serial, user, source).
pub const MAX_FEED_FIELD_LEN: usize = 256;
/// Feed lines read from one file (replay keeps them all in memory, ~300 bytes each).
pub const MAX_FEED_FILE_LINES: usize = 1_000_000;
/// Feed socket connections served at once; more are refused (counted). Hooks connect,
/// write a line and close, so a few suffice.
pub const MAX_FEED_CONNECTIONS: usize = 32;
/// How long a feed socket connection may sit idle before it is closed.
pub const FEED_READ_TIMEOUT: Duration = Duration::from_secs(10);

const NS: u64 = 1_000_000_000;

/// Errors of the identity inputs: feed files and the feed socket.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}:{line}: {msg}")]
    Line {
        path: String,
        line: usize,
        msg: String,
    },
    #[error("{path}: more than {limit} lines")]
    TooManyLines { path: String, limit: usize },
}

// ---------------------------------------------------------------------------
// Feed lines
// ---------------------------------------------------------------------------

/// One identity feed line: from `ts_ns` on, `ip` is held by the device it names (or,
/// with `release`, by nobody).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeedEntry {
    pub ts_ns: u64,
    pub ip: IpAddr,
    pub mac: Option<[u8; 6]>,
    pub device_id: Option<String>,
    pub udid: Option<String>,
    pub serial: Option<String>,
    pub user: Option<String>,
    /// Who wrote the line ("strongswan", "openvpn", "radius", ...).
    pub source: String,
    /// `"event": "release"`: the address is given back at `ts`.
    pub release: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFeed {
    ts: serde_json::Value,
    ip: String,
    mac: Option<String>,
    device_id: Option<String>,
    udid: Option<String>,
    serial: Option<String>,
    user: Option<String>,
    source: String,
    event: Option<String>,
}

/// Parses a feed timestamp: RFC 3339 text, or seconds since the epoch (a number or
/// digits in a string, fractions allowed). The time must be below `u64::MAX`
/// nanoseconds (year 2554): that value means "until replaced", and a binding starting
/// there would hold for no time at all.
fn feed_ts(v: &serde_json::Value) -> Result<u64, String> {
    let secs = |f: f64| -> Result<u64, String> {
        let ns = (f * NS as f64).round();
        // `u64::MAX as f64` is 2^64: below it, the conversion is exact and under u64::MAX.
        if f.is_finite() && f >= 0.0 && ns < u64::MAX as f64 {
            Ok(ns as u64)
        } else {
            Err(format!("ts {f} is out of range"))
        }
    };
    let ns = match v {
        serde_json::Value::Number(n) => secs(n.as_f64().unwrap_or(f64::NAN)),
        serde_json::Value::String(s) => {
            if let Some(ns) = parse_rfc3339(s) {
                Ok(ns)
            } else if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
                secs(s.parse::<f64>().map_err(|_| format!("bad ts {s:?}"))?)
            } else {
                Err(format!(
                    "ts {s:?} is neither RFC 3339 nor seconds since the epoch"
                ))
            }
        }
        other => Err(format!("ts must be a string or a number, not {other}")),
    }?;
    if ns == u64::MAX {
        return Err("ts is out of range".into());
    }
    Ok(ns)
}

/// Parses one feed line (without its newline).
pub fn parse_feed_line(line: &str) -> Result<FeedEntry, String> {
    if line.len() > MAX_FEED_LINE_BYTES {
        return Err(format!("line longer than {MAX_FEED_LINE_BYTES} bytes"));
    }
    // serde quotes unknown keys as they are: escaped, so the error stays one line.
    let raw: RawFeed = serde_json::from_str(line)
        .map_err(|e| crate::proto::text::escape_name(e.to_string().as_bytes()))?;
    let ts_ns = feed_ts(&raw.ts)?;
    let ip: IpAddr = raw
        .ip
        .parse()
        .map_err(|_| format!("ip {:?} is not an IP address", raw.ip))?;
    let mac = match &raw.mac {
        None => None,
        Some(m) => Some(m.parse::<MacAddr>()?.0),
    };
    let text = |name: &str, v: Option<String>| -> Result<Option<String>, String> {
        match v {
            Some(s) if s.is_empty() => Err(format!("{name} is empty; omit it instead")),
            Some(s) if s.len() > MAX_FEED_FIELD_LEN => {
                Err(format!("{name} longer than {MAX_FEED_FIELD_LEN} bytes"))
            }
            v => Ok(v),
        }
    };
    let source = text("source", Some(raw.source))?.unwrap_or_default();
    let release = match raw.event.as_deref() {
        None | Some("assign") => false,
        Some("release") => true,
        Some(e) => return Err(format!("event {e:?} is not \"assign\" or \"release\"")),
    };
    Ok(FeedEntry {
        ts_ns,
        ip,
        mac,
        device_id: text("device_id", raw.device_id)?,
        udid: text("udid", raw.udid)?,
        serial: text("serial", raw.serial)?,
        user: text("user", raw.user)?,
        source,
        release,
    })
}

/// Reads a feed file: every line must parse (blank lines and `#` comments are skipped);
/// the first bad line is an error naming it. Entries come back sorted by time (stable).
pub fn load_feed(path: &Path) -> Result<Vec<FeedEntry>, IdentityError> {
    let name = path.display().to_string();
    let file = std::fs::File::open(path).map_err(|source| IdentityError::Io {
        path: name.clone(),
        source,
    })?;
    read_feed(file, &name)
}

/// Reads feed lines from any reader; `name` labels errors.
pub fn read_feed(input: impl Read, name: &str) -> Result<Vec<FeedEntry>, IdentityError> {
    let mut reader = BufReader::new(input);
    let mut out = Vec::new();
    let mut buf = Vec::new();
    let mut n = 0usize;
    loop {
        buf.clear();
        n += 1;
        let read = (&mut reader)
            .take(MAX_FEED_LINE_BYTES as u64 + 2)
            .read_until(b'\n', &mut buf)
            .map_err(|source| IdentityError::Io {
                path: name.to_string(),
                source,
            })?;
        if read == 0 {
            break;
        }
        let bad = |msg: String| IdentityError::Line {
            path: name.to_string(),
            line: n,
            msg,
        };
        if buf.last() != Some(&b'\n') && buf.len() > MAX_FEED_LINE_BYTES {
            return Err(bad(format!("line longer than {MAX_FEED_LINE_BYTES} bytes")));
        }
        let line = std::str::from_utf8(&buf)
            .map_err(|_| bad("not UTF-8".into()))?
            .trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if out.len() >= MAX_FEED_FILE_LINES {
            return Err(IdentityError::TooManyLines {
                path: name.to_string(),
                limit: MAX_FEED_FILE_LINES,
            });
        }
        out.push(parse_feed_line(line).map_err(bad)?);
    }
    out.sort_by_key(|e| e.ts_ns);
    Ok(out)
}

// ---------------------------------------------------------------------------
// Feed socket
// ---------------------------------------------------------------------------

/// Counters of the feed socket, shared with the thread that serves it.
#[derive(Debug, Default)]
pub struct FeedSocketStats {
    /// Lines parsed and handed on.
    pub accepted: AtomicU64,
    /// Lines that did not parse (bad JSON, bad field, too long, not UTF-8).
    pub bad_lines: AtomicU64,
    /// Good lines dropped because the consumer's queue was full.
    pub dropped_full: AtomicU64,
    /// Connections refused because [`MAX_FEED_CONNECTIONS`] were open.
    pub refused_connections: AtomicU64,
    /// Connections accepted.
    pub connections: AtomicU64,
}

/// A Unix-socket listener for feed lines: each connection sends NDJSON lines; good
/// ones go to the channel (never blocking: a full channel drops, counted), bad ones
/// are counted. Runs on its own threads; [`FeedListener::shutdown`] stops it.
pub struct FeedListener {
    path: PathBuf,
    stop: Arc<AtomicBool>,
    pub stats: Arc<FeedSocketStats>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FeedListener {
    /// Binds `path` (a stale socket file there is replaced) and starts serving.
    pub fn bind(
        path: &Path,
        tx: crossbeam_channel::Sender<FeedEntry>,
    ) -> Result<FeedListener, IdentityError> {
        use std::os::unix::fs::FileTypeExt;
        let io = |source| IdentityError::Io {
            path: path.display().to_string(),
            source,
        };
        if std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket()) {
            std::fs::remove_file(path).map_err(io)?;
        }
        let listener = std::os::unix::net::UnixListener::bind(path).map_err(io)?;
        let stop = Arc::new(AtomicBool::new(false));
        let stats = Arc::new(FeedSocketStats::default());
        let (stop2, stats2) = (stop.clone(), stats.clone());
        let thread = std::thread::Builder::new()
            .name("identity-feed".into())
            .spawn(move || serve(listener, tx, stop2, stats2))
            .map_err(io)?;
        Ok(FeedListener {
            path: path.to_path_buf(),
            stop,
            stats,
            thread: Some(thread),
        })
    }

    /// Stops accepting, waits for the accept thread, removes the socket file.
    /// Connections already open finish on their own (bounded by [`FEED_READ_TIMEOUT`]).
    pub fn shutdown(mut self) {
        self.stop_now();
    }

    fn stop_now(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the blocking accept.
        let _ = std::os::unix::net::UnixStream::connect(&self.path);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

impl Drop for FeedListener {
    fn drop(&mut self) {
        if self.thread.is_some() {
            self.stop_now();
        }
    }
}

fn serve(
    listener: std::os::unix::net::UnixListener,
    tx: crossbeam_channel::Sender<FeedEntry>,
    stop: Arc<AtomicBool>,
    stats: Arc<FeedSocketStats>,
) {
    let open = Arc::new(AtomicUsize::new(0));
    for conn in listener.incoming() {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        let Ok(conn) = conn else { continue };
        if open.load(Ordering::SeqCst) >= MAX_FEED_CONNECTIONS {
            stats.refused_connections.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        stats.connections.fetch_add(1, Ordering::Relaxed);
        open.fetch_add(1, Ordering::SeqCst);
        let (tx, stats2, open2) = (tx.clone(), stats.clone(), open.clone());
        let spawned = std::thread::Builder::new()
            .name("identity-feed-conn".into())
            .spawn(move || {
                let _ = conn.set_read_timeout(Some(FEED_READ_TIMEOUT));
                read_connection(conn, &tx, &stats2);
                open2.fetch_sub(1, Ordering::SeqCst);
            });
        if spawned.is_err() {
            open.fetch_sub(1, Ordering::SeqCst);
            stats.refused_connections.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Reads NDJSON lines from one connection until EOF, an error or the idle timeout:
/// good lines go to `tx` (a full queue drops them, counted), bad ones are counted.
/// Public for the fuzz harness, which hands it a byte slice.
pub fn read_connection(
    conn: impl Read,
    tx: &crossbeam_channel::Sender<FeedEntry>,
    stats: &FeedSocketStats,
) {
    let mut reader = BufReader::new(conn);
    let mut buf = Vec::with_capacity(256);
    loop {
        buf.clear();
        let read = match (&mut reader)
            .take(MAX_FEED_LINE_BYTES as u64 + 2)
            .read_until(b'\n', &mut buf)
        {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if buf.last() != Some(&b'\n') && read > MAX_FEED_LINE_BYTES {
            // Too long: count it once and skip to the end of that line.
            stats.bad_lines.fetch_add(1, Ordering::Relaxed);
            loop {
                buf.clear();
                match (&mut reader)
                    .take(MAX_FEED_LINE_BYTES as u64)
                    .read_until(b'\n', &mut buf)
                {
                    Ok(0) | Err(_) => return,
                    Ok(_) if buf.last() == Some(&b'\n') => break,
                    Ok(_) => {}
                }
            }
            continue;
        }
        let Ok(line) = std::str::from_utf8(&buf) else {
            stats.bad_lines.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match parse_feed_line(line) {
            Ok(e) => {
                // Counted before the send, so a reader of the channel sees it counted.
                stats.accepted.fetch_add(1, Ordering::SeqCst);
                match tx.try_send(e) {
                    Ok(()) => {}
                    Err(crossbeam_channel::TrySendError::Full(_)) => {
                        stats.accepted.fetch_sub(1, Ordering::SeqCst);
                        stats.dropped_full.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(crossbeam_channel::TrySendError::Disconnected(_)) => {
                        stats.accepted.fetch_sub(1, Ordering::SeqCst);
                        return;
                    }
                }
            }
            Err(_) => {
                stats.bad_lines.fetch_add(1, Ordering::SeqCst);
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Time-indexed bindings
// ---------------------------------------------------------------------------

#[derive(Clone, Debug)]
struct Binding<T> {
    from_ns: u64,
    /// Exclusive end; `u64::MAX` = until replaced.
    until_ns: u64,
    value: T,
}

/// The bindings of one key, sorted by `from_ns`, never overlapping.
#[derive(Debug)]
struct History<T> {
    bindings: Vec<Binding<T>>,
}

impl<T> Default for History<T> {
    fn default() -> Self {
        History {
            bindings: Vec::new(),
        }
    }
}

impl<T> History<T> {
    /// The binding valid at `t`.
    fn at(&self, t: u64) -> Option<&Binding<T>> {
        let i = self.bindings.partition_point(|b| b.from_ns <= t);
        let b = self.bindings.get(i.checked_sub(1)?)?;
        (t < b.until_ns).then_some(b)
    }

    /// Binds `value` over `[from, until)`, cutting the binding it overlaps. When the
    /// binding valid at `from` is `same` value, it is extended instead (a lease renewal).
    /// Returns the number of old bindings dropped to stay within the bound.
    fn assign(&mut self, from: u64, until: u64, value: T, same: impl Fn(&T) -> bool) -> u64 {
        let i = self.bindings.partition_point(|b| b.from_ns <= from);
        let next_from = self.bindings.get(i).map_or(u64::MAX, |b| b.from_ns);
        if let Some(prev) = i.checked_sub(1).and_then(|p| self.bindings.get_mut(p)) {
            if from < prev.until_ns && same(&prev.value) {
                prev.until_ns = until.max(prev.until_ns).min(next_from);
                return 0;
            }
            if prev.from_ns == from {
                prev.value = value;
                prev.until_ns = until.min(next_from);
                return 0;
            }
            prev.until_ns = prev.until_ns.min(from);
        }
        self.bindings.insert(
            i,
            Binding {
                from_ns: from,
                until_ns: until.min(next_from),
                value,
            },
        );
        let mut dropped = 0;
        while self.bindings.len() > MAX_BINDINGS_PER_KEY {
            self.bindings.remove(0);
            dropped += 1;
        }
        dropped
    }

    /// Ends the binding valid at `t` (if `matches` it) at `t`.
    fn end(&mut self, t: u64, matches: impl Fn(&T) -> bool) -> bool {
        let i = self.bindings.partition_point(|b| b.from_ns <= t);
        match i.checked_sub(1).and_then(|p| self.bindings.get_mut(p)) {
            Some(b) if t < b.until_ns && matches(&b.value) => {
                b.until_ns = t;
                true
            }
            _ => false,
        }
    }
}

/// Time-indexed bindings per key, at most `max_keys` keys (oldest key out first).
#[derive(Debug)]
struct Keyed<K, T> {
    map: HashMap<K, History<T>>,
    order: VecDeque<K>,
    max_keys: usize,
    evicted_keys: u64,
    dropped_bindings: u64,
}

impl<K: Hash + Eq + Copy, T> Keyed<K, T> {
    fn new(max_keys: usize) -> Self {
        Keyed {
            map: HashMap::new(),
            order: VecDeque::new(),
            max_keys,
            evicted_keys: 0,
            dropped_bindings: 0,
        }
    }

    fn history_mut(&mut self, k: K) -> &mut History<T> {
        if !self.map.contains_key(&k) {
            while self.map.len() >= self.max_keys {
                match self.order.pop_front() {
                    Some(old) => {
                        self.map.remove(&old);
                        self.evicted_keys += 1;
                    }
                    None => break,
                }
            }
            self.order.push_back(k);
        }
        self.map.entry(k).or_default()
    }

    fn assign(&mut self, k: K, from: u64, until: u64, value: T, same: impl Fn(&T) -> bool) {
        let dropped = self.history_mut(k).assign(from, until, value, same);
        self.dropped_bindings += dropped;
    }

    fn end(&mut self, k: K, t: u64, matches: impl Fn(&T) -> bool) -> bool {
        self.map.get_mut(&k).is_some_and(|h| h.end(t, matches))
    }

    fn at(&self, k: &K, t: u64) -> Option<&T> {
        self.map.get(k)?.at(t).map(|b| &b.value)
    }

    fn len(&self) -> usize {
        self.map.len()
    }
}

// ---------------------------------------------------------------------------
// The identity table
// ---------------------------------------------------------------------------

/// What a feed line claims about an address or a MAC.
#[derive(Debug)]
struct Claim {
    mac: Option<[u8; 6]>,
    device_id: Option<String>,
    udid: Option<String>,
    serial: Option<String>,
    user: Option<String>,
    source: String,
}

/// What DHCP told about a client: from its own messages and the server's ACK.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DhcpClient {
    pub hostname: Option<String>,
    pub vendor_class: Option<String>,
    pub parameter_request_list: Vec<u8>,
    pub client_id: Option<String>,
}

#[derive(Debug)]
struct Lease {
    mac: [u8; 6],
    client: Arc<DhcpClient>,
}

/// A static mapping from the configuration: an address and/or a MAC → a device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StaticIdentity {
    pub ip: Option<IpAddr>,
    pub mac: Option<[u8; 6]>,
    pub device_id: String,
}

/// Which source gave a flow its identity.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    Feed,
    Dhcp,
    Inventory,
    Static,
    None,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Feed => "feed",
            Method::Dhcp => "dhcp",
            Method::Inventory => "inventory",
            Method::Static => "static",
            Method::None => "none",
        }
    }
}

/// How sure the attribution to `device.id` is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Confidence {
    /// Stated for this address at this time by an authority (the feed), or the flow's own
    /// frames carry the device's hardware Wi-Fi MAC (directly or through its lease).
    High,
    /// One inference step: a lease's MAC not seen on the flow's frames, a static mapping.
    Medium,
    /// No device.
    None,
}

impl Confidence {
    pub fn as_str(self) -> &'static str {
        match self {
            Confidence::High => "high",
            Confidence::Medium => "medium",
            Confidence::None => "none",
        }
    }
}

/// The identity of a flow's client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    pub device_id: Option<String>,
    pub method: Method,
    pub confidence: Confidence,
    /// What matched, in order: `ip`, `mac` (the flow's source MAC), `lease_mac` (the MAC
    /// of the DHCP lease), then what named the device: `device_id`, `udid`, `serial`,
    /// `wifi_mac` (inventory hardware MAC), `static`.
    pub matched_on: Vec<&'static str>,
    /// The device's MAC as the identity sources know it (lease or feed), when known.
    pub mac: Option<[u8; 6]>,
    /// The MAC is locally administered and matches no inventory Wi-Fi MAC.
    pub private_mac: bool,
    pub user: Option<String>,
    /// The feed line's `source`.
    pub feed_source: Option<String>,
    pub dhcp: Option<Arc<DhcpClient>>,
}

impl Identity {
    fn unknown() -> Identity {
        Identity {
            device_id: None,
            method: Method::None,
            confidence: Confidence::None,
            matched_on: Vec::new(),
            mac: None,
            private_mac: false,
            user: None,
            feed_source: None,
            dhcp: None,
        }
    }
}

/// Locally administered (bit 1 of the first octet) unicast MAC: a private,
/// randomized address such as iOS's per-network Wi-Fi address.
pub fn is_private_mac(mac: &[u8; 6]) -> bool {
    mac[0] & 0x02 != 0 && mac[0] & 0x01 == 0
}

/// Counters of the identity table, for the stats record.
#[derive(Clone, Debug, Default)]
pub struct IdentityCounters {
    pub feed_lines: u64,
    pub feed_releases: u64,
    pub dhcp_leases: u64,
    pub dhcp_releases: u64,
    pub dhcp_ignored: u64,
    pub flows_by_method: BTreeMap<&'static str, u64>,
    pub unknown_flows: u64,
    pub unknown_untracked: u64,
    pub private_mac_flows: u64,
}

/// The identity table. See the module documentation.
pub struct IdentityTable {
    inventory: Option<Arc<Inventory>>,
    feed_ip: Keyed<IpAddr, Arc<Claim>>,
    feed_mac: Keyed<[u8; 6], Arc<Claim>>,
    leases: Keyed<Ipv4Addr, Lease>,
    dhcp_clients: HashMap<[u8; 6], Arc<DhcpClient>>,
    dhcp_client_order: VecDeque<[u8; 6]>,
    dhcp_clients_evicted: u64,
    static_ip: HashMap<IpAddr, String>,
    static_mac: HashMap<[u8; 6], String>,
    unknown: HashSet<UnknownKey>,
    pub counters: IdentityCounters,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum UnknownKey {
    Mac([u8; 6]),
    Ip(IpAddr),
}

impl IdentityTable {
    pub fn new(inventory: Option<Arc<Inventory>>, statics: &[StaticIdentity]) -> IdentityTable {
        let mut t = IdentityTable {
            inventory,
            feed_ip: Keyed::new(MAX_IP_KEYS),
            feed_mac: Keyed::new(MAX_MAC_KEYS),
            leases: Keyed::new(MAX_IP_KEYS),
            dhcp_clients: HashMap::new(),
            dhcp_client_order: VecDeque::new(),
            dhcp_clients_evicted: 0,
            static_ip: HashMap::new(),
            static_mac: HashMap::new(),
            unknown: HashSet::new(),
            counters: IdentityCounters::default(),
        };
        for s in statics {
            if let Some(ip) = s.ip {
                t.static_ip.insert(ip, s.device_id.clone());
            }
            if let Some(mac) = s.mac {
                t.static_mac.insert(mac, s.device_id.clone());
            }
        }
        t
    }

    /// Replaces the MDM inventory whose hardware Wi-Fi MACs, UDIDs and serials
    /// resolve devices (a reload or a new MDM pull); bindings from other sources stay.
    pub fn set_inventory(&mut self, inventory: Option<Arc<Inventory>>) {
        self.inventory = inventory;
    }

    /// Applies one feed line.
    pub fn apply_feed(&mut self, e: &FeedEntry) {
        self.counters.feed_lines += 1;
        if e.release {
            self.counters.feed_releases += 1;
            self.feed_ip.end(e.ip, e.ts_ns, |_| true);
            return;
        }
        let claim = Arc::new(Claim {
            mac: e.mac,
            device_id: e.device_id.clone(),
            udid: e.udid.clone(),
            serial: e.serial.clone(),
            user: e.user.clone(),
            source: e.source.clone(),
        });
        let names_device = e.device_id.is_some() || e.udid.is_some() || e.serial.is_some();
        if let (Some(mac), true) = (e.mac, names_device) {
            self.feed_mac
                .assign(mac, e.ts_ns, u64::MAX, claim.clone(), |_| false);
        }
        self.feed_ip
            .assign(e.ip, e.ts_ns, u64::MAX, claim, |_| false);
    }

    /// Applies one DHCPv4 message seen at `ts_ns` (`frame_mac`: the frame's source MAC).
    pub fn apply_dhcp(&mut self, ts_ns: u64, frame_mac: Option<[u8; 6]>, m: &DhcpSummary) {
        let chaddr = m
            .client_mac
            .as_deref()
            .and_then(|s| s.parse::<MacAddr>().ok())
            .map(|m| m.0);
        if m.op == 1 {
            let Some(mac) = chaddr.or(frame_mac) else {
                self.counters.dhcp_ignored += 1;
                return;
            };
            if m.message_type == Some(DhcpMessageType::Release) {
                if !m.ciaddr.is_unspecified() && self.leases.end(m.ciaddr, ts_ns, |l| l.mac == mac)
                {
                    self.counters.dhcp_releases += 1;
                }
                return;
            }
            let info = DhcpClient {
                hostname: m.hostname.clone(),
                vendor_class: m.vendor_class.clone(),
                parameter_request_list: m.parameter_request_list.clone(),
                client_id: m.client_id.clone(),
            };
            self.remember_client(mac, info);
            return;
        }
        if m.op != 2 || m.message_type != Some(DhcpMessageType::Ack) {
            return;
        }
        let Some(mac) = chaddr else {
            self.counters.dhcp_ignored += 1;
            return;
        };
        let (ip, until) = if !m.yiaddr.is_unspecified() {
            let until = match m.lease_time {
                None | Some(u32::MAX) => u64::MAX,
                Some(s) => ts_ns.saturating_add(u64::from(s) * NS),
            };
            (m.yiaddr, until)
        } else if !m.ciaddr.is_unspecified() {
            (m.ciaddr, u64::MAX) // ACK to an INFORM: the client configured its address itself
        } else {
            self.counters.dhcp_ignored += 1;
            return;
        };
        let mut client = self
            .dhcp_clients
            .get(&mac)
            .map(|c| (**c).clone())
            .unwrap_or_default();
        if client.hostname.is_none() {
            client.hostname = m.hostname.clone();
        }
        self.counters.dhcp_leases += 1;
        let lease = Lease {
            mac,
            client: Arc::new(client),
        };
        self.leases
            .assign(ip, ts_ns, until, lease, |l| l.mac == mac);
    }

    fn remember_client(&mut self, mac: [u8; 6], info: DhcpClient) {
        if !self.dhcp_clients.contains_key(&mac) {
            while self.dhcp_clients.len() >= MAX_MAC_KEYS {
                match self.dhcp_client_order.pop_front() {
                    Some(old) => {
                        self.dhcp_clients.remove(&old);
                        self.dhcp_clients_evicted += 1;
                    }
                    None => break,
                }
            }
            self.dhcp_client_order.push_back(mac);
        }
        self.dhcp_clients.insert(mac, Arc::new(info));
    }

    /// The device behind a MAC, through the lower-trust sources (feed by MAC,
    /// inventory hardware MAC, static MAC), with what matched.
    fn device_by_mac(&self, mac: &[u8; 6], at: u64) -> Option<(String, &'static str, bool)> {
        if let Some(c) = self.feed_mac.at(mac, at) {
            if let Some((id, how)) = self.claim_device(c) {
                return Some((id, how, false));
            }
        }
        if let Some(d) = self
            .inventory
            .as_ref()
            .and_then(|inv| inv.by_wifi_mac(MacAddr(*mac)))
        {
            return Some((d.id.clone(), "wifi_mac", true));
        }
        self.static_mac
            .get(mac)
            .map(|id| (id.clone(), "static", false))
    }

    /// The device a feed claim names: its `device_id`, else the inventory device with its
    /// udid, serial or hardware Wi-Fi MAC.
    fn claim_device(&self, c: &Claim) -> Option<(String, &'static str)> {
        if let Some(id) = &c.device_id {
            return Some((id.clone(), "device_id"));
        }
        let inv = self.inventory.as_ref()?;
        if let Some(d) = c.udid.as_deref().and_then(|u| inv.by_udid(u)) {
            return Some((d.id.clone(), "udid"));
        }
        if let Some(d) = c.serial.as_deref().and_then(|s| inv.by_serial(s)) {
            return Some((d.id.clone(), "serial"));
        }
        let d = c.mac.and_then(|m| inv.by_wifi_mac(MacAddr(m)))?;
        Some((d.id.clone(), "wifi_mac"))
    }

    fn in_inventory(&self, mac: &[u8; 6]) -> bool {
        self.inventory
            .as_ref()
            .is_some_and(|inv| inv.by_wifi_mac(MacAddr(*mac)).is_some())
    }

    /// Resolves the client of a flow: its address, the source MAC of its frames (if
    /// any), at the flow's start time. Sources are tried in order of trust; the first
    /// that names a device wins, else the most trusted one that matched at all.
    pub fn resolve(&self, ip: IpAddr, frame_mac: Option<[u8; 6]>, at: u64) -> Identity {
        let mut best: Option<Identity> = None;
        let keep = |id: Identity, best: &mut Option<Identity>| {
            if best.is_none() {
                *best = Some(id);
            }
        };

        // 1. The feed, by address, then by the frame's MAC.
        let feed_hits = [
            (self.feed_ip.at(&ip, at), "ip"),
            (frame_mac.and_then(|m| self.feed_mac.at(&m, at)), "mac"),
        ];
        for (claim, key) in feed_hits {
            let Some(c) = claim else { continue };
            let mut id = Identity::unknown();
            id.method = Method::Feed;
            id.matched_on.push(key);
            id.mac = c.mac.or(frame_mac);
            id.user = c.user.clone();
            id.feed_source = Some(c.source.clone());
            if let Some((dev, how)) = self.claim_device(c) {
                id.device_id = Some(dev);
                id.confidence = Confidence::High;
                id.matched_on.push(how);
                return self.finish(id);
            }
            keep(id, &mut best);
        }

        // 2. A DHCP lease of the address.
        if let IpAddr::V4(v4) = ip {
            if let Some(lease) = self.leases.at(&v4, at) {
                let mut id = Identity::unknown();
                id.method = Method::Dhcp;
                id.matched_on.push("ip");
                id.mac = Some(lease.mac);
                id.dhcp = Some(lease.client.clone());
                let on_frames = frame_mac == Some(lease.mac);
                if on_frames {
                    id.matched_on.push("mac");
                }
                if let Some((dev, how, _)) = self.device_by_mac(&lease.mac, at) {
                    id.matched_on.push("lease_mac");
                    id.matched_on.push(how);
                    id.device_id = Some(dev);
                    id.confidence = if on_frames && how != "static" {
                        Confidence::High
                    } else {
                        Confidence::Medium
                    };
                    return self.finish(id);
                }
                keep(id, &mut best);
            }
        }

        // 3. The frame's MAC in the inventory (or a static MAC mapping).
        if let Some(mac) = frame_mac {
            if let Some((dev, how, _)) = self.device_by_mac(&mac, at) {
                let mut id = Identity::unknown();
                id.method = if how == "static" {
                    Method::Static
                } else {
                    Method::Inventory
                };
                id.matched_on = vec!["mac", how];
                id.mac = Some(mac);
                id.device_id = Some(dev);
                id.confidence = if how == "static" {
                    Confidence::Medium
                } else {
                    Confidence::High
                };
                if let Some(b) = &best {
                    id.dhcp.clone_from(&b.dhcp);
                    id.user.clone_from(&b.user);
                }
                return self.finish(id);
            }
        }

        // 4. A static mapping of the address.
        if let Some(dev) = self.static_ip.get(&ip) {
            let mut id = Identity::unknown();
            id.method = Method::Static;
            id.matched_on = vec!["ip", "static"];
            id.device_id = Some(dev.clone());
            id.confidence = Confidence::Medium;
            id.mac = best.as_ref().and_then(|b| b.mac).or(frame_mac);
            if let Some(b) = &best {
                id.dhcp.clone_from(&b.dhcp);
                id.user.clone_from(&b.user);
            }
            return self.finish(id);
        }

        let mut id = best.unwrap_or_else(Identity::unknown);
        if id.mac.is_none() {
            id.mac = frame_mac;
        }
        self.finish(id)
    }

    fn finish(&self, mut id: Identity) -> Identity {
        id.private_mac = id
            .mac
            .is_some_and(|m| is_private_mac(&m) && !self.in_inventory(&m));
        id
    }

    /// Counts a resolved flow (method, unknown devices, private MACs).
    pub fn count(&mut self, id: &Identity, ip: IpAddr) {
        let method = if id.device_id.is_some() {
            id.method.as_str()
        } else {
            "none"
        };
        *self.counters.flows_by_method.entry(method).or_default() += 1;
        if id.private_mac {
            self.counters.private_mac_flows += 1;
        }
        if id.device_id.is_none() {
            self.counters.unknown_flows += 1;
            let key = id.mac.map_or(UnknownKey::Ip(ip), UnknownKey::Mac);
            if !self.unknown.contains(&key) {
                if self.unknown.len() < MAX_UNKNOWN_TRACKED {
                    self.unknown.insert(key);
                } else {
                    self.counters.unknown_untracked += 1;
                }
            }
        }
    }

    /// Table sizes and drops, for the stats record: (name, value).
    pub fn sizes(&self) -> Vec<(&'static str, u64)> {
        vec![
            ("feed_addresses", self.feed_ip.len() as u64),
            ("feed_macs", self.feed_mac.len() as u64),
            ("dhcp_addresses", self.leases.len() as u64),
            ("dhcp_clients", self.dhcp_clients.len() as u64),
            (
                "static_mappings",
                (self.static_ip.len() + self.static_mac.len()) as u64,
            ),
            (
                "inventory_devices",
                self.inventory.as_ref().map_or(0, |i| i.devices().len()) as u64,
            ),
            (
                "evicted_keys",
                self.feed_ip.evicted_keys
                    + self.feed_mac.evicted_keys
                    + self.leases.evicted_keys
                    + self.dhcp_clients_evicted,
            ),
            (
                "dropped_bindings",
                self.feed_ip.dropped_bindings
                    + self.feed_mac.dropped_bindings
                    + self.leases.dropped_bindings,
            ),
            ("unknown_devices", self.unknown.len() as u64),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mdm::parse_inventory;

    const S: u64 = NS;
    const MAC_A: [u8; 6] = [0x3c, 0x06, 0x30, 0xaa, 0xbb, 0x01];
    const MAC_P: [u8; 6] = [0x6a, 0x1f, 0x22, 0x33, 0x44, 0x55];

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn inventory() -> Arc<Inventory> {
        let text = r#"{"devices":[
            {"id":"dev-a","udid":"UDID-A","serial":"SER-A","wifi_mac":"3c:06:30:aa:bb:01"},
            {"id":"dev-b","udid":"UDID-B","serial":"SER-B"}]}"#;
        Arc::new(parse_inventory(text, "test").unwrap())
    }

    fn ack(ip: &str, mac: &str, lease: Option<u32>) -> DhcpSummary {
        DhcpSummary {
            op: 2,
            htype: 1,
            xid: 1,
            broadcast: false,
            ciaddr: Ipv4Addr::UNSPECIFIED,
            yiaddr: ip.parse().unwrap(),
            siaddr: Ipv4Addr::UNSPECIFIED,
            giaddr: Ipv4Addr::UNSPECIFIED,
            client_mac: Some(mac.into()),
            message_type: Some(DhcpMessageType::Ack),
            requested_ip: None,
            server_id: None,
            lease_time: lease,
            hostname: None,
            vendor_class: None,
            parameter_request_list: vec![],
            client_id: None,
            fqdn: None,
            anomalies: vec![],
        }
    }

    fn request(mac: &str, hostname: &str) -> DhcpSummary {
        let mut m = ack("0.0.0.0", mac, None);
        m.op = 1;
        m.message_type = Some(DhcpMessageType::Request);
        m.hostname = Some(hostname.into());
        m.vendor_class = Some("Apple".into());
        m.parameter_request_list = vec![1, 121, 3, 6, 15, 119, 252];
        m.client_id = Some("013c0630aabb01".into());
        m
    }

    #[test]
    fn feed_lines_parse_and_fail_clearly() {
        let e = parse_feed_line(
            r#"{"ts":"2024-05-01T10:00:00Z","ip":"10.8.0.6","udid":"U","user":"alice","source":"openvpn"}"#,
        )
        .unwrap();
        assert_eq!(e.ip, ip("10.8.0.6"));
        assert_eq!(e.ts_ns, 1_714_557_600 * S);
        assert_eq!(e.user.as_deref(), Some("alice"));
        let e = parse_feed_line(
            r#"{"ts":1714557600.5,"ip":"fd00::6","source":"wg","event":"release"}"#,
        )
        .unwrap();
        assert!(e.release);
        assert_eq!(e.ts_ns, 1_714_557_600 * S + S / 2);
        for (bad, want) in [
            (r#"{"ts":1,"ip":"x","source":"s"}"#, "not an IP address"),
            (r#"{"ts":1,"ip":"10.0.0.1"}"#, "source"),
            (r#"{"ts":true,"ip":"10.0.0.1","source":"s"}"#, "ts must be"),
            (r#"{"ts":1,"ip":"10.0.0.1","source":"s","mac":"zz"}"#, "MAC"),
            (
                r#"{"ts":1,"ip":"10.0.0.1","source":"s","extra":1}"#,
                "unknown field",
            ),
            (
                r#"{"ts":1,"ip":"10.0.0.1","source":"s","device_id":""}"#,
                "empty",
            ),
            (
                r#"{"ts":1,"ip":"10.0.0.1","source":"s","event":"up"}"#,
                "event",
            ),
            ("not json", "expected"),
            // Past u64 nanoseconds: once silently the largest time, a binding of no length.
            (
                r#"{"ts":5e10,"ip":"10.0.0.1","source":"s"}"#,
                "out of range",
            ),
            (
                r#"{"ts":"2554-07-21T23:34:33.709551615Z","ip":"10.0.0.1","source":"s"}"#,
                "out of range",
            ),
            (r#"{"ts":-1,"ip":"10.0.0.1","source":"s"}"#, "out of range"),
        ] {
            let e = parse_feed_line(bad).unwrap_err();
            assert!(e.contains(want), "{bad}: {e}");
        }
        let last = parse_feed_line(
            r#"{"ts":"2554-07-21T23:34:33.709551614Z","ip":"10.0.0.1","source":"s"}"#,
        )
        .unwrap();
        assert_eq!(last.ts_ns, u64::MAX - 1);
        // An unknown key is quoted escaped: the error (logged on a reload) stays one line.
        let e = parse_feed_line(r#"{"ts":1,"ip":"10.0.0.1","source":"s","a\nb":1}"#).unwrap_err();
        assert!(e.contains(r"unknown field `a\x0ab`"), "{e}");
    }

    #[test]
    fn feed_file_error_names_the_line() {
        let text = "# comment\n{\"ts\":1,\"ip\":\"10.0.0.1\",\"source\":\"s\"}\n\n{\"ts\":2,\"ip\":\"nope\",\"source\":\"s\"}\n";
        let e = read_feed(text.as_bytes(), "feed.ndjson")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("feed.ndjson:4: "), "{e}");
        let long = format!("{}\n", "x".repeat(MAX_FEED_LINE_BYTES + 10));
        let e = read_feed(long.as_bytes(), "f").unwrap_err().to_string();
        assert!(e.contains("f:1: line longer"), "{e}");
        let ok = "{\"ts\":5,\"ip\":\"10.0.0.1\",\"source\":\"s\"}\n{\"ts\":2,\"ip\":\"10.0.0.1\",\"source\":\"s\"}";
        let v = read_feed(ok.as_bytes(), "f").unwrap();
        assert_eq!(v.iter().map(|e| e.ts_ns / S).collect::<Vec<_>>(), [2, 5]);
    }

    #[test]
    fn history_is_time_indexed_and_bounded() {
        let mut h: History<u32> = History::default();
        h.assign(10, u64::MAX, 1, |_| false);
        h.assign(20, u64::MAX, 2, |_| false);
        h.assign(15, u64::MAX, 3, |_| false); // out of order: cuts 1, ends at 20
        assert_eq!(h.at(9).map(|b| b.value), None);
        assert_eq!(h.at(12).map(|b| b.value), Some(1));
        assert_eq!(h.at(15).map(|b| b.value), Some(3));
        assert_eq!(h.at(19).map(|b| b.value), Some(3));
        assert_eq!(h.at(25).map(|b| b.value), Some(2));
        assert!(h.end(30, |_| true));
        assert_eq!(h.at(30).map(|b| b.value), None);
        let mut dropped = 0;
        for i in 0..20u64 {
            dropped += h.assign(100 + i, u64::MAX, 9, |_| false);
        }
        assert_eq!(h.bindings.len(), MAX_BINDINGS_PER_KEY);
        assert_eq!(dropped, 20 + 3 - MAX_BINDINGS_PER_KEY as u64);
    }

    #[test]
    fn keyed_evicts_oldest_key_counted() {
        let mut k: Keyed<u32, u32> = Keyed::new(3);
        for i in 0..5 {
            k.assign(i, 0, u64::MAX, i, |_| false);
        }
        assert_eq!(k.len(), 3);
        assert_eq!(k.evicted_keys, 2);
        assert!(k.at(&0, 1).is_none());
        assert_eq!(k.at(&4, 1), Some(&4));
    }

    #[test]
    fn dhcp_lease_then_inventory_by_time() {
        let mut t = IdentityTable::new(Some(inventory()), &[]);
        t.apply_dhcp(
            9 * S,
            Some(MAC_A),
            &request("3c:06:30:aa:bb:01", "Janes-iPad"),
        );
        t.apply_dhcp(
            10 * S,
            None,
            &ack("10.0.0.5", "3c:06:30:aa:bb:01", Some(60)),
        );
        let before = t.resolve(ip("10.0.0.5"), None, 9 * S);
        assert_eq!(before.device_id, None);
        let id = t.resolve(ip("10.0.0.5"), Some(MAC_A), 11 * S);
        assert_eq!(id.device_id.as_deref(), Some("dev-a"));
        assert_eq!(id.method, Method::Dhcp);
        assert_eq!(id.confidence, Confidence::High);
        assert_eq!(id.matched_on, ["ip", "mac", "lease_mac", "wifi_mac"]);
        let dhcp = id.dhcp.unwrap();
        assert_eq!(dhcp.hostname.as_deref(), Some("Janes-iPad"));
        assert_eq!(dhcp.parameter_request_list, [1, 121, 3, 6, 15, 119, 252]);
        // Routed: no MAC on the frames, still the lease's device, one step removed.
        let routed = t.resolve(ip("10.0.0.5"), None, 11 * S);
        assert_eq!(routed.confidence, Confidence::Medium);
        // The lease ended after 60 s.
        assert_eq!(t.resolve(ip("10.0.0.5"), None, 71 * S).device_id, None);
        // A renewal extends it.
        t.apply_dhcp(
            40 * S,
            None,
            &ack("10.0.0.5", "3c:06:30:aa:bb:01", Some(60)),
        );
        assert!(t.resolve(ip("10.0.0.5"), None, 71 * S).device_id.is_some());
        // A release ends it.
        let mut rel = request("3c:06:30:aa:bb:01", "Janes-iPad");
        rel.message_type = Some(DhcpMessageType::Release);
        rel.ciaddr = "10.0.0.5".parse().unwrap();
        t.apply_dhcp(80 * S, None, &rel);
        assert!(t.resolve(ip("10.0.0.5"), None, 79 * S).device_id.is_some());
        assert_eq!(t.resolve(ip("10.0.0.5"), None, 81 * S).device_id, None);
        assert_eq!(t.counters.dhcp_releases, 1);
    }

    #[test]
    fn feed_wins_from_its_ts_on() {
        let mut t = IdentityTable::new(Some(inventory()), &[]);
        t.apply_dhcp(10 * S, None, &ack("10.0.0.5", "3c:06:30:aa:bb:01", None));
        let e = parse_feed_line(
            r#"{"ts":20,"ip":"10.0.0.5","serial":"SER-B","user":"bob","source":"radius"}"#,
        )
        .unwrap();
        t.apply_feed(&e);
        assert_eq!(
            t.resolve(ip("10.0.0.5"), None, 15 * S).device_id.as_deref(),
            Some("dev-a")
        );
        let id = t.resolve(ip("10.0.0.5"), None, 25 * S);
        assert_eq!(id.device_id.as_deref(), Some("dev-b"));
        assert_eq!(id.method, Method::Feed);
        assert_eq!(id.matched_on, ["ip", "serial"]);
        assert_eq!(id.user.as_deref(), Some("bob"));
        assert_eq!(id.feed_source.as_deref(), Some("radius"));
        // Released: back to the lower-trust source (the lease).
        let rel =
            parse_feed_line(r#"{"ts":30,"ip":"10.0.0.5","source":"radius","event":"release"}"#)
                .unwrap();
        t.apply_feed(&rel);
        assert_eq!(
            t.resolve(ip("10.0.0.5"), None, 35 * S).device_id.as_deref(),
            Some("dev-a")
        );
    }

    #[test]
    fn private_mac_static_and_unknown() {
        let statics = [StaticIdentity {
            ip: Some(ip("10.0.0.9")),
            mac: None,
            device_id: "printer-ish".into(),
        }];
        let mut t = IdentityTable::new(Some(inventory()), &statics);
        assert!(is_private_mac(&MAC_P) && !is_private_mac(&MAC_A));
        let id = t.resolve(ip("10.0.0.7"), Some(MAC_P), S);
        assert_eq!(id.device_id, None);
        assert!(id.private_mac);
        assert_eq!(id.method, Method::None);
        assert_eq!(id.confidence, Confidence::None);
        t.count(&id, ip("10.0.0.7"));
        t.count(&id, ip("10.0.0.7"));
        assert_eq!(t.counters.unknown_flows, 2);
        assert_eq!(t.unknown.len(), 1);
        let id = t.resolve(ip("10.0.0.9"), Some(MAC_P), S);
        assert_eq!(id.device_id.as_deref(), Some("printer-ish"));
        assert_eq!(id.method, Method::Static);
        assert!(id.private_mac, "a private MAC stays reported as such");
        let inv = t.resolve(ip("192.0.2.1"), Some(MAC_A), S);
        assert_eq!(inv.method, Method::Inventory);
        assert_eq!(inv.matched_on, ["mac", "wifi_mac"]);
        assert!(!inv.private_mac);
    }

    #[test]
    fn socket_listener_feeds_lines_and_counts_bad_ones() {
        use std::io::Write;
        let dir = std::env::temp_dir().join(format!("nightjar-feed-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("identity.sock");
        let (tx, rx) = crossbeam_channel::bounded(16);
        let listener = FeedListener::bind(&path, tx).unwrap();
        {
            let mut c = std::os::unix::net::UnixStream::connect(&path).unwrap();
            writeln!(
                c,
                r#"{{"ts":5,"ip":"10.8.0.2","device_id":"dev-a","source":"strongswan"}}"#
            )
            .unwrap();
            writeln!(c, "garbage").unwrap();
            writeln!(c, "{}", "y".repeat(MAX_FEED_LINE_BYTES * 2)).unwrap();
            writeln!(
                c,
                r#"{{"ts":6,"ip":"10.8.0.2","source":"strongswan","event":"release"}}"#
            )
            .unwrap();
        }
        let a = rx.recv_timeout(Duration::from_secs(10)).unwrap();
        let b = rx.recv_timeout(Duration::from_secs(10)).unwrap();
        assert_eq!(a.device_id.as_deref(), Some("dev-a"));
        assert!(b.release);
        let stats = listener.stats.clone();
        listener.shutdown();
        assert_eq!(stats.accepted.load(Ordering::SeqCst), 2);
        assert_eq!(stats.bad_lines.load(Ordering::SeqCst), 2);
        assert!(!path.exists(), "socket file removed");
        let _ = std::fs::remove_dir_all(&dir);
    }

    proptest::proptest! {
        #[test]
        fn feed_parsing_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..600)) {
            let _ = read_feed(&bytes[..], "fuzz");
            if let Ok(text) = std::str::from_utf8(&bytes) {
                let _ = parse_feed_line(text);
            }
        }

        #[test]
        fn bindings_stay_sorted_disjoint_and_bounded(
            ops in proptest::collection::vec((0u64..100, 1u64..50, 0u32..4, proptest::bool::ANY), 0..40)
        ) {
            let mut h: History<u32> = History::default();
            for (from, len, v, end) in ops {
                if end {
                    h.end(from, |_| true);
                } else {
                    h.assign(from, from + len, v, |x| *x == v);
                }
                proptest::prop_assert!(h.bindings.len() <= MAX_BINDINGS_PER_KEY);
                for w in h.bindings.windows(2) {
                    proptest::prop_assert!(w[0].from_ns < w[1].from_ns);
                    proptest::prop_assert!(w[0].until_ns <= w[1].from_ns);
                }
                for b in &h.bindings {
                    proptest::prop_assert!(b.from_ns <= b.until_ns);
                }
            }
        }
    }
}
