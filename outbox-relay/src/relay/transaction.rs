//! One page in one Kafka transaction: every row handed to librdkafka, every delivery
//! report awaited, then the commit. A row Kafka refuses for itself is set apart (with the
//! page's later rows of its aggregate) and the transaction is tried again without them; a
//! broker that is away aborts it whole.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, Producer as _};
use rdkafka::types::RDKafkaErrorCode;
use serde::de::{Deserializer, MapAccess, Visitor};
use serde::Deserialize;

use super::producer::{classify, Failure, Reports, TxProducer};
use super::{Page, Sent, M_DELIVERY};

pub(super) enum Transacted {
    Committed(Sent),
    /// Nothing was committed. `fatal`: the producer cannot be used again (fenced by a
    /// newer leader, or its state is lost).
    Failed {
        error: String,
        fatal: bool,
    },
}

/// Why a row waits behind another.
fn behind(id: i64) -> String {
    format!("waiting behind outbox row {id} of the same aggregate")
}

const BEHIND_PARKED: &str = "waiting behind a parked row of the same aggregate";

/// Produces `page` in one transaction of `producer` (rows of `blocked` aggregates are set
/// apart unsent) and waits for the commit, at most `timeout` per step.
pub(super) async fn transact(
    producer: Arc<TxProducer>,
    page: Page,
    blocked: HashSet<String>,
    timeout: Duration,
) -> Transacted {
    let spans = spans::publish(&page.rows);
    let started = Instant::now();
    let done =
        tokio::task::spawn_blocking(move || transact_blocking(&producer, page, &blocked, timeout))
            .await
            .unwrap_or_else(|error| Transacted::Failed {
                error: format!("the transaction's task failed: {error}"),
                fatal: true,
            });
    match &done {
        Transacted::Committed(sent) => {
            metrics::histogram!(M_DELIVERY).record(started.elapsed().as_secs_f64());
            if let Some(spans) = &spans {
                spans.settled(&sent.parked, None);
            }
        }
        Transacted::Failed { error, .. } => {
            if let Some(spans) = &spans {
                spans.settled(&[], Some(error));
            }
        }
    }
    done
}

fn transact_blocking(
    producer: &TxProducer,
    page: Page,
    blocked: &HashSet<String>,
    timeout: Duration,
) -> Transacted {
    let reports = producer.context().reports.clone();
    // Rows set apart, by index: those of aggregates already parked, and those Kafka refuses
    // (found by the attempts below) with their aggregates' later rows.
    let mut parked: BTreeMap<usize, String> = page
        .rows
        .iter()
        .enumerate()
        .filter(|(_, row)| blocked.contains(&row.aggregate_id))
        .map(|(i, _)| (i, BEHIND_PARKED.to_owned()))
        .collect();
    let mut refused_at: HashMap<&str, usize> = HashMap::new();
    loop {
        if let Err(error) = producer.begin_transaction() {
            return failed(&error);
        }
        reports.reset();
        let mut broken = None;
        for (i, row) in page.rows.iter().enumerate() {
            if parked.contains_key(&i) {
                continue;
            }
            if let Some(&at) = refused_at.get(row.aggregate_id.as_str()) {
                if at < i {
                    parked.insert(i, behind(page.rows[at].id));
                    continue;
                }
            }
            match send(producer, &reports, row, i) {
                Ok(()) => {}
                Err(error) if classify(&error) == Failure::Refused => {
                    parked.insert(i, refusal(row, &error));
                    refused_at.entry(row.aggregate_id.as_str()).or_insert(i);
                }
                Err(error) => {
                    broken = Some(error);
                    break;
                }
            }
        }
        let Some(failures) = reports.wait(timeout) else {
            let _ = producer.abort_transaction(timeout);
            return Transacted::Failed {
                error: format!("no delivery reports within {timeout:?}"),
                fatal: true,
            };
        };
        if broken.is_none() && failures.is_empty() {
            // rdkafka's commit flushes first, and its flush sleeps 100 ms whenever a
            // report is still on its way out of librdkafka: let them all out first.
            wait_until_flushed(producer, timeout);
            return match producer.commit_transaction(timeout) {
                Ok(()) => Transacted::Committed(Sent {
                    page,
                    parked: parked.into_iter().collect(),
                }),
                Err(error) => {
                    let fatal = is_fatal(&error) || producer.abort_transaction(timeout).is_err();
                    Transacted::Failed {
                        error: format!("commit failed: {error}"),
                        fatal,
                    }
                }
            };
        }
        let aborted = producer.abort_transaction(timeout);
        let refused: Vec<&(usize, KafkaError)> = failures
            .iter()
            .filter(|(_, error)| classify(error) == Failure::Refused)
            .collect();
        if let Some(error) = broken.as_ref().or_else(|| {
            refused
                .is_empty()
                .then(|| failures.first().map(|(_, e)| e))
                .flatten()
        }) {
            return Transacted::Failed {
                error: error.to_string(),
                fatal: is_fatal(error) || aborted.is_err(),
            };
        }
        if let Err(error) = aborted {
            return failed(&error);
        }
        // Kafka refused some rows at delivery: try again without them (and without the
        // later rows of their aggregates).
        for (i, error) in refused {
            let row = &page.rows[*i];
            parked.insert(*i, refusal(row, error));
            let at = refused_at.entry(row.aggregate_id.as_str()).or_insert(*i);
            *at = (*at).min(*i);
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

fn failed(error: &KafkaError) -> Transacted {
    Transacted::Failed {
        error: error.to_string(),
        fatal: is_fatal(error),
    }
}

fn refusal(row: &super::OutboxRow, error: &KafkaError) -> String {
    format!("Kafka refused outbox row {}: {error}", row.id)
}

/// A transaction error after which the producer cannot go on (fenced, or lost its state).
fn is_fatal(error: &KafkaError) -> bool {
    match error {
        KafkaError::Transaction(error) => error.is_fatal(),
        other => matches!(
            other.rdkafka_error_code(),
            Some(RDKafkaErrorCode::Fatal | RDKafkaErrorCode::ProducerFenced)
        ),
    }
}

/// Hands one row to librdkafka (its delivery report is counted in `reports`), waiting
/// while librdkafka's queue is full.
fn send(
    producer: &TxProducer,
    reports: &Reports,
    row: &super::OutboxRow,
    index: usize,
) -> Result<(), KafkaError> {
    let headers = kafka_headers(&row.headers);
    let mut record = BaseRecord::with_opaque_to(&row.topic, index)
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

/// The row's headers (a JSON object of text values) as Kafka headers, parsed without
/// copying the text.
fn kafka_headers(json: &[u8]) -> OwnedHeaders {
    let headers = serde_json::from_slice::<HeaderList<'_>>(json)
        .map(|list| list.0)
        .unwrap_or_default();
    headers.iter().fold(
        OwnedHeaders::new_with_capacity(headers.len()),
        |acc, (key, value)| {
            acc.insert(Header {
                key,
                value: Some(value.as_bytes()),
            })
        },
    )
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

/// The row's headers as text pairs (the spans read a few of them).
fn header_pairs(json: &[u8]) -> Vec<(String, String)> {
    serde_json::from_slice::<HeaderList<'_>>(json)
        .map(|list| {
            list.0
                .into_iter()
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect()
        })
        .unwrap_or_default()
}

/// The spans of a page, when spans are exported: one `publish` span per event, a child of
/// the context its outbox row stored (the request that wrote it), linked to the page's
/// span, which is linked to each of them (OpenTelemetry's messaging conventions for
/// batches).
mod spans {
    use super::super::OutboxRow;
    use super::header_pairs;
    use crate::envelope::H_TRACEPARENT;

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
                let headers = header_pairs(&row.headers);
                let header = |name: &str| {
                    headers
                        .iter()
                        .find(|(k, _)| k == name)
                        .map(|(_, v)| v.clone())
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
        /// Kafka's answer: the spans of parked rows (or all, when the transaction failed)
        /// end as errors.
        pub(super) fn settled(&self, parked: &[(usize, String)], failed: Option<&String>) {
            let mark = |span: &tracing::Span, error: &str| {
                span.record("otel.status_code", "ERROR");
                span.record("error.type", error);
            };
            match failed {
                Some(error) => self.events.iter().for_each(|span| mark(span, error)),
                None => {
                    for (i, why) in parked {
                        if let Some(span) = self.events.get(*i) {
                            mark(span, why);
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::message::Headers;

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
    }
}
