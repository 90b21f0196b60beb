//! Record building: the documented JSON schema (docs/schema.md).
//!
//! Records are nested JSON objects whose paths follow the Elastic Common
//! Schema where ECS has a field, and live under `nightjar.*` otherwise.
//! Builders set fields by their dotted path with [`Record::put`], so the code
//! reads like the schema. Values that are absent are left out, never null.

use crate::capture::Timestamp;
use serde::Serialize;
use serde_json::{Map, Value};

/// A record under construction.
#[derive(Default)]
pub struct Record(Map<String, Value>);

impl Record {
    pub fn new(dataset: &str, ts_ns: u64) -> Record {
        let mut r = Record::default();
        r.put("@timestamp", ts(ts_ns));
        r.put("event.dataset", dataset);
        r
    }

    /// Sets the field at a dotted path, creating the objects on the way.
    pub fn put(&mut self, path: &str, value: impl Into<Value>) {
        let mut map = &mut self.0;
        let mut parts = path.split('.').peekable();
        while let Some(part) = parts.next() {
            if parts.peek().is_none() {
                map.insert(part.to_string(), value.into());
                return;
            }
            let entry = map
                .entry(part.to_string())
                .or_insert_with(|| Value::Object(Map::new()));
            if !entry.is_object() {
                *entry = Value::Object(Map::new());
            }
            map = entry.as_object_mut().expect("just made an object");
        }
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

    pub fn get(&self, path: &str) -> Option<&Value> {
        let mut v: Option<&Value> = None;
        let mut map = &self.0;
        for part in path.split('.') {
            let next = map.get(part)?;
            v = Some(next);
            if let Value::Object(m) = next {
                map = m;
            }
        }
        v
    }

    pub fn into_value(self) -> Value {
        Value::Object(self.0)
    }
}

/// RFC 3339 with nanoseconds, UTC.
pub fn ts(ns: u64) -> String {
    Timestamp(ns).to_rfc3339()
}

/// A MAC address in the ECS form: upper-case hex pairs joined by hyphens.
pub fn mac(m: &[u8; 6]) -> String {
    let mut s = String::with_capacity(17);
    for (i, b) in m.iter().enumerate() {
        if i > 0 {
            s.push('-');
        }
        s.push_str(&format!("{b:02X}"));
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

    #[test]
    fn formats() {
        assert_eq!(mac(&[0, 0x1b, 0x2c, 0xaa, 0xff, 1]), "00-1B-2C-AA-FF-01");
        assert_eq!(tcp_flags(0x12), "SA");
        assert_eq!(transport_name(6), "tcp");
        assert_eq!(transport_name(99), "99");
    }
}
