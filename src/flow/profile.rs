//! Per-flow timing profile: the shape of a conversation without its content.
//!
//! Three parts, all updated in O(1) per packet, with one allocation per flow at
//! its second packet and none after (see [`ProfileState`]):
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

/// The running state kept in the flow. A flow of one packet needs nothing but
/// that packet's length and direction (its sequence is that one entry, with
/// gap 0, one burst and no idle gap), so the sequence and the burst and gap
/// counters live in [`ProfileMore`], allocated once per flow at its second
/// packet (never again: the flow's first packet is replayed into it then).
/// An idle flow of one packet (a flood's, a scan's, an unanswered datagram's)
/// so costs 16 bytes here instead of 256.
#[derive(Clone, Debug, Default)]
pub struct ProfileState {
    more: Option<Box<ProfileMore>>,
    /// The first packet's payload length (until `more` exists).
    first_len: u32,
    /// 0: no packet yet; 1: the first packet came from the client; 2: from the server.
    first_dir: u8,
}

/// The profile of a flow past its first packet (fixed size; the [`Profile`] is
/// built at emit time).
#[derive(Clone, Debug)]
pub struct ProfileMore {
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

impl Default for ProfileMore {
    fn default() -> Self {
        ProfileMore {
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

impl ProfileMore {
    fn update(&mut self, ts_ns: u64, payload_len: u32, from_client: bool, burst_gap_ns: u64) {
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

    fn swap_direction(&mut self) {
        for l in &mut self.lengths[..usize::from(self.n)] {
            *l = -*l;
        }
        self.burst_bytes.swap(0, 1);
        self.max_burst_bytes.swap(0, 1);
    }

    fn snapshot(&self) -> Profile {
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

impl ProfileState {
    /// Records one packet. `from_client` orients the length; `ts_ns` is packet
    /// time; `first_ns` is the time of the flow's first packet.
    pub fn update(
        &mut self,
        ts_ns: u64,
        payload_len: u32,
        from_client: bool,
        burst_gap_ns: u64,
        first_ns: u64,
    ) {
        if let Some(more) = self.more.as_deref_mut() {
            more.update(ts_ns, payload_len, from_client, burst_gap_ns);
        } else if self.first_dir == 0 {
            self.first_len = payload_len;
            self.first_dir = if from_client { 1 } else { 2 };
        } else {
            // The flow's second packet: the one allocation of its profile.
            let more = self
                .more
                .insert(Box::new(self.replay_first(first_ns, burst_gap_ns)));
            more.update(ts_ns, payload_len, from_client, burst_gap_ns);
        }
    }

    /// A full state holding the first packet only.
    fn replay_first(&self, first_ns: u64, burst_gap_ns: u64) -> ProfileMore {
        let mut more = ProfileMore::default();
        if self.first_dir != 0 {
            more.update(first_ns, self.first_len, self.first_dir == 1, burst_gap_ns);
        }
        more
    }

    /// Flips the orientation of the recorded lengths (the client was re-identified).
    pub fn swap_direction(&mut self) {
        match self.more.as_deref_mut() {
            Some(more) => more.swap_direction(),
            None if self.first_dir != 0 => self.first_dir ^= 3,
            None => {}
        }
    }

    pub fn snapshot(&self) -> Profile {
        match self.more.as_deref() {
            Some(more) => more.snapshot(),
            // The gap does not matter for one packet; the time is only the base of its gap.
            None => self.replay_first(0, 0).snapshot(),
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
        p.update(10 * SEC, 100, true, SEC, 10 * SEC);
        p.update(10 * SEC + 1000, 200, false, SEC, 10 * SEC);
        p.update(15 * SEC, 50, true, SEC, 10 * SEC); // new burst after a 5 s gap
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
            p.update(i, 1, true, SEC, 0);
        }
        assert_eq!(p.snapshot().lengths.len(), PROFILE_PACKETS);
        assert_eq!(p.snapshot().bursts, 1);
    }

    #[test]
    fn lengths_saturate() {
        let mut p = ProfileState::default();
        p.update(1, 65_000, true, SEC, 1);
        p.update(2, 65_000, false, SEC, 1);
        assert_eq!(p.snapshot().lengths, vec![32_767, -32_767]);
    }

    #[test]
    fn one_packet_needs_no_allocation() {
        let mut p = ProfileState::default();
        p.update(7 * SEC, 40_000, false, SEC, 7 * SEC);
        assert!(p.more.is_none());
        let s = p.snapshot();
        assert_eq!(s.lengths, vec![-32_767]);
        assert_eq!(s.iat_us, vec![0]);
        assert_eq!((s.bursts, s.idle_gaps), (1, 0));
        assert_eq!(s.max_burst_bytes, [0, 40_000]);
        p.swap_direction();
        assert_eq!(p.snapshot().lengths, vec![32_767]);
        assert_eq!(p.snapshot().max_burst_bytes, [40_000, 0]);
        assert_eq!(ProfileState::default().snapshot().bursts, 0);
    }

    proptest::proptest! {
        /// The state that allocates at the second packet gives the same profile
        /// as a full state fed every packet from the first.
        #[test]
        fn same_as_a_full_state(
            packets in proptest::collection::vec((0u64..3_000_000_000, 0u32..70_000, proptest::bool::ANY, 0u8..8), 1..50),
            gap in 1u64..2_000_000_000,
        ) {
            let mut lazy = ProfileState::default();
            let mut full = ProfileMore::default();
            let mut ts = 1_000 * SEC;
            let mut first_ns = None;
            for (step, len, from_client, swap) in packets {
                ts += step;
                let first_ns = *first_ns.get_or_insert(ts);
                lazy.update(ts, len, from_client, gap, first_ns);
                full.update(ts, len, from_client, gap);
                if swap == 0 {
                    lazy.swap_direction();
                    full.swap_direction();
                }
                let (a, b) = (lazy.snapshot(), full.snapshot());
                proptest::prop_assert_eq!(&a.lengths, &b.lengths);
                proptest::prop_assert_eq!(&a.iat_us, &b.iat_us);
                proptest::prop_assert_eq!(a.bursts, b.bursts);
                proptest::prop_assert_eq!(a.max_burst_bytes, b.max_burst_bytes);
                proptest::prop_assert_eq!(a.idle_gaps, b.idle_gaps);
                proptest::prop_assert_eq!(a.idle_gap_max_us, b.idle_gap_max_us);
                proptest::prop_assert_eq!(a.idle_gap_total_us, b.idle_gap_total_us);
            }
        }
    }
}
