//! Inbox retention against the real PostgreSQL: processed event ids past the retention go,
//! in batches; the ones a redelivery may still need stay.

mod common;

use std::time::Duration;

use common::Scratch;
use event_consumer::retention::purge;

const DAY: u64 = 86_400;

#[tokio::test]
async fn rows_past_the_retention_are_purged_in_batches_and_recent_ones_stay() {
    let scratch = Scratch::new().await;
    let old = scratch.processed_days_ago(7, 40).await;
    let mut kept = scratch.processed_days_ago(3, 29).await;
    kept.extend(scratch.processed_days_ago(3, 0).await);
    kept.sort();
    let pool = scratch.db.pool();
    let client = pool.get().await.unwrap();

    // Two rows per statement: the purge goes on until no old row is left.
    let purged = purge(&client, Duration::from_secs(30 * DAY), 2)
        .await
        .unwrap();
    assert_eq!(purged, old.len() as u64);
    assert_eq!(scratch.processed_ids().await, kept);

    let again = purge(&client, Duration::from_secs(30 * DAY), 2)
        .await
        .unwrap();
    assert_eq!(again, 0, "nothing left to purge");
    assert_eq!(scratch.processed_ids().await, kept);
}
