//! Fleet deployment: the observation stream between sensors and correlators.
//!
//! DESIGN.md keeps the boundary between the data plane and the correlator a
//! stream of serializable observations; this module owns what crosses it when
//! the two run in different processes: the `[fleet]` configuration and the
//! versioned wire format of an observation (docs/fleet.md), the sensor
//! role's publisher with its spool, the correlator role's consumer, and the
//! baselines the correlators share.

pub mod baselines;
pub mod config;
pub mod correlator;
pub mod kafka;
pub mod sensor;
pub mod spool;
pub mod wire;
