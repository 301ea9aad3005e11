//! The numbers behind the admin dashboard: users and the outbox's health.

use deadpool_postgres::GenericClient;

pub use platform::wire::UserStats as Stats;

// The unpublished and published look-ups are written to use the outbox's partial indexes.
const STATS: &str = "SELECT \
    (SELECT count(*) FROM users.users WHERE erased_at IS NULL) AS users_total, \
    (SELECT count(*) FROM users.users \
        WHERE created_at >= date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC') \
        AS registered_today, \
    (SELECT count(*) FROM users.users WHERE created_at >= now() - interval '24 hours') \
        AS registered_last_24h, \
    (SELECT count(*) FROM users.outbox WHERE published_at IS NULL) AS outbox_backlog, \
    (SELECT EXTRACT(EPOCH FROM now() - created_at)::float8 FROM users.outbox \
        WHERE published_at IS NULL ORDER BY id LIMIT 1) AS oldest_unpublished_age_s, \
    (SELECT max(published_at) FROM users.outbox WHERE published_at IS NOT NULL) \
        AS last_published_at";

#[tracing::instrument(skip_all, err)]
pub async fn load<C: GenericClient + Sync>(client: &C) -> Result<Stats, tokio_postgres::Error> {
    let statement = client.prepare_cached(STATS).await?;
    let row = client.query_one(&statement, &[]).await?;
    Ok(Stats {
        users_total: row.get("users_total"),
        registered_today: row.get("registered_today"),
        registered_last_24h: row.get("registered_last_24h"),
        outbox_backlog: row.get("outbox_backlog"),
        oldest_unpublished_age_s: row.get("oldest_unpublished_age_s"),
        last_published_at: row.get("last_published_at"),
    })
}
