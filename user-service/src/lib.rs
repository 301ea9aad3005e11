//! The user service: users and the outbox write path.
//!
//! The write path is reusable without HTTP: [`validation::validate`], then
//! [`password::Hasher::hash`], then [`register::register`] (which calls
//! [`users::insert`] and `outbox_relay::enqueue` in one transaction).

pub mod api;
pub mod config;
pub mod password;
pub mod register;
pub mod startup;
pub mod state;
pub mod stats;
pub mod throttle;
pub mod users;
pub mod validation;

pub use register::{register, RegisterError, Registered};
