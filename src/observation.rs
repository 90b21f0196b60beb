//! Observations: what the flow shards tell the correlator.
//!
//! This is the boundary DESIGN.md keeps between the data plane (capture,
//! decode, flow, proto) and the correlator: owned, serializable values with
//! packet timestamps. Everything the records say about a flow's packets is in
//! a [`FlowSummary`]; the correlator adds identity, names and attribution.

use crate::flow::inspect::AppSummary;
use crate::flow::profile::Profile;
use serde::{Deserialize, Serialize};
use std::net::IpAddr;

#[derive(Debug, Serialize, Deserialize)]
pub enum Observation {
    /// A flow ended (or, with `interim`, a long-lived flow's totals so far).
    Flow(Box<FlowSummary>),
    /// A DNS message seen on a flow, for the name cache and optional DNS records.
    Dns(Box<DnsObservation>),
    /// A DHCP message, for the identity table.
    Dhcp(Box<DhcpObservation>),
    /// An identity feed line (file or socket): who holds an address from its `ts` on.
    Identity(Box<crate::correlate::identity::FeedEntry>),
}

impl Observation {
    /// Packet time at which the observation was made, in ns since the epoch.
    pub fn ts(&self) -> u64 {
        match self {
            Observation::Flow(f) => f.emitted_ns,
            Observation::Dns(d) => d.ts_ns,
            Observation::Dhcp(d) => d.ts_ns,
            Observation::Identity(e) => e.ts_ns,
        }
    }

    /// The order in which observations reach the correlator: packet time, then, at the
    /// same time, flows before the rest (a shard sweeps its idle flows before it looks
    /// at the packet that moved its clock) and flows by start time and id. Shards emit
    /// in this order and the merge keeps it, so attribution and detection, which keep
    /// state across flows, see the same stream for any number of shards.
    pub fn order_key(&self) -> (u64, u64, u64) {
        match self {
            Observation::Flow(f) => (f.emitted_ns, f.start_ns, f.id),
            other => (other.ts(), u64::MAX, u64::MAX),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Termination {
    Fin,
    Rst,
    IdleTimeout,
    /// Not an end: the interim record of a flow still active after the active timeout.
    ActiveTimeout,
    EndOfInput,
    Evicted,
    Shutdown,
}

/// How the client side of a flow was chosen, strongest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientReason {
    /// The sender of a TCP SYN.
    Syn,
    /// The receiver of a TCP SYN-ACK.
    SynAck,
    /// The sender of a TLS ClientHello or QUIC client Initial.
    ClientHello,
    /// The side on a well-known service port is the server.
    Port,
    /// The first packet's sender.
    FirstPacket,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct DirectionStats {
    pub packets: u64,
    /// IP-layer bytes, IP header included, as the IP headers state them.
    pub ip_bytes: u64,
    /// Transport payload bytes as the headers state them.
    pub payload_bytes: u64,
    /// TCP flags seen from this side, as letters (F S R P A U E C).
    pub tcp_flags: u8,
    pub first_ns: u64,
    pub last_ns: u64,
    pub mac: Option<[u8; 6]>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct FlowSummary {
    /// Stable id of the flow: the same for its interim and final records.
    pub id: u64,
    pub client_ip: IpAddr,
    pub client_port: u16,
    pub server_ip: IpAddr,
    pub server_port: u16,
    pub proto: u8,
    pub vlans: Vec<u16>,
    /// Encapsulation around the innermost packet, outer first (e.g. "gre", "vxlan").
    pub encap: Vec<String>,
    pub community_id: String,
    pub client_reason: ClientReason,
    pub start_ns: u64,
    pub end_ns: u64,
    /// Packet time at which the record was produced.
    pub emitted_ns: u64,
    pub termination: Termination,
    pub interim: bool,
    pub client: DirectionStats,
    pub server: DirectionStats,
    pub profile: Profile,
    /// Frames of this flow cut short by the capture's snaplen.
    pub truncated_packets: u64,
    /// IP fragments this flow's packets were reassembled from.
    pub fragments: u64,
    pub app: AppSummary,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct DnsObservation {
    pub ts_ns: u64,
    pub flow_id: u64,
    pub client_ip: IpAddr,
    pub client_port: u16,
    pub server_ip: IpAddr,
    pub server_port: u16,
    pub proto: u8,
    pub community_id: String,
    pub message: crate::proto::dns::DnsSummary,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct DhcpObservation {
    pub ts_ns: u64,
    pub src_mac: Option<[u8; 6]>,
    pub message: crate::proto::dhcp::DhcpSummary,
}
