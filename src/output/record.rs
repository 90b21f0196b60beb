//! Record building: the documented JSON schema (docs/schema.md).
//!
//! Records are nested JSON objects whose paths follow the Elastic Common
//! Schema where ECS has a field, and live under `nightjar.*` otherwise.
//! Builders set fields by their dotted path with [`Record::put`], so the code
//! reads like the schema. Values that are absent are left out, never null.
//!
//! A record is kept flat while it is built: its dotted paths in one byte
//! buffer and a list of (path, value) entries, so building one costs a few
//! allocations instead of one map node and key string per field (and the two
//! buffers of a dropped record are kept for the next one, [`RECORD_POOL`]). Paths are stored with
//! [`SEP`] in place of each dot, so that plain byte order of the stored paths
//! is the component-by-component order a map sorted by key at every level
//! gives (a key never holds a byte below 2). [`Record::write_json`] sorts the
//! paths that way and writes the nested JSON straight to the output buffer; [`Record::into_value`] builds the same object as a [`Value`] for
//! the consumers that want one. Invariant: both give the same JSON text for
//! any record in which no path is both a field and the parent of a field
//! (the record builders never do that; if one did, the parent object wins in
//! `write_json` and the later put wins in `into_value`).

use crate::capture::Timestamp;
use serde::Serialize;
use serde_json::{Map, Value};
use std::cell::RefCell;

/// What a path's dots are stored as: below every byte a key holds, so that
/// "a" < "a.b" < "a_b" < "ab" in byte order, as components order them.
const SEP: u8 = 1;

/// How many dropped records' buffers each thread keeps for the next records
/// (a writer builds and drops one record at a time; a few cover interleaving).
pub const RECORD_POOL: usize = 4;

/// Type of a record's entries: (start, end) of the path in `paths`, and the value.
type Fields = Vec<(u32, u32, Value)>;

/// A path component as text (always valid: paths are split at ASCII bytes).
fn text(part: &[u8]) -> &str {
    std::str::from_utf8(part).unwrap_or_default()
}

thread_local! {
    /// Buffers of dropped records, reused by [`Record::new`] (at most [`RECORD_POOL`]).
    static POOL: RefCell<Vec<(Vec<u8>, Fields)>> = const { RefCell::new(Vec::new()) };
}

/// A record under construction.
#[derive(Default)]
pub struct Record {
    /// Every path put so far, one after the other, dots stored as [`SEP`]
    /// (UTF-8: put from `&str` with one ASCII byte replaced by another).
    paths: Vec<u8>,
    /// (start, end) of the path in `paths`, and its value, in put order.
    fields: Fields,
}

impl Drop for Record {
    fn drop(&mut self) {
        if self.paths.capacity() == 0 {
            return;
        }
        let mut paths = std::mem::take(&mut self.paths);
        let mut fields = std::mem::take(&mut self.fields);
        paths.clear();
        fields.clear();
        // A thread being torn down has no pool: the buffers are freed instead.
        let _ = POOL.try_with(|pool| {
            if let Ok(mut pool) = pool.try_borrow_mut() {
                if pool.len() < RECORD_POOL {
                    pool.push((paths, fields));
                }
            }
        });
    }
}

/// True when `s` needs no escaping in JSON (checked 16 bytes at a time, without
/// stopping early inside a chunk, so the check is vectorised).
fn plain(s: &[u8]) -> bool {
    s.chunks(16).all(|c| {
        c.iter()
            .fold(true, |ok, &b| ok & (b >= 0x20) & (b != b'"') & (b != b'\\'))
    })
}

/// Writes `n` in decimal.
fn write_u64(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(crate::proto::text::decimal(n, &mut [0u8; 20]));
}

/// Writes `s` as a JSON string.
fn write_str(out: &mut Vec<u8>, s: &str) {
    write_key(out, s.as_bytes());
}

/// Writes UTF-8 text `s` (a path component or a string) as a JSON string.
fn write_key(out: &mut Vec<u8>, s: &[u8]) {
    if plain(s) {
        out.reserve(s.len() + 2);
        out.push(b'"');
        out.extend_from_slice(s);
        out.push(b'"');
    } else {
        // Writing into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *out, text(s));
    }
}

/// Writes `v` as JSON, as `serde_json` writes it compactly (object keys in the
/// map's order, sorted; floating-point numbers through `serde_json`).
fn write_value(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::String(s) => write_str(out, s),
        Value::Number(n) => {
            if let Some(u) = n.as_u64() {
                write_u64(out, u);
            } else if let Some(i) = n.as_i64() {
                // Not a u64, so negative.
                out.push(b'-');
                write_u64(out, i.unsigned_abs());
            } else {
                // Writing into a Vec cannot fail.
                let _ = serde_json::to_writer(&mut *out, n);
            }
        }
        Value::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        Value::Null => out.extend_from_slice(b"null"),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_value(out, item);
            }
            out.push(b']');
        }
        Value::Object(map) => {
            out.push(b'{');
            for (i, (k, item)) in map.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_str(out, k);
                out.push(b':');
                write_value(out, item);
            }
            out.push(b'}');
        }
    }
}

impl Record {
    pub fn new(dataset: &str, ts_ns: u64) -> Record {
        let (paths, fields) = POOL
            .try_with(|pool| pool.try_borrow_mut().ok().and_then(|mut p| p.pop()))
            .ok()
            .flatten()
            .unwrap_or_else(|| (Vec::with_capacity(2048), Vec::with_capacity(64)));
        let mut r = Record { paths, fields };
        r.put("@timestamp", ts(ts_ns));
        r.put("event.dataset", dataset);
        r
    }

    /// Sets the field at a dotted path (a later put on the same path replaces it).
    pub fn put(&mut self, path: &str, value: impl Into<Value>) {
        let start = self.paths.len();
        self.paths
            .extend(path.bytes().map(|b| if b == b'.' { SEP } else { b }));
        // Record paths are short literals; a record past 4 GiB of paths is not built.
        let span = (
            u32::try_from(start).unwrap_or(u32::MAX),
            u32::try_from(self.paths.len()).unwrap_or(u32::MAX),
        );
        self.fields.push((span.0, span.1, value.into()));
    }

    /// Sets the field if there is a value.
    pub fn put_opt<V: Into<Value>>(&mut self, path: &str, value: Option<V>) {
        if let Some(v) = value {
            self.put(path, v);
        }
    }

    /// Sets the field to a serialized value (anything `Serialize`).
    pub fn put_ser<T: Serialize + ?Sized>(&mut self, path: &str, value: &T) {
        if let Ok(v) = serde_json::to_value(value) {
            self.put(path, v);
        }
    }

    fn path(&self, start: u32, end: u32) -> &[u8] {
        self.paths
            .get(start as usize..end as usize)
            .unwrap_or_default()
    }

    /// The value last put at exactly this path.
    pub fn get(&self, path: &str) -> Option<&Value> {
        let stored: Vec<u8> = path
            .bytes()
            .map(|b| if b == b'.' { SEP } else { b })
            .collect();
        self.fields
            .iter()
            .rev()
            .find(|(s, e, _)| self.path(*s, *e) == stored)
            .map(|(_, _, v)| v)
    }

    /// Appends the record as one JSON object (no newline) to `out`.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        // Among equal paths the last put stays last. The first 16 bytes of a
        // path, zero-padded, order paths as the paths do (no path holds a zero
        // byte) and decide most comparisons without a call to compare strings.
        let mut keyed: Vec<(u128, &[u8], u32)> = self
            .fields
            .iter()
            .enumerate()
            .map(|(i, (s, e, _))| {
                let path = self.path(*s, *e);
                let mut head = [0u8; 16];
                let n = path.len().min(16);
                head[..n].copy_from_slice(&path[..n]);
                (u128::from_be_bytes(head), path, i as u32)
            })
            .collect();
        keyed.sort_unstable();
        // The objects currently open, outermost first (path components).
        let mut open: Vec<&[u8]> = Vec::with_capacity(8);
        let mut first = true;
        out.push(b'{');
        for (i, &(_, path, ix)) in keyed.iter().enumerate() {
            let value = &self.fields[ix as usize].2;
            if let Some(&(_, next_path, _)) = keyed.get(i + 1) {
                // Replaced by a later put, or a parent of the next field.
                if next_path == path
                    || next_path
                        .strip_prefix(path)
                        .is_some_and(|rest| rest.first() == Some(&SEP))
                {
                    continue;
                }
            }
            let (parents, leaf) = match path.iter().rposition(|&b| b == SEP) {
                Some(i) => (Some(&path[..i]), &path[i + 1..]),
                None => (None, path),
            };
            let mut depth = 0;
            let mut rest = parents.map(|p| p.split(|&b| b == SEP));
            let mut pending: Option<&[u8]> = None;
            if let Some(parts) = rest.as_mut() {
                for part in parts.by_ref() {
                    if open.get(depth) == Some(&part) {
                        depth += 1;
                    } else {
                        pending = Some(part);
                        break;
                    }
                }
            }
            while open.len() > depth {
                open.pop();
                out.push(b'}');
                first = false;
            }
            let new_parts = pending.into_iter().chain(rest.into_iter().flatten());
            for part in new_parts {
                if !first {
                    out.push(b',');
                }
                write_key(out, part);
                out.extend_from_slice(b":{");
                open.push(part);
                first = true;
            }
            if !first {
                out.push(b',');
            }
            write_key(out, leaf);
            out.push(b':');
            write_value(out, value);
            first = false;
        }
        for _ in 0..open.len() {
            out.push(b'}');
        }
        out.push(b'}');
    }

    /// The record as a JSON object.
    pub fn into_value(self) -> Value {
        self.to_value()
    }

    /// The record as a JSON object (copied).
    pub fn to_value(&self) -> Value {
        let mut root = Map::new();
        for (s, e, value) in self.fields.iter() {
            let path = self.path(*s, *e);
            let mut map = &mut root;
            let mut parts = path.split(|&b| b == SEP).map(text).peekable();
            while let Some(part) = parts.next() {
                if parts.peek().is_none() {
                    map.insert(part.to_string(), value.clone());
                    break;
                }
                let entry = map
                    .entry(part.to_string())
                    .or_insert_with(|| Value::Object(Map::new()));
                if !entry.is_object() {
                    *entry = Value::Object(Map::new());
                }
                let Value::Object(next) = entry else {
                    break;
                };
                map = next;
            }
        }
        Value::Object(root)
    }
}

/// RFC 3339 with nanoseconds, UTC.
pub fn ts(ns: u64) -> String {
    Timestamp(ns).to_rfc3339()
}

/// A MAC address in the ECS form: upper-case hex pairs joined by hyphens.
pub fn mac(m: &[u8; 6]) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut s = String::with_capacity(17);
    for (i, &b) in m.iter().enumerate() {
        if i > 0 {
            s.push('-');
        }
        s.push(char::from(HEX[usize::from(b >> 4)]));
        s.push(char::from(HEX[usize::from(b & 15)]));
    }
    s
}

/// `0x` and four lower-case hex digits.
pub fn hex16(v: u16) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(6);
    s.push_str("0x");
    for shift in [12, 8, 4, 0] {
        s.push(char::from(HEX[usize::from((v >> shift) & 15)]));
    }
    s
}

/// ECS `network.transport` names for IP protocol numbers.
pub fn transport_name(proto: u8) -> String {
    match proto {
        1 => "icmp".into(),
        6 => "tcp".into(),
        17 => "udp".into(),
        47 => "gre".into(),
        50 => "esp".into(),
        58 => "ipv6-icmp".into(),
        132 => "sctp".into(),
        n => n.to_string(),
    }
}

/// TCP flags as letters in the order Suricata and Zeek print them.
pub fn tcp_flags(f: u8) -> String {
    const NAMES: [(u8, char); 8] = [
        (0x01, 'F'),
        (0x02, 'S'),
        (0x04, 'R'),
        (0x08, 'P'),
        (0x10, 'A'),
        (0x20, 'U'),
        (0x40, 'E'),
        (0x80, 'C'),
    ];
    NAMES
        .iter()
        .filter(|(bit, _)| f & bit != 0)
        .map(|(_, c)| *c)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_builds_nested_objects() {
        let mut r = Record::new("nightjar.flow", 0);
        r.put("source.ip", "10.0.0.1");
        r.put("source.port", 4000);
        r.put_opt::<u64>("source.mac", None);
        let v = r.into_value();
        assert_eq!(v["source"]["ip"], "10.0.0.1");
        assert_eq!(v["source"]["port"], 4000);
        assert!(v["source"].get("mac").is_none());
        assert_eq!(v["@timestamp"], "1970-01-01T00:00:00.000000000Z");
    }

    fn as_text(r: Record) -> (String, String) {
        let mut out = Vec::new();
        r.write_json(&mut out);
        let direct = String::from_utf8(out).expect("utf-8");
        let via_value = serde_json::to_string(&r.into_value()).expect("serializes");
        (direct, via_value)
    }

    #[test]
    fn write_json_is_the_sorted_nested_object() {
        let mut r = Record::new("nightjar.flow", 5);
        r.put("source.port", 4000);
        r.put("source.ip", "10.0.0.1");
        r.put("a_b", "x\"y\n");
        r.put("a.b.c", 1);
        r.put("a.bc", 2);
        r.put("a.b_", 3);
        r.put("event.type", serde_json::json!(["connection", "end"]));
        r.put(
            "nightjar.flow.profile",
            serde_json::json!({"z": 1, "a": [1, 2]}),
        );
        r.put("source.port", 4001);
        r.put("zz", Value::Null);
        r.put("a.b.d.e", 1.5);
        let (direct, via_value) = as_text(r);
        assert_eq!(direct, via_value);
        assert!(direct.contains(r#""source":{"ip":"10.0.0.1","port":4001}"#));
    }

    #[test]
    fn an_empty_record_is_an_empty_object() {
        let (direct, via_value) = as_text(Record::default());
        assert_eq!((direct.as_str(), via_value.as_str()), ("{}", "{}"));
    }

    proptest::proptest! {
        #[test]
        fn write_json_agrees_with_into_value(
            fields in proptest::collection::vec(
                (proptest::collection::vec("[a-c_@0-]{1,2}", 1..4), 0u64..1000),
                0..20,
            )
        ) {
            let mut r = Record::default();
            let mut paths: Vec<String> = Vec::new();
            for (parts, v) in &fields {
                let p = parts.join(".");
                // No path may be a field and the parent of another (module invariant).
                let clash = paths.iter().any(|q| {
                    q.strip_prefix(p.as_str()).is_some_and(|r| r.starts_with('.'))
                        || p.strip_prefix(q.as_str()).is_some_and(|r| r.starts_with('.'))
                });
                if !clash {
                    r.put(&p, *v);
                    paths.push(p);
                }
            }
            let (direct, via_value) = as_text(r);
            proptest::prop_assert_eq!(direct, via_value);
        }
    }

    #[test]
    fn values_are_written_as_serde_json_writes_them() {
        let v = serde_json::json!([
            0, 7, u64::MAX, -1, i64::MIN, 1.5, -0.25, 1e300, true, false, null,
            "plain", "quo\"te\\ \u{1} é", [], {}, [[1, "a"], {"b": {"c": [-3]}, "a": 2}],
            "a string of more than sixteen bytes, \n with a newline past the first chunk"
        ]);
        let mut out = Vec::new();
        write_value(&mut out, &v);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            serde_json::to_string(&v).unwrap()
        );
    }

    #[test]
    fn formats() {
        assert_eq!(mac(&[0, 0x1b, 0x2c, 0xaa, 0xff, 1]), "00-1B-2C-AA-FF-01");
        assert_eq!(tcp_flags(0x12), "SA");
        for v in [0, 0x0a0b, 0xfe0d, u16::MAX] {
            assert_eq!(hex16(v), format!("0x{v:04x}"));
        }
        assert_eq!(transport_name(6), "tcp");
        assert_eq!(transport_name(99), "99");
    }
}
