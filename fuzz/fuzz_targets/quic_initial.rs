#![no_main]
//! Fuzz target `quic_initial`: see `harness::quic_initial` for the input format and what it checks.

#[path = "../harness/mod.rs"]
#[allow(dead_code)]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::quic_initial(data));
