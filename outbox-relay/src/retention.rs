//! Retention: published rows are kept for a replay window, then purged in small batches
//! so that every DELETE is a short transaction that never holds up writers (they only
//! insert new, unpublished rows, which a purge never touches).

use std::time::Duration;

use deadpool_postgres::GenericClient;
use platform::retention::delete_in_batches;

/// Deletes at most `$2` rows published longer than `$1` seconds ago.
const PURGE: &str = "DELETE FROM users.outbox WHERE id IN ( \
    SELECT id FROM users.outbox \
    WHERE published_at IS NOT NULL AND published_at < now() - make_interval(secs => $1) \
    ORDER BY published_at LIMIT $2)";

/// Deletes at most `batch` rows published longer than `older_than` ago (each call its own
/// short transaction when `client` is not in one). Returns how many it deleted.
#[tracing::instrument(level = "debug", skip(client), err)]
pub async fn purge_once<C: GenericClient + Sync>(
    client: &C,
    older_than: Duration,
    batch: i64,
) -> Result<u64, tokio_postgres::Error> {
    let statement = client.prepare_cached(PURGE).await?;
    client
        .execute(&statement, &[&older_than.as_secs_f64(), &batch])
        .await
}

/// Purges batch after batch until no old published row is left; returns the total.
pub async fn purge<C: GenericClient + Sync>(
    client: &C,
    older_than: Duration,
    batch: i64,
) -> Result<u64, tokio_postgres::Error> {
    delete_in_batches(client, PURGE, &[&older_than.as_secs_f64()], batch).await
}
