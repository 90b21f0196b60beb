//! The app catalog: app posture and domains, shared SDK domains, Apple system domains,
//! its file format (`--catalog`, TOML or JSON) and the domain matcher.
//!
//! Owns [`AppProfile`] (and the persistence score rule), [`SharedSdk`],
//! [`CatalogBuilder`] (merges files) and the read-only [`Catalog`]. Invariants: every
//! stored domain is a validated lowercase hostname or `*.suffix` pattern; a lookup
//! costs one hash probe for the exact name plus one per label of the queried name,
//! allocates at most one lowercased copy, and never panics on any input string.
//! Merging is deterministic: files in name order, lists unioned in first-seen order.

use super::{json_error, line_col, read_text, MdmError};
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::hash::Hash;
use std::path::{Path, PathBuf};

/// Most files read from one catalog directory (1024): a catalog is a handful of
/// hand-written files plus imports; more is a wrong directory.
pub const MAX_CATALOG_FILES: usize = 1024;

/// Longest hostname (RFC 1035: 253 characters in text form).
pub const MAX_DOMAIN_LEN: usize = 253;

/// Longest DNS label (RFC 1035).
pub const MAX_LABEL_LEN: usize = 63;

/// The highest persistence score.
pub const MAX_PERSISTENCE_SCORE: u8 = 5;

/// A catalog domain: an exact hostname, or `*.suffix`, which matches the suffix itself
/// and every name below it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum DomainPattern {
    /// `chat.example.com`
    Exact(String),
    /// `*.example.com` (stored without `*.`).
    Suffix(String),
}

impl DomainPattern {
    /// Parses `name` or `*.name`; lowercases and drops one trailing dot.
    pub fn parse(s: &str) -> Result<DomainPattern, String> {
        match s.strip_prefix("*.") {
            Some(rest) => Ok(DomainPattern::Suffix(normalize_hostname(rest)?)),
            None => Ok(DomainPattern::Exact(normalize_hostname(s)?)),
        }
    }
}

impl fmt::Display for DomainPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DomainPattern::Exact(name) => f.write_str(name),
            DomainPattern::Suffix(name) => write!(f, "*.{name}"),
        }
    }
}

/// Validates a hostname and returns it lowercased without a trailing dot: labels of
/// 1–63 ASCII letters, digits, `-` or `_`, not starting or ending with `-`, at most
/// 253 characters, and a last label that is not all digits (so IPv4 addresses are
/// rejected; IPv6 fails on `:`).
pub(super) fn normalize_hostname(s: &str) -> Result<String, String> {
    let bad = |why: &str| format!("invalid domain {s:?}: {why}");
    let name = s.strip_suffix('.').unwrap_or(s).to_ascii_lowercase();
    if name.is_empty() {
        return Err(bad("empty"));
    }
    if name.len() > MAX_DOMAIN_LEN {
        return Err(bad("longer than 253 characters"));
    }
    for label in name.split('.') {
        if label.is_empty() || label.len() > MAX_LABEL_LEN {
            return Err(bad("empty or over-long label"));
        }
        if !label
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
        {
            return Err(bad("only letters, digits, '-' and '_' are allowed"));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(bad("label starts or ends with '-'"));
        }
    }
    if name
        .rsplit('.')
        .next()
        .is_some_and(|tld| tld.bytes().all(|c| c.is_ascii_digit()))
    {
        return Err(bad("numeric top-level label (an IP address?)"));
    }
    Ok(name)
}

/// A `UIBackgroundModes` value.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum BackgroundMode {
    /// `audio`: plays or records audio in the background (also AirPlay, PiP).
    Audio,
    /// `location`: receives location updates in the background.
    Location,
    /// `voip`: VoIP; PushKit can relaunch the app.
    Voip,
    /// `fetch`: background app refresh.
    Fetch,
    /// `remote-notification`: silent pushes wake the app.
    RemoteNotification,
    /// `processing`: BGProcessingTask.
    Processing,
    /// `external-accessory`: MFi accessory communication.
    ExternalAccessory,
    /// `bluetooth-central`: uses BLE accessories.
    BluetoothCentral,
    /// `bluetooth-peripheral`: acts as a BLE accessory.
    BluetoothPeripheral,
    /// `nearby-interaction`: Nearby Interaction sessions.
    NearbyInteraction,
    /// `push-to-talk`: Push to Talk framework.
    PushToTalk,
    /// `network-authentication`: Hotspot Helper.
    NetworkAuthentication,
    /// `newsstand-content`: deprecated Newsstand downloads.
    NewsstandContent,
    /// Any other value, kept verbatim and counted in [`CatalogStats`].
    Other(String),
}

impl BackgroundMode {
    const KNOWN: [(&'static str, BackgroundMode); 13] = [
        ("audio", BackgroundMode::Audio),
        ("location", BackgroundMode::Location),
        ("voip", BackgroundMode::Voip),
        ("fetch", BackgroundMode::Fetch),
        ("remote-notification", BackgroundMode::RemoteNotification),
        ("processing", BackgroundMode::Processing),
        ("external-accessory", BackgroundMode::ExternalAccessory),
        ("bluetooth-central", BackgroundMode::BluetoothCentral),
        ("bluetooth-peripheral", BackgroundMode::BluetoothPeripheral),
        ("nearby-interaction", BackgroundMode::NearbyInteraction),
        ("push-to-talk", BackgroundMode::PushToTalk),
        (
            "network-authentication",
            BackgroundMode::NetworkAuthentication,
        ),
        ("newsstand-content", BackgroundMode::NewsstandContent),
    ];

    /// Maps an Info.plist value; unknown values become `Other`.
    pub fn parse(s: &str) -> BackgroundMode {
        Self::KNOWN
            .iter()
            .find(|(name, _)| *name == s)
            .map_or_else(|| BackgroundMode::Other(s.into()), |(_, m)| m.clone())
    }

    /// The Info.plist value.
    pub fn as_str(&self) -> &str {
        match self {
            BackgroundMode::Other(s) => s,
            known => Self::KNOWN
                .iter()
                .find(|(_, m)| m == known)
                .map_or("", |(name, _)| name),
        }
    }
}

/// A value of the `com.apple.developer.networking.networkextension` entitlement, or
/// `PersonalVpn` for `com.apple.developer.networking.vpn.api`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum NetworkExtension {
    /// `packet-tunnel-provider` (VPN tunnel).
    PacketTunnelProvider,
    /// `app-proxy-provider` (per-app VPN proxy).
    AppProxyProvider,
    /// `content-filter-provider`.
    ContentFilterProvider,
    /// `dns-proxy`.
    DnsProxy,
    /// `dns-settings` (encrypted DNS configuration).
    DnsSettings,
    /// `relay`.
    Relay,
    /// `app-push-provider` (local push connectivity).
    AppPushProvider,
    /// `personal-vpn`: the personal VPN entitlement (built-in IKEv2/IPsec).
    PersonalVpn,
    /// Any other value (including `-systemextension` variants), kept and counted.
    Other(String),
}

impl NetworkExtension {
    const KNOWN: [(&'static str, NetworkExtension); 8] = [
        (
            "packet-tunnel-provider",
            NetworkExtension::PacketTunnelProvider,
        ),
        ("app-proxy-provider", NetworkExtension::AppProxyProvider),
        (
            "content-filter-provider",
            NetworkExtension::ContentFilterProvider,
        ),
        ("dns-proxy", NetworkExtension::DnsProxy),
        ("dns-settings", NetworkExtension::DnsSettings),
        ("relay", NetworkExtension::Relay),
        ("app-push-provider", NetworkExtension::AppPushProvider),
        ("personal-vpn", NetworkExtension::PersonalVpn),
    ];

    /// Maps an entitlement value; unknown values become `Other`.
    pub fn parse(s: &str) -> NetworkExtension {
        Self::KNOWN
            .iter()
            .find(|(name, _)| *name == s)
            .map_or_else(|| NetworkExtension::Other(s.into()), |(_, m)| m.clone())
    }

    /// The entitlement value.
    pub fn as_str(&self) -> &str {
        match self {
            NetworkExtension::Other(s) => s,
            known => Self::KNOWN
                .iter()
                .find(|(_, m)| m == known)
                .map_or("", |(name, _)| name),
        }
    }
}

/// An entry of `com.apple.developer.associated-domains`: `service:host[?mode=...]`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct AssociatedDomain {
    /// `applinks`, `webcredentials`, `activitycontinuation`, `appclips`, ...
    pub service: String,
    /// The host (may be `*.example.com`).
    pub domain: DomainPattern,
    /// The `mode` query (`developer`, `managed`), if any.
    pub mode: Option<String>,
}

impl AssociatedDomain {
    /// Parses `applinks:www.example.com?mode=developer`.
    pub fn parse(s: &str) -> Result<AssociatedDomain, String> {
        let (service, rest) = s
            .split_once(':')
            .filter(|(svc, _)| !svc.is_empty())
            .ok_or_else(|| format!("invalid associated domain {s:?}: expected service:host"))?;
        let (host, mode) = match rest.split_once("?mode=") {
            Some((host, mode)) => (host, Some(mode.to_string())),
            None => (rest, None),
        };
        Ok(AssociatedDomain {
            service: service.into(),
            domain: DomainPattern::parse(host)?,
            mode,
        })
    }
}

impl fmt::Display for AssociatedDomain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.service, self.domain)?;
        match &self.mode {
            Some(mode) => write!(f, "?mode={mode}"),
            None => Ok(()),
        }
    }
}

/// What is known about one app (one bundle id, optionally one version).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct AppProfile {
    /// CFBundleIdentifier.
    pub bundle_id: String,
    /// The version this profile is for; `None` = every version without its own profile.
    pub version: Option<String>,
    /// Display name.
    pub name: Option<String>,
    /// Category (`messaging`, `email`, `vpn`, ...), for baselines.
    pub category: Option<String>,
    /// Domains the app itself contacts.
    pub domains: Vec<DomainPattern>,
    /// `UIBackgroundModes`.
    pub background_modes: Vec<BackgroundMode>,
    /// Network extension entitlements.
    pub network_extensions: Vec<NetworkExtension>,
    /// Has the `aps-environment` entitlement (can receive pushes).
    pub push: bool,
    /// `com.apple.developer.associated-domains` (posture only; not used for matching,
    /// since iOS fetches these through Apple's CDN, not from the device).
    pub associated_domains: Vec<AssociatedDomain>,
    /// Known JA4 client fingerprints of the app.
    pub ja4: Vec<String>,
    /// Where this knowledge comes from (one entry per merged file or import).
    pub sources: Vec<String>,
}

impl AppProfile {
    /// The persistence score, 0–5: how plausibly the app can run and use the network
    /// without the user looking at it. Enrichment, never proof. The rule (also in
    /// docs/mdm.md), capped at [`MAX_PERSISTENCE_SCORE`]:
    /// - +2 for the `voip` background mode (PushKit relaunches the app at any time);
    /// - +2 for any network extension (a separate process that runs without the app);
    /// - +1 if pushes can wake it (`push` or `remote-notification`);
    /// - +1 for each of `audio`, `location`, `fetch`, `processing`, `push-to-talk`,
    ///   `bluetooth-central`, `bluetooth-peripheral`, `external-accessory`,
    ///   `nearby-interaction`, `network-authentication`;
    /// - 0 for `newsstand-content` (no longer honored) and unknown modes.
    pub fn persistence_score(&self) -> u8 {
        let has = |m: &BackgroundMode| self.background_modes.contains(m);
        let mut score = 0u32;
        if has(&BackgroundMode::Voip) {
            score += 2;
        }
        if !self.network_extensions.is_empty() {
            score += 2;
        }
        if self.push || has(&BackgroundMode::RemoteNotification) {
            score += 1;
        }
        let ones = self
            .background_modes
            .iter()
            .filter(|m| {
                !matches!(
                    m,
                    BackgroundMode::Voip
                        | BackgroundMode::RemoteNotification
                        | BackgroundMode::NewsstandContent
                        | BackgroundMode::Other(_)
                )
            })
            .count();
        score += u32::try_from(ones).unwrap_or(u32::MAX);
        u8::try_from(score.min(u32::from(MAX_PERSISTENCE_SCORE))).unwrap_or(MAX_PERSISTENCE_SCORE)
    }

    /// Adds `other` (same bundle id and version) into `self`: lists are unioned,
    /// `push` is or-ed, and `name`/`category` from `other` win when present. A later
    /// file can add posture but not remove it.
    fn merge(&mut self, other: AppProfile) {
        if other.name.is_some() {
            self.name = other.name;
        }
        if other.category.is_some() {
            self.category = other.category;
        }
        union(&mut self.domains, other.domains);
        union(&mut self.background_modes, other.background_modes);
        union(&mut self.network_extensions, other.network_extensions);
        self.push |= other.push;
        union(&mut self.associated_domains, other.associated_domains);
        union(&mut self.ja4, other.ja4);
        union(&mut self.sources, other.sources);
    }
}

/// Appends the items of `from` not already in `into`, keeping first-seen order.
fn union<T: Eq + Hash + Clone>(into: &mut Vec<T>, from: Vec<T>) {
    let mut seen: HashSet<T> = into.iter().cloned().collect();
    for item in from {
        if seen.insert(item.clone()) {
            into.push(item);
        }
    }
}

/// A third-party SDK embedded in many apps: its traffic says little about which app.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SharedSdk {
    /// Name (`Firebase Crashlytics`), unique in a catalog.
    pub name: String,
    /// Its domains.
    pub domains: Vec<DomainPattern>,
    /// Where this knowledge comes from.
    pub sources: Vec<String>,
}

/// Counters of a catalog build (anomalies are data).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CatalogStats {
    /// Catalog files read.
    pub files: usize,
    /// Files in a catalog directory skipped because they are not `.toml` or `.json`.
    pub skipped_files: usize,
    /// Background mode values not in [`BackgroundMode`] (kept as `Other`).
    pub unknown_background_modes: usize,
    /// Network extension values not in [`NetworkExtension`] (kept as `Other`).
    pub unknown_network_extensions: usize,
}

/// The syntax of a catalog file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CatalogFormat {
    /// `.toml`
    Toml,
    /// `.json`
    Json,
}

impl CatalogFormat {
    /// The format of a path, by extension.
    pub fn of_path(path: &Path) -> Option<CatalogFormat> {
        match path.extension()?.to_str()? {
            "toml" => Some(CatalogFormat::Toml),
            "json" => Some(CatalogFormat::Json),
            _ => None,
        }
    }
}

#[derive(Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields)]
struct RawCatalog {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    apps: Vec<RawApp>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    shared_sdks: Vec<RawSdk>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    system: Option<RawSystem>,
}

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct RawApp {
    bundle_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    category: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    domains: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    background_modes: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    network_extensions: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    push: Option<bool>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    associated_domains: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    ja4: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    source: Option<String>,
}

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct RawSdk {
    name: String,
    domains: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    source: Option<String>,
}

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct RawSystem {
    domains: Vec<String>,
}

/// Checks a JA4 client fingerprint's shape: `a_b_c` with `a` 10 ASCII alphanumerics
/// starting with `t`, `q` or `d`, and `b`, `c` 12 lowercase hex digits each.
fn validate_ja4(s: &str) -> Result<(), String> {
    let hex12 =
        |p: &str| p.len() == 12 && p.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'));
    let ok = match s.split('_').collect::<Vec<_>>().as_slice() {
        [a, b, c] => {
            a.len() == 10
                && a.bytes().all(|c| c.is_ascii_alphanumeric())
                && matches!(a.as_bytes().first(), Some(b't' | b'q' | b'd'))
                && hex12(b)
                && hex12(c)
        }
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(format!("invalid JA4 fingerprint {s:?}"))
    }
}

/// Collects catalog files and merges them into a [`Catalog`].
#[derive(Default)]
pub struct CatalogBuilder {
    apps: Vec<AppProfile>,
    app_index: HashMap<(String, Option<String>), usize>,
    sdks: Vec<SharedSdk>,
    sdk_index: HashMap<String, usize>,
    system: Vec<DomainPattern>,
    stats: CatalogStats,
}

impl CatalogBuilder {
    /// An empty builder.
    pub fn new() -> CatalogBuilder {
        CatalogBuilder::default()
    }

    /// Adds a catalog file (`.toml` or `.json`) or every such file of a directory, in
    /// file-name order (not recursive; other files are counted as skipped).
    pub fn add_path(&mut self, path: &Path) -> Result<(), MdmError> {
        let origin = path.display().to_string();
        let io = |source| MdmError::Io {
            origin: origin.clone(),
            source,
        };
        if !path.is_dir() {
            let format = CatalogFormat::of_path(path).ok_or_else(|| MdmError::Invalid {
                origin: origin.clone(),
                at: "file name".into(),
                msg: "catalog files must end in .toml or .json".into(),
            })?;
            return self.add_text(&read_text(path)?, format, &origin);
        }
        let mut files: Vec<PathBuf> = Vec::new();
        for entry in std::fs::read_dir(path).map_err(io)? {
            let entry_path = entry.map_err(io)?.path();
            if entry_path.is_dir() {
                continue;
            }
            if CatalogFormat::of_path(&entry_path).is_none() {
                self.stats.skipped_files += 1;
                continue;
            }
            if files.len() >= MAX_CATALOG_FILES {
                return Err(MdmError::Invalid {
                    origin,
                    at: "directory".into(),
                    msg: format!("more than {MAX_CATALOG_FILES} catalog files"),
                });
            }
            files.push(entry_path);
        }
        files.sort();
        for file in files {
            self.add_path(&file)?;
        }
        Ok(())
    }

    /// Adds one catalog document; `origin` names it in errors and is the default
    /// `source` of its entries.
    pub fn add_text(
        &mut self,
        text: &str,
        format: CatalogFormat,
        origin: &str,
    ) -> Result<(), MdmError> {
        let raw: RawCatalog = match format {
            CatalogFormat::Json => {
                serde_json::from_str(text).map_err(|e| json_error(origin, None, &e))?
            }
            CatalogFormat::Toml => toml::from_str(text).map_err(|e| {
                let (line, column) = e.span().map_or((1, 1), |span| line_col(text, span.start));
                MdmError::Syntax {
                    origin: origin.into(),
                    line,
                    column,
                    msg: e.message().trim().replace('\n', "; "),
                }
            })?,
        };
        self.stats.files += 1;
        self.add_raw(raw, origin)
    }

    fn add_raw(&mut self, raw: RawCatalog, origin: &str) -> Result<(), MdmError> {
        let invalid = |at: String, msg: String| MdmError::Invalid {
            origin: origin.into(),
            at,
            msg,
        };
        let domains = |list: Vec<String>, at: &str| -> Result<Vec<DomainPattern>, MdmError> {
            list.iter()
                .enumerate()
                .map(|(i, d)| {
                    DomainPattern::parse(d).map_err(|m| invalid(format!("{at}.domains[{i}]"), m))
                })
                .collect()
        };
        if let Some(system) = raw.system {
            let parsed = domains(system.domains, "system")?;
            union(&mut self.system, parsed);
        }
        for (i, sdk) in raw.shared_sdks.into_iter().enumerate() {
            let at = format!("shared_sdks[{i}]");
            if sdk.name.trim().is_empty() {
                return Err(invalid(format!("{at}.name"), "empty SDK name".into()));
            }
            let parsed = SharedSdk {
                domains: domains(sdk.domains, &at)?,
                sources: vec![sdk.source.unwrap_or_else(|| origin.to_string())],
                name: sdk.name,
            };
            match self
                .sdk_index
                .get(&parsed.name)
                .and_then(|&j| self.sdks.get_mut(j))
            {
                Some(existing) => {
                    union(&mut existing.domains, parsed.domains);
                    union(&mut existing.sources, parsed.sources);
                }
                None => {
                    self.sdk_index.insert(parsed.name.clone(), self.sdks.len());
                    self.sdks.push(parsed);
                }
            }
        }
        for (i, app) in raw.apps.into_iter().enumerate() {
            let at = format!("apps[{i}]");
            super::model::validate_bundle_id(&app.bundle_id)
                .map_err(|m| invalid(format!("{at}.bundle_id"), m))?;
            let at = format!("apps[{i}] ({})", app.bundle_id);
            let background_modes: Vec<BackgroundMode> = app
                .background_modes
                .iter()
                .map(|m| BackgroundMode::parse(m))
                .collect();
            let network_extensions: Vec<NetworkExtension> = app
                .network_extensions
                .iter()
                .map(|m| NetworkExtension::parse(m))
                .collect();
            let mut associated_domains = Vec::with_capacity(app.associated_domains.len());
            for (j, a) in app.associated_domains.iter().enumerate() {
                associated_domains.push(
                    AssociatedDomain::parse(a)
                        .map_err(|m| invalid(format!("{at}.associated_domains[{j}]"), m))?,
                );
            }
            for (j, f) in app.ja4.iter().enumerate() {
                validate_ja4(f).map_err(|m| invalid(format!("{at}.ja4[{j}]"), m))?;
            }
            if app.version.as_deref() == Some("") {
                return Err(invalid(
                    format!("{at}.version"),
                    "empty; omit the field instead".into(),
                ));
            }
            self.add_app(AppProfile {
                domains: domains(app.domains, &at)?,
                bundle_id: app.bundle_id,
                version: app.version,
                name: app.name,
                category: app.category,
                background_modes,
                network_extensions,
                push: app.push.unwrap_or(false),
                associated_domains,
                ja4: app.ja4,
                sources: vec![app.source.unwrap_or_else(|| origin.to_string())],
            });
        }
        Ok(())
    }

    /// Adds one profile (from an importer or an adapter), merging it into an existing
    /// profile of the same bundle id and version.
    pub fn add_app(&mut self, app: AppProfile) {
        self.stats.unknown_background_modes += app
            .background_modes
            .iter()
            .filter(|m| matches!(m, BackgroundMode::Other(_)))
            .count();
        self.stats.unknown_network_extensions += app
            .network_extensions
            .iter()
            .filter(|m| matches!(m, NetworkExtension::Other(_)))
            .count();
        let key = (app.bundle_id.clone(), app.version.clone());
        match self.app_index.get(&key).and_then(|&i| self.apps.get_mut(i)) {
            Some(existing) => existing.merge(app),
            None => {
                self.app_index.insert(key, self.apps.len());
                self.apps.push(app);
            }
        }
    }

    /// Indexes everything added so far.
    pub fn build(self) -> Catalog {
        let mut exact: HashMap<String, Vec<OwnerIdx>> = HashMap::new();
        let mut suffix: HashMap<String, Vec<OwnerIdx>> = HashMap::new();
        let mut add = |pattern: &DomainPattern, owner: OwnerIdx| {
            let (map, name) = match pattern {
                DomainPattern::Exact(n) => (&mut exact, n),
                DomainPattern::Suffix(n) => (&mut suffix, n),
            };
            let owners = map.entry(name.clone()).or_default();
            if !owners.contains(&owner) {
                owners.push(owner);
            }
        };
        for (i, app) in self.apps.iter().enumerate() {
            app.domains.iter().for_each(|d| add(d, OwnerIdx::App(i)));
        }
        for (i, sdk) in self.sdks.iter().enumerate() {
            sdk.domains.iter().for_each(|d| add(d, OwnerIdx::Sdk(i)));
        }
        self.system.iter().for_each(|d| add(d, OwnerIdx::System));
        let mut by_bundle: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, app) in self.apps.iter().enumerate() {
            by_bundle.entry(app.bundle_id.clone()).or_default().push(i);
        }
        Catalog {
            apps: self.apps,
            sdks: self.sdks,
            system: self.system,
            by_bundle,
            exact,
            suffix,
            stats: self.stats,
        }
    }
}

/// Loads a catalog file or directory.
pub fn load_catalog(path: &Path) -> Result<Catalog, MdmError> {
    let mut builder = CatalogBuilder::new();
    builder.add_path(path)?;
    Ok(builder.build())
}

/// Writes profiles as a JSON catalog document (for importer output); multiple
/// sources are joined with `; `.
pub fn apps_to_catalog_json(apps: &[AppProfile]) -> String {
    let raw = RawCatalog {
        apps: apps
            .iter()
            .map(|a| RawApp {
                bundle_id: a.bundle_id.clone(),
                version: a.version.clone(),
                name: a.name.clone(),
                category: a.category.clone(),
                domains: a.domains.iter().map(ToString::to_string).collect(),
                background_modes: a
                    .background_modes
                    .iter()
                    .map(|m| m.as_str().into())
                    .collect(),
                network_extensions: a
                    .network_extensions
                    .iter()
                    .map(|m| m.as_str().into())
                    .collect(),
                push: a.push.then_some(true),
                associated_domains: a
                    .associated_domains
                    .iter()
                    .map(ToString::to_string)
                    .collect(),
                ja4: a.ja4.clone(),
                source: (!a.sources.is_empty()).then(|| a.sources.join("; ")),
            })
            .collect(),
        ..RawCatalog::default()
    };
    // Serializing strings, lists and options cannot fail.
    serde_json::to_string_pretty(&raw).unwrap_or_default()
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum OwnerIdx {
    App(usize),
    Sdk(usize),
    System,
}

/// Who a matched domain belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Owner<'a> {
    /// An app's own domain.
    App(&'a AppProfile),
    /// A shared SDK's domain.
    Sdk(&'a SharedSdk),
    /// An Apple system service.
    System,
}

/// The result of [`Catalog::lookup`]: the best pattern and everyone who listed it.
#[derive(Clone, Copy, Debug)]
pub struct DomainMatch<'a> {
    /// The matched pattern's name (without `*.`).
    pub pattern: &'a str,
    /// True for an exact-name match, false for a `*.suffix` match.
    pub exact: bool,
    owners: &'a [OwnerIdx],
    catalog: &'a Catalog,
}

impl<'a> DomainMatch<'a> {
    /// Everyone who listed the pattern, apps first, in catalog order.
    pub fn owners(&self) -> impl Iterator<Item = Owner<'a>> + 'a {
        let catalog = self.catalog;
        self.owners.iter().filter_map(move |o| match *o {
            OwnerIdx::App(i) => catalog.apps.get(i).map(Owner::App),
            OwnerIdx::Sdk(i) => catalog.sdks.get(i).map(Owner::Sdk),
            OwnerIdx::System => Some(Owner::System),
        })
    }

    /// The apps that listed the pattern.
    pub fn apps(&self) -> impl Iterator<Item = &'a AppProfile> + 'a {
        self.owners().filter_map(|o| match o {
            Owner::App(a) => Some(a),
            _ => None,
        })
    }

    /// The shared SDKs that listed the pattern.
    pub fn sdks(&self) -> impl Iterator<Item = &'a SharedSdk> + 'a {
        self.owners().filter_map(|o| match o {
            Owner::Sdk(s) => Some(s),
            _ => None,
        })
    }

    /// True if the pattern is an Apple system domain.
    pub fn is_system(&self) -> bool {
        self.owners.contains(&OwnerIdx::System)
    }
}

/// A read-only, indexed app catalog.
#[derive(Debug)]
pub struct Catalog {
    apps: Vec<AppProfile>,
    sdks: Vec<SharedSdk>,
    system: Vec<DomainPattern>,
    by_bundle: HashMap<String, Vec<usize>>,
    exact: HashMap<String, Vec<OwnerIdx>>,
    suffix: HashMap<String, Vec<OwnerIdx>>,
    stats: CatalogStats,
}

impl Catalog {
    /// Who owns `host`: an exact entry beats any suffix, and the longest matching
    /// suffix wins. Case-insensitive; one trailing dot is ignored. `None` when nothing
    /// matches (or `host` is not a plausible name).
    pub fn lookup(&self, host: &str) -> Option<DomainMatch<'_>> {
        let host = host.strip_suffix('.').unwrap_or(host);
        if host.is_empty() || host.len() > MAX_DOMAIN_LEN {
            return None;
        }
        let name: Cow<'_, str> = if host.bytes().any(|c| c.is_ascii_uppercase()) {
            Cow::Owned(host.to_ascii_lowercase())
        } else {
            Cow::Borrowed(host)
        };
        if let Some(hit) = self.exact.get_key_value(name.as_ref()) {
            return Some(self.found(hit, true));
        }
        let mut rest: &str = &name;
        loop {
            if let Some(hit) = self.suffix.get_key_value(rest) {
                return Some(self.found(hit, false));
            }
            rest = rest.split_once('.')?.1;
        }
    }

    fn found<'a>(
        &'a self,
        (pattern, owners): (&'a String, &'a Vec<OwnerIdx>),
        exact: bool,
    ) -> DomainMatch<'a> {
        DomainMatch {
            pattern: pattern.as_str(),
            exact,
            owners: owners.as_slice(),
            catalog: self,
        }
    }

    /// The profile of `bundle_id` for `version`: the profile for exactly that version
    /// if there is one, else the version-less profile.
    pub fn app(&self, bundle_id: &str, version: Option<&str>) -> Option<&AppProfile> {
        let candidates = self.by_bundle.get(bundle_id)?;
        let pick = |v: Option<&str>| {
            candidates
                .iter()
                .filter_map(|&i| self.apps.get(i))
                .find(|a| a.version.as_deref() == v)
        };
        version.and_then(|v| pick(Some(v))).or_else(|| pick(None))
    }

    /// All app profiles, in the order first added.
    pub fn apps(&self) -> &[AppProfile] {
        &self.apps
    }

    /// All shared SDKs.
    pub fn shared_sdks(&self) -> &[SharedSdk] {
        &self.sdks
    }

    /// Apple system domains.
    pub fn system_domains(&self) -> &[DomainPattern] {
        &self.system
    }

    /// Build counters.
    pub fn stats(&self) -> CatalogStats {
        self.stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const DOC: &str = r#"{"apps": [{"bundle_id": "com.example.chat", "name": "Chat", "category": "messaging",
             "domains": ["chat.example.com", "*.chat-cdn.example.net", "*.example.com"],
             "background_modes": ["remote-notification", "voip", "teleport"], "network_extensions": [],
             "push": true, "associated_domains": ["applinks:chat.example.com"], "ja4": []}],
   "shared_sdks": [{"name": "Example Analytics", "domains": ["*.analytics.example.org", "events.example.com"]}],
   "system": {"domains": ["*.apple.com", "*.icloud.com", "*.push.apple.com", "mask.icloud.com"]}}"#;

    fn catalog(text: &str) -> Catalog {
        let mut b = CatalogBuilder::new();
        b.add_text(text, CatalogFormat::Json, "cat.json").unwrap();
        b.build()
    }

    fn err(text: &str, format: CatalogFormat) -> String {
        CatalogBuilder::new()
            .add_text(text, format, "cat")
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn parses_the_documented_example() {
        let c = catalog(DOC);
        let app = c.app("com.example.chat", None).unwrap();
        assert_eq!(app.name.as_deref(), Some("Chat"));
        assert_eq!(
            app.background_modes[2],
            BackgroundMode::Other("teleport".into())
        );
        assert_eq!(c.stats().unknown_background_modes, 1);
        assert_eq!(
            app.associated_domains[0].to_string(),
            "applinks:chat.example.com"
        );
        assert_eq!(app.sources, ["cat.json"]);
        assert_eq!(app.persistence_score(), 3);
        assert_eq!(c.shared_sdks()[0].name, "Example Analytics");
        assert_eq!(c.system_domains().len(), 4);
    }

    #[test]
    fn matcher_precedence() {
        let c = catalog(DOC);
        let m = c.lookup("Chat.Example.COM.").unwrap();
        assert!(m.exact);
        assert_eq!(m.apps().next().unwrap().bundle_id, "com.example.chat");
        // Exact SDK entry beats the app's *.example.com.
        let m = c.lookup("events.example.com").unwrap();
        assert!(m.exact);
        assert_eq!(m.sdks().next().unwrap().name, "Example Analytics");
        assert_eq!(m.apps().count(), 0);
        // Longest suffix wins, and a suffix matches its own apex.
        let m = c.lookup("img.chat-cdn.example.net").unwrap();
        assert_eq!((m.pattern, m.exact), ("chat-cdn.example.net", false));
        assert_eq!(
            c.lookup("chat-cdn.example.net").unwrap().pattern,
            "chat-cdn.example.net"
        );
        assert_eq!(c.lookup("x.example.com").unwrap().pattern, "example.com");
        assert_eq!(
            c.lookup("a.b.push.apple.com").unwrap().pattern,
            "push.apple.com"
        );
        assert!(c.lookup("gateway.icloud.com").unwrap().is_system());
        let m = c.lookup("mask.icloud.com").unwrap();
        assert!(m.exact && m.is_system());
        let m = c.lookup("x.analytics.example.org").unwrap();
        assert_eq!(
            m.owners().collect::<Vec<_>>(),
            [Owner::Sdk(&c.shared_sdks()[0])]
        );
        for miss in [
            "",
            ".",
            "example.net",
            "notapple.com",
            "com",
            "..",
            "a..b.c",
        ] {
            assert!(c.lookup(miss).is_none(), "{miss}");
        }
    }

    #[test]
    fn shared_patterns_list_every_owner() {
        let c = catalog(
            r#"{"apps": [{"bundle_id": "a", "domains": ["*.ms.example"]},
                        {"bundle_id": "b", "domains": ["*.MS.example."]}],
               "shared_sdks": [{"name": "s", "domains": ["*.ms.example"]}]}"#,
        );
        let m = c.lookup("login.ms.example").unwrap();
        let ids: Vec<&str> = m.apps().map(|a| a.bundle_id.as_str()).collect();
        assert_eq!(ids, ["a", "b"]);
        assert_eq!(m.sdks().count(), 1);
        assert!(!m.is_system());
    }

    #[test]
    fn merges_files_and_versions() {
        let mut b = CatalogBuilder::new();
        b.add_text(DOC, CatalogFormat::Json, "one.json").unwrap();
        b.add_text(
            r#"
[[apps]]
bundle_id = "com.example.chat"
name = "Chat Pro"
domains = ["api.example.io", "chat.example.com"]
network_extensions = ["packet-tunnel-provider", "future-thing"]
source = "entitlements"

[[apps]]
bundle_id = "com.example.chat"
version = "2.0"
domains = ["v2.example.io"]

[[shared_sdks]]
name = "Example Analytics"
domains = ["*.analytics2.example.org"]

[system]
domains = ["*.apple.com", "*.mzstatic.com"]
"#,
            CatalogFormat::Toml,
            "two.toml",
        )
        .unwrap();
        let c = b.build();
        let app = c.app("com.example.chat", Some("1.0")).unwrap();
        assert_eq!(app.name.as_deref(), Some("Chat Pro"));
        assert_eq!(app.category.as_deref(), Some("messaging"));
        assert_eq!(app.domains.len(), 4);
        assert!(app.push);
        assert_eq!(app.sources, ["one.json", "entitlements"]);
        assert_eq!(app.persistence_score(), 5);
        assert_eq!(c.stats().unknown_network_extensions, 1);
        assert_eq!(c.stats().files, 2);
        let v2 = c.app("com.example.chat", Some("2.0")).unwrap();
        assert_eq!(v2.version.as_deref(), Some("2.0"));
        assert!(c.app("com.example.chat", None).unwrap().version.is_none());
        assert!(c.app("com.other", None).is_none());
        assert_eq!(c.shared_sdks().len(), 1);
        assert_eq!(c.shared_sdks()[0].domains.len(), 3);
        assert_eq!(c.system_domains().len(), 5);
        assert!(c.lookup("v2.example.io").is_some());
    }

    #[test]
    fn bad_catalogs_name_the_place() {
        use CatalogFormat::{Json, Toml};
        let cases: &[(&str, CatalogFormat, &str)] = &[
            (
                r#"{"apps": [{"bundle_id": "a", "domains": ["ok.example", "bad domain"]}]}"#,
                Json,
                "cat: apps[0] (a).domains[1]: invalid domain \"bad domain\": only letters, digits, '-' and '_' are allowed",
            ),
            (
                r#"{"apps": [{"bundle_id": ""}]}"#,
                Json,
                "cat: apps[0].bundle_id: empty bundle id",
            ),
            (
                r#"{"apps": [{"bundle_id": "a", "domains": ["10.0.0.1"]}]}"#,
                Json,
                "cat: apps[0] (a).domains[0]: invalid domain \"10.0.0.1\": numeric top-level label (an IP address?)",
            ),
            (
                r#"{"apps": [{"bundle_id": "a", "ja4": ["t13d1516h2_8daaf6152771"]}]}"#,
                Json,
                "cat: apps[0] (a).ja4[0]: invalid JA4 fingerprint \"t13d1516h2_8daaf6152771\"",
            ),
            (
                r#"{"apps": [{"bundle_id": "a", "associated_domains": ["chat.example.com"]}]}"#,
                Json,
                "cat: apps[0] (a).associated_domains[0]: invalid associated domain \"chat.example.com\": expected service:host",
            ),
            (
                r#"{"system": {"domains": ["*."]}}"#,
                Json,
                "cat: system.domains[0]: invalid domain \"\": empty",
            ),
            (
                r#"{"shared_sdks": [{"name": " ", "domains": []}]}"#,
                Json,
                "cat: shared_sdks[0].name: empty SDK name",
            ),
            (
                "{\"apps\": [\n{\"bundle\": \"a\"}]}",
                Json,
                "cat:2:9: unknown field `bundle`, expected one of",
            ),
            (
                "[[apps]]\nbundle_id = \"a\"\ncolour = \"red\"\n",
                Toml,
                "cat:3:1: unknown field `colour`, expected one of",
            ),
            ("[[apps]\n", Toml, "cat:1:7: invalid table header"),
        ];
        for (text, format, want) in cases {
            let got = err(text, *format);
            assert!(got.starts_with(want), "got: {got}\nwant: {want}");
            assert!(!got.contains('\n'), "{got}");
        }
    }

    #[test]
    fn ja4_shape() {
        assert!(validate_ja4("t13d1516h2_8daaf6152771_e5627efa2ab1").is_ok());
        assert!(validate_ja4("q13d0310h3_55b375c5d22e_cd85d2d88918").is_ok());
        assert!(validate_ja4("x13d1516h2_8daaf6152771_e5627efa2ab1").is_err());
        assert!(validate_ja4("t13d1516h2_8DAAF6152771_e5627efa2ab1").is_err());
        assert!(validate_ja4("").is_err());
    }

    #[test]
    fn persistence_score_rule() {
        let with = |modes: &[&str], ne: bool, push: bool| AppProfile {
            background_modes: modes.iter().map(|m| BackgroundMode::parse(m)).collect(),
            network_extensions: if ne {
                vec![NetworkExtension::AppProxyProvider]
            } else {
                vec![]
            },
            push,
            ..AppProfile::default()
        };
        assert_eq!(with(&[], false, false).persistence_score(), 0);
        assert_eq!(with(&[], false, true).persistence_score(), 1);
        assert_eq!(
            with(&["remote-notification"], false, true).persistence_score(),
            1
        );
        assert_eq!(with(&["voip"], false, false).persistence_score(), 2);
        assert_eq!(with(&[], true, false).persistence_score(), 2);
        assert_eq!(
            with(&["audio", "fetch", "newsstand-content", "x"], false, false).persistence_score(),
            2
        );
        assert_eq!(
            with(&["voip", "audio", "fetch", "location"], true, true).persistence_score(),
            5
        );
    }

    #[test]
    fn json_output_reads_back() {
        let c = catalog(DOC);
        let text = apps_to_catalog_json(c.apps());
        let back = catalog(&text);
        let (a, b) = (&c.apps()[0], &back.apps()[0]);
        assert_eq!(
            (
                &a.domains,
                &a.background_modes,
                &a.associated_domains,
                a.push
            ),
            (
                &b.domains,
                &b.background_modes,
                &b.associated_domains,
                b.push
            )
        );
    }

    #[test]
    fn the_starter_catalog_loads() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/catalog");
        let c = load_catalog(&dir).unwrap();
        assert!(c.stats().files >= 3);
        assert_eq!(c.stats().unknown_background_modes, 0);
        assert!(c.apps().len() >= 10);
        assert!(c.lookup("gateway.push.apple.com").unwrap().is_system());
        assert!(c.lookup("mask-h2.icloud.com").unwrap().is_system());
        let slack = c.lookup("edgeapi.slack.com").unwrap();
        assert_eq!(
            slack.apps().next().unwrap().bundle_id,
            "com.tinyspeck.chatlyio"
        );
        let fb = c.lookup("graph.facebook.com").unwrap();
        assert!(fb.sdks().next().is_some());
        assert!(c
            .apps()
            .iter()
            .all(|a| !a.sources.is_empty() && !a.domains.is_empty()));
    }

    fn small_catalog() -> Catalog {
        catalog(DOC)
    }

    proptest! {
        #[test]
        fn lookup_never_panics(host in "\\PC{0,300}") {
            let _ = small_catalog().lookup(&host);
        }

        #[test]
        fn lookup_never_panics_on_name_like_input(host in "[a-zA-Z0-9.*_-]{0,80}") {
            let c = small_catalog();
            if let Some(m) = c.lookup(&host) {
                prop_assert!(host.to_ascii_lowercase().trim_end_matches('.').ends_with(m.pattern));
            }
        }

        #[test]
        fn domain_parse_never_panics(s in "\\PC{0,300}") {
            let _ = DomainPattern::parse(&s);
            let _ = AssociatedDomain::parse(&s);
        }
    }
}
