//! Community ID v1 (the flow hash Zeek, Suricata and Arkime share).
//!
//! `1:` + base64(SHA-1(seed ‖ addr_lo ‖ addr_hi ‖ proto ‖ 0 ‖ port_lo ‖ port_hi)),
//! endpoints ordered by (address, port). Ports are included for TCP, UDP and
//! SCTP only; other protocols hash addresses and protocol (ICMP type/code
//! mapping is not applied, since ICMP flows carry no ports here).

use super::key::FlowKey;
use base64::Engine;

/// The seed used by default in every peer tool.
pub const DEFAULT_SEED: u16 = 0;

pub fn community_id(key: &FlowKey, seed: u16) -> String {
    let alen = if key.ipv6 { 16 } else { 4 };
    let mut buf = [0u8; 2 + 16 + 16 + 2 + 4];
    let mut n = 0;
    let mut put = |bytes: &[u8]| {
        buf[n..n + bytes.len()].copy_from_slice(bytes);
        n += bytes.len();
    };
    put(&seed.to_be_bytes());
    put(&key.a.addr[..alen]);
    put(&key.b.addr[..alen]);
    put(&[key.proto, 0]);
    if matches!(key.proto, 6 | 17 | 132) {
        put(&key.a.port.to_be_bytes());
        put(&key.b.port.to_be_bytes());
    }
    let digest = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, &buf[..n]);
    let mut out = String::with_capacity(30);
    out.push_str("1:");
    base64::engine::general_purpose::STANDARD.encode_string(digest.as_ref(), &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    // Values computed by the reference implementation (Python `communityid` 1.5).
    #[test]
    fn spec_baseline_tcp_v4() {
        let (k, _) = FlowKey::new(
            "128.232.110.120".parse().unwrap(),
            34855,
            "66.35.250.204".parse().unwrap(),
            80,
            6,
            [0, 0],
        );
        assert_eq!(community_id(&k, 0), "1:LQU9qZlK+B5F3KDmev6m5PMibrg=");
        assert_eq!(community_id(&k, 1), "1:3V71V58M3Ksw/yuFALMcW0LAHvc=");
    }

    #[test]
    fn spec_baseline_udp_v4() {
        let (k, _) = FlowKey::new(
            "192.168.1.52".parse().unwrap(),
            54585,
            "8.8.8.8".parse().unwrap(),
            53,
            17,
            [0, 0],
        );
        assert_eq!(community_id(&k, 0), "1:d/FP5EW3wiY1vCndhwleRRKHowQ=");
    }

    #[test]
    fn spec_baseline_udp_v6() {
        let (k, _) = FlowKey::new(
            "fe80::219:e3ff:fee7:5d23".parse().unwrap(),
            5353,
            "ff02::fb".parse().unwrap(),
            5353,
            17,
            [0, 0],
        );
        assert_eq!(community_id(&k, 0), "1:JoBDvaK4Tt6BfWSKWPKaJTELr2M=");
    }
}
