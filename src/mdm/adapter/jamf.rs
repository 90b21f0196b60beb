//! Jamf Pro: OAuth client credentials (`POST /api/oauth/token`), the mobile device
//! inventory (`GET /api/v2/mobile-devices/detail` with the GENERAL, HARDWARE and
//! APPLICATIONS sections, `page`/`page-size` paging over `totalCount`/`results`), and
//! Jamf Pro webhooks (`MobileDeviceCheckIn`, `MobileDeviceInventoryCompleted`, ...).
//!
//! Invariants: a device that does not parse is skipped and counted, never the page; the
//! pull stops after the pages `totalCount` announces (plus one), so a server that keeps
//! answering cannot loop it; a webhook yields at most one reported event and one device
//! to re-pull.

use super::http::{encode_query, get_authed, Http, HttpOptions, TokenSource};
use super::{
    build_inventory, device_id, non_empty, read_secret, vendor_mac, AdapterError, AdapterStats,
    MAX_DEVICES,
};
use crate::config::JamfConfig;
use crate::mdm::events::derive_event_id;
use crate::mdm::{
    Confidence, Device, EventKind, InstalledApp, Inventory, LifecycleEvent, Ownership,
};
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Adapter name in logs, errors, `mdm_ids` and event sources.
pub const NAME: &str = "jamf";

/// Devices asked for per page (100, Jamf's default `page-size`): pages stay small
/// (each device carries its app list) and a retry repeats little.
pub const DEFAULT_PAGE_SIZE: usize = 100;

/// The Jamf Pro adapter.
pub struct Jamf {
    base: String,
    page_size: usize,
    http: Http,
    tokens: TokenSource,
}

#[derive(Deserialize)]
struct Page {
    #[serde(rename = "totalCount")]
    total_count: u64,
    results: Vec<Value>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct JamfDevice {
    mobile_device_id: Option<Value>,
    general: Option<General>,
    hardware: Option<Hardware>,
    applications: Option<Vec<Value>>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct General {
    udid: Option<String>,
    os_version: Option<String>,
    supervised: Option<bool>,
    device_ownership_type: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct Hardware {
    serial_number: Option<String>,
    wifi_mac_address: Option<String>,
    model: Option<String>,
    model_identifier: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct JamfApp {
    identifier: Option<String>,
    version: Option<String>,
    short_version: Option<String>,
    management_status: Option<String>,
}

/// A JSON string or number as a string (Jamf ids are strings in the Jamf Pro API and
/// numbers in webhooks).
fn id_text(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_string()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

impl Jamf {
    /// An adapter for `cfg`; reads the client secret now.
    pub fn new(
        cfg: &JamfConfig,
        opts: HttpOptions,
        stats: Arc<AdapterStats>,
    ) -> Result<Jamf, AdapterError> {
        let secret = read_secret(&cfg.client_secret_file)?;
        let base = cfg.url.as_str().to_string();
        Ok(Jamf {
            tokens: TokenSource::new(
                format!("{base}/api/oauth/token"),
                cfg.client_id.clone(),
                secret,
                None,
            ),
            base,
            page_size: DEFAULT_PAGE_SIZE,
            http: Http::new(NAME, opts, stats)?,
        })
    }

    /// Changes the page size (tests use small pages).
    pub fn with_page_size(mut self, n: usize) -> Jamf {
        self.page_size = n.clamp(1, 2000);
        self
    }

    /// The adapter's counters.
    pub fn stats(&self) -> &Arc<AdapterStats> {
        self.http.stats()
    }

    fn detail_url(&self, page: usize, filter: Option<&str>) -> String {
        let mut url = format!(
            "{}/api/v2/mobile-devices/detail?section=GENERAL&section=HARDWARE&section=APPLICATIONS&page={page}&page-size={}&sort={}",
            self.base,
            self.page_size,
            encode_query("mobileDeviceId:asc")
        );
        if let Some(f) = filter {
            url.push_str("&filter=");
            url.push_str(&encode_query(f));
        }
        url
    }

    async fn pull_pages(
        &self,
        filter: Option<&str>,
    ) -> Result<Vec<(Device, Vec<InstalledApp>)>, AdapterError> {
        let stats = self.http.stats();
        let mut out = Vec::new();
        let mut seen = 0u64;
        let mut page = 0usize;
        loop {
            let url = self.detail_url(page, filter);
            let body = get_authed(&self.http, &self.tokens, &url).await?;
            let p = parse_detail_page(&body, stats).map_err(|e| self.http.malformed(&url, e))?;
            // Every page but the last holds at least one device (a server may cap the
            // page size below ours), so more pages than devices means it does not end.
            if p.total_count > MAX_DEVICES as u64 || page as u64 > p.total_count {
                return Err(self.http.malformed(
                    &url,
                    format_args!("paging does not end (totalCount {})", p.total_count),
                ));
            }
            let n = p.results;
            out.extend(p.devices);
            seen += n;
            if n == 0 || seen >= p.total_count {
                return Ok(out);
            }
            page += 1;
        }
    }

    /// One full pull: every mobile device with its apps.
    pub async fn pull(&self) -> Result<Inventory, AdapterError> {
        let entries = self.pull_pages(None).await?;
        build_inventory(entries, NAME, self.http.stats())
    }

    /// A targeted pull of one device by its Jamf id (after a webhook). `Ok(None)` if
    /// Jamf no longer knows it.
    pub async fn pull_device(
        &self,
        jamf_id: &str,
    ) -> Result<Option<(Device, Vec<InstalledApp>)>, AdapterError> {
        if !jamf_id.bytes().all(|b| b.is_ascii_digit()) || jamf_id.is_empty() {
            return Ok(None);
        }
        let filter = format!("mobileDeviceId=={jamf_id}");
        let mut found = self.pull_pages(Some(&filter)).await?;
        Ok(found.pop())
    }
}

/// One page of `GET /api/v2/mobile-devices/detail`.
#[derive(Debug)]
pub struct DetailPage {
    /// The `totalCount` the server announces.
    pub total_count: u64,
    /// Entries in `results`, mapped or not.
    pub results: u64,
    /// The devices that mapped, with their apps (the others are counted as skipped).
    pub devices: Vec<(Device, Vec<InstalledApp>)>,
}

/// Parses one detail page: `Err` if the body is not a page; a device that does not map
/// is skipped and counted in `stats`, never the page.
pub fn parse_detail_page(body: &[u8], stats: &AdapterStats) -> Result<DetailPage, String> {
    let p: Page = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    let results = p.results.len() as u64;
    let mut devices = Vec::with_capacity(p.results.len());
    for v in p.results {
        match serde_json::from_value::<JamfDevice>(v) {
            Ok(d) => match map_device(d, stats) {
                Some(e) => devices.push(e),
                None => AdapterStats::inc(&stats.devices_skipped),
            },
            Err(_) => AdapterStats::inc(&stats.devices_skipped),
        }
    }
    Ok(DetailPage {
        total_count: p.total_count,
        results,
        devices,
    })
}

/// Maps one Jamf device; `None` if it has no usable id.
fn map_device(d: JamfDevice, stats: &AdapterStats) -> Option<(Device, Vec<InstalledApp>)> {
    let general = d.general.unwrap_or_default();
    let hardware = d.hardware.unwrap_or_default();
    let jamf_id = id_text(d.mobile_device_id.as_ref());
    let udid = non_empty(general.udid.as_deref());
    let serial = non_empty(hardware.serial_number.as_deref());
    let id = device_id(udid.as_deref(), serial.as_deref(), NAME, jamf_id.as_deref())?;
    let mut mdm_ids = BTreeMap::new();
    if let Some(j) = jamf_id {
        mdm_ids.insert(NAME.to_string(), j);
    }
    let ownership = match general.device_ownership_type.as_deref() {
        Some("Institutional") => Ownership::Corporate,
        Some("PersonalDeviceProfile" | "UserEnrollment" | "AccountDrivenUserEnrollment") => {
            Ownership::Personal
        }
        _ => Ownership::Unknown,
    };
    let device = Device {
        id: id.clone(),
        udid,
        serial,
        mdm_ids,
        wifi_mac: vendor_mac(hardware.wifi_mac_address.as_deref(), stats),
        model: non_empty(hardware.model_identifier.as_deref())
            .or_else(|| non_empty(hardware.model.as_deref())),
        os_version: non_empty(general.os_version.as_deref()),
        supervised: general.supervised,
        ownership,
        groups: Vec::new(),
        user: None,
    };
    let mut apps = Vec::new();
    for v in d.applications.unwrap_or_default() {
        let Ok(a) = serde_json::from_value::<JamfApp>(v) else {
            AdapterStats::inc(&stats.apps_skipped);
            continue;
        };
        let Some(bundle_id) = non_empty(a.identifier.as_deref()) else {
            AdapterStats::inc(&stats.apps_skipped);
            continue;
        };
        let managed = a
            .management_status
            .as_deref()
            .is_some_and(|s| s.trim().to_ascii_lowercase().starts_with("managed"));
        apps.push(InstalledApp {
            device_id: id.clone(),
            bundle_id,
            version: non_empty(a.short_version.as_deref())
                .or_else(|| non_empty(a.version.as_deref())),
            managed,
            first_seen: None,
            last_seen: None,
        });
    }
    Some((device, apps))
}

/// What a Jamf Pro webhook asks of nightjar.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JamfHook {
    /// The Jamf id of the device to re-pull, when the event names one.
    pub jamf_id: Option<String>,
    /// The reported event (checkin, enrolled, ...), when the webhook maps to one and the
    /// device's nightjar id is known from the webhook (UDID or serial).
    pub event: Option<LifecycleEvent>,
}

#[derive(Deserialize)]
struct HookEnvelope {
    webhook: HookMeta,
    #[serde(default)]
    event: Value,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct HookMeta {
    #[serde(default)]
    id: Option<Value>,
    webhook_event: String,
    #[serde(default)]
    event_timestamp: Option<u64>,
}

/// Parses a Jamf Pro webhook body (JSON). `Ok(None)` for well-formed events nightjar does
/// not use; `Err` for bodies that are not a Jamf webhook. `now_ns` is when it arrived.
pub fn parse_webhook(body: &[u8], now_ns: u64) -> Result<Option<JamfHook>, String> {
    let env: HookEnvelope = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    let kind = match env.webhook.webhook_event.as_str() {
        "MobileDeviceCheckIn" => Some(EventKind::Checkin),
        "MobileDeviceEnrolled" => Some(EventKind::Enrolled),
        "MobileDeviceUnEnrolled" => Some(EventKind::Unenrolled),
        "MobileDeviceInventoryCompleted" => Some(EventKind::InventoryUpdated),
        "MobileDeviceCommandCompleted" | "MobileDevicePushSent" => None,
        _ => return Ok(None),
    };
    let ev = &env.event;
    let text = |k: &str| {
        ev.get(k)
            .and_then(Value::as_str)
            .and_then(|s| non_empty(Some(s)))
    };
    let jamf_id = id_text(ev.get("jssID"));
    let udid = text("udid");
    let serial = text("serialNumber");
    let ts = env
        .webhook
        .event_timestamp
        .and_then(|ms| ms.checked_mul(1_000_000))
        .unwrap_or(now_ns);
    let id = device_id(udid.as_deref(), serial.as_deref(), NAME, jamf_id.as_deref());
    let event = match (kind, id) {
        (Some(kind), Some(device_id)) => Some(LifecycleEvent {
            id: format!(
                "jamf-{}",
                derive_event_id(&[
                    id_text(env.webhook.id.as_ref())
                        .unwrap_or_default()
                        .as_bytes(),
                    kind.as_str().as_bytes(),
                    device_id.as_bytes(),
                    &ts.to_le_bytes(),
                ])
            ),
            device_id,
            bundle_id: None,
            kind,
            version: text("osVersion").filter(|_| kind == EventKind::Enrolled),
            ts,
            observed_ts: now_ns.max(ts),
            source: NAME.into(),
            confidence: Confidence::Reported,
        }),
        _ => None,
    };
    if jamf_id.is_none() && event.is_none() {
        return Ok(None);
    }
    Ok(Some(JamfHook { jamf_id, event }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_a_documented_device() {
        let v: Value = serde_json::from_str(
            r#"{"mobileDeviceId": "7", "deviceType": "iOS",
                "general": {"udid": "00008110-000A1B2C3D4E5F60", "osVersion": "17.4.1",
                            "supervised": true, "deviceOwnershipType": "Institutional", "displayName": "x"},
                "hardware": {"serialNumber": "F2LXK0AAPLJM", "wifiMacAddress": "AA:BB:CC:00:11:22",
                             "model": "iPhone 15 Pro", "modelIdentifier": "iPhone16,1"},
                "applications": [
                  {"identifier": "com.example.chat", "name": "Chat", "version": "512", "shortVersion": "2.1",
                   "managementStatus": "Managed"},
                  {"identifier": "com.example.game", "version": "3", "managementStatus": "Unmanaged"},
                  {"name": "no identifier"}, 7]}"#,
        )
        .unwrap();
        let stats = AdapterStats::default();
        let (d, apps) = map_device(serde_json::from_value(v).unwrap(), &stats).unwrap();
        assert_eq!(d.id, "00008110-000A1B2C3D4E5F60");
        assert_eq!(d.mdm_ids.get("jamf").map(String::as_str), Some("7"));
        assert_eq!(d.model.as_deref(), Some("iPhone16,1"));
        assert_eq!(d.ownership, Ownership::Corporate);
        assert_eq!(d.wifi_mac.unwrap().to_string(), "aa:bb:cc:00:11:22");
        assert_eq!(apps.len(), 2);
        assert_eq!(
            (apps[0].version.as_deref(), apps[0].managed),
            (Some("2.1"), true)
        );
        assert_eq!(
            (apps[1].version.as_deref(), apps[1].managed),
            (Some("3"), false)
        );
        assert_eq!(stats.snapshot(0).apps_skipped, 2);
        let none: JamfDevice = serde_json::from_str(r#"{"general": {"udid": ""}}"#).unwrap();
        assert!(map_device(none, &stats).is_none());
    }

    #[test]
    fn webhooks() {
        let body = br#"{"webhook": {"id": 3, "name": "n", "webhookEvent": "MobileDeviceCheckIn",
                        "eventTimestamp": 1714550400000},
                        "event": {"jssID": 7, "udid": "U7", "serialNumber": "S7", "osVersion": "17.4"}}"#;
        let h = parse_webhook(body, 1_714_550_500_000_000_000)
            .unwrap()
            .unwrap();
        assert_eq!(h.jamf_id.as_deref(), Some("7"));
        let e = h.event.unwrap();
        assert_eq!((e.kind, e.device_id.as_str()), (EventKind::Checkin, "U7"));
        assert_eq!(e.ts, 1_714_550_400_000_000_000);
        assert_eq!(e.confidence, Confidence::Reported);
        assert_eq!(
            e.id,
            parse_webhook(body, 5).unwrap().unwrap().event.unwrap().id
        );
        let other = br#"{"webhook": {"webhookEvent": "ComputerAdded"}, "event": {}}"#;
        assert_eq!(parse_webhook(other, 1).unwrap(), None);
        assert!(parse_webhook(b"{}", 1).is_err());
        assert!(parse_webhook(b"\xff", 1).is_err());
    }

    proptest::proptest! {
        #[test]
        fn webhook_parser_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300),
                                       kind in "[A-Za-z]{0,30}", id in "\\PC{0,12}", ts in proptest::prelude::any::<u64>()) {
            let _ = parse_webhook(&bytes, ts);
            let body = format!(r#"{{"webhook":{{"webhookEvent":{kind:?},"eventTimestamp":{ts}}},"event":{{"jssID":{id:?},"udid":{id:?}}}}}"#);
            let _ = parse_webhook(body.as_bytes(), ts);
        }
    }
}
