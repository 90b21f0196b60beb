//! Data-plane counters of a run: what was read and what could not be decoded.

use crate::capture::{CaptureStats, LinkType};
use std::collections::BTreeMap;

#[derive(Clone, Debug, Default)]
pub struct DataPlaneStats {
    pub frames: u64,
    /// Captured bytes (what the file holds).
    pub captured_bytes: u64,
    /// Bytes on the wire (frames' original lengths).
    pub wire_bytes: u64,
    pub frames_by_linktype: BTreeMap<u16, u64>,
    /// Frames that did not decode to an IP packet, by reason.
    pub decode_anomalies: BTreeMap<&'static str, u64>,
    /// Frames with fewer bytes captured than were on the wire.
    pub snapped_frames: u64,
    /// Oddities the capture reader tolerated in the input files, by reason.
    pub capture_anomalies: BTreeMap<&'static str, u64>,
    /// Newest packet timestamp seen (ns): the stats record's time.
    pub last_ts_ns: u64,
}

impl DataPlaneStats {
    pub fn frame(&mut self, ts_ns: u64, linktype: LinkType, caplen: usize, orig_len: u32) {
        self.frames += 1;
        self.last_ts_ns = self.last_ts_ns.max(ts_ns);
        self.captured_bytes += caplen as u64;
        self.wire_bytes += u64::from(orig_len);
        if (orig_len as usize) > caplen {
            self.snapped_frames += 1;
        }
        *self.frames_by_linktype.entry(linktype.0).or_insert(0) += 1;
    }

    pub fn anomaly(&mut self, reason: &'static str) {
        *self.decode_anomalies.entry(reason).or_insert(0) += 1;
    }

    /// Adds the tolerated oddities of one input file (its reader's counters).
    pub fn capture(&mut self, st: &CaptureStats) {
        let sb = &st.skipped_blocks;
        for (reason, n) in [
            ("ts_backwards", st.ts_backwards),
            ("caplen_over_snaplen", st.caplen_over_snaplen),
            ("caplen_over_orig_len", st.caplen_over_orig_len),
            ("unknown_interface", st.unknown_interface),
            ("interfaces_over_limit", st.interfaces_over_limit),
            ("malformed_blocks", st.malformed_blocks),
            ("bad_block_trailer", st.bad_block_trailer),
            ("bad_options", st.bad_options),
            ("unknown_blocks", sb.custom + sb.other),
        ] {
            if n > 0 {
                *self.capture_anomalies.entry(reason).or_insert(0) += n;
            }
        }
    }

    pub fn merge(&mut self, o: &DataPlaneStats) {
        self.frames += o.frames;
        self.captured_bytes += o.captured_bytes;
        self.wire_bytes += o.wire_bytes;
        self.snapped_frames += o.snapped_frames;
        self.last_ts_ns = self.last_ts_ns.max(o.last_ts_ns);
        for (k, v) in &o.frames_by_linktype {
            *self.frames_by_linktype.entry(*k).or_insert(0) += v;
        }
        for (k, v) in &o.decode_anomalies {
            *self.decode_anomalies.entry(k).or_insert(0) += v;
        }
        for (k, v) in &o.capture_anomalies {
            *self.capture_anomalies.entry(k).or_insert(0) += v;
        }
    }
}

/// Names for the link types the decoder knows, for the stats record.
pub fn linktype_name(lt: u16) -> String {
    match lt {
        0 => "null".into(),
        1 => "ethernet".into(),
        9 => "ppp".into(),
        12 | 101 => "raw".into(),
        50 => "ppp_hdlc".into(),
        108 => "loop".into(),
        113 => "linux_sll".into(),
        228 => "ipv4".into(),
        229 => "ipv6".into(),
        239 => "nflog".into(),
        258 => "pktap".into(),
        276 => "linux_sll2".into(),
        n => format!("linktype_{n}"),
    }
}
