//! The numbers behind the admin dashboard: users and the outbox's health.

use deadpool_postgres::GenericClient;

pub use platform::wire::UserStats as Stats;

const USERS: &str = "SELECT \
    (SELECT count(*) FROM users.users WHERE erased_at IS NULL) AS users_total, \
    (SELECT count(*) FROM users.users \
        WHERE created_at >= date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC') \
        AS registered_today, \
    (SELECT count(*) FROM users.users WHERE created_at >= now() - interval '24 hours') \
        AS registered_last_24h";

#[tracing::instrument(skip_all, err)]
pub async fn load<C: GenericClient + Sync>(client: &C) -> Result<Stats, tokio_postgres::Error> {
    let statement = client.prepare_cached(USERS).await?;
    let row = client.query_one(&statement, &[]).await?;
    // The outbox's backlog as the relay's bookkeeping leaves it.
    let outbox = outbox_relay::bookkeeping::backlog(client).await?;
    Ok(Stats {
        users_total: row.get("users_total"),
        registered_today: row.get("registered_today"),
        registered_last_24h: row.get("registered_last_24h"),
        outbox_backlog: outbox.rows,
        oldest_unpublished_age_s: (outbox.rows > 0).then_some(outbox.oldest_age_s),
        last_published_at: outbox.last_published_at,
    })
}
