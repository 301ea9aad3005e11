//! The relay engine: claim unpublished rows in id order, produce them all, await every
//! delivery report, then mark the delivered rows in one statement. A row is never marked
//! before Kafka acknowledged it; a crash between produce and mark only re-sends (Kafka may
//! hold duplicates, never gaps).
//!
//! Tests and benchmarks drive it step by step ([`Relay::relay_once`], or [`Relay::claim`] +
//! [`Relay::produce`] + [`Relay::mark`]); the process runs [`Relay::run`], which adds
//! leadership, LISTEN wake-ups and retention.

mod backoff;
pub mod producer;
mod run;
pub mod store;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use deadpool_postgres::Pool;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{DeliveryFuture, FutureRecord};

use crate::envelope::headers_from_json;
use crate::kafka::owned_headers;
use backoff::Backoff;
use platform::db::DbConfig;
pub use producer::{create_producer, create_producer_with, Producer, ProducerSettings};
pub use store::OutboxRow;

pub(crate) const M_PUBLISHED: &str = "outbox_published_total";
pub(crate) const M_FAILURES: &str = "outbox_publish_failures_total";
pub(crate) const M_IS_LEADER: &str = "outbox_relay_is_leader";
pub(crate) const M_LATENCY: &str = "outbox_commit_to_ack_seconds";
pub(crate) const M_BACKLOG: &str = "outbox_backlog";
pub(crate) const M_OLDEST: &str = "outbox_oldest_unpublished_age_seconds";
pub(crate) const M_DELIVERY: &str = "outbox_kafka_delivery_seconds";

/// The families the relay records (their `# HELP` lines).
pub const METRICS: &[platform::metrics::Family] = {
    use platform::metrics::Kind::{Counter, Gauge, Histogram};
    &[
        (
            M_PUBLISHED,
            Counter,
            None,
            "Outbox rows Kafka acknowledged.",
        ),
        (
            M_FAILURES,
            Counter,
            None,
            "Outbox rows whose send failed (retried later).",
        ),
        (
            M_IS_LEADER,
            Gauge,
            None,
            "1 while this relay holds the leader lock, else 0.",
        ),
        (
            M_LATENCY,
            Histogram,
            Some(platform::metrics::Unit::Seconds),
            "From the outbox row's commit to Kafka's acknowledgement.",
        ),
        (
            M_DELIVERY,
            Histogram,
            Some(platform::metrics::Unit::Seconds),
            "From handing a batch to the producer to Kafka's delivery report of each of its rows.",
        ),
        (M_BACKLOG, Gauge, None, "Outbox rows not published yet."),
        (
            M_OLDEST,
            Gauge,
            Some(platform::metrics::Unit::Seconds),
            "Age of the oldest unpublished outbox row.",
        ),
    ]
};

pub use platform::error::DbError as Error;

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// How the relay works (`RELAY_BATCH_SIZE`, `RELAY_POLL_INTERVAL_MS`, `OUTBOX_RETENTION`).
#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// Rows claimed and produced per batch.
    pub batch_size: i64,
    /// The fallback poll when no notification arrives.
    pub poll_interval: Duration,
    /// Published rows older than this are purged; `None` keeps them.
    pub retention: Option<Duration>,
    /// How often the leader purges.
    pub retention_interval: Duration,
    /// Rows deleted per purge statement (one short transaction each).
    pub purge_batch: i64,
    /// First and largest wait of a failing aggregate (and of the loop after an error).
    pub backoff_min: Duration,
    pub backoff_max: Duration,
}

impl Default for RelayConfig {
    fn default() -> Self {
        Self {
            batch_size: 1000,
            poll_interval: Duration::from_millis(500),
            retention: Some(Duration::from_secs(7 * 86_400)),
            retention_interval: Duration::from_secs(60),
            purge_batch: 1000,
            backoff_min: Duration::from_millis(200),
            backoff_max: Duration::from_secs(30),
        }
    }
}

/// What one batch did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BatchOutcome {
    /// Rows claimed.
    pub claimed: usize,
    /// Rows delivered and marked published.
    pub published: usize,
    /// Rows whose delivery failed (attempts + 1, last_error set).
    pub failed: usize,
    /// Rows delivered but left unmarked because an earlier row of the same aggregate
    /// failed: they are sent again after it, so the last write stays last.
    pub held_back: usize,
}

/// A claimed row and its delivery report.
#[derive(Debug)]
pub struct Delivery {
    pub row: OutboxRow,
    /// `Ok` with the time Kafka acknowledged it, or the error text.
    pub result: Result<chrono::DateTime<Utc>, String>,
}

/// Live state other parts of the process (health, tests) look at.
#[derive(Debug, Default)]
pub struct RelayStatus {
    leader: AtomicBool,
    published: AtomicU64,
}

impl RelayStatus {
    pub fn is_leader(&self) -> bool {
        self.leader.load(Ordering::SeqCst)
    }

    /// Rows this relay marked published since it started.
    pub fn published(&self) -> u64 {
        self.published.load(Ordering::SeqCst)
    }

    pub(crate) fn set_leader(&self, leader: bool) {
        self.leader.store(leader, Ordering::SeqCst);
        metrics::gauge!(M_IS_LEADER).set(if leader { 1.0 } else { 0.0 });
    }
}

pub struct Relay {
    db: DbConfig,
    pool: Pool,
    producer: Producer,
    config: RelayConfig,
    backoff: Backoff,
    status: Arc<RelayStatus>,
}

impl std::fmt::Debug for Relay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relay")
            .field("db", &self.db)
            .field("config", &self.config)
            .field("status", &self.status)
            .finish_non_exhaustive()
    }
}

impl Relay {
    /// A relay over the database `db` (its own small pool; leadership and LISTEN use
    /// dedicated connections) publishing with `producer`.
    pub fn new(db: DbConfig, producer: Producer, config: RelayConfig) -> Self {
        let pool = DbConfig {
            db_pool_size: 2,
            ..db.clone()
        }
        .pool();
        let backoff = Backoff::new(config.backoff_min, config.backoff_max);
        Self {
            db,
            pool,
            producer,
            config,
            backoff,
            status: Arc::default(),
        }
    }

    pub fn status(&self) -> Arc<RelayStatus> {
        self.status.clone()
    }

    pub fn producer(&self) -> &Producer {
        &self.producer
    }

    /// One batch: claim, produce, await every delivery report, mark.
    #[tracing::instrument(level = "debug", skip_all, err)]
    pub async fn relay_once(&mut self) -> Result<BatchOutcome> {
        let rows = self.claim().await?;
        if rows.is_empty() {
            return Ok(BatchOutcome::default());
        }
        let deliveries = self.produce(rows).await;
        self.mark(deliveries).await
    }

    /// The next batch of unpublished rows in id order, skipping aggregates in backoff.
    pub async fn claim(&self) -> Result<Vec<OutboxRow>> {
        let client = self.pool.get().await?;
        let blocked = self.backoff.blocked(Instant::now());
        Ok(store::claim(&client, self.config.batch_size, &blocked).await?)
    }

    /// Produces `rows` in order and waits for every delivery report.
    pub async fn produce(&self, rows: Vec<OutboxRow>) -> Vec<Delivery> {
        let spans = tracing_spans::publish(&rows);
        let mut pending = Vec::with_capacity(rows.len());
        let sent_at = Instant::now();
        for row in &rows {
            pending.push(self.send(row).await);
        }
        let delivery = metrics::histogram!(M_DELIVERY);
        let mut deliveries = Vec::with_capacity(rows.len());
        for (i, (row, sent)) in rows.into_iter().zip(pending).enumerate() {
            let result = match sent {
                Err(error) => Err(error),
                Ok(future) => match future.await {
                    Ok(Ok(_)) => {
                        delivery.record(sent_at.elapsed().as_secs_f64());
                        Ok(Utc::now())
                    }
                    Ok(Err((error, _))) => Err(error.to_string()),
                    Err(_) => Err("producer dropped the delivery report".to_owned()),
                },
            };
            if let Some(spans) = &spans {
                spans.delivered(i, result.as_ref().err());
            }
            deliveries.push(Delivery { row, result });
        }
        deliveries
    }

    /// Hands one row to librdkafka, waiting while its queue is full (so rows enter the
    /// queue strictly in id order).
    async fn send(&self, row: &OutboxRow) -> std::result::Result<DeliveryFuture, String> {
        let payload = serde_json::to_vec(&row.payload).map_err(|e| e.to_string())?;
        let headers = owned_headers(&headers_from_json(&row.headers));
        let mut record = FutureRecord::to(&row.topic)
            .key(&row.aggregate_id)
            .payload(&payload)
            .headers(headers);
        loop {
            match self.producer.send_result(record) {
                Ok(future) => return Ok(future),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                Err((error, _)) => return Err(error.to_string()),
            }
        }
    }

    /// Marks the delivered rows published (one statement) and counts the failures, except
    /// that after a failed row no later row of the same aggregate is marked.
    pub async fn mark(&mut self, deliveries: Vec<Delivery>) -> Result<BatchOutcome> {
        let mut outcome = BatchOutcome {
            claimed: deliveries.len(),
            ..BatchOutcome::default()
        };
        let mut failed_aggregates = HashSet::new();
        let mut published = Vec::with_capacity(deliveries.len());
        let mut acked = Vec::with_capacity(deliveries.len());
        let mut failures = Vec::new();
        for delivery in &deliveries {
            let row = &delivery.row;
            match &delivery.result {
                Err(error) => {
                    failed_aggregates.insert(row.aggregate_id.as_str());
                    failures.push((row.id, error.clone()));
                }
                Ok(_) if failed_aggregates.contains(row.aggregate_id.as_str()) => {
                    outcome.held_back += 1;
                }
                Ok(at) => {
                    published.push(row.id);
                    acked.push((*at - row.created_at).to_std().unwrap_or_default());
                }
            }
        }
        let client = self.pool.get().await?;
        store::mark_published(&client, &published).await?;
        store::mark_failed(&client, &failures).await?;

        let now = Instant::now();
        for aggregate in &failed_aggregates {
            self.backoff.failed(aggregate, now);
        }
        for delivery in &deliveries {
            if delivery.result.is_ok()
                && !failed_aggregates.contains(delivery.row.aggregate_id.as_str())
            {
                self.backoff.succeeded(&delivery.row.aggregate_id);
            }
        }
        outcome.published = published.len();
        outcome.failed = failures.len();
        let histogram = metrics::histogram!(M_LATENCY);
        for latency in acked {
            histogram.record(latency.as_secs_f64());
        }
        metrics::counter!(M_PUBLISHED).increment(outcome.published as u64);
        metrics::counter!(M_FAILURES).increment(outcome.failed as u64);
        self.status
            .published
            .fetch_add(outcome.published as u64, Ordering::SeqCst);
        if let Some((_, error)) = failures.first() {
            tracing::warn!(failed = outcome.failed, held_back = outcome.held_back, %error, "deliveries failed; backing off those aggregates");
        }
        Ok(outcome)
    }
}

/// The spans of a batch, when spans are exported: one `publish` span per event, a child of
/// the context its outbox row stored (the request that wrote it), linked to the batch's
/// span, which is linked to each of them (OpenTelemetry's messaging conventions for
/// batches).
mod tracing_spans {
    use super::OutboxRow;
    use crate::envelope::{headers_from_json, H_TRACEPARENT};

    pub(super) struct Publish {
        _batch: tracing::Span,
        events: Vec<tracing::Span>,
    }

    pub(super) fn publish(rows: &[OutboxRow]) -> Option<Publish> {
        if !platform::telemetry::exporting() {
            return None;
        }
        let topic = rows.first().map(|r| r.topic.as_str()).unwrap_or_default();
        let batch = tracing::info_span!(
            parent: None,
            "outbox.batch",
            otel.name = format!("publish {topic} (batch)"),
            otel.kind = "producer",
            messaging.system = "kafka",
            messaging.destination.name = topic,
            messaging.operation.type = "send",
            messaging.batch.message_count = rows.len(),
        );
        let events = rows
            .iter()
            .map(|row| {
                let headers = headers_from_json(&row.headers);
                let header = |name: &str| {
                    headers
                        .iter()
                        .find(|(k, _)| k == name)
                        .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
                };
                let traceparent = header(H_TRACEPARENT);
                let span = tracing::info_span!(
                    parent: None,
                    "outbox.publish",
                    otel.name = format!("publish {}", row.topic),
                    otel.kind = "producer",
                    otel.status_code = tracing::field::Empty,
                    messaging.system = "kafka",
                    messaging.destination.name = row.topic.as_str(),
                    messaging.operation.type = "send",
                    messaging.kafka.message.key = row.aggregate_id.as_str(),
                    messaging.message.id = header("ce_id").unwrap_or_default(),
                    cloudevents.event_id = header("ce_id").unwrap_or_default(),
                    cloudevents.event_type = header("ce_type").unwrap_or_default(),
                    outbox.id = row.id,
                    error.type = tracing::field::Empty,
                );
                platform::telemetry::continue_from(&span, traceparent.as_deref());
                platform::telemetry::link(
                    &span,
                    platform::telemetry::traceparent_of(&batch).as_deref(),
                );
                platform::telemetry::link(
                    &batch,
                    platform::telemetry::traceparent_of(&span).as_deref(),
                );
                span
            })
            .collect();
        Some(Publish {
            _batch: batch,
            events,
        })
    }

    impl Publish {
        /// Kafka's answer for event `i`: its span ends, as an error if it failed.
        pub(super) fn delivered(&self, i: usize, error: Option<&String>) {
            if let (Some(span), Some(error)) = (self.events.get(i), error) {
                span.record("otel.status_code", "ERROR");
                span.record("error.type", error.as_str());
            }
        }
    }
}
