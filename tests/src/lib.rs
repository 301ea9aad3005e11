//! Helpers for the cross-service tests and the benchmark: scratch databases, per-test
//! Kafka topics, consumers that read a topic back.

pub mod bff_kit;
pub mod otlp;
pub mod relay_faults;
pub mod relay_kit;
pub mod stack;

pub use platform::testing::{brokers, eventually, reader, scratch_db, scratch_topic, server_db};

/// Fills the outbox with `count` `UserRegistered`-shaped rows for `topic` in one
/// statement (server-side `generate_series`): a backlog for the relay to drain, with the
/// same payload and header sizes as real registrations. Each row is its own aggregate.
pub async fn fill_outbox(
    client: &tokio_postgres::Client,
    count: i64,
    topic: &str,
) -> anyhow::Result<u64> {
    let inserted = client
        .execute(FILL_OUTBOX, &[&count, &topic, &None::<f64>])
        .await?;
    Ok(inserted)
}

/// [`fill_outbox`], each row with the `traceparent` of the request that wrote it, as
/// when the services export traces: a fraction `sampled` of them sampled.
pub async fn fill_outbox_traced(
    client: &tokio_postgres::Client,
    count: i64,
    topic: &str,
    sampled: f64,
) -> anyhow::Result<u64> {
    let inserted = client
        .execute(FILL_OUTBOX, &[&count, &topic, &Some(sampled)])
        .await?;
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
           'ce_subject', user_id, 'content-type', 'application/json')
       || CASE WHEN $3::float8 IS NULL THEN '{}'::jsonb ELSE jsonb_build_object('traceparent',
              '00-' || md5(event_id::text) || '-' || substr(md5(user_id), 1, 16) || '-'
              || CASE WHEN random() < $3::float8 THEN '01' ELSE '00' END) END,
       at
FROM rows";
