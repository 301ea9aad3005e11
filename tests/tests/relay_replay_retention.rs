//! Replay and retention against the real PostgreSQL (and Kafka for the re-publish).

use std::time::Duration;

use outbox_relay::replay::{replay, ReplayError, ReplayFilter};
use outbox_relay::retention::purge_once;
use tests::relay_kit::*;

#[tokio::test]
async fn replay_republishes_exactly_the_rows_its_filters_match() {
    let db = scratch_db().await;
    let topic = scratch_topic(1).await;
    let registered = write_events(&db, &topic, "UserRegistered", &interleaved(3, 1)).await;
    let updated = write_events(&db, &topic, "UserUpdated", &interleaved(2, 1)).await;
    let mut relay = relay(&db, fast_config(100));
    assert_eq!(drain(&mut relay).await, 5);

    let client = db.connect().await.unwrap();
    let by_type = ReplayFilter {
        event_type: Some("UserUpdated".into()),
        ..ReplayFilter::default()
    };
    assert_eq!(replay(&client, &by_type, true).await.unwrap(), 2);
    assert_eq!(unpublished(&db).await, 0, "a dry run changes nothing");
    assert!(matches!(
        replay(&client, &ReplayFilter::default(), false).await,
        Err(ReplayError::NoFilter)
    ));
    let future = ReplayFilter {
        since: Some(chrono::Utc::now() + chrono::Duration::hours(1)),
        ..ReplayFilter::default()
    };
    assert_eq!(replay(&client, &future, false).await.unwrap(), 0);

    assert_eq!(replay(&client, &by_type, false).await.unwrap(), 2);
    assert_eq!(
        unpublished(&db).await,
        2,
        "the replay is the relay's to send"
    );
    assert_eq!(drain(&mut relay).await, 2);
    assert_eq!(unpublished(&db).await, 0);

    let records = read_topic(&topic, 7, Duration::from_secs(20)).await;
    let mut expected = registered.clone();
    expected.extend(&updated);
    expected.extend(&updated);
    assert_eq!(
        event_ids(&records),
        expected,
        "the matches again, in order, and only them"
    );
}

#[tokio::test]
async fn retention_deletes_only_rows_published_before_the_window() {
    let db = scratch_db().await;
    write_events(&db, "unused", "UserRegistered", &interleaved(5, 1)).await;
    mark_published(&db).await;
    write_events(&db, "unused", "UserRegistered", &interleaved(1, 1)).await;
    let client = db.pool().get().await.unwrap();
    // ids 1-3: published, created 8 days ago; 4-5: published, created now; 6: created
    // 30 days ago but never published.
    client
        .batch_execute(
            "UPDATE users.outbox SET created_at = now() - interval '8 days' WHERE id <= 3;
             UPDATE users.outbox SET created_at = now() - interval '30 days' WHERE id = 6;",
        )
        .await
        .unwrap();
    let week = Duration::from_secs(7 * 86_400);
    assert_eq!(
        purge_once(&client, week, 2).await.unwrap(),
        2,
        "bounded batch"
    );
    assert_eq!(purge_once(&client, week, 2).await.unwrap(), 1);
    assert_eq!(purge_once(&client, week, 2).await.unwrap(), 0);
    let left: Vec<i64> = client
        .query("SELECT id FROM users.outbox ORDER BY id", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(left, vec![4, 5, 6]);
}

#[tokio::test]
async fn a_running_leader_purges_rows_past_retention_and_keeps_the_rest() {
    let db = scratch_db().await;
    let topic = scratch_topic(1).await;
    write_events(&db, &topic, "UserRegistered", &interleaved(2, 1)).await;
    mark_published(&db).await;
    write_events(&db, &topic, "UserRegistered", &interleaved(2, 1)).await;
    let client = db.connect().await.unwrap();
    client
        .batch_execute(
            "UPDATE users.outbox SET created_at = now() - interval '2 days' WHERE id <= 2",
        )
        .await
        .unwrap();
    let config = outbox_relay::relay::RelayConfig {
        retention: Some(Duration::from_secs(86_400)),
        purge_batch: 1,
        ..fast_config(100)
    };
    let relay = relay(&db, config);
    let (_stop, stopped) = platform::testing::stop_signal();
    tokio::spawn(relay.run(stopped));
    let ids = || async {
        let rows = client
            .query("SELECT id FROM users.outbox ORDER BY id", &[])
            .await
            .unwrap();
        rows.iter().map(|r| r.get::<_, i64>(0)).collect::<Vec<_>>()
    };
    let purged = eventually(Duration::from_secs(10), || async {
        ids().await == vec![3, 4]
    })
    .await;
    assert!(
        purged,
        "old rows purged, fresh ones published (by the relay) and kept: {:?}",
        ids().await
    );
}
