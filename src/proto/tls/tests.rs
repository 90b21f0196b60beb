//! Unit and property tests of the TLS scanners, over handshakes built byte by byte.

use super::super::super::flow::reassembly::{StreamReassembler, HANDSHAKE_BYTES_CLIENT};
use super::*;
use proptest::prelude::*;

fn u16s(values: &[u16]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_be_bytes()).collect()
}

fn with_u16_len(body: &[u8]) -> Vec<u8> {
    let mut out = (body.len() as u16).to_be_bytes().to_vec();
    out.extend_from_slice(body);
    out
}

fn with_u8_len(body: &[u8]) -> Vec<u8> {
    let mut out = vec![body.len() as u8];
    out.extend_from_slice(body);
    out
}

fn extensions(exts: &[(u16, Vec<u8>)]) -> Vec<u8> {
    let mut block = Vec::new();
    for (t, data) in exts {
        block.extend_from_slice(&t.to_be_bytes());
        block.extend_from_slice(&with_u16_len(data));
    }
    with_u16_len(&block)
}

fn client_hello_body(sid: &[u8], ciphers: &[u16], exts: &[(u16, Vec<u8>)]) -> Vec<u8> {
    let mut b = vec![0x03, 0x03];
    b.extend_from_slice(&[0x11; 32]);
    b.extend_from_slice(&with_u8_len(sid));
    b.extend_from_slice(&with_u16_len(&u16s(ciphers)));
    b.extend_from_slice(&[1, 0]);
    b.extend_from_slice(&extensions(exts));
    b
}

fn handshake(msg_type: u8, body: &[u8]) -> Vec<u8> {
    let len = body.len() as u32;
    let mut out = vec![msg_type];
    out.extend_from_slice(&len.to_be_bytes()[1..]);
    out.extend_from_slice(body);
    out
}

/// Wraps handshake bytes in records of at most `max` payload bytes each.
fn records(hs: &[u8], max: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for chunk in hs.chunks(max) {
        out.extend_from_slice(&[22, 3, 1]);
        out.extend_from_slice(&(chunk.len() as u16).to_be_bytes());
        out.extend_from_slice(chunk);
    }
    out
}

fn sni(name: &[u8]) -> Vec<u8> {
    let mut entry = vec![0];
    entry.extend_from_slice(&with_u16_len(name));
    with_u16_len(&entry)
}

fn alpn(protos: &[&[u8]]) -> Vec<u8> {
    let list: Vec<u8> = protos.iter().flat_map(|p| with_u8_len(p)).collect();
    with_u16_len(&list)
}

/// A browser-like ClientHello: GREASE, ECH, PSK and a 1,216-byte X25519MLKEM768 share.
fn modern_hello() -> Vec<u8> {
    let mut key_share = u16s(&[0x1a1a, 1]);
    key_share.push(0);
    key_share.extend_from_slice(&u16s(&[0x11ec, 1216]));
    key_share.extend_from_slice(&[0x42; 1216]);
    key_share.extend_from_slice(&u16s(&[0x001d, 32]));
    key_share.extend_from_slice(&[0x43; 32]);
    let exts = vec![
        (0x0a0a, vec![]),
        (0x0000, sni(b"example.com")),
        (0x0010, alpn(&[b"h2", b"http/1.1"])),
        (
            0x000a,
            with_u16_len(&u16s(&[0x2a2a, 0x11ec, 0x001d, 0x0017])),
        ),
        (0x000b, with_u8_len(&[0])),
        (0x000d, with_u16_len(&u16s(&[0x0403, 0x0804, 0x0401]))),
        (0x002b, with_u8_len(&u16s(&[0x3a3a, 0x0304, 0x0303]))),
        (0x0033, with_u16_len(&key_share)),
        (0xfe0d, vec![0; 40]),
        (0x0029, vec![0; 20]),
    ];
    handshake(
        1,
        &client_hello_body(&[7; 32], &[0x4a4a, 0x1301, 0x1302, 0xc02b], &exts),
    )
}

#[test]
fn parses_modern_client_hello() {
    let Scan::Done(ch) = scan_client_records(&records(&modern_hello(), 16_384)) else {
        panic!("not done");
    };
    assert_eq!(ch.sni.as_deref(), Some("example.com"));
    assert_eq!(ch.alpn, vec!["h2", "http/1.1"]);
    assert_eq!(ch.supported_versions, vec![0x3a3a, 0x0304, 0x0303]);
    assert_eq!(ch.key_share_groups, vec![0x1a1a, 0x11ec, 0x001d]);
    assert!(ch.pq_hybrid && ch.ech && ch.psk_offered && ch.grease && ch.has_session_id());
    assert!(ch.malformed_extensions.is_empty());
    assert_eq!(ch.extensions.first(), Some(&0x0a0a));
    assert_eq!(
        ch.ja3_string,
        "771,4865-4866-49195,0-16-10-11-13-43-51-65037-41,4588-29-23,0"
    );
    assert_eq!(ch.ja3, fingerprint::md5_hex(&ch.ja3_string));
    assert!(ch.ja4.starts_with("t13d0309h2_"), "{}", ch.ja4);
    assert!(ch
        .ja4_r
        .ends_with("_000a,000b,000d,0029,002b,0033,fe0d_0403,0804,0401"));
}

#[test]
fn split_client_hello_out_of_order_gives_same_fingerprints() {
    let whole = records(&modern_hello(), 16_384);
    let Scan::Done(reference) = scan_client_records(&whole) else {
        panic!("not done");
    };
    // Three TCP segments, delivered last, first, middle; and the hello also split
    // across two records.
    for bytes in [whole.clone(), records(&modern_hello(), 700)] {
        let cuts = [0, 500, 1100, bytes.len()];
        let mut r = StreamReassembler::new(HANDSHAKE_BYTES_CLIENT);
        for i in [2usize, 0, 1] {
            assert!(!matches!(
                scan_client_records(r.contiguous()),
                Scan::Done(_)
            ));
            r.insert(cuts[i] as u64, &bytes[cuts[i]..cuts[i + 1]]);
        }
        assert_eq!(
            scan_client_records(r.contiguous()),
            Scan::Done(reference.clone())
        );
    }
}

#[test]
fn every_prefix_needs_more() {
    let bytes = records(&modern_hello(), 1000);
    for n in 0..bytes.len() {
        assert_eq!(
            scan_client_records(&bytes[..n]),
            Scan::NeedMore,
            "prefix {n}"
        );
        assert_eq!(
            scan_client_records(&bytes[..n]).or_truncated(true),
            Scan::Truncated
        );
    }
}

#[test]
fn hello_after_plaintext_prelude() {
    let mut bytes = b"CONNECT example.com:443 HTTP/1.1\r\n\r\n".to_vec();
    let at = bytes.len();
    bytes.extend_from_slice(&records(&modern_hello(), 16_384));
    assert_eq!(scan_client_records(&bytes), Scan::NotTls);
    assert_eq!(locate_hello_record(&bytes, 1), Some(at));
    assert!(matches!(scan_client_records(&bytes[at..]), Scan::Done(_)));
    assert_eq!(locate_hello_record(b"\x16\x03\x01\x00", 1), None);
}

#[test]
fn quic_crypto_stream_uses_q_prefix() {
    let Scan::Done(ch) = scan_client_messages(&modern_hello()) else {
        panic!("not done");
    };
    assert!(ch.ja4.starts_with("q13d0309h2_"));
    assert_eq!(scan_client_messages(&[2, 0, 0, 0]), Scan::NotTls);
    assert_eq!(scan_client_messages(&modern_hello()[..100]), Scan::NeedMore);
}

#[test]
fn empty_extensions_and_no_alpn() {
    let body = client_hello_body(&[], &[0x002f], &[(0x0000, sni(b"a.b"))]);
    let Scan::Done(ch) = scan_client_records(&records(&handshake(1, &body), 16_384)) else {
        panic!("not done");
    };
    assert!(ch.ja4.starts_with("t12d010100_"), "{}", ch.ja4);
    assert!(ch.ja4.ends_with("_000000000000"));
    assert!(!ch.has_session_id() && !ch.grease && !ch.pq_hybrid);
}

#[test]
fn alpn_hex_rule_and_escaping() {
    let exts = vec![
        (0x0000, sni(b"bad\xffname")),
        (0x0010, alpn(&[&[0xba, 0xad]])),
    ];
    let body = client_hello_body(&[], &[0x002f], &exts);
    let Scan::Done(ch) = scan_client_records(&records(&handshake(1, &body), 16_384)) else {
        panic!("not done");
    };
    assert!(ch.ja4.starts_with("t12d0102bd_"), "{}", ch.ja4);
    assert_eq!(ch.sni.as_deref(), Some("bad\\xffname"));
    assert_eq!(ch.alpn, vec!["\\xba\\xad"]);
}

#[test]
fn malformed_extension_content_is_an_anomaly() {
    let exts = vec![(0x0010, vec![0, 9, 1]), (0x002b, vec![3, 3])];
    let body = client_hello_body(&[], &[0x002f], &exts);
    let Scan::Done(ch) = scan_client_records(&records(&handshake(1, &body), 16_384)) else {
        panic!("not done");
    };
    assert_eq!(ch.malformed_extensions, vec![0x0010, 0x002b]);
    assert_eq!(ch.extensions, vec![0x0010, 0x002b]);
}

#[test]
fn not_tls_truncated_and_malformed() {
    assert_eq!(scan_client_records(b"GET / HTTP/1.1\r\n"), Scan::NotTls);
    assert_eq!(scan_client_records(&[22, 2]), Scan::NotTls);
    assert_eq!(scan_client_records(&[22]), Scan::NeedMore);
    assert_eq!(scan_client_records(&[]), Scan::NeedMore);
    // Declared length beyond the bound.
    assert_eq!(
        scan_client_records(&records(&[1, 0x01, 0, 0, 3, 3], 100)),
        Scan::Truncated
    );
    // A ServerHello where a ClientHello should be.
    assert_eq!(
        scan_client_records(&records(&[2, 0, 0, 1, 0], 100)),
        Scan::Malformed(TlsError::UnexpectedMessage(2))
    );
    // A ClientHello cut short by an alert record.
    let mut cut = records(&modern_hello()[..50], 100);
    cut.extend_from_slice(&[21, 3, 3, 0, 2, 2, 40]);
    assert_eq!(
        scan_client_records(&cut),
        Scan::Malformed(TlsError::MessageCutShort)
    );
    assert!(looks_like_tls_client(&[22, 3, 1, 2, 0, 1]));
    assert!(looks_like_tls_client(&[22, 3, 3]));
    assert!(!looks_like_tls_client(&[22, 3, 1, 2, 0, 2]));
    assert!(!looks_like_tls_client(&[22, 3, 5, 2, 0, 1]));
    assert!(!looks_like_tls_client(&[23, 3, 3]));
}

fn server_hello_body(
    random: [u8; 32],
    sid: &[u8],
    cipher: u16,
    exts: &[(u16, Vec<u8>)],
) -> Vec<u8> {
    let mut b = vec![0x03, 0x03];
    b.extend_from_slice(&random);
    b.extend_from_slice(&with_u8_len(sid));
    b.extend_from_slice(&cipher.to_be_bytes());
    b.push(0);
    b.extend_from_slice(&extensions(exts));
    b
}

#[test]
fn tls13_server_hello_and_hrr() {
    let exts = vec![(0x002b, vec![3, 4]), (0x0033, vec![0; 36])];
    let sh = handshake(2, &server_hello_body([5; 32], &[7; 32], 0x1301, &exts));
    let Scan::Done(s) = scan_server_records(&records(&sh, 16_384)) else {
        panic!("not done");
    };
    assert!(s.complete);
    let hello = s.hello.expect("hello");
    assert_eq!(hello.negotiated_version(), 0x0304);
    assert_eq!(version_name(hello.negotiated_version()), Some("1.3"));
    assert_eq!(hello.ja3s_string, "771,4865,43-51");
    assert!(!hello.hello_retry_request);

    let hrr = handshake(2, &server_hello_body(HRR_RANDOM, &[7; 32], 0x1301, &exts));
    let Scan::Done(s) = scan_server_messages(&hrr) else {
        panic!("not done");
    };
    assert!(s.complete && s.hello.expect("hello").hello_retry_request);
}

#[test]
fn tls12_server_hello_certificate_and_resumption() {
    let leaf = include_bytes!("testdata/leaf.der");
    let exts = vec![(0xff01, vec![0]), (0x0010, alpn(&[b"h2"]))];
    let sh = handshake(2, &server_hello_body([5; 32], &[9; 32], 0xc02f, &exts));
    let mut chain = Vec::new();
    for _ in 0..2 {
        chain.extend_from_slice(&(leaf.len() as u32).to_be_bytes()[1..]);
        chain.extend_from_slice(leaf);
    }
    let mut cert_body = (chain.len() as u32).to_be_bytes()[1..].to_vec();
    cert_body.extend_from_slice(&chain);
    let mut hs = sh.clone();
    hs.extend_from_slice(&handshake(11, &cert_body));
    hs.extend_from_slice(&handshake(14, &[]));
    let bytes = records(&hs, 300);

    // Hello alone: usable, not complete.
    let Scan::Done(partial) = scan_server_records(&bytes[..sh.len() + 5 + 10]) else {
        panic!("not done");
    };
    assert!(partial.hello.is_some() && !partial.complete && partial.certificate.is_none());

    let Scan::Done(full) = scan_server_records(&bytes) else {
        panic!("not done");
    };
    assert!(full.complete);
    let cert = full.certificate.expect("certificate");
    assert_eq!(cert.san_dns, vec!["test.example", "www.test.example"]);
    assert!(cert.subject.contains("CN=test.example"), "{}", cert.subject);
    assert_eq!(cert.serial, "0123456789");
    assert_eq!(cert.chain_len, 2);
    assert_eq!(
        cert.sha256,
        "61036ce26077886c9efaf93fe7df5b83b365216e07fd89d843a181de5520a0ff"
    );
    assert!(cert.not_before.ends_with('Z') && cert.not_before.len() == 20);
    let hello = full.hello.expect("hello");
    assert_eq!(hello.alpn.as_deref(), Some("h2"));
    assert_eq!(hello.ja3s_string, "771,49199,65281-16");

    let Scan::Done(client) = scan_client_records(&records(&modern_hello(), 16_384)) else {
        panic!("not done");
    };
    assert_eq!(session_resumed(&client, &hello), Some(false));
    let mut resumed = hello.clone();
    resumed.session_id = client.session_id.clone();
    assert_eq!(session_resumed(&client, &resumed), Some(true));

    // TLS 1.2 resumption: ChangeCipherSpec follows the hello, no certificate.
    let mut abbreviated = records(&sh, 16_384);
    abbreviated.extend_from_slice(&[20, 3, 3, 0, 1, 1]);
    let Scan::Done(s) = scan_server_records(&abbreviated) else {
        panic!("not done");
    };
    assert!(s.complete && s.certificate.is_none());
}

/// DTLS ClientHello in two fragments, each in its own record.
#[test]
fn dtls_client_hello_fragments() {
    let tls_body = client_hello_body(
        &[],
        &[0xc02b, 0x002f],
        &[(0x000d, with_u16_len(&u16s(&[0x0403])))],
    );
    // Insert a cookie after the session id: version(2) random(32) sid_len(1).
    let mut body = tls_body[..35].to_vec();
    body.extend_from_slice(&with_u8_len(&[0xcc; 8]));
    body.extend_from_slice(&tls_body[35..]);
    body[0] = 0xfe;
    body[1] = 0xfd;
    let total = body.len() as u32;
    let mut out = Vec::new();
    for (off, part) in [(40usize, &body[40..]), (0, &body[..40])] {
        let mut hs = vec![1];
        hs.extend_from_slice(&total.to_be_bytes()[1..]);
        hs.extend_from_slice(&[0, 0]);
        hs.extend_from_slice(&(off as u32).to_be_bytes()[1..]);
        hs.extend_from_slice(&(part.len() as u32).to_be_bytes()[1..]);
        hs.extend_from_slice(part);
        out.extend_from_slice(&[22, 0xfe, 0xff, 0, 0, 0, 0, 0, 0, 0, 0]);
        out.extend_from_slice(&(hs.len() as u16).to_be_bytes());
        out.extend_from_slice(&hs);
    }
    let first_record = 13 + 12 + body.len() - 40;
    assert_eq!(scan_client_dtls(&out[..first_record]), Scan::NeedMore);
    let Scan::Done(ch) = scan_client_dtls(&out) else {
        panic!("not done");
    };
    assert!(ch.ja4.starts_with("dd2i020100_"), "{}", ch.ja4);
    assert_eq!(ch.legacy_version, 0xfefd);
    assert_eq!(
        scan_client_dtls(&[22, 3, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
        Scan::NotTls
    );
}

proptest! {
    #[test]
    fn scanners_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let _ = scan_client_records(&bytes);
        let _ = scan_client_messages(&bytes);
        let _ = scan_server_records(&bytes);
        let _ = scan_server_messages(&bytes);
        let _ = scan_client_dtls(&bytes);
        let _ = looks_like_tls_client(&bytes);
    }

    #[test]
    fn mutated_hello_never_panics(pos in 0usize..1500, val in any::<u8>(), cut in 0usize..1600) {
        let mut bytes = records(&modern_hello(), 16_384);
        if let Some(b) = bytes.get_mut(pos) {
            *b = val;
        }
        bytes.truncate(cut.max(1));
        let _ = scan_client_records(&bytes);
        let _ = scan_client_messages(bytes.get(5..).unwrap_or(&[]));
    }

    #[test]
    fn mutated_server_flight_never_panics(pos in 0usize..1200, val in any::<u8>()) {
        let leaf = include_bytes!("testdata/leaf.der");
        let sh = handshake(2, &server_hello_body([5; 32], &[], 0xc02f, &[]));
        let mut cert_body = ((leaf.len() + 3) as u32).to_be_bytes()[1..].to_vec();
        cert_body.extend_from_slice(&(leaf.len() as u32).to_be_bytes()[1..]);
        cert_body.extend_from_slice(leaf);
        let mut hs = sh;
        hs.extend_from_slice(&handshake(11, &cert_body));
        let mut bytes = records(&hs, 16_384);
        if let Some(b) = bytes.get_mut(pos) {
            *b = val;
        }
        let _ = scan_server_records(&bytes);
    }
}
