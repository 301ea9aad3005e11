//! Helpers for the cross-service tests and the benchmark: scratch databases, per-test
//! Kafka topics, consumers that read a topic back.

pub mod stack;

use std::time::Duration;

use outbox_relay::platform::db::DbConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::ClientConfig;
use uuid::Uuid;

/// The Kafka bootstrap servers of `make infra-up` (or `KAFKA_BROKERS`).
pub fn brokers() -> String {
    std::env::var("KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".into())
}

/// Database settings for the PostgreSQL of `make infra-up`, from the usual `DB_*` names.
pub fn server_db() -> DbConfig {
    let mut db = DbConfig::default();
    let var = |name: &str| std::env::var(name).ok();
    if let Some(v) = var("DB_HOST") {
        db.db_host = v;
    }
    if let Some(v) = var("DB_PORT").and_then(|p| p.parse().ok()) {
        db.db_port = v;
    }
    if let Some(v) = var("DB_USER") {
        db.db_user = v;
    }
    if let Some(v) = var("DB_PASSWORD") {
        db.db_password = v.into();
    }
    db
}

/// A new, migrated database of its own for one test.
pub async fn scratch_db() -> anyhow::Result<DbConfig> {
    let name = format!("test_{}", Uuid::new_v4().simple());
    let server = server_db();
    migrations::create_scratch_database(&server.pg_config(), &name).await?;
    Ok(server.with_database(&name))
}

/// A new topic of its own for one test.
pub async fn scratch_topic(partitions: i32) -> anyhow::Result<String> {
    let name = format!("test-{}", Uuid::new_v4().simple());
    outbox_relay::kafka::create_topic(&brokers(), &name, partitions).await?;
    Ok(name)
}

/// A consumer in a new group reading `topic` from the beginning.
pub fn reader(topic: &str) -> anyhow::Result<StreamConsumer> {
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .set(
            "group.id",
            format!("test-reader-{}", Uuid::new_v4().simple()),
        )
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()?;
    consumer.subscribe(&[topic])?;
    Ok(consumer)
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

/// Fills the outbox with `count` `UserRegistered`-shaped rows for `topic` in one
/// statement (server-side `generate_series`): a backlog for the relay to drain, with the
/// same payload and header sizes as real registrations. Each row is its own aggregate.
pub async fn fill_outbox(
    client: &tokio_postgres::Client,
    count: i64,
    topic: &str,
) -> anyhow::Result<u64> {
    let inserted = client.execute(FILL_OUTBOX, &[&count, &topic]).await?;
    Ok(inserted)
}

const FILL_OUTBOX: &str = "
WITH rows AS (
    SELECT gen_random_uuid() AS event_id, gen_random_uuid()::text AS user_id, g AS n, clock_timestamp() AS at
    FROM generate_series(1, $1::bigint) AS g
)
INSERT INTO users.outbox (event_id, aggregate_type, aggregate_id, event_type, topic, payload, headers, created_at)
SELECT event_id, 'user', user_id, 'UserRegistered', $2::text,
       jsonb_build_object(
           'user_id', user_id, 'email', 'user' || n || '@example.com',
           'first_name', 'Bench', 'last_name', 'User ' || n, 'phone', NULL, 'role', 'user',
           'registered_at', to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')),
       jsonb_build_object(
           'ce_specversion', '1.0', 'ce_id', event_id::text, 'ce_source', '/user-service',
           'ce_type', 'UserRegistered',
           'ce_time', to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'),
           'ce_subject', user_id, 'content-type', 'application/json'),
       at
FROM rows";
