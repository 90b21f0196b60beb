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
}

impl ObservationHandler for crate::correlate::Correlator {
    fn handle(&mut self, obs: Observation, sink: &mut Sink) -> Result<(), SinkError> {
        crate::correlate::Correlator::handle(self, obs, sink)
    }
}
