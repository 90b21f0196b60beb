//! nightjar: a passive sensor for encrypted mobile traffic.
//!
//! The pipeline is visible in the module tree:
//! `capture` → `decode` → `flow` (shards, with handshake inspection through
//! `proto`) → observations → `correlate` → `output`, wired together by
//! `pipeline`; `daemon` runs it live as a service. `mdm` holds the device and app model the correlator joins
//! flows to; `config` the validated configuration.

pub mod capture;
pub mod config;
pub mod correlate;
pub mod daemon;
pub mod decode;
pub mod fleet;
pub mod flow;
pub mod mdm;
pub mod observation;
pub mod output;
pub mod pipeline;
pub mod proto;
pub mod scenario;
