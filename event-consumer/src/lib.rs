//! The event consumer: applies each event of `user-events` exactly once in effect
//! (idempotent inbox), dead-letters poison records, and reports what it did.
//!
//! - [`engine::Consumer`]: the Kafka side (`consume_once`, `run`).
//! - [`inbox`]: the transactional inbox and the effects of `UserRegistered`.
//! - [`directory`]: the `user_directory` read model, applied in version order per user.
//! - [`reconcile`]: compares the read model with user-service's users (and repairs it).
//! - [`retention`]: purging inbox rows no redelivery can need any more.
//! - [`stats`]: the figures `GET /stats` serves.
//! - [`dead_letters`]: listing, showing and redriving dead letters (`dlq` commands and
//!   `/dlq` routes).

pub mod api;
pub mod config;
pub mod dead_letters;
pub mod directory;
pub mod dlq;
pub mod dlq_cli;
pub mod engine;
pub mod event;
pub mod gaps;
pub mod inbox;
pub mod lag;
pub mod reconcile;
pub mod retention;
pub mod sqlstate;
pub mod startup;
pub mod stats;

pub use engine::{BatchReport, Consumer};
