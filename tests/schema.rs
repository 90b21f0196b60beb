//! Schema conformance: docs/schema.md against the records the binary writes.
//!
//! The field tables of docs/schema.md are the contract. This test reads them (the
//! first column's backticked dotted path, the second column's JSON type; the record
//! types a table belongs to are the backticked `nightjar.<type>` names of the nearest
//! `##` heading, or of a `###` heading that names some), replays captures (every
//! capture under `pcaps/`, a fixed list from the shared conformance corpus, a truncated
//! capture and a replay with a short active timeout), flattens every record into dotted
//! paths and checks:
//! - every emitted field is documented for its record type, with the documented type;
//! - every documented field of `nightjar.flow`, `nightjar.dns` and `nightjar.stats` is
//!   emitted at least once (when the corpus is there), except [`NOT_EMITTED`].
//!
//! Flattening: objects recurse (`source.ip`); an array is a field at its own path and,
//! if it holds objects, their members are fields at `path[].member`; a field documented
//! as a map (type `object (...)`, keys are data) stops the recursion.

use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// Record types whose every documented field must show up in the replays.
const COVERED_TYPES: [&str; 3] = ["nightjar.flow", "nightjar.dns", "nightjar.stats"];

/// Corpus captures replayed (paths under the corpus root), each with what it is there for.
const CORPUS: &[&str] = &[
    // TLS 1.2 with a certificate
    "zeek/testing/btest/Traces/tls/ecdsa-cert.pcap",
    // TLS 1.2 certificate with SANs, QinQ, PPPoE
    "zeek/testing/btest/Traces/pppoe-over-qinq.pcap",
    // TLS 1.3 resumed with a PSK
    "zeek/testing/btest/Traces/tls/tls13_psk_succesfull.pcap",
    // TLS 1.3 and QUIC browser traffic, DNS HTTPS records with ECH
    "foxio-ja4/pcap/tls3.pcapng",
    // TLS 1.2 with ALPN over IPv6, NULL link type
    "arkime/tests/pcap/tls-alpn-h2.pcap",
    // TLS 1.3, Linux SLL2
    "zeek/testing/btest/Traces/tls/openjdk-25.0.2-zeek.org.pcap",
    // QUIC Initial decryption
    "mercury/unit_tests/pcaps/quic_decry.pcap",
    // QUIC Retry, TLS HelloRetryRequest
    "ndpi/tests/cfgs/default/pcap/quic-24.pcap",
    // QUIC version negotiation
    "ndpi/tests/cfgs/default/pcap/quic-28.pcap",
    // DNS HTTPS answer with SVCB parameters
    "arkime/tests/pcap/dns-https.pcap",
    // DNS A answers
    "tcpdump/tests/dns_udp_2.pcap",
    // DNS, one VLAN tag
    "suricata-verify/tests/dns/dns-dcerpc-reversed/input.pcap",
    // names from DNS for a flow, GRE
    "zeek/testing/btest/Traces/tunnels/gre-over-udp-4754.pcap",
    // VN-Tag between VLAN tags, snapped frame
    "zeek/testing/btest/Traces/vntag_vlan_sandwich_clean.pcap",
    // GRE and ERSPAN
    "arkime/tests/pcap/gre-erspan.pcap",
    // VXLAN
    "arkime/tests/pcap/vxlan.pcap",
    // Geneve
    "zeek/testing/btest/Traces/tunnels/geneve.pcap",
    // IPv4 in IPv6, TLS
    "ndpi/tests/cfgs/default/pcap/4in6tunnel.pcap",
    // GTP-U and Teredo
    "zeek/testing/btest/Traces/tunnels/gtp/gtp8_teredo.pcap",
    // MPLS in a VLAN
    "zeek/testing/btest/Traces/mpls-in-vlan.pcap",
    // IP fragments
    "arkime/tests/pcap/socks5-http-302-frag.pcap",
];

/// Corpus capture replayed a second time with [`SHORT_TIMEOUTS`]: a long TLS flow.
const INTERIM_CAPTURE: &str = "zeek/testing/btest/Traces/pppoe-over-qinq.pcap";

/// Configuration that makes interim records (a 278 s flow, 1 s active timeout) and
/// evictions (a tiny flow table).
const SHORT_TIMEOUTS: &str = "[flow]\nactive_timeout = \"1s\"\nmax_flows = 2\n";

/// Documented fields the replays are not expected to emit, with the reason.
const NOT_EMITTED: &[(&str, &str)] = &[
    (
        "nightjar.tls.truncated",
        "needs a hello cut short by a capture gap or a bound; no capture of the set has one",
    ),
    (
        "nightjar.tls.client.malformed_extensions",
        "needs a ClientHello with an extension whose content does not parse",
    ),
    (
        "dns.answers[].svcb.no_default_alpn",
        "no HTTPS/SVCB answer of the set carries no-default-alpn",
    ),
    (
        "dns.answers[].svcb.port",
        "no HTTPS/SVCB answer of the set carries port",
    ),
    (
        "dns.answers[].svcb.other_keys",
        "no HTTPS/SVCB answer of the set carries mandatory or a private key",
    ),
];

/// The JSON type of a documented field (the schema's "type" column).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum JsonType {
    String,
    Integer,
    Number,
    Boolean,
    StringArray,
    IntegerArray,
    ObjectArray,
    /// An object whose keys are data (`object (reason → count)`).
    Map,
}

impl JsonType {
    fn parse(s: &str) -> Option<JsonType> {
        Some(match s {
            "string" => JsonType::String,
            "integer" => JsonType::Integer,
            "number" => JsonType::Number,
            "boolean" => JsonType::Boolean,
            "array of strings" => JsonType::StringArray,
            "array of integers" => JsonType::IntegerArray,
            "array of objects" => JsonType::ObjectArray,
            _ if s.starts_with("object (") => JsonType::Map,
            _ => return None,
        })
    }

    fn matches(self, v: &Value) -> bool {
        let int = |v: &Value| v.is_i64() || v.is_u64();
        let all = |f: &dyn Fn(&Value) -> bool| v.as_array().is_some_and(|a| a.iter().all(f));
        match self {
            JsonType::String => v.is_string(),
            JsonType::Integer => int(v),
            JsonType::Number => v.is_number(),
            JsonType::Boolean => v.is_boolean(),
            JsonType::StringArray => all(&Value::is_string),
            JsonType::IntegerArray => all(&int),
            JsonType::ObjectArray => all(&Value::is_object),
            JsonType::Map => v.is_object(),
        }
    }
}

/// The documented fields: (record type, dotted path) → type.
type Schema = BTreeMap<(String, String), JsonType>;

fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Backticked spans of a line.
fn backticked(line: &str) -> impl Iterator<Item = &str> {
    line.split('`').skip(1).step_by(2)
}

/// A record type name: `nightjar.<word>`.
fn is_record_type(s: &str) -> bool {
    s.strip_prefix("nightjar.")
        .is_some_and(|t| !t.is_empty() && t.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
}

fn is_field_path(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '@' | '[' | ']'))
}

/// Parses the field tables of the schema document.
fn parse_schema(doc: &str) -> Result<Schema, Vec<String>> {
    let mut schema = Schema::new();
    let mut errors = Vec::new();
    let mut section: Vec<String> = Vec::new();
    let mut subsection: Option<Vec<String>> = None;
    for (n, line) in doc.lines().enumerate() {
        let line = line.trim();
        if line.starts_with('#') {
            let level = line.chars().take_while(|&c| c == '#').count();
            let types: Vec<String> = backticked(line)
                .filter(|s| is_record_type(s))
                .map(String::from)
                .collect();
            if level <= 2 {
                section = types;
                subsection = None;
            } else if !types.is_empty() {
                subsection = Some(types);
            } else {
                subsection = None;
            }
            continue;
        }
        let types = subsection.as_ref().unwrap_or(&section);
        if !line.starts_with('|') || types.is_empty() {
            continue;
        }
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        let (Some(first), Some(second)) = (cells.get(1), cells.get(2)) else {
            continue;
        };
        let Some(path) = backticked(first).next().filter(|p| is_field_path(p)) else {
            continue; // header or separator row
        };
        let Some(ty) = JsonType::parse(second) else {
            errors.push(format!("line {}: `{path}`: unknown type {second:?}", n + 1));
            continue;
        };
        for t in types {
            if schema.insert((t.clone(), path.to_string()), ty).is_some() {
                errors.push(format!("line {}: `{path}` documented twice for {t}", n + 1));
            }
        }
    }
    if errors.is_empty() {
        Ok(schema)
    } else {
        Err(errors)
    }
}

fn schema() -> &'static Schema {
    static SCHEMA: OnceLock<Schema> = OnceLock::new();
    SCHEMA.get_or_init(|| {
        let path = manifest_dir().join("docs/schema.md");
        let doc = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        parse_schema(&doc).unwrap_or_else(|errors| {
            panic!("docs/schema.md does not parse:\n  {}", errors.join("\n  "))
        })
    })
}

/// Flattens a record into (dotted path, value) pairs; `maps` are the paths documented as maps.
fn flatten<'a>(
    v: &'a Value,
    path: &str,
    maps: &BTreeSet<&str>,
    out: &mut Vec<(String, &'a Value)>,
) {
    if maps.contains(path) {
        out.push((path.to_string(), v));
        return;
    }
    match v {
        Value::Object(m) if !m.is_empty() => {
            for (k, x) in m {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                flatten(x, &p, maps, out);
            }
        }
        Value::Array(a) => {
            out.push((path.to_string(), v));
            for x in a.iter().filter(|x| x.is_object()) {
                flatten(x, &format!("{path}[]"), maps, out);
            }
        }
        _ => out.push((path.to_string(), v)),
    }
}

/// One run of the binary.
struct Replay {
    label: String,
    /// Flags before the captures (MDM inputs).
    flags: Vec<String>,
    args: Vec<PathBuf>,
    config: Option<PathBuf>,
    /// The capture is broken on purpose: the run fails, after writing its records.
    expect_failure: bool,
}

/// What all replays produced.
#[derive(Default)]
struct Observed {
    /// (record type, path) → the first replay that emitted it.
    fields: BTreeMap<(String, String), String>,
    /// Fields with a value whose JSON type differs from the documented one: the first such value.
    wrong_types: BTreeMap<(String, String), String>,
    /// Runs that failed, lines that are not JSON, records without a known type.
    errors: Vec<String>,
    corpus: bool,
    records: usize,
}

fn replay(r: &Replay, schema: &Schema, obs: &mut Observed) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_nightjar"));
    cmd.args(["replay", "--quiet", "--dns-records"]);
    if let Some(c) = &r.config {
        cmd.arg("--config").arg(c);
    }
    cmd.args(&r.flags);
    let out = match cmd.args(&r.args).output() {
        Ok(o) => o,
        Err(e) => {
            obs.errors
                .push(format!("{}: cannot run nightjar: {e}", r.label));
            return;
        }
    };
    if out.status.success() == r.expect_failure {
        obs.errors.push(format!(
            "{}: exit status {} (expected {}): {}",
            r.label,
            out.status,
            if r.expect_failure {
                "failure"
            } else {
                "success"
            },
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    for line in stdout.lines() {
        let rec: Value = match serde_json::from_str(line) {
            Ok(v) => v,
            Err(e) => {
                obs.errors
                    .push(format!("{}: not JSON ({e}): {line}", r.label));
                continue;
            }
        };
        obs.records += 1;
        let Some(dataset) = rec.pointer("/event/dataset").and_then(Value::as_str) else {
            obs.errors
                .push(format!("{}: record without event.dataset: {line}", r.label));
            continue;
        };
        let maps: BTreeSet<&str> = schema
            .iter()
            .filter(|((t, _), ty)| t == dataset && **ty == JsonType::Map)
            .map(|((_, p), _)| p.as_str())
            .collect();
        let mut fields = Vec::new();
        flatten(&rec, "", &maps, &mut fields);
        for (path, value) in fields {
            let key = (dataset.to_string(), path);
            if let Some(ty) = schema.get(&key) {
                if !ty.matches(value) {
                    obs.wrong_types.entry(key.clone()).or_insert_with(|| {
                        format!(
                            "{} `{}`: documented {ty:?}, got {value} (in {})",
                            key.0, key.1, r.label
                        )
                    });
                }
            }
            obs.fields.entry(key).or_insert_with(|| r.label.clone());
        }
    }
}

/// Every capture file under `dir`, sorted.
fn captures_under(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut paths: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
    paths.sort();
    for p in paths {
        if p.is_dir() {
            captures_under(&p, out);
        } else if p
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| matches!(e, "pcap" | "pcapng" | "cap"))
        {
            out.push(p);
        }
    }
}

/// A pcap whose only record stops inside its packet bytes.
fn truncated_capture() -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    b.extend_from_slice(&2u16.to_le_bytes());
    b.extend_from_slice(&4u16.to_le_bytes());
    b.extend_from_slice(&[0; 8]); // thiszone, sigfigs
    b.extend_from_slice(&65_535u32.to_le_bytes());
    b.extend_from_slice(&1u32.to_le_bytes()); // Ethernet
    b.extend_from_slice(&1_700_000_000u32.to_le_bytes());
    b.extend_from_slice(&0u32.to_le_bytes());
    b.extend_from_slice(&60u32.to_le_bytes()); // captured length
    b.extend_from_slice(&60u32.to_le_bytes()); // wire length
    b.extend_from_slice(&[0; 20]); // 40 bytes short
    b
}

fn observed() -> &'static Observed {
    static OBSERVED: OnceLock<Observed> = OnceLock::new();
    OBSERVED.get_or_init(|| {
        let schema = schema();
        let root = manifest_dir();
        let tmp = std::env::temp_dir().join(format!("nightjar-schema-{}", std::process::id()));
        std::fs::create_dir_all(&tmp).expect("temp dir");
        let mut replays = Vec::new();

        let mut local = Vec::new();
        captures_under(&root.join("pcaps"), &mut local);
        for p in local {
            replays.push(Replay {
                label: p.strip_prefix(&root).unwrap_or(&p).display().to_string(),
                flags: Vec::new(),
                args: vec![p],
                config: None,
                expect_failure: false,
            });
        }

        let truncated = tmp.join("truncated.pcap");
        std::fs::write(&truncated, truncated_capture()).expect("write truncated capture");
        // The AN1717 demo with its MDM inputs: device, app, alert, coverage and
        // governance fields, evidence bundles.
        let demo = root.join("config/demo");
        replays.push(Replay {
            label: "pcaps/demo-an1717.pcap with config/demo".into(),
            flags: vec![
                "--inventory".into(),
                demo.join("inventory.json").display().to_string(),
                "--events".into(),
                demo.join("events.ndjson").display().to_string(),
                "--catalog".into(),
                demo.join("catalog.json").display().to_string(),
                "--evidence-dir".into(),
                tmp.join("evidence").display().to_string(),
            ],
            args: vec![root.join("pcaps/demo-an1717.pcap")],
            config: None,
            expect_failure: false,
        });
        replays.push(Replay {
            label: "truncated capture".into(),
            flags: Vec::new(),
            args: vec![truncated],
            config: None,
            expect_failure: true,
        });

        // Device identity from an inventory and an identity feed (device.id, user.name).
        let identity = tmp.join("identity.toml");
        std::fs::write(
            &identity,
            format!(
                "[mdm]\ninventory = {:?}\n[identity]\nfeed = {:?}\n",
                root.join("tests/data/identity/inventory.json"),
                root.join("tests/data/identity/feed.ndjson")
            ),
        )
        .expect("write config");
        replays.push(Replay {
            label: "pcaps/dhcp-dns-tls.pcap with inventory and identity feed".into(),
            flags: Vec::new(),
            args: vec![root.join("pcaps/dhcp-dns-tls.pcap")],
            config: Some(identity),
            expect_failure: false,
        });

        let corpus = root.join("../shared/corpus");
        let has_corpus = corpus.is_dir();
        if has_corpus {
            for file in CORPUS {
                replays.push(Replay {
                    label: format!("corpus/{file}"),
                    flags: Vec::new(),
                    args: vec![corpus.join(file)],
                    config: None,
                    expect_failure: false,
                });
            }
            let config = tmp.join("short-timeouts.toml");
            std::fs::write(&config, SHORT_TIMEOUTS).expect("write config");
            replays.push(Replay {
                label: format!("corpus/{INTERIM_CAPTURE} with short timeouts"),
                flags: Vec::new(),
                args: vec![corpus.join(INTERIM_CAPTURE)],
                config: Some(config),
                expect_failure: false,
            });
        } else {
            println!(
                "note: no corpus at {}: replaying pcaps/ only; documented fields are not \
                 checked for coverage",
                corpus.display()
            );
        }

        let mut obs = Observed {
            corpus: has_corpus,
            ..Observed::default()
        };
        for r in &replays {
            if let Some(missing) = r.args.iter().find(|p| !p.is_file()) {
                obs.errors.push(format!(
                    "{}: capture missing: {}",
                    r.label,
                    missing.display()
                ));
                continue;
            }
            replay(r, schema, &mut obs);
        }
        let _ = std::fs::remove_dir_all(&tmp);
        println!(
            "replayed {} runs: {} records, {} distinct (record type, field) pairs",
            replays.len(),
            obs.records,
            obs.fields.len()
        );
        obs
    })
}

#[test]
fn schema_document_parses() {
    let schema = schema();
    for t in COVERED_TYPES {
        let n = schema.keys().filter(|(rt, _)| rt == t).count();
        assert!(n > 0, "docs/schema.md documents no field of {t}");
        println!("{t}: {n} fields");
    }
    let distinct: BTreeSet<&str> = schema.keys().map(|(_, p)| p.as_str()).collect();
    println!("{} distinct field paths documented", distinct.len());
    let unknown: Vec<&str> = NOT_EMITTED
        .iter()
        .map(|(p, _)| *p)
        .filter(|p| !distinct.contains(p))
        .collect();
    assert!(
        unknown.is_empty(),
        "NOT_EMITTED lists fields docs/schema.md does not document: {unknown:?}"
    );
}

#[test]
fn emitted_fields_are_documented() {
    let schema = schema();
    let obs = observed();
    assert!(
        obs.errors.is_empty(),
        "replays failed:\n  {}",
        obs.errors.join("\n  ")
    );
    assert!(obs.records > 0, "the replays wrote no record");
    let documented_types: BTreeSet<&str> = schema.keys().map(|(t, _)| t.as_str()).collect();
    let undocumented: Vec<String> = obs
        .fields
        .iter()
        .filter(|(k, _)| !schema.contains_key(*k))
        .map(|((t, p), from)| {
            if documented_types.contains(t.as_str()) {
                format!("{t} `{p}` (first in {from})")
            } else {
                format!("{t} `{p}` (record type not documented; first in {from})")
            }
        })
        .collect();
    let mut problems = Vec::new();
    if !undocumented.is_empty() {
        problems.push(format!(
            "{} emitted fields are not in docs/schema.md:\n  {}",
            undocumented.len(),
            undocumented.join("\n  ")
        ));
    }
    if !obs.wrong_types.is_empty() {
        problems.push(format!(
            "{} fields have another type than docs/schema.md says:\n  {}",
            obs.wrong_types.len(),
            obs.wrong_types
                .values()
                .cloned()
                .collect::<Vec<_>>()
                .join("\n  ")
        ));
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn documented_fields_are_emitted() {
    let schema = schema();
    let obs = observed();
    if !obs.corpus {
        println!("note: corpus absent, coverage of documented fields not checked");
        return;
    }
    let excepted: BTreeSet<&str> = NOT_EMITTED.iter().map(|(p, _)| *p).collect();
    let mut missing = Vec::new();
    let mut stale = BTreeSet::new();
    for (t, p) in schema.keys() {
        if !COVERED_TYPES.contains(&t.as_str()) {
            continue;
        }
        let seen = obs.fields.contains_key(&(t.clone(), p.clone()));
        if excepted.contains(p.as_str()) {
            if seen {
                stale.insert(p.as_str());
            }
        } else if !seen {
            missing.push(format!("{t} `{p}`"));
        }
    }
    for p in stale {
        println!("note: `{p}` is emitted now: its NOT_EMITTED exception can go");
    }
    assert!(
        missing.is_empty(),
        "{} documented fields were never emitted by the replays (add a capture that \
         produces them, or list them in NOT_EMITTED with a reason):\n  {}",
        missing.len(),
        missing.join("\n  ")
    );
}
