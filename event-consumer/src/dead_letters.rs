//! Working the dead-letter topic: list and show what is there, and redrive dead letters
//! (the original key, value and headers, without the failure's headers and with a redrive
//! count) back onto the consumed topic once their cause is fixed.
//!
//! A dead letter is named by where it sits on the DLQ topic, `PARTITION-OFFSET`. Redriven
//! ones are recorded in `consumer.dlq_redrives` in the transaction that claims them, so a
//! second redrive (or two at once) skips them; the claim commits only after Kafka
//! acknowledged the record. A crash between the two can send a record twice, which the
//! consumer's inbox turns into a counted duplicate.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use outbox_relay::kafka::owned_headers;
use platform::kafka::{client_config, KafkaConfig, KafkaContext};
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::error::KafkaError;
use rdkafka::message::{Headers as _, Message as _};
use rdkafka::producer::FutureRecord;
use rdkafka::{Offset, Timestamp, TopicPartitionList};

pub use platform::wire::{
    DeadLetter, DeadLetterDetail, DeadLetterFilter as Filter, RedriveFailure, RedriveReport,
    RedriveRequest as Selection,
};

use crate::dlq;

/// The header a redriven record carries: how many times it has been redriven.
pub const H_REDRIVE_COUNT: &str = "redrive_count";

/// The headers the DLQ adds, which a redrive leaves out.
const FAILURE_HEADERS: [&str; 6] = [
    dlq::H_ERROR,
    dlq::H_FAILED_AT,
    dlq::H_ORIGINAL_TOPIC,
    dlq::H_ORIGINAL_PARTITION,
    dlq::H_ORIGINAL_OFFSET,
    H_REDRIVE_COUNT,
];

/// How long a broker call (metadata, watermarks, a poll) may take before the tool gives up.
const BROKER_TIMEOUT: Duration = Duration::from_secs(10);
/// The most dead letters one `list` answers.
pub const MAX_LIMIT: usize = 1000;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kafka: {0}")]
    Kafka(#[from] KafkaError),
    #[error("the DLQ topic {0} does not exist")]
    NoTopic(String),
    #[error("the DLQ topic could not be read to its end within {0:?}")]
    Timeout(Duration),
    #[error("database: {0}")]
    Database(#[from] tokio_postgres::Error),
    #[error("database pool: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
    #[error("{0}")]
    Invalid(String),
}

/// Where a dead letter sits on the DLQ topic, written `PARTITION-OFFSET`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LetterId {
    pub partition: i32,
    pub offset: i64,
}

impl fmt::Display for LetterId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.partition, self.offset)
    }
}

impl FromStr for LetterId {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self, Error> {
        let invalid = || {
            Error::Invalid(format!(
                "dead letter id {text:?} is not PARTITION-OFFSET (for example 0-42)"
            ))
        };
        let (partition, offset) = text.trim().split_once('-').ok_or_else(invalid)?;
        let partition: i32 = partition.parse().map_err(|_| invalid())?;
        let offset: i64 = offset.parse().map_err(|_| invalid())?;
        if partition < 0 || offset < 0 {
            return Err(invalid());
        }
        Ok(Self { partition, offset })
    }
}

/// A dead letter as read, with the bytes a redrive sends again.
#[derive(Debug, Clone)]
struct Raw {
    id: LetterId,
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    headers: Vec<(String, Vec<u8>)>,
    timestamp: Option<i64>,
}

impl Raw {
    fn header(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
    }

    fn failed_at(&self) -> Option<DateTime<Utc>> {
        self.header(dlq::H_FAILED_AT)
            .and_then(|t| DateTime::parse_from_rfc3339(&t).ok())
            .map(|t| t.with_timezone(&Utc))
            .or_else(|| self.timestamp.and_then(DateTime::from_timestamp_millis))
    }

    fn redrive_count(&self) -> u32 {
        self.header(H_REDRIVE_COUNT)
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    }

    fn letter(&self, redriven_at: Option<DateTime<Utc>>) -> DeadLetter {
        DeadLetter {
            id: self.id.to_string(),
            event_id: self.header("ce_id"),
            event_type: self.header("ce_type"),
            key: self
                .key
                .as_deref()
                .map(|k| String::from_utf8_lossy(k).into_owned()),
            error: self.header(dlq::H_ERROR),
            failed_at: self.header(dlq::H_FAILED_AT),
            original_topic: self.header(dlq::H_ORIGINAL_TOPIC),
            original_partition: self
                .header(dlq::H_ORIGINAL_PARTITION)
                .and_then(|p| p.parse().ok()),
            original_offset: self
                .header(dlq::H_ORIGINAL_OFFSET)
                .and_then(|o| o.parse().ok()),
            redrive_count: self.redrive_count(),
            redriven_at,
        }
    }

    fn detail(&self, redriven_at: Option<DateTime<Utc>>) -> DeadLetterDetail {
        DeadLetterDetail {
            letter: self.letter(redriven_at),
            headers: self
                .headers
                .iter()
                .map(|(k, v)| (k.clone(), String::from_utf8_lossy(v).into_owned()))
                .collect(),
            value: self
                .value
                .as_deref()
                .map(|v| String::from_utf8_lossy(v).into_owned()),
        }
    }

    /// The headers a redrive sends: the original ones and the new redrive count.
    fn redrive_headers(&self) -> Vec<(String, Vec<u8>)> {
        let mut headers: Vec<_> = self
            .headers
            .iter()
            .filter(|(k, _)| !FAILURE_HEADERS.contains(&k.as_str()))
            .cloned()
            .collect();
        headers.push((
            H_REDRIVE_COUNT.to_owned(),
            (self.redrive_count() + 1).to_string().into_bytes(),
        ));
        headers
    }
}

/// Whether `raw` is one of those `filter` selects.
fn matches(filter: &Filter, raw: &Raw) -> bool {
    filter
        .since
        .is_none_or(|since| raw.failed_at().is_some_and(|at| at >= since))
        && filter
            .event_type
            .as_deref()
            .is_none_or(|t| raw.header("ce_type").as_deref() == Some(t))
}

/// The dead-letter tool: the DLQ topic it reads and the topic it redrives to.
#[derive(Debug, Clone)]
pub struct DeadLetters {
    kafka: KafkaConfig,
    pool: Pool,
    dlq_topic: String,
    target_topic: String,
}

impl DeadLetters {
    pub fn new(kafka: KafkaConfig, pool: Pool, dlq_topic: &str, target_topic: &str) -> Self {
        Self {
            kafka,
            pool,
            dlq_topic: dlq_topic.to_owned(),
            target_topic: target_topic.to_owned(),
        }
    }

    /// Up to `limit` dead letters matching `filter`, oldest first.
    pub async fn list(&self, filter: &Filter, limit: usize) -> Result<Vec<DeadLetter>, Error> {
        let limit = limit.clamp(1, MAX_LIMIT);
        let raws = self.scan(filter.clone(), Some(limit)).await?;
        let redriven = self.redriven(raws.iter().map(|r| r.id)).await?;
        Ok(raws
            .iter()
            .map(|raw| raw.letter(redriven.get(&raw.id).copied()))
            .collect())
    }

    /// One dead letter with its headers and value; `None` when there is none at `id`.
    pub async fn show(&self, id: LetterId) -> Result<Option<DeadLetterDetail>, Error> {
        let Some(raw) = self.read_one(id).await? else {
            return Ok(None);
        };
        let redriven = self.redriven([raw.id]).await?;
        Ok(Some(raw.detail(redriven.get(&raw.id).copied())))
    }

    /// Redrives the selected dead letters that were not redriven before.
    pub async fn redrive(&self, selection: &Selection) -> Result<RedriveReport, Error> {
        let raws = self.select(selection).await?;
        let mut client = self.pool.get().await?;
        let transaction = client.transaction().await?;
        let ids: Vec<LetterId> = raws.iter().map(|r| r.id).collect();
        let partitions: Vec<i32> = ids.iter().map(|id| id.partition).collect();
        let offsets: Vec<i64> = ids.iter().map(|id| id.offset).collect();
        let event_ids: Vec<Option<uuid::Uuid>> = raws
            .iter()
            .map(|r| r.header("ce_id").and_then(|id| id.parse().ok()))
            .collect();
        // Claims what no earlier redrive took; a concurrent redrive waits on these rows
        // and then finds them taken.
        let claimed: HashMap<LetterId, DateTime<Utc>> = transaction
            .query(
                "INSERT INTO consumer.dlq_redrives \
                 (dlq_topic, dlq_partition, dlq_offset, event_id, redriven_to) \
                 SELECT $1, p, o, e, $5 FROM unnest($2::int[], $3::bigint[], $4::uuid[]) AS t(p, o, e) \
                 ON CONFLICT DO NOTHING RETURNING dlq_partition, dlq_offset, redriven_at",
                &[&self.dlq_topic, &partitions, &offsets, &event_ids, &self.target_topic],
            )
            .await?
            .iter()
            .map(|row| {
                let id = LetterId {
                    partition: row.get(0),
                    offset: row.get(1),
                };
                (id, row.get(2))
            })
            .collect();
        let (to_send, before): (Vec<&Raw>, Vec<&Raw>) =
            raws.iter().partition(|r| claimed.contains_key(&r.id));
        let already_redriven = before.iter().map(|r| r.id.to_string()).collect();
        if selection.dry_run {
            transaction.rollback().await?;
            return Ok(RedriveReport {
                dry_run: true,
                redriven: to_send.iter().map(|r| r.letter(None)).collect(),
                already_redriven,
                failed: Vec::new(),
            });
        }
        let producer = dlq::producer(&self.kafka, KafkaContext::default())?;
        let sends = to_send.iter().map(|raw| {
            let producer = &producer;
            async move {
                let headers = owned_headers(&raw.redrive_headers());
                let mut record: FutureRecord<'_, [u8], [u8]> =
                    FutureRecord::to(&self.target_topic).headers(headers);
                if let Some(key) = &raw.key {
                    record = record.key(key.as_slice());
                }
                if let Some(value) = &raw.value {
                    record = record.payload(value.as_slice());
                }
                producer
                    .send(record, Duration::ZERO)
                    .await
                    .map(|_| ())
                    .map_err(|(error, _)| error)
            }
        });
        let results = futures::future::join_all(sends).await;
        let mut redriven = Vec::new();
        let mut failed = Vec::new();
        for (raw, result) in to_send.iter().zip(results) {
            match result {
                Ok(()) => redriven.push(raw.letter(claimed.get(&raw.id).copied())),
                Err(error) => failed.push(RedriveFailure {
                    id: raw.id.to_string(),
                    error: error.to_string(),
                }),
            }
        }
        if !failed.is_empty() {
            let ids: Vec<LetterId> = failed.iter().filter_map(|f| f.id.parse().ok()).collect();
            let partitions: Vec<i32> = ids.iter().map(|id| id.partition).collect();
            let offsets: Vec<i64> = ids.iter().map(|id| id.offset).collect();
            transaction
                .execute(
                    "DELETE FROM consumer.dlq_redrives WHERE dlq_topic = $1 \
                     AND (dlq_partition, dlq_offset) IN \
                     (SELECT * FROM unnest($2::int[], $3::bigint[]))",
                    &[&self.dlq_topic, &partitions, &offsets],
                )
                .await?;
        }
        transaction.commit().await?;
        for letter in &redriven {
            tracing::info!(
                dead_letter = %letter.id,
                event_id = letter.event_id.as_deref().unwrap_or(""),
                topic = %self.target_topic,
                "dead letter redriven"
            );
        }
        Ok(RedriveReport {
            dry_run: false,
            redriven,
            already_redriven,
            failed,
        })
    }

    async fn select(&self, selection: &Selection) -> Result<Vec<Raw>, Error> {
        let filtered = selection.filter.since.is_some() || selection.filter.event_type.is_some();
        if !selection.all && selection.ids.is_empty() && !filtered {
            return Err(Error::Invalid(
                "say which dead letters to redrive: all, ids, since or event_type".into(),
            ));
        }
        if selection.ids.is_empty() {
            return self.scan(selection.filter.clone(), None).await;
        }
        let ids = selection
            .ids
            .iter()
            .map(|id| id.parse::<LetterId>())
            .collect::<Result<Vec<_>, _>>()?;
        let mut raws = Vec::new();
        for id in ids {
            let raw = self
                .read_one(id)
                .await?
                .ok_or_else(|| Error::Invalid(format!("there is no dead letter {id}")))?;
            if matches(&selection.filter, &raw) {
                raws.push(raw);
            }
        }
        Ok(raws)
    }

    /// When each of `ids` was redriven, for those that were.
    async fn redriven(
        &self,
        ids: impl IntoIterator<Item = LetterId>,
    ) -> Result<HashMap<LetterId, DateTime<Utc>>, Error> {
        let ids: Vec<LetterId> = ids.into_iter().collect();
        if ids.is_empty() {
            return Ok(HashMap::new());
        }
        let partitions: Vec<i32> = ids.iter().map(|id| id.partition).collect();
        let offsets: Vec<i64> = ids.iter().map(|id| id.offset).collect();
        let client = self.pool.get().await?;
        let rows = client
            .query(
                "SELECT dlq_partition, dlq_offset, redriven_at FROM consumer.dlq_redrives \
                 WHERE dlq_topic = $1 AND (dlq_partition, dlq_offset) IN \
                 (SELECT * FROM unnest($2::int[], $3::bigint[]))",
                &[&self.dlq_topic, &partitions, &offsets],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|row| {
                (
                    LetterId {
                        partition: row.get(0),
                        offset: row.get(1),
                    },
                    row.get(2),
                )
            })
            .collect())
    }

    fn reader(&self) -> Result<BaseConsumer<KafkaContext>, KafkaError> {
        client_config(&self.kafka)
            .set("group.id", "event-consumer-dlq-tool")
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .create_with_context(KafkaContext::default())
    }

    /// The dead letters matching `filter`, from the start of the topic (or `since`) to its
    /// end as it was when the scan began, oldest first per partition; stops at `limit`.
    async fn scan(&self, filter: Filter, limit: Option<usize>) -> Result<Vec<Raw>, Error> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.scan_blocking(&filter, limit))
            .await
            .map_err(|e| Error::Invalid(format!("the DLQ scan failed: {e}")))?
    }

    fn scan_blocking(&self, filter: &Filter, limit: Option<usize>) -> Result<Vec<Raw>, Error> {
        let reader = self.reader()?;
        let metadata = reader.fetch_metadata(Some(&self.dlq_topic), BROKER_TIMEOUT)?;
        let partitions: Vec<i32> = metadata
            .topics()
            .iter()
            .filter(|t| t.name() == self.dlq_topic && t.error().is_none())
            .flat_map(|t| t.partitions().iter().map(|p| p.id()))
            .collect();
        if partitions.is_empty() {
            return Err(Error::NoTopic(self.dlq_topic.clone()));
        }
        // Where to start: the first record at or after `since` (Kafka's own time index),
        // else the oldest one kept.
        let mut starts = TopicPartitionList::new();
        for &partition in &partitions {
            let offset = match filter.since {
                Some(since) => Offset::Offset(since.timestamp_millis()),
                None => Offset::Beginning,
            };
            starts.add_partition_offset(&self.dlq_topic, partition, offset)?;
        }
        if filter.since.is_some() {
            starts = reader.offsets_for_times(starts, BROKER_TIMEOUT)?;
        }
        let mut ends = HashMap::new();
        let mut assignment = TopicPartitionList::new();
        for element in starts.elements() {
            let partition = element.partition();
            let (low, high) =
                reader.fetch_watermarks(&self.dlq_topic, partition, BROKER_TIMEOUT)?;
            let start = match element.offset() {
                Offset::Offset(offset) => offset.max(low),
                Offset::End => high,
                _ => low,
            };
            if start < high {
                ends.insert(partition, high);
                assignment.add_partition_offset(
                    &self.dlq_topic,
                    partition,
                    Offset::Offset(start),
                )?;
            }
        }
        if ends.is_empty() {
            return Ok(Vec::new());
        }
        reader.assign(&assignment)?;
        let mut found = Vec::new();
        let mut deadline = Instant::now() + BROKER_TIMEOUT;
        while !ends.is_empty() {
            if Instant::now() > deadline {
                return Err(Error::Timeout(BROKER_TIMEOUT));
            }
            let Some(message) = reader.poll(Duration::from_millis(200)) else {
                continue;
            };
            let message = message?;
            deadline = Instant::now() + BROKER_TIMEOUT;
            let partition = message.partition();
            let Some(&end) = ends.get(&partition) else {
                continue;
            };
            if message.offset() + 1 >= end {
                ends.remove(&partition);
                let mut rest = TopicPartitionList::new();
                rest.add_partition(&self.dlq_topic, partition);
                let _ = reader.incremental_unassign(&rest);
            }
            if message.offset() >= end {
                continue;
            }
            let raw = raw(&message);
            if matches(filter, &raw) {
                found.push(raw);
                if limit.is_some_and(|limit| found.len() >= limit) {
                    break;
                }
            }
        }
        found.sort_by_key(|r| (r.failed_at(), r.id));
        Ok(found)
    }

    async fn read_one(&self, id: LetterId) -> Result<Option<Raw>, Error> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.read_one_blocking(id))
            .await
            .map_err(|e| Error::Invalid(format!("the DLQ read failed: {e}")))?
    }

    fn read_one_blocking(&self, id: LetterId) -> Result<Option<Raw>, Error> {
        let reader = self.reader()?;
        let (low, high) =
            match reader.fetch_watermarks(&self.dlq_topic, id.partition, BROKER_TIMEOUT) {
                Ok(marks) => marks,
                Err(KafkaError::MetadataFetch(_)) => return Ok(None),
                Err(error) => return Err(error.into()),
            };
        if id.offset < low || id.offset >= high {
            return Ok(None);
        }
        let mut assignment = TopicPartitionList::new();
        assignment.add_partition_offset(
            &self.dlq_topic,
            id.partition,
            Offset::Offset(id.offset),
        )?;
        reader.assign(&assignment)?;
        let deadline = Instant::now() + BROKER_TIMEOUT;
        while Instant::now() < deadline {
            let Some(message) = reader.poll(Duration::from_millis(200)) else {
                continue;
            };
            let message = message?;
            // A compacted or transactional gap: the offset holds no record.
            if message.offset() != id.offset {
                return Ok(None);
            }
            return Ok(Some(raw(&message)));
        }
        Err(Error::Timeout(BROKER_TIMEOUT))
    }
}

fn raw(message: &rdkafka::message::BorrowedMessage<'_>) -> Raw {
    let headers = message
        .headers()
        .map(|headers| {
            headers
                .iter()
                .map(|h| (h.key.to_owned(), h.value.unwrap_or_default().to_vec()))
                .collect()
        })
        .unwrap_or_default();
    let timestamp = match message.timestamp() {
        Timestamp::CreateTime(t) | Timestamp::LogAppendTime(t) => Some(t),
        Timestamp::NotAvailable => None,
    };
    Raw {
        id: LetterId {
            partition: message.partition(),
            offset: message.offset(),
        },
        key: message.key().map(<[u8]>::to_vec),
        value: message.payload().map(<[u8]>::to_vec),
        headers,
        timestamp,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_letter_id_is_partition_dash_offset() {
        let id: LetterId = "2-41".parse().unwrap();
        assert_eq!(
            id,
            LetterId {
                partition: 2,
                offset: 41
            }
        );
        assert_eq!(id.to_string(), "2-41");
        for bad in ["", "2", "2-", "-1-3", "a-b", "1-2-3", "1--2"] {
            let error = bad.parse::<LetterId>().unwrap_err().to_string();
            assert!(error.contains("PARTITION-OFFSET"), "{bad}: {error}");
        }
    }

    #[test]
    fn a_redrive_drops_the_failure_headers_and_counts_itself() {
        let raw = Raw {
            id: LetterId {
                partition: 0,
                offset: 7,
            },
            key: Some(b"user".to_vec()),
            value: Some(b"{}".to_vec()),
            headers: [
                ("ce_id", "e1"),
                ("ce_type", "UserRegistered"),
                (H_REDRIVE_COUNT, "1"),
                (dlq::H_ERROR, "bad"),
                (dlq::H_FAILED_AT, "2026-12-01T00:00:00.000Z"),
                (dlq::H_ORIGINAL_TOPIC, "user-events"),
                (dlq::H_ORIGINAL_PARTITION, "1"),
                (dlq::H_ORIGINAL_OFFSET, "9"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.as_bytes().to_vec()))
            .collect(),
            timestamp: None,
        };
        let sent: Vec<(String, String)> = raw
            .redrive_headers()
            .into_iter()
            .map(|(k, v)| (k, String::from_utf8(v).unwrap()))
            .collect();
        let expected = [
            ("ce_id", "e1"),
            ("ce_type", "UserRegistered"),
            (H_REDRIVE_COUNT, "2"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned()));
        assert_eq!(sent, expected);
        let letter = raw.letter(None);
        assert_eq!(letter.redrive_count, 1);
        assert_eq!(letter.original_partition, Some(1));
        assert_eq!(letter.error.as_deref(), Some("bad"));
    }
}
