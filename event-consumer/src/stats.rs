//! The figures the BFF's admin dashboard shows, read from the consumer's own tables.

use chrono::NaiveDate;
use deadpool_postgres::GenericClient;
pub use platform::wire::{
    DayCount, EventStats as Stats, ReadModelStats, ReconcileSummary, WelcomeNotifications,
};

const COUNTERS: &str = "
    SELECT processed_total, duplicates_total, dead_lettered_total, unknown_type_total,
           last_processed_at,
           (SELECT count(*) FROM consumer.welcome_notifications WHERE status = 'pending'),
           (SELECT count(*) FROM consumer.welcome_notifications)
    FROM consumer.counters WHERE id";

const READ_MODEL: &str = "
    SELECT (SELECT count(*) FROM consumer.user_directory),
           (SELECT count(*) FROM consumer.held_events),
           (SELECT EXTRACT(EPOCH FROM now() - min(held_at))::float8 FROM consumer.held_events)";

const LAST_RECONCILE: &str = "
    SELECT started_at, seconds, checked, differ, behind, repaired
    FROM consumer.reconcile_runs ORDER BY id DESC LIMIT 1";

const LAST_7_DAYS: &str = "
    SELECT d::date, coalesce(s.count, 0)
    FROM generate_series((now() AT TIME ZONE 'UTC')::date - 6,
                         (now() AT TIME ZONE 'UTC')::date, interval '1 day') AS d
    LEFT JOIN consumer.registration_stats s ON s.day = d::date
    ORDER BY d";

pub async fn read(client: &impl GenericClient) -> Result<Stats, tokio_postgres::Error> {
    let statement = client.prepare_cached(COUNTERS).await?;
    let row = client.query_one(&statement, &[]).await?;
    let statement = client.prepare_cached(LAST_7_DAYS).await?;
    let days = client
        .query(&statement, &[])
        .await?
        .iter()
        .map(|row| DayCount {
            day: row.get::<_, NaiveDate>(0).format("%Y-%m-%d").to_string(),
            count: row.get(1),
        })
        .collect();
    let read_model = read_model(client).await?;
    Ok(Stats {
        processed_total: row.get(0),
        duplicates_total: row.get(1),
        dead_lettered_total: row.get(2),
        unknown_type_total: row.get(3),
        last_processed_at: row.get(4),
        welcome_notifications: WelcomeNotifications {
            pending: row.get(5),
            total: row.get(6),
        },
        registrations_per_day: days,
        read_model: Some(read_model),
    })
}

/// The read model's size, what is parked in it, and the latest reconcile run.
pub async fn read_model(
    client: &impl GenericClient,
) -> Result<ReadModelStats, tokio_postgres::Error> {
    let statement = client.prepare_cached(READ_MODEL).await?;
    let row = client.query_one(&statement, &[]).await?;
    let statement = client.prepare_cached(LAST_RECONCILE).await?;
    let last_reconcile = client
        .query_opt(&statement, &[])
        .await?
        .map(|row| ReconcileSummary {
            started_at: row.get(0),
            seconds: row.get(1),
            checked: row.get(2),
            differ: row.get(3),
            behind: row.get(4),
            repaired: row.get(5),
        });
    Ok(ReadModelStats {
        users: row.get(0),
        held_events: row.get(1),
        oldest_held_age_s: row.get(2),
        last_reconcile,
    })
}
