//! ServerHello and (TLS ≤ 1.2) Certificate summaries, with JA3S.
//!
//! Invariants: codepoints are kept as numbers; a HelloRetryRequest is recognised by
//! its fixed random (RFC 8446 §4.1.3) and summarised like a ServerHello; only the
//! first (leaf) certificate of the chain is decoded, and only if its DER bytes are
//! complete.

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use tls_parser::{parse_tls_extension_alpn_content, TlsExtension};
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer as _, X509Certificate};

use super::client::ClientHello;
use super::fingerprint::{self, hex};
use super::{ext, split_extensions, TlsError};
use crate::proto::text::escape_name;

/// The ServerHello random that marks a HelloRetryRequest: SHA-256("HelloRetryRequest").
pub const HRR_RANDOM: [u8; 32] = [
    0xcf, 0x21, 0xad, 0x74, 0xe5, 0x9a, 0x61, 0x11, 0xbe, 0x1d, 0x8c, 0x02, 0x1e, 0x65, 0xb8, 0x91,
    0xc2, 0xa2, 0x11, 0x16, 0x7a, 0xbb, 0x8c, 0x5e, 0x07, 0x9e, 0x09, 0xe2, 0xc8, 0xa8, 0x33, 0x9c,
];

/// Summary of a ServerHello (or HelloRetryRequest).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerHello {
    /// `legacy_version` field.
    pub legacy_version: u16,
    /// Version chosen through supported_versions (0x002b), TLS 1.3 and later.
    pub selected_version: Option<u16>,
    pub cipher: u16,
    /// ALPN protocol selected by the server, escaped.
    pub alpn: Option<String>,
    /// Extension types in wire order.
    pub extensions: Vec<u16>,
    /// The message is a HelloRetryRequest (the client will send a second ClientHello;
    /// fingerprint the first one).
    pub hello_retry_request: bool,
    /// legacy_session_id echoed by the server.
    pub session_id: Vec<u8>,
    /// pre_shared_key (0x0029) present: the server accepted a TLS 1.3 PSK.
    pub psk_selected: bool,
    pub ja3s_string: String,
    pub ja3s: String,
}

impl ServerHello {
    /// The negotiated version: selected_version if present, else legacy_version.
    pub fn negotiated_version(&self) -> u16 {
        self.selected_version.unwrap_or(self.legacy_version)
    }
}

/// Whether the session was resumed, as far as the two hellos show it: `Some(true)`
/// for an accepted TLS 1.3 PSK or a TLS ≤ 1.2 session id echoed by the server,
/// `Some(false)` when the hellos show a full handshake, `None` when they cannot tell
/// (TLS 1.3 without PSK acceptance is a full handshake; TLS ≤ 1.2 session tickets
/// are only visible later, in encrypted or following messages).
pub fn session_resumed(client: &ClientHello, server: &ServerHello) -> Option<bool> {
    if server.psk_selected {
        return Some(true);
    }
    if server.negotiated_version() >= 0x0304 {
        return Some(false);
    }
    if client.session_id.is_empty() {
        return None;
    }
    Some(client.session_id == server.session_id)
}

/// Parses the body of a ServerHello handshake message (after the 4-byte header).
/// Besides RFC 8446/5246 ServerHellos (SSL 3.0 included, whose extensions tls-parser
/// skips) it reads the TLS 1.3 draft layout (version 0x7fNN: no session id and no
/// compression method), still seen in old captures.
pub fn parse_server_hello(body: &[u8]) -> Result<ServerHello, TlsError> {
    let bad = TlsError::BadServerHello;
    let version = u16::from_be_bytes([
        *body.first().ok_or(bad.clone())?,
        *body.get(1).ok_or(bad.clone())?,
    ]);
    let random = body.get(2..34).ok_or(bad.clone())?;
    let draft = version >> 8 == 0x7f;
    let (session_id, after_sid) = if draft {
        (&[][..], 34)
    } else {
        let len = usize::from(*body.get(34).ok_or(bad.clone())?);
        (body.get(35..35 + len).ok_or(bad.clone())?, 35 + len)
    };
    let cipher_bytes = body.get(after_sid..after_sid + 2).ok_or(bad.clone())?;
    let cipher = u16::from_be_bytes([cipher_bytes[0], cipher_bytes[1]]);
    let ext_at = if draft { after_sid + 2 } else { after_sid + 3 };
    if body.len() < ext_at {
        return Err(bad);
    }
    let block = match body.get(ext_at..ext_at + 2) {
        None => &[][..],
        Some(l) => {
            let len = usize::from(u16::from_be_bytes([l[0], l[1]]));
            body.get(ext_at + 2..ext_at + 2 + len)
                .ok_or(TlsError::BadExtensions)?
        }
    };
    let exts = split_extensions(block)?;
    let mut selected_version = None;
    let mut alpn = None;
    let mut psk_selected = false;
    for (t, data) in &exts {
        match *t {
            ext::SUPPORTED_VERSIONS => {
                if let [a, b] = data {
                    selected_version = Some(u16::from_be_bytes([*a, *b]));
                }
            }
            ext::ALPN => {
                if let Ok((_, TlsExtension::ALPN(list))) = parse_tls_extension_alpn_content(data) {
                    alpn = list.first().map(|p| escape_name(p));
                }
            }
            ext::PRE_SHARED_KEY => psk_selected = true,
            _ => {}
        }
    }
    let extensions: Vec<u16> = exts.iter().map(|(t, _)| *t).collect();
    let ja3s_string = fingerprint::ja3s_string(version, cipher, &extensions);
    Ok(ServerHello {
        legacy_version: version,
        selected_version,
        cipher,
        alpn,
        extensions,
        hello_retry_request: random == HRR_RANDOM,
        session_id: session_id.to_vec(),
        psk_selected,
        ja3s: fingerprint::md5_hex(&ja3s_string),
        ja3s_string,
    })
}

/// Summary of the server's leaf certificate (TLS ≤ 1.2, where it travels in clear).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Certificate {
    /// Subject distinguished name (RFC 4514 style).
    pub subject: String,
    pub issuer: String,
    /// DNS names of the subjectAltName extension, escaped.
    pub san_dns: Vec<String>,
    /// RFC 3339, UTC.
    pub not_before: String,
    pub not_after: String,
    /// Serial number, lower-case hex of its DER content bytes.
    pub serial: String,
    /// SHA-256 of the DER certificate, lower-case hex.
    pub sha256: String,
    /// Number of certificates whose bytes are complete in the captured message.
    pub chain_len: usize,
}

/// Outcome of reading a Certificate message that may be cut short.
pub(super) enum CertRead {
    /// The leaf is complete (the rest of the chain may not be).
    Leaf(Certificate),
    /// The leaf's bytes are not all there yet.
    Incomplete,
}

/// Reads a TLS ≤ 1.2 Certificate message body, possibly cut short: the leaf is
/// decoded as soon as its own bytes are complete.
pub(super) fn read_certificate(available: &[u8]) -> Result<CertRead, TlsError> {
    let Some(list_len) = u24(available) else {
        return Ok(CertRead::Incomplete);
    };
    if list_len == 0 {
        return Err(TlsError::EmptyCertificateChain);
    }
    let list = available.get(3..).unwrap_or(&[]);
    let mut rest = list.get(..list_len).unwrap_or(list);
    let mut chain_len = 0usize;
    let mut leaf: Option<&[u8]> = None;
    while let Some(der) = u24_prefixed(rest) {
        chain_len += 1;
        leaf.get_or_insert(der);
        rest = rest.get(3 + der.len()..).unwrap_or(&[]);
    }
    let Some(der) = leaf else {
        return Ok(CertRead::Incomplete);
    };
    let (_, cert) = X509Certificate::from_der(der).map_err(|_| TlsError::BadCertificate)?;
    let san_dns = match cert.subject_alternative_name() {
        Ok(Some(san)) => san
            .value
            .general_names
            .iter()
            .filter_map(|n| match n {
                GeneralName::DNSName(d) => Some(escape_name(d.as_bytes())),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    };
    let validity = cert.validity();
    Ok(CertRead::Leaf(Certificate {
        subject: cert.subject().to_string(),
        issuer: cert.issuer().to_string(),
        san_dns,
        not_before: rfc3339(validity.not_before.timestamp()),
        not_after: rfc3339(validity.not_after.timestamp()),
        serial: hex(cert.raw_serial()),
        sha256: hex(&Sha256::digest(der)),
        chain_len,
    }))
}

fn u24(b: &[u8]) -> Option<usize> {
    let (&a, &b2, &c) = (b.first()?, b.get(1)?, b.get(2)?);
    Some(usize::from(a) << 16 | usize::from(b2) << 8 | usize::from(c))
}

/// The `u24`-length-prefixed item at the start of `b`, if complete.
fn u24_prefixed(b: &[u8]) -> Option<&[u8]> {
    let len = u24(b)?;
    b.get(3..3 + len)
}

/// Unix seconds as RFC 3339 UTC (`1970-01-01T00:00:00Z`), proleptic Gregorian.
fn rfc3339(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (year, month, day) = crate::capture::civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        sod / 3600,
        sod % 3600 / 60,
        sod % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339(-1), "1969-12-31T23:59:59Z");
        assert_eq!(rfc3339(253_402_300_799), "9999-12-31T23:59:59Z");
    }
}
