//! Counters of one flow shard. Summed across shards for the `nightjar.stats` record.

use serde::Serialize;
use std::collections::BTreeMap;

#[derive(Clone, Debug, Default, Serialize)]
pub struct FlowStats {
    pub created: u64,
    /// Flows ended by FIN/RST, idle and active timeouts, end of input.
    pub expired: u64,
    /// Flows pushed out of a full table (the oldest idle one goes first).
    pub evicted: u64,
    /// Interim records of long-lived flows.
    pub interim: u64,
    /// Highest number of flows held at once.
    pub peak_active: u64,
    /// Packets whose timestamp went backwards (packet time is kept monotonic).
    pub ts_backwards: u64,
    /// Packets that belong to no flow (fragments of datagrams never completed are
    /// counted under the `defrag_*` anomalies instead).
    pub unkeyed_packets: u64,
    /// IP datagrams rebuilt from fragments (each counted once in its flow).
    pub ip_reassembled: u64,
    /// Handshake and application-layer anomalies, by reason.
    pub anomalies: BTreeMap<&'static str, u64>,
}

impl FlowStats {
    pub fn anomaly(&mut self, reason: &'static str) {
        *self.anomalies.entry(reason).or_insert(0) += 1;
    }

    pub fn merge(&mut self, o: &FlowStats) {
        self.created += o.created;
        self.expired += o.expired;
        self.evicted += o.evicted;
        self.interim += o.interim;
        self.peak_active += o.peak_active;
        self.ts_backwards += o.ts_backwards;
        self.unkeyed_packets += o.unkeyed_packets;
        self.ip_reassembled += o.ip_reassembled;
        for (k, v) in &o.anomalies {
            *self.anomalies.entry(k).or_insert(0) += v;
        }
    }
}
