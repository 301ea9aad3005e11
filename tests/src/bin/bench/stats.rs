//! Percentiles of latency samples.

use hdrhistogram::Histogram;
use serde_json::{json, Value};

/// Latency samples in microseconds, summarised in milliseconds.
pub(crate) struct Latencies(Histogram<u64>);

impl Latencies {
    pub(crate) fn new() -> Self {
        Self(Histogram::new_with_bounds(1, 600_000_000, 3).expect("static bounds are valid"))
    }

    pub(crate) fn record_us(&mut self, us: u64) {
        self.0.saturating_record(us.max(1));
    }

    pub(crate) fn len(&self) -> u64 {
        self.0.len()
    }

    pub(crate) fn ms(&self, quantile: f64) -> f64 {
        round3(self.0.value_at_quantile(quantile) as f64 / 1000.0)
    }

    pub(crate) fn max_ms(&self) -> f64 {
        round3(self.0.max() as f64 / 1000.0)
    }

    pub(crate) fn summary(&self) -> Value {
        json!({ "p50": self.ms(0.5), "p90": self.ms(0.9), "p99": self.ms(0.99), "max": self.max_ms(), "samples": self.len() })
    }

    /// (upper bound in ms, count) per logarithmic bucket, for the chart.
    pub(crate) fn buckets(&self) -> Vec<(f64, u64)> {
        self.0
            .iter_log(100, 1.5)
            .filter(|v| v.count_since_last_iteration() > 0)
            .map(|v| {
                (
                    v.value_iterated_to() as f64 / 1000.0,
                    v.count_since_last_iteration(),
                )
            })
            .collect()
    }
}

pub(crate) fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

pub(crate) fn round0(x: f64) -> f64 {
    x.round()
}
