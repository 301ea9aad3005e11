//! The relay's SQL: claim unpublished rows, mark delivered ones, record failures.

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;

/// One outbox row as the relay needs it.
#[derive(Debug, Clone)]
pub struct OutboxRow {
    pub id: i64,
    pub aggregate_id: String,
    pub topic: String,
    pub payload: serde_json::Value,
    pub headers: serde_json::Value,
    pub created_at: DateTime<Utc>,
}

// No FOR UPDATE: only the leader (advisory lock) claims, so nobody races us for these rows,
// and a row lock would last only as long as this autocommit statement anyway.
const CLAIM: &str = "SELECT id, aggregate_id, topic, payload, headers, created_at \
    FROM users.outbox \
    WHERE published_at IS NULL AND NOT (aggregate_id = ANY($2)) \
    ORDER BY id LIMIT $1";

const MARK_PUBLISHED: &str = "UPDATE users.outbox SET published_at = now() WHERE id = ANY($1)";

const MARK_FAILED: &str = "UPDATE users.outbox AS o \
    SET attempts = o.attempts + 1, last_error = f.error \
    FROM unnest($1::bigint[], $2::text[]) AS f(id, error) WHERE o.id = f.id";

/// The oldest `limit` unpublished rows, in id order, except those of `blocked` aggregates.
pub async fn claim<C: GenericClient + Sync>(
    client: &C,
    limit: i64,
    blocked: &[String],
) -> Result<Vec<OutboxRow>, tokio_postgres::Error> {
    let statement = client.prepare_cached(CLAIM).await?;
    let rows = client.query(&statement, &[&limit, &blocked]).await?;
    Ok(rows
        .iter()
        .map(|row| OutboxRow {
            id: row.get(0),
            aggregate_id: row.get(1),
            topic: row.get(2),
            payload: row.get(3),
            headers: row.get(4),
            created_at: row.get(5),
        })
        .collect())
}

/// Marks rows published, in one statement. Only ever called with delivered rows.
pub async fn mark_published<C: GenericClient + Sync>(
    client: &C,
    ids: &[i64],
) -> Result<u64, tokio_postgres::Error> {
    if ids.is_empty() {
        return Ok(0);
    }
    let statement = client.prepare_cached(MARK_PUBLISHED).await?;
    client.execute(&statement, &[&ids]).await
}

/// Counts a failed attempt on each row with its error text, in one statement.
pub async fn mark_failed<C: GenericClient + Sync>(
    client: &C,
    failures: &[(i64, String)],
) -> Result<u64, tokio_postgres::Error> {
    if failures.is_empty() {
        return Ok(0);
    }
    let (ids, errors): (Vec<i64>, Vec<String>) = failures.iter().cloned().unzip();
    let statement = client.prepare_cached(MARK_FAILED).await?;
    client.execute(&statement, &[&ids, &errors]).await
}

const BACKLOG: &str = "SELECT count(*), \
    COALESCE(EXTRACT(EPOCH FROM now() - min(created_at))::float8, 0) \
    FROM users.outbox WHERE published_at IS NULL";

/// Unpublished rows and the age in seconds of the oldest one (0 when none).
pub async fn backlog<C: GenericClient + Sync>(
    client: &C,
) -> Result<(i64, f64), tokio_postgres::Error> {
    let statement = client.prepare_cached(BACKLOG).await?;
    let row = client.query_one(&statement, &[]).await?;
    Ok((row.get(0), row.get(1)))
}
