//! Retention: published rows are kept for a replay window, then purged by id range: the
//! oldest rows first, a bounded range per statement, so every DELETE is a short
//! transaction of its own that locks only the rows it deletes (writers only insert new
//! rows at the top, which a purge never reaches). A range holding a row younger than the
//! retention ends the purge; rows that must stay for another reason (not published yet,
//! or parked) are stepped over. The next round starts again from the lowest id.

use std::time::{Duration, Instant};

use deadpool_postgres::GenericClient;

/// Deletes, among the `$2` lowest ids above `$3`, the rows created before `$1` seconds ago
/// that are published; returns how many it deleted, how many rows of the range are
/// younger than that, and the range's highest id.
const PURGE: &str = concat!(
    "WITH range AS ( \
        SELECT id FROM users.outbox WHERE id > $3 ORDER BY id LIMIT $2 \
     ), doomed AS ( \
        DELETE FROM users.outbox o USING range, users.outbox_relay r \
        WHERE o.id = range.id AND o.created_at < now() - make_interval(secs => $1) AND ",
    crate::bookkeeping::published_by!("o", "r"),
    " RETURNING o.id \
     ) SELECT (SELECT count(*) FROM doomed), \
              (SELECT count(*) FROM users.outbox o JOIN range USING (id) \
               WHERE o.created_at >= now() - make_interval(secs => $1)), \
              (SELECT count(*) FROM range), (SELECT coalesce(max(id), $3) FROM range)"
);

/// What one purge did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Purged {
    pub rows: u64,
    /// Statements run (each its own short transaction).
    pub statements: u64,
    /// The longest of them: the longest any purge statement held its row locks.
    pub longest: Duration,
}

/// Deletes, among the `batch` lowest ids, the rows published and older than `older_than`
/// (its own short transaction when `client` is not in one). Returns how many it deleted.
#[tracing::instrument(level = "debug", skip(client), err)]
pub async fn purge_once<C: GenericClient + Sync>(
    client: &C,
    older_than: Duration,
    batch: i64,
) -> Result<u64, tokio_postgres::Error> {
    Ok(purge_range(client, older_than, batch, 0).await?.0)
}

/// One range: (deleted, whether the purge may go on past it, its highest id).
async fn purge_range<C: GenericClient + Sync>(
    client: &C,
    older_than: Duration,
    batch: i64,
    after: i64,
) -> Result<(u64, bool, i64), tokio_postgres::Error> {
    let statement = client.prepare_cached(PURGE).await?;
    let row = client
        .query_one(
            &statement,
            &[&older_than.as_secs_f64(), &batch.max(1), &after],
        )
        .await?;
    let (deleted, young, held, last): (i64, i64, i64, i64) =
        (row.get(0), row.get(1), row.get(2), row.get(3));
    Ok((deleted as u64, held > 0 && young == 0, last))
}

/// Purges range after range, from the lowest id up to the first range holding a row
/// younger than `older_than`.
pub async fn purge<C: GenericClient + Sync>(
    client: &C,
    older_than: Duration,
    batch: i64,
) -> Result<u64, tokio_postgres::Error> {
    Ok(purge_measured(client, older_than, batch).await?.rows)
}

/// [`purge`], with how many statements it took and the longest of them.
pub async fn purge_measured<C: GenericClient + Sync>(
    client: &C,
    older_than: Duration,
    batch: i64,
) -> Result<Purged, tokio_postgres::Error> {
    let mut purged = Purged::default();
    let mut after = 0;
    loop {
        let started = Instant::now();
        let (deleted, go_on, last) = purge_range(client, older_than, batch, after).await?;
        purged.longest = purged.longest.max(started.elapsed());
        purged.statements += 1;
        purged.rows += deleted;
        if !go_on {
            return Ok(purged);
        }
        after = last;
    }
}
