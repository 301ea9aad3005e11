//! Shared test helpers: a scratch database and topic per test, writing events through the
//! real `enqueue`, and reading a topic back.

#![allow(dead_code, unreachable_pub)]

use std::time::Duration;

use outbox_relay::envelope::Record;
use outbox_relay::relay::{BatchOutcome, Error, ProducerSettings, Relay, RelayConfig};
use outbox_relay::{enqueue, NewEvent};
use platform::db::DbConfig;
pub use platform::testing::{brokers, eventually, scratch_db, scratch_topic};
use uuid::Uuid;

/// Test-speed engine settings: small batches, quick polls and backoffs, a short lease
/// (a relay that died is replaced within 2 s) and quick retries of parked rows.
pub fn fast_config(batch_size: i64) -> RelayConfig {
    RelayConfig {
        batch_size,
        poll_interval: Duration::from_millis(100),
        backoff_min: Duration::from_millis(50),
        backoff_max: Duration::from_millis(500),
        lease: Duration::from_millis(1_500),
        parked_retry: Duration::from_millis(200),
        ..RelayConfig::default()
    }
}

pub fn relay_on(db: &DbConfig, brokers: &str, config: RelayConfig) -> Relay {
    let mut settings = ProducerSettings::new(brokers);
    settings.message_timeout_ms = 1_500;
    Relay::new(db.clone(), settings, config)
}

/// Runs `relay_once` until a page finds nothing to publish; returns the rows published.
/// A lease another relay left behind (one that "crashed") is waited out.
pub async fn drain(relay: &mut Relay) -> usize {
    let mut published = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the relay never drained the outbox"
        );
        match relay.relay_once().await {
            Ok(BatchOutcome { claimed: 0, .. }) => return published,
            Ok(outcome) => published += outcome.published,
            Err(Error::NotLeader) => tokio::time::sleep(Duration::from_millis(100)).await,
            Err(error) => panic!("batch: {}", platform::telemetry::error_chain(&error)),
        }
    }
}

/// Counts every row committed so far as published, as a relay would have (for tests of
/// what comes after publishing: replay, retention, the dashboard).
pub async fn mark_published(db: &DbConfig) {
    db.connect()
        .await
        .expect("connect")
        .batch_execute(MARK_PUBLISHED)
        .await
        .expect("mark published");
}

/// The state row once every committed row is published.
pub const MARK_PUBLISHED: &str = "UPDATE users.outbox_relay SET \
    published = pg_current_snapshot(), window_snapshot = NULL, window_after = NULL, \
    high_water = (SELECT coalesce(max(id), 0) FROM users.outbox), published_at = now()";

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
        let event = sequenced(topic, event_type, aggregate, *seq);
        ids.push(enqueue(&tx, &event).await.expect("enqueue"));
        tx.commit().await.expect("commit");
    }
    ids
}

/// An `event_type` event of `aggregate` whose data is its sequence number `seq` (what
/// [`write_events`] writes and [`sequence_of`] reads back).
pub fn sequenced(topic: &str, event_type: &str, aggregate: &str, seq: u32) -> NewEvent {
    NewEvent {
        aggregate_type: "user".into(),
        aggregate_id: aggregate.into(),
        event_type: event_type.into(),
        topic: topic.into(),
        source: "/user-service".into(),
        data: serde_json::json!({ "user_id": aggregate, "seq": seq }),
        traceparent: None,
        user_version: None,
    }
}

/// A `UserRegistered` event of a new user on `topic`, as the user service writes it.
pub fn user_registered(topic: &str, email: &str, first_name: &str, last_name: &str) -> NewEvent {
    let user_id = Uuid::new_v4();
    NewEvent {
        aggregate_type: "user".into(),
        aggregate_id: user_id.to_string(),
        event_type: "UserRegistered".into(),
        topic: topic.into(),
        source: "/user-service".into(),
        data: serde_json::json!({
            "user_id": user_id, "email": email, "first_name": first_name,
            "last_name": last_name, "phone": null, "role": "user",
            "registered_at": chrono::Utc::now().to_rfc3339(),
        }),
        traceparent: None,
        user_version: None,
    }
}

/// The ids of the events read back from `topic`: at least `count` of them, or all there
/// were after 20 s (see [`read_topic`]).
pub async fn published_ids(topic: &str, count: usize) -> Vec<Uuid> {
    event_ids(&read_topic(topic, count, Duration::from_secs(20)).await)
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

/// Rows the relay still has to send (as the dashboard counts them).
pub async fn unpublished(db: &DbConfig) -> i64 {
    let pool = db.pool();
    let client = pool.get().await.expect("connect");
    outbox_relay::bookkeeping::backlog(&client)
        .await
        .expect("backlog")
        .rows
}

/// Waits up to 30 s until the relay has recorded every committed row as published. The
/// event-consumer reads records of open Kafka transactions, so an effect can come before
/// the relay's record, which follows within a commit interval. A database that does not
/// answer for a moment counts as not yet.
pub async fn all_recorded(db: &DbConfig) -> bool {
    let pool = db.pool();
    eventually(Duration::from_secs(30), || async {
        let Ok(client) = pool.get().await else {
            return false;
        };
        outbox_relay::bookkeeping::backlog(&client)
            .await
            .is_ok_and(|backlog| backlog.rows == 0)
    })
    .await
}

/// Reads `topic` from the start until `at_least` records arrived and then nothing more for
/// a moment, or until `timeout`.
pub async fn read_topic(topic: &str, at_least: usize, timeout: Duration) -> Vec<Record> {
    platform::testing::read_topic(topic, at_least, timeout)
        .await
        .iter()
        .map(outbox_relay::kafka::record_of)
        .collect()
}
