//! The consumer engine against the real Kafka and PostgreSQL: exactly-once effects,
//! dead letters, unknown types, and two instances in one group.

mod common;

use common::{
    drain, drive_until, drive_until_notified, eventually, producer, read_dlq, send, send_many,
    send_raw, with_header, Registration, Scratch, DEAD_LETTERED_TOTAL, DUPLICATES_TOTAL,
    PROCESSED_EVENTS, REGISTRATIONS, SETTLE, UNKNOWN_TYPE_TOTAL, WELCOME_NOTIFICATIONS,
};

#[tokio::test]
async fn duplicate_delivery_has_one_effect() {
    let scratch = Scratch::new().await;
    let producer = producer();
    let event = Registration::new();
    for _ in 0..3 {
        send(&producer, &scratch.topic, &event).await;
    }
    // Another event for the same user (a replay with a new id) must not register it twice.
    let mut again = Registration::new();
    again.user_id = event.user_id;
    send(&producer, &scratch.topic, &again).await;
    let other = Registration::new();
    send(&producer, &scratch.topic, &other).await;

    let mut consumer = scratch.consumer();
    drive_until_notified(&mut consumer, &scratch, 2).await;
    drain(&mut consumer).await;

    assert_eq!(scratch.count(WELCOME_NOTIFICATIONS).await, 2);
    assert_eq!(scratch.count(REGISTRATIONS).await, 2);
    assert_eq!(scratch.count(PROCESSED_EVENTS).await, 3);
    assert_eq!(scratch.count(DUPLICATES_TOTAL).await, 2);
    assert_eq!(scratch.welcome_statuses(&event.user_id).await, ["pending"]);
}

#[tokio::test]
async fn poison_records_go_to_the_dlq_and_later_records_are_applied() {
    let scratch = Scratch::new().await;
    let producer = producer();

    // No CloudEvents headers at all.
    send_raw(&producer, &scratch.topic, "k-garbage", b"garbage", &[]).await;
    // Valid envelope, data that does not fit UserRegistered.
    let bad = Registration::new();
    let bad_value = br#"{"user_id":"not-a-uuid"}"#;
    send_raw(
        &producer,
        &scratch.topic,
        &bad.user_id.to_string(),
        bad_value,
        &bad.headers("UserRegistered"),
    )
    .await;
    // An unsupported CloudEvents version.
    let old = Registration::new();
    let old_headers = with_header(old.headers("UserRegistered"), "ce_specversion", b"0.3");
    send_raw(
        &producer,
        &scratch.topic,
        &old.user_id.to_string(),
        old.data().to_string().as_bytes(),
        &old_headers,
    )
    .await;
    let good = Registration::new();
    send(&producer, &scratch.topic, &good).await;

    let mut consumer = scratch.consumer();
    drive_until_notified(&mut consumer, &scratch, 1).await;
    // The good record may sit in another partition than some poison ones: settle them all.
    drive_until(&mut consumer, &scratch, DEAD_LETTERED_TOTAL, 3).await;
    drain(&mut consumer).await;

    let letters = read_dlq(&scratch.dlq, 3).await;
    let garbage = letters
        .iter()
        .find(|l| l.key.as_deref() == Some(&b"k-garbage"[..]))
        .expect("the headerless record is dead-lettered");
    assert_eq!(garbage.value.as_deref(), Some(&b"garbage"[..]));
    assert!(garbage.header("error").unwrap().contains("missing header"));
    assert!(chrono::DateTime::parse_from_rfc3339(&garbage.header("failed_at").unwrap()).is_ok());

    let data = letters
        .iter()
        .find(|l| l.key.as_deref() == Some(bad.user_id.to_string().as_bytes()))
        .expect("the record with bad data is dead-lettered");
    assert_eq!(data.value.as_deref(), Some(&bad_value[..]));
    assert_eq!(data.header("ce_id"), Some(bad.event_id.to_string()));
    assert!(data
        .header("error")
        .unwrap()
        .contains("UserRegistered data"));

    let version = letters
        .iter()
        .find(|l| l.key.as_deref() == Some(old.user_id.to_string().as_bytes()))
        .expect("the old-version record is dead-lettered");
    assert!(version.header("error").unwrap().contains("specversion"));

    assert_eq!(scratch.count(DEAD_LETTERED_TOTAL).await, 3);
    let applied = scratch.welcome_statuses(&good.user_id).await.len();
    assert_eq!(applied, 1, "the record after the poison ones is applied");
}

#[tokio::test]
async fn a_nul_or_invalid_utf8_in_a_header_dead_letters_that_record_only() {
    let scratch = Scratch::new().await;
    let producer = producer();

    // PostgreSQL text cannot hold NUL: such a ce_type used to fail its batch forever.
    let nul = Registration::new();
    let nul_headers = with_header(
        nul.headers("UserRegistered"),
        "ce_type",
        b"User\0Registered",
    );
    let nul_value = nul.data().to_string();
    send_raw(
        &producer,
        &scratch.topic,
        &nul.user_id.to_string(),
        nul_value.as_bytes(),
        &nul_headers,
    )
    .await;
    // A CloudEvents extension attribute that is not text.
    let garbled = Registration::new();
    let garbled_headers = with_header(
        garbled.headers("UserRegistered"),
        "ce_userversion",
        b"\xff\xfe1",
    );
    send_raw(
        &producer,
        &scratch.topic,
        &garbled.user_id.to_string(),
        garbled.data().to_string().as_bytes(),
        &garbled_headers,
    )
    .await;
    let good = Registration::new();
    send(&producer, &scratch.topic, &good).await;

    let mut consumer = scratch.consumer();
    drive_until_notified(&mut consumer, &scratch, 1).await;
    drive_until(&mut consumer, &scratch, DEAD_LETTERED_TOTAL, 2).await;
    drain(&mut consumer).await;

    let letters = read_dlq(&scratch.dlq, 2).await;
    let letter = |user: &Registration| {
        letters
            .iter()
            .find(|l| l.key.as_deref() == Some(user.user_id.to_string().as_bytes()))
            .expect("the record is dead-lettered")
    };
    let dead = letter(&nul);
    assert_eq!(dead.value.as_deref(), Some(nul_value.as_bytes()));
    assert_eq!(dead.headers[..nul_headers.len()], nul_headers[..]);
    let reason = dead.header("error").unwrap();
    assert!(
        reason.contains("ce_type") && reason.contains("NUL"),
        "{reason}"
    );
    assert!(!reason.contains('\0'));
    assert!(chrono::DateTime::parse_from_rfc3339(&dead.header("failed_at").unwrap()).is_ok());

    let reason = letter(&garbled).header("error").unwrap();
    assert!(
        reason.contains("ce_userversion") && reason.contains("UTF-8"),
        "{reason}"
    );

    assert_eq!(scratch.count(DEAD_LETTERED_TOTAL).await, 2);
    assert_eq!(scratch.count(WELCOME_NOTIFICATIONS).await, 1);
    assert_eq!(scratch.welcome_statuses(&good.user_id).await, ["pending"]);
}

#[tokio::test]
async fn a_record_the_database_refuses_is_dead_lettered_and_the_batch_applied() {
    let scratch = Scratch::new().await;
    let producer = producer();
    // One key, so one partition and one batch: the culprit has to be found inside it.
    let key = format!("k-{}", uuid::Uuid::now_v7());
    let mut users = Vec::new();
    for i in 0..9 {
        let user = Registration::new();
        let mut data = user.data();
        if i == 4 {
            // Decodes fine, but PostgreSQL's date cannot hold it (22008, a data exception).
            data["registered_at"] = "-5000-01-01T00:00:00Z".into();
        }
        let headers = user.headers("UserRegistered");
        send_raw(
            &producer,
            &scratch.topic,
            &key,
            data.to_string().as_bytes(),
            &headers,
        )
        .await;
        users.push(user);
    }
    let refused = users.remove(4);

    let mut consumer = scratch.consumer();
    drive_until(&mut consumer, &scratch, DEAD_LETTERED_TOTAL, 1).await;
    drive_until_notified(&mut consumer, &scratch, 8).await;
    // The consumer goes on with what comes next.
    let later = Registration::new();
    send(&producer, &scratch.topic, &later).await;
    drive_until_notified(&mut consumer, &scratch, 9).await;
    drain(&mut consumer).await;

    let letters = read_dlq(&scratch.dlq, 1).await;
    assert_eq!(
        letters[0].header("ce_id"),
        Some(refused.event_id.to_string())
    );
    let reason = letters[0].header("error").unwrap();
    assert!(reason.contains("22008"), "{reason}");
    assert!(scratch.welcome_statuses(&refused.user_id).await.is_empty());
    for user in users.iter().chain([&later]) {
        assert_eq!(scratch.welcome_statuses(&user.user_id).await, ["pending"]);
    }
    scratch.assert_each_applied_once(9).await;
    assert_eq!(scratch.count(DEAD_LETTERED_TOTAL).await, 1);
    assert_eq!(scratch.count(DUPLICATES_TOTAL).await, 0);
}

#[tokio::test]
async fn a_backlog_over_partitions_is_applied_once_around_a_record_the_database_refuses() {
    let scratch = Scratch::new().await;
    let producer = producer();
    // A backlog on three partitions before the consumer starts, so its big batches span
    // partitions, each applied in a transaction of its own; one partition's holds a
    // record PostgreSQL refuses (22008), the others commit.
    let mut users = send_many(&producer, &scratch.topic, 1200).await;
    let refused = Registration::new();
    let mut data = refused.data();
    data["registered_at"] = "-5000-01-01T00:00:00Z".into();
    send_raw(
        &producer,
        &scratch.topic,
        &refused.user_id.to_string(),
        data.to_string().as_bytes(),
        &refused.headers("UserRegistered"),
    )
    .await;
    users.extend(send_many(&producer, &scratch.topic, 800).await);

    let mut consumer = scratch.consumer_with_batch(2000);
    drive_until_notified(&mut consumer, &scratch, 2000).await;
    drive_until(&mut consumer, &scratch, DEAD_LETTERED_TOTAL, 1).await;
    drain(&mut consumer).await;

    let letters = read_dlq(&scratch.dlq, 1).await;
    assert_eq!(
        letters[0].header("ce_id"),
        Some(refused.event_id.to_string())
    );
    assert!(scratch.welcome_statuses(&refused.user_id).await.is_empty());
    for user in &users {
        assert_eq!(scratch.welcome_statuses(&user.user_id).await, ["pending"]);
    }
    // Committed partitions were not applied again when the refused one was searched.
    scratch.assert_each_applied_once(2000).await;
    assert_eq!(scratch.count(DEAD_LETTERED_TOTAL).await, 1);
    assert_eq!(scratch.count(DUPLICATES_TOTAL).await, 0);
}

#[tokio::test]
async fn unknown_event_types_are_counted_and_skipped() {
    let scratch = Scratch::new().await;
    let producer = producer();
    let unknown = Registration::new();
    for _ in 0..2 {
        send_raw(
            &producer,
            &scratch.topic,
            &unknown.user_id.to_string(),
            b"{}",
            &unknown.headers("UserDeleted"),
        )
        .await;
    }
    let good = Registration::new();
    send(&producer, &scratch.topic, &good).await;

    let mut consumer = scratch.consumer();
    drive_until_notified(&mut consumer, &scratch, 1).await;
    // The unknown event is counted once, its second delivery as a duplicate.
    let sql = "SELECT unknown_type_total + duplicates_total FROM consumer.counters";
    drive_until(&mut consumer, &scratch, sql, 2).await;
    drain(&mut consumer).await;
    assert_eq!(scratch.count(UNKNOWN_TYPE_TOTAL).await, 1);
    assert_eq!(scratch.count(DEAD_LETTERED_TOTAL).await, 0);
    assert_eq!(scratch.count(WELCOME_NOTIFICATIONS).await, 1);
}

#[tokio::test]
async fn two_instances_in_one_group_apply_each_event_once() {
    let scratch = Scratch::new().await;
    let producer = producer();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let mut tasks = Vec::new();
    for _ in 0..2 {
        let consumer = scratch.consumer();
        let mut stopped = stopped.clone();
        tasks.push(tokio::spawn(consumer.run(async move {
            let _ = stopped.wait_for(|s| *s).await;
        })));
    }
    // Produce while the group forms and rebalances, so deliveries straddle assignments.
    let n = 1500;
    send_many(&producer, &scratch.topic, n).await;

    let all = eventually(SETTLE, || async {
        scratch.count(WELCOME_NOTIFICATIONS).await == n as i64
    })
    .await;
    assert!(all, "every event applied");
    let _ = stop.send(true);
    for task in tasks {
        task.await.unwrap();
    }
    scratch.assert_each_applied_once(n as i64).await;
}

#[tokio::test]
async fn shutdown_commits_offsets_so_a_restart_redelivers_nothing() {
    let scratch = Scratch::new().await;
    let producer = producer();
    send_many(&producer, &scratch.topic, 50).await;

    let consumer = scratch.consumer();
    let (stop, mut stopped) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(consumer.run(async move {
        let _ = stopped.wait_for(|s| *s).await;
    }));
    assert!(
        eventually(SETTLE, || async {
            scratch.count(WELCOME_NOTIFICATIONS).await == 50
        })
        .await
    );
    let _ = stop.send(true);
    task.await.unwrap();

    // A new member of the same group starts after the committed offsets.
    let last = Registration::new();
    send(&producer, &scratch.topic, &last).await;
    let mut consumer = scratch.consumer();
    drive_until_notified(&mut consumer, &scratch, 51).await;
    drain(&mut consumer).await;
    assert_eq!(scratch.count(DUPLICATES_TOTAL).await, 0);
}
