//! Device and app lifecycle events and their NDJSON file format (`--events`).
//!
//! Owns [`LifecycleEvent`], [`EventKind`], [`Confidence`] and the reader/writer of one
//! event per line. Invariants: a parsed event has a non-empty id, device id and source;
//! app kinds carry a valid bundle id and device kinds carry none; unknown kinds or
//! confidences are errors naming the line. `observed_ts` defaults to `ts`.

use super::model::validate_bundle_id;
use super::time::{format_rfc3339, parse_rfc3339};
use super::{for_each_line, json_error, MdmError};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::io::BufRead;
use std::path::Path;
use std::str::FromStr;

/// Most events read from one file (1 000 000, about 200 MiB in memory): a replay of a
/// week of a large fleet fits; more is a runaway producer.
pub const MAX_EVENTS_PER_FILE: usize = 1_000_000;

/// Hex digits kept of the SHA-256 of a derived event id (64 bits: no collisions in
/// practice across one deployment's events, short enough to read).
const EVENT_ID_HEX_LEN: usize = 16;

/// What happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EventKind {
    /// Device enrolled in the MDM.
    Enrolled,
    /// Device left the MDM.
    Unenrolled,
    /// Device checked in.
    Checkin,
    /// The MDM received a new inventory from the device.
    InventoryUpdated,
    /// App installed.
    AppInstalled,
    /// App version changed.
    AppUpdated,
    /// App removed.
    AppRemoved,
    /// OS version changed.
    OsUpdated,
    /// Compliance state changed.
    ComplianceChanged,
    /// Lost mode enabled or disabled.
    LostMode,
    /// App came to the foreground.
    AppForeground,
    /// App went to the background.
    AppBackground,
    /// App launched.
    AppLaunched,
    /// App woken by a push.
    PushWake,
}

impl EventKind {
    /// Every kind, in file-format order.
    pub const ALL: [EventKind; 14] = [
        EventKind::Enrolled,
        EventKind::Unenrolled,
        EventKind::Checkin,
        EventKind::InventoryUpdated,
        EventKind::AppInstalled,
        EventKind::AppUpdated,
        EventKind::AppRemoved,
        EventKind::OsUpdated,
        EventKind::ComplianceChanged,
        EventKind::LostMode,
        EventKind::AppForeground,
        EventKind::AppBackground,
        EventKind::AppLaunched,
        EventKind::PushWake,
    ];

    /// The file-format name (`app_installed`).
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Enrolled => "enrolled",
            EventKind::Unenrolled => "unenrolled",
            EventKind::Checkin => "checkin",
            EventKind::InventoryUpdated => "inventory_updated",
            EventKind::AppInstalled => "app_installed",
            EventKind::AppUpdated => "app_updated",
            EventKind::AppRemoved => "app_removed",
            EventKind::OsUpdated => "os_updated",
            EventKind::ComplianceChanged => "compliance_changed",
            EventKind::LostMode => "lost_mode",
            EventKind::AppForeground => "app_foreground",
            EventKind::AppBackground => "app_background",
            EventKind::AppLaunched => "app_launched",
            EventKind::PushWake => "push_wake",
        }
    }

    /// True for kinds about one app (they need a `bundle_id`).
    pub fn is_app_event(self) -> bool {
        matches!(
            self,
            EventKind::AppInstalled
                | EventKind::AppUpdated
                | EventKind::AppRemoved
                | EventKind::AppForeground
                | EventKind::AppBackground
                | EventKind::AppLaunched
                | EventKind::PushWake
        )
    }
}

impl FromStr for EventKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        EventKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = EventKind::ALL.iter().map(|k| k.as_str()).collect();
                format!(
                    "unknown event kind {s:?} (expected one of: {})",
                    names.join(", ")
                )
            })
    }
}

/// How the event is known (see DESIGN.md: no MDM reports third-party app transitions).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Confidence {
    /// An MDM or SDK said so.
    Reported,
    /// Derived from an inventory diff.
    Derived,
    /// Inferred from the traffic itself.
    Inferred,
}

impl Confidence {
    /// The file-format name.
    pub fn as_str(self) -> &'static str {
        match self {
            Confidence::Reported => "reported",
            Confidence::Derived => "derived",
            Confidence::Inferred => "inferred",
        }
    }
}

impl FromStr for Confidence {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "reported" => Ok(Confidence::Reported),
            "derived" => Ok(Confidence::Derived),
            "inferred" => Ok(Confidence::Inferred),
            _ => Err(format!(
                "unknown confidence {s:?} (expected reported, derived or inferred)"
            )),
        }
    }
}

/// One lifecycle event about a device or an app on it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LifecycleEvent {
    /// Unique id (given in the file, or derived deterministically by [`super::diff`]).
    pub id: String,
    /// The device's nightjar id.
    pub device_id: String,
    /// The app, for app kinds.
    pub bundle_id: Option<String>,
    /// What happened.
    pub kind: EventKind,
    /// The app or OS version after the event (installed, updated, os_updated), when known.
    pub version: Option<String>,
    /// When it happened (ns since the epoch).
    pub ts: u64,
    /// When nightjar learned of it (ns since the epoch); `>= ts` in normal operation.
    pub observed_ts: u64,
    /// Who reported it (`jamf`, `intune`, `inventory-diff`, `file`, ...).
    pub source: String,
    /// How it is known.
    pub confidence: Confidence,
}

/// One line of the events file, before validation.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEvent {
    id: String,
    device_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    bundle_id: Option<String>,
    kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    version: Option<String>,
    ts: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    observed_ts: Option<String>,
    source: String,
    confidence: String,
}

impl LifecycleEvent {
    /// Parses one NDJSON line; the error is the message without location.
    fn from_raw(raw: RawEvent) -> Result<LifecycleEvent, String> {
        let kind: EventKind = raw.kind.parse()?;
        let confidence: Confidence = raw.confidence.parse()?;
        let ts = parse_rfc3339(&raw.ts).ok_or_else(|| format!("invalid ts {:?}", raw.ts))?;
        let observed_ts = match &raw.observed_ts {
            Some(s) => parse_rfc3339(s).ok_or_else(|| format!("invalid observed_ts {s:?}"))?,
            None => ts,
        };
        for (name, value) in [
            ("id", &raw.id),
            ("device_id", &raw.device_id),
            ("source", &raw.source),
        ] {
            if value.is_empty() {
                return Err(format!("empty {name}"));
            }
        }
        match (&raw.bundle_id, kind.is_app_event()) {
            (Some(b), true) => validate_bundle_id(b)?,
            (None, true) => return Err(format!("kind {} needs a bundle_id", kind.as_str())),
            (Some(_), false) => {
                return Err(format!("kind {} takes no bundle_id", kind.as_str()));
            }
            (None, false) => {}
        }
        Ok(LifecycleEvent {
            id: raw.id,
            device_id: raw.device_id,
            bundle_id: raw.bundle_id,
            kind,
            version: raw.version,
            ts,
            observed_ts,
            source: raw.source,
            confidence,
        })
    }

    /// The event as one NDJSON line (no trailing newline), readable by [`read_events`].
    pub fn to_json_line(&self) -> String {
        let raw = RawEvent {
            id: self.id.clone(),
            device_id: self.device_id.clone(),
            bundle_id: self.bundle_id.clone(),
            kind: self.kind.as_str().into(),
            version: self.version.clone(),
            ts: format_rfc3339(self.ts),
            observed_ts: Some(format_rfc3339(self.observed_ts)),
            source: self.source.clone(),
            confidence: self.confidence.as_str().into(),
        };
        // Serializing a struct of strings cannot fail.
        serde_json::to_string(&raw).unwrap_or_default()
    }
}

/// Reads an NDJSON events file. Blank lines are skipped; any bad line is an error
/// naming `file:line`.
pub fn load_events(path: &Path) -> Result<Vec<LifecycleEvent>, MdmError> {
    let origin = path.display().to_string();
    let file = std::fs::File::open(path).map_err(|source| MdmError::Io {
        origin: origin.clone(),
        source,
    })?;
    read_events(std::io::BufReader::new(file), &origin)
}

/// Reads NDJSON events from any reader; `origin` names it in errors.
pub fn read_events<R: BufRead>(reader: R, origin: &str) -> Result<Vec<LifecycleEvent>, MdmError> {
    let mut events = Vec::new();
    for_each_line(reader, origin, |line_no, line| {
        if events.len() >= MAX_EVENTS_PER_FILE {
            return Err(MdmError::Line {
                origin: origin.into(),
                line: line_no,
                msg: format!("more than {MAX_EVENTS_PER_FILE} events"),
            });
        }
        let raw: RawEvent =
            serde_json::from_str(line).map_err(|e| json_error(origin, Some(line_no), &e))?;
        let event = LifecycleEvent::from_raw(raw).map_err(|msg| MdmError::Line {
            origin: origin.into(),
            line: line_no,
            msg,
        })?;
        events.push(event);
        Ok(())
    })?;
    Ok(events)
}

/// A deterministic event id: the first [`EVENT_ID_HEX_LEN`] hex digits of the SHA-256
/// of the length-prefixed parts.
pub(super) fn derive_event_id(parts: &[&[u8]]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p);
    }
    let mut id = super::hex(&h.finalize());
    id.truncate(EVENT_ID_HEX_LEN);
    id
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str) -> Result<Vec<LifecycleEvent>, MdmError> {
        read_events(text.as_bytes(), "ev.ndjson")
    }

    const GOOD: &str = r#"{"id":"e1","device_id":"d1","bundle_id":"com.example.chat","kind":"app_installed","version":"2.1","ts":"2024-05-01T10:00:00Z","observed_ts":"2024-05-01T10:15:00.5+02:00","source":"jamf","confidence":"derived"}

{"id":"e2","device_id":"d1","kind":"checkin","ts":"2024-05-01T10:00:00.25Z","source":"jamf","confidence":"reported"}
"#;

    #[test]
    fn parses_good_lines() {
        let ev = read(GOOD).unwrap();
        assert_eq!(ev.len(), 2);
        assert_eq!(ev[0].kind, EventKind::AppInstalled);
        assert_eq!(ev[0].bundle_id.as_deref(), Some("com.example.chat"));
        assert_eq!(ev[0].version.as_deref(), Some("2.1"));
        assert_eq!(ev[0].ts, parse_rfc3339("2024-05-01T10:00:00Z").unwrap());
        assert_eq!(
            ev[0].observed_ts,
            parse_rfc3339("2024-05-01T08:15:00.5Z").unwrap()
        );
        assert_eq!(ev[1].observed_ts, ev[1].ts);
        assert_eq!(ev[1].confidence, Confidence::Reported);
    }

    #[test]
    fn round_trips_through_json_lines() {
        let ev = read(GOOD).unwrap();
        let text: String = ev.iter().map(|e| e.to_json_line() + "\n").collect();
        assert_eq!(read(&text).unwrap(), ev);
    }

    #[test]
    fn every_bad_line_names_its_line() {
        let base = r#"{"id":"e","device_id":"d","kind":"checkin","ts":"2024-05-01T10:00:00Z","source":"s","confidence":"reported"}"#;
        let cases: &[(&str, &str)] = &[
            (r#"{"id":"e","#, "ev.ndjson:3:10: EOF while parsing a value"),
            ("not json", "ev.ndjson:3:2: expected ident"),
            (
                &base.replace("checkin", "teleported"),
                "ev.ndjson:3: unknown event kind \"teleported\" (expected one of: enrolled,",
            ),
            (
                &base.replace("\"reported\"", "\"guessed\""),
                "ev.ndjson:3: unknown confidence \"guessed\"",
            ),
            (
                &base.replace("2024-05-01T10:00:00Z", "yesterday"),
                "ev.ndjson:3: invalid ts \"yesterday\"",
            ),
            (
                &base.replace("}", r#","observed_ts":"2024-05-01"}"#),
                "ev.ndjson:3: invalid observed_ts \"2024-05-01\"",
            ),
            (
                &base.replace("checkin", "app_launched"),
                "ev.ndjson:3: kind app_launched needs a bundle_id",
            ),
            (
                &base.replace("}", r#","bundle_id":"com.x"}"#),
                "ev.ndjson:3: kind checkin takes no bundle_id",
            ),
            (
                &base
                    .replace("checkin", "push_wake")
                    .replace("}", r#","bundle_id":"com x"}"#),
                "ev.ndjson:3: invalid bundle id \"com x\"",
            ),
            (
                &base.replace("\"d\"", "\"\""),
                "ev.ndjson:3: empty device_id",
            ),
            (&base.replace("}", r#","colour":"red"}"#), "ev.ndjson:3:"),
            (&base.replace(r#""kind":"checkin","#, ""), "ev.ndjson:3:"),
            (r#"{"id":1}"#, "ev.ndjson:3:7: invalid type: integer `1`"),
        ];
        for (line, want) in cases {
            let text = format!("{base}\n\n{line}\n{base}\n");
            let err = read(&text).unwrap_err().to_string();
            assert!(err.starts_with(want), "{line}\n got: {err}\nwant: {want}");
            assert!(!err.contains('\n'), "{err}");
        }
        let unknown_field = format!("{base}\n{}", base.replace("}", r#","colour":"red"}"#));
        assert!(read(&unknown_field)
            .unwrap_err()
            .to_string()
            .contains("unknown field `colour`"));
    }

    #[test]
    fn overlong_and_non_utf8_lines() {
        let long = format!("{}\n", "x".repeat(super::super::MAX_LINE_BYTES + 1));
        assert_eq!(
            read(&long).unwrap_err().to_string(),
            "ev.ndjson: line 1 larger than 65536 bytes"
        );
        let err = read_events(&b"\n\xff\n"[..], "ev.ndjson").unwrap_err();
        assert_eq!(err.to_string(), "ev.ndjson:2: not UTF-8");
    }

    proptest::proptest! {
        #[test]
        fn never_panics_on_bytes(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
            let _ = read_events(&bytes[..], "p");
        }

        #[test]
        fn never_panics_on_near_valid_lines(kind in "[a-z_]{0,20}", ts in "[0-9TZ:.+-]{0,30}", bundle in "\\PC{0,10}") {
            let line = format!(
                r#"{{"id":"e","device_id":"d","bundle_id":{bundle:?},"kind":{kind:?},"ts":{ts:?},"source":"s","confidence":"derived"}}"#
            );
            let _ = read(&line);
        }
    }

    #[test]
    fn derived_ids_are_stable() {
        let a = derive_event_id(&[b"d1", b"com.x", b"app_installed"]);
        assert_eq!(a, derive_event_id(&[b"d1", b"com.x", b"app_installed"]));
        assert_ne!(a, derive_event_id(&[b"d1com.x", b"", b"app_installed"]));
        assert_eq!(a.len(), EVENT_ID_HEX_LEN);
    }
}
