//! Watching the events parked for a gap: how many, how old the oldest, and which users'
//! gaps are overdue (older than `CONSUMER_GAP_TIMEOUT_MS`). An overdue gap is logged and
//! repaired by asking user-service for the user's `UserSnapshot` (once per timeout per
//! user), which sets the row and releases or discards what waits.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use deadpool_postgres::Pool;
use uuid::Uuid;

use crate::reconcile::Source;

/// Most overdue users handled per look.
const OVERDUE_PER_LOOK: i64 = 1000;

const FIGURES: &str = "SELECT count(*), \
    coalesce(EXTRACT(EPOCH FROM now() - min(held_at))::float8, 0) FROM consumer.held_events";

const OVERDUE: &str = "SELECT user_id FROM consumer.held_events \
    GROUP BY user_id HAVING min(held_at) < now() - make_interval(secs => $1) \
    ORDER BY min(held_at) LIMIT $2";

/// What one look found.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Look {
    pub held: i64,
    pub oldest_s: f64,
    pub overdue: Vec<Uuid>,
}

/// Reads the figures and the overdue users, and sets the gauges.
pub async fn look(pool: &Pool, timeout: Duration) -> Result<Look, deadpool_postgres::PoolError> {
    let client = pool.get().await?;
    let row = client.query_one(FIGURES, &[]).await?;
    let overdue: Vec<Uuid> = client
        .query(OVERDUE, &[&timeout.as_secs_f64(), &OVERDUE_PER_LOOK])
        .await?
        .iter()
        .map(|row| row.get(0))
        .collect();
    let look = Look {
        held: row.get(0),
        oldest_s: row.get(1),
        overdue,
    };
    metrics::gauge!("consumer_held_events").set(look.held as f64);
    metrics::gauge!("consumer_held_for_gap_seconds").set(look.oldest_s);
    metrics::gauge!("consumer_gaps_overdue").set(look.overdue.len() as f64);
    Ok(look)
}

/// Looks every `every` for as long as the task runs; with a `source`, asks it for the
/// snapshots of overdue users.
pub async fn watch(pool: Pool, source: Option<Source>, timeout: Duration, every: Duration) {
    let mut asked: HashMap<Uuid, Instant> = HashMap::new();
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let look = match look(&pool, timeout).await {
            Ok(look) => look,
            Err(error) => {
                tracing::warn!(error = %platform::telemetry::error_chain(&error), "cannot read the held events");
                continue;
            }
        };
        asked.retain(|_, at| at.elapsed() < timeout);
        let due: Vec<Uuid> = look
            .overdue
            .iter()
            .filter(|id| !asked.contains_key(id))
            .copied()
            .collect();
        if due.is_empty() {
            continue;
        }
        tracing::warn!(
            users = due.len(),
            first = %due[0],
            oldest_s = look.oldest_s,
            "events held for a gap longer than CONSUMER_GAP_TIMEOUT_MS"
        );
        let Some(source) = &source else {
            continue;
        };
        match source.snapshots(&due).await {
            Ok(result) => {
                tracing::info!(
                    snapshots = result.written.len(),
                    "asked user-service for snapshots to close overdue gaps"
                );
                let now = Instant::now();
                asked.extend(due.iter().map(|id| (*id, now)));
            }
            Err(error) => tracing::warn!(
                error = %platform::telemetry::error_chain(&error),
                "cannot ask user-service for snapshots"
            ),
        }
    }
}
