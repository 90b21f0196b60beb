//! Fuzz harnesses: one function per target, each taking the fuzzer's bytes.
//!
//! Shared by the cargo-fuzz targets in `fuzz_targets/` and by the crate's
//! `tests/fuzz_regressions.rs`, which replays every saved crash input in
//! `fuzz/regressions/<target>/` through the same function. A harness panics
//! only when the code under test breaks one of its documented invariants.

use std::io::Cursor;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use nightjar::capture::{CaptureReader, LinkType};
use nightjar::config::Config;
use nightjar::correlate::baseline::Baselines;
use nightjar::correlate::identity::{
    parse_feed_line, read_connection, read_feed, FeedEntry, FeedSocketStats, IdentityError,
    IdentityTable, Method, MAX_FEED_FIELD_LEN,
};
use nightjar::correlate::FlowContext;
use nightjar::decode::SUPPORTED_LINK_TYPES;
use nightjar::flow::reassembly::{tcp_clip, StreamReassembler};
use nightjar::flow::{FlowConfig, Shard};
use nightjar::mdm::adapter::http::parse_token;
use nightjar::mdm::adapter::state::{cursor_json, parse_cursor};
use nightjar::mdm::adapter::webhook::{Receiver, Routes, WebhookAuth, WebhookOptions};
use nightjar::mdm::adapter::{
    build_inventory, intune, jamf, micromdm, AdapterStats, InventoryTracker, Secret,
};
use nightjar::mdm::{
    format_rfc3339, import_privacy_report, inventory_to_json, parse_inventory, parse_plist,
    read_events, CatalogBuilder, CatalogFormat, Device, InstalledApp, Inventory, MacAddr,
    PrivacyReportOptions,
};
use nightjar::observation::{Observation, Termination};
use nightjar::output::records::{dns_record, flow_record};
use nightjar::proto::quic::{open_initials, InitialKeys, QuicError, QuicVersion};
use nightjar::proto::tls::{
    scan_client_dtls, scan_client_messages, scan_client_records, scan_server_messages,
    scan_server_records, Scan,
};

/// Frames read from one input by the `capture` and `pipeline` targets: a
/// hostile file of tiny records must not make one run take seconds.
pub const MAX_FUZZ_FRAMES: usize = 4096;

/// `decode`: byte 0 picks the link type (modulo one more than
/// [`SUPPORTED_LINK_TYPES`]: the last pick is a link type the decoder does not know), the rest is
/// the frame. Decoding never panics and whatever it returns lies inside the frame.
pub fn decode(data: &[u8]) {
    let Some((&lt, frame)) = data.split_first() else {
        return;
    };
    let pick = usize::from(lt) % (SUPPORTED_LINK_TYPES.len() + 1);
    let linktype = SUPPORTED_LINK_TYPES
        .get(pick)
        .copied()
        .unwrap_or(LinkType(0xffff));
    if let Ok(pkt) = nightjar::decode::decode(linktype, frame) {
        let _ = format!("{pkt:?}");
    }
}

/// `reassembly`: byte 0 picks the mode and bound; then a sequence of
/// operations `[offset: u16 LE][len: u8][len bytes]` (stream mode: offset as
/// given, times 64 when the mode's bit 1 is set) or `[seq: u32 LE][len: u8][bytes]`
/// (TCP mode: through `tcp_clip` from an ISN of 0xffff_ff00, so sequence
/// numbers wrap). Checks the module's invariants against a first-copy-wins
/// model of the stream.
pub fn reassembly(data: &[u8]) {
    let Some((&mode, mut ops)) = data.split_first() else {
        return;
    };
    let bound = match mode >> 4 {
        0 => 64,
        1 => 1500,
        2 => 16 * 1024,
        _ => 32 * 1024,
    };
    let tcp = mode & 1 == 1;
    let scale: u64 = if mode & 2 == 2 { 64 } else { 1 };
    let isn_plus_one: u32 = 0xffff_ff00;
    let mut r = StreamReassembler::new(bound);
    let mut model: Vec<Option<u8>> = vec![None; bound];
    let mut model_valid = true;
    loop {
        let (offset, piece) = if tcp {
            let Some(head) = ops.get(..5) else { break };
            let seq = u32::from_le_bytes([head[0], head[1], head[2], head[3]]);
            let len = usize::from(head[4]);
            let Some(bytes) = ops.get(5..5 + len) else {
                break;
            };
            ops = &ops[5 + len..];
            match tcp_clip(isn_plus_one, seq, bytes) {
                Some((off, tail)) => {
                    assert!(tail.len() <= bytes.len());
                    (off, tail)
                }
                None => continue,
            }
        } else {
            let Some(head) = ops.get(..3) else { break };
            let off = u64::from(u16::from_le_bytes([head[0], head[1]])) * scale;
            let len = usize::from(head[2]);
            let Some(bytes) = ops.get(3..3 + len) else {
                break;
            };
            ops = &ops[3 + len..];
            (off, bytes)
        };
        r.insert(offset, piece);
        if r.range_limit_hit() {
            // Pieces may now be dropped: the model no longer predicts the stream.
            model_valid = false;
        }
        if model_valid {
            for (i, &b) in piece.iter().enumerate() {
                let at = offset as usize + i;
                if at >= bound {
                    break;
                }
                model[at].get_or_insert(b);
            }
        }
        let c = r.contiguous();
        assert!(c.len() <= bound, "contiguous beyond the bound");
        assert!(r.bytes_held() <= bound, "held bytes beyond the bound");
        if model_valid {
            let want = model.iter().take_while(|b| b.is_some()).count();
            assert_eq!(c.len(), want, "contiguous length differs from the model");
            for (i, &b) in c.iter().enumerate() {
                assert_eq!(Some(b), model[i], "byte {i} differs from the first copy");
            }
        }
    }
    r.release();
    assert!(r.contiguous().is_empty());
}

/// `tls`: byte 0 picks the scanner (client records, client messages, server
/// records, server messages, DTLS client); the rest is the direction's bytes.
/// Every prefix is scanned too, as the flow code does while bytes arrive; a
/// scan that is `Done` for a prefix must stay `Done` or fail for longer input,
/// never go back to `NotTls`.
pub fn tls(data: &[u8]) {
    let Some((&which, buf)) = data.split_first() else {
        return;
    };
    let step = (buf.len() / 8).max(1);
    let mut cut = step.min(buf.len());
    loop {
        let part = &buf[..cut];
        match which % 5 {
            0 => touch_client(scan_client_records(part)),
            1 => touch_client(scan_client_messages(part)),
            2 => touch_server(scan_server_records(part)),
            3 => touch_server(scan_server_messages(part)),
            _ => touch_client(scan_client_dtls(part)),
        }
        if cut == buf.len() {
            break;
        }
        cut = (cut + step).min(buf.len());
    }
}

fn touch_client(s: Scan<nightjar::proto::tls::ClientHello>) {
    if let Scan::Done(ch) = s {
        assert_eq!(ch.ja3.len(), 32, "JA3 is an MD5 hex digest");
        let _ = serde_json::to_string(&ch).expect("serializable");
    }
}

fn touch_server(s: Scan<nightjar::proto::tls::ServerHandshake>) {
    if let Scan::Done(sh) = s {
        let _ = serde_json::to_string(&sh).expect("serializable");
    }
}

/// The fixed DCID of RFC 9001 appendix A: all `quic_initial` packets are
/// protected with the Initial keys it derives.
pub const QUIC_DCID: [u8; 8] = [0x83, 0x94, 0xc8, 0xf0, 0x3e, 0x51, 0x57, 0x08];

/// RFC 9001 A.1 client Initial key, IV and header-protection key for [`QUIC_DCID`].
const CLIENT_KEYS: ([u8; 16], [u8; 12], [u8; 16]) = (
    *b"\x1f\x36\x96\x13\xdd\x76\xd5\x46\x77\x30\xef\xcb\xe3\xb1\xa2\x2d",
    *b"\xfa\x04\x4b\x2f\x42\xa3\xfd\x3b\x46\xfb\x25\x5c",
    *b"\x9f\x50\x44\x9e\x04\xa0\xe8\x10\x28\x3a\x1e\x99\x33\xad\xed\xd2",
);
/// RFC 9001 A.1 server Initial key, IV and header-protection key.
const SERVER_KEYS: ([u8; 16], [u8; 12], [u8; 16]) = (
    *b"\xcf\x3a\x53\x31\x65\x3c\x36\x4c\x88\xf0\xf3\x79\xb6\x06\x7e\x37",
    *b"\x0a\xc1\x49\x3c\xa1\x90\x58\x53\xb0\xbb\xa0\x3e",
    *b"\xc2\x06\xb8\xd9\xb9\xf0\xf3\x76\x44\x43\x0b\x49\x0e\xea\xa3\x14",
);

/// Protects one QUIC v1 Initial packet carrying `plaintext` (frames) with the
/// keys of [`QUIC_DCID`] and appends it to `out` (RFC 9001 §5.3, §5.4).
pub fn seal_initial(
    from_client: bool,
    pn: u32,
    pn_len: usize,
    plaintext: &[u8],
    out: &mut Vec<u8>,
) {
    use ring::aead::quic::{HeaderProtectionKey, AES_128};
    use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_128_GCM};
    let (key, iv, hp) = if from_client {
        CLIENT_KEYS
    } else {
        SERVER_KEYS
    };
    let pn_len = pn_len.clamp(1, 4);
    // The header-protection sample starts 4 bytes after the packet number.
    let mut payload = plaintext.to_vec();
    while pn_len + payload.len() < 4 {
        payload.push(0); // PADDING
    }
    let start = out.len();
    out.push(0xc0 | (pn_len as u8 - 1)); // long header, fixed bit, Initial
    out.extend_from_slice(&1u32.to_be_bytes());
    out.push(QUIC_DCID.len() as u8);
    out.extend_from_slice(&QUIC_DCID);
    out.push(0); // SCID length
    out.push(0); // token length
    let length = (pn_len + payload.len() + 16) as u64;
    out.extend_from_slice(&(0x4000_u16 | length.min(0x3fff) as u16).to_be_bytes());
    let pn_off = out.len();
    out.extend_from_slice(&pn.to_be_bytes()[4 - pn_len..]);
    let header_end = out.len();
    let key = LessSafeKey::new(UnboundKey::new(&AES_128_GCM, &key).expect("key"));
    let mut nonce = iv;
    for (n, p) in nonce[4..].iter_mut().zip(u64::from(pn).to_be_bytes()) {
        *n ^= p;
    }
    let aad = out[start..header_end].to_vec();
    key.seal_in_place_append_tag(
        Nonce::assume_unique_for_key(nonce),
        Aad::from(&aad),
        &mut payload,
    )
    .expect("seal");
    out.extend_from_slice(&payload);
    let hp = HeaderProtectionKey::new(&AES_128, &hp).expect("hp key");
    let sample = &out[pn_off + 4..pn_off + 20];
    let mask = hp.new_mask(sample).expect("mask");
    out[start] ^= mask[0] & 0x0f;
    for (b, m) in out[pn_off..pn_off + pn_len].iter_mut().zip(&mask[1..]) {
        *b ^= m;
    }
}

/// `quic_initial`: the fuzzer chooses the decrypted content. Byte 0: bit 0
/// the direction (client), bits 1–2 the packet-number length − 1; then
/// packets `[len: u16 LE][len bytes of frames]`, each sealed as an Initial
/// with packet numbers 0, 1, ... and coalesced into one datagram, which is
/// opened with keys derived the normal way. Authentication must succeed, so
/// every frame parser behind it is reached.
pub fn quic_initial(data: &[u8]) {
    let Some((&flags, mut rest)) = data.split_first() else {
        return;
    };
    let from_client = flags & 1 == 1;
    let pn_len = usize::from((flags >> 1) & 3) + 1;
    let mut datagram = Vec::new();
    let mut pn = 0u32;
    while let Some(head) = rest.get(..2) {
        let len = usize::from(u16::from_le_bytes([head[0], head[1]])).min(rest.len() - 2);
        // Keep the length field a 2-byte varint.
        let len = len.min(0x3fff - 4 - 16);
        seal_initial(from_client, pn, pn_len, &rest[2..2 + len], &mut datagram);
        rest = &rest[2 + len..];
        // The receiver knows no earlier packet number, so it reads the truncated
        // number as is: keep numbers within what `pn_len` bytes can carry.
        pn = pn.wrapping_add(1) & (u32::MAX >> (32 - 8 * pn_len as u32));
    }
    if datagram.is_empty() {
        seal_initial(from_client, 0, pn_len, rest, &mut datagram);
    }
    let keys = InitialKeys::derive(QuicVersion::V1, &QUIC_DCID).expect("v1 keys");
    let mut scratch = Vec::new();
    let mut frames = Vec::new();
    let res = open_initials(&datagram, &keys, from_client, &mut scratch, &mut frames);
    if let Err(e) = &res {
        // Protection is valid by construction: only frame content may be refused.
        assert!(
            matches!(
                e,
                QuicError::InvalidFrame(_)
                    | QuicError::FrameTruncated
                    | QuicError::CryptoOffsetTooLarge(_)
                    | QuicError::TooManyCryptoFrames
            ),
            "a correctly sealed packet failed to open: {e}"
        );
    }
    assert!(frames.len() <= nightjar::proto::quic::MAX_CRYPTO_FRAMES_PER_DATAGRAM);
    // What the flow code does next: reassemble CRYPTO frames and scan for a hello.
    let mut r = StreamReassembler::new(nightjar::flow::inspect::QUIC_CRYPTO_BYTES);
    for f in &frames {
        r.insert(f.offset, &f.data);
    }
    if from_client {
        touch_client(scan_client_messages(r.contiguous()));
    } else {
        touch_server(scan_server_messages(r.contiguous()));
    }
}

/// `capture`: the whole input is a capture file. Reads up to
/// [`MAX_FUZZ_FRAMES`] frames; every frame's bytes lie in the reader's buffer
/// and an error ends the stream for good.
pub fn capture(data: &[u8]) {
    let Ok(mut reader) = CaptureReader::new(Cursor::new(data)) else {
        return;
    };
    let mut n = 0;
    loop {
        match reader.next_frame() {
            Ok(Some(f)) => {
                assert!(f.data.len() <= data.len(), "frame larger than the file");
            }
            Ok(None) => break,
            Err(_) => {
                assert!(
                    matches!(reader.next_frame(), Ok(None)),
                    "errors are terminal"
                );
                break;
            }
        }
        n += 1;
        if n == MAX_FUZZ_FRAMES {
            break;
        }
    }
    assert!(reader.stats().bytes_consumed <= data.len() as u64);
}

/// `pipeline`: the whole input is a capture file, replayed through decode, a
/// small flow table (so eviction is exercised) and record building, as
/// `nightjar replay` does.
pub fn pipeline(data: &[u8]) {
    let Ok(mut reader) = CaptureReader::new(Cursor::new(data)) else {
        return;
    };
    let mut shard = Shard::new(FlowConfig {
        max_flows: 8,
        ..FlowConfig::default()
    });
    let mut obs = Vec::new();
    let mut last = 0;
    let mut n = 0;
    while let Ok(Some(f)) = reader.next_frame() {
        last = last.max(f.ts.0);
        if let Ok(pkt) = nightjar::decode::decode(f.linktype, f.data) {
            shard.process(f.ts.0, &pkt, &mut obs);
        }
        records(&mut obs);
        n += 1;
        if n == MAX_FUZZ_FRAMES {
            break;
        }
    }
    shard.flush(Termination::EndOfInput, last, &mut obs);
    records(&mut obs);
    assert_eq!(shard.active(), 0, "flush leaves no flow behind");
}

fn records(obs: &mut Vec<Observation>) {
    for o in obs.drain(..) {
        let v = match &o {
            Observation::Flow(f) => flow_record(f, &FlowContext::default()),
            Observation::Dns(d) => dns_record(d),
            Observation::Dhcp(_) | Observation::Identity(_) => continue,
        };
        let mut line = Vec::new();
        v.write_json(&mut line);
        assert!(!line.contains(&b'\n'), "a record is one line");
        let parsed: serde_json::Value = serde_json::from_slice(&line).expect("record is JSON");
        assert_eq!(parsed, v.to_value(), "the written record is the record");
    }
}

/// A load error is printed as one line (on stderr, in the journal on a reload).
fn one_line<T, E: std::fmt::Display>(r: Result<T, E>) -> Result<T, E> {
    if let Err(e) = &r {
        let msg = e.to_string();
        assert!(!msg.contains(['\n', '\r']), "a multi-line error: {msg:?}");
    }
    r
}

/// `mdm_files`: byte 0 picks the loader (inventory JSON, events NDJSON,
/// catalog JSON, catalog TOML, privacy report NDJSON); the rest is the file.
/// Errors are one line.
pub fn mdm_files(data: &[u8]) {
    let Some((&which, body)) = data.split_first() else {
        return;
    };
    let text = String::from_utf8_lossy(body);
    match which % 5 {
        0 => {
            if let Ok(inv) = one_line(parse_inventory(&text, "fuzz")) {
                let _ = inv.fingerprint();
            }
        }
        1 => {
            if let Ok(events) = one_line(read_events(Cursor::new(body), "fuzz")) {
                for e in &events {
                    let _ = e.to_json_line();
                }
            }
        }
        2 | 3 => {
            let format = if which % 5 == 2 {
                CatalogFormat::Json
            } else {
                CatalogFormat::Toml
            };
            let mut b = CatalogBuilder::new();
            if one_line(b.add_text(&text, format, "fuzz")).is_ok() {
                let c = b.build();
                let _ = c.lookup("a.example.com");
                let _ = nightjar::mdm::apps_to_catalog_json(c.apps());
            }
        }
        _ => {
            let _ = one_line(import_privacy_report(
                Cursor::new(body),
                "fuzz",
                PrivacyReportOptions::default(),
            ));
        }
    }
}

/// `plist`: the whole input is a property list (XML or binary).
pub fn plist(data: &[u8]) {
    if let Ok(v) = parse_plist(data, "fuzz") {
        let _ = format!("{v:?}");
    }
}

/// `config`: the whole input is a configuration file; valid ones are checked
/// the way `nightjar check-config` does.
pub fn config(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if let Ok(cfg) = Config::parse(&text, "fuzz.toml") {
        let _ = nightjar::pipeline::check::check(&cfg);
    }
}

/// Arrival time given to webhooks and pulls (2024-05-01T08:00:00Z, whole seconds so the
/// RFC 3339 cursor round-trips exactly).
pub const FUZZ_NOW_NS: u64 = 1_714_550_400_000_000_000;

/// Checks that an inventory built from vendor data survives what the daemon does with
/// it: persisted as the last good inventory (`inventory_to_json`) it loads back after a
/// restart unchanged (same fingerprint), and its cursor file gives back the pull time.
fn survives_restart(inv: &Inventory) {
    let saved = inventory_to_json(inv);
    let back = parse_inventory(&saved, "state")
        .unwrap_or_else(|e| panic!("a saved inventory does not load back: {e}\n{saved}"));
    assert!(
        back.fingerprint() == inv.fingerprint(),
        "the inventory changed across a restart"
    );
    assert_eq!(
        parse_cursor(&cursor_json(inv, FUZZ_NOW_NS)),
        Some(FUZZ_NOW_NS)
    );
}

/// `mdm_api`: byte 0 picks the response parser: OAuth token (Jamf Pro and Entra ID),
/// Jamf Pro `mobile-devices/detail` page, Graph `managedDevices` page, Graph
/// `detectedApps` page; the rest is the response body. The devices that map are built
/// into an inventory, which must never fail (vendor mistakes are skipped and counted)
/// and must survive a restart.
pub fn mdm_api(data: &[u8]) {
    let Some((&which, body)) = data.split_first() else {
        return;
    };
    let stats = AdapterStats::default();
    let entries: Vec<(Device, Vec<InstalledApp>)> = match which % 4 {
        0 => {
            if let Ok((token, secs)) = parse_token(body) {
                assert!(!token.expose().is_empty());
                assert!(secs <= 86_400, "token lifetime not capped");
                assert_eq!(
                    format!("{token} {token:?}"),
                    "[redacted] Secret([redacted])"
                );
            }
            return;
        }
        1 => match jamf::parse_detail_page(body, &stats) {
            Ok(p) => {
                assert!(p.devices.len() as u64 <= p.results);
                p.devices
            }
            Err(_) => return,
        },
        2 => match intune::parse_devices_page(body, &stats) {
            Ok(p) => {
                if let Some(next) = &p.next_link {
                    let inside = intune::link_inside("https://graph.microsoft.com", next);
                    assert!(!inside || next.starts_with("https://graph.microsoft.com/"));
                }
                p.items
                    .into_iter()
                    .map(|(d, graph_id)| {
                        // The Graph id goes into a URL path: nothing but [A-Za-z0-9-].
                        assert!(graph_id
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'-'));
                        (d, Vec::new())
                    })
                    .collect()
            }
            Err(_) => return,
        },
        _ => match intune::parse_apps_page(body, "fuzz-device", &stats) {
            Ok(p) => vec![(Device::with_id("fuzz-device"), p.items)],
            Err(_) => return,
        },
    };
    let inv = build_inventory(entries, "fuzz", &stats)
        .unwrap_or_else(|e| panic!("vendor data failed the whole pull: {e}"));
    survives_restart(&inv);
}

/// `mdm_webhook`: byte 0 picks the webhook body: Jamf Pro JSON, MicroMDM/NanoMDM JSON
/// envelope, or the plist a device answered (wrapped in an `mdm.Connect` envelope, so
/// the fuzzer works on the plist directly). A Jamf event must read back as an events
/// line; a MicroMDM answer is applied to an empty inventory twice (the second time
/// changes nothing) and the result must survive a restart.
pub fn mdm_webhook(data: &[u8]) {
    let Some((&which, body)) = data.split_first() else {
        return;
    };
    match which % 3 {
        0 => {
            let Ok(Some(hook)) = jamf::parse_webhook(body, FUZZ_NOW_NS) else {
                return;
            };
            if let Some(id) = &hook.jamf_id {
                assert!(!id.is_empty());
            }
            if let Some(e) = hook.event {
                let line = e.to_json_line();
                let back =
                    read_events(Cursor::new(line.as_bytes()), "fuzz").unwrap_or_else(|err| {
                        panic!("a reported event does not read back: {err}\n{line}")
                    });
                assert_eq!(back.len(), 1);
            }
        }
        1 => micromdm_apply(body),
        _ => micromdm_apply(micromdm::envelope("mdm.Connect", "U1", body).as_bytes()),
    }
}

fn micromdm_apply(body: &[u8]) {
    let Ok(Some(hook)) = micromdm::parse_webhook(body) else {
        return;
    };
    let stats = Arc::new(AdapterStats::default());
    let tracker = InventoryTracker::open(micromdm::NAME, None, Arc::clone(&stats));
    let mut m = micromdm::MicroMdm::new(tracker, stats);
    m.apply(hook.clone(), FUZZ_NOW_NS)
        .unwrap_or_else(|e| panic!("a webhook failed the inventory: {e}"));
    let again = m
        .apply(hook, FUZZ_NOW_NS + 1)
        .unwrap_or_else(|e| panic!("a webhook failed the inventory: {e}"));
    assert!(again.is_empty(), "the same answer twice derived {again:?}");
    survives_restart(&m.current());
}

/// `state`: byte 0 picks the state file: last good inventory, poll cursor, detection
/// baselines; the rest is the file as found after a restart. What loads must save and
/// load again: an inventory unchanged (and applying it again derives nothing), the
/// baselines after the updates a run makes (insert, remember, merge).
pub fn state(data: &[u8]) {
    let Some((&which, body)) = data.split_first() else {
        return;
    };
    let text = String::from_utf8_lossy(body);
    match which % 3 {
        0 => {
            let Ok(inv) = parse_inventory(&text, "state") else {
                return;
            };
            survives_restart(&inv);
            let stats = Arc::new(AdapterStats::default());
            let mut t = InventoryTracker::open("fuzz", None, stats);
            assert!(t.apply(inv.clone(), FUZZ_NOW_NS).is_empty(), "a baseline");
            assert!(t.apply(inv, FUZZ_NOW_NS + 1).is_empty(), "nothing changed");
        }
        1 => {
            if let Some(ns) = parse_cursor(&text) {
                let _ = format_rfc3339(ns);
            }
        }
        _ => {
            let Ok(b) = Baselines::from_json(&text, "fuzz") else {
                return;
            };
            for (scope, feats) in &b.scopes {
                for f in feats.keys() {
                    if let Some(s) = b.sketch(scope, f, FUZZ_NOW_NS) {
                        let _ = (s.quantile(0.5), s.percentile(1.0), s.count());
                    }
                }
            }
            let mut run = b.clone();
            run.insert(
                "app:com.example.fuzz",
                &[("bytes", 1234.0), ("gap", 0.0)],
                FUZZ_NOW_NS,
            );
            let _ = run.remember("com.example.fuzz", "d:example.com", FUZZ_NOW_NS);
            run.merge(&b);
            let saved = serde_json::to_string(&run).expect("baselines serialize");
            if let Err(e) = Baselines::from_json(&saved, "saved") {
                panic!("baselines saved after a run do not load back: {e}");
            }
        }
    }
}

/// The secret of the `webhook` target's receiver; the seeds carry it (as Bearer and as
/// the Basic password).
pub const WEBHOOK_SECRET: &str = "fuzz-webhook-secret";

/// What one connection to a receiver produced.
struct Served {
    stats: nightjar::mdm::adapter::StatsSnapshot,
    hooks: u64,
}

thread_local! {
    static RUNTIME: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime");
}

/// Feeds `raw` to a fresh receiver as one connection's bytes (then end of input) and
/// collects what it counted and queued.
fn serve_bytes(raw: &[u8], secret: &str, opts: WebhookOptions) -> Served {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    RUNTIME.with(|rt| {
        rt.block_on(async {
            let (jamf_tx, mut jamf_rx) = tokio::sync::mpsc::channel(4);
            let (mdm_tx, mut mdm_rx) = tokio::sync::mpsc::channel(4);
            let stats = Arc::new(AdapterStats::default());
            let receiver = Arc::new(Receiver::new(
                Secret::new(secret.to_string()),
                opts,
                Arc::clone(&stats),
                Routes {
                    jamf: Some(jamf_tx),
                    micromdm: Some(mdm_tx),
                },
            ));
            let (client, server) = tokio::io::duplex(64 * 1024);
            let conn = tokio::spawn(receiver.serve_connection(server));
            let (mut rd, mut wr) = tokio::io::split(client);
            let write = async {
                let _ = wr.write_all(raw).await;
                let _ = wr.shutdown().await;
            };
            let mut answer = Vec::new();
            let read = rd.read_to_end(&mut answer);
            let _ = tokio::join!(write, read);
            let _ = conn.await;
            let mut hooks = 0;
            while jamf_rx.try_recv().is_ok() {
                hooks += 1;
            }
            while mdm_rx.try_recv().is_ok() {
                hooks += 1;
            }
            Served {
                stats: stats.snapshot(0),
                hooks,
            }
        })
    })
}

/// `webhook`: byte 0 picks the receiver's bounds (bit 0: a 256-byte body limit, bit 1:
/// a burst of 2 requests) and credentials (bits 2-3: the secret, an HMAC signature,
/// either, either); the rest is what a client sends on one connection (HTTP/1.1
/// requests, pipelined or cut short). Every accepted webhook is queued, and a receiver
/// whose secret appears nowhere in the input accepts nothing: whatever got past the
/// credentials check once is sent again to one with another secret.
pub fn webhook(data: &[u8]) {
    let Some((&flags, raw)) = data.split_first() else {
        return;
    };
    let opts = WebhookOptions {
        max_body: if flags & 1 == 1 { 256 } else { 64 * 1024 },
        rate_per_sec: 0,
        burst: if flags & 2 == 2 { 2 } else { 1000 },
        auth: match (flags >> 2) & 3 {
            0 => WebhookAuth::Secret,
            1 => WebhookAuth::Hmac,
            _ => WebhookAuth::Either,
        },
    };
    let served = serve_bytes(raw, WEBHOOK_SECRET, opts.clone());
    assert_eq!(
        served.stats.webhooks_accepted, served.hooks,
        "accepted webhooks and queued ones differ"
    );
    let s = &served.stats;
    let got_in = s.webhooks_accepted
        + s.webhooks_ignored
        + s.webhooks_malformed
        + s.webhooks_too_large
        + s.webhooks_queue_full;
    if got_in > 0 {
        let other = serve_bytes(raw, "another-secret-in-no-input", opts).stats;
        assert_eq!(
            other.webhooks_accepted
                + other.webhooks_ignored
                + other.webhooks_malformed
                + other.webhooks_too_large
                + other.webhooks_queue_full,
            0,
            "a request got past the credentials check without the secret"
        );
    }
}

/// The inventory the `identity` target resolves feed claims against: the devices of
/// `tests/data/identity/inventory.json` (the seeds name their udids, serials and MACs).
const IDENTITY_INVENTORY: &str = r#"{"devices":[
    {"id":"ipad-janes","udid":"00008101-000A1B2C3D4E001E","serial":"DMPXK1ABCDEF","wifi_mac":"3c:06:30:aa:bb:01"},
    {"id":"iphone-vpn-7","udid":"00008110-0011223344556677","serial":"F2LZK7QWERTY","wifi_mac":"f0:18:98:01:02:03"}]}"#;

/// A feed line that says exactly what `e` says, in the canonical form (RFC 3339 UTC
/// time, every optional field present only when set).
fn feed_line(e: &FeedEntry) -> String {
    let mut v = serde_json::json!({
        "ts": format_rfc3339(e.ts_ns),
        "ip": e.ip.to_string(),
        "source": e.source,
    });
    let fields = [
        ("mac", e.mac.map(|m| MacAddr(m).to_string())),
        ("device_id", e.device_id.clone()),
        ("udid", e.udid.clone()),
        ("serial", e.serial.clone()),
        ("user", e.user.clone()),
        ("event", e.release.then(|| "release".to_string())),
    ];
    for (k, val) in fields {
        if let Some(val) = val {
            v[k] = serde_json::Value::String(val);
        }
    }
    v.to_string()
}

/// Checks what one accepted feed line may hold: non-empty text within
/// [`MAX_FEED_FIELD_LEN`], a time a binding can start at, and a canonical line that
/// parses back to the same entry.
fn check_feed_entry(e: &FeedEntry) {
    for s in [&e.device_id, &e.udid, &e.serial, &e.user]
        .into_iter()
        .flatten()
        .chain([&e.source])
    {
        assert!(
            !s.is_empty() && s.len() <= MAX_FEED_FIELD_LEN,
            "field {s:?}"
        );
    }
    assert!(e.ts_ns < u64::MAX, "ts {} leaves no time to bind", e.ts_ns);
    let line = feed_line(e);
    let back = parse_feed_line(&line)
        .unwrap_or_else(|err| panic!("an accepted entry does not read back: {err}\n{line}"));
    assert_eq!(&back, e, "{line}");
}

/// `identity`: byte 0 picks the capacity of the feed socket's queue (0, 1, 4 or
/// 1,024 lines); the rest is an identity feed, read both as a `--identity` /
/// `[identity] feed` file (`read_feed`) and as what one client sends to the identity
/// socket (`read_connection`). Checks: every accepted entry is within its bounds and
/// reads back from its canonical line; the two readers agree (a file that loads is
/// accepted line for line by the socket, a file that fails has a bad line there too);
/// every socket line is accepted, dropped (counted) or counted bad, and what is
/// accepted is queued; file errors are one line; applied in time order, the newest
/// line of each address resolves to exactly what it claims (or to nobody once released).
pub fn identity(data: &[u8]) {
    let Some((&flags, feed)) = data.split_first() else {
        return;
    };
    let capacity = [0, 1, 4, 1024][usize::from(flags & 3)];
    let file = read_feed(feed, "feed.ndjson");
    let (tx, rx) = crossbeam_channel::bounded(capacity);
    let stats = FeedSocketStats::default();
    read_connection(feed, &tx, &stats);
    let queued: Vec<FeedEntry> = rx.try_iter().collect();
    let accepted = stats.accepted.load(Ordering::SeqCst);
    let dropped = stats.dropped_full.load(Ordering::SeqCst);
    let bad = stats.bad_lines.load(Ordering::SeqCst);
    let lines = feed.split(|&b| b == b'\n').count() as u64;
    assert_eq!(queued.len() as u64, accepted, "accepted lines not queued");
    assert!(accepted <= capacity as u64);
    assert!(accepted + dropped + bad <= lines, "more results than lines");
    for e in &queued {
        check_feed_entry(e);
    }
    let entries = match file {
        Ok(entries) => {
            assert_eq!(bad, 0, "the socket refused a line of a file that loads");
            assert_eq!(accepted + dropped, entries.len() as u64);
            assert!(entries.windows(2).all(|w| w[0].ts_ns <= w[1].ts_ns));
            if dropped == 0 {
                let mut q = queued.clone();
                q.sort_by_key(|e| e.ts_ns);
                assert_eq!(q, entries, "the socket and the file read different entries");
            }
            entries
        }
        Err(e) => {
            let msg = e.to_string();
            let e = one_line(Err::<(), _>(e)).unwrap_err();
            if let IdentityError::Line { line, .. } = &e {
                assert!(*line as u64 <= lines);
            }
            assert!(
                bad > 0,
                "the file failed ({msg}) but the socket took every line"
            );
            return;
        }
    };
    let inventory = Arc::new(parse_inventory(IDENTITY_INVENTORY, "fuzz").expect("inventory"));
    let mut table = IdentityTable::new(Some(Arc::clone(&inventory)), &[]);
    for e in &entries {
        check_feed_entry(e);
        table.apply_feed(e);
    }
    assert_eq!(table.counters.feed_lines, entries.len() as u64);
    let mut newest = std::collections::HashMap::new();
    for e in &entries {
        newest.insert(e.ip, e);
    }
    for e in newest.values() {
        let id = table.resolve(e.ip, None, e.ts_ns);
        if e.release {
            assert_eq!(id.method, Method::None, "released at {}: {id:?}", e.ts_ns);
            assert_eq!(id.device_id, None);
            continue;
        }
        let named = e.device_id.clone().or_else(|| {
            let by_udid = e.udid.as_deref().and_then(|u| inventory.by_udid(u));
            let by_serial = e.serial.as_deref().and_then(|s| inventory.by_serial(s));
            let by_mac = e.mac.and_then(|m| inventory.by_wifi_mac(MacAddr(m)));
            by_udid.or(by_serial).or(by_mac).map(|d| d.id.clone())
        });
        assert_eq!(id.method, Method::Feed, "{e:?}: {id:?}");
        assert_eq!(id.matched_on.first(), Some(&"ip"));
        assert_eq!(id.device_id, named, "{e:?}: {id:?}");
        assert_eq!(id.user, e.user);
        assert_eq!(id.mac, e.mac);
        assert_eq!(id.feed_source.as_deref(), Some(e.source.as_str()));
        // Still bound later on: nothing newer replaced it.
        assert_eq!(table.resolve(e.ip, None, u64::MAX - 1).device_id, named);
    }
    // The daemon applies socket lines as they arrive, in any order.
    let mut live = IdentityTable::new(Some(inventory), &[]);
    for e in &queued {
        live.apply_feed(e);
        let id = live.resolve(e.ip, e.mac, e.ts_ns);
        live.count(&id, e.ip);
    }
}
