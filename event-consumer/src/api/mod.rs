//! The HTTP API, documented with poem-openapi. Every endpoint but the probes needs the
//! internal key; the answers any endpoint may give besides its own are
//! [`platform::error::Failure`].

pub mod dlq;
pub mod reconcile;
pub mod stats;
