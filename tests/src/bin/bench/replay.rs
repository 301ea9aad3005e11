//! Replay for recovery: `replay --all` over a million published rows, and the relay
//! publishing them all again.

use std::time::Instant;

use outbox_relay::ReplayFilter;
use platform::db::DbConfig;
use serde_json::{json, Value};

/// Fills the outbox with `rows` rows already published, replays them all and drains the
/// relay; seconds from the replay's start to the last delivery report.
pub(crate) async fn measure(
    db: &DbConfig,
    topic: &str,
    rows: i64,
    batch: i64,
) -> anyhow::Result<Value> {
    let client = db.connect().await?;
    tests::fill_outbox(&client, rows, topic).await?;
    client
        .execute("UPDATE users.outbox SET published_at = created_at", &[])
        .await?;
    client.batch_execute("VACUUM ANALYZE users.outbox").await?;

    let mut relay = crate::relay::engine(db, batch)?;
    let started = Instant::now();
    let requeued = outbox_relay::replay(
        &client,
        &ReplayFilter {
            all: true,
            ..ReplayFilter::default()
        },
        false,
    )
    .await?;
    let requeue_s = started.elapsed().as_secs_f64();
    let published = crate::relay::drain(&mut relay).await?;
    let seconds = started.elapsed().as_secs_f64();
    // A million dead row versions would keep autovacuum busy through the figures measured
    // after this one: drop them with the table's files, and write the dirty pages out now.
    client.batch_execute("TRUNCATE users.outbox").await?;
    if let Err(error) = client.batch_execute("CHECKPOINT").await {
        eprintln!("[bench]   no CHECKPOINT after the replay: {error}");
    }
    anyhow::ensure!(
        published as u64 == requeued,
        "replayed {requeued} rows but published {published}"
    );
    Ok(json!({
        "rows": requeued,
        "seconds_for_1m": crate::stats::round3(seconds * 1_000_000.0 / requeued.max(1) as f64),
        "seconds": crate::stats::round3(seconds),
        "seconds_requeue": crate::stats::round3(requeue_s),
        "events_per_s": crate::stats::round0(published as f64 / seconds),
    }))
}
