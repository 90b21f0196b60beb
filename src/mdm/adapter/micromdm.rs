//! MicroMDM and NanoMDM webhooks: JSON envelopes whose `acknowledge_event.raw_payload`
//! (base64) is the device's plist answer to an MDM command. `DeviceInformation`
//! answers (`QueryResponses`: `SerialNumber`, `WiFiMAC`, `ProductName`, `OSVersion`,
//! `IsSupervised`) update the device; `InstalledApplicationList` answers replace its app
//! list; `mdm.CheckOut` check-ins remove it.
//!
//! Declarative app status: NanoMDM forwards a device's Declarative Device Management
//! check-ins as `mdm.DeclarativeManagement` webhooks whose `checkin_event.raw_payload`
//! is the check-in plist (`MessageType` `DeclarativeManagement`, `Endpoint`, `Data`).
//! With `Endpoint` `status`, `Data` is the JSON status report; its
//! `StatusItems.app.managed.list` status item (iOS 17.2+) lists the declarative managed
//! apps: `identifier` (bundle id), `short-version`/`version`, `state`, and `_removed`
//! in an incremental report. An app in state `managed` is installed (managed = true);
//! any other state, or `_removed`, takes it off the device; a full report
//! (`FullReport` true) also takes off managed apps it no longer lists. Everything else
//! is ignored and counted.
//!
//! Invariants: the device key is the UDID the MDM protocol carries; only `Acknowledged`
//! answers change anything; a device's first app list is its baseline (no
//! `app_installed` flood); the state is bounded by [`super::MAX_DEVICES`].

use super::{non_empty, vendor_mac, AdapterError, AdapterStats, InventoryTracker};
use crate::mdm::{
    parse_plist, Device, InstalledApp, Inventory, LifecycleEvent, Ownership, PlistValue,
};
use base64::Engine;
use serde::Deserialize;
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

/// Adapter name in logs, errors, `mdm_ids` and event sources.
pub const NAME: &str = "micromdm";

/// What one webhook said.
#[derive(Clone, Debug, PartialEq)]
pub enum MdmHook {
    /// A `DeviceInformation` answer.
    DeviceInformation {
        /// Device UDID.
        udid: String,
        /// The `QueryResponses` dictionary.
        info: PlistValue,
    },
    /// An `InstalledApplicationList` answer.
    InstalledApps {
        /// Device UDID.
        udid: String,
        /// `(bundle id, short version)` pairs.
        apps: Vec<(String, Option<String>)>,
    },
    /// The `app.managed.list` status item of a declarative status report.
    DeclarativeApps {
        /// Device UDID.
        udid: String,
        /// The apps the report lists.
        apps: Vec<DeclarativeApp>,
        /// `FullReport`: the list is complete (else only changes).
        full: bool,
    },
    /// The device left the MDM (`mdm.CheckOut`).
    CheckOut {
        /// Device UDID.
        udid: String,
    },
}

/// One app of a declarative `app.managed.list` status item.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeclarativeApp {
    /// `identifier`: the bundle id.
    pub bundle_id: String,
    /// `short-version`, else `version`.
    pub version: Option<String>,
    /// `state` is `managed` (installed and managed) and the app is not `_removed`.
    pub installed: bool,
}

/// Most apps read from one status item; a device has far fewer declarative managed
/// apps (the rest are ignored).
pub const MAX_DECLARATIVE_APPS: usize = super::MAX_APPS_PER_DEVICE;

/// Parses a Declarative Device Management status report (the JSON `Data` of a
/// `status` check-in): the `app.managed.list` status item and `FullReport`. `Ok(None)`
/// when the report has no such item.
pub fn parse_status_report(json: &[u8]) -> Result<Option<(Vec<DeclarativeApp>, bool)>, String> {
    let v: serde_json::Value =
        serde_json::from_slice(json).map_err(|e| format!("status report: {e}"))?;
    let full = v
        .get("FullReport")
        .and_then(serde_json::Value::as_bool)
        .unwrap_or(false);
    let Some(list) = v.pointer("/StatusItems/app/managed/list") else {
        return Ok(None);
    };
    let list = list
        .as_array()
        .ok_or("status report: app.managed.list is not an array")?;
    let s =
        |a: &serde_json::Value, k: &str| non_empty(a.get(k).and_then(serde_json::Value::as_str));
    let apps = list
        .iter()
        .take(MAX_DECLARATIVE_APPS)
        .filter_map(|a| {
            let bundle_id = s(a, "identifier")?;
            let removed = a
                .get("_removed")
                .and_then(serde_json::Value::as_bool)
                .unwrap_or(false);
            let installed = !removed && s(a, "state").as_deref() == Some("managed");
            Some(DeclarativeApp {
                bundle_id,
                version: s(a, "short-version").or_else(|| s(a, "version")),
                installed,
            })
        })
        .collect();
    Ok(Some((apps, full)))
}

#[derive(Deserialize)]
struct Envelope {
    topic: String,
    #[serde(default)]
    acknowledge_event: Option<Ack>,
    #[serde(default)]
    checkin_event: Option<Checkin>,
}

#[derive(Deserialize)]
struct Ack {
    udid: String,
    #[serde(default)]
    status: String,
    #[serde(default)]
    raw_payload: Option<String>,
}

#[derive(Deserialize)]
struct Checkin {
    udid: String,
    #[serde(default)]
    raw_payload: Option<String>,
}

fn decode_payload(raw: &str) -> Result<PlistValue, String> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(raw.trim())
        .map_err(|e| format!("raw_payload is not base64: {e}"))?;
    parse_plist(&bytes, "raw_payload").map_err(|e| e.to_string())
}

/// A `mdm.DeclarativeManagement` check-in: the app status of a `status` report.
fn declarative(c: Checkin) -> Result<Option<MdmHook>, String> {
    let Some(udid) = non_empty(Some(&c.udid)) else {
        return Err("checkin_event without udid".into());
    };
    let Some(raw) = c.raw_payload else {
        return Ok(None);
    };
    let plist = decode_payload(&raw)?;
    if plist.get("Endpoint").and_then(PlistValue::as_str) != Some("status") {
        return Ok(None);
    }
    let Some(PlistValue::Data(json)) = plist.get("Data") else {
        return Err("status check-in without Data".into());
    };
    Ok(
        parse_status_report(json)?.map(|(apps, full)| MdmHook::DeclarativeApps {
            udid,
            apps,
            full,
        }),
    )
}

/// Parses a MicroMDM/NanoMDM webhook body. `Ok(None)` for events nightjar does not use
/// (other topics, non-`Acknowledged` answers, other commands); `Err` for a body that is
/// not such a webhook or whose payload does not decode.
pub fn parse_webhook(body: &[u8]) -> Result<Option<MdmHook>, String> {
    let env: Envelope = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    if env.topic == "mdm.CheckOut" {
        let c = env
            .checkin_event
            .ok_or("mdm.CheckOut without checkin_event")?;
        return Ok(non_empty(Some(&c.udid)).map(|udid| MdmHook::CheckOut { udid }));
    }
    if env.topic == "mdm.DeclarativeManagement" {
        let c = env
            .checkin_event
            .ok_or("mdm.DeclarativeManagement without checkin_event")?;
        return declarative(c);
    }
    if env.topic != "mdm.Connect" {
        return Ok(None);
    }
    let ack = env
        .acknowledge_event
        .ok_or("mdm.Connect without acknowledge_event")?;
    if ack.status != "Acknowledged" {
        return Ok(None);
    }
    let Some(udid) = non_empty(Some(&ack.udid)) else {
        return Err("acknowledge_event without udid".into());
    };
    let Some(raw) = ack.raw_payload else {
        return Ok(None);
    };
    let plist = decode_payload(&raw)?;
    if let Some(info) = plist.get("QueryResponses") {
        return Ok(Some(MdmHook::DeviceInformation {
            udid,
            info: info.clone(),
        }));
    }
    if let Some(PlistValue::Array(items)) = plist.get("InstalledApplicationList") {
        let apps = items
            .iter()
            .filter_map(|a| {
                let id = non_empty(a.get("Identifier").and_then(PlistValue::as_str))?;
                let v = a
                    .get("ShortVersion")
                    .and_then(PlistValue::as_str)
                    .or_else(|| a.get("Version").and_then(PlistValue::as_str));
                Some((id, non_empty(v)))
            })
            .collect();
        return Ok(Some(MdmHook::InstalledApps { udid, apps }));
    }
    Ok(None)
}

/// The MicroMDM/NanoMDM inventory built from webhooks, over an [`InventoryTracker`].
pub struct MicroMdm {
    tracker: InventoryTracker,
    devices: BTreeMap<String, (Device, Option<Vec<InstalledApp>>)>,
    stats: Arc<AdapterStats>,
}

impl MicroMdm {
    /// Starts from the tracker's current (persisted) inventory.
    pub fn new(tracker: InventoryTracker, stats: Arc<AdapterStats>) -> MicroMdm {
        let cur = tracker.current();
        let devices = cur
            .devices()
            .iter()
            .map(|d| (d.id.clone(), (d.clone(), Some(cur.apps(&d.id).to_vec()))))
            .collect();
        MicroMdm {
            tracker,
            devices,
            stats,
        }
    }

    /// The current inventory.
    pub fn current(&self) -> Arc<Inventory> {
        self.tracker.current()
    }

    /// The app list of device `udid`, the device added if new (`None`: refused at
    /// [`super::MAX_DEVICES`], counted). A device without a list yet goes in
    /// `baseline`: its first list emits no events.
    fn app_list(
        &mut self,
        udid: &str,
        baseline: &mut HashSet<String>,
    ) -> Option<&mut Option<Vec<InstalledApp>>> {
        if !self.devices.contains_key(udid) && self.devices.len() >= super::MAX_DEVICES {
            AdapterStats::inc(&self.stats.devices_skipped);
            return None;
        }
        let entry = self
            .devices
            .entry(udid.to_string())
            .or_insert_with(|| (new_device(udid), None));
        if entry.1.is_none() {
            baseline.insert(udid.to_string());
        }
        Some(&mut entry.1)
    }

    /// Applies one webhook; the derived events.
    pub fn apply(
        &mut self,
        hook: MdmHook,
        now_ns: u64,
    ) -> Result<Vec<LifecycleEvent>, AdapterError> {
        let mut baseline = HashSet::new();
        match hook {
            MdmHook::CheckOut { udid } => {
                self.devices.remove(&udid);
            }
            MdmHook::DeviceInformation { udid, info } => {
                if !self.devices.contains_key(&udid) && self.devices.len() >= super::MAX_DEVICES {
                    AdapterStats::inc(&self.stats.devices_skipped);
                    return Ok(Vec::new());
                }
                let entry = self
                    .devices
                    .entry(udid.clone())
                    .or_insert_with(|| (new_device(&udid), None));
                let d = &mut entry.0;
                let s = |k: &str| non_empty(info.get(k).and_then(PlistValue::as_str));
                d.serial = s("SerialNumber").or(d.serial.take());
                d.model = s("ProductName")
                    .or_else(|| s("ModelName"))
                    .or(d.model.take());
                d.os_version = s("OSVersion").or(d.os_version.take());
                if let Some(PlistValue::Bool(b)) = info.get("IsSupervised") {
                    d.supervised = Some(*b);
                }
                if let Some(mac) = vendor_mac(
                    info.get("WiFiMAC").and_then(PlistValue::as_str),
                    &self.stats,
                ) {
                    d.wifi_mac = Some(mac);
                }
            }
            MdmHook::DeclarativeApps { udid, apps, full } => {
                let Some(list) = self.app_list(&udid, &mut baseline) else {
                    return Ok(Vec::new());
                };
                let list = list.get_or_insert_with(Vec::new);
                if full {
                    let listed: HashSet<&str> = apps.iter().map(|a| a.bundle_id.as_str()).collect();
                    list.retain(|a| !a.managed || listed.contains(a.bundle_id.as_str()));
                }
                let mut by_id: BTreeMap<String, InstalledApp> =
                    list.drain(..).map(|a| (a.bundle_id.clone(), a)).collect();
                for a in apps {
                    if a.installed {
                        let app = InstalledApp {
                            device_id: udid.clone(),
                            bundle_id: a.bundle_id.clone(),
                            version: a.version,
                            managed: true,
                            first_seen: None,
                            last_seen: None,
                        };
                        by_id.insert(a.bundle_id, app);
                    } else {
                        by_id.remove(&a.bundle_id);
                    }
                }
                *list = by_id.into_values().collect();
            }
            MdmHook::InstalledApps { udid, apps } => {
                let Some(list) = self.app_list(&udid, &mut baseline) else {
                    return Ok(Vec::new());
                };
                *list = Some(
                    apps.into_iter()
                        .map(|(bundle_id, version)| InstalledApp {
                            device_id: udid.clone(),
                            bundle_id,
                            version,
                            managed: false,
                            first_seen: None,
                            last_seen: None,
                        })
                        .collect(),
                );
            }
        }
        let entries = self
            .devices
            .values()
            .map(|(d, apps)| (d.clone(), apps.clone().unwrap_or_default()))
            .collect();
        let inv = super::build_inventory(entries, NAME, &self.stats)?;
        Ok(self.tracker.apply_with_baseline(inv, now_ns, &baseline))
    }
}

fn new_device(udid: &str) -> Device {
    Device {
        id: udid.to_string(),
        udid: Some(udid.to_string()),
        serial: None,
        mdm_ids: BTreeMap::from([(NAME.to_string(), udid.to_string())]),
        wifi_mac: None,
        model: None,
        os_version: None,
        supervised: None,
        ownership: Ownership::Unknown,
        groups: Vec::new(),
        user: None,
    }
}

/// Builds a MicroMDM webhook body around a plist payload, XML or binary (for tests,
/// examples and the fuzz harness).
pub fn envelope(topic: &str, udid: &str, plist: impl AsRef<[u8]>) -> String {
    let raw = base64::engine::general_purpose::STANDARD.encode(plist);
    serde_json::json!({
        "topic": topic,
        "event_id": "5b9e7c1a-0000-4000-8000-000000000001",
        "created_at": "2024-05-02T08:00:00Z",
        "acknowledge_event": {"udid": udid, "status": "Acknowledged", "command_uuid": "c1", "raw_payload": raw}
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mdm::EventKind;

    pub(crate) const INFO: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
<plist version="1.0"><dict>
  <key>CommandUUID</key><string>c1</string>
  <key>QueryResponses</key><dict>
    <key>IsSupervised</key><true/>
    <key>OSVersion</key><string>17.4.1</string>
    <key>ProductName</key><string>iPhone15,2</string>
    <key>SerialNumber</key><string>F2LXK0AAPLJM</string>
    <key>WiFiMAC</key><string>a4:83:e7:12:34:56</string>
  </dict>
  <key>Status</key><string>Acknowledged</string>
  <key>UDID</key><string>U1</string>
</dict></plist>"#;

    pub(crate) fn apps_plist(apps: &[(&str, &str)]) -> String {
        let items: String = apps
            .iter()
            .map(|(id, v)| {
                format!("<dict><key>Identifier</key><string>{id}</string><key>Name</key><string>x</string><key>ShortVersion</key><string>{v}</string><key>BundleSize</key><integer>1024</integer></dict>")
            })
            .collect();
        format!(
            r#"<?xml version="1.0" encoding="UTF-8"?><plist version="1.0"><dict><key>CommandUUID</key><string>c2</string><key>InstalledApplicationList</key><array>{items}</array><key>Status</key><string>Acknowledged</string><key>UDID</key><string>U1</string></dict></plist>"#
        )
    }

    #[test]
    fn webhooks_build_an_inventory() {
        let stats = Arc::new(AdapterStats::default());
        let mut m = MicroMdm::new(
            InventoryTracker::open(NAME, None, Arc::clone(&stats)),
            stats,
        );
        let h = parse_webhook(envelope("mdm.Connect", "U1", INFO).as_bytes())
            .unwrap()
            .unwrap();
        assert!(m.apply(h, 1).unwrap().is_empty(), "baseline");
        let h = parse_webhook(
            envelope(
                "mdm.Connect",
                "U1",
                apps_plist(&[("com.a.b", "1"), ("com.c.d", "2")]),
            )
            .as_bytes(),
        )
        .unwrap()
        .unwrap();
        let ev = m.apply(h, 2).unwrap();
        assert!(ev.is_empty(), "first app list is a baseline: {ev:?}");
        let cur = m.current();
        let d = &cur.devices()[0];
        assert_eq!(
            (d.serial.as_deref(), d.supervised),
            (Some("F2LXK0AAPLJM"), Some(true))
        );
        assert_eq!(m.current().apps("U1").len(), 2);
        let h = parse_webhook(
            envelope("mdm.Connect", "U1", apps_plist(&[("com.a.b", "1.1")])).as_bytes(),
        )
        .unwrap()
        .unwrap();
        let kinds: Vec<_> = m.apply(h, 3).unwrap().iter().map(|e| e.kind).collect();
        assert_eq!(kinds, [EventKind::AppUpdated, EventKind::AppRemoved]);
    }

    /// A status report as a device sends it to the `status` endpoint (Apple's
    /// DeclarativeManagement `StatusReport`, with the `app.managed.list` item).
    const STATUS_FULL: &str = r#"{
      "StatusItems": {
        "app": {"managed": {"list": [
          {"identifier": "com.example.chat", "declaration-identifier": "app-chat",
           "name": "Chat", "short-version": "4.2", "version": "4201",
           "external-version-id": 876543210, "state": "managed"},
          {"identifier": "com.example.notes", "declaration-identifier": "app-notes",
           "name": "Notes", "state": "downloading"},
          {"identifier": "com.example.vpn", "declaration-identifier": "app-vpn",
           "name": "VPN", "short-version": "1.0", "state": "managed",
           "update-state": "available",
           "reasons": [{"code": "Info.UpdateAvailable", "description": "An update is available."}]}
        ]}},
        "management": {"declarations": {"activations": [], "configurations": [], "assets": [], "management": []}}
      },
      "Errors": [],
      "FullReport": true
    }"#;

    /// The incremental report that follows: VPN removed, Chat updated.
    const STATUS_DELTA: &str = r#"{
      "StatusItems": {"app": {"managed": {"list": [
        {"identifier": "com.example.vpn", "_removed": true},
        {"identifier": "com.example.chat", "short-version": "4.3", "state": "managed"}
      ]}}},
      "Errors": [],
      "FullReport": false
    }"#;

    fn ddm_webhook(udid: &str, endpoint: &str, report: &str) -> String {
        let data = base64::engine::general_purpose::STANDARD.encode(report);
        let plist = format!(
            r#"<?xml version="1.0" encoding="UTF-8"?><plist version="1.0"><dict><key>Data</key><data>{data}</data><key>Endpoint</key><string>{endpoint}</string><key>MessageType</key><string>DeclarativeManagement</string><key>UDID</key><string>{udid}</string></dict></plist>"#
        );
        let raw = base64::engine::general_purpose::STANDARD.encode(plist);
        serde_json::json!({
            "topic": "mdm.DeclarativeManagement",
            "event_id": "5b9e7c1a-0000-4000-8000-000000000002",
            "created_at": "2024-05-02T08:00:00Z",
            "checkin_event": {"udid": udid, "url_params": null, "raw_payload": raw}
        })
        .to_string()
    }

    #[test]
    fn declarative_app_status_updates_the_apps() {
        let (apps, full) = parse_status_report(STATUS_FULL.as_bytes())
            .unwrap()
            .unwrap();
        assert!(full);
        let installed: Vec<(&str, Option<&str>)> = apps
            .iter()
            .filter(|a| a.installed)
            .map(|a| (a.bundle_id.as_str(), a.version.as_deref()))
            .collect();
        assert_eq!(
            installed,
            [
                ("com.example.chat", Some("4.2")),
                ("com.example.vpn", Some("1.0"))
            ]
        );

        let stats = Arc::new(AdapterStats::default());
        let mut m = MicroMdm::new(
            InventoryTracker::open(NAME, None, Arc::clone(&stats)),
            stats,
        );
        let h = parse_webhook(ddm_webhook("U1", "status", STATUS_FULL).as_bytes())
            .unwrap()
            .unwrap();
        assert!(
            m.apply(h, 1).unwrap().is_empty(),
            "first report is a baseline"
        );
        let cur = m.current();
        let apps: Vec<(&str, bool)> = cur
            .apps("U1")
            .iter()
            .map(|a| (a.bundle_id.as_str(), a.managed))
            .collect();
        assert_eq!(
            apps,
            [("com.example.chat", true), ("com.example.vpn", true)]
        );

        let h = parse_webhook(ddm_webhook("U1", "status", STATUS_DELTA).as_bytes())
            .unwrap()
            .unwrap();
        let mut kinds: Vec<_> = m
            .apply(h, 2)
            .unwrap()
            .iter()
            .map(|e| (e.kind, e.bundle_id.clone().unwrap_or_default()))
            .collect();
        kinds.sort();
        assert_eq!(
            kinds,
            [
                (EventKind::AppUpdated, "com.example.chat".to_string()),
                (EventKind::AppRemoved, "com.example.vpn".to_string()),
            ]
        );
        assert_eq!(
            m.current()
                .app("U1", "com.example.chat")
                .and_then(|a| a.version.as_deref()),
            Some("4.3")
        );

        // A full report that no longer lists Chat takes it off.
        let empty = r#"{"StatusItems":{"app":{"managed":{"list":[]}}},"FullReport":true}"#;
        let h = parse_webhook(ddm_webhook("U1", "status", empty).as_bytes())
            .unwrap()
            .unwrap();
        let kinds: Vec<_> = m.apply(h, 3).unwrap().iter().map(|e| e.kind).collect();
        assert_eq!(kinds, [EventKind::AppRemoved]);
        assert!(m.current().apps("U1").is_empty());
    }

    #[test]
    fn declarative_checkins_that_carry_no_app_status() {
        // Other endpoints, reports without the item, and broken data.
        assert_eq!(
            parse_webhook(ddm_webhook("U1", "tokens", "").as_bytes()).unwrap(),
            None
        );
        let no_apps = r#"{"StatusItems":{"device":{"operating-system":{"version":"17.4"}}},"FullReport":false}"#;
        assert_eq!(
            parse_webhook(ddm_webhook("U1", "status", no_apps).as_bytes()).unwrap(),
            None
        );
        assert!(parse_webhook(ddm_webhook("U1", "status", "{not json").as_bytes()).is_err());
        let bad_list = r#"{"StatusItems":{"app":{"managed":{"list":{"identifier":"x"}}}}}"#;
        assert!(parse_webhook(ddm_webhook("U1", "status", bad_list).as_bytes()).is_err());
        let no_udid = r#"{"topic":"mdm.DeclarativeManagement","checkin_event":{"udid":""}}"#;
        assert!(parse_webhook(no_udid.as_bytes()).is_err());
    }

    #[test]
    fn bad_and_ignored_webhooks() {
        assert!(parse_webhook(b"nope").is_err());
        let bad_b64 = r#"{"topic":"mdm.Connect","acknowledge_event":{"udid":"U","status":"Acknowledged","raw_payload":"!!"}}"#;
        assert!(parse_webhook(bad_b64.as_bytes())
            .unwrap_err()
            .contains("base64"));
        let bad_plist = envelope("mdm.Connect", "U", "<plist><dict><key>x</key>");
        assert!(parse_webhook(bad_plist.as_bytes()).is_err());
        let not_now =
            r#"{"topic":"mdm.Connect","acknowledge_event":{"udid":"U","status":"NotNow"}}"#;
        assert_eq!(parse_webhook(not_now.as_bytes()).unwrap(), None);
        assert_eq!(
            parse_webhook(br#"{"topic":"mdm.Authenticate"}"#).unwrap(),
            None
        );
        let out = r#"{"topic":"mdm.CheckOut","checkin_event":{"udid":"U","raw_payload":""}}"#;
        assert_eq!(
            parse_webhook(out.as_bytes()).unwrap(),
            Some(MdmHook::CheckOut { udid: "U".into() })
        );
    }

    proptest::proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400)) {
            let _ = parse_webhook(&bytes);
            let raw = base64::engine::general_purpose::STANDARD.encode(&bytes);
            let body = format!(r#"{{"topic":"mdm.Connect","acknowledge_event":{{"udid":"U","status":"Acknowledged","raw_payload":"{raw}"}}}}"#);
            let _ = parse_webhook(body.as_bytes());
            let _ = parse_status_report(&bytes);
        }
    }
}
