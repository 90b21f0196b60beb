//! TLS handshake scanning: ClientHello, ServerHello and the TLS ≤ 1.2 Certificate,
//! summarised as owned values with JA3, JA3S and JA4 fingerprints.
//!
//! Input is the contiguous reassembled bytes of one direction (see
//! `flow::reassembly`), in one of three framings:
//! - TLS over TCP: records (content type 22 = handshake); a handshake message may span
//!   records and several messages may share one;
//! - QUIC: the CRYPTO stream, bare handshake messages without record layer;
//! - DTLS: records with a 13-byte header, handshake messages with a 12-byte header
//!   carrying fragment offset and length.
//!
//! Scanners are pure functions over `&[u8]`: call them again with more bytes until they
//! stop answering [`Scan::NeedMore`]. They never guess: a hello that cannot be
//! completed is [`Scan::Truncated`]. When the caller knows no more bytes will come
//! (bound reached, hole that will not fill, flow ended), it turns `NeedMore` into
//! `Truncated` with [`Scan::or_truncated`].
//!
//! After a HelloRetryRequest the client sends a second ClientHello; these scanners
//! return the first one, which is the one JA4 fingerprints (the second is shaped by
//! the server's request).

mod client;
mod fingerprint;
mod server;

use serde::{Deserialize, Serialize};
use std::borrow::Cow;

pub use client::{parse_client_hello, ClientHello, PQ_HYBRID_GROUPS};
pub use fingerprint::{is_grease, ja4, Ja4Input, JA4_MAX_COUNT};
pub use server::{parse_server_hello, session_resumed, Certificate, ServerHello, HRR_RANDOM};

use server::{read_certificate, CertRead};

/// Largest hello message accepted, in bytes. RFC 8446 allows 2^24, but a ClientHello
/// with a post-quantum hybrid key share, ECH and a session ticket stays well under
/// 8 KiB; 16 KiB (one full record) bounds the copy while leaving ample margin. A larger
/// declared length is reported as [`Scan::Truncated`].
pub const MAX_HELLO_BYTES: usize = 16 * 1024;

/// Smallest hello body: version (2), random (32), session id length (1), cipher (2),
/// compression (1).
const MIN_HELLO_BYTES: usize = 38;

/// Largest record fragment accepted: 2^14 bytes of plaintext plus the 2,048 bytes of
/// expansion RFC 5246 §6.2.3 allows for compressed/protected records.
pub const MAX_RECORD_BYTES: usize = (1 << 14) + 2048;

/// Extension types this module interprets.
mod ext {
    pub const SERVER_NAME: u16 = 0x0000;
    pub const SUPPORTED_GROUPS: u16 = 0x000a;
    pub const EC_POINT_FORMATS: u16 = 0x000b;
    pub const SIGNATURE_ALGORITHMS: u16 = 0x000d;
    pub const ALPN: u16 = 0x0010;
    pub const PRE_SHARED_KEY: u16 = 0x0029;
    pub const SUPPORTED_VERSIONS: u16 = 0x002b;
    pub const KEY_SHARE: u16 = 0x0033;
    pub const ENCRYPTED_CLIENT_HELLO: u16 = 0xfe0d;
}

/// Handshake message types this module interprets.
const HS_CLIENT_HELLO: u8 = 1;
const HS_SERVER_HELLO: u8 = 2;
const HS_CERTIFICATE: u8 = 11;
/// Record content type of handshake records.
const RECORD_HANDSHAKE: u8 = 22;
/// Record content type of alert records, and the level of a warning alert.
const RECORD_ALERT: u8 = 21;
const ALERT_WARNING: u8 = 1;
/// DTLS record header length.
const DTLS_RECORD_HEADER: usize = 13;
/// DTLS handshake header length.
const DTLS_HANDSHAKE_HEADER: usize = 12;

/// Errors of the TLS module: input that is TLS but cannot be what it claims.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum TlsError {
    #[error("record version {0:#06x} is not TLS")]
    BadRecordVersion(u16),
    #[error("record of {0} bytes exceeds the maximum")]
    RecordTooLong(usize),
    #[error("unexpected handshake message type {0}")]
    UnexpectedMessage(u8),
    #[error("handshake message cut short by a non-handshake record")]
    MessageCutShort,
    #[error("malformed ClientHello")]
    BadClientHello,
    #[error("malformed ServerHello")]
    BadServerHello,
    #[error("malformed extension block")]
    BadExtensions,
    #[error("malformed certificate")]
    BadCertificate,
    #[error("empty certificate chain")]
    EmptyCertificateChain,
    #[error("malformed DTLS handshake fragment")]
    BadDtlsFragment,
}

/// Result of scanning the bytes of one direction so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scan<T> {
    /// Consistent so far; more bytes are needed.
    NeedMore,
    Done(T),
    /// The bytes do not start like TLS.
    NotTls,
    /// The message cannot be completed (declared too long, bound reached or gap).
    Truncated,
    Malformed(TlsError),
}

impl<T> Scan<T> {
    /// `NeedMore` becomes `Truncated` when `no_more_bytes` (the reassembler is full or
    /// overflowed, a hole will not fill, or the flow ended).
    pub fn or_truncated(self, no_more_bytes: bool) -> Self {
        match self {
            Scan::NeedMore if no_more_bytes => Scan::Truncated,
            other => other,
        }
    }
}

/// How a hello travelled; selects the first character of JA4.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    Tcp,
    Quic,
    Dtls,
}

/// What the server side showed of its handshake.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerHandshake {
    pub hello: Option<ServerHello>,
    /// Leaf certificate (TLS ≤ 1.2 only).
    pub certificate: Option<Certificate>,
    /// Why the Certificate message could not be read (an anomaly; the hello stands).
    pub certificate_error: Option<TlsError>,
    /// Nothing more will be learned from this direction (TLS 1.3 or HelloRetryRequest,
    /// certificate read, or a message other than Certificate followed the hello).
    /// When false, scan again with more bytes; `hello` is already usable.
    pub complete: bool,
}

/// Cheap test for the start of a TLS ClientHello on any port: handshake record, record
/// version 3.0–3.4, and (if present) handshake type ClientHello.
pub fn looks_like_tls_client(first_bytes: &[u8]) -> bool {
    matches!(first_bytes, [RECORD_HANDSHAKE, 3, 0..=4, ..])
        && first_bytes.get(5).is_none_or(|&t| t == HS_CLIENT_HELLO)
}

/// `tls.version` text of a version number: "ssl3", "1.0" ... "1.3" (DTLS 1.0/1.2/1.3
/// give "1.0"/"1.2"/"1.3", TLS 1.3 drafts 0x7fNN "1.3"); `None` when unknown.
pub fn version_name(v: u16) -> Option<&'static str> {
    match v {
        0x0300 => Some("ssl3"),
        0x0301 | 0xfeff => Some("1.0"),
        0x0302 => Some("1.1"),
        0x0303 | 0xfefd => Some("1.2"),
        0x0304 | 0xfefc | 0x7f00..=0x7fff => Some("1.3"),
        _ => None,
    }
}

/// Offset of the first TLS record in `buf` that starts a hello of handshake type
/// `msg_type` (1 = ClientHello, 2 = ServerHello), for streams where TLS begins after
/// a plaintext prelude (HTTP CONNECT, SOCKS, STARTTLS). The caller decides when a
/// prelude is plausible and scans from the offset; this only matches a record header
/// (type 22, version 3.x, length ≤ [`MAX_RECORD_BYTES`]) followed by a handshake
/// header of at least a minimal hello and a hello version 3.x or 0x7f (draft).
pub fn locate_hello_record(buf: &[u8], msg_type: u8) -> Option<usize> {
    buf.windows(10).position(|w| {
        let record_len = usize::from(u16::from_be_bytes([w[3], w[4]]));
        w[0] == RECORD_HANDSHAKE
            && w[1] == 3
            && w[2] <= 4
            && (MIN_HELLO_BYTES + 4..=MAX_RECORD_BYTES).contains(&record_len)
            && w[5] == msg_type
            && be24(&w[6..9]) >= MIN_HELLO_BYTES
            && (w[9] == 3 || w[9] == 0x7f)
    })
}

/// Scans the client→server bytes of TLS over TCP for the first ClientHello.
pub fn scan_client_records(buf: &[u8]) -> Scan<ClientHello> {
    match handshake_from_records(buf) {
        Ok(hs) => scan_client(&hs.bytes, hs.closed, Transport::Tcp),
        Err(scan) => scan,
    }
}

/// Scans a QUIC CRYPTO stream (client side) for the ClientHello.
pub fn scan_client_messages(buf: &[u8]) -> Scan<ClientHello> {
    if buf.first().is_some_and(|&t| t != HS_CLIENT_HELLO) {
        return Scan::NotTls;
    }
    scan_client(buf, false, Transport::Quic)
}

/// Scans the server→client bytes of TLS over TCP.
pub fn scan_server_records(buf: &[u8]) -> Scan<ServerHandshake> {
    match handshake_from_records(buf) {
        Ok(hs) => scan_server(&hs.bytes, hs.closed),
        Err(scan) => scan,
    }
}

/// Scans a QUIC CRYPTO stream (server side, Initial level) for the ServerHello.
pub fn scan_server_messages(buf: &[u8]) -> Scan<ServerHandshake> {
    if buf.first().is_some_and(|&t| t != HS_SERVER_HELLO) {
        return Scan::NotTls;
    }
    scan_server(buf, false)
}

/// Scans client→server DTLS bytes (the payloads of the client's datagrams, in arrival
/// order, concatenated) for the first ClientHello, joining its fragments.
pub fn scan_client_dtls(buf: &[u8]) -> Scan<ClientHello> {
    let mut body: Option<DtlsHello> = None;
    let mut pos = 0usize;
    while let Some(header) = buf.get(pos..pos + DTLS_RECORD_HEADER) {
        let (ct, major) = (header[0], header[1]);
        let len = usize::from(u16::from_be_bytes([header[11], header[12]]));
        // 0xfeXX: DTLS 1.0/1.2/1.3; 0x0100: OpenSSL's pre-RFC 4347 DTLS ("DTLS1_BAD_VER").
        let dtls_version = major == 0xfe || (major == 0x01 && header[2] == 0x00);
        if pos == 0 && (ct != RECORD_HANDSHAKE || !dtls_version) {
            return Scan::NotTls;
        }
        let Some(record) = buf.get(pos + DTLS_RECORD_HEADER..pos + DTLS_RECORD_HEADER + len) else {
            break;
        };
        pos += DTLS_RECORD_HEADER + len;
        if ct != RECORD_HANDSHAKE {
            continue;
        }
        let mut rest = record;
        while let Some(h) = rest.get(..DTLS_HANDSHAKE_HEADER) {
            let msg_type = h[0];
            let total = be24(&h[1..4]);
            let seq = u16::from_be_bytes([h[4], h[5]]);
            let frag_off = be24(&h[6..9]);
            let frag_len = be24(&h[9..12]);
            let Some(frag) = rest.get(DTLS_HANDSHAKE_HEADER..DTLS_HANDSHAKE_HEADER + frag_len)
            else {
                return Scan::Malformed(TlsError::BadDtlsFragment);
            };
            rest = rest.get(DTLS_HANDSHAKE_HEADER + frag_len..).unwrap_or(&[]);
            if msg_type != HS_CLIENT_HELLO {
                continue;
            }
            if total > MAX_HELLO_BYTES {
                return Scan::Truncated;
            }
            let hello = body.get_or_insert_with(|| DtlsHello::new(seq, total));
            if hello.seq != seq {
                continue;
            }
            if !hello.add(total, frag_off, frag) {
                return Scan::Malformed(TlsError::BadDtlsFragment);
            }
        }
    }
    match body {
        Some(h) if h.is_complete() => match dtls_body_as_tls(&h.bytes) {
            Some(tls_body) => done_or_malformed(parse_client_hello(&tls_body, Transport::Dtls)),
            None => Scan::Malformed(TlsError::BadClientHello),
        },
        _ => Scan::NeedMore,
    }
}

/// A DTLS ClientHello being joined from fragments (bounded by [`MAX_HELLO_BYTES`]).
struct DtlsHello {
    seq: u16,
    bytes: Vec<u8>,
    filled: Vec<bool>,
}

impl DtlsHello {
    fn new(seq: u16, total: usize) -> Self {
        DtlsHello {
            seq,
            bytes: vec![0; total],
            filled: vec![false; total],
        }
    }

    /// Adds one fragment; false if it does not fit the declared message.
    fn add(&mut self, total: usize, off: usize, frag: &[u8]) -> bool {
        let end = off + frag.len();
        if total != self.bytes.len() {
            return false;
        }
        match (self.bytes.get_mut(off..end), self.filled.get_mut(off..end)) {
            (Some(dst), Some(filled)) => {
                dst.copy_from_slice(frag);
                filled.fill(true);
                true
            }
            _ => false,
        }
    }

    fn is_complete(&self) -> bool {
        self.filled.iter().all(|f| *f)
    }
}

/// A DTLS ClientHello body with its cookie removed, which is a TLS ClientHello body.
fn dtls_body_as_tls(body: &[u8]) -> Option<Vec<u8>> {
    let sid_len = usize::from(*body.get(34)?);
    let cookie_at = 35 + sid_len;
    let cookie_len = usize::from(*body.get(cookie_at)?);
    let mut out = Vec::with_capacity(body.len());
    out.extend_from_slice(body.get(..cookie_at)?);
    out.extend_from_slice(body.get(cookie_at + 1 + cookie_len..)?);
    Some(out)
}

fn be24(b: &[u8]) -> usize {
    b.iter().fold(0usize, |acc, &x| acc << 8 | usize::from(x))
}

/// The handshake bytes carried by a run of TLS records.
struct HandshakeStream<'a> {
    /// Handshake-record payloads, concatenated (borrowed when there is one record).
    bytes: Cow<'a, [u8]>,
    /// A non-handshake record followed: no further handshake bytes in clear.
    closed: bool,
}

/// Concatenates the payloads of the leading handshake records of `buf`, including the
/// part of a last record that has arrived so far. Errors are final scan results.
fn handshake_from_records<T>(buf: &[u8]) -> Result<HandshakeStream<'_>, Scan<T>> {
    if !buf.is_empty() && !looks_like_record_start(buf) {
        return Err(Scan::NotTls);
    }
    let mut pieces: Vec<&[u8]> = Vec::new();
    let mut closed = false;
    let mut pos = 0usize;
    while let Some(header) = buf.get(pos..pos + 5) {
        let (ct, version) = (header[0], u16::from_be_bytes([header[1], header[2]]));
        let len = usize::from(u16::from_be_bytes([header[3], header[4]]));
        if ct != RECORD_HANDSHAKE && ct != RECORD_ALERT {
            closed = true;
            break;
        }
        if version >> 8 != 3 {
            return Err(Scan::Malformed(TlsError::BadRecordVersion(version)));
        }
        if len > MAX_RECORD_BYTES {
            return Err(Scan::Malformed(TlsError::RecordTooLong(len)));
        }
        let start = pos + 5;
        let end = (start + len).min(buf.len());
        let payload = buf.get(start..end).unwrap_or(&[]);
        pos = start + len;
        match ct {
            RECORD_HANDSHAKE => pieces.push(payload),
            // A warning alert (e.g. unrecognized_name before a ServerHello) does not
            // end the handshake; wait for it to be complete before going past it.
            RECORD_ALERT if payload.first() == Some(&ALERT_WARNING) && end - start == len => {}
            RECORD_ALERT if end - start < len => break,
            _ => {
                closed = true;
                break;
            }
        }
    }
    let bytes = match pieces.as_slice() {
        [] => Cow::Borrowed(&[][..]),
        [one] => Cow::Borrowed(*one),
        many => Cow::Owned(many.concat()),
    };
    Ok(HandshakeStream { bytes, closed })
}

/// The available bytes agree with a handshake or alert record header (version 3.x).
fn looks_like_record_start(buf: &[u8]) -> bool {
    matches!(buf.first(), Some(&RECORD_HANDSHAKE | &RECORD_ALERT))
        && buf.get(1).is_none_or(|&m| m == 3)
}

/// One handshake message at the start of `hs`.
enum Message<'a> {
    /// Type and complete body, and the bytes after it.
    Complete(u8, &'a [u8], &'a [u8]),
    /// Type, declared length and the part of the body that has arrived.
    Partial(u8, usize, &'a [u8]),
    /// Not even the 4-byte header yet.
    Empty,
}

fn next_message(hs: &[u8]) -> Message<'_> {
    let Some(header) = hs.get(..4) else {
        return Message::Empty;
    };
    let len = be24(&header[1..4]);
    match hs.get(4..4 + len) {
        Some(body) => Message::Complete(header[0], body, hs.get(4 + len..).unwrap_or(&[])),
        None => Message::Partial(header[0], len, hs.get(4..).unwrap_or(&[])),
    }
}

fn done_or_malformed<T>(r: Result<T, TlsError>) -> Scan<T> {
    match r {
        Ok(v) => Scan::Done(v),
        Err(e) => Scan::Malformed(e),
    }
}

fn scan_client(hs: &[u8], closed: bool, transport: Transport) -> Scan<ClientHello> {
    match next_message(hs) {
        Message::Complete(HS_CLIENT_HELLO, body, _) => {
            done_or_malformed(parse_client_hello(body, transport))
        }
        Message::Complete(t, _, _) => Scan::Malformed(TlsError::UnexpectedMessage(t)),
        Message::Partial(HS_CLIENT_HELLO, len, _) if len > MAX_HELLO_BYTES => Scan::Truncated,
        Message::Partial(HS_CLIENT_HELLO, _, _) | Message::Empty if !closed => Scan::NeedMore,
        Message::Partial(HS_CLIENT_HELLO, _, _) | Message::Empty => {
            Scan::Malformed(TlsError::MessageCutShort)
        }
        Message::Partial(t, _, _) => Scan::Malformed(TlsError::UnexpectedMessage(t)),
    }
}

fn scan_server(hs: &[u8], closed: bool) -> Scan<ServerHandshake> {
    let (body, rest) = match next_message(hs) {
        Message::Complete(HS_SERVER_HELLO, body, rest) => (body, rest),
        Message::Complete(t, ..) | Message::Partial(t, ..) if t != HS_SERVER_HELLO => {
            return Scan::Malformed(TlsError::UnexpectedMessage(t))
        }
        Message::Partial(_, len, _) if len > MAX_HELLO_BYTES => return Scan::Truncated,
        _ if closed => return Scan::Malformed(TlsError::MessageCutShort),
        _ => return Scan::NeedMore,
    };
    let hello = match parse_server_hello(body) {
        Ok(h) => h,
        Err(e) => return Scan::Malformed(e),
    };
    let mut out = ServerHandshake {
        certificate: None,
        certificate_error: None,
        complete: true,
        hello: None,
    };
    if !hello.hello_retry_request && hello.negotiated_version() < 0x0304 {
        match after_server_hello(rest, closed) {
            Ok((certificate, complete)) => {
                out.certificate = certificate;
                out.complete = complete;
            }
            Err(e) => out.certificate_error = Some(e),
        }
    }
    out.hello = Some(hello);
    Scan::Done(out)
}

/// What follows a TLS ≤ 1.2 ServerHello: the leaf certificate if the next message is
/// a Certificate, and whether the scan is complete.
fn after_server_hello(rest: &[u8], closed: bool) -> Result<(Option<Certificate>, bool), TlsError> {
    let available = match next_message(rest) {
        Message::Complete(HS_CERTIFICATE, body, _) => body,
        Message::Partial(HS_CERTIFICATE, _, part) => part,
        Message::Complete(..) | Message::Partial(..) => return Ok((None, true)),
        Message::Empty => return Ok((None, closed)),
    };
    match read_certificate(available)? {
        CertRead::Leaf(cert) => Ok((Some(cert), true)),
        CertRead::Incomplete => Ok((None, closed)),
    }
}

/// Splits an extension block into `(type, data)` pairs in wire order.
fn split_extensions(mut block: &[u8]) -> Result<Vec<(u16, &[u8])>, TlsError> {
    let mut out = Vec::new();
    while !block.is_empty() {
        let (Some(t), Some(l)) = (block.get(..2), block.get(2..4)) else {
            return Err(TlsError::BadExtensions);
        };
        let ext_type = u16::from_be_bytes([t[0], t[1]]);
        let len = usize::from(u16::from_be_bytes([l[0], l[1]]));
        let data = block.get(4..4 + len).ok_or(TlsError::BadExtensions)?;
        out.push((ext_type, data));
        block = block.get(4 + len..).unwrap_or(&[]);
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
