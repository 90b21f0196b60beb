//! Data-plane counters of a run: what was read and what could not be decoded.

use crate::capture::LinkType;
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
