//! Wiring: threads, channels and counters that carry frames from capture to
//! output. No protocol logic lives here.

pub mod check;
pub mod live;
pub mod merge;
pub mod replay;
pub mod stats;

use crate::observation::Observation;
use crate::output::{Sink, SinkError};

/// Where a run hands its packet-time-ordered observations: the correlator in
/// one process, the fleet publisher on a sensor.
pub trait ObservationHandler {
    fn handle(&mut self, obs: Observation, sink: &mut Sink) -> Result<(), SinkError>;

    /// A packet keeper for one more shard, when this handler writes evidence bundles.
    fn packet_keeper(&self) -> Option<PacketKeeperHandle> {
        None
    }
}

/// One shard's packet keeper, shared with the evidence writer.
pub type PacketKeeperHandle = std::sync::Arc<std::sync::Mutex<crate::flow::keep::PacketKeeper>>;

impl ObservationHandler for crate::correlate::Correlator {
    fn handle(&mut self, obs: Observation, sink: &mut Sink) -> Result<(), SinkError> {
        crate::correlate::Correlator::handle(self, obs, sink)
    }

    fn packet_keeper(&self) -> Option<PacketKeeperHandle> {
        crate::correlate::Correlator::packet_keeper(self)
    }
}
