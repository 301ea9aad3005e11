//! The `outbox-relay` process: configuration and its HTTP side (health, metrics on 8082).

pub mod config;
pub mod startup;
