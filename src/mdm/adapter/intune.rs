//! Microsoft Intune through Microsoft Graph v1.0: client-credentials token at
//! `{login_url}/{tenant}/oauth2/v2.0/token` (scope `{graph_url}/.default`), the iOS and
//! iPadOS managed devices (`GET /v1.0/deviceManagement/managedDevices` with
//! `$filter=operatingSystem eq 'iOS'`, then `'iPadOS'`, following `@odata.nextLink`), and
//! each device's detected apps (`GET /v1.0/deviceManagement/managedDevices/{id}/detectedApps`,
//! the v1.0 `detectedApps` relationship of `managedDevice`).
//!
//! Invariants: `@odata.nextLink` is followed only when it points under `graph_url` (the
//! bearer token never goes to another host) and at most [`MAX_PAGES`] times per listing;
//! a device id is used in a URL path only if it is a plain identifier.
//!
//! Limitation (documented in docs/mdm.md): `detectedApp` has no bundle-id property; its
//! `displayName` is used when it has the shape of a bundle id, other apps are skipped and
//! counted in `apps_skipped`. Detected apps carry no managed flag (`managed` is false).

use super::http::{encode_query, get_authed, Http, HttpOptions, TokenSource};
use super::{
    build_inventory, device_id, non_empty, read_secret, vendor_mac, AdapterError, AdapterStats,
};
use crate::config::IntuneConfig;
use crate::mdm::{Device, InstalledApp, Inventory, Ownership};
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Adapter name in logs, errors, `mdm_ids` and event sources.
pub const NAME: &str = "intune";

/// Most pages followed for one listing (10 000; Graph pages hold up to 1000 devices):
/// a server that links forever is cut off and the pull fails.
pub const MAX_PAGES: usize = 10_000;

/// Properties asked for (`$select`): what the model uses, nothing more.
const SELECT: &str = "id,deviceName,operatingSystem,osVersion,serialNumber,udid,wiFiMacAddress,model,isSupervised,managedDeviceOwnerType,userPrincipalName";

/// The Intune adapter.
pub struct Intune {
    graph: String,
    http: Http,
    tokens: TokenSource,
}

#[derive(Deserialize)]
struct Collection {
    value: Vec<Value>,
    #[serde(rename = "@odata.nextLink", default)]
    next_link: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct ManagedDevice {
    id: Option<String>,
    os_version: Option<String>,
    serial_number: Option<String>,
    udid: Option<String>,
    #[serde(rename = "wiFiMacAddress")]
    wifi_mac_address: Option<String>,
    model: Option<String>,
    is_supervised: Option<bool>,
    managed_device_owner_type: Option<String>,
    user_principal_name: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct DetectedApp {
    display_name: Option<String>,
    version: Option<String>,
}

impl Intune {
    /// An adapter for `cfg`; reads the client secret now.
    pub fn new(
        cfg: &IntuneConfig,
        opts: HttpOptions,
        stats: Arc<AdapterStats>,
    ) -> Result<Intune, AdapterError> {
        let secret = read_secret(&cfg.client_secret_file)?;
        let graph = cfg.graph_url.as_str().to_string();
        Ok(Intune {
            tokens: TokenSource::new(
                format!(
                    "{}/{}/oauth2/v2.0/token",
                    cfg.login_url.as_str(),
                    encode_query(&cfg.tenant_id)
                ),
                cfg.client_id.clone(),
                secret,
                Some(format!("{graph}/.default")),
            ),
            graph,
            http: Http::new(NAME, opts, stats)?,
        })
    }

    /// The adapter's counters.
    pub fn stats(&self) -> &Arc<AdapterStats> {
        self.http.stats()
    }

    /// Every item of a paged Graph collection, each page parsed by `parse`.
    async fn collect<T>(
        &self,
        first: String,
        parse: impl Fn(&[u8]) -> Result<GraphPage<T>, String>,
    ) -> Result<Vec<T>, AdapterError> {
        let mut out = Vec::new();
        let mut url = first;
        for _ in 0..MAX_PAGES {
            let body = get_authed(&self.http, &self.tokens, &url).await?;
            let page = parse(&body).map_err(|e| self.http.malformed(&url, e))?;
            out.extend(page.items);
            match page.next_link {
                None => return Ok(out),
                Some(next) => {
                    if !link_inside(&self.graph, &next) {
                        return Err(self
                            .http
                            .malformed(&url, "@odata.nextLink points outside graph_url"));
                    }
                    url = next;
                }
            }
        }
        Err(self
            .http
            .malformed(&url, format_args!("more than {MAX_PAGES} pages")))
    }

    /// One full pull: iOS and iPadOS devices with their detected apps.
    pub async fn pull(&self) -> Result<Inventory, AdapterError> {
        let stats = self.http.stats();
        let mut entries = Vec::new();
        for os in ["iOS", "iPadOS"] {
            let filter = format!("operatingSystem eq '{os}'");
            let url = format!(
                "{}/v1.0/deviceManagement/managedDevices?$filter={}&$select={}",
                self.graph,
                encode_query(&filter),
                encode_query(SELECT)
            );
            let devices = self
                .collect(url, |body| parse_devices_page(body, stats))
                .await?;
            for (device, graph_id) in devices {
                let apps_url = format!(
                    "{}/v1.0/deviceManagement/managedDevices/{graph_id}/detectedApps",
                    self.graph
                );
                let apps = self
                    .collect(apps_url, |body| parse_apps_page(body, &device.id, stats))
                    .await?;
                entries.push((device, apps));
            }
        }
        build_inventory(entries, NAME, stats)
    }
}

/// One page of a Graph collection: its items that mapped (the others are counted as
/// skipped) and the link to the next page.
#[derive(Debug)]
pub struct GraphPage<T> {
    /// The mapped items.
    pub items: Vec<T>,
    /// `@odata.nextLink`, not yet checked (see [`link_inside`]).
    pub next_link: Option<String>,
}

/// True if `next` (an `@odata.nextLink`) points under `graph` (the configured
/// `graph_url`): only then may the bearer token be sent to it.
pub fn link_inside(graph: &str, next: &str) -> bool {
    next.strip_prefix(graph)
        .is_some_and(|rest| rest.starts_with('/'))
}

fn parse_collection(body: &[u8]) -> Result<Collection, String> {
    serde_json::from_slice(body).map_err(|e| e.to_string())
}

/// Parses one page of `managedDevices`: each device that maps, with its Graph id; a
/// device without a usable id is skipped and counted in `stats`.
pub fn parse_devices_page(
    body: &[u8],
    stats: &AdapterStats,
) -> Result<GraphPage<(Device, String)>, String> {
    let c = parse_collection(body)?;
    let mut items = Vec::with_capacity(c.value.len());
    for v in c.value {
        match serde_json::from_value::<ManagedDevice>(v)
            .ok()
            .and_then(|md| map_device(&md, stats))
        {
            Some(d) => items.push(d),
            None => AdapterStats::inc(&stats.devices_skipped),
        }
    }
    Ok(GraphPage {
        items,
        next_link: c.next_link,
    })
}

/// Parses one page of a device's `detectedApps` (device `device_id`): each app whose
/// name is a bundle id; the others are skipped and counted in `stats`.
pub fn parse_apps_page(
    body: &[u8],
    device_id: &str,
    stats: &AdapterStats,
) -> Result<GraphPage<InstalledApp>, String> {
    let c = parse_collection(body)?;
    let mut items = Vec::with_capacity(c.value.len());
    for v in c.value {
        match serde_json::from_value::<DetectedApp>(v)
            .ok()
            .and_then(|a| map_app(a, device_id))
        {
            Some(app) => items.push(app),
            None => AdapterStats::inc(&stats.apps_skipped),
        }
    }
    Ok(GraphPage {
        items,
        next_link: c.next_link,
    })
}

/// Maps one managed device and returns its Graph id; `None` without a usable id.
fn map_device(md: &ManagedDevice, stats: &AdapterStats) -> Option<(Device, String)> {
    let graph_id = non_empty(md.id.as_deref())
        .filter(|id| id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))?;
    let udid = non_empty(md.udid.as_deref());
    let serial = non_empty(md.serial_number.as_deref());
    let id = device_id(udid.as_deref(), serial.as_deref(), NAME, Some(&graph_id))?;
    let mut mdm_ids = BTreeMap::new();
    mdm_ids.insert(NAME.to_string(), graph_id.clone());
    let ownership = match md.managed_device_owner_type.as_deref() {
        Some("company") => Ownership::Corporate,
        Some("personal") => Ownership::Personal,
        _ => Ownership::Unknown,
    };
    Some((
        Device {
            id,
            udid,
            serial,
            mdm_ids,
            wifi_mac: vendor_mac(md.wifi_mac_address.as_deref(), stats),
            model: non_empty(md.model.as_deref()),
            os_version: non_empty(md.os_version.as_deref()),
            supervised: md.is_supervised,
            ownership,
            groups: Vec::new(),
            user: non_empty(md.user_principal_name.as_deref()),
        },
        graph_id,
    ))
}

/// A detected app whose `displayName` has the shape of a bundle id (at least one dot,
/// only bundle-id characters).
fn map_app(a: DetectedApp, device_id: &str) -> Option<InstalledApp> {
    let name = non_empty(a.display_name.as_deref())?;
    if !name.contains('.') || crate::mdm::model::validate_bundle_id(&name).is_err() {
        return None;
    }
    Some(InstalledApp {
        device_id: device_id.into(),
        bundle_id: name,
        version: non_empty(a.version.as_deref()),
        managed: false,
        first_seen: None,
        last_seen: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_a_documented_device_and_apps() {
        let md: ManagedDevice = serde_json::from_str(
            r#"{"id": "7c6b3d2e-1f0a-4b9c-8d7e-6f5a4b3c2d1e", "deviceName": "iPad", "operatingSystem": "iPadOS",
                "osVersion": "17.5", "serialNumber": "DMPXK1", "udid": "", "wiFiMacAddress": "6C4A8513A6AA",
                "model": "iPad Pro", "isSupervised": false, "managedDeviceOwnerType": "personal",
                "userPrincipalName": "bo@example.com", "complianceState": "compliant"}"#,
        )
        .unwrap();
        let stats = AdapterStats::default();
        let (d, gid) = map_device(&md, &stats).unwrap();
        assert_eq!(d.id, "DMPXK1");
        assert_eq!(gid, "7c6b3d2e-1f0a-4b9c-8d7e-6f5a4b3c2d1e");
        assert_eq!(d.wifi_mac.unwrap().to_string(), "6c:4a:85:13:a6:aa");
        assert_eq!(d.ownership, Ownership::Personal);
        assert_eq!(d.supervised, Some(false));
        let bad: ManagedDevice = serde_json::from_str(r#"{"id": "../x"}"#).unwrap();
        assert!(map_device(&bad, &stats).is_none());
        let app = |n: &str| {
            map_app(
                DetectedApp {
                    display_name: Some(n.into()),
                    version: Some("1".into()),
                },
                "d",
            )
        };
        assert_eq!(
            app("com.example.chat").unwrap().bundle_id,
            "com.example.chat"
        );
        assert!(app("Microsoft Outlook").is_none());
        assert!(app("Notes").is_none());
    }
}
