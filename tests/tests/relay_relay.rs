//! The relay engine against the real PostgreSQL and Kafka, driven batch by batch.

use std::collections::HashMap;
use std::time::Duration;

use outbox_relay::envelope::{decode, H_CONTENT_TYPE, H_SPECVERSION};
use outbox_relay::relay::{BatchOutcome, Delivery};
use tests::relay_kit::*;

async fn drain(relay: &mut outbox_relay::relay::Relay) -> usize {
    let mut published = 0;
    for _ in 0..200 {
        let outcome = relay.relay_once().await.expect("batch");
        published += outcome.published;
        if outcome.claimed == 0 {
            return published;
        }
    }
    panic!("the relay never drained the outbox");
}

#[tokio::test]
async fn events_of_each_key_arrive_in_commit_order_across_batches() {
    let db = scratch_db().await;
    let topic = scratch_topic(3).await;
    let events = interleaved(4, 15);
    write_events(&db, &topic, "UserRegistered", &events).await;

    // Batches of 7 split every aggregate's events over several batches.
    let mut relay = relay(&db, fast_config(7));
    assert_eq!(drain(&mut relay).await, 60);
    assert_eq!(unpublished(&db).await, 0);

    let records = read_topic(&topic, 60, Duration::from_secs(20)).await;
    assert_eq!(records.len(), 60, "every event exactly once");
    for aggregate in events.iter().map(|(a, _)| a).take(4) {
        assert_eq!(
            sequence_of(&records, aggregate),
            (0..15).collect::<Vec<_>>()
        );
    }
    // Binary-mode CloudEvents: headers from the row, key = aggregate id.
    let event = decode(&records[0]).expect("a valid CloudEvent");
    assert_eq!(event.attributes.event_type, "UserRegistered");
    assert_eq!(
        event.attributes.subject.as_deref(),
        Some(event.key.as_str())
    );
    assert_eq!(records[0].header(H_SPECVERSION), Some(&b"1.0"[..]));
    assert_eq!(
        records[0].header(H_CONTENT_TYPE),
        Some(&b"application/json"[..])
    );
}

#[tokio::test]
async fn an_unreachable_broker_marks_nothing_and_the_backlog_drains_when_kafka_is_back() {
    let db = scratch_db().await;
    let topic = scratch_topic(1).await;
    let ids = write_events(&db, &topic, "UserRegistered", &interleaved(2, 3)).await;

    let mut down = relay_on(&db, "127.0.0.1:1", fast_config(100));
    let outcome = down.relay_once().await.expect("batch");
    assert_eq!(
        outcome,
        BatchOutcome {
            claimed: 6,
            published: 0,
            failed: 6,
            held_back: 0
        }
    );
    let client = db.connect().await.unwrap();
    let rows = client
        .query(
            "SELECT published_at IS NULL, attempts, last_error FROM users.outbox",
            &[],
        )
        .await
        .unwrap();
    for row in &rows {
        assert!(row.get::<_, bool>(0), "nothing marked while Kafka is away");
        assert_eq!(row.get::<_, i32>(1), 1);
        assert!(row
            .get::<_, Option<String>>(2)
            .is_some_and(|e| !e.is_empty()));
    }
    // The failing aggregates back off instead of spinning.
    assert_eq!(down.relay_once().await.unwrap().claimed, 0);

    let mut up = relay(&db, fast_config(100));
    assert_eq!(drain(&mut up).await, 6);
    assert_eq!(published_ids(&topic, 6).await, ids);
}

#[tokio::test]
async fn a_failed_row_holds_back_later_rows_of_its_aggregate_only() {
    let db = scratch_db().await;
    let topic = scratch_topic(1).await;
    let a = uuid::Uuid::now_v7().to_string();
    let b = uuid::Uuid::now_v7().to_string();
    write_events(
        &db,
        &topic,
        "UserRegistered",
        &[(a.clone(), 0), (a.clone(), 1), (b.clone(), 0)],
    )
    .await;

    let mut relay = relay(&db, fast_config(10));
    let rows = relay.claim().await.unwrap();
    // Delivery reports as Kafka might give them: a's first event failed, the rest arrived.
    let deliveries = rows
        .into_iter()
        .enumerate()
        .map(|(i, row)| Delivery {
            row,
            result: if i == 0 {
                Err("Message timed out".into())
            } else {
                Ok(chrono::Utc::now())
            },
        })
        .collect();
    let outcome = relay.mark(deliveries).await.unwrap();
    assert_eq!(
        (outcome.published, outcome.failed, outcome.held_back),
        (1, 1, 1)
    );

    let client = db.connect().await.unwrap();
    let state: HashMap<(String, i64), (bool, i32)> = client
        .query(
            "SELECT aggregate_id, (payload->>'seq')::bigint, published_at IS NOT NULL, attempts \
             FROM users.outbox",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| ((r.get(0), r.get(1)), (r.get(2), r.get(3))))
        .collect();
    assert_eq!(
        state[&(a.clone(), 0)],
        (false, 1),
        "failed: counted, unmarked"
    );
    assert_eq!(state[&(a.clone(), 1)], (false, 0), "held back behind it");
    assert_eq!(
        state[&(b.clone(), 0)],
        (true, 0),
        "other aggregates proceed"
    );

    // While a backs off none of its rows is claimed; afterwards both come, in order.
    assert!(relay.claim().await.unwrap().is_empty());
    // Poll (with a deadline) until the backoff has ended.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let claimed = loop {
        let rows = relay.claim().await.unwrap();
        if !rows.is_empty() || tokio::time::Instant::now() > deadline {
            break rows;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let again: Vec<(String, i64)> = claimed
        .iter()
        .map(|r| (r.aggregate_id.clone(), r.payload["seq"].as_i64().unwrap()))
        .collect();
    assert_eq!(again, vec![(a.clone(), 0), (a, 1)]);
}

#[tokio::test]
async fn a_crash_between_produce_and_mark_duplicates_events_but_never_loses_one() {
    let db = scratch_db().await;
    let topic = scratch_topic(3).await;
    let ids = write_events(&db, &topic, "UserRegistered", &interleaved(5, 4)).await;

    // The first relay produces a batch and dies before marking it.
    let crashed = relay(&db, fast_config(12));
    let rows = crashed.claim().await.unwrap();
    let deliveries = crashed.produce(rows).await;
    assert!(deliveries.iter().all(|d| d.result.is_ok()));
    drop(crashed);
    assert_eq!(unpublished(&db).await, 20, "nothing was marked");

    let mut restarted = relay(&db, fast_config(12));
    assert_eq!(drain(&mut restarted).await, 20);

    let records = read_topic(&topic, 32, Duration::from_secs(20)).await;
    let mut seen: HashMap<uuid::Uuid, usize> = HashMap::new();
    for id in event_ids(&records) {
        *seen.entry(id).or_default() += 1;
    }
    for id in &ids {
        assert!(seen.contains_key(id), "event {id} missing from Kafka");
    }
    assert_eq!(seen.len(), 20);
    assert_eq!(seen.values().filter(|n| **n == 2).count(), 12);
}

#[tokio::test]
async fn a_row_whose_transaction_commits_after_a_later_rows_is_still_published_in_order() {
    let db = scratch_db().await;
    let topic = scratch_topic(3).await;
    let x = uuid::Uuid::now_v7().to_string();
    let y = uuid::Uuid::now_v7().to_string();
    write_events(&db, &topic, "UserRegistered", &[(x.clone(), 0)]).await;

    // X's second event takes its id first, but its transaction stays open while Y's
    // event (a higher id) commits and the relay publishes a batch.
    let pool = db.pool();
    let mut slow = pool.get().await.unwrap();
    let open = slow.transaction().await.unwrap();
    let slow_id = outbox_relay::enqueue(&open, &sequenced(&topic, "UserRegistered", &x, 1))
        .await
        .unwrap();
    write_events(&db, &topic, "UserRegistered", &[(y.clone(), 0)]).await;
    let mut relay = relay(&db, fast_config(100));
    assert_eq!(drain(&mut relay).await, 2, "X's first event and Y's");

    open.commit().await.unwrap();
    write_events(&db, &topic, "UserRegistered", &[(x.clone(), 2)]).await;
    assert_eq!(
        drain(&mut relay).await,
        2,
        "the late commit and the event after it"
    );
    assert_eq!(unpublished(&db).await, 0);

    let records = read_topic(&topic, 4, Duration::from_secs(20)).await;
    let ids = event_ids(&records);
    assert_eq!(ids.len(), 4, "every event exactly once: {ids:?}");
    assert!(
        ids.contains(&slow_id),
        "the late-committing row reached Kafka"
    );
    assert_eq!(sequence_of(&records, &x), vec![0, 1, 2]);
    assert_eq!(sequence_of(&records, &y), vec![0]);
}
