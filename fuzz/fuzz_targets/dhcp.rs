//! Fuzz target: DHCPv4 and DHCPv6 decoding must never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nightjar::proto::dhcp::{parse_dhcpv4, parse_dhcpv6};

fuzz_target!(|data: &[u8]| {
    let _ = parse_dhcpv4(data);
    let _ = parse_dhcpv6(data);
});
