//! The `outbox-relay` process: configuration, its HTTP side (health, metrics on 8082) and
//! the `replay` command.

pub mod config;
mod health;
pub mod replay_cli;
pub mod startup;
