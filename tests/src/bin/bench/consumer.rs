//! The real consumer engine: applying a backlog, and commit -> effect latency.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use event_consumer::config::Settings;
use event_consumer::Consumer;
use outbox_relay::envelope::Attributes;
use outbox_relay::relay::Producer;
use platform::db::DbConfig;
use rdkafka::producer::FutureRecord;
use uuid::Uuid;

use crate::producer::InFlight;
use crate::relay::CommitTimes;
use crate::stats::Latencies;

pub(crate) fn settings(topic: &str, dlq: &str, batch: usize) -> Settings {
    Settings {
        consumer_group: format!("bench-{}", Uuid::new_v4().simple()),
        consumer_topic: topic.to_owned(),
        consumer_dlq_topic: dlq.to_owned(),
        consumer_batch_size: batch,
        ..Settings::default()
    }
}

/// Produces `count` `UserRegistered` records in the contract's CloudEvents form.
pub(crate) async fn fill_topic(
    producer: &Producer,
    topic: &str,
    count: usize,
) -> anyhow::Result<()> {
    let mut in_flight = InFlight::default();
    for n in 0..count {
        // User ids as user-service makes them (UUIDv7, time-ordered).
        let user_id = Uuid::now_v7().to_string();
        let attributes = Attributes {
            id: Uuid::now_v7(),
            source: "/user-service".into(),
            event_type: "UserRegistered".into(),
            time: chrono::Utc::now(),
            subject: Some(user_id.clone()),
            traceparent: None,
            user_version: None,
        };
        let headers: Vec<(String, Vec<u8>)> = attributes
            .to_headers()
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.into_bytes()))
            .collect();
        let value = serde_json::to_vec(&serde_json::json!({
            "user_id": user_id, "email": format!("backlog{n}@example.com"), "first_name": "Back",
            "last_name": "Log", "phone": null, "role": "user", "registered_at": attributes.time.to_rfc3339(),
        }))?;
        let record = FutureRecord::to(topic)
            .key(&user_id)
            .payload(&value)
            .headers(outbox_relay::kafka::owned_headers(&headers));
        in_flight.send(producer, record).await?;
    }
    in_flight.finish().await
}

/// Applies `count` records already on `settings`' topic with the engine's own loop (`run`,
/// as the service does: the next batch is polled while one is settled), watching the
/// consumer's counters; the clock starts at the first applied batch (the group join is not
/// the consumer's speed).
pub(crate) async fn drain_per_s(
    db: &DbConfig,
    settings: &Settings,
    count: usize,
) -> anyhow::Result<f64> {
    let consumer = Consumer::new(
        settings,
        &platform::kafka::KafkaConfig::plaintext(tests::brokers()),
        db.pool(),
    )?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(consumer.run(async move {
        let _ = stopped.await;
    }));
    let client = db.connect().await?;
    let settled = client
        .prepare("SELECT processed_total + duplicates_total FROM consumer.counters")
        .await?;
    // (start instant, events settled by the first batch)
    let mut first: Option<(Instant, i64)> = None;
    let mut total = 0i64;
    let deadline = Instant::now() + Duration::from_secs(600);
    while total < count as i64 && Instant::now() < deadline {
        total = client.query_one(&settled, &[]).await?.get(0);
        if total > 0 && first.is_none() {
            first = Some((Instant::now(), total));
        }
        // Every 10 ms: a look every millisecond was a thousand queries a second on the
        // two cores the consumer and PostgreSQL share, for a 2 s drain that 10 ms reads
        // to within 1%.
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let finished = Instant::now();
    let _ = stop.send(());
    running.await?;
    let (started, uncounted) =
        first.ok_or_else(|| anyhow::anyhow!("the consumer applied nothing"))?;
    anyhow::ensure!(
        total >= count as i64,
        "the consumer applied {total} of {count} within the deadline"
    );
    Ok((total - uncounted) as f64 / (finished - started).as_secs_f64())
}

/// Polls the consumer's inbox every 2 ms and records, for each event id committed by the
/// writer, the time from its commit until its effect is visible.
pub(crate) async fn effect_latencies(
    db: &DbConfig,
    expected: usize,
    commits: CommitTimes,
) -> anyhow::Result<Latencies> {
    let client = db.connect().await?;
    let query = client
        .prepare("SELECT event_id FROM consumer.processed_events WHERE event_id = ANY($1)")
        .await?;
    let mut latencies = Latencies::new();
    // Events committed and not applied yet; the commits taken in so far.
    let mut outstanding: HashSet<Uuid> = HashSet::new();
    let (mut taken, mut seen) = (0, 0);
    let deadline = Instant::now() + Duration::from_secs(120);
    while seen < expected && Instant::now() < deadline {
        {
            let commits = commits.lock().expect("not poisoned");
            outstanding.extend(commits.order[taken..].iter().copied());
            taken = commits.order.len();
        }
        if !outstanding.is_empty() {
            let ids: Vec<Uuid> = outstanding.iter().copied().collect();
            let rows = client.query(&query, &[&ids]).await?;
            let now = Instant::now();
            let commits = commits.lock().expect("not poisoned");
            for row in rows {
                let id: Uuid = row.get(0);
                if outstanding.remove(&id) {
                    seen += 1;
                    if let Some((at, _)) = commits.at.get(&id) {
                        latencies.record_us(now.saturating_duration_since(*at).as_micros() as u64);
                    }
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    Ok(latencies)
}
