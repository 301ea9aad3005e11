//! The Kafka producer the relay publishes with: idempotent, `acks=all`, and transactional.
//! Every relay of one outbox uses the same two transactional ids (the one kept in the
//! outbox's state row, and that id with `-2`; the leader's two producers take turns, one
//! transaction each), so a new leader's `init_transactions` fences the producers of the
//! leader before it: a relay frozen or cut off while it led can never write again, not
//! even the records its librdkafka still held, and its open transaction is aborted
//! (consumers reading committed records, librdkafka's default, never see it; those
//! reading uncommitted ones, as the event-consumer does, may have seen what it wrote
//! before it lost the lease, which the new leader sends again, so they drop the copies).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use platform::kafka::KafkaConfig;
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::message::DeliveryResult;
use rdkafka::producer::{FutureProducer, ProducerContext, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::ClientContext;

use platform::kafka::{client_config, KafkaContext};

/// A plain producer with the relay's settings and client context (the health probe's,
/// and the benchmark's raw producer).
pub type Producer = FutureProducer<KafkaContext>;

/// Producer tuning (`RELAY_LINGER_MS`, `RELAY_COMPRESSION`, `RELAY_MESSAGE_TIMEOUT_MS`) and
/// the connection (`KAFKA_BROKERS` and the security settings).
#[derive(Debug, Clone)]
pub struct ProducerSettings {
    pub kafka: KafkaConfig,
    pub linger_ms: u64,
    /// none | gzip | snappy | lz4 | zstd
    pub compression: String,
    /// How long librdkafka keeps retrying one message before its delivery report fails
    /// (the transaction then aborts and the relay retries it after a backoff; nothing is
    /// lost meanwhile). Short in tests.
    pub message_timeout_ms: u64,
    /// Messages librdkafka may buffer; must hold at least one batch.
    pub queue_max_messages: usize,
}

impl ProducerSettings {
    /// Plaintext to `brokers`, with the relay's defaults.
    pub fn new(brokers: impl Into<String>) -> Self {
        Self::with(KafkaConfig::plaintext(brokers))
    }

    /// The relay's defaults over the connection `kafka`.
    pub fn with(kafka: KafkaConfig) -> Self {
        Self {
            kafka,
            // No linger: a lone event goes out at once, and under load librdkafka still
            // batches whatever queues while a request is in flight.
            linger_ms: 0,
            compression: "lz4".into(),
            message_timeout_ms: 30_000,
            queue_max_messages: 100_000,
        }
    }

    /// How long a transaction may stay open before the coordinator aborts it: at least a
    /// minute, and never less than a message may take.
    pub fn transaction_timeout_ms(&self) -> u64 {
        self.message_timeout_ms.max(60_000)
    }

    fn config(&self) -> rdkafka::ClientConfig {
        let mut config = client_config(&self.kafka);
        config
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", self.linger_ms.to_string())
            .set("compression.type", &self.compression)
            .set("message.timeout.ms", self.message_timeout_ms.to_string())
            .set(
                "queue.buffering.max.messages",
                self.queue_max_messages.to_string(),
            )
            .set("client.id", "outbox-relay");
        config
    }
}

/// A plain (not transactional) producer with these settings.
pub fn create_producer(settings: &ProducerSettings) -> KafkaResult<Producer> {
    create_producer_with(settings, KafkaContext::default())
}

/// [`create_producer`] with a given context (to watch its [`platform::kafka::BrokerAccess`]).
pub fn create_producer_with(
    settings: &ProducerSettings,
    context: KafkaContext,
) -> KafkaResult<Producer> {
    settings.config().create_with_context(context)
}

/// The relay's transactional producer. Its delivery reports are counted per transaction
/// (no future per message), so a transaction is committed only once every report is in,
/// and the reports that failed say which rows Kafka refused.
pub(crate) type TxProducer = ThreadedProducer<TxContext>;

/// The transactional ids of an outbox's two producers (see `Lead::producers`), from the
/// one its state row keeps: every relay of the outbox uses both, so a new leader fences
/// both of the last one's.
pub(crate) fn transactional_ids(outbox: &str) -> [String; 2] {
    [outbox.to_owned(), format!("{outbox}-2")]
}

/// Creates the transactional producer with `transactional_id` (not yet initialised).
pub(crate) fn create_transactional(
    settings: &ProducerSettings,
    transactional_id: &str,
    kafka: KafkaContext,
) -> KafkaResult<TxProducer> {
    let mut config = settings.config();
    config.set("transactional.id", transactional_id).set(
        "transaction.timeout.ms",
        settings.transaction_timeout_ms().to_string(),
    );
    config.create_with_context(TxContext {
        kafka,
        reports: Arc::default(),
    })
}

/// The producer's context: the platform's error and log handling, and the delivery
/// reports of the transaction under way.
pub(crate) struct TxContext {
    kafka: KafkaContext,
    pub(crate) reports: Arc<Reports>,
}

impl ClientContext for TxContext {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, message: &str) {
        self.kafka.log(level, fac, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.kafka.error(error, reason);
    }
}

impl ProducerContext for TxContext {
    /// The outbox row's id.
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, index: usize) {
        let error = result.as_ref().err().map(|(error, _)| error.clone());
        self.reports.report(index, error);
    }
}

/// The delivery reports of one transaction: how many are outstanding, which failed.
#[derive(Debug, Default)]
pub(crate) struct Reports {
    outstanding: AtomicUsize,
    failed: Mutex<Vec<(usize, KafkaError)>>,
    all_in: Condvar,
}

impl Reports {
    /// A new transaction: nothing outstanding, nothing failed.
    pub(crate) fn reset(&self) {
        self.outstanding.store(0, Ordering::SeqCst);
        if let Ok(mut failed) = self.failed.lock() {
            failed.clear();
        }
    }

    /// One more message handed to librdkafka.
    pub(crate) fn sent(&self) {
        self.outstanding.fetch_add(1, Ordering::SeqCst);
    }

    /// A message librdkafka did not take after all (no report will come).
    pub(crate) fn unsent(&self) {
        self.outstanding.fetch_sub(1, Ordering::SeqCst);
    }

    fn report(&self, index: usize, error: Option<KafkaError>) {
        let mut failed = self.failed.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(error) = error {
            failed.push((index, error));
        }
        if self.outstanding.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.all_in.notify_all();
        }
    }

    /// Waits (blocking) until every report is in or `timeout` passed; returns the failed
    /// ones, or `None` on timeout.
    pub(crate) fn wait(&self, timeout: Duration) -> Option<Vec<(usize, KafkaError)>> {
        let failed = self.failed.lock().unwrap_or_else(|e| e.into_inner());
        let (mut failed, waited) = self
            .all_in
            .wait_timeout_while(failed, timeout, |_| {
                self.outstanding.load(Ordering::SeqCst) > 0
            })
            .unwrap_or_else(|e| e.into_inner());
        if waited.timed_out() && self.outstanding.load(Ordering::SeqCst) > 0 {
            return None;
        }
        Some(std::mem::take(&mut *failed))
    }
}

/// How a failed send or delivery report is handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Failure {
    /// The record itself is refused (too large, an unknown or forbidden topic, ...): park
    /// the row, the rest goes on.
    Refused,
    /// A casualty of the transaction's abort, not a verdict on the record.
    Collateral,
    /// The broker is away or busy: retry the whole batch later.
    Transient,
}

pub(crate) fn classify(error: &KafkaError) -> Failure {
    use RDKafkaErrorCode as C;
    let code = match error {
        KafkaError::MessageProduction(code) => *code,
        other => match other.rdkafka_error_code() {
            Some(code) => code,
            None => return Failure::Transient,
        },
    };
    match code {
        C::MessageSizeTooLarge
        | C::InvalidMessageSize
        | C::InvalidMessage
        | C::InvalidRecord
        | C::MessageBatchTooLarge
        | C::UnknownTopicOrPartition
        | C::UnknownTopic
        | C::UnknownPartition
        | C::InvalidTopic
        | C::TopicAuthorizationFailed
        | C::PolicyViolation
        | C::InvalidArgument => Failure::Refused,
        C::PurgeQueue | C::PurgeInflight | C::State | C::Fatal | C::ProducerFenced => {
            Failure::Collateral
        }
        _ => Failure::Transient,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_refused_for_itself_is_parked_an_away_broker_is_waited_for() {
        let refused = KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge);
        assert_eq!(classify(&refused), Failure::Refused);
        let timeout = KafkaError::MessageProduction(RDKafkaErrorCode::MessageTimedOut);
        assert_eq!(classify(&timeout), Failure::Transient);
        let purged = KafkaError::MessageProduction(RDKafkaErrorCode::PurgeQueue);
        assert_eq!(classify(&purged), Failure::Collateral);
    }

    #[test]
    fn the_transaction_timeout_covers_a_message_timeout() {
        let mut settings = ProducerSettings::new("127.0.0.1:9092");
        assert_eq!(settings.transaction_timeout_ms(), 60_000);
        settings.message_timeout_ms = 120_000;
        assert_eq!(settings.transaction_timeout_ms(), 120_000);
    }
}
