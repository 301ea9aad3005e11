//! What the database writes per published event: WAL bytes (`pg_stat_wal`, cluster-wide, so
//! measured while nothing else runs) and row versions written to the `users` schema's
//! tables (`pg_stat_user_tables`: inserts, updates and deletes), whatever the relay's
//! bookkeeping is made of.

use platform::db::DbConfig;
use serde_json::{json, Value};

/// Counters at one moment.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Counters {
    wal_bytes: f64,
    row_versions: i64,
}

const COUNTERS: &str = "SELECT (SELECT wal_bytes::float8 FROM pg_stat_wal), \
    COALESCE((SELECT sum(n_tup_ins + n_tup_upd + n_tup_del)::int8 FROM pg_stat_user_tables \
              WHERE schemaname = 'users'), 0)";

/// Reads the counters once the table counters stopped moving (a backend reports its own
/// when it goes idle, at most once a second, and when it exits).
pub(crate) async fn read(db: &DbConfig) -> anyhow::Result<Counters> {
    let client = db.connect().await?;
    let mut last: Option<i64> = None;
    for _ in 0..50 {
        client
            .batch_execute("SELECT pg_stat_clear_snapshot()")
            .await?;
        let row = client.query_one(COUNTERS, &[]).await?;
        let now = Counters {
            wal_bytes: row.get(0),
            row_versions: row.get(1),
        };
        if last == Some(now.row_versions) {
            return Ok(now);
        }
        last = Some(now.row_versions);
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    anyhow::bail!("pg_stat_user_tables never settled")
}

/// The cost per event between two readings.
pub(crate) fn per_event(before: Counters, after: Counters, events: usize) -> Value {
    let n = events.max(1) as f64;
    json!({
        "events": events,
        "wal_bytes_per_event": crate::stats::round0((after.wal_bytes - before.wal_bytes) / n),
        "row_versions_per_event": crate::stats::round3((after.row_versions - before.row_versions) as f64 / n),
    })
}
