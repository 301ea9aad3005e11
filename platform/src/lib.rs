//! What every service process shares: layered configuration, the database pool,
//! telemetry, metrics, shutdown signals and the internal-key check.
//!
//! It lives beside the outbox library because every service already depends on that
//! crate (without its `kafka` feature where Kafka is none of its business).

pub mod config;
pub mod db;
pub mod health;
pub mod http;
pub mod internal_key;
pub mod metrics;
pub mod shutdown;
pub mod telemetry;
