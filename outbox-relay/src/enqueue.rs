//! Writing an event into the outbox inside the caller's transaction.

use chrono::Utc;
use deadpool_postgres::GenericClient;
use uuid::Uuid;

use crate::envelope::Attributes;

/// An event to publish, as its writer describes it.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub aggregate_type: String,
    /// The Kafka key: events of one aggregate stay in order on one partition.
    pub aggregate_id: String,
    pub event_type: String,
    pub topic: String,
    /// CloudEvents `source`, e.g. `/user-service`.
    pub source: String,
    pub data: serde_json::Value,
    /// The W3C trace context of the request that caused the event, if any.
    pub traceparent: Option<String>,
    /// The user's version after the event (`ce_userversion`), for user events.
    pub user_version: Option<i64>,
}

const INSERT: &str = "INSERT INTO users.outbox \
    (event_id, aggregate_type, aggregate_id, event_type, topic, payload, headers, created_at) \
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8)";

/// Adds `event` to the outbox in the caller's transaction and returns its event id
/// (UUIDv7, so ids sort by creation time). The event exists if and only if the caller
/// commits: that is the whole point of the outbox.
#[tracing::instrument(skip_all, fields(event_type = %event.event_type, aggregate_id = %event.aggregate_id), err)]
pub async fn enqueue<C: GenericClient + Sync>(
    tx: &C,
    event: &NewEvent,
) -> Result<Uuid, tokio_postgres::Error> {
    let now = Utc::now();
    let attributes = Attributes {
        id: Uuid::now_v7(),
        source: event.source.clone(),
        event_type: event.event_type.clone(),
        time: now,
        subject: Some(event.aggregate_id.clone()),
        traceparent: event.traceparent.clone(),
        user_version: event.user_version,
    };
    let statement = tx.prepare_cached(INSERT).await?;
    tx.execute(
        &statement,
        &[
            &attributes.id,
            &event.aggregate_type,
            &event.aggregate_id,
            &event.event_type,
            &event.topic,
            &event.data,
            &attributes.to_headers_json(),
            &now,
        ],
    )
    .await?;
    Ok(attributes.id)
}
