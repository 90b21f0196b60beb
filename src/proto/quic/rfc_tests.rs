//! Test vectors of RFC 9001 appendix A (v1) and RFC 9369 appendix A (v2):
//! key derivation, and opening the sample client and server Initials; plus
//! property tests over mutations of the valid client Initial.

use proptest::prelude::*;

use super::keys::{derive_secrets, DirectionSecrets};
use super::*;

/// Parses hex, ignoring whitespace.
pub(super) fn hex(s: &str) -> Vec<u8> {
    let digits: Vec<u8> = s.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    digits
        .chunks(2)
        .map(|p| u8::from_str_radix(std::str::from_utf8(p).expect("ascii"), 16).expect("hex"))
        .collect()
}

const DCID: &str = "8394c8f03e515708";

/// The CRYPTO frame (a ClientHello) of RFC 9001 A.2 and RFC 9369 A.2.
const CLIENT_CRYPTO_FRAME: &str = "
    060040f1010000ed0303ebf8fa56f129 39b9584a3896472ec40bb863cfd3e868
    04fe3a47f06a2b69484c000004130113 02010000c000000010000e00000b6578
    616d706c652e636f6dff01000100000a 00080006001d00170018001000070005
    04616c706e0005000501000000000033 00260024001d00209370b2c9caa47fba
    baf4559fedba753de171fa71f50f1ce1 5d43e994ec74d748002b000302030400
    0d0010000e0403050306030203080408 050806002d00020101001c0002400100
    3900320408ffffffffffffffff050480 00ffff07048000ffff08011001048000
    75300901100f088394c8f03e51570806 048000ffff";

/// The server payload (ACK + CRYPTO with a ServerHello) of RFC 9001 A.3 and RFC 9369 A.3.
const SERVER_PAYLOAD: &str = "
    02000000000600405a020000560303ee fce7f7b37ba1d1632e96677825ddf739
    88cfc79825df566dc5430b9a045a1200 130100002e00330024001d00209d3c94
    0d89690b84d08a60993c144eca684d10 81287c834d5311bcf32bb9da1a002b00
    020304";

pub(super) const V1_CLIENT_INITIAL: &str = "
    c000000001088394c8f03e5157080000 449e7b9aec34d1b1c98dd7689fb8ec11
    d242b123dc9bd8bab936b47d92ec356c 0bab7df5976d27cd449f63300099f399
    1c260ec4c60d17b31f8429157bb35a12 82a643a8d2262cad67500cadb8e7378c
    8eb7539ec4d4905fed1bee1fc8aafba1 7c750e2c7ace01e6005f80fcb7df6212
    30c83711b39343fa028cea7f7fb5ff89 eac2308249a02252155e2347b63d58c5
    457afd84d05dfffdb20392844ae81215 4682e9cf012f9021a6f0be17ddd0c208
    4dce25ff9b06cde535d0f920a2db1bf3 62c23e596d11a4f5a6cf3948838a3aec
    4e15daf8500a6ef69ec4e3feb6b1d98e 610ac8b7ec3faf6ad760b7bad1db4ba3
    485e8a94dc250ae3fdb41ed15fb6a8e5 eba0fc3dd60bc8e30c5c4287e53805db
    059ae0648db2f64264ed5e39be2e20d8 2df566da8dd5998ccabdae053060ae6c
    7b4378e846d29f37ed7b4ea9ec5d82e7 961b7f25a9323851f681d582363aa5f8
    9937f5a67258bf63ad6f1a0b1d96dbd4 faddfcefc5266ba6611722395c906556
    be52afe3f565636ad1b17d508b73d874 3eeb524be22b3dcbc2c7468d54119c74
    68449a13d8e3b95811a198f3491de3e7 fe942b330407abf82a4ed7c1b311663a
    c69890f4157015853d91e923037c227a 33cdd5ec281ca3f79c44546b9d90ca00
    f064c99e3dd97911d39fe9c5d0b23a22 9a234cb36186c4819e8b9c5927726632
    291d6a418211cc2962e20fe47feb3edf 330f2c603a9d48c0fcb5699dbfe58964
    25c5bac4aee82e57a85aaf4e2513e4f0 5796b07ba2ee47d80506f8d2c25e50fd
    14de71e6c418559302f939b0e1abd576 f279c4b2e0feb85c1f28ff18f58891ff
    ef132eef2fa09346aee33c28eb130ff2 8f5b766953334113211996d20011a198
    e3fc433f9f2541010ae17c1bf202580f 6047472fb36857fe843b19f5984009dd
    c324044e847a4f4a0ab34f719595de37 252d6235365e9b84392b061085349d73
    203a4a13e96f5432ec0fd4a1ee65accd d5e3904df54c1da510b0ff20dcc0c77f
    cb2c0e0eb605cb0504db87632cf3d8b4 dae6e705769d1de354270123cb11450e
    fc60ac47683d7b8d0f811365565fd98c 4c8eb936bcab8d069fc33bd801b03ade
    a2e1fbc5aa463d08ca19896d2bf59a07 1b851e6c239052172f296bfb5e724047
    90a2181014f3b94a4e97d117b4381303 68cc39dbb2d198065ae3986547926cd2
    162f40a29f0c3c8745c0f50fba3852e5 66d44575c29d39a03f0cda721984b6f4
    40591f355e12d439ff150aab7613499d bd49adabc8676eef023b15b65bfc5ca0
    6948109f23f350db82123535eb8a7433 bdabcb909271a6ecbcb58b936a88cd4e
    8f2e6ff5800175f113253d8fa9ca8885 c2f552e657dc603f252e1a8e308f76f0
    be79e2fb8f5d5fbbe2e30ecadd220723 c8c0aea8078cdfcb3868263ff8f09400
    54da48781893a7e49ad5aff4af300cd8 04a6b6279ab3ff3afb64491c85194aab
    760d58a606654f9f4400e8b38591356f bf6425aca26dc85244259ff2b19c41b9
    f96f3ca9ec1dde434da7d2d392b905dd f3d1f9af93d1af5950bd493f5aa731b4
    056df31bd267b6b90a079831aaf579be 0a39013137aac6d404f518cfd4684064
    7e78bfe706ca4cf5e9c5453e9f7cfd2b 8b4c8d169a44e55c88d4a9a7f9474241
    e221af44860018ab0856972e194cd934";

const V1_SERVER_INITIAL: &str = "
    cf000000010008f067a5502a4262b500 4075c0d95a482cd0991cd25b0aac406a
    5816b6394100f37a1c69797554780bb3 8cc5a99f5ede4cf73c3ec2493a1839b3
    dbcba3f6ea46c5b7684df3548e7ddeb9 c3bf9c73cc3f3bded74b562bfb19fb84
    022f8ef4cdd93795d77d06edbb7aaf2f 58891850abbdca3d20398c276456cbc4
    2158407dd074ee";

const V2_CLIENT_INITIAL: &str = "
    d76b3343cf088394c8f03e5157080000449ea0c95e82ffe67b6abcdb4298b485
    dd04de806071bf03dceebfa162e75d6c96058bdbfb127cdfcbf903388e99ad04
    9f9a3dd4425ae4d0992cfff18ecf0fdb5a842d09747052f17ac2053d21f57c5d
    250f2c4f0e0202b70785b7946e992e58a59ac52dea6774d4f03b55545243cf1a
    12834e3f249a78d395e0d18f4d766004f1a2674802a747eaa901c3f10cda5500
    cb9122faa9f1df66c392079a1b40f0de1c6054196a11cbea40afb6ef5253cd68
    18f6625efce3b6def6ba7e4b37a40f7732e093daa7d52190935b8da58976ff33
    12ae50b187c1433c0f028edcc4c2838b6a9bfc226ca4b4530e7a4ccee1bfa2a3
    d396ae5a3fb512384b2fdd851f784a65e03f2c4fbe11a53c7777c023462239dd
    6f7521a3f6c7d5dd3ec9b3f233773d4b46d23cc375eb198c63301c21801f6520
    bcfb7966fc49b393f0061d974a2706df8c4a9449f11d7f3d2dcbb90c6b877045
    636e7c0c0fe4eb0f697545460c806910d2c355f1d253bc9d2452aaa549e27a1f
    ac7cf4ed77f322e8fa894b6a83810a34b361901751a6f5eb65a0326e07de7c12
    16ccce2d0193f958bb3850a833f7ae432b65bc5a53975c155aa4bcb4f7b2c4e5
    4df16efaf6ddea94e2c50b4cd1dfe06017e0e9d02900cffe1935e0491d77ffb4
    fdf85290fdd893d577b1131a610ef6a5c32b2ee0293617a37cbb08b847741c3b
    8017c25ca9052ca1079d8b78aebd47876d330a30f6a8c6d61dd1ab5589329de7
    14d19d61370f8149748c72f132f0fc99f34d766c6938597040d8f9e2bb522ff9
    9c63a344d6a2ae8aa8e51b7b90a4a806105fcbca31506c446151adfeceb51b91
    abfe43960977c87471cf9ad4074d30e10d6a7f03c63bd5d4317f68ff325ba3bd
    80bf4dc8b52a0ba031758022eb025cdd770b44d6d6cf0670f4e990b22347a7db
    848265e3e5eb72dfe8299ad7481a408322cac55786e52f633b2fb6b614eaed18
    d703dd84045a274ae8bfa73379661388d6991fe39b0d93debb41700b41f90a15
    c4d526250235ddcd6776fc77bc97e7a417ebcb31600d01e57f32162a8560cacc
    7e27a096d37a1a86952ec71bd89a3e9a30a2a26162984d7740f81193e8238e61
    f6b5b984d4d3dfa033c1bb7e4f0037febf406d91c0dccf32acf423cfa1e70710
    10d3f270121b493ce85054ef58bada42310138fe081adb04e2bd901f2f13458b
    3d6758158197107c14ebb193230cd1157380aa79cae1374a7c1e5bbcb80ee23e
    06ebfde206bfb0fcbc0edc4ebec309661bdd908d532eb0c6adc38b7ca7331dce
    8dfce39ab71e7c32d318d136b6100671a1ae6a6600e3899f31f0eed19e3417d1
    34b90c9058f8632c798d4490da4987307cba922d61c39805d072b589bd52fdf1
    e86215c2d54e6670e07383a27bbffb5addf47d66aa85a0c6f9f32e59d85a44dd
    5d3b22dc2be80919b490437ae4f36a0ae55edf1d0b5cb4e9a3ecabee93dfc6e3
    8d209d0fa6536d27a5d6fbb17641cde27525d61093f1b28072d111b2b4ae5f89
    d5974ee12e5cf7d5da4d6a31123041f33e61407e76cffcdcfd7e19ba58cf4b53
    6f4c4938ae79324dc402894b44faf8afbab35282ab659d13c93f70412e85cb19
    9a37ddec600545473cfb5a05e08d0b209973b2172b4d21fb69745a262ccde96b
    a18b2faa745b6fe189cf772a9f84cbfc";

const V2_SERVER_INITIAL: &str = "
    dc6b3343cf0008f067a5502a4262b5004075d92faaf16f05d8a4398c47089698
    baeea26b91eb761d9b89237bbf87263017915358230035f7fd3945d88965cf17
    f9af6e16886c61bfc703106fbaf3cb4cfa52382dd16a393e42757507698075b2
    c984c707f0a0812d8cd5a6881eaf21ceda98f4bd23f6fe1a3e2c43edd9ce7ca8
    4bed8521e2e140";

fn secrets(secret: &str, key: &str, iv: &str, hp: &str) -> DirectionSecrets {
    DirectionSecrets {
        secret: hex(secret).try_into().expect("32 bytes"),
        key: hex(key).try_into().expect("16 bytes"),
        iv: hex(iv).try_into().expect("12 bytes"),
        hp: hex(hp).try_into().expect("16 bytes"),
    }
}

#[test]
fn rfc9001_a1_keys() {
    let (client, server) = derive_secrets(QuicVersion::V1, &hex(DCID)).expect("v1 known");
    assert_eq!(
        client,
        secrets(
            "c00cf151ca5be075ed0ebfb5c80323c42d6b7db67881289af4008f1f6c357aea",
            "1f369613dd76d5467730efcbe3b1a22d",
            "fa044b2f42a3fd3b46fb255c",
            "9f50449e04a0e810283a1e9933adedd2",
        )
    );
    assert_eq!(
        server,
        secrets(
            "3c199828fd139efd216c155ad844cc81fb82fa8d7446fa7d78be803acdda951b",
            "cf3a5331653c364c88f0f379b6067e37",
            "0ac1493ca1905853b0bba03e",
            "c206b8d9b9f0f37644430b490eeaa314",
        )
    );
}

#[test]
fn rfc9369_a1_keys() {
    let (client, server) = derive_secrets(QuicVersion::V2, &hex(DCID)).expect("v2 known");
    assert_eq!(
        client,
        secrets(
            "14ec9d6eb9fd7af83bf5a668bc17a7e283766aade7ecd0891f70f9ff7f4bf47b",
            "8b1a0bc121284290a29e0971b5cd045d",
            "91f73e2351d8fa91660e909f",
            "45b95e15235d6f45a6b19cbcb0294ba9",
        )
    );
    assert_eq!(
        server,
        secrets(
            "0263db1782731bf4588e7e4d93b7463907cb8cd8200b5da55a8bd488eafc37c1",
            "82db637861d55e1d011f19ea71d5d2a7",
            "dd13c276499c0249d3310652",
            "edf6d05c83121201b436e16877593c3a",
        )
    );
}

/// Opens `packet` and checks the result against the RFC's plaintext.
fn check_client(version: QuicVersion, packet: &str) {
    let keys = InitialKeys::derive(version, &hex(DCID)).expect("known version");
    let (mut scratch, mut out) = (Vec::new(), Vec::new());
    let summary = open_initials(&hex(packet), &keys, true, &mut scratch, &mut out).expect("opens");
    assert_eq!(summary.initial_packets, 1);
    assert_eq!(summary.last_packet_number, Some(2));
    assert_eq!(summary.crypto_frames, 1);
    // 1162-byte payload: the 245-byte CRYPTO frame, then PADDING.
    assert_eq!(summary.padding_bytes, 1162 - 245);
    let frame = hex(CLIENT_CRYPTO_FRAME);
    assert_eq!(
        out,
        [CryptoFrame {
            offset: 0,
            data: frame[4..].to_vec()
        }]
    );
    assert_eq!(out[0].data[0], 0x01, "ClientHello");
}

fn check_server(version: QuicVersion, packet: &str) {
    let keys = InitialKeys::derive(version, &hex(DCID)).expect("known version");
    let (mut scratch, mut out) = (Vec::new(), Vec::new());
    let summary = open_initials(&hex(packet), &keys, false, &mut scratch, &mut out).expect("opens");
    assert_eq!(summary.last_packet_number, Some(1));
    assert_eq!(
        summary.ack,
        Some(AckSummary {
            largest_acknowledged: 0,
            additional_ranges: 0,
            ecn_counts: None
        })
    );
    let payload = hex(SERVER_PAYLOAD);
    assert_eq!(
        out,
        [CryptoFrame {
            offset: 0,
            data: payload[9..].to_vec()
        }]
    );
    assert_eq!(out[0].data[0], 0x02, "ServerHello");
    // The client's keys cannot open the server's packet.
    let wrong = open_initials(&hex(packet), &keys, true, &mut scratch, &mut out);
    assert_eq!(wrong, Err(QuicError::DecryptFailed));
}

#[test]
fn rfc9001_a2_a3_open() {
    check_client(QuicVersion::V1, V1_CLIENT_INITIAL);
    check_server(QuicVersion::V1, V1_SERVER_INITIAL);
}

#[test]
fn rfc9369_a2_a3_open() {
    let packet = hex(V2_CLIENT_INITIAL);
    let h = parse_long_headers(&packet)
        .next()
        .expect("one")
        .expect("valid");
    assert_eq!(h.kind, PacketKind::Initial);
    check_client(QuicVersion::V2, V2_CLIENT_INITIAL);
    check_server(QuicVersion::V2, V2_SERVER_INITIAL);
}

#[test]
fn version_and_key_mismatches() {
    let v1_keys = InitialKeys::derive(QuicVersion::V1, &hex(DCID)).expect("v1");
    let (mut scratch, mut out) = (Vec::new(), Vec::new());
    let v2_packet = hex(V2_CLIENT_INITIAL);
    assert_eq!(
        open_initials(&v2_packet, &v1_keys, true, &mut scratch, &mut out),
        Err(QuicError::KeyVersionMismatch(QuicVersion::V2))
    );
    let other_dcid = InitialKeys::derive(QuicVersion::V1, &[1, 2, 3, 4, 5, 6, 7, 8]).expect("v1");
    let v1_packet = hex(V1_CLIENT_INITIAL);
    assert_eq!(
        open_initials(&v1_packet, &other_dcid, true, &mut scratch, &mut out),
        Err(QuicError::DecryptFailed)
    );
    assert!(out.is_empty());
    assert!(InitialKeys::derive(QuicVersion(0x5130_3530), &hex(DCID)).is_none());
    assert!(InitialKeys::derive(QuicVersion::V1, &[0; 21]).is_none());
    assert_eq!(QuicVersion::V2.to_string(), "0x6b3343cf");
    assert_eq!(QuicError::DecryptFailed.reason(), "decrypt_failed");
}

/// Rough cost of key derivation and of opening one 1200-byte Initial.
/// Run with `cargo test --release -- --ignored --nocapture initial_timing`.
#[test]
#[ignore]
fn initial_timing() {
    const ROUNDS: u32 = 2000;
    let dcid = hex(DCID);
    let packet = hex(V1_CLIENT_INITIAL);
    let start = std::time::Instant::now();
    for _ in 0..ROUNDS {
        std::hint::black_box(InitialKeys::derive(
            QuicVersion::V1,
            std::hint::black_box(&dcid),
        ));
    }
    let derive = start.elapsed() / ROUNDS;
    let keys = InitialKeys::derive(QuicVersion::V1, &dcid).expect("v1");
    let (mut scratch, mut out) = (Vec::new(), Vec::new());
    let start = std::time::Instant::now();
    for _ in 0..ROUNDS {
        out.clear();
        std::hint::black_box(open_initials(&packet, &keys, true, &mut scratch, &mut out).is_ok());
    }
    let open = start.elapsed() / ROUNDS;
    println!("InitialKeys::derive: {derive:?}; open_initials (1200-byte Initial): {open:?}");
}

proptest! {
    #[test]
    fn open_never_panics_on_random_bytes(d in proptest::collection::vec(any::<u8>(), 0..1500)) {
        let keys = InitialKeys::derive(QuicVersion::V1, &hex(DCID)).expect("v1");
        let (mut scratch, mut out) = (Vec::new(), Vec::new());
        let _ = open_initials(&d, &keys, true, &mut scratch, &mut out);
        prop_assert!(out.len() <= MAX_CRYPTO_FRAMES_PER_DATAGRAM);
    }

    #[test]
    fn open_never_panics_on_mutated_initial(
        edits in proptest::collection::vec((0usize..1200, any::<u8>()), 1..8),
        cut in 0usize..1300,
    ) {
        let keys = InitialKeys::derive(QuicVersion::V1, &hex(DCID)).expect("v1");
        let mut packet = hex(V1_CLIENT_INITIAL);
        for (at, value) in edits {
            if let Some(b) = packet.get_mut(at) {
                *b = value;
            }
        }
        packet.truncate(cut);
        let (mut scratch, mut out) = (Vec::new(), Vec::new());
        let _ = open_initials(&packet, &keys, true, &mut scratch, &mut out);
        prop_assert!(scratch.len() <= packet.len());
    }
}
