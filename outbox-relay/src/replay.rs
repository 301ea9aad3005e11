//! Replay: re-queue published outbox rows so the relay publishes them again, in their
//! original order (by id). Used by `outbox-relay replay` and the user service's admin API.

use chrono::{DateTime, Utc};
use tokio_postgres::GenericClient;

/// Which published rows to replay. Times compare with the row's `created_at`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplayFilter {
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    pub event_type: Option<String>,
    pub aggregate_id: Option<String>,
    /// Replay everything retained; required when no other filter is given.
    pub all: bool,
}

impl ReplayFilter {
    pub fn is_unfiltered(&self) -> bool {
        self.since.is_none()
            && self.until.is_none()
            && self.event_type.is_none()
            && self.aggregate_id.is_none()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error(
        "a replay needs at least one filter (since, until, event type, aggregate id) or `all`"
    )]
    NoFilter,
    #[error("`since` is after `until`")]
    EmptyWindow,
    #[error(transparent)]
    Database(#[from] tokio_postgres::Error),
}

const WHERE: &str = "published_at IS NOT NULL \
    AND ($1::timestamptz IS NULL OR created_at >= $1) \
    AND ($2::timestamptz IS NULL OR created_at < $2) \
    AND ($3::text IS NULL OR event_type = $3) \
    AND ($4::text IS NULL OR aggregate_id = $4)";

/// Re-queues the published rows `filter` matches (or only counts them with `dry_run`) and
/// returns how many. Run it in a transaction of its own or the caller's.
#[tracing::instrument(skip(client), err)]
pub async fn replay<C: GenericClient>(
    client: &C,
    filter: &ReplayFilter,
    dry_run: bool,
) -> Result<u64, ReplayError> {
    if filter.is_unfiltered() && !filter.all {
        return Err(ReplayError::NoFilter);
    }
    if let (Some(since), Some(until)) = (filter.since, filter.until) {
        if since > until {
            return Err(ReplayError::EmptyWindow);
        }
    }
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 4] = [
        &filter.since,
        &filter.until,
        &filter.event_type,
        &filter.aggregate_id,
    ];
    if dry_run {
        let sql = format!("SELECT count(*) FROM users.outbox WHERE {WHERE}");
        let row = client.query_one(&sql, &params).await?;
        return Ok(row.get::<_, i64>(0) as u64);
    }
    let sql = format!(
        "UPDATE users.outbox SET published_at = NULL, attempts = 0, last_error = NULL WHERE {WHERE}"
    );
    let count = client.execute(&sql, &params).await?;
    if count > 0 {
        // Wake the relay now rather than at its next poll.
        client
            .execute("SELECT pg_notify('outbox_events', 'replay')", &[])
            .await?;
    }
    tracing::info!(count, "outbox rows re-queued for replay");
    Ok(count)
}
