//! Consumer lag per partition, from librdkafka's statistics (no extra broker round trips).

use platform::kafka::KafkaContext;
use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::ConsumerContext;
use rdkafka::error::KafkaError;
use rdkafka::statistics::Statistics;

/// The consumer's client context: publishes `consumer_lag{partition}` on every statistics
/// report (`statistics.interval.ms`); librdkafka's logs and errors go through the platform's
/// [`KafkaContext`] (which tells brokers that refuse the client from brokers that are away).
#[derive(Debug)]
pub struct LagContext {
    pub topic: String,
    pub kafka: KafkaContext,
}

impl ClientContext for LagContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        self.kafka.log(level, fac, log_message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.kafka.error(error, reason);
    }

    fn stats(&self, statistics: Statistics) {
        let Some(topic) = statistics.topics.get(&self.topic) else {
            return;
        };
        for (partition, stats) in &topic.partitions {
            // -1 is librdkafka's internal "unassigned" partition; a lag of -1 means unknown
            // (not assigned to this member). The lag behind the stored offset is current
            // at once; the committed one trails it by up to the auto-commit interval.
            let lag = if stats.consumer_lag_stored >= 0 {
                stats.consumer_lag_stored
            } else {
                stats.consumer_lag
            };
            if *partition >= 0 && lag >= 0 {
                metrics::gauge!("consumer_lag", "partition" => partition.to_string())
                    .set(lag as f64);
            }
        }
    }
}

impl ConsumerContext for LagContext {}
