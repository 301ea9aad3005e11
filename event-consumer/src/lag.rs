//! Consumer lag per partition, from librdkafka's statistics (no extra broker round trips).

use rdkafka::client::ClientContext;
use rdkafka::consumer::ConsumerContext;
use rdkafka::statistics::Statistics;

/// The consumer's client context: publishes `consumer_lag{partition}` on every statistics
/// report (`statistics.interval.ms`).
#[derive(Debug)]
pub struct LagContext {
    pub topic: String,
}

impl ClientContext for LagContext {
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
