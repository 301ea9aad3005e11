//! Dead letters: a poison record goes to the DLQ topic with its original key, value and
//! headers, plus why (`error`) and when (`failed_at`) it failed and where it came from.

use std::time::Duration;

use chrono::{SecondsFormat, Utc};
use outbox_relay::envelope::Record;
use outbox_relay::kafka::owned_headers;
use platform::kafka::KafkaConfig;
use platform::kafka::{client_config, KafkaContext};
use rdkafka::error::KafkaError;
use rdkafka::producer::{FutureProducer, FutureRecord};

/// The dead-letter producer (its context shares the consumer's [`BrokerAccess`]).
///
/// [`BrokerAccess`]: platform::kafka::BrokerAccess
pub type Producer = FutureProducer<KafkaContext>;

pub const H_ERROR: &str = "error";
pub const H_FAILED_AT: &str = "failed_at";
pub const H_ORIGINAL_TOPIC: &str = "original_topic";
pub const H_ORIGINAL_PARTITION: &str = "original_partition";
pub const H_ORIGINAL_OFFSET: &str = "original_offset";

/// A producer that reports a dead letter delivered only once every in-sync replica has it.
pub fn producer(kafka: &KafkaConfig, context: KafkaContext) -> Result<Producer, KafkaError> {
    client_config(kafka)
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("message.timeout.ms", "10000")
        .create_with_context(context)
}

/// Where a poison record was read.
#[derive(Debug, Clone, Copy)]
pub struct Origin<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
}

/// The dead-letter headers: the original ones, then the failure's.
pub fn headers(record: &Record, origin: Origin<'_>, reason: &str) -> Vec<(String, Vec<u8>)> {
    let mut headers = record.headers.clone();
    let failed_at = Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true);
    for (name, value) in [
        (H_ERROR, reason.to_owned()),
        (H_FAILED_AT, failed_at),
        (H_ORIGINAL_TOPIC, origin.topic.to_owned()),
        (H_ORIGINAL_PARTITION, origin.partition.to_string()),
        (H_ORIGINAL_OFFSET, origin.offset.to_string()),
    ] {
        headers.push((name.to_owned(), value.into_bytes()));
    }
    headers
}

/// Produces one dead letter and waits for the broker's acknowledgement.
pub async fn send(
    producer: &Producer,
    dlq_topic: &str,
    record: &Record,
    origin: Origin<'_>,
    reason: &str,
) -> Result<(), KafkaError> {
    let headers = owned_headers(&headers(record, origin, reason));
    let mut out: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(dlq_topic).headers(headers);
    if let Some(key) = &record.key {
        out = out.key(key.as_slice());
    }
    if let Some(value) = &record.value {
        out = out.payload(value.as_slice());
    }
    producer
        .send(out, Duration::ZERO)
        .await
        .map(|_| ())
        .map_err(|(error, _)| error)
}
