//! The HTTP API, documented with poem-openapi.

pub mod auth;
pub mod stats;
