//! The flow stage: one bounded flow table per shard.
//!
//! A [`Shard`] owns the flows of one worker. For every decoded packet it finds
//! or creates the bidirectional flow, decides which side is the client,
//! updates counters, TCP state and the timing profile, feeds handshake bytes to
//! [`inspect`] while a handshake is in progress, and ends flows on FIN/RST,
//! idle timeout, active timeout (interim records), eviction or end of input.
//!
//! Invariants:
//! - packet time is the only clock. A flow's times are its packets' own
//!   timestamps; the shard clock that drives sweeps never goes backwards (a
//!   packet older than it is counted in `ts_backwards`);
//! - the table never holds more than `max_flows` flows: a new flow in a full
//!   table evicts the least recently active one, counted;
//! - whether a flow is expired is decided exactly on its next packet, so the
//!   flows found do not depend on when sweeps happen (and so not on how many
//!   workers share the traffic); sweeps only emit idle flows early.

pub mod community_id;
pub mod defrag;
pub mod inspect;
pub mod keep;
pub mod key;
pub mod profile;
pub mod reassembly;
pub mod stats;
mod table;

pub use key::{FlowKey, Side};
pub use stats::FlowStats;
pub use table::{packet_key, ports, vlan_pair, FlowConfig, FlowFootprint, Shard};
#[cfg(test)]
mod tests;
