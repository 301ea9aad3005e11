//! Inbox retention: an event id must stay in `consumer.processed_events` as long as its
//! event can still arrive again (an outbox replay, a record still in the topic, a DLQ
//! redrive), or the redelivery would be applied a second time. Older rows are purged in
//! small batches, each DELETE a short transaction of its own that skips rows another
//! consumer instance is purging.

use std::time::Duration;

use deadpool_postgres::{GenericClient, Pool};
use platform::retention::{delete_in_batches, purge_every};

/// Rows deleted per statement.
pub const PURGE_BATCH: i64 = 5000;

const PURGE: &str = "DELETE FROM consumer.processed_events WHERE event_id IN ( \
    SELECT event_id FROM consumer.processed_events \
    WHERE processed_at < now() - make_interval(secs => $1) \
    ORDER BY processed_at LIMIT $2 FOR UPDATE SKIP LOCKED)";

/// Deletes the rows processed longer than `older_than` ago, `batch` per statement, until
/// none is left; returns how many went.
#[tracing::instrument(level = "debug", skip(client), err)]
pub async fn purge<C: GenericClient + Sync>(
    client: &C,
    older_than: Duration,
    batch: i64,
) -> Result<u64, tokio_postgres::Error> {
    delete_in_batches(client, PURGE, &[&older_than.as_secs_f64()], batch).await
}

/// Purges now and then every `every`, for as long as the task runs.
pub async fn run(pool: Pool, older_than: Duration, every: Duration) {
    let purge = move |client: deadpool_postgres::Object| async move {
        purge(&client, older_than, PURGE_BATCH).await
    };
    purge_every(pool, every, "processed events past INBOX_RETENTION", purge).await;
}
