//! Retention of auth data: a session (with its refresh tokens) is deleted a day after it
//! ended, by expiry or revocation; an idempotency key a day after it was first used, when
//! its replay window closes. Each purge deletes at most [`PURGE_BATCH`] rows per statement,
//! each statement its own short transaction that skips rows another BFF instance holds, so
//! no purge takes a long lock or races a login.

use std::time::Duration;

use deadpool_postgres::{GenericClient, Pool};
use platform::retention::{delete_in_batches, purge_every};

/// Rows deleted per statement.
pub const PURGE_BATCH: i64 = 1000;

/// Sessions that ended (expired or revoked) over a day ago; their refresh tokens go with
/// them (`ON DELETE CASCADE`).
const PURGE_SESSIONS: &str = "DELETE FROM auth.sessions WHERE id IN ( \
    SELECT id FROM auth.sessions \
    WHERE expires_at < now() - interval '24 hours' OR revoked_at < now() - interval '24 hours' \
    LIMIT $1 FOR UPDATE SKIP LOCKED)";

/// Idempotency keys past their 24-hour replay window.
const PURGE_KEYS: &str = "DELETE FROM auth.idempotency_keys WHERE (client, key) IN ( \
    SELECT client, key FROM auth.idempotency_keys \
    WHERE created_at < now() - interval '24 hours' \
    LIMIT $1 FOR UPDATE SKIP LOCKED)";

/// Deletes what is past its retention, `batch` rows per statement, until none is left;
/// returns how many rows went (sessions and idempotency keys).
pub async fn purge<C: GenericClient + Sync>(
    client: &C,
    batch: i64,
) -> Result<u64, tokio_postgres::Error> {
    let sessions = delete_in_batches(client, PURGE_SESSIONS, &[], batch).await?;
    let keys = delete_in_batches(client, PURGE_KEYS, &[], batch).await?;
    Ok(sessions + keys)
}

/// Purges now and then every `every`, for as long as the task runs.
pub async fn run(pool: Pool, every: Duration) {
    let purge =
        |client: deadpool_postgres::Object| async move { purge(&client, PURGE_BATCH).await };
    purge_every(
        pool,
        every,
        "ended sessions and expired idempotency keys",
        purge,
    )
    .await;
}
