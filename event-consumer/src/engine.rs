//! The consumer engine: polls a batch, dead-letters its poison records, applies the rest
//! through the inbox in ONE transaction (under a backlog: one per partition, each
//! partition's in a lane of its own, see [`Consumer::run`]), and stores the Kafka offsets
//! only after the commit. A batch that fails transiently is kept and retried (what did not
//! commit), so no record is skipped. A batch the database refuses for good (a permanent
//! SQLSTATE) is applied record by record, and only the records it still refuses are
//! dead-lettered.

use platform::telemetry::error_chain;
use std::future::Future;
use std::time::Duration;

use deadpool_postgres::Pool;
use futures::StreamExt as _;
use outbox_relay::envelope::Record;
use outbox_relay::kafka::record_of;
use platform::kafka::KafkaConfig;
use platform::kafka::{client_config, BrokerAccess, KafkaContext};
use rdkafka::consumer::{CommitMode, Consumer as _, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::Producer as _;
use rdkafka::{Offset, TopicPartitionList};
use std::sync::Arc;
use tokio::time::Instant;

use crate::config::Settings;
use crate::dlq;
use crate::event::{classify, Inbound, Poison};
use crate::inbox::{self, Applied, Delivered};
use crate::lag::LagContext;
use crate::sqlstate::{self, Failure};
use platform::backoff::Backoff;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("kafka client error")]
    Kafka(#[from] KafkaError),
    #[error("cannot produce a dead letter")]
    DeadLetter(#[source] KafkaError),
    #[error("database unavailable")]
    Pool(#[from] deadpool_postgres::PoolError),
    #[error("database error")]
    Database(#[from] tokio_postgres::Error),
}

impl Error {
    /// The database refused for good what was asked (see [`sqlstate`]); anything else may
    /// succeed on a retry.
    fn is_permanent(&self) -> bool {
        matches!(self, Error::Database(error) if sqlstate::of(error) == Failure::Permanent)
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The families the consumer records (their `# HELP` lines).
pub const METRICS: &[platform::metrics::Family] = {
    use platform::metrics::Kind::{Counter, Gauge, Histogram};
    &[
        (
            "consumer_processed_total",
            Counter,
            None,
            "Events applied (their effect committed).",
        ),
        (
            "consumer_duplicates_total",
            Counter,
            None,
            "Redelivered events skipped: already applied.",
        ),
        (
            "consumer_dead_lettered_total",
            Counter,
            None,
            "Poison records sent to the DLQ topic.",
        ),
        (
            "consumer_unknown_type_total",
            Counter,
            None,
            "Events of a type the consumer does not know, skipped.",
        ),
        (
            "consumer_stale_versions_total",
            Counter,
            None,
            "User events at or below their user's version in the read model, skipped as duplicates.",
        ),
        (
            "consumer_held_total",
            Counter,
            None,
            "User events parked because a version before them had not arrived.",
        ),
        (
            "consumer_erased_skipped_total",
            Counter,
            None,
            "Events of erased users, skipped.",
        ),
        (
            "consumer_held_events",
            Gauge,
            None,
            "User events parked for a gap now.",
        ),
        (
            "consumer_held_for_gap_seconds",
            Gauge,
            None,
            "Age of the oldest parked event (0 when none is parked).",
        ),
        (
            "consumer_gaps_overdue",
            Gauge,
            None,
            "Users whose oldest parked event is older than CONSUMER_GAP_TIMEOUT.",
        ),
        (
            "consumer_lag",
            Gauge,
            None,
            "Records not consumed yet, per partition (from librdkafka statistics).",
        ),
        (
            "consumer_batch_seconds",
            Histogram,
            Some(platform::metrics::Unit::Seconds),
            "Time to settle one batch: dead letters, the database transaction and the offsets.",
        ),
    ]
};
/// How long `consume_once` waits for a first record, and how long it then waits for more
/// to fill the batch.
const POLL_WAIT: Duration = Duration::from_millis(500);
/// Short: under a backlog a batch fills at once anyway, and at a low rate every
/// millisecond spent waiting for company is latency (20 ms gave commit -> effect p99 34 ms).
const LINGER: Duration = Duration::from_millis(2);

/// Bytes fetched per partition and request (see `Consumer::new`). With 1 MiB, a backlog
/// came in runs of ~28,000 records of one partition, every batch a single transaction;
/// with 64 KiB a batch of 2,000 spans two or three partitions.
const PARTITION_FETCH_BYTES: usize = 64 * 1024;
/// Partition transactions in flight at once, at most (each holds a pooled connection).
const SETTLE_LANES: usize = 4;
/// Records in a batch from which each partition gets a transaction of its own (and, in
/// `run`, goes to its partition's lane).
const PARALLEL_FROM: usize = 500;

struct Received {
    topic: String,
    partition: i32,
    offset: i64,
    record: Record,
    outcome: Result<Inbound, Poison>,
    state: State,
}

/// How far a received record got; a batch retried after a failure skips what is done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Unsettled,
    /// Acknowledged by the DLQ topic.
    DeadLettered,
    /// Committed on its own while the culprit of a refused batch was searched.
    Applied,
}

/// What one `consume_once` did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BatchReport {
    /// Records taken from Kafka and settled (offsets stored).
    pub records: usize,
    pub applied: Applied,
}

pub struct Consumer {
    consumer: Arc<StreamConsumer<LagContext>>,
    access: Arc<BrokerAccess>,
    batch_size: usize,
    /// Settles what `consume_once` polls; `run` gives each partition a settler of its own.
    settler: Settler,
}

impl std::fmt::Debug for Consumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consumer")
            .field("dlq_topic", &self.settler.dlq_topic)
            .field("batch_size", &self.batch_size)
            .field("pending", &self.settler.pending.len())
            .finish_non_exhaustive()
    }
}

/// Dead-letters, applies and acknowledges batches of records, one at a time: the
/// records in hand, and what of them committed so far.
struct Settler {
    consumer: Arc<StreamConsumer<LagContext>>,
    producer: dlq::Producer,
    pool: Pool,
    dlq_topic: String,
    retry: Backoff,
    pending: Vec<Received>,
    /// What records of `pending` committed so far (a partition's transaction, or one
    /// record at a time) have changed.
    settled: Applied,
    /// Dead letters of `pending` already counted by a committed transaction.
    dead_counted: u64,
}

impl Settler {
    /// A settler with nothing in hand, sharing this one's clients.
    fn fresh(&self) -> Self {
        Self {
            consumer: self.consumer.clone(),
            producer: self.producer.clone(),
            pool: self.pool.clone(),
            dlq_topic: self.dlq_topic.clone(),
            retry: self.retry.clone(),
            pending: Vec::new(),
            settled: Applied::default(),
            dead_counted: 0,
        }
    }
}

/// Kafka's part of readiness: unready only while the brokers refuse this client
/// (credentials, TLS); a broker that is merely away is waited for.
#[derive(Clone)]
pub struct BrokerCheck {
    access: Arc<BrokerAccess>,
    producer: dlq::Producer,
}

impl std::fmt::Debug for BrokerCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BrokerCheck")
            .field("refused", &self.access.refused())
            .finish_non_exhaustive()
    }
}

impl BrokerCheck {
    /// Why the brokers refuse this client, while they do.
    pub fn refused(&self) -> Option<String> {
        self.access.refused()
    }

    /// Whether a broker answers a metadata request (within a second); an answer also
    /// clears an earlier refusal.
    pub async fn reachable(&self) -> bool {
        let producer = self.producer.clone();
        let answered = tokio::task::spawn_blocking(move || {
            producer
                .client()
                .fetch_metadata(None, Duration::from_secs(1))
                .is_ok_and(|metadata| !metadata.brokers().is_empty())
        })
        .await
        .unwrap_or(false);
        if answered {
            self.access.accepted();
        }
        answered
    }

    pub async fn ready(&self) -> bool {
        if self.access.refused().is_none() {
            return true;
        }
        let producer = self.producer.clone();
        let answered = tokio::task::spawn_blocking(move || {
            producer
                .client()
                .fetch_metadata(None, Duration::from_secs(1))
                .is_ok()
        })
        .await
        .unwrap_or(false);
        if answered {
            self.access.accepted();
        }
        answered
    }
}

impl Consumer {
    /// Joins the group and subscribes; records flow once the group has assigned partitions.
    pub fn new(settings: &Settings, kafka: &KafkaConfig, pool: Pool) -> Result<Self> {
        platform::metrics::handle();
        let access = Arc::new(BrokerAccess::default());
        let consumer: StreamConsumer<LagContext> = client_config(kafka)
            .set("group.id", &settings.consumer_group)
            // The relay keeps a Kafka transaction open for a few dozen milliseconds; its
            // records are real events (committed outbox rows) from the moment Kafka has
            // them, so they are applied at once. A transaction the relay aborts is sent
            // again, and the inbox drops the copies.
            .set("isolation.level", "read_uncommitted")
            .set("enable.auto.commit", "true")
            // Offsets are stored by hand, after the database commit.
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            // Small fetches per partition (librdkafka's default is 1 MiB, a few thousand
            // compressed records): the local queue then alternates between partitions
            // every few hundred records, so under a backlog a batch holds several
            // partitions, whose transactions run side by side (see `apply_batch`).
            .set(
                "max.partition.fetch.bytes",
                PARTITION_FETCH_BYTES.to_string(),
            )
            .set(
                "session.timeout.ms",
                settings.consumer_session_timeout_ms.to_string(),
            )
            .set(
                "statistics.interval.ms",
                settings.consumer_stats_interval_ms.to_string(),
            )
            .create_with_context(LagContext {
                topic: settings.consumer_topic.clone(),
                kafka: KafkaContext {
                    access: access.clone(),
                },
            })?;
        consumer.subscribe(&[&settings.consumer_topic])?;
        let consumer = Arc::new(consumer);
        Ok(Self {
            settler: Settler {
                consumer: consumer.clone(),
                producer: dlq::producer(
                    kafka,
                    KafkaContext {
                        access: access.clone(),
                    },
                )?,
                pool,
                dlq_topic: settings.consumer_dlq_topic.clone(),
                retry: Backoff::new(
                    Duration::from_millis(settings.consumer_retry_min_ms),
                    Duration::from_millis(settings.consumer_retry_max_ms),
                ),
                pending: Vec::new(),
                settled: Applied::default(),
                dead_counted: 0,
            },
            consumer,
            access,
            batch_size: settings.consumer_batch_size.max(1),
        })
    }

    /// What `/health/ready` asks about Kafka.
    pub fn broker_check(&self) -> BrokerCheck {
        BrokerCheck {
            access: self.access.clone(),
            producer: self.settler.producer.clone(),
        }
    }

    /// One step: polls up to a batch of records (unless an earlier batch is still pending),
    /// then settles it. On error the batch stays pending and the next call retries it.
    pub async fn consume_once(&mut self) -> Result<BatchReport> {
        if self.settler.pending.is_empty() {
            self.settler.pending = poll(&self.consumer, self.batch_size, None).await?;
        }
        self.settler.settle().await
    }

    /// Consumes until `shutdown` resolves. The records are polled (and decoded) by a task of
    /// their own, a batch at a time, while the batch before is settled:
    /// - a small batch (a low rate) is settled in one transaction, as a whole;
    /// - a big one (a backlog) is handed, partition by partition, to a lane per partition:
    ///   a task that settles its partition's records in order, a transaction at a time
    ///   (what queued up while the last one ran goes into the next, up to about a batch),
    ///   and stores the partition's offset after each commit. Partitions share no user, so
    ///   lanes touch different rows and run side by side, none waiting for another's
    ///   batch (at most [`SETTLE_LANES`] transactions at once). A small batch waits until
    ///   the lanes have settled everything before it, so each partition's records are
    ///   still applied in order.
    ///
    /// A failed transaction is retried with capped exponential backoff; records polled but
    /// not settled are never acknowledged, and come again after a restart. On shutdown
    /// the transactions in hand are finished (or, while they wait to retry, left for
    /// redelivery), stored offsets are committed and the group is left.
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        // One polled batch waits while the one before is settled.
        let (batches, mut polled) = tokio::sync::mpsc::channel(1);
        // Whether this loop waits for a batch with nothing in hand (no lane busy either):
        // then a batch goes at once, with what has come, rather than after the linger.
        let (waiting, idle) = tokio::sync::watch::channel(false);
        let poller = tokio::spawn(poll_ahead(
            self.consumer.clone(),
            self.batch_size,
            self.settler.retry.clone(),
            batches,
            idle,
        ));
        let (stop, stopping) = tokio::sync::watch::channel(false);
        let mut lanes = Lanes::new(self.batch_size, stopping);
        'polling: loop {
            waiting.send_replace(lanes.is_idle());
            let batch = tokio::select! {
                biased;
                () = &mut shutdown => break,
                batch = polled.recv() => match batch {
                    Some(batch) => batch,
                    None => break,
                },
            };
            waiting.send_replace(false);
            if batch.len() >= PARALLEL_FROM {
                for (partition, records) in by_partition(batch, |r| r.partition) {
                    let lane = lanes.lane(partition, &self.settler);
                    // A full lane holds the others back: the poller stays at most a few
                    // batches ahead of the slowest partition.
                    tokio::select! {
                        biased;
                        () = &mut shutdown => break 'polling,
                        () = lanes.send(lane, records) => {}
                    }
                }
                continue;
            }
            tokio::select! {
                biased;
                () = &mut shutdown => break,
                () = lanes.idle() => {}
            }
            self.settler.pending = batch;
            if !settle_retrying(&mut self.settler, &mut shutdown).await {
                break;
            }
        }
        let _ = stop.send(true);
        lanes.finish().await;
        poller.abort();
        // The poller's handle on the client goes before the group is left.
        let _ = poller.await;
        self.close();
    }

    /// Commits the stored offsets and leaves the group.
    pub fn close(self) {
        match self.consumer.commit_consumer_state(CommitMode::Sync) {
            Ok(())
            | Err(KafkaError::ConsumerCommit(rdkafka::types::RDKafkaErrorCode::NoOffset)) => {}
            Err(error) => tracing::warn!(%error, "committing offsets on shutdown failed"),
        }
        self.consumer.unsubscribe();
        if !self.settler.pending.is_empty() {
            tracing::info!(
                records = self.settler.pending.len(),
                "leaving an unsettled batch for redelivery"
            );
        }
        tracing::info!("consumer stopped");
    }
}

/// The partitions' lanes of [`Consumer::run`].
struct Lanes {
    /// Each partition's lane.
    lanes: Vec<(i32, Lane)>,
    /// Records a lane takes into one transaction (about; see [`settle_lane`]).
    batch_size: usize,
    /// Groups of records handed to a lane and not settled yet, and a wake-up for when
    /// there are none.
    outstanding: Arc<(std::sync::atomic::AtomicUsize, tokio::sync::Notify)>,
    permits: Arc<tokio::sync::Semaphore>,
    stopping: tokio::sync::watch::Receiver<bool>,
}

/// One partition's records on their way to the database.
struct Lane {
    records: tokio::sync::mpsc::Sender<Vec<Received>>,
    task: tokio::task::JoinHandle<()>,
}

impl Lanes {
    /// Groups of records waiting for a lane, at most.
    const QUEUE: usize = 2;

    fn new(batch_size: usize, stopping: tokio::sync::watch::Receiver<bool>) -> Self {
        Self {
            lanes: Vec::new(),
            batch_size,
            outstanding: Arc::default(),
            permits: Arc::new(tokio::sync::Semaphore::new(SETTLE_LANES)),
            stopping,
        }
    }

    /// The index of `partition`'s lane, started if it has none yet.
    fn lane(&mut self, partition: i32, template: &Settler) -> usize {
        if let Some(index) = self.lanes.iter().position(|(p, _)| *p == partition) {
            return index;
        }
        let (records, queue) = tokio::sync::mpsc::channel(Self::QUEUE);
        let task = tokio::spawn(settle_lane(
            template.fresh(),
            queue,
            self.batch_size,
            self.permits.clone(),
            self.outstanding.clone(),
            self.stopping.clone(),
        ));
        self.lanes.push((partition, Lane { records, task }));
        self.lanes.len() - 1
    }

    /// Hands `records` to lane `index`, waiting while its queue is full.
    async fn send(&self, index: usize, records: Vec<Received>) {
        use std::sync::atomic::Ordering;
        self.outstanding.0.fetch_add(1, Ordering::SeqCst);
        if self.lanes[index].1.records.send(records).await.is_err() {
            // The lane has stopped (shutdown): its records come again after a restart.
            self.outstanding.0.fetch_sub(1, Ordering::SeqCst);
        }
    }

    /// Whether every lane has settled all it was handed.
    fn is_idle(&self) -> bool {
        self.outstanding.0.load(std::sync::atomic::Ordering::SeqCst) == 0
    }

    /// Resolves once every lane has settled all it was handed.
    async fn idle(&self) {
        use std::sync::atomic::Ordering;
        let (count, done) = &*self.outstanding;
        loop {
            let notified = done.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if count.load(Ordering::SeqCst) == 0 {
                return;
            }
            notified.await;
        }
    }

    /// Lets each lane finish the transaction in hand, then waits for them all.
    async fn finish(self) {
        for (_, lane) in self.lanes {
            drop(lane.records);
            let _ = lane.task.await;
        }
    }
}

/// A lane's loop: takes what its partition queued (up to about a batch) and settles it,
/// until the consumer stops.
async fn settle_lane(
    mut settler: Settler,
    mut queue: tokio::sync::mpsc::Receiver<Vec<Received>>,
    batch_size: usize,
    permits: Arc<tokio::sync::Semaphore>,
    outstanding: Arc<(std::sync::atomic::AtomicUsize, tokio::sync::Notify)>,
    mut stopping: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        let records = tokio::select! {
            biased;
            _ = stopping.wait_for(|stop| *stop) => return,
            records = queue.recv() => match records {
                Some(records) => records,
                None => return,
            },
        };
        settler.pending = records;
        let mut groups = 1;
        while settler.pending.len() < batch_size {
            match queue.try_recv() {
                Ok(more) => {
                    settler.pending.extend(more);
                    groups += 1;
                }
                Err(_) => break,
            }
        }
        let settled = {
            let Ok(_permit) = permits.acquire().await else {
                return;
            };
            let stopped = stopping.clone();
            let mut stop = Box::pin(async move {
                let mut stopped = stopped;
                let _ = stopped.wait_for(|stop| *stop).await;
            });
            settle_retrying(&mut settler, &mut stop).await
        };
        if !settled {
            return;
        }
        let (count, done) = &*outstanding;
        if count.fetch_sub(groups, std::sync::atomic::Ordering::SeqCst) == groups {
            done.notify_waiters();
        }
    }
}

/// Settles `settler`'s batch, retrying with capped exponential backoff; false when `stop`
/// came while waiting to retry (the batch is then left for redelivery).
async fn settle_retrying(
    settler: &mut Settler,
    stop: &mut (impl Future<Output = ()> + Unpin),
) -> bool {
    loop {
        match settler.settle().await {
            Ok(_) => {
                settler.retry.reset();
                return true;
            }
            Err(error) => {
                tracing::warn!(
                    error = %error_chain(&error),
                    records = settler.pending.len(),
                    "batch failed, retrying it"
                );
                let delay = settler.retry.next_delay();
                tokio::select! {
                    () = &mut *stop => {
                        tracing::info!(
                            records = settler.pending.len(),
                            "leaving an unsettled batch for redelivery"
                        );
                        return false;
                    }
                    () = tokio::time::sleep(delay) => {}
                }
            }
        }
    }
}

/// `items` split by the partition of the record each stands for, the partitions in order
/// of first appearance and each one's items in the order given (delivery order). The
/// consumer reads one topic, so the partition alone tells them apart.
fn by_partition<T>(
    items: impl IntoIterator<Item = T>,
    partition_of: impl Fn(&T) -> i32,
) -> Vec<(i32, Vec<T>)> {
    let mut partitions: Vec<(i32, Vec<T>)> = Vec::new();
    for item in items {
        let partition = partition_of(&item);
        match partitions.iter_mut().find(|(p, _)| *p == partition) {
            Some((_, items)) => items.push(item),
            None => partitions.push((partition, vec![item])),
        }
    }
    partitions
}

impl Settler {
    /// Dead-letters, applies and acknowledges the pending batch.
    async fn settle(&mut self) -> Result<BatchReport> {
        if self.pending.is_empty() {
            return Ok(BatchReport::default());
        }
        let started = std::time::Instant::now();
        let _spans = process_spans(&self.pending);
        self.dead_letter_poison().await?;
        let applied = match self.apply_batch().await {
            Err(error) if error.is_permanent() => {
                tracing::warn!(
                    error = %error_chain(&error),
                    records = self.pending.len(),
                    "the database refused the batch; applying its records one by one"
                );
                self.apply_one_by_one().await?
            }
            applied => applied?,
        };
        let applied = applied + std::mem::take(&mut self.settled);
        self.store_offsets();
        let records = self.pending.len();
        self.trace_settled();
        self.pending.clear();
        self.dead_counted = 0;
        metrics::counter!("consumer_processed_total").increment(applied.processed);
        metrics::counter!("consumer_duplicates_total").increment(applied.duplicates);
        metrics::counter!("consumer_dead_lettered_total").increment(applied.dead_lettered);
        metrics::counter!("consumer_unknown_type_total").increment(applied.unknown_types);
        metrics::counter!("consumer_stale_versions_total").increment(applied.stale_versions);
        metrics::counter!("consumer_held_total").increment(applied.held);
        metrics::counter!("consumer_erased_skipped_total").increment(applied.erased_skipped);
        metrics::histogram!("consumer_batch_seconds").record(started.elapsed().as_secs_f64());
        tracing::debug!(records, ?applied, "batch settled");
        Ok(BatchReport { records, applied })
    }

    /// Ties each settled event to the trace of the request that wrote it (the W3C
    /// `traceparent` carried from HTTP through the outbox row and the Kafka header).
    fn trace_settled(&self) {
        if !tracing::enabled!(tracing::Level::TRACE) {
            return;
        }
        for r in &self.pending {
            if let Ok(event) = &r.outcome {
                tracing::trace!(
                    event_id = %event.id,
                    event_type = %event.event_type,
                    traceparent = event.traceparent.as_deref().unwrap_or(""),
                    partition = r.partition,
                    offset = r.offset,
                    "event settled"
                );
            }
        }
    }

    /// Sends every poison record not yet sent to the DLQ and waits for the broker's
    /// acknowledgements.
    async fn dead_letter_poison(&mut self) -> Result<()> {
        let (producer, dlq_topic) = (&self.producer, self.dlq_topic.as_str());
        let sends = self
            .pending
            .iter_mut()
            .filter(|r| r.state == State::Unsettled)
            .filter_map(|r| {
                let reason = r.outcome.as_ref().err()?.to_string();
                Some(async move { dead_letter(producer, dlq_topic, r, &reason).await })
            });
        for sent in futures::future::join_all(sends).await {
            sent?;
        }
        Ok(())
    }

    /// The batch's decodable events not yet settled: a big batch in one inbox transaction
    /// per partition, run side by side on connections of their own; a small one in one
    /// transaction. A partition's records stay together and in order; partitions share
    /// no user (the key picks the partition), so their transactions touch different rows
    /// and PostgreSQL applies them in parallel, as it would for group members owning one
    /// partition each. Each committed partition is marked settled at once: when another
    /// fails, the retry redoes only what did not commit. The batch's dead letters are
    /// counted with the first transaction, once.
    async fn apply_batch(&mut self) -> Result<Applied> {
        let unsettled: Vec<usize> = (0..self.pending.len())
            .filter(|&i| self.pending[i].state == State::Unsettled)
            .filter(|&i| self.pending[i].outcome.is_ok())
            .collect();
        // A small batch (a low rate) stays one transaction: a few records gain nothing
        // from parallel transactions and would pay a commit each. One transaction also
        // when nothing is left to apply, for the dead letters' count.
        let groups: Vec<Vec<usize>> = if unsettled.len() < PARALLEL_FROM {
            vec![unsettled]
        } else {
            by_partition(unsettled, |&index| self.pending[index].partition)
                .into_iter()
                .map(|(_, indices)| indices)
                .collect()
        };
        let dead_letters = self.dead_letters();
        let outcomes = {
            let this = &*self;
            let transactions: Vec<_> = groups
                .iter()
                .enumerate()
                .map(|(n, indices)| {
                    let records: Vec<&Received> =
                        indices.iter().map(|&i| &this.pending[i]).collect();
                    this.apply(records.into_iter(), if n == 0 { dead_letters } else { 0 })
                })
                .collect();
            futures::stream::iter(transactions)
                .buffered(SETTLE_LANES)
                .collect::<Vec<_>>()
                .await
        };
        let mut failed = None;
        for (indices, outcome) in groups.into_iter().zip(outcomes) {
            match outcome {
                Ok(applied) => {
                    for index in indices {
                        self.pending[index].state = State::Applied;
                    }
                    self.dead_counted += applied.dead_lettered;
                    self.settled = self.settled + applied;
                }
                // A permanent refusal wins: it sends the rest to the one-by-one search.
                Err(error) if failed.as_ref().is_none_or(|f: &Error| !f.is_permanent()) => {
                    failed = Some(error)
                }
                Err(_) => {}
            }
        }
        failed.map_or(Ok(Applied::default()), Err)
    }

    /// Finds what the database refuses in a batch it refused as a whole: each unsettled
    /// event in its own transaction, in delivery order; those refused for good are
    /// dead-lettered, the others commit. A transient failure stops the search, and the
    /// retry goes on from the first record not yet settled.
    async fn apply_one_by_one(&mut self) -> Result<Applied> {
        for index in 0..self.pending.len() {
            let r = &self.pending[index];
            if r.state != State::Unsettled || r.outcome.is_err() {
                continue;
            }
            // Dead letters are counted once, with the whole batch's, below.
            let outcome = self.apply(std::iter::once(r), 0).await;
            let record = &mut self.pending[index];
            match outcome {
                Ok(applied) => {
                    record.state = State::Applied;
                    self.settled = self.settled + applied;
                }
                Err(Error::Database(error)) if sqlstate::of(&error) == Failure::Permanent => {
                    let reason = format!(
                        "the database refused the event: {}",
                        sqlstate::reason(&error)
                    );
                    dead_letter(&self.producer, &self.dlq_topic, record, &reason).await?;
                }
                Err(error) => return Err(error),
            }
        }
        self.apply(std::iter::empty(), self.dead_letters()).await
    }

    /// How many records of the batch went to the DLQ and are not counted yet.
    fn dead_letters(&self) -> u64 {
        let dead = self
            .pending
            .iter()
            .filter(|r| r.state == State::DeadLettered);
        dead.count() as u64 - self.dead_counted
    }

    /// One inbox transaction for the decodable events among `records`.
    async fn apply<'a>(
        &'a self,
        records: impl Iterator<Item = &'a Received>,
        dead_lettered: u64,
    ) -> Result<Applied> {
        let delivered: Vec<Delivered<'_>> = records
            .filter_map(|r| {
                r.outcome.as_ref().ok().map(|event| Delivered {
                    topic: &r.topic,
                    partition: r.partition,
                    offset: r.offset,
                    event,
                })
            })
            .collect();
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let applied = inbox::apply(&tx, &delivered, dead_lettered).await?;
        tx.commit().await?;
        Ok(applied)
    }

    /// Marks the batch consumed: the next offset of each partition, committed by the
    /// background auto-commit (and on shutdown). A partition revoked meanwhile refuses the
    /// store; its new owner gets the records again and the inbox drops them as duplicates.
    fn store_offsets(&self) {
        let mut tpl = TopicPartitionList::new();
        let mut next: Vec<((&str, i32), i64)> = Vec::new();
        for r in &self.pending {
            match next
                .iter_mut()
                .find(|(tp, _)| *tp == (r.topic.as_str(), r.partition))
            {
                Some((_, offset)) => *offset = (*offset).max(r.offset + 1),
                None => next.push(((&r.topic, r.partition), r.offset + 1)),
            }
        }
        for ((topic, partition), offset) in next {
            if let Err(error) = tpl.add_partition_offset(topic, partition, Offset::Offset(offset)) {
                tracing::warn!(%error, topic, partition, "cannot build the offset list");
            }
        }
        if let Err(error) = self.consumer.store_offsets(&tpl) {
            tracing::warn!(%error, "storing offsets failed (partition revoked?)");
        }
    }
}

/// Polls batches and hands them to `batches` until the receiver is gone. A Kafka error is
/// logged and polling goes on: librdkafka reports each failed reconnect as an error event
/// and reconnects by itself, and `recv` blocks until the next record or event, so polling
/// on at once cannot spin. Sleeping instead would work through a queue of stale outage
/// errors one backoff at a time, long after the broker is back. Only a fatal error (the
/// client cannot go on) waits.
async fn poll_ahead(
    consumer: Arc<StreamConsumer<LagContext>>,
    batch_size: usize,
    mut retry: Backoff,
    batches: tokio::sync::mpsc::Sender<Vec<Received>>,
    mut idle: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        match poll(&consumer, batch_size, Some(&mut idle)).await {
            Ok(batch) if batch.is_empty() => {}
            Ok(batch) => {
                retry.reset();
                if batches.send(batch).await.is_err() {
                    return;
                }
            }
            Err(error) => {
                tracing::warn!(error = %error_chain(&error), "polling Kafka failed");
                if is_fatal(&error) {
                    tokio::time::sleep(retry.next_delay()).await;
                }
            }
        }
    }
}

/// Up to a batch of records in delivery order (per-partition order is kept); empty when
/// none came within [`POLL_WAIT`]. After the first record, whatever has arrived is taken,
/// and more are waited for up to [`LINGER`], or until `idle` says the settling side waits
/// with nothing in hand: then waiting for company would only add latency. A Kafka error
/// after some records arrived ends the batch early: records already taken are never
/// dropped, or the partition would skip them.
async fn poll(
    consumer: &StreamConsumer<LagContext>,
    batch_size: usize,
    mut idle: Option<&mut tokio::sync::watch::Receiver<bool>>,
) -> Result<Vec<Received>> {
    let first = match tokio::time::timeout(POLL_WAIT, consumer.recv()).await {
        Err(_) => return Ok(Vec::new()),
        Ok(message) => message?,
    };
    let mut batch = vec![received(&first)];
    drop(first);
    let deadline = tokio::time::sleep_until(Instant::now() + LINGER);
    tokio::pin!(deadline);
    while batch.len() < batch_size {
        let settler_idle = async {
            match idle.as_deref_mut() {
                // Closed: the settling side is gone, and the batch goes nowhere anyway.
                Some(idle) => drop(idle.wait_for(|waiting| *waiting).await),
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            // What has already arrived first, then whichever comes first.
            biased;
            message = consumer.recv() => match message {
                Ok(message) => batch.push(received(&message)),
                Err(error) => {
                    tracing::warn!(%error, "Kafka error while filling a batch");
                    break;
                }
            },
            () = settler_idle => break,
            () = &mut deadline => break,
        }
    }
    Ok(batch)
}

fn received<M: Message>(message: &M) -> Received {
    let record = record_of(message);
    let outcome = classify(&record);
    Received {
        topic: message.topic().to_owned(),
        partition: message.partition(),
        offset: message.offset(),
        record,
        outcome,
        state: State::Unsettled,
    }
}

/// Produces `record` to the DLQ with `reason` and waits for the acknowledgement, after
/// which the record counts as settled.
async fn dead_letter(
    producer: &dlq::Producer,
    dlq_topic: &str,
    record: &mut Received,
    reason: &str,
) -> Result<()> {
    let origin = dlq::Origin {
        topic: &record.topic,
        partition: record.partition,
        offset: record.offset,
    };
    dlq::send(producer, dlq_topic, &record.record, origin, reason)
        .await
        .map_err(Error::DeadLetter)?;
    tracing::warn!(
        topic = %record.topic, partition = record.partition, offset = record.offset, %reason,
        "record dead-lettered"
    );
    record.state = State::DeadLettered;
    Ok(())
}

/// Whether a Kafka error leaves the client unusable (as opposed to a broker that is away
/// for a while, which librdkafka rides out on its own).
fn is_fatal(error: &Error) -> bool {
    matches!(error, Error::Kafka(KafkaError::MessageConsumptionFatal(_)))
}

/// The spans of a batch being settled, when spans are exported: a `process` span per
/// event, a child of the record's `traceparent` (the request that wrote the event) and
/// linked to the batch's span, which is linked to each of them. They end when the batch
/// is settled (applied, deduplicated or dead-lettered) or fails.
fn process_spans(pending: &[Received]) -> Option<(tracing::Span, Vec<tracing::Span>)> {
    if !platform::telemetry::exporting() {
        return None;
    }
    let topic = pending
        .first()
        .map(|r| r.topic.as_str())
        .unwrap_or_default();
    let batch = tracing::info_span!(
        parent: None,
        "consumer.batch",
        otel.name = format!("process {topic} (batch)"),
        otel.kind = "consumer",
        messaging.system = "kafka",
        messaging.destination.name = topic,
        messaging.operation.type = "process",
        messaging.batch.message_count = pending.len(),
    );
    let batch_context = platform::telemetry::traceparent_of(&batch);
    let events = pending
        .iter()
        .filter(|r| r.state == State::Unsettled)
        .map(|r| {
            let (event_id, event_type, traceparent) = match &r.outcome {
                Ok(event) => (
                    event.id.to_string(),
                    event.event_type.clone(),
                    event.traceparent.clone(),
                ),
                Err(_) => Default::default(),
            };
            let key = r
                .record
                .key
                .as_deref()
                .map(|k| String::from_utf8_lossy(k).into_owned())
                .unwrap_or_default();
            let span = tracing::info_span!(
                parent: None,
                "consumer.process",
                otel.name = format!("process {}", r.topic),
                otel.kind = "consumer",
                messaging.system = "kafka",
                messaging.destination.name = r.topic.as_str(),
                messaging.operation.type = "process",
                messaging.destination.partition.id = r.partition,
                messaging.kafka.offset = r.offset,
                messaging.kafka.message.key = key,
                messaging.message.id = event_id.as_str(),
                cloudevents.event_id = event_id.as_str(),
                cloudevents.event_type = event_type,
            );
            platform::telemetry::continue_from(&span, traceparent.as_deref());
            platform::telemetry::link(&span, batch_context.as_deref());
            platform::telemetry::link(
                &batch,
                platform::telemetry::traceparent_of(&span).as_deref(),
            );
            span
        })
        .collect();
    Some((batch, events))
}
