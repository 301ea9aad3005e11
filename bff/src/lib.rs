//! The user service: users and the outbox write path.

pub mod api;
pub mod config;
pub mod startup;
