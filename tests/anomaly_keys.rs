//! The `flow_anomalies` keys: each starts with its protocol (so two parsers' reasons
//! never share a key), each is documented in docs/schema.md, and each documented key
//! is one the code can count.

use nightjar::proto::dhcp::DhcpError;
use nightjar::proto::dns::DnsError;
use nightjar::proto::quic::{QuicError, QuicVersion};
use std::collections::BTreeSet;
use std::path::Path;

const PREFIXES: [&str; 6] = ["tls_", "dtls_", "quic_", "dns_", "dhcp_", "defrag_"];

/// The keys listed in the `nightjar.stats.flow_anomalies` row of docs/schema.md.
fn documented() -> BTreeSet<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let doc = std::fs::read_to_string(root.join("docs/schema.md")).unwrap();
    let row = doc
        .lines()
        .find(|l| l.starts_with("| `nightjar.stats.flow_anomalies` |"))
        .expect("flow_anomalies row");
    let keys_part = &row[row.find("Keys:").expect("Keys: list")..];
    let keys_part = &keys_part[..keys_part.rfind(" | ").unwrap()];
    keys_part
        .split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect()
}

/// The literal keys counted by the flow stage (`stats.anomaly("...")`).
fn literal_keys() -> BTreeSet<String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/flow");
    let mut out = BTreeSet::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let text = std::fs::read_to_string(e.unwrap().path()).unwrap();
        for (i, _) in text.match_indices(".anomaly(\"") {
            let rest = &text[i + ".anomaly(\"".len()..];
            out.insert(rest[..rest.find('"').unwrap()].to_string());
        }
        for (i, _) in text.match_indices("drop_datagram(&key, first_ns, \"") {
            let rest = &text[i + "drop_datagram(&key, first_ns, \"".len()..];
            out.insert(rest[..rest.find('"').unwrap()].to_string());
        }
    }
    out
}

/// Every key the parsers' errors count under.
fn error_keys() -> Vec<&'static str> {
    let v = QuicVersion(0x1a2a_3a4a);
    let quic = [
        QuicError::Truncated,
        QuicError::CidTooLong(21),
        QuicError::BadLength,
        QuicError::UnknownVersion(v),
        QuicError::KeyVersionMismatch(v),
        QuicError::TooShortForSample,
        QuicError::DecryptFailed,
        QuicError::InvalidFrame(9),
        QuicError::FrameTruncated,
        QuicError::CryptoOffsetTooLarge(1 << 20),
        QuicError::TooManyCryptoFrames,
    ];
    let dns = [
        DnsError::TruncatedHeader,
        DnsError::Truncated,
        DnsError::TooLong,
        DnsError::BadCompressionPointer,
        DnsError::LabelTooLong,
        DnsError::NameTooLong,
        DnsError::BadLabelType,
        DnsError::BadRdata(1),
        DnsError::Malformed,
    ];
    let dhcp = [
        DhcpError::TruncatedHeader,
        DhcpError::BadMagicCookie,
        DhcpError::TruncatedOption(53),
        DhcpError::BadOptionLength(50),
        DhcpError::BadRelay,
    ];
    quic.iter()
        .map(QuicError::anomaly_key)
        .chain(dns.iter().map(DnsError::anomaly_key))
        .chain(dhcp.iter().map(DhcpError::anomaly_key))
        .collect()
}

#[test]
fn every_key_has_a_protocol_prefix_and_is_documented() {
    let doc = documented();
    let errors = error_keys();
    let distinct: BTreeSet<_> = errors.iter().collect();
    assert_eq!(distinct.len(), errors.len(), "two errors share a key");
    let mut code: BTreeSet<String> = literal_keys();
    assert!(code.contains("tls_client_hello_truncated"), "{code:?}");
    code.extend(errors.iter().map(|k| k.to_string()));
    for k in &code {
        assert!(
            PREFIXES.iter().any(|p| k.starts_with(p)),
            "{k}: no protocol prefix"
        );
        assert!(doc.contains(k), "{k} is counted but not in docs/schema.md");
    }
    for k in &doc {
        assert!(code.contains(k), "{k} is documented but never counted");
    }
}
