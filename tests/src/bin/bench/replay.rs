//! Replay for recovery: `replay --all` over a million published rows, and the relay
//! publishing them all again; then retention purging them all, with the longest any
//! purge statement held its locks.

use std::time::Instant;

use outbox_relay::ReplayFilter;
use platform::db::DbConfig;
use serde_json::{json, Value};

/// Fills the outbox with `rows` rows already published, replays them all and drains the
/// relay (seconds from the replay's request to the last page recorded); then purges them.
pub(crate) async fn measure(
    db: &DbConfig,
    topic: &str,
    rows: i64,
    batch: i64,
) -> anyhow::Result<(Value, Value)> {
    let client = db.connect().await?;
    tests::fill_outbox(&client, rows, topic).await?;
    client
        .batch_execute(tests::relay_kit::MARK_PUBLISHED)
        .await?;
    client.batch_execute("VACUUM ANALYZE users.outbox").await?;

    let relay = crate::relay::Running::start(db, batch).await?;
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
    relay.published(0, requeued as usize).await?;
    let published = relay.status.published() as usize;
    let seconds = started.elapsed().as_secs_f64();
    relay.stop().await;
    // Retention: every row is published and old enough (a retention of zero).
    let purge_started = Instant::now();
    let purged = outbox_relay::retention::purge_measured(
        &db.pool().get().await?,
        std::time::Duration::ZERO,
        outbox_relay::relay::RelayConfig::default().purge_batch,
    )
    .await?;
    let purge_s = purge_started.elapsed().as_secs_f64();
    // The dead row versions would keep autovacuum busy through the figures measured after
    // this one: drop them with the table's files, and write the dirty pages out now.
    client.batch_execute("TRUNCATE users.outbox").await?;
    if let Err(error) = client.batch_execute("CHECKPOINT").await {
        eprintln!("[bench]   no CHECKPOINT after the replay: {error}");
    }
    anyhow::ensure!(
        published as u64 == requeued,
        "replayed {requeued} rows but published {published}"
    );
    Ok((
        json!({
            "rows": requeued,
            "seconds_for_1m": crate::stats::round3(seconds * 1_000_000.0 / requeued.max(1) as f64),
            "seconds": crate::stats::round3(seconds),
            "seconds_requeue": crate::stats::round3(requeue_s),
            "events_per_s": crate::stats::round0(published as f64 / seconds),
        }),
        json!({
            "rows": purged.rows,
            "seconds": crate::stats::round3(purge_s),
            "rows_per_s": crate::stats::round0(purged.rows as f64 / purge_s),
            "statements": purged.statements,
            "longest_statement_ms": crate::stats::round3(purged.longest.as_secs_f64() * 1000.0),
            "ids_per_statement": outbox_relay::relay::RelayConfig::default().purge_batch,
        }),
    ))
}
