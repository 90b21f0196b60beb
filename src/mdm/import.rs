//! Importers that turn Apple artifacts into catalog knowledge.
//!
//! Owns (1) the iOS App Privacy Report reader (Settings › Privacy & Security › App
//! Privacy Report › Save App Activity: NDJSON, one record per line), which yields the
//! domains each app contacted, and (2) the posture importer, which reads an app's
//! Info.plist and its `codesign -d --entitlements :-` output. Invariants: output is
//! deterministic (bundle ids and domains sorted); records the importer does not use are
//! counted, never silently dropped; a malformed JSON line is an error naming the line.

use super::catalog::normalize_hostname;
use super::model::validate_bundle_id;
use super::plist::{parse_plist, PlistValue};
use super::{
    for_each_line, json_error, AppProfile, AssociatedDomain, BackgroundMode, DomainPattern,
    MdmError, NetworkExtension,
};
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};
use std::io::BufRead;

/// What to import from a privacy report.
#[derive(Clone, Copy, Debug, Default)]
pub struct PrivacyReportOptions {
    /// Also import `NonAppInitiated` domains (contacted by web content inside the app,
    /// mostly the sites the user browsed). Off by default.
    pub include_non_app_initiated: bool,
}

/// Counters of one privacy report import.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PrivacyReportStats {
    /// Non-blank lines read.
    pub lines: usize,
    /// `networkActivity` records imported.
    pub imported: usize,
    /// `access` records (sensor and data access), ignored.
    pub access_skipped: usize,
    /// `NonAppInitiated` records skipped (see [`PrivacyReportOptions`]).
    pub non_app_initiated_skipped: usize,
    /// `networkActivity` records whose domain is not a hostname (IP addresses) or
    /// whose bundle id is invalid, skipped.
    pub invalid_skipped: usize,
    /// Records of any other type (or none), skipped.
    pub other_skipped: usize,
}

/// The result of a privacy report import.
#[derive(Clone, Debug, Default)]
pub struct PrivacyReport {
    /// One profile per bundle id (sorted), holding exact domains (sorted) and the source.
    pub apps: Vec<AppProfile>,
    /// What was read and skipped.
    pub stats: PrivacyReportStats,
}

/// The fields of a privacy report record this importer reads; others are ignored
/// (Apple adds fields between iOS versions).
#[derive(Deserialize)]
struct RawRecord {
    #[serde(rename = "type")]
    kind: Option<String>,
    #[serde(rename = "bundleID")]
    bundle_id: Option<String>,
    domain: Option<String>,
    #[serde(rename = "initiatedType")]
    initiated_type: Option<String>,
}

/// Reads a privacy report; `origin` names it in errors and in each profile's source.
pub fn import_privacy_report<R: BufRead>(
    reader: R,
    origin: &str,
    options: PrivacyReportOptions,
) -> Result<PrivacyReport, MdmError> {
    let mut stats = PrivacyReportStats::default();
    let mut domains: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for_each_line(reader, origin, |line_no, line| {
        stats.lines += 1;
        let rec: RawRecord =
            serde_json::from_str(line).map_err(|e| json_error(origin, Some(line_no), &e))?;
        match rec.kind.as_deref() {
            Some("networkActivity") => {}
            Some("access") => {
                stats.access_skipped += 1;
                return Ok(());
            }
            _ => {
                stats.other_skipped += 1;
                return Ok(());
            }
        }
        if rec.initiated_type.as_deref() != Some("AppInitiated")
            && !options.include_non_app_initiated
        {
            stats.non_app_initiated_skipped += 1;
            return Ok(());
        }
        let (Some(bundle), Some(domain)) = (rec.bundle_id, rec.domain) else {
            stats.invalid_skipped += 1;
            return Ok(());
        };
        match (validate_bundle_id(&bundle), normalize_hostname(&domain)) {
            (Ok(()), Ok(name)) => {
                domains.entry(bundle).or_default().insert(name);
                stats.imported += 1;
            }
            _ => stats.invalid_skipped += 1,
        }
        Ok(())
    })?;
    let apps = domains
        .into_iter()
        .map(|(bundle_id, names)| AppProfile {
            bundle_id,
            domains: names.into_iter().map(DomainPattern::Exact).collect(),
            sources: vec![format!("privacy-report:{origin}")],
            ..AppProfile::default()
        })
        .collect();
    Ok(PrivacyReport { apps, stats })
}

/// Builds a profile from an app's Info.plist and, if given, its entitlements plist
/// (`codesign -d --entitlements :- App.app`). Reads `CFBundleIdentifier` (required),
/// `CFBundleDisplayName`/`CFBundleName`, `UIBackgroundModes`,
/// `com.apple.developer.networking.networkextension`,
/// `com.apple.developer.networking.vpn.api` (→ `personal-vpn`), `aps-environment`
/// (→ `push`) and `com.apple.developer.associated-domains`. The profile is
/// version-less (posture applies to every version until re-imported).
pub fn profile_from_plists(
    info_plist: &[u8],
    info_origin: &str,
    entitlements: Option<(&[u8], &str)>,
) -> Result<AppProfile, MdmError> {
    let info = parse_plist(info_plist, info_origin)?;
    let invalid = |origin: &str, at: &str, msg: String| MdmError::Invalid {
        origin: origin.into(),
        at: at.into(),
        msg,
    };
    let bundle_id = info
        .get("CFBundleIdentifier")
        .and_then(PlistValue::as_str)
        .ok_or_else(|| invalid(info_origin, "CFBundleIdentifier", "missing".into()))?
        .to_string();
    validate_bundle_id(&bundle_id).map_err(|m| invalid(info_origin, "CFBundleIdentifier", m))?;
    let name = ["CFBundleDisplayName", "CFBundleName"]
        .iter()
        .find_map(|k| info.get(k).and_then(PlistValue::as_str))
        .map(str::to_string);
    let background_modes = info
        .get("UIBackgroundModes")
        .map(PlistValue::strings)
        .unwrap_or_default()
        .into_iter()
        .map(BackgroundMode::parse)
        .collect();
    let mut profile = AppProfile {
        bundle_id,
        name,
        background_modes,
        sources: vec![format!("info-plist:{info_origin}")],
        ..AppProfile::default()
    };
    if let Some((bytes, origin)) = entitlements {
        let ent = parse_plist(bytes, origin)?;
        profile.network_extensions = ent
            .get("com.apple.developer.networking.networkextension")
            .map(PlistValue::strings)
            .unwrap_or_default()
            .into_iter()
            .map(NetworkExtension::parse)
            .collect();
        let vpn = ent
            .get("com.apple.developer.networking.vpn.api")
            .map(PlistValue::strings)
            .unwrap_or_default();
        if vpn.contains(&"allow-vpn") {
            profile
                .network_extensions
                .push(NetworkExtension::PersonalVpn);
        }
        profile.push = ent
            .get("aps-environment")
            .and_then(PlistValue::as_str)
            .is_some_and(|env| !env.is_empty());
        let key = "com.apple.developer.associated-domains";
        for (i, entry) in ent
            .get(key)
            .map(PlistValue::strings)
            .unwrap_or_default()
            .iter()
            .enumerate()
        {
            let parsed = AssociatedDomain::parse(entry)
                .map_err(|m| invalid(origin, &format!("{key}[{i}]"), m))?;
            profile.associated_domains.push(parsed);
        }
        profile.sources.push(format!("entitlements:{origin}"));
    }
    Ok(profile)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::{Path, PathBuf};

    fn data(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data/mdm")
            .join(name)
    }

    fn read(name: &str) -> Vec<u8> {
        std::fs::read(data(name)).unwrap()
    }

    #[test]
    fn privacy_report_example() {
        let file =
            std::fs::File::open(data("App_Privacy_Report_v4_2024-05-02T09_12_44.ndjson")).unwrap();
        let report = import_privacy_report(
            std::io::BufReader::new(file),
            "report.ndjson",
            PrivacyReportOptions::default(),
        )
        .unwrap();
        let s = report.stats;
        assert_eq!(
            s.lines,
            s.imported
                + s.access_skipped
                + s.non_app_initiated_skipped
                + s.invalid_skipped
                + s.other_skipped
        );
        assert!(
            s.access_skipped >= 3 && s.non_app_initiated_skipped >= 1 && s.invalid_skipped >= 1
        );
        let ids: Vec<&str> = report.apps.iter().map(|a| a.bundle_id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "com.example.fieldnotes",
                "com.tinyspeck.chatlyio",
                "net.whatsapp.WhatsApp"
            ]
        );
        let slack = &report.apps[1];
        let names: Vec<String> = slack.domains.iter().map(ToString::to_string).collect();
        assert_eq!(
            names,
            [
                "edgeapi.slack.com",
                "files.slack.com",
                "wss-primary.slack.com"
            ]
        );
        assert_eq!(slack.sources, ["privacy-report:report.ndjson"]);
        // The NonAppInitiated (web content) domain only appears when asked for.
        let all = import_privacy_report(
            &read("App_Privacy_Report_v4_2024-05-02T09_12_44.ndjson")[..],
            "r",
            PrivacyReportOptions {
                include_non_app_initiated: true,
            },
        )
        .unwrap();
        assert_eq!(all.stats.non_app_initiated_skipped, 0);
        assert!(all.apps.iter().any(|a| a
            .domains
            .contains(&DomainPattern::Exact("www.example.org".into()))));
    }

    #[test]
    fn privacy_report_bad_line_names_it() {
        let text = "{\"type\":\"access\"}\n{\"type\":\"networkActivity\",\"domain\":5}\n";
        let err =
            import_privacy_report(text.as_bytes(), "r.ndjson", PrivacyReportOptions::default())
                .unwrap_err();
        assert!(err.to_string().starts_with("r.ndjson:2:"), "{err}");
    }

    #[test]
    fn posture_from_plists() {
        let p = profile_from_plists(
            &read("FieldNotes-Info.plist"),
            "Info.plist",
            Some((&read("FieldNotes-entitlements.plist"), "ent.plist")),
        )
        .unwrap();
        assert_eq!(p.bundle_id, "com.example.fieldnotes");
        assert_eq!(p.name.as_deref(), Some("Field Notes"));
        assert_eq!(
            p.background_modes,
            [
                BackgroundMode::Audio,
                BackgroundMode::Fetch,
                BackgroundMode::RemoteNotification,
                BackgroundMode::Voip
            ]
        );
        assert_eq!(
            p.network_extensions,
            [
                NetworkExtension::PacketTunnelProvider,
                NetworkExtension::AppProxyProvider
            ]
        );
        assert!(p.push);
        assert_eq!(p.associated_domains.len(), 2);
        assert_eq!(
            p.associated_domains[1].to_string(),
            "webcredentials:*.fieldnotes.example.com"
        );
        assert_eq!(p.persistence_score(), 5);
        assert_eq!(
            p.sources,
            ["info-plist:Info.plist", "entitlements:ent.plist"]
        );

        // Without entitlements: posture from Info.plist only.
        let bare = profile_from_plists(&read("FieldNotes-Info.plist"), "Info.plist", None).unwrap();
        assert!(!bare.push && bare.network_extensions.is_empty());
        assert_eq!(bare.persistence_score(), 5);
    }

    proptest::proptest! {
        #[test]
        fn privacy_report_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
            let _ = import_privacy_report(&bytes[..], "p", PrivacyReportOptions::default());
        }

        #[test]
        fn posture_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
            let _ = profile_from_plists(&bytes, "i", Some((&bytes, "e")));
        }
    }

    #[test]
    fn posture_errors() {
        let err = profile_from_plists(b"<plist><dict/></plist>", "Info.plist", None).unwrap_err();
        assert_eq!(err.to_string(), "Info.plist: CFBundleIdentifier: missing");
        let info = b"<plist><dict><key>CFBundleIdentifier</key><string>a.b</string></dict></plist>";
        let ent = b"<plist><dict><key>com.apple.developer.associated-domains</key><array><string>nocolon</string></array></dict></plist>";
        let err = profile_from_plists(info, "i", Some((ent, "e"))).unwrap_err();
        assert!(err.to_string().starts_with(
            "e: com.apple.developer.associated-domains[0]: invalid associated domain"
        ));
    }
}
