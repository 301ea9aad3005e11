//! Measures the consumer on a backlog: fills a fresh topic with N `UserRegistered` events
//! (default 100 000), then drains it with `consume_once` into a fresh database and prints
//! events/s.
//!
//! `cargo run --release -p event-consumer --example backlog [-- N [BATCH_SIZE]]`

use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::Utc;
use event_consumer::config::Config;
use event_consumer::Consumer;
use outbox_relay::envelope::Attributes;
use outbox_relay::kafka::owned_headers;
use outbox_relay::platform::db::DbConfig;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::ClientConfig;
use uuid::Uuid;

const BROKERS: &str = "127.0.0.1:9092";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let n: usize = args
        .next()
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(100_000);
    let batch: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(500);

    let id = Uuid::new_v4().simple().to_string();
    let db = DbConfig::default();
    let name = format!("test_bench_{id}");
    migrations::create_scratch_database(&db.pg_config(), &name).await?;
    let topic = format!("test-bench-{id}");
    outbox_relay::kafka::create_topic(BROKERS, &topic, 3).await?;
    outbox_relay::kafka::create_topic(BROKERS, &format!("{topic}.dlq"), 1).await?;

    let started = Instant::now();
    fill(&topic, n).await?;
    println!("produced {n} events in {:.1?}", started.elapsed());

    let env: Vec<(String, String)> = [
        ("DB_NAME", name.clone()),
        ("CONSUMER_TOPIC", topic.clone()),
        ("CONSUMER_DLQ_TOPIC", format!("{topic}.dlq")),
        ("CONSUMER_GROUP", format!("test-bench-{id}")),
        ("CONSUMER_BATCH_SIZE", batch.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let config = Config::from_env(env)?;
    let mut consumer = Consumer::new(&config.settings, config.db.with_database(&name).pool())?;

    let mut done = 0usize;
    let mut first: Option<Instant> = None;
    let mut batches = 0usize;
    let deadline = Instant::now() + Duration::from_secs(600);
    while done < n && Instant::now() < deadline {
        let report = consumer.consume_once().await.context("consume_once")?;
        if report.records > 0 {
            first.get_or_insert_with(Instant::now);
            batches += 1;
        }
        done += report.records;
    }
    let elapsed = first.map(|f| f.elapsed()).unwrap_or_default();
    consumer.close();
    let applied: i64 = config
        .db
        .with_database(&name)
        .connect()
        .await?
        .query_one("SELECT count(*) FROM consumer.welcome_notifications", &[])
        .await?
        .get(0);
    println!(
        "consumed {done} records in {batches} batches (batch size {batch}) in {elapsed:.2?} \
         from the first batch: {:.0} events/s; {applied} welcome notifications",
        done as f64 / elapsed.as_secs_f64().max(f64::EPSILON)
    );
    Ok(())
}

async fn fill(topic: &str, n: usize) -> anyhow::Result<()> {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", BROKERS)
        .set("linger.ms", "20")
        .set("compression.type", "lz4")
        .set("queue.buffering.max.messages", "200000")
        .create()?;
    type Keyed = (String, String, Vec<(String, Vec<u8>)>);
    let records: Vec<Keyed> = (0..n)
        .map(|_| {
            let user_id = Uuid::now_v7();
            let headers = Attributes {
                id: Uuid::now_v7(),
                source: "/user-service".into(),
                event_type: "UserRegistered".into(),
                time: Utc::now(),
                subject: Some(user_id.to_string()),
                traceparent: None,
            }
            .to_headers()
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.into_bytes()))
            .collect();
            let data = serde_json::json!({
                "user_id": user_id, "email": format!("{}@example.com", user_id.simple()),
                "first_name": "Ada", "last_name": "Lovelace", "phone": null, "role": "user",
                "registered_at": Utc::now(),
            });
            (user_id.to_string(), data.to_string(), headers)
        })
        .collect();
    for chunk in records.chunks(20_000) {
        let sends = chunk.iter().map(|(key, value, headers)| {
            producer.send(
                FutureRecord::to(topic)
                    .key(key)
                    .payload(value)
                    .headers(owned_headers(headers)),
                Duration::from_secs(30),
            )
        });
        for sent in futures::future::join_all(sends).await {
            sent.map_err(|(e, _)| e)?;
        }
    }
    producer.flush(Duration::from_secs(30))?;
    Ok(())
}
