//! The ClientHello summary: parsed from one complete handshake message body, with its
//! JA3 and JA4 fingerprints.
//!
//! Invariants: every codepoint is kept as a number, unknown ones included; extensions
//! are listed in wire order; an extension whose content does not parse is kept in the
//! list and its type recorded in `malformed_extensions` (an anomaly, not an error);
//! names are escaped, never dropped.

use serde::{Deserialize, Serialize};
use tls_parser::{
    parse_tls_extension_alpn_content, parse_tls_extension_ec_point_formats_content,
    parse_tls_extension_elliptic_curves_content, parse_tls_extension_signature_algorithms_content,
    parse_tls_extension_sni_content, parse_tls_handshake_client_hello, SNIType, TlsExtension,
};

use super::fingerprint::{self, is_grease, Ja4Input};
use super::{ext, split_extensions, TlsError, Transport};
use crate::proto::text::escape_name;

/// Named groups that carry a post-quantum hybrid or draft Kyber key exchange:
/// X25519MLKEM768 (0x11ec), SecP256r1MLKEM768 (0x11eb), SecP384r1MLKEM1024 (0x11ed),
/// and the draft X25519Kyber768 codepoints 0x6399 and 0x636d.
pub const PQ_HYBRID_GROUPS: [u16; 5] = [0x11ec, 0x11eb, 0x11ed, 0x6399, 0x636d];

/// Summary of a ClientHello.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientHello {
    /// How the hello was carried; selects the JA4 prefix.
    pub transport: Transport,
    /// `legacy_version` (client_version) field.
    pub legacy_version: u16,
    /// supported_versions extension (0x002b), GREASE included, in order.
    pub supported_versions: Vec<u16>,
    /// Cipher suites in order, GREASE included.
    pub ciphers: Vec<u16>,
    /// Extension types in wire order, GREASE included.
    pub extensions: Vec<u16>,
    /// First host_name of the server_name extension, escaped.
    pub sni: Option<String>,
    /// Offered ALPN protocols in order, escaped.
    pub alpn: Vec<String>,
    /// supported_groups (0x000a) in order.
    pub groups: Vec<u16>,
    /// ec_point_formats (0x000b).
    pub ec_point_formats: Vec<u8>,
    /// signature_algorithms (0x000d) in order.
    pub sig_algs: Vec<u16>,
    /// Groups of the key_share entries (0x0033) in order.
    pub key_share_groups: Vec<u16>,
    /// pre_shared_key (0x0029) present: the client attempts resumption.
    pub psk_offered: bool,
    /// legacy_session_id (at most 32 bytes).
    pub session_id: Vec<u8>,
    /// encrypted_client_hello (0xfe0d) present.
    pub ech: bool,
    /// A key share or supported group is a post-quantum hybrid ([`PQ_HYBRID_GROUPS`]).
    pub pq_hybrid: bool,
    /// Some list held a GREASE value.
    pub grease: bool,
    /// Extension types whose content did not parse.
    pub malformed_extensions: Vec<u16>,
    pub ja3_string: String,
    pub ja3: String,
    pub ja4: String,
    pub ja4_r: String,
}

impl ClientHello {
    /// True if the legacy session id is non-empty.
    pub fn has_session_id(&self) -> bool {
        !self.session_id.is_empty()
    }
}

/// Parses the body of a ClientHello handshake message (after the 4-byte header).
pub fn parse_client_hello(body: &[u8], transport: Transport) -> Result<ClientHello, TlsError> {
    let (rest, ch) =
        parse_tls_handshake_client_hello(body).map_err(|_| TlsError::BadClientHello)?;
    if ch.ext.is_none() && !rest.is_empty() {
        return Err(TlsError::BadExtensions);
    }
    let exts = split_extensions(ch.ext.unwrap_or(&[]))?;
    let ciphers: Vec<u16> = ch.ciphers.iter().map(|c| c.0).collect();
    let mut hello = ClientHello {
        transport,
        legacy_version: ch.version.0,
        supported_versions: Vec::new(),
        ciphers,
        extensions: exts.iter().map(|(t, _)| *t).collect(),
        sni: None,
        alpn: Vec::new(),
        groups: Vec::new(),
        ec_point_formats: Vec::new(),
        sig_algs: Vec::new(),
        key_share_groups: Vec::new(),
        psk_offered: false,
        session_id: ch.session_id.unwrap_or(&[]).to_vec(),
        ech: false,
        pq_hybrid: false,
        grease: false,
        malformed_extensions: Vec::new(),
        ja3_string: String::new(),
        ja3: String::new(),
        ja4: String::new(),
        ja4_r: String::new(),
    };
    let mut first_alpn: Option<&[u8]> = None;
    for (ext_type, data) in &exts {
        let ok = match *ext_type {
            ext::SERVER_NAME => read_sni(data, &mut hello),
            ext::ALPN => match parse_tls_extension_alpn_content(data) {
                Ok((_, TlsExtension::ALPN(list))) => {
                    first_alpn = list.first().copied();
                    hello.alpn = list.iter().map(|p| escape_name(p)).collect();
                    true
                }
                _ => false,
            },
            ext::SUPPORTED_GROUPS => match parse_tls_extension_elliptic_curves_content(data) {
                Ok((_, TlsExtension::EllipticCurves(g))) => {
                    hello.groups = g.iter().map(|g| g.0).collect();
                    true
                }
                _ => false,
            },
            ext::EC_POINT_FORMATS => match parse_tls_extension_ec_point_formats_content(data) {
                Ok((_, TlsExtension::EcPointFormats(f))) => {
                    hello.ec_point_formats = f.to_vec();
                    true
                }
                _ => false,
            },
            ext::SIGNATURE_ALGORITHMS => {
                match parse_tls_extension_signature_algorithms_content(data) {
                    Ok((_, TlsExtension::SignatureAlgorithms(s))) => {
                        hello.sig_algs = s;
                        true
                    }
                    _ => false,
                }
            }
            ext::SUPPORTED_VERSIONS => read_u8_prefixed_u16s(data)
                .map(|v| hello.supported_versions = v)
                .is_some(),
            ext::KEY_SHARE => read_key_share_groups(data)
                .map(|v| hello.key_share_groups = v)
                .is_some(),
            ext::PRE_SHARED_KEY => {
                hello.psk_offered = true;
                true
            }
            ext::ENCRYPTED_CLIENT_HELLO => {
                hello.ech = true;
                true
            }
            _ => true,
        };
        if !ok {
            hello.malformed_extensions.push(*ext_type);
        }
    }
    hello.pq_hybrid = hello
        .key_share_groups
        .iter()
        .chain(&hello.groups)
        .any(|g| PQ_HYBRID_GROUPS.contains(g));
    hello.grease = [
        &hello.ciphers,
        &hello.extensions,
        &hello.groups,
        &hello.supported_versions,
        &hello.sig_algs,
        &hello.key_share_groups,
    ]
    .iter()
    .any(|list| list.iter().any(|v| is_grease(*v)));
    hello.ja3_string = fingerprint::ja3_string(
        hello.legacy_version,
        &hello.ciphers,
        &hello.extensions,
        &hello.groups,
        &hello.ec_point_formats,
    );
    hello.ja3 = fingerprint::md5_hex(&hello.ja3_string);
    let (ja4, ja4_r) = fingerprint::ja4(&Ja4Input {
        transport,
        legacy_version: hello.legacy_version,
        supported_versions: &hello.supported_versions,
        ciphers: &hello.ciphers,
        extensions: &hello.extensions,
        first_alpn,
        sig_algs: &hello.sig_algs,
    });
    hello.ja4 = ja4;
    hello.ja4_r = ja4_r;
    Ok(hello)
}

fn read_sni(data: &[u8], hello: &mut ClientHello) -> bool {
    match parse_tls_extension_sni_content(data) {
        Ok((_, TlsExtension::SNI(names))) => {
            hello.sni = names
                .iter()
                .find(|(t, _)| *t == SNIType::HostName)
                .map(|(_, n)| escape_name(n));
            true
        }
        _ => false,
    }
}

/// `u8 length` then big-endian u16 values (supported_versions in a ClientHello).
fn read_u8_prefixed_u16s(data: &[u8]) -> Option<Vec<u16>> {
    let (&len, rest) = data.split_first()?;
    let list = rest.get(..usize::from(len))?;
    if list.len() % 2 != 0 {
        return None;
    }
    Some(
        list.chunks_exact(2)
            .map(|c| u16::from_be_bytes([c[0], c[1]]))
            .collect(),
    )
}

/// Groups of a ClientHello key_share: `u16 length`, then entries `group u16, key<u16>`.
fn read_key_share_groups(data: &[u8]) -> Option<Vec<u16>> {
    let len = usize::from(u16::from_be_bytes([*data.first()?, *data.get(1)?]));
    let mut rest = data.get(2..2 + len)?;
    let mut groups = Vec::new();
    while !rest.is_empty() {
        let group = u16::from_be_bytes([*rest.first()?, *rest.get(1)?]);
        let key_len = usize::from(u16::from_be_bytes([*rest.get(2)?, *rest.get(3)?]));
        rest = rest.get(4 + key_len..)?;
        groups.push(group);
    }
    Some(groups)
}
