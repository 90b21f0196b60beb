//! Flow-stage tests across modules: a QUIC ClientHello split over several
//! Initial packets, delivered out of order, fingerprints exactly like the
//! same hello in one packet.

use super::{FlowConfig, Shard};
use crate::capture::LinkType;
use crate::decode::decode;
use crate::observation::{Observation, Termination};
use crate::proto::quic::seal_client_initial;

/// The ClientHello of RFC 9001 appendix A.2 (handshake message, 241 bytes).
const CLIENT_HELLO: &str =
    "010000ed0303ebf8fa56f12939b9584a3896472ec40bb863cfd3e86804fe3a47f06a2b69484c000004130113\
02010000c000000010000e00000b6578616d706c652e636f6dff01000100000a00080006001d00170018001000070005\
04616c706e0005000501000000000033002600240\
01d00209370b2c9caa47fbabaf4559fedba753de171fa71f50f1ce15d43e994ec74d748002b0003020304000d0010000e\
0403050306030203080408050806002d00020101001c00024001003900320408ffffffffffffffff05048000ffff0704\
8000ffff0801100104800075300901100f088394c8f03e51570806048000ffff";

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// A CRYPTO frame with 2-byte varints for offset and length.
fn crypto(offset: usize, data: &[u8]) -> Vec<u8> {
    let mut f = vec![0x06];
    f.extend_from_slice(&(0x4000 | offset as u16).to_be_bytes());
    f.extend_from_slice(&(0x4000 | data.len() as u16).to_be_bytes());
    f.extend_from_slice(data);
    f
}

fn udp_v4(sport: u16, payload: &[u8]) -> Vec<u8> {
    let total = (28 + payload.len()) as u16;
    let mut b = vec![0x45, 0];
    b.extend_from_slice(&total.to_be_bytes());
    b.extend_from_slice(&[0, 0, 0, 0, 64, 17, 0, 0, 10, 0, 0, 2, 10, 0, 0, 1]);
    b.extend_from_slice(&sport.to_be_bytes());
    b.extend_from_slice(&443u16.to_be_bytes());
    b.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    b.extend_from_slice(&[0, 0]);
    b.extend_from_slice(payload);
    b
}

/// Replays datagrams of one flow and returns its (ja4, sni, decrypted).
fn fingerprint(sport: u16, datagrams: &[Vec<u8>]) -> (String, Option<String>, bool) {
    let mut shard = Shard::new(FlowConfig::default());
    let mut out = Vec::new();
    for (i, d) in datagrams.iter().enumerate() {
        let frame = udp_v4(sport, d);
        let pkt = decode(LinkType::RAW, &frame).unwrap();
        shard.process(1_000_000_000 + i as u64 * 1_000_000, &pkt, &mut out);
    }
    shard.flush(Termination::EndOfInput, 2_000_000_000, &mut out);
    let flow = out
        .iter()
        .find_map(|o| match o {
            Observation::Flow(f) => Some(f),
            _ => None,
        })
        .expect("a flow record");
    let ch = flow
        .app
        .client_hello
        .as_ref()
        .expect("ClientHello decrypted");
    (
        ch.ja4.clone(),
        ch.sni.clone(),
        flow.app.quic.as_ref().unwrap().decrypted,
    )
}

#[test]
fn quic_hello_in_three_initials_out_of_order_matches_one_piece() {
    let hello = hex(CLIENT_HELLO);
    assert_eq!(hello.len(), 241);
    let dcid = hex("8394c8f03e515708");
    let whole = vec![seal_client_initial(&dcid, 0, &crypto(0, &hello))];
    let (a, b, c) = (&hello[..80], &hello[80..160], &hello[160..]);
    let split = vec![
        seal_client_initial(&dcid, 2, &crypto(160, c)),
        seal_client_initial(&dcid, 0, &crypto(0, a)),
        seal_client_initial(&dcid, 1, &crypto(80, b)),
    ];
    let one = fingerprint(40000, &whole);
    let three = fingerprint(40001, &split);
    assert_eq!(one, three);
    assert!(one.0.starts_with('q'), "QUIC JA4 prefix: {}", one.0);
    assert_eq!(one.1.as_deref(), Some("example.com"));
    assert!(one.2);
}

#[test]
fn quic_hello_missing_a_piece_is_truncated_not_guessed() {
    let hello = hex(CLIENT_HELLO);
    let dcid = hex("8394c8f03e515708");
    let partial = seal_client_initial(&dcid, 0, &crypto(0, &hello[..100]));
    let mut shard = Shard::new(FlowConfig::default());
    let mut out = Vec::new();
    let frame = udp_v4(40002, &partial);
    shard.process(1, &decode(LinkType::RAW, &frame).unwrap(), &mut out);
    shard.flush(Termination::EndOfInput, 2, &mut out);
    let Some(Observation::Flow(f)) = out.first() else {
        panic!("no flow")
    };
    assert!(f.app.client_hello.is_none());
    assert!(f.app.tls_truncated);
}

/// The fixed bytes of an idle flow (README, performance) do not creep back up:
/// a new per-flow field must fit, or move to state allocated only while needed.
/// 256: the bound the sensor promises for a flow of one packet; a flow of more
/// packets adds its timing profile once, and that sum is held too.
#[test]
fn an_idle_flow_stays_within_its_documented_footprint() {
    let f = super::FlowFootprint::get();
    println!("flow footprint: {f:?}, total {}", f.total());
    assert!(f.total() <= 256, "{f:?}: {} bytes", f.total());
    assert!(f.total() + f.profile <= 520, "{f:?}");
}
