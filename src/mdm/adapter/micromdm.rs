//! MicroMDM and NanoMDM webhooks: JSON envelopes whose `acknowledge_event.raw_payload`
//! (base64) is the device's plist answer to an MDM command. `DeviceInformation`
//! answers (`QueryResponses`: `SerialNumber`, `WiFiMAC`, `ProductName`, `OSVersion`,
//! `IsSupervised`) update the device; `InstalledApplicationList` answers replace its app
//! list; `mdm.CheckOut` check-ins remove it. Everything else is ignored and counted.
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
    /// The device left the MDM (`mdm.CheckOut`).
    CheckOut {
        /// Device UDID.
        udid: String,
    },
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
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(raw.trim())
        .map_err(|e| format!("raw_payload is not base64: {e}"))?;
    let plist = parse_plist(&bytes, "raw_payload").map_err(|e| e.to_string())?;
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
            MdmHook::InstalledApps { udid, apps } => {
                if !self.devices.contains_key(&udid) && self.devices.len() >= super::MAX_DEVICES {
                    AdapterStats::inc(&self.stats.devices_skipped);
                    return Ok(Vec::new());
                }
                let entry = self
                    .devices
                    .entry(udid.clone())
                    .or_insert_with(|| (new_device(&udid), None));
                if entry.1.is_none() {
                    baseline.insert(udid.clone());
                }
                entry.1 = Some(
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
        }
    }
}
