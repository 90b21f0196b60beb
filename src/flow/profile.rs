//! Per-flow timing profile: the shape of a conversation without its content.
//!
//! Three parts, all updated in O(1) per packet with no allocation:
//! - `sequence`: the first [`PROFILE_PACKETS`] packets as (signed L4 payload
//!   length, inter-arrival time). Positive lengths are client → server, negative
//!   server → client; lengths saturate at ±32,767 (kept as `i16`: the sequence is
//!   most of a flow's fixed memory). Inter-arrival is microseconds since the previous packet of
//!   the flow (either direction), 0 for the first.
//! - bursts: maximal runs of packets in which no two consecutive packets are
//!   more than `burst_gap` apart. Counted, with the largest burst's bytes per direction.
//! - idle gaps: the gaps longer than `burst_gap` that separate bursts: count, longest, total.

use serde::{Deserialize, Serialize};

/// How many leading packets the sequence keeps: enough to cover a TLS or QUIC
/// handshake and the first application exchange (the part that identifies an app).
pub const PROFILE_PACKETS: usize = 32;

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Profile {
    /// Signed L4 payload lengths of the first packets (+ client→server, − server→client).
    pub lengths: Vec<i32>,
    /// Inter-arrival times of the same packets in microseconds.
    pub iat_us: Vec<u64>,
    pub bursts: u32,
    /// Payload bytes client→server and server→client of the largest burst.
    pub max_burst_bytes: [u64; 2],
    pub idle_gaps: u32,
    pub idle_gap_max_us: u64,
    pub idle_gap_total_us: u64,
}

/// The running state kept in the flow (fixed size; the [`Profile`] is built at emit time).
#[derive(Clone, Debug)]
pub struct ProfileState {
    n: u8,
    /// Saturating at ±[`i16::MAX`] (larger only with segmentation offload or jumbo frames).
    lengths: [i16; PROFILE_PACKETS],
    iat_us: [u32; PROFILE_PACKETS],
    last_ns: u64,
    bursts: u32,
    burst_bytes: [u64; 2],
    max_burst_bytes: [u64; 2],
    idle_gaps: u32,
    idle_gap_max_us: u64,
    idle_gap_total_us: u64,
}

impl Default for ProfileState {
    fn default() -> Self {
        ProfileState {
            n: 0,
            lengths: [0; PROFILE_PACKETS],
            iat_us: [0; PROFILE_PACKETS],
            last_ns: 0,
            bursts: 0,
            burst_bytes: [0; 2],
            max_burst_bytes: [0; 2],
            idle_gaps: 0,
            idle_gap_max_us: 0,
            idle_gap_total_us: 0,
        }
    }
}

impl ProfileState {
    /// Records one packet. `from_client` orients the length; `ts_ns` is packet time.
    pub fn update(&mut self, ts_ns: u64, payload_len: u32, from_client: bool, burst_gap_ns: u64) {
        let first = self.bursts == 0;
        let gap_ns = if first {
            0
        } else {
            ts_ns.saturating_sub(self.last_ns)
        };
        self.last_ns = self.last_ns.max(ts_ns);
        let gap_us = gap_ns / 1000;
        if first || gap_ns > burst_gap_ns {
            if !first {
                self.idle_gaps += 1;
                self.idle_gap_max_us = self.idle_gap_max_us.max(gap_us);
                self.idle_gap_total_us += gap_us;
            }
            self.bursts += 1;
            self.burst_bytes = [0; 2];
        }
        let dir = usize::from(!from_client);
        self.burst_bytes[dir] += u64::from(payload_len);
        if self.burst_bytes[0] + self.burst_bytes[1]
            > self.max_burst_bytes[0] + self.max_burst_bytes[1]
        {
            self.max_burst_bytes = self.burst_bytes;
        }
        let i = usize::from(self.n);
        if i < PROFILE_PACKETS {
            let len = i16::try_from(payload_len).unwrap_or(i16::MAX);
            self.lengths[i] = if from_client { len } else { -len };
            self.iat_us[i] = u32::try_from(gap_us).unwrap_or(u32::MAX);
            self.n += 1;
        }
    }

    /// Flips the orientation of the recorded lengths (the client was re-identified).
    pub fn swap_direction(&mut self) {
        for l in &mut self.lengths[..usize::from(self.n)] {
            *l = -*l;
        }
        self.burst_bytes.swap(0, 1);
        self.max_burst_bytes.swap(0, 1);
    }

    pub fn snapshot(&self) -> Profile {
        let n = usize::from(self.n);
        Profile {
            lengths: self.lengths[..n].iter().map(|&v| i32::from(v)).collect(),
            iat_us: self.iat_us[..n].iter().map(|&v| u64::from(v)).collect(),
            bursts: self.bursts,
            max_burst_bytes: self.max_burst_bytes,
            idle_gaps: self.idle_gaps,
            idle_gap_max_us: self.idle_gap_max_us,
            idle_gap_total_us: self.idle_gap_total_us,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: u64 = 1_000_000_000;

    #[test]
    fn bursts_and_gaps() {
        let mut p = ProfileState::default();
        p.update(10 * SEC, 100, true, SEC);
        p.update(10 * SEC + 1000, 200, false, SEC);
        p.update(15 * SEC, 50, true, SEC); // new burst after a 5 s gap
        let s = p.snapshot();
        assert_eq!(s.lengths, vec![100, -200, 50]);
        assert_eq!(s.iat_us, vec![0, 1, 4_999_999]);
        assert_eq!(s.bursts, 2);
        assert_eq!(s.idle_gaps, 1);
        assert_eq!(s.max_burst_bytes, [100, 200]);
    }

    #[test]
    fn sequence_is_bounded() {
        let mut p = ProfileState::default();
        for i in 0..100 {
            p.update(i, 1, true, SEC);
        }
        assert_eq!(p.snapshot().lengths.len(), PROFILE_PACKETS);
        assert_eq!(p.snapshot().bursts, 1);
    }

    #[test]
    fn lengths_saturate() {
        let mut p = ProfileState::default();
        p.update(1, 65_000, true, SEC);
        p.update(2, 65_000, false, SEC);
        assert_eq!(p.snapshot().lengths, vec![32_767, -32_767]);
    }
}
