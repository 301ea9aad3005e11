//! The HTTP API, documented with poem-openapi.

pub mod health;
