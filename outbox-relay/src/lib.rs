//! The transactional outbox.
//!
//! - [`envelope`]: the CloudEvents binary-mode mapping between an event and a Kafka record
//!   (the relay produces it, the consumer decodes it).
//! - [`enqueue`]: writing an event in the caller's transaction (no Kafka involved).
//! - [`bookkeeping`]: what the relay has published, recorded once per Kafka transaction
//!   in one row (`users.outbox_relay`), and the backlog it leaves.
//! - [`replay`]: publishing published rows again for recovery; [`retention`]: purging
//!   old ones by id range.
//! - [`relay`] (feature `kafka`): the engine that moves rows into Kafka, with
//!   [`leader`] (one active relay, a fenced lease) and [`listen`] (LISTEN wake-ups).
//! - [`kafka`] (feature `record`): the event as an rdkafka message, both ways.
//! - [`service`] (feature `kafka`): the relay process.

pub mod bookkeeping;
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
