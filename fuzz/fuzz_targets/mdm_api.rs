#![no_main]
//! Fuzz target `mdm_api`: see `harness::mdm_api` for the input format and what it checks.

#[path = "../harness/mod.rs"]
#[allow(dead_code)]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::mdm_api(data));
