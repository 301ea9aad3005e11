//! The relay's Kafka transactions. The process keeps one open across pages and commits it
//! every `RELAY_COMMIT_INTERVAL_MS` (sooner when it holds many rows): each row goes to
//! librdkafka as soon as it is read, so Kafka has it (and a consumer reading uncommitted
//! records sees it) within a round trip; the commit comes once every delivery report is
//! in without error, and only what a commit covered is recorded as published. A row Kafka
//! refuses for itself (too large, an unknown topic, ...) is set apart with the later rows
//! of its aggregate; a broker that is away aborts the transaction and its rows are sent
//! again.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::error::KafkaError;
#[cfg(test)]
use rdkafka::message::Headers as _;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, Producer as _};
use rdkafka::types::RDKafkaErrorCode;
use serde::de::{Deserializer, MapAccess, Visitor};
use serde::Deserialize;

use super::producer::{classify, Failure, Reports, TxProducer};
use super::{OutboxRow, Page, M_DELIVERY};

/// Why a row waits behind another of its aggregate.
fn behind(id: i64) -> String {
    format!("waiting behind outbox row {id} of the same aggregate")
}

const BEHIND_PARKED: &str = "waiting behind a parked row of the same aggregate";

/// Starts a transaction (a local step: nothing is sent before the first row).
pub(super) fn begin(producer: &TxProducer) -> Result<(), KafkaError> {
    producer.context().reports.reset();
    producer.begin_transaction()
}

/// What the rows of a page became.
pub(super) struct Handed {
    pub(super) page: Page,
    /// Rows set apart (index in the page, why).
    pub(super) parked: Vec<(usize, String)>,
    /// A send librdkafka refused for another reason than the record: the transaction
    /// must be aborted.
    pub(super) broken: Option<KafkaError>,
}

/// Hands `page`'s rows to librdkafka in the open transaction (blocking only while its
/// queue is full). Rows of `blocked` aggregates and those in `set_apart` (refused at an
/// earlier attempt) are set apart, with the page's later rows of their aggregates;
/// `blocked` learns the aggregates of rows refused now.
pub(super) async fn hand_over(
    producer: Arc<TxProducer>,
    page: Page,
    mut blocked: HashSet<String>,
    set_apart: HashMap<i64, String>,
) -> (Handed, HashSet<String>) {
    let handed = tokio::task::spawn_blocking(move || {
        let handed = hand_over_blocking(&producer, page, &mut blocked, &set_apart);
        (handed, blocked)
    })
    .await;
    let (handed, blocked) = match handed {
        Ok(done) => done,
        Err(error) => {
            // The task panicked; nothing is known of the page: abort and send it again.
            tracing::error!(%error, "handing a page to the producer failed");
            return (
                Handed {
                    page: Page::empty(),
                    parked: Vec::new(),
                    broken: Some(KafkaError::Canceled),
                },
                HashSet::new(),
            );
        }
    };
    (handed, blocked)
}

fn hand_over_blocking(
    producer: &TxProducer,
    mut page: Page,
    blocked: &mut HashSet<String>,
    set_apart: &HashMap<i64, String>,
) -> Handed {
    let reports = producer.context().reports.clone();
    // The rows' Kafka headers, built when the page was read (a page handed over again
    // builds them anew).
    let mut prepared = std::mem::take(&mut page.headers);
    let batch = spans::batch(&page.rows);
    let mut parked = Vec::new();
    // The first row of each aggregate set apart in this page: its later rows wait.
    let mut first_apart: HashMap<&str, i64> = HashMap::new();
    for (i, row) in page.rows.iter().enumerate() {
        let aggregate = row.aggregate_id.as_str();
        if let Some(why) = set_apart.get(&row.id) {
            parked.push((i, why.clone()));
            first_apart.entry(aggregate).or_insert(row.id);
            continue;
        }
        if let Some(first) = first_apart.get(aggregate) {
            parked.push((i, behind(*first)));
            continue;
        }
        if blocked.contains(aggregate) {
            parked.push((i, BEHIND_PARKED.to_owned()));
            continue;
        }
        let Prepared { headers, traced } = prepared
            .get_mut(i)
            .and_then(Option::take)
            .unwrap_or_else(|| prepare(&row.headers));
        let sent = send(producer, &reports, row, headers);
        if let (Some(batch), Some(traced)) = (&batch, traced) {
            let error = sent.as_ref().err().map(|e| e.to_string());
            spans::event(
                batch,
                row,
                &traced.traceparent,
                traced.id,
                traced.kind,
                error.as_deref(),
            );
        }
        match sent {
            Ok(()) => {}
            Err(error) if classify(&error) == Failure::Refused => {
                parked.push((i, refusal(row.id, &error)));
                first_apart.insert(aggregate, row.id);
            }
            Err(error) => {
                return Handed {
                    page,
                    parked,
                    broken: Some(error),
                };
            }
        }
    }
    for aggregate in first_apart.keys() {
        blocked.insert((*aggregate).to_owned());
    }
    Handed {
        page,
        parked,
        broken: None,
    }
}

/// How a transaction ended.
#[derive(Debug)]
pub(super) enum Ended {
    Committed,
    /// Aborted (or left for the coordinator to abort): nothing of it counts.
    Failed {
        /// Rows Kafka refused at delivery: (row id, why).
        refused: Vec<(i64, String)>,
        /// Why, when the broker rather than a record was the cause.
        error: Option<String>,
        /// The producer cannot be used again (fenced by a newer leader, or its state lost).
        fatal: bool,
    },
}

/// Waits for every delivery report of the open transaction, then commits it (or aborts it
/// when a report failed).
pub(super) async fn finish(producer: Arc<TxProducer>, timeout: Duration) -> Ended {
    let started = Instant::now();
    if let Some(failed) = delivered(producer.clone(), timeout).await {
        return failed;
    }
    commit(producer, timeout, started).await
}

/// Waits until Kafka acknowledged every row of the open transaction (each row is then in
/// its partition's log, so whatever another producer sends next lands after it). `None`
/// when they all were; else the transaction is aborted and `Some` says why.
pub(super) async fn delivered(producer: Arc<TxProducer>, timeout: Duration) -> Option<Ended> {
    tokio::task::spawn_blocking(move || delivered_blocking(&producer, timeout))
        .await
        .unwrap_or_else(|error| {
            Some(Ended::Failed {
                refused: Vec::new(),
                error: Some(format!("the delivery's task failed: {error}")),
                fatal: true,
            })
        })
}

/// Commits a transaction whose rows were all [`delivered`] (`started`: when its end began,
/// for the metric).
pub(super) async fn commit(
    producer: Arc<TxProducer>,
    timeout: Duration,
    started: Instant,
) -> Ended {
    let ended = tokio::task::spawn_blocking(move || commit_blocking(&producer, timeout))
        .await
        .unwrap_or_else(|error| Ended::Failed {
            refused: Vec::new(),
            error: Some(format!("the commit's task failed: {error}")),
            fatal: true,
        });
    if matches!(ended, Ended::Committed) {
        metrics::histogram!(M_DELIVERY).record(started.elapsed().as_secs_f64());
    }
    ended
}

/// Abandons the open transaction (a leader that lost its lease, a send that broke it, or
/// shutting down without the time to commit): nothing of it counts, its rows are sent
/// again. Waits for the reports of what was sent first, so that rows Kafka refused for
/// themselves are known (a refusal is what breaks a transaction under load: librdkafka
/// then refuses every later send of it). `Failed` says whether the producer can go on.
pub(super) async fn abort(producer: Arc<TxProducer>, timeout: Duration) -> Ended {
    tokio::task::spawn_blocking(move || {
        let reports = producer.context().reports.clone();
        let failures = reports.wait(timeout).unwrap_or_default();
        let refused = refused_of(&failures);
        let aborted = producer.abort_transaction(timeout);
        Ended::Failed {
            refused,
            error: aborted.as_ref().err().map(|e| format!("abort failed: {e}")),
            // A transaction left half aborted takes the producer with it.
            fatal: aborted.is_err(),
        }
    })
    .await
    .unwrap_or_else(|error| Ended::Failed {
        refused: Vec::new(),
        error: Some(format!("the abort's task failed: {error}")),
        fatal: true,
    })
}

/// The rows Kafka refused for themselves among failed delivery reports: (row id, why).
fn refused_of(failures: &[(usize, KafkaError)]) -> Vec<(i64, String)> {
    failures
        .iter()
        .filter(|(_, error)| classify(error) == Failure::Refused)
        .map(|(id, error)| (*id as i64, refusal(*id as i64, error)))
        .collect()
}

fn delivered_blocking(producer: &TxProducer, timeout: Duration) -> Option<Ended> {
    let reports = producer.context().reports.clone();
    let Some(failures) = reports.wait(timeout) else {
        let _ = producer.abort_transaction(timeout);
        return Some(Ended::Failed {
            refused: Vec::new(),
            error: Some(format!("no delivery reports within {timeout:?}")),
            fatal: true,
        });
    };
    if failures.is_empty() {
        // rdkafka's commit flushes first, and its flush sleeps 100 ms whenever a report
        // is still on its way out of librdkafka: let them all out first.
        wait_until_flushed(producer, timeout);
        return None;
    }
    let aborted = producer.abort_transaction(timeout);
    let refused = refused_of(&failures);
    let error = refused
        .is_empty()
        .then(|| failures.first().map(|(_, e)| e.to_string()))
        .flatten();
    let fatal = failures.iter().any(|(_, e)| is_fatal(e)) || aborted.is_err();
    Some(Ended::Failed {
        refused,
        error,
        fatal,
    })
}

fn commit_blocking(producer: &TxProducer, timeout: Duration) -> Ended {
    match producer.commit_transaction(timeout) {
        Ok(()) => Ended::Committed,
        Err(error) => {
            let fatal = is_fatal(&error) || producer.abort_transaction(timeout).is_err();
            Ended::Failed {
                refused: Vec::new(),
                error: Some(format!("commit failed: {error}")),
                fatal,
            }
        }
    }
}

/// Waits (briefly spinning) until librdkafka holds no message of this transaction.
fn wait_until_flushed(producer: &TxProducer, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    let mut spins = 0u32;
    while producer.in_flight_count() > 0 && Instant::now() < deadline {
        spins += 1;
        if spins < 100 {
            std::thread::yield_now();
        } else {
            std::thread::sleep(Duration::from_micros(50));
        }
    }
}

fn refusal(id: i64, error: &KafkaError) -> String {
    format!("Kafka refused outbox row {id}: {error}")
}

/// A transaction error after which the producer cannot go on (fenced, or lost its state).
pub(super) fn is_fatal(error: &KafkaError) -> bool {
    match error {
        KafkaError::Transaction(error) => error.is_fatal(),
        other => matches!(
            other.rdkafka_error_code(),
            Some(RDKafkaErrorCode::Fatal | RDKafkaErrorCode::ProducerFenced)
        ),
    }
}

/// Hands one row to librdkafka (its delivery report, named by the row's id, is counted in
/// `reports`), waiting while librdkafka's queue is full.
fn send(
    producer: &TxProducer,
    reports: &Reports,
    row: &OutboxRow,
    headers: OwnedHeaders,
) -> Result<(), KafkaError> {
    let mut record = BaseRecord::with_opaque_to(&row.topic, row.id as usize)
        .key(row.aggregate_id.as_str())
        .payload(row.payload.as_slice())
        .headers(headers);
    loop {
        // Counted before the send: its report may come before `send` returns.
        reports.sent();
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((error, back)) => {
                reports.unsent();
                if let KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull) = error {
                    record = back;
                    std::thread::sleep(Duration::from_millis(1));
                    continue;
                }
                return Err(error);
            }
        }
    }
}

/// An outbox row's headers (its JSON object of text values, parsed without copying the
/// text) as Kafka headers; none when the JSON is not an object.
#[cfg(test)]
fn kafka_headers(json: &[u8]) -> OwnedHeaders {
    prepare(json).headers
}

/// A row made ready to send as its page is read: its Kafka headers and, while spans are
/// exported and its trace is sampled, what its span needs.
#[derive(Debug)]
pub(super) struct Prepared {
    headers: OwnedHeaders,
    traced: Option<Traced>,
}

/// A row's sampled trace context and its event's id and type.
#[derive(Debug)]
struct Traced {
    traceparent: String,
    id: Option<String>,
    kind: Option<String>,
}

/// Parses an outbox row's headers once, into its Kafka headers (none when the JSON is not
/// an object) and, while spans are exported, the sampled trace context it carries.
pub(super) fn prepare(json: &[u8]) -> Prepared {
    let list = serde_json::from_slice::<HeaderList<'_>>(json)
        .map(|list| list.0)
        .unwrap_or_default();
    let header = |name: &str| {
        list.iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_ref())
    };
    let traced = if platform::telemetry::exporting() {
        header(crate::envelope::H_TRACEPARENT)
            .filter(|traceparent| spans::sampled(traceparent))
            .map(|traceparent| Traced {
                traceparent: traceparent.to_owned(),
                id: header("ce_id").map(str::to_owned),
                kind: header("ce_type").map(str::to_owned),
            })
    } else {
        None
    };
    let headers = list.iter().fold(
        OwnedHeaders::new_with_capacity(list.len()),
        |acc, (key, value)| {
            acc.insert(Header {
                key,
                value: Some(value.as_bytes()),
            })
        },
    );
    Prepared { headers, traced }
}

/// The value of the header `name`, as text.
#[cfg(test)]
fn header_text(headers: &OwnedHeaders, name: &str) -> Option<String> {
    headers
        .iter()
        .find(|header| header.key == name)
        .and_then(|header| header.value)
        .map(|value| String::from_utf8_lossy(value).into_owned())
}

/// A JSON object's entries, its text values borrowed where they have no escapes; other
/// values as their JSON text.
#[derive(Debug, Default)]
struct HeaderList<'a>(Vec<(Cow<'a, str>, Cow<'a, str>)>);

impl<'de> Deserialize<'de> for HeaderList<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Entries;
        impl<'de> Visitor<'de> for Entries {
            type Value = HeaderList<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object of headers")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut entries = Vec::with_capacity(map.size_hint().unwrap_or(8));
                while let Some((key, value)) = map.next_entry::<Text<'de>, Text<'de>>()? {
                    entries.push((key.0, value.0));
                }
                Ok(HeaderList(entries))
            }
        }
        deserializer.deserialize_map(Entries)
    }
}

struct Text<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Text<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Any;
        impl<'de> Visitor<'de> for Any {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a header value")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(v)))
            }
            fn visit_bool<E>(self, v: bool) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(v.to_string())))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(v.to_string())))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(v.to_string())))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(v.to_string())))
            }
            fn visit_unit<E>(self) -> Result<Self::Value, E> {
                Ok(Text(Cow::Borrowed("null")))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                let value = serde_json::Value::deserialize(
                    serde::de::value::MapAccessDeserializer::new(map),
                )?;
                Ok(Text(Cow::Owned(value.to_string())))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                seq: A,
            ) -> Result<Self::Value, A::Error> {
                let value = serde_json::Value::deserialize(
                    serde::de::value::SeqAccessDeserializer::new(seq),
                )?;
                Ok(Text(Cow::Owned(value.to_string())))
            }
        }
        deserializer.deserialize_any(Any)
    }
}

/// The spans of a page, when spans are exported: the page's `publish` span, and one per
/// event whose outbox row carries a sampled trace context (the request that wrote it
/// was traced), a child of that context, linked to the page's span and it to them
/// (OpenTelemetry's messaging conventions for batches). A row without a sampled context
/// gets no span of its own: under a parent-based sampler it would not be exported
/// anyway, and making it costs as much as publishing the row.
mod spans {
    use crate::relay::OutboxRow;

    pub(super) fn batch(rows: &[OutboxRow]) -> Option<tracing::Span> {
        if !platform::telemetry::exporting() {
            return None;
        }
        let topic = rows.first().map(|r| r.topic.as_str()).unwrap_or_default();
        Some(tracing::info_span!(
            parent: None,
            "outbox.batch",
            otel.name = format!("publish {topic} (batch)"),
            otel.kind = "producer",
            messaging.system = "kafka",
            messaging.destination.name = topic,
            messaging.operation.type = "send",
            messaging.batch.message_count = rows.len(),
        ))
    }

    /// Whether a W3C `traceparent` says its trace is sampled.
    pub(super) fn sampled(traceparent: &str) -> bool {
        platform::telemetry::remote_context(traceparent).is_some_and(|c| c.is_sampled())
    }

    /// The span of one event, handed to the producer now.
    pub(super) fn event(
        batch: &tracing::Span,
        row: &OutboxRow,
        traceparent: &str,
        id: Option<String>,
        kind: Option<String>,
        error: Option<&str>,
    ) {
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
            messaging.message.id = id.as_deref().unwrap_or_default(),
            cloudevents.event_id = id.as_deref().unwrap_or_default(),
            cloudevents.event_type = kind.as_deref().unwrap_or_default(),
            outbox.id = row.id,
            error.type = tracing::field::Empty,
        );
        platform::telemetry::continue_from(&span, Some(traceparent));
        platform::telemetry::link(&span, platform::telemetry::traceparent_of(batch).as_deref());
        platform::telemetry::link(batch, platform::telemetry::traceparent_of(&span).as_deref());
        if let Some(error) = error {
            span.record("otel.status_code", "ERROR");
            span.record("error.type", error);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_come_from_the_rows_json_text_whatever_the_values() {
        let headers =
            kafka_headers(br#"{"ce_id": "a\"b", "ce_type": "UserRegistered", "n": 7, "x": null}"#);
        let pairs: Vec<(String, Vec<u8>)> = headers
            .iter()
            .map(|h| (h.key.to_owned(), h.value.unwrap_or_default().to_vec()))
            .collect();
        assert_eq!(
            pairs,
            [
                ("ce_id".to_owned(), b"a\"b".to_vec()),
                ("ce_type".to_owned(), b"UserRegistered".to_vec()),
                ("n".to_owned(), b"7".to_vec()),
                ("x".to_owned(), b"null".to_vec()),
            ]
        );
        assert_eq!(kafka_headers(b"not json").count(), 0);
        assert_eq!(header_text(&headers, "ce_id").as_deref(), Some("a\"b"));
        assert_eq!(header_text(&headers, "absent"), None);
    }

    #[test]
    fn only_a_sampled_trace_context_gets_a_span_of_its_own() {
        assert!(spans::sampled(
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        ));
        assert!(!spans::sampled(
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"
        ));
        assert!(!spans::sampled("garbage"));
    }
}
