//! The packet-time-ordered merge of the shards' observation streams, shared
//! by replay and live capture.
//!
//! Each shard emits observations in non-decreasing packet time and, with each
//! message, a watermark: the shard's clock, older than anything it will emit
//! later. An observation is released to the correlator once every shard that
//! is still running has reported a watermark later than it; when every shard
//! is done, everything left is released. So the correlator sees one stream in
//! packet-time order, whatever the number of shards, and the records match a
//! one-shard run.
//!
//! Bound: at most [`MERGE_MAX_HELD`] observations wait for a lagging shard;
//! beyond that the oldest is released early and counted in
//! [`Merger::released_early`] (order is then only approximate).

use crate::observation::Observation;
use std::collections::VecDeque;

/// Observations held while waiting for a lagging shard's watermark. A live
/// shard reports at least every capture timeout, so in steady state this holds
/// well under a second of observations; the bound stops a stalled shard from
/// growing memory without limit.
pub const MERGE_MAX_HELD: usize = 1 << 20;

/// One message from a shard to the merge.
pub struct ShardMsg {
    pub shard: usize,
    pub obs: Vec<Observation>,
    /// The shard's packet time: it will emit nothing older.
    pub watermark: u64,
    /// The shard's last message.
    pub done: bool,
}

pub struct Merger {
    queues: Vec<VecDeque<Observation>>,
    watermarks: Vec<u64>,
    done: Vec<bool>,
    held: usize,
    /// Observations released before every shard's watermark passed them (bound reached).
    pub released_early: u64,
}

impl Merger {
    pub fn new(shards: usize) -> Merger {
        Merger {
            queues: (0..shards).map(|_| VecDeque::new()).collect(),
            watermarks: vec![0; shards],
            done: vec![false; shards],
            held: 0,
            released_early: 0,
        }
    }

    /// Takes a shard's message; call [`Merger::release`] afterwards.
    pub fn push(&mut self, msg: ShardMsg) {
        let Some(q) = self.queues.get_mut(msg.shard) else {
            return;
        };
        self.held += msg.obs.len();
        q.extend(msg.obs);
        self.watermarks[msg.shard] = self.watermarks[msg.shard].max(msg.watermark);
        self.done[msg.shard] |= msg.done;
    }

    pub fn all_done(&self) -> bool {
        self.done.iter().all(|&d| d)
    }

    /// Releases, in packet-time order, every observation no shard can precede
    /// any more (`all` releases everything: the input ended). Stops at the
    /// first error `each` returns.
    pub fn release<E>(
        &mut self,
        all: bool,
        mut each: impl FnMut(Observation) -> Result<(), E>,
    ) -> Result<(), E> {
        // Flushed flows at the end all carry the last packet time: wait for every shard.
        let all = all || self.all_done();
        let limit = if all {
            u64::MAX
        } else {
            (0..self.queues.len())
                .filter(|&i| !self.done[i])
                .map(|i| self.watermarks[i])
                .min()
                .unwrap_or(u64::MAX)
                .saturating_sub(1)
        };
        loop {
            let next = (0..self.queues.len())
                .filter_map(|i| self.queues[i].front().map(|o| (o.order_key(), i)))
                .min();
            match next {
                Some(((ts, ..), i)) if ts <= limit || self.held > MERGE_MAX_HELD => {
                    if ts > limit {
                        self.released_early += 1;
                    }
                    if let Some(o) = self.queues[i].pop_front() {
                        self.held -= 1;
                        each(o)?;
                    }
                }
                _ => return Ok(()),
            }
        }
    }
}
