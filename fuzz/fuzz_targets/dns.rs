//! Fuzz target: DNS message decoding and DNS-over-TCP framing must never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nightjar::proto::dns::{parse_message, split_tcp_messages};

fuzz_target!(|data: &[u8]| {
    if let Ok(summary) = parse_message(data) {
        assert!(summary.answers.len() <= nightjar::proto::dns::MAX_ANSWERS);
    }
    let mut messages = split_tcp_messages(data);
    for message in messages.by_ref() {
        let _ = parse_message(message);
    }
    assert!(messages.consumed() + messages.remainder().len() == data.len());
});
