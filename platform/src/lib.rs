//! What every service process shares: layered configuration with secrets, the database
//! settings and pool, telemetry, the metrics recorder, HTTP serving with graceful
//! shutdown, health probes, the internal-key check, the body limit, W3C trace context,
//! the bodies of the internal APIs, the one error body, and one backoff. The `testing` feature holds the test kit every
//! crate's tests use.

pub mod audit;
pub mod backoff;
pub mod body_limit;
pub mod config;
pub mod db;
pub mod error;
pub mod health;
pub mod http;
pub mod internal_key;
pub mod kafka;
pub mod metrics;
pub mod retention;
pub mod service;
pub mod setting;
pub mod shutdown;
pub mod task;
pub mod telemetry;
pub mod traceparent;
pub mod wire;

#[cfg(feature = "testing")]
pub mod testing;
