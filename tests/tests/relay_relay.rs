//! The relay engine against the real PostgreSQL and Kafka, driven batch by batch.

use std::collections::HashMap;
use std::time::Duration;

use outbox_relay::envelope::{decode, H_CONTENT_TYPE, H_SPECVERSION};
use outbox_relay::relay::Error;
use tests::relay_kit::*;

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
async fn an_unreachable_broker_records_nothing_and_the_backlog_drains_when_kafka_is_back() {
    let db = scratch_db().await;
    let topic = scratch_topic(1).await;
    let ids = write_events(&db, &topic, "UserRegistered", &interleaved(2, 3)).await;

    let mut down = relay_on(&db, "127.0.0.1:1", fast_config(100));
    let refused = down.relay_once().await;
    assert!(matches!(refused, Err(Error::Kafka(_))), "{refused:?}");
    assert_eq!(
        unpublished(&db).await,
        6,
        "nothing recorded while Kafka is away"
    );
    let client = db.connect().await.unwrap();
    let state = client
        .query_one(
            "SELECT published_total, published_at IS NULL FROM users.outbox_relay",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(state.get::<_, i64>(0), 0);
    assert!(state.get::<_, bool>(1));
    // The same relay keeps failing (it does not spin: the process backs off) ...
    assert!(down.relay_once().await.is_err());
    down.release().await;

    // ... and one that reaches Kafka publishes everything, in order.
    let mut up = relay(&db, fast_config(100));
    assert_eq!(drain(&mut up).await, 6);
    assert_eq!(published_ids(&topic, 6).await, ids);
    assert_eq!(unpublished(&db).await, 0);
}

/// An event of `aggregate` too large for Kafka (librdkafka's message.max.bytes is 1 MB).
fn oversized(topic: &str, aggregate: &str, seq: u32) -> outbox_relay::NewEvent {
    let mut event = sequenced(topic, "UserRegistered", aggregate, seq);
    event.data["pad"] = serde_json::Value::String("x".repeat(1_500_000));
    event
}

async fn parked(db: &platform::db::DbConfig) -> Vec<(String, i64, String)> {
    db.connect()
        .await
        .unwrap()
        .query(
            "SELECT o.aggregate_id, (o.payload->>'seq')::bigint, p.error \
             FROM users.outbox_parked p JOIN users.outbox o ON o.id = p.outbox_id ORDER BY o.id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect()
}

#[tokio::test]
async fn a_row_kafka_refuses_is_parked_with_the_later_rows_of_its_aggregate_and_the_rest_flows() {
    let db = scratch_db().await;
    let topic = scratch_topic(1).await;
    let a = uuid::Uuid::now_v7().to_string();
    let b = uuid::Uuid::now_v7().to_string();
    {
        let pool = db.pool();
        let mut client = pool.get().await.unwrap();
        let tx = client.transaction().await.unwrap();
        outbox_relay::enqueue(&tx, &oversized(&topic, &a, 0))
            .await
            .unwrap();
        tx.commit().await.unwrap();
    }
    write_events(
        &db,
        &topic,
        "UserRegistered",
        &[(a.clone(), 1), (b.clone(), 0)],
    )
    .await;

    let mut relay = relay(&db, fast_config(10));
    let outcome = relay.relay_once().await.unwrap();
    assert_eq!(
        (outcome.claimed, outcome.published, outcome.parked),
        (3, 1, 2)
    );
    let set_apart = parked(&db).await;
    assert_eq!(set_apart.len(), 2);
    assert_eq!((set_apart[0].0.as_str(), set_apart[0].1), (a.as_str(), 0));
    assert!(set_apart[0].2.contains("too large"), "{}", set_apart[0].2);
    assert_eq!((set_apart[1].0.as_str(), set_apart[1].1), (a.as_str(), 1));
    assert!(
        set_apart[1].2.contains("waiting behind"),
        "{}",
        set_apart[1].2
    );
    assert_eq!(unpublished(&db).await, 2, "parked rows are not published");

    // New rows of a wait behind; b's flow.
    write_events(
        &db,
        &topic,
        "UserRegistered",
        &[(a.clone(), 2), (b.clone(), 1)],
    )
    .await;
    assert_eq!(drain(&mut relay).await, 1);
    assert_eq!(parked(&db).await.len(), 3);

    // Once the row fits (an operator trimmed it), the next retry publishes a's rows, in order.
    db.connect()
        .await
        .unwrap()
        .execute(
            "UPDATE users.outbox SET payload = payload - 'pad' WHERE aggregate_id = $1",
            &[&a],
        )
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !parked(&db).await.is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the parked rows were never published: {:?}",
            parked(&db).await
        );
        relay.relay_once().await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(unpublished(&db).await, 0);

    let records = read_topic(&topic, 5, Duration::from_secs(20)).await;
    assert_eq!(sequence_of(&records, &a), vec![0, 1, 2]);
    assert_eq!(sequence_of(&records, &b), vec![0, 1]);
}

#[tokio::test]
async fn a_crash_between_produce_and_mark_duplicates_events_but_never_loses_one() {
    let db = scratch_db().await;
    let topic = scratch_topic(3).await;
    let ids = write_events(&db, &topic, "UserRegistered", &interleaved(5, 4)).await;

    // The first relay commits a page to Kafka and dies before recording it (and without
    // giving its lease up).
    let mut crashed = relay(&db, fast_config(12));
    let page = crashed.next_page().await.unwrap();
    assert_eq!(page.rows.len(), 12);
    crashed.send(page).await.unwrap();
    drop(crashed);
    assert_eq!(unpublished(&db).await, 20, "nothing was recorded");

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

#[tokio::test]
async fn commits_that_overlap_the_next_transaction_keep_each_users_order_and_lose_nothing() {
    let db = scratch_db().await;
    let topic = scratch_topic(3).await;
    // A transaction committed about every millisecond: nearly every commit is still under
    // way when the next rows go out, on the other producer.
    let config = outbox_relay::relay::RelayConfig {
        commit_interval: Duration::from_millis(1),
        ..fast_config(5)
    };
    let relay = relay(&db, config);
    let status = relay.status();
    let (_stop, stopped) = platform::testing::stop_signal();
    tokio::spawn(relay.run(stopped));

    // Written while the relay runs, one event per transaction, six users interleaved.
    let events = interleaved(6, 50);
    let ids = write_events(&db, &topic, "UserRegistered", &events).await;
    assert!(
        eventually(Duration::from_secs(20), || async {
            unpublished(&db).await == 0 && status.published() == 300
        })
        .await,
        "all 300 published and recorded"
    );

    let records = read_topic(&topic, 300, Duration::from_secs(20)).await;
    let read = event_ids(&records);
    assert_eq!(read.len(), 300, "each event exactly once");
    let read: std::collections::HashSet<_> = read.into_iter().collect();
    assert!(
        ids.iter().all(|id| read.contains(id)),
        "every event read back"
    );
    for (aggregate, _) in events.iter().take(6) {
        assert_eq!(
            sequence_of(&records, aggregate),
            (0..50).collect::<Vec<_>>(),
            "{aggregate}'s events in commit order"
        );
    }
}

/// Rows of `users.outbox` an `EXPLAIN (ANALYZE, FORMAT JSON)` plan read: those its scans
/// returned plus those they threw away, over all their loops.
fn outbox_rows_read(plan: &serde_json::Value) -> f64 {
    // EXPLAIN gives the rows of one loop on average.
    let here = if plan["Relation Name"] == "outbox" {
        let per_loop = [
            "Actual Rows",
            "Rows Removed by Filter",
            "Rows Removed by Index Recheck",
        ]
        .iter()
        .map(|key| plan[*key].as_f64().unwrap_or(0.0))
        .sum::<f64>();
        per_loop * plan["Actual Loops"].as_f64().unwrap_or(1.0)
    } else {
        0.0
    };
    here + plan["Plans"]
        .as_array()
        .map_or(0.0, |plans| plans.iter().map(outbox_rows_read).sum())
}

async fn explain(client: &tokio_postgres::Client, sql: &str) -> (f64, serde_json::Value) {
    let row = client
        .query_one(&format!("EXPLAIN (ANALYZE, FORMAT JSON) {sql}"), &[])
        .await
        .unwrap_or_else(|e| panic!("explain {sql}: {e}"));
    let plan: serde_json::Value = row.get(0);
    (outbox_rows_read(&plan[0]["Plan"]), plan)
}

#[tokio::test]
async fn a_new_window_and_the_backlog_read_the_unpublished_rows_not_the_whole_outbox() {
    let db = scratch_db().await;
    let client = db.connect().await.unwrap();
    let window = outbox_relay::relay::store::window_statement();
    let prepare = format!("PREPARE w(text, text, bigint, bigint, bigint, boolean) AS {window}");
    // A relay that starts on an empty outbox plans the window query then, once, and keeps
    // that plan while the outbox fills (until the table is next analyzed).
    let early = db.connect().await.unwrap();
    early
        .batch_execute(outbox_relay::relay::SESSION)
        .await
        .unwrap();
    early.batch_execute(&prepare).await.unwrap();
    let empty: String = early
        .query_one("SELECT published::text FROM users.outbox_relay", &[])
        .await
        .unwrap()
        .get(0);
    early
        .batch_execute(&format!("EXECUTE w(NULL, '{empty}', 0, 0, 10000, true)"))
        .await
        .unwrap();
    // 3,000 published rows, each of its own transaction as writers leave them.
    client
        .batch_execute(
            "DO $$ BEGIN FOR i IN 1..3000 LOOP \
               INSERT INTO users.outbox (event_id, aggregate_type, aggregate_id, event_type, topic, payload) \
               VALUES (gen_random_uuid(), 'user', 'filler-' || i, 'UserRegistered', 'filler', '{}'); \
               COMMIT; \
             END LOOP; END $$",
        )
        .await
        .unwrap();
    // A transaction still open when the state is recorded takes an id below the high
    // water, and commits afterwards (a late row); then a new row comes.
    let pool = db.pool();
    let mut slow = pool.get().await.unwrap();
    let open = slow.transaction().await.unwrap();
    let late = outbox_relay::enqueue(&open, &sequenced("t", "UserRegistered", "late", 0))
        .await
        .unwrap();
    write_events(&db, "t", "UserRegistered", &[("before".into(), 0)]).await;
    client.batch_execute(MARK_PUBLISHED).await.unwrap();
    open.commit().await.unwrap();
    let new = write_events(&db, "t", "UserRegistered", &[("new".into(), 0)]).await;
    let state = client
        .query_one(
            "SELECT published::text, high_water FROM users.outbox_relay",
            &[],
        )
        .await
        .unwrap();
    let (published, high_water): (String, i64) = (state.get(0), state.get(1));
    let execute = format!("EXECUTE w(NULL, '{published}', 0, {high_water}, 10000, true)");
    let (read, plan) = explain(&early, &execute).await;
    assert!(
        read <= 20.0,
        "planned on the empty outbox, a new window read {read} outbox rows for 2 unpublished ones: {plan:#}"
    );

    client.batch_execute("ANALYZE users.outbox").await.unwrap();
    client.batch_execute(&prepare).await.unwrap();
    // The relay's sessions plan it once (generic plans); other callers may plan it each
    // time.
    for session in [
        outbox_relay::relay::SESSION,
        "SET plan_cache_mode = force_custom_plan",
    ] {
        client.batch_execute(session).await.unwrap();
        let (read, plan) = explain(&client, &execute).await;
        assert!(
            read <= 20.0,
            "{session}: a new window read {read} outbox rows for 2 unpublished ones: {plan:#}"
        );
        let (read, plan) = explain(&client, outbox_relay::bookkeeping::BACKLOG_ROWS).await;
        assert!(
            read <= 20.0,
            "{session}: the backlog read {read} outbox rows for 2 unpublished ones: {plan:#}"
        );
    }
    // And the window finds exactly those two rows, the late one first.
    let found: Vec<i64> = client
        .query(&execute, &[])
        .await
        .unwrap()
        .iter()
        .filter_map(|row| row.get::<_, Option<i64>>(1))
        .collect();
    let expected: Vec<i64> = client
        .query(
            "SELECT id FROM users.outbox WHERE event_id = ANY($1) ORDER BY id",
            &[&vec![late, new[0]]],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(found, expected);
    assert!(
        expected[0] < high_water,
        "the late row is below the high water"
    );
    assert_eq!(unpublished(&db).await, 2);
}
