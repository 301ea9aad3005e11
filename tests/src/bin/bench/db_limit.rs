//! The database's own limit: the relay's reading of pages and recording of its cursor over
//! a backlog, with no Kafka in between, each record its own transaction.

use std::time::Instant;

use outbox_relay::relay::store::{record_cursor, window_page};
use platform::db::DbConfig;

pub(crate) async fn read_and_record_per_s(db: &DbConfig, batch: i64) -> anyhow::Result<f64> {
    let pool = db.pool();
    let client = pool.get().await?;
    let acquired = outbox_relay::leader::try_acquire(
        &**client,
        "bench-db-limit",
        std::time::Duration::from_secs(600),
    )
    .await?
    .ok_or_else(|| anyhow::anyhow!("another relay holds the lease"))?;
    let mut cursor = acquired.cursor;
    let started = Instant::now();
    let mut total = 0usize;
    loop {
        let (snapshot, rows) = window_page(&client, &cursor, batch).await?;
        let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
        let open = cursor.window.is_some();
        cursor = cursor.after_page(&snapshot, &ids, ids.len() as i64 >= batch);
        if ids.is_empty() {
            if open {
                // The window ended on a page boundary.
                record_cursor(&client, acquired.epoch, &cursor, 0).await?;
                continue;
            }
            break;
        }
        anyhow::ensure!(
            record_cursor(&client, acquired.epoch, &cursor, rows.len() as i64).await?,
            "fenced"
        );
        total += rows.len();
    }
    let rate = total as f64 / started.elapsed().as_secs_f64();
    outbox_relay::leader::release(&**client, acquired.epoch).await?;
    Ok(rate)
}
