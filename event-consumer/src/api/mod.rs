//! The HTTP API, documented with poem-openapi.

pub mod auth;
pub mod health;
pub mod stats;
