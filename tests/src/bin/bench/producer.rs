//! The broker's own limit: rdkafka producing outbox-shaped records with no database,
//! with the relay's producer settings.

use std::time::Instant;

use futures::stream::{FuturesUnordered, StreamExt};
use outbox_relay::relay::Producer;
use rdkafka::message::ToBytes;
use rdkafka::producer::{DeliveryFuture, FutureRecord};

use crate::Sample;

/// Records enqueued with `send_result` (which does not wait) and not yet delivered: at most
/// 50,000 at a time, keeping the local queue bounded like the relay's batches do.
#[derive(Default)]
pub(crate) struct InFlight(FuturesUnordered<DeliveryFuture>);

impl InFlight {
    const MAX: usize = 50_000;

    /// Enqueues `record`; while `MAX` deliveries are outstanding, waits for some first.
    pub(crate) async fn send<K, P>(
        &mut self,
        producer: &Producer,
        record: FutureRecord<'_, K, P>,
    ) -> anyhow::Result<()>
    where
        K: ToBytes + ?Sized,
        P: ToBytes + ?Sized,
    {
        match producer.send_result(record) {
            Ok(delivery) => self.0.push(delivery),
            Err((e, _)) => anyhow::bail!("enqueue failed: {e}"),
        }
        while self.0.len() >= Self::MAX {
            if let Some(result) = self.0.next().await {
                result?.map_err(|(e, _)| e)?;
            }
        }
        Ok(())
    }

    /// Waits for every outstanding delivery.
    pub(crate) async fn finish(mut self) -> anyhow::Result<()> {
        while let Some(result) = self.0.next().await {
            result?.map_err(|(e, _)| e)?;
        }
        Ok(())
    }
}

pub(crate) async fn raw_producer_per_s(
    producer: &Producer,
    topic: &str,
    sample: &Sample,
    count: usize,
) -> anyhow::Result<f64> {
    let headers = outbox_relay::kafka::owned_headers(&sample.headers);
    let started = Instant::now();
    let mut in_flight = InFlight::default();
    for i in 0..count {
        let key = format!("{:032x}", i);
        let record = FutureRecord::to(topic)
            .key(&key)
            .payload(&sample.value)
            .headers(headers.clone());
        in_flight.send(producer, record).await?;
    }
    in_flight.finish().await?;
    Ok(count as f64 / started.elapsed().as_secs_f64())
}
