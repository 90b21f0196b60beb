//! Wiring: threads, channels and counters that carry frames from capture to
//! output. No protocol logic lives here.

pub mod check;
pub mod live;
pub mod merge;
pub mod replay;
pub mod stats;
