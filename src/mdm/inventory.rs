//! The inventory file format (`--inventory`) and the inventory diff.
//!
//! Owns the raw JSON shape (serde, `deny_unknown_fields`), its conversion into the
//! validated [`Inventory`], and [`diff`], which derives lifecycle events from two
//! snapshots. Invariants: validation errors name the file and the JSON path of the
//! offending value; the diff is deterministic (same inputs → same events, same ids,
//! same order) and empty for equal inventories.

use super::events::derive_event_id;
use super::model::validate_bundle_id;
use super::time::{format_rfc3339, parse_rfc3339};
use super::{
    json_error, read_text, Confidence, Device, EventKind, InstalledApp, Inventory, LifecycleEvent,
    MacAddr, MdmError, Ownership,
};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct RawInventory {
    devices: Vec<RawDevice>,
}

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct RawDevice {
    id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    udid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    serial: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    mdm_ids: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    wifi_mac: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    model: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    os_version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    supervised: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ownership: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    groups: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user: Option<String>,
    #[serde(default)]
    apps: Vec<RawApp>,
}

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct RawApp {
    bundle_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    version: Option<String>,
    #[serde(default)]
    managed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    first_seen: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_seen: Option<String>,
}

/// The inventory in the `--inventory` JSON format (pretty-printed, devices sorted by
/// id, apps by bundle id). [`parse_inventory`] reads it back to an equal inventory.
pub fn inventory_to_json(inv: &Inventory) -> String {
    let devices = inv
        .devices()
        .iter()
        .map(|d| RawDevice {
            id: d.id.clone(),
            udid: d.udid.clone(),
            serial: d.serial.clone(),
            mdm_ids: d.mdm_ids.clone(),
            wifi_mac: d.wifi_mac.map(|m| m.to_string()),
            model: d.model.clone(),
            os_version: d.os_version.clone(),
            supervised: d.supervised,
            ownership: match d.ownership {
                Ownership::Unknown => None,
                o => Some(o.as_str().to_string()),
            },
            groups: d.groups.clone(),
            user: d.user.clone(),
            apps: inv
                .apps(&d.id)
                .iter()
                .map(|a| RawApp {
                    bundle_id: a.bundle_id.clone(),
                    version: a.version.clone(),
                    managed: a.managed,
                    first_seen: a.first_seen.map(format_rfc3339),
                    last_seen: a.last_seen.map(format_rfc3339),
                })
                .collect(),
        })
        .collect();
    // A struct of strings, bools and maps of strings always serializes.
    let mut text = serde_json::to_string_pretty(&RawInventory { devices }).unwrap_or_default();
    text.push('\n');
    text
}

/// Loads an inventory JSON file.
pub fn load_inventory(path: &Path) -> Result<Inventory, MdmError> {
    parse_inventory(&read_text(path)?, &path.display().to_string())
}

/// Parses inventory JSON text; `origin` names it in errors.
pub fn parse_inventory(text: &str, origin: &str) -> Result<Inventory, MdmError> {
    let raw: RawInventory = serde_json::from_str(text).map_err(|e| json_error(origin, None, &e))?;
    let mut entries = Vec::with_capacity(raw.devices.len());
    for (i, d) in raw.devices.into_iter().enumerate() {
        let invalid = |field: &str, msg: String| MdmError::Invalid {
            origin: origin.into(),
            at: format!("devices[{i}]{field}"),
            msg,
        };
        let non_empty = |field: &str, v: Option<String>| match v {
            Some(s) if s.is_empty() => Err(invalid(field, "empty; omit the field instead".into())),
            v => Ok(v),
        };
        if d.id.is_empty() {
            return Err(invalid(".id", "empty device id".into()));
        }
        let wifi_mac = match &d.wifi_mac {
            Some(s) => Some(s.parse::<MacAddr>().map_err(|m| invalid(".wifi_mac", m))?),
            None => None,
        };
        let ownership = match &d.ownership {
            Some(s) => s
                .parse::<Ownership>()
                .map_err(|m| invalid(".ownership", m))?,
            None => Ownership::Unknown,
        };
        let mut apps = Vec::with_capacity(d.apps.len());
        for (j, a) in d.apps.into_iter().enumerate() {
            let at = |field: &str| format!(".apps[{j}]{field}");
            validate_bundle_id(&a.bundle_id).map_err(|m| invalid(&at(".bundle_id"), m))?;
            let time = |field: &str, v: &Option<String>| match v {
                Some(s) => parse_rfc3339(s)
                    .map(Some)
                    .ok_or_else(|| invalid(&at(field), format!("invalid RFC 3339 time {s:?}"))),
                None => Ok(None),
            };
            apps.push(InstalledApp {
                device_id: d.id.clone(),
                first_seen: time(".first_seen", &a.first_seen)?,
                last_seen: time(".last_seen", &a.last_seen)?,
                bundle_id: a.bundle_id,
                version: non_empty(&at(".version"), a.version)?,
                managed: a.managed,
            });
        }
        let device = Device {
            udid: non_empty(".udid", d.udid)?,
            serial: non_empty(".serial", d.serial)?,
            model: non_empty(".model", d.model)?,
            os_version: non_empty(".os_version", d.os_version)?,
            user: non_empty(".user", d.user)?,
            id: d.id,
            mdm_ids: d.mdm_ids,
            wifi_mac,
            supervised: d.supervised,
            ownership,
            groups: d.groups,
        };
        entries.push((device, apps));
    }
    Inventory::new(entries, origin)
}

/// Events that turn `old` into `new`, all with `confidence: derived`, `ts` and
/// `observed_ts` = `observed_ts` (the change happened at or before it), and the given
/// `source`. Emits `enrolled`/`unenrolled` for devices that appear/disappear (the apps
/// of a newly enrolled device are its inventory, not installs), `os_updated`, and
/// `app_installed`/`app_updated`/`app_removed`. Ids hash both inventories'
/// fingerprints with the device, app, kind and versions: re-running the same diff gives
/// the same ids, while the same change between other snapshots gives a new id.
/// Events come sorted by device id, then bundle id, then kind.
pub fn diff(
    old: &Inventory,
    new: &Inventory,
    observed_ts: u64,
    source: &str,
) -> Vec<LifecycleEvent> {
    let mut events = Vec::new();
    if old.fingerprint() == new.fingerprint() {
        return events;
    }
    let (old_fp, new_fp) = (old.fingerprint().0, new.fingerprint().0);
    let mut emit = |device_id: &str,
                    bundle_id: Option<&str>,
                    kind: EventKind,
                    before: Option<&str>,
                    after: Option<&str>| {
        let id = derive_event_id(&[
            &old_fp,
            &new_fp,
            device_id.as_bytes(),
            bundle_id.unwrap_or("").as_bytes(),
            kind.as_str().as_bytes(),
            before.unwrap_or("").as_bytes(),
            after.unwrap_or("").as_bytes(),
        ]);
        events.push(LifecycleEvent {
            id,
            device_id: device_id.into(),
            bundle_id: bundle_id.map(Into::into),
            kind,
            version: after.map(Into::into),
            ts: observed_ts,
            observed_ts,
            source: source.into(),
            confidence: Confidence::Derived,
        });
    };
    // Both device lists are sorted by id: merge them.
    let (mut olds, mut news) = (
        old.devices().iter().peekable(),
        new.devices().iter().peekable(),
    );
    loop {
        let order = match (olds.peek(), news.peek()) {
            (None, None) => break,
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (Some(o), Some(n)) => o.id.cmp(&n.id),
        };
        match order {
            std::cmp::Ordering::Less => {
                if let Some(o) = olds.next() {
                    emit(&o.id, None, EventKind::Unenrolled, None, None);
                }
            }
            std::cmp::Ordering::Greater => {
                if let Some(n) = news.next() {
                    let os = n.os_version.as_deref();
                    emit(&n.id, None, EventKind::Enrolled, None, os);
                }
            }
            std::cmp::Ordering::Equal => {
                if let (Some(o), Some(n)) = (olds.next(), news.next()) {
                    let (ov, nv) = (o.os_version.as_deref(), n.os_version.as_deref());
                    if ov != nv {
                        emit(&n.id, None, EventKind::OsUpdated, ov, nv);
                    }
                    diff_apps(old.apps(&o.id), new.apps(&n.id), &n.id, &mut emit);
                }
            }
        }
    }
    events
}

/// App events of one device; both slices are sorted by bundle id.
fn diff_apps(
    old: &[InstalledApp],
    new: &[InstalledApp],
    device_id: &str,
    emit: &mut impl FnMut(&str, Option<&str>, EventKind, Option<&str>, Option<&str>),
) {
    let (mut olds, mut news) = (old.iter().peekable(), new.iter().peekable());
    loop {
        let order = match (olds.peek(), news.peek()) {
            (None, None) => break,
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (Some(o), Some(n)) => o.bundle_id.cmp(&n.bundle_id),
        };
        match order {
            std::cmp::Ordering::Less => {
                if let Some(o) = olds.next() {
                    let ov = o.version.as_deref();
                    emit(
                        device_id,
                        Some(&o.bundle_id),
                        EventKind::AppRemoved,
                        ov,
                        None,
                    );
                }
            }
            std::cmp::Ordering::Greater => {
                if let Some(n) = news.next() {
                    let nv = n.version.as_deref();
                    emit(
                        device_id,
                        Some(&n.bundle_id),
                        EventKind::AppInstalled,
                        None,
                        nv,
                    );
                }
            }
            std::cmp::Ordering::Equal => {
                if let (Some(o), Some(n)) = (olds.next(), news.next()) {
                    let (ov, nv) = (o.version.as_deref(), n.version.as_deref());
                    if ov != nv {
                        emit(device_id, Some(&n.bundle_id), EventKind::AppUpdated, ov, nv);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INV: &str = r#"{"devices": [
      {"id": "dev-2", "udid": "00008110-000A1B2C3D4E5F60", "serial": "F2LXK0AAPLJM",
       "wifi_mac": "AA:BB:CC:00:11:22", "model": "iPhone14,5", "os_version": "17.4.1",
       "supervised": true, "ownership": "corporate", "groups": ["sales", "emea"],
       "mdm_ids": {"jamf": "42"}, "user": "ana@example.com",
       "apps": [{"bundle_id": "com.tinyspeck.chatlyio", "version": "24.05.10", "managed": true,
                 "first_seen": "2024-05-01T09:00:00Z"},
                {"bundle_id": "net.whatsapp.WhatsApp", "version": "24.9.78"}]},
      {"id": "dev-1", "wifi_mac": "a0b1c2d3e4f5", "os_version": "17.3"}
    ]}"#;

    fn inv(text: &str) -> Inventory {
        parse_inventory(text, "inv.json").unwrap()
    }

    fn err(text: &str) -> String {
        parse_inventory(text, "inv.json").unwrap_err().to_string()
    }

    #[test]
    fn parses_the_documented_format() {
        let inv = inv(INV);
        assert_eq!(inv.devices().len(), 2);
        let d = inv.by_serial("F2LXK0AAPLJM").unwrap();
        assert_eq!(d.id, "dev-2");
        assert_eq!(d.ownership, Ownership::Corporate);
        assert_eq!(d.groups, ["emea", "sales"]);
        assert_eq!(d.mdm_ids.get("jamf").map(String::as_str), Some("42"));
        let mac: MacAddr = "a0:b1:c2:d3:e4:f5".parse().unwrap();
        assert_eq!(inv.by_wifi_mac(mac).unwrap().id, "dev-1");
        let app = inv.app("dev-2", "com.tinyspeck.chatlyio").unwrap();
        assert!(app.managed);
        assert_eq!(app.first_seen, parse_rfc3339("2024-05-01T09:00:00Z"));
        assert!(!inv.app("dev-2", "net.whatsapp.WhatsApp").unwrap().managed);
    }

    #[test]
    fn the_shipped_example_parses() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/inventory.example.json");
        let inv = load_inventory(&path).unwrap();
        assert!(inv.devices().len() >= 3);
        let events = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/events.example.ndjson");
        let events = super::super::load_events(&events).unwrap();
        assert!(events.iter().all(|e| inv.device(&e.device_id).is_some()));
    }

    #[test]
    fn bad_inventories_name_the_place() {
        assert_eq!(
            err(r#"{"devices": [{"id": "a", "wifi_mac": "nope"}]}"#),
            "inv.json: devices[0].wifi_mac: invalid MAC address \"nope\""
        );
        assert_eq!(
            err(r#"{"devices": [{"id": "a"}, {"id": "b", "apps": [{"bundle_id": ""}]}]}"#),
            "inv.json: devices[1].apps[0].bundle_id: empty bundle id"
        );
        assert_eq!(
            err(r#"{"devices": [{"id": "a", "apps": [{"bundle_id": "x", "last_seen": "now"}]}]}"#),
            "inv.json: devices[0].apps[0].last_seen: invalid RFC 3339 time \"now\""
        );
        assert_eq!(
            err(r#"{"devices": [{"id": "a", "udid": ""}]}"#),
            "inv.json: devices[0].udid: empty; omit the field instead"
        );
        assert_eq!(
            err(r#"{"devices": [{"id": "a", "ownership": "rented"}]}"#),
            "inv.json: devices[0].ownership: unknown ownership \"rented\" (expected corporate, personal or unknown)"
        );
        assert_eq!(
            err("{\"devices\": [\n  {\"id\": \"a\", \"colour\": 1}]}"),
            "inv.json:2:22: unknown field `colour`, expected one of `id`, `udid`, `serial`, `mdm_ids`, `wifi_mac`, `model`, `os_version`, `supervised`, `ownership`, `groups`, `user`, `apps`"
        );
        assert_eq!(
            err("{\"devices\": [\n  {\"udid\": \"x\"}]}"),
            "inv.json:2:15: missing field `id`"
        );
        // A key with a line break is quoted escaped: the error stays one line.
        assert_eq!(
            err(r#"{"devices": [], "a\nb": 1}"#),
            r"inv.json:1:22: unknown field `a\x0ab`, expected `devices`"
        );
        assert!(err(r#"{"devices": [{"id": "a"}, {"id": "a"}]}"#).contains("duplicate device id"));
    }

    proptest::proptest! {
        #[test]
        fn never_panics_on_text(text in "\\PC{0,300}") {
            let _ = parse_inventory(&text, "p");
        }

        #[test]
        fn never_panics_on_near_valid_devices(mac in "\\PC{0,20}", bundle in "\\PC{0,10}", seen in "\\PC{0,30}") {
            let text = format!(
                r#"{{"devices":[{{"id":"a","wifi_mac":{mac:?},"apps":[{{"bundle_id":{bundle:?},"first_seen":{seen:?}}}]}}]}}"#
            );
            let _ = parse_inventory(&text, "p");
        }
    }

    #[test]
    fn serializer_round_trips() {
        let a = inv(INV);
        let text = inventory_to_json(&a);
        let b = inv(&text);
        assert_eq!(a.fingerprint(), b.fingerprint());
        assert_eq!(a.devices(), b.devices());
        for d in a.devices() {
            assert_eq!(a.apps(&d.id), b.apps(&d.id));
        }
        assert_eq!(text, inventory_to_json(&b));
        assert_eq!(
            inventory_to_json(&Inventory::default()),
            "{\n  \"devices\": []\n}\n"
        );
    }

    #[test]
    fn same_inventory_twice_gives_no_events() {
        let a = inv(INV);
        assert!(diff(&a, &a, 5, "test").is_empty());
        assert!(diff(&a, &inv(INV), 5, "test").is_empty());
    }

    #[test]
    fn diff_reports_every_change() {
        let old = inv(INV);
        let new_text = INV
            .replace("24.05.10", "24.06.01")
            .replace(
                r#"{"bundle_id": "net.whatsapp.WhatsApp", "version": "24.9.78"}"#,
                r#"{"bundle_id": "us.zoom.videomeetings", "version": "6.0"}"#,
            )
            .replace(r#""os_version": "17.3""#, r#""os_version": "17.4""#)
            .replace(
                r#"{"id": "dev-1""#,
                r#"{"id": "dev-3", "os_version": "18.0"}, {"id": "dev-1""#,
            );
        let new = inv(&new_text);
        let removed = inv(r#"{"devices": [{"id": "dev-1", "os_version": "17.3"}]}"#);
        let ev = diff(&old, &new, 1_000, "inventory-diff");
        let got: Vec<(&str, Option<&str>, EventKind, Option<&str>)> = ev
            .iter()
            .map(|e| {
                (
                    e.device_id.as_str(),
                    e.bundle_id.as_deref(),
                    e.kind,
                    e.version.as_deref(),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                ("dev-1", None, EventKind::OsUpdated, Some("17.4")),
                (
                    "dev-2",
                    Some("com.tinyspeck.chatlyio"),
                    EventKind::AppUpdated,
                    Some("24.06.01")
                ),
                (
                    "dev-2",
                    Some("net.whatsapp.WhatsApp"),
                    EventKind::AppRemoved,
                    None
                ),
                (
                    "dev-2",
                    Some("us.zoom.videomeetings"),
                    EventKind::AppInstalled,
                    Some("6.0")
                ),
                ("dev-3", None, EventKind::Enrolled, Some("18.0")),
            ]
        );
        assert!(ev.iter().all(|e| e.confidence == Confidence::Derived
            && e.ts == 1_000
            && e.observed_ts == 1_000
            && e.source == "inventory-diff"));
        let again = diff(&old, &new, 2_000, "inventory-diff");
        let ids = |v: &[LifecycleEvent]| v.iter().map(|e| e.id.clone()).collect::<Vec<_>>();
        assert_eq!(ids(&ev), ids(&again), "ids do not depend on the diff time");
        let mut unique = ids(&ev);
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), ev.len());
        let gone = diff(&old, &removed, 1, "s");
        assert_eq!(gone.len(), 1);
        assert_eq!(
            (gone[0].kind, gone[0].device_id.as_str()),
            (EventKind::Unenrolled, "dev-2")
        );
    }
}
