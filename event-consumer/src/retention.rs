//! Inbox retention: an event id must stay in `consumer.processed_events` as long as its
//! event can still arrive again (an outbox replay, a record still in the topic, a DLQ
//! redrive), or the redelivery would be applied a second time. Older rows are purged in
//! small batches, each DELETE a short transaction of its own that skips rows another
//! consumer instance is purging.

use std::time::Duration;

use deadpool_postgres::{GenericClient, Pool};

/// Rows deleted per statement.
pub const PURGE_BATCH: i64 = 5000;

const PURGE: &str = "DELETE FROM consumer.processed_events WHERE event_id IN ( \
    SELECT event_id FROM consumer.processed_events \
    WHERE processed_at < now() - make_interval(secs => $1) \
    ORDER BY processed_at LIMIT $2 FOR UPDATE SKIP LOCKED)";

/// Deletes the rows processed longer than `older_than` ago, `batch` per statement, until
/// none is left; returns how many went. Run it outside a transaction, so that each
/// statement commits on its own.
#[tracing::instrument(skip(client), err)]
pub async fn purge(
    client: &impl GenericClient,
    older_than: Duration,
    batch: i64,
) -> Result<u64, tokio_postgres::Error> {
    let statement = client.prepare_cached(PURGE).await?;
    let (secs, batch) = (older_than.as_secs_f64(), batch.max(1));
    let mut total = 0;
    while let deleted @ 1.. = client.execute(&statement, &[&secs, &batch]).await? {
        total += deleted;
        if deleted < batch as u64 {
            break;
        }
    }
    Ok(total)
}

/// Purges now and then every `every`, for as long as the task runs; a failure is logged
/// and tried again at the next round.
pub async fn purge_every(pool: Pool, older_than: Duration, every: Duration) {
    let mut rounds = tokio::time::interval(every);
    rounds.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        rounds.tick().await;
        let purged = match pool.get().await {
            Ok(client) => purge(&client, older_than, PURGE_BATCH).await,
            Err(error) => {
                tracing::warn!(%error, "inbox purge skipped: no database connection");
                continue;
            }
        };
        match purged {
            Ok(0) => {}
            Ok(total) => tracing::info!(total, "purged processed events past INBOX_RETENTION"),
            Err(error) => tracing::warn!(%error, "inbox purge failed; trying again later"),
        }
    }
}
