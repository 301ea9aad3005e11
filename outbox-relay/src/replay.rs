//! Replay: publish published outbox rows again, in their original order (by id), to
//! recover a lost or rebuilt topic. Used by `outbox-relay replay` and the user service's
//! admin API.

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

/// The filter, over outbox row `o`.
macro_rules! matching {
    () => {
        "($1::timestamptz IS NULL OR o.created_at >= $1) \
         AND ($2::timestamptz IS NULL OR o.created_at < $2) \
         AND ($3::text IS NULL OR o.event_type = $3) \
         AND ($4::text IS NULL OR o.aggregate_id = $4)"
    };
}

/// How many published rows the filter matches.
const COUNT: &str = concat!(
    "SELECT count(*) FROM users.outbox_relay r, users.outbox o WHERE ",
    matching!(),
    " AND ",
    crate::bookkeeping::published_by!("o", "r")
);

/// A replay request: the matching rows up to the highest id there is, as published now
/// (the state is copied, so what the relay publishes meanwhile is not replayed twice).
/// Nothing is written when nothing matches.
const REQUEST: &str = concat!(
    "WITH r AS (SELECT * FROM users.outbox_relay), \
          matching AS (SELECT count(*) AS rows FROM r, users.outbox o WHERE ",
    matching!(),
    " AND ",
    crate::bookkeeping::published_by!("o", "r"),
    ") INSERT INTO users.outbox_replays \
        (since, until, event_type, aggregate_id, up_to, published, window_snapshot, window_after, rows) \
     SELECT $1, $2, $3, $4, (SELECT coalesce(max(id), 0) FROM users.outbox), \
        r.published, r.window_snapshot, r.window_after, matching.rows \
     FROM r, matching WHERE matching.rows > 0 RETURNING rows"
);

/// Asks the relay to publish again the published rows `filter` matches (or only counts
/// them with `dry_run`) and returns how many. Nothing is rewritten: the request is one row
/// in `users.outbox_replays`, which the relay works through in id order before new events,
/// recording its progress there. Run it in a transaction of its own or the caller's.
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
        let row = client.query_one(COUNT, &params).await?;
        return Ok(row.get::<_, i64>(0) as u64);
    }
    let Some(row) = client.query_opt(REQUEST, &params).await? else {
        tracing::info!("outbox replay matched no published row");
        return Ok(0);
    };
    let count = row.get::<_, i64>(0) as u64;
    // Wake the relay now rather than at its next poll.
    client
        .execute("SELECT pg_notify('outbox_events', 'replay')", &[])
        .await?;
    tracing::info!(count, "outbox replay requested");
    Ok(count)
}
