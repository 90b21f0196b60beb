//! Application-protocol parsers: pure functions from bytes to owned summaries.
//! They never touch the flow table and do no I/O.
//!
//! - `tls`: ClientHello/ServerHello/Certificate, JA3, JA3S, JA4;
//! - `quic`: QUIC Initial packet protection and CRYPTO frames;
//! - `dns`: DNS messages over UDP and TCP;
//! - `dhcp`: DHCPv4;
//! - `text`: the escaping of names taken from the wire, shared by all of them.

pub mod dhcp;
pub mod dns;
pub mod quic;
pub mod text;
pub mod tls;
