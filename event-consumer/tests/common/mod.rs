//! Test support: a scratch database, fresh topics and group per test, and a producer of
//! records in the contract's CloudEvents form.
#![allow(dead_code, unreachable_pub, unused_imports)]

use std::time::Duration;

use chrono::Utc;
use event_consumer::config::Config;
use event_consumer::Consumer;

use outbox_relay::envelope::Attributes;
use outbox_relay::kafka::owned_headers;
use platform::db::DbConfig;

use rdkafka::message::{Headers, Message};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;
use uuid::Uuid;

pub use platform::testing::{brokers, eventually};

/// The numbers tests read back from the consumer's tables (see [`Scratch::count`]).
pub const WELCOME_NOTIFICATIONS: &str = "SELECT count(*) FROM consumer.welcome_notifications";
pub const PROCESSED_EVENTS: &str = "SELECT count(*) FROM consumer.processed_events";
pub const REGISTRATIONS: &str =
    "SELECT coalesce(sum(count), 0)::bigint FROM consumer.registration_stats";
pub const PROCESSED_TOTAL: &str = "SELECT processed_total FROM consumer.counters";
pub const DUPLICATES_TOTAL: &str = "SELECT duplicates_total FROM consumer.counters";
pub const DEAD_LETTERED_TOTAL: &str = "SELECT dead_lettered_total FROM consumer.counters";
pub const UNKNOWN_TYPE_TOTAL: &str = "SELECT unknown_type_total FROM consumer.counters";

/// Everything one test owns: its database, topic, DLQ topic and consumer group.
pub struct Scratch {
    pub db: DbConfig,
    pub topic: String,
    pub dlq: String,
    pub group: String,
}

impl Scratch {
    pub async fn new() -> Scratch {
        Scratch {
            db: platform::testing::scratch_db().await,
            topic: platform::testing::scratch_topic(3).await,
            dlq: platform::testing::scratch_topic(1).await,
            group: format!("test-group-{}", Uuid::new_v4().simple()),
        }
    }

    /// The consumer's environment for this test (also used for the real binary).
    pub fn env(&self) -> Vec<(String, String)> {
        [
            ("PORT", "0".to_owned()),
            ("LOG_LEVEL", "warn".to_owned()),
            ("DB_HOST", self.db.db_host.clone()),
            ("DB_PORT", self.db.db_port.to_string()),
            ("DB_NAME", self.db.db_name.clone()),
            ("DB_POOL_SIZE", "4".to_owned()),
            ("DB_TIMEOUT_MS", "1000".to_owned()),
            ("KAFKA_BROKERS", brokers()),
            ("CONSUMER_TOPIC", self.topic.clone()),
            ("CONSUMER_DLQ_TOPIC", self.dlq.clone()),
            ("CONSUMER_GROUP", self.group.clone()),
            ("CONSUMER_BATCH_SIZE", "100".to_owned()),
            ("CONSUMER_SESSION_TIMEOUT_MS", "6000".to_owned()),
            ("CONSUMER_RETRY_MAX_MS", "500".to_owned()),
            ("CONSUMER_STATS_INTERVAL_MS", "500".to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }

    pub fn config(&self) -> Config {
        Config::from_env(self.env()).expect("config")
    }

    /// A consumer engine with this test's settings.
    pub fn consumer(&self) -> Consumer {
        self.consumer_with_batch(self.config().settings.consumer_batch_size)
    }

    /// A consumer engine with this test's settings and batches of up to `size` records.
    pub fn consumer_with_batch(&self, size: usize) -> Consumer {
        let mut config = self.config();
        config.settings.consumer_batch_size = size;
        Consumer::new(&config.settings, &config.kafka, self.db.pool()).expect("consumer")
    }

    pub async fn client(&self) -> tokio_postgres::Client {
        self.db.connect().await.expect("database")
    }

    /// One number from the scratch database.
    pub async fn count(&self, sql: &str) -> i64 {
        self.client()
            .await
            .query_one(sql, &[])
            .await
            .expect("count query")
            .get(0)
    }

    /// The status of each welcome notification of `user_id` (one, once its registration is
    /// applied).
    pub async fn welcome_statuses(&self, user_id: &Uuid) -> Vec<String> {
        let rows = self
            .client()
            .await
            .query(
                "SELECT status FROM consumer.welcome_notifications WHERE user_id = $1",
                &[user_id],
            )
            .await
            .expect("welcome notifications query");
        rows.iter().map(|row| row.get(0)).collect()
    }

    /// Records `n` new event ids in the inbox as processed `days` ago; returns them.
    pub async fn processed_days_ago(&self, n: usize, days: i32) -> Vec<Uuid> {
        let ids: Vec<Uuid> = (0..n).map(|_| Uuid::now_v7()).collect();
        self.client()
            .await
            .execute(
                "INSERT INTO consumer.processed_events \
                 (event_id, event_type, topic, partition, kafka_offset, processed_at) \
                 SELECT id, 'UserRegistered', 'user-events', 0, 0, \
                 now() - make_interval(days => $2) FROM unnest($1::uuid[]) AS id",
                &[&ids, &days],
            )
            .await
            .expect("insert processed events");
        ids
    }

    /// The event ids in the inbox, sorted.
    pub async fn processed_ids(&self) -> Vec<Uuid> {
        let rows = self
            .client()
            .await
            .query(
                "SELECT event_id FROM consumer.processed_events ORDER BY event_id",
                &[],
            )
            .await
            .expect("processed events query");
        rows.iter().map(|row| row.get(0)).collect()
    }

    /// Each of `n` events had its effect exactly once: processed once, and counted once in
    /// the registration stats and in the counters.
    pub async fn assert_each_applied_once(&self, n: i64) {
        assert_eq!(self.count(PROCESSED_EVENTS).await, n, "processed events");
        assert_eq!(self.count(REGISTRATIONS).await, n, "registrations counted");
        assert_eq!(self.count(PROCESSED_TOTAL).await, n, "processed_total");
    }
}

pub fn producer() -> FutureProducer {
    ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .set("acks", "all")
        .set("linger.ms", "5")
        .create()
        .expect("producer")
}

/// A `UserRegistered` event as the relay puts it on the wire.
pub struct Registration {
    pub event_id: Uuid,
    pub user_id: Uuid,
    pub email: String,
}

impl Registration {
    pub fn new() -> Self {
        let user_id = Uuid::now_v7();
        Self {
            event_id: Uuid::now_v7(),
            user_id,
            email: format!("{}@example.com", user_id.simple()),
        }
    }

    pub fn headers(&self, event_type: &str) -> Vec<(String, Vec<u8>)> {
        Attributes {
            id: self.event_id,
            source: "/user-service".into(),
            event_type: event_type.into(),
            time: Utc::now(),
            subject: Some(self.user_id.to_string()),
            traceparent: None,
            user_version: None,
        }
        .to_headers()
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.into_bytes()))
        .collect()
    }

    pub fn data(&self) -> serde_json::Value {
        serde_json::json!({
            "user_id": self.user_id, "email": self.email, "first_name": "Ada",
            "last_name": "Lovelace", "phone": null, "role": "user",
            "registered_at": Utc::now(),
        })
    }
}

/// `headers` with `name` set to `value` (added when absent).
pub fn with_header(
    mut headers: Vec<(String, Vec<u8>)>,
    name: &str,
    value: &[u8],
) -> Vec<(String, Vec<u8>)> {
    match headers.iter_mut().find(|(k, _)| k == name) {
        Some((_, v)) => *v = value.to_vec(),
        None => headers.push((name.to_owned(), value.to_vec())),
    }
    headers
}

pub async fn send_raw(
    producer: &FutureProducer,
    topic: &str,
    key: &str,
    value: &[u8],
    headers: &[(String, Vec<u8>)],
) {
    producer
        .send(
            FutureRecord::to(topic)
                .key(key)
                .payload(value)
                .headers(owned_headers(headers)),
            Duration::from_secs(10),
        )
        .await
        .map_err(|(e, _)| e)
        .expect("produce");
}

pub async fn send(producer: &FutureProducer, topic: &str, event: &Registration) {
    send_raw(
        producer,
        topic,
        &event.user_id.to_string(),
        event.data().to_string().as_bytes(),
        &event.headers("UserRegistered"),
    )
    .await;
}

/// Produces `n` new registrations (concurrently) and returns them.
pub async fn send_many(producer: &FutureProducer, topic: &str, n: usize) -> Vec<Registration> {
    let events: Vec<Registration> = (0..n).map(|_| Registration::new()).collect();
    type Payload = (String, String, Vec<(String, Vec<u8>)>);
    let payloads: Vec<Payload> = events
        .iter()
        .map(|e| {
            (
                e.user_id.to_string(),
                e.data().to_string(),
                e.headers("UserRegistered"),
            )
        })
        .collect();
    for chunk in payloads.chunks(1000) {
        let sends = chunk
            .iter()
            .map(|(key, value, headers)| send_raw(producer, topic, key, value.as_bytes(), headers));
        futures::future::join_all(sends).await;
    }
    events
}

/// A dead letter as read back from the DLQ topic.
#[derive(Debug)]
pub struct DeadLetter {
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(String, Vec<u8>)>,
}

impl DeadLetter {
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
    }
}

/// Reads `n` records of `topic` from the beginning (or fails after a while).
pub async fn read_dlq(topic: &str, n: usize) -> Vec<DeadLetter> {
    let reader = platform::testing::reader(topic);
    let mut out = Vec::new();
    while out.len() < n {
        let message = tokio::time::timeout(Duration::from_secs(30), reader.recv())
            .await
            .expect("a dead letter within 30 s")
            .expect("kafka");
        out.push(DeadLetter {
            key: message.key().map(<[u8]>::to_vec),
            value: message.payload().map(<[u8]>::to_vec),
            headers: message
                .headers()
                .map(|hs| {
                    hs.iter()
                        .map(|h| (h.key.to_owned(), h.value.unwrap_or_default().to_vec()))
                        .collect()
                })
                .unwrap_or_default(),
        });
    }
    out
}

/// How long a test waits for the consumer to get somewhere.
pub const SETTLE: Duration = Duration::from_secs(60);

/// Drives `consume_once` until `sql` counts `n` in the scratch database.
pub async fn drive_until(consumer: &mut Consumer, scratch: &Scratch, sql: &str, n: i64) {
    let deadline = tokio::time::Instant::now() + SETTLE;
    loop {
        consumer.consume_once().await.expect("consume_once");
        let have = scratch.count(sql).await;
        if have >= n {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{sql}: only {have} of {n}"
        );
    }
}

/// Drives `consume_once` until the scratch database holds `n` welcome notifications.
pub async fn drive_until_notified(consumer: &mut Consumer, scratch: &Scratch, n: i64) {
    drive_until(consumer, scratch, WELCOME_NOTIFICATIONS, n).await;
}

/// Drives `consume_once` for a while longer, for redeliveries to show up if any would.
pub async fn drain(consumer: &mut Consumer) {
    for _ in 0..4 {
        consumer.consume_once().await.expect("consume_once");
    }
}
