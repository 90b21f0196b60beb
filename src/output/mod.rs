//! The output stage: the record schema and the sinks records are written to.
//!
//! It decides nothing about what is emitted: the correlator hands it values,
//! it formats and writes them.

pub mod record;
pub mod sink;

pub use record::Record;
pub use sink::{Sink, SinkError};
pub mod records;
