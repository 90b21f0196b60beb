//! Devices, installed apps and the read-only [`Inventory`] that indexes them.
//!
//! Invariants: an `Inventory` is built once by [`Inventory::new`], which rejects
//! duplicate device ids, udids, serials and Wi-Fi MACs (an ambiguous identity would
//! attribute traffic to the wrong device) and duplicate bundle ids on one device.
//! Devices are kept sorted by id and apps by bundle id, so iteration, the
//! fingerprint and the diff are deterministic.

use super::MdmError;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::str::FromStr;

/// Longest bundle id accepted (Apple limits CFBundleIdentifier to 155 characters;
/// 255 leaves room for vendor quirks while keeping tables small).
pub const MAX_BUNDLE_ID_LEN: usize = 255;

/// A 48-bit IEEE MAC address (the device's hardware Wi-Fi address).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MacAddr(pub [u8; 6]);

impl FromStr for MacAddr {
    type Err = String;

    /// Accepts `aa:bb:cc:dd:ee:ff`, `aa-bb-cc-dd-ee-ff` (any case) and bare
    /// `aabbccddeeff` (Intune's `wiFiMacAddress`).
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("invalid MAC address {s:?}");
        let hex: Vec<u8> = if s.len() == 17 {
            let sep = s.as_bytes().get(2).copied().ok_or_else(bad)?;
            if sep != b':' && sep != b'-' {
                return Err(bad());
            }
            let mut out = Vec::with_capacity(12);
            for (i, c) in s.bytes().enumerate() {
                if i % 3 == 2 {
                    if c != sep {
                        return Err(bad());
                    }
                } else {
                    out.push(c);
                }
            }
            out
        } else if s.len() == 12 {
            s.bytes().collect()
        } else {
            return Err(bad());
        };
        if !hex.iter().all(u8::is_ascii_hexdigit) {
            return Err(bad());
        }
        let mut mac = [0u8; 6];
        for (byte, pair) in mac.iter_mut().zip(hex.chunks(2)) {
            let text = std::str::from_utf8(pair).map_err(|_| bad())?;
            *byte = u8::from_str_radix(text, 16).map_err(|_| bad())?;
        }
        Ok(MacAddr(mac))
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

/// Who owns the device, as the MDM reports it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Ownership {
    /// Company-owned (often supervised, ADE-enrolled).
    Corporate,
    /// Employee-owned (BYOD, user enrollment).
    Personal,
    /// Not reported.
    #[default]
    Unknown,
}

impl Ownership {
    /// The file-format name.
    pub fn as_str(self) -> &'static str {
        match self {
            Ownership::Corporate => "corporate",
            Ownership::Personal => "personal",
            Ownership::Unknown => "unknown",
        }
    }
}

impl FromStr for Ownership {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "corporate" => Ok(Ownership::Corporate),
            "personal" => Ok(Ownership::Personal),
            "unknown" => Ok(Ownership::Unknown),
            _ => Err(format!(
                "unknown ownership {s:?} (expected corporate, personal or unknown)"
            )),
        }
    }
}

/// One managed device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Device {
    /// nightjar's stable device id (non-empty, unique in an inventory).
    pub id: String,
    /// Apple UDID, when the MDM reports it.
    pub udid: Option<String>,
    /// Hardware serial number.
    pub serial: Option<String>,
    /// The device's id in each MDM that knows it (`"jamf" → "1234"`).
    pub mdm_ids: BTreeMap<String, String>,
    /// Hardware Wi-Fi MAC (not the private per-network address iOS shows on Wi-Fi).
    pub wifi_mac: Option<MacAddr>,
    /// Model identifier or name (`iPhone15,2`).
    pub model: Option<String>,
    /// OS version (`17.4.1`).
    pub os_version: Option<String>,
    /// Supervised, when reported.
    pub supervised: Option<bool>,
    /// Corporate or personal.
    pub ownership: Ownership,
    /// MDM groups and business roles, sorted and unique.
    pub groups: Vec<String>,
    /// Assigned user (UPN, email or MDM username).
    pub user: Option<String>,
}

impl Device {
    /// A device known only by its id; every other field unknown.
    pub fn with_id(id: impl Into<String>) -> Device {
        Device {
            id: id.into(),
            udid: None,
            serial: None,
            mdm_ids: BTreeMap::new(),
            wifi_mac: None,
            model: None,
            os_version: None,
            supervised: None,
            ownership: Ownership::Unknown,
            groups: Vec::new(),
            user: None,
        }
    }
}

/// One app installed on one device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstalledApp {
    /// The device's nightjar id.
    pub device_id: String,
    /// CFBundleIdentifier.
    pub bundle_id: String,
    /// CFBundleShortVersionString, when reported.
    pub version: Option<String>,
    /// Installed by the MDM (managed app) rather than by the user.
    pub managed: bool,
    /// When the app was first seen installed (ns since the epoch).
    pub first_seen: Option<u64>,
    /// When the app was last seen installed (ns since the epoch).
    pub last_seen: Option<u64>,
}

/// SHA-256 over the content of an [`Inventory`] (devices, apps, versions; not
/// `first_seen`/`last_seen`, which change on every poll without a real change).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Fingerprint(pub [u8; 32]);

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&super::hex(&self.0))
    }
}

/// A read-only snapshot of the fleet: devices, their apps, and lookup indexes.
#[derive(Clone, Debug)]
pub struct Inventory {
    devices: Vec<Device>,
    /// `apps[i]` are the apps of `devices[i]`, sorted by bundle id.
    apps: Vec<Vec<InstalledApp>>,
    by_id: HashMap<String, usize>,
    by_udid: HashMap<String, usize>,
    by_serial: HashMap<String, usize>,
    by_mac: HashMap<MacAddr, usize>,
    fingerprint: Fingerprint,
}

impl Default for Inventory {
    fn default() -> Self {
        Inventory::empty()
    }
}

impl Inventory {
    /// Builds and indexes an inventory. `origin` names the source in errors (a file
    /// path or an adapter name). Each app's `device_id` is set to its device's id.
    pub fn new(
        entries: Vec<(Device, Vec<InstalledApp>)>,
        origin: &str,
    ) -> Result<Inventory, MdmError> {
        let mut entries = entries;
        entries.sort_by(|a, b| a.0.id.cmp(&b.0.id));
        let invalid = |at: String, msg: String| MdmError::Invalid {
            origin: origin.to_string(),
            at,
            msg,
        };
        let mut inv = Inventory::empty();
        for (idx, (mut device, mut apps)) in entries.into_iter().enumerate() {
            let at = format!("device {:?}", device.id);
            if device.id.is_empty() {
                return Err(invalid(at, "empty device id".into()));
            }
            let clash = |kind: &str, other: usize, inv: &Inventory| {
                let other = inv.devices.get(other).map_or("?", |d| d.id.as_str());
                invalid(at.clone(), format!("{kind} also used by device {other:?}"))
            };
            if inv.by_id.insert(device.id.clone(), idx).is_some() {
                return Err(invalid(at, "duplicate device id".into()));
            }
            if let Some(udid) = &device.udid {
                if let Some(o) = inv.by_udid.insert(udid.clone(), idx) {
                    return Err(clash("udid", o, &inv));
                }
            }
            if let Some(serial) = &device.serial {
                if let Some(o) = inv.by_serial.insert(serial.clone(), idx) {
                    return Err(clash("serial", o, &inv));
                }
            }
            if let Some(mac) = device.wifi_mac {
                if let Some(o) = inv.by_mac.insert(mac, idx) {
                    return Err(clash("wifi_mac", o, &inv));
                }
            }
            device.groups.sort();
            device.groups.dedup();
            apps.sort_by(|a, b| a.bundle_id.cmp(&b.bundle_id));
            for pair in apps.windows(2) {
                if let [a, b] = pair {
                    if a.bundle_id == b.bundle_id {
                        return Err(invalid(at, format!("app {:?} listed twice", a.bundle_id)));
                    }
                }
            }
            for app in &mut apps {
                validate_bundle_id(&app.bundle_id).map_err(|m| invalid(at.clone(), m))?;
                app.device_id.clone_from(&device.id);
            }
            inv.devices.push(device);
            inv.apps.push(apps);
        }
        inv.fingerprint = inv.compute_fingerprint();
        Ok(inv)
    }

    fn empty() -> Inventory {
        let mut inv = Inventory {
            devices: Vec::new(),
            apps: Vec::new(),
            by_id: HashMap::new(),
            by_udid: HashMap::new(),
            by_serial: HashMap::new(),
            by_mac: HashMap::new(),
            fingerprint: Fingerprint([0; 32]),
        };
        inv.fingerprint = inv.compute_fingerprint();
        inv
    }

    /// All devices, sorted by id.
    pub fn devices(&self) -> &[Device] {
        &self.devices
    }

    /// Device by nightjar id.
    pub fn device(&self, id: &str) -> Option<&Device> {
        self.by_id.get(id).and_then(|&i| self.devices.get(i))
    }

    /// Device by UDID.
    pub fn by_udid(&self, udid: &str) -> Option<&Device> {
        self.by_udid.get(udid).and_then(|&i| self.devices.get(i))
    }

    /// Device by serial number.
    pub fn by_serial(&self, serial: &str) -> Option<&Device> {
        self.by_serial
            .get(serial)
            .and_then(|&i| self.devices.get(i))
    }

    /// Device by hardware Wi-Fi MAC.
    pub fn by_wifi_mac(&self, mac: MacAddr) -> Option<&Device> {
        self.by_mac.get(&mac).and_then(|&i| self.devices.get(i))
    }

    /// Apps installed on a device, sorted by bundle id (empty if the device is unknown).
    pub fn apps(&self, device_id: &str) -> &[InstalledApp] {
        self.by_id
            .get(device_id)
            .and_then(|&i| self.apps.get(i))
            .map_or(&[], Vec::as_slice)
    }

    /// One app on one device.
    pub fn app(&self, device_id: &str, bundle_id: &str) -> Option<&InstalledApp> {
        let apps = self.apps(device_id);
        apps.binary_search_by(|a| a.bundle_id.as_str().cmp(bundle_id))
            .ok()
            .and_then(|i| apps.get(i))
    }

    /// Content hash: equal fingerprints mean nothing a diff would report changed.
    pub fn fingerprint(&self) -> Fingerprint {
        self.fingerprint
    }

    fn compute_fingerprint(&self) -> Fingerprint {
        let mut h = Sha256::new();
        // Every field is length-prefixed (or tagged) so distinct contents never
        // serialize to the same bytes.
        let mut put = |s: &str| {
            h.update((s.len() as u64).to_le_bytes());
            h.update(s.as_bytes());
        };
        for (d, apps) in self.devices.iter().zip(&self.apps) {
            put("device");
            put(&d.id);
            put(d.udid.as_deref().unwrap_or("\u{0}none"));
            put(d.serial.as_deref().unwrap_or("\u{0}none"));
            for (k, v) in &d.mdm_ids {
                put(k);
                put(v);
            }
            put("\u{0}end");
            put(&d
                .wifi_mac
                .map_or_else(|| "\u{0}none".into(), |m| m.to_string()));
            put(d.model.as_deref().unwrap_or("\u{0}none"));
            put(d.os_version.as_deref().unwrap_or("\u{0}none"));
            put(match d.supervised {
                Some(true) => "true",
                Some(false) => "false",
                None => "\u{0}none",
            });
            put(d.ownership.as_str());
            for g in &d.groups {
                put(g);
            }
            put("\u{0}end");
            put(d.user.as_deref().unwrap_or("\u{0}none"));
            for a in apps {
                put(&a.bundle_id);
                put(a.version.as_deref().unwrap_or("\u{0}none"));
                put(if a.managed { "managed" } else { "unmanaged" });
            }
            put("\u{0}end");
        }
        Fingerprint(h.finalize().into())
    }
}

/// Checks a bundle id: non-empty, at most [`MAX_BUNDLE_ID_LEN`], only ASCII letters,
/// digits, `.`, `-` and `_`.
pub(super) fn validate_bundle_id(id: &str) -> Result<(), String> {
    if id.is_empty() {
        return Err("empty bundle id".into());
    }
    if id.len() > MAX_BUNDLE_ID_LEN {
        return Err(format!("bundle id longer than {MAX_BUNDLE_ID_LEN} bytes"));
    }
    if !id
        .bytes()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'-' | b'_'))
    {
        return Err(format!("invalid bundle id {id:?}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device(id: &str) -> Device {
        Device::with_id(id)
    }

    fn app(bundle: &str) -> InstalledApp {
        InstalledApp {
            device_id: String::new(),
            bundle_id: bundle.into(),
            version: Some("1.0".into()),
            managed: true,
            first_seen: None,
            last_seen: None,
        }
    }

    #[test]
    fn mac_formats() {
        let want = MacAddr([0xaa, 0xbb, 0xcc, 0x01, 0x02, 0x03]);
        for s in ["aa:bb:cc:01:02:03", "AA-BB-CC-01-02-03", "AABBCC010203"] {
            assert_eq!(s.parse::<MacAddr>(), Ok(want), "{s}");
        }
        assert_eq!(want.to_string(), "aa:bb:cc:01:02:03");
        for bad in [
            "",
            "aa:bb:cc:01:02",
            "aa:bb-cc:01:02:03",
            "zz:bb:cc:01:02:03",
            "aa:bb:cc:01:02:+3",
            "aabbcc01020é",
            "aa.bb.cc.01.02.03",
        ] {
            assert!(bad.parse::<MacAddr>().is_err(), "{bad}");
        }
    }

    #[test]
    fn lookups_and_duplicates() {
        let mut d1 = device("d1");
        d1.udid = Some("U1".into());
        d1.serial = Some("S1".into());
        d1.wifi_mac = Some(MacAddr([2, 0, 0, 0, 0, 1]));
        let d2 = device("d2");
        let inv = Inventory::new(
            vec![(d2, vec![]), (d1, vec![app("b.app"), app("a.app")])],
            "t",
        )
        .unwrap();
        assert_eq!(inv.devices()[0].id, "d1");
        assert_eq!(inv.by_udid("U1").unwrap().id, "d1");
        assert_eq!(inv.by_serial("S1").unwrap().id, "d1");
        assert_eq!(
            inv.by_wifi_mac(MacAddr([2, 0, 0, 0, 0, 1])).unwrap().id,
            "d1"
        );
        assert_eq!(inv.app("d1", "a.app").unwrap().device_id, "d1");
        assert!(inv.app("d2", "a.app").is_none());
        assert!(inv.apps("nope").is_empty());

        let mut a = device("a");
        a.serial = Some("S".into());
        let mut b = device("b");
        b.serial = Some("S".into());
        let err = Inventory::new(vec![(a, vec![]), (b, vec![])], "inv.json").unwrap_err();
        assert_eq!(
            err.to_string(),
            "inv.json: device \"b\": serial also used by device \"a\""
        );
        let err = Inventory::new(vec![(device("x"), vec![app("a"), app("a")])], "t");
        assert!(err.unwrap_err().to_string().contains("listed twice"));
    }

    #[test]
    fn fingerprint_ignores_seen_times_only() {
        let build = |version: &str, seen: u64| {
            let mut a = app("a.app");
            a.version = Some(version.into());
            a.last_seen = Some(seen);
            Inventory::new(vec![(device("d"), vec![a])], "t").unwrap()
        };
        assert_eq!(build("1", 1).fingerprint(), build("1", 2).fingerprint());
        assert_ne!(build("1", 1).fingerprint(), build("2", 1).fingerprint());
        assert_eq!(build("1", 1).fingerprint().to_string().len(), 64);
    }

    #[test]
    fn bundle_ids() {
        assert!(validate_bundle_id("com.example.App-2_x").is_ok());
        assert!(validate_bundle_id("").is_err());
        assert!(validate_bundle_id("com example").is_err());
        assert!(validate_bundle_id(&"a".repeat(256)).is_err());
    }
}
