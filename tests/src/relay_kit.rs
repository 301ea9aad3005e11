//! Shared test helpers: a scratch database and topic per test, writing events through the
//! real `enqueue`, and reading a topic back.

#![allow(dead_code, unreachable_pub)]

use std::time::Duration;

use outbox_relay::envelope::Record;
use outbox_relay::platform::db::DbConfig;
use outbox_relay::relay::{create_producer, ProducerSettings, Relay, RelayConfig};
use outbox_relay::{enqueue, NewEvent};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::ClientConfig;
use uuid::Uuid;

pub fn brokers() -> String {
    std::env::var("KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".into())
}

pub fn server_db() -> DbConfig {
    let mut db = DbConfig::default();
    if let Ok(host) = std::env::var("DB_HOST") {
        db.db_host = host;
    }
    if let Some(port) = std::env::var("DB_PORT").ok().and_then(|p| p.parse().ok()) {
        db.db_port = port;
    }
    if let Ok(user) = std::env::var("DB_USER") {
        db.db_user = user;
    }
    if let Ok(password) = std::env::var("DB_PASSWORD") {
        db.db_password = password.into();
    }
    db
}

pub async fn scratch_db() -> DbConfig {
    let name = format!("test_{}", Uuid::new_v4().simple());
    let server = server_db();
    migrations::create_scratch_database(&server.pg_config(), &name)
        .await
        .expect("scratch database");
    server.with_database(&name)
}

pub async fn scratch_topic(partitions: i32) -> String {
    let name = format!("test-relay-{}", Uuid::new_v4().simple());
    outbox_relay::kafka::create_topic(&brokers(), &name, partitions)
        .await
        .expect("scratch topic");
    name
}

/// Test-speed engine settings: small batches, quick polls and backoffs.
pub fn fast_config(batch_size: i64) -> RelayConfig {
    RelayConfig {
        batch_size,
        poll_interval: Duration::from_millis(100),
        backoff_min: Duration::from_millis(50),
        backoff_max: Duration::from_millis(500),
        ..RelayConfig::default()
    }
}

pub fn relay_on(db: &DbConfig, brokers: &str, config: RelayConfig) -> Relay {
    let mut settings = ProducerSettings::new(brokers);
    settings.message_timeout_ms = 1_500;
    let producer = create_producer(&settings).expect("producer");
    Relay::new(db.clone(), producer, config)
}

pub fn relay(db: &DbConfig, config: RelayConfig) -> Relay {
    relay_on(db, &brokers(), config)
}

/// Commits one event per `(aggregate, sequence)` through the real `enqueue`, in the order
/// given, each in its own transaction. Returns their event ids.
pub async fn write_events(
    db: &DbConfig,
    topic: &str,
    event_type: &str,
    events: &[(String, u32)],
) -> Vec<Uuid> {
    let pool = db.pool();
    let mut client = pool.get().await.expect("connect");
    let mut ids = Vec::new();
    for (aggregate, seq) in events {
        let tx = client.transaction().await.expect("begin");
        let event = NewEvent {
            aggregate_type: "user".into(),
            aggregate_id: aggregate.clone(),
            event_type: event_type.into(),
            topic: topic.into(),
            source: "/user-service".into(),
            data: serde_json::json!({ "user_id": aggregate, "seq": seq }),
            traceparent: None,
        };
        ids.push(enqueue(&tx, &event).await.expect("enqueue"));
        tx.commit().await.expect("commit");
    }
    ids
}

/// `per_aggregate` events for each of `aggregates` new aggregates, interleaved.
pub fn interleaved(aggregates: usize, per_aggregate: u32) -> Vec<(String, u32)> {
    let ids: Vec<String> = (0..aggregates)
        .map(|_| Uuid::now_v7().to_string())
        .collect();
    (0..per_aggregate)
        .flat_map(|seq| ids.iter().map(move |id| (id.clone(), seq)))
        .collect()
}

/// Reads `topic` from the start until `at_least` records arrived and then nothing more for
/// `quiet`, or until `timeout`.
pub async fn read_topic(topic: &str, at_least: usize, timeout: Duration) -> Vec<Record> {
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .set(
            "group.id",
            format!("test-reader-{}", Uuid::new_v4().simple()),
        )
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    consumer.subscribe(&[topic]).expect("subscribe");
    let quiet = Duration::from_millis(700);
    let deadline = tokio::time::Instant::now() + timeout;
    let mut records = Vec::new();
    loop {
        let wait = if records.len() >= at_least {
            quiet
        } else {
            deadline.saturating_duration_since(tokio::time::Instant::now())
        };
        match tokio::time::timeout(wait, consumer.recv()).await {
            Ok(Ok(message)) => records.push(outbox_relay::kafka::record_of(&message)),
            Ok(Err(error)) => panic!("reading {topic}: {error}"),
            Err(_) => return records,
        }
    }
}

/// The `seq` of each record of `aggregate`, in the order they arrived.
pub fn sequence_of(records: &[Record], aggregate: &str) -> Vec<u64> {
    records
        .iter()
        .filter(|r| r.key.as_deref() == Some(aggregate.as_bytes()))
        .map(|r| {
            let value: serde_json::Value =
                serde_json::from_slice(r.value.as_deref().unwrap_or_default()).expect("json");
            value["seq"].as_u64().expect("seq")
        })
        .collect()
}

pub fn event_ids(records: &[Record]) -> Vec<Uuid> {
    records
        .iter()
        .map(|r| {
            outbox_relay::envelope::decode(r)
                .expect("a valid CloudEvent")
                .attributes
                .id
        })
        .collect()
}

pub async fn unpublished(db: &DbConfig) -> i64 {
    let client = db.connect().await.expect("connect");
    client
        .query_one(
            "SELECT count(*) FROM users.outbox WHERE published_at IS NULL",
            &[],
        )
        .await
        .expect("count")
        .get(0)
}

/// Polls until `f` holds or `timeout` passes; returns whether it held.
pub async fn eventually<F, Fut>(timeout: Duration, mut f: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if f().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
