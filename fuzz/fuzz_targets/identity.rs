#![no_main]
//! Fuzz target `identity`: see `harness::identity` for the input format and what it checks.

#[path = "../harness/mod.rs"]
#[allow(dead_code)]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::identity(data));
