//! The broker's own limit: rdkafka producing outbox-shaped records with no database,
//! with the relay's producer settings.

use std::time::Instant;

use futures::stream::{FuturesUnordered, StreamExt};
use outbox_relay::relay::Producer;
use rdkafka::producer::FutureRecord;

use crate::Sample;

pub(crate) async fn raw_producer_per_s(
    producer: &Producer,
    topic: &str,
    sample: &Sample,
    count: usize,
) -> anyhow::Result<f64> {
    let headers = outbox_relay::kafka::owned_headers(&sample.headers);
    let started = Instant::now();
    let mut in_flight = FuturesUnordered::new();
    for i in 0..count {
        let key = format!("{:032x}", i);
        let record = FutureRecord::to(topic)
            .key(&key)
            .payload(&sample.value)
            .headers(headers.clone());
        // `send_result` enqueues without waiting; the delivery futures are awaited below.
        match producer.send_result(record) {
            Ok(delivery) => in_flight.push(delivery),
            Err((e, _)) => anyhow::bail!("enqueue failed: {e}"),
        }
        // Keep the local queue bounded, like the relay's batches do.
        while in_flight.len() >= 50_000 {
            if let Some(result) = in_flight.next().await {
                result?.map_err(|(e, _)| e)?;
            }
        }
    }
    while let Some(result) = in_flight.next().await {
        result?.map_err(|(e, _)| e)?;
    }
    Ok(count as f64 / started.elapsed().as_secs_f64())
}
