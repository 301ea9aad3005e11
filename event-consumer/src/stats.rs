//! The figures the BFF's admin dashboard shows, read from the consumer's own tables.

use chrono::NaiveDate;
use deadpool_postgres::GenericClient;
pub use platform::wire::{DayCount, EventStats as Stats, WelcomeNotifications};

const COUNTERS: &str = "
    SELECT processed_total, duplicates_total, dead_lettered_total, unknown_type_total,
           last_processed_at,
           (SELECT count(*) FROM consumer.welcome_notifications WHERE status = 'pending'),
           (SELECT count(*) FROM consumer.welcome_notifications)
    FROM consumer.counters WHERE id";

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
    })
}
