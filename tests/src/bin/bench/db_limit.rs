//! The database's own limit: the relay's claim-and-mark cycle over a backlog with no
//! Kafka in between, each batch its own durable transaction.

use std::time::Instant;

use platform::db::DbConfig;

const CLAIM: &str = "SELECT id, aggregate_id, topic, payload, headers FROM users.outbox \
                     WHERE published_at IS NULL ORDER BY id LIMIT $1";
const MARK: &str = "UPDATE users.outbox SET published_at = now() WHERE id = ANY($1)";

pub(crate) async fn claim_and_mark_per_s(db: &DbConfig, batch: i64) -> anyhow::Result<f64> {
    let client = db.connect().await?;
    let claim = client.prepare(CLAIM).await?;
    let mark = client.prepare(MARK).await?;
    let started = Instant::now();
    let mut total = 0usize;
    loop {
        let rows = client.query(&claim, &[&batch]).await?;
        if rows.is_empty() {
            break;
        }
        // Touch the columns the relay turns into records, so the rows are really read.
        let ids: Vec<i64> = rows
            .iter()
            .map(|r| {
                let _payload: serde_json::Value = r.get(3);
                r.get(0)
            })
            .collect();
        client.execute(&mark, &[&ids]).await?;
        total += ids.len();
    }
    Ok(total as f64 / started.elapsed().as_secs_f64())
}
