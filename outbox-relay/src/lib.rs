//! The transactional outbox.
//!
//! - [`envelope`]: the CloudEvents binary-mode mapping between an event and a Kafka record
//!   (the relay produces it, the consumer decodes it).
//! - [`enqueue`]: writing an event in the caller's transaction (no Kafka involved).
//! - [`replay`]: re-queueing published rows for recovery; [`retention`]: purging old ones.
//! - [`relay`] (feature `kafka`): the engine that moves rows into Kafka, with
//!   [`leader`] (one active relay) and [`listen`] (LISTEN wake-ups).
//! - [`kafka`] (feature `record`): the event as an rdkafka message, both ways.
//! - [`service`] (feature `kafka`): the relay process.

pub mod enqueue;
pub mod envelope;
pub mod replay;
pub mod retention;

#[cfg(feature = "record")]
pub mod kafka;
#[cfg(feature = "kafka")]
pub mod leader;
#[cfg(feature = "kafka")]
pub mod listen;
#[cfg(feature = "kafka")]
pub mod relay;
#[cfg(feature = "kafka")]
pub mod service;

pub use enqueue::{enqueue, NewEvent};
pub use replay::{replay, ReplayFilter};
