//! The `user_directory` read model against the real Kafka and PostgreSQL: events applied
//! in version order per user, a gap parked (its partition going on) until the missing
//! version arrives, duplicates by version skipped, a snapshot that sets the whole row, and
//! the events of an erased user skipped, never dead-lettered.

mod common;

use common::{drive_until, producer, send_raw, Registration, Scratch};
use outbox_relay::envelope::Attributes;
use rdkafka::producer::FutureProducer;
use serde_json::{json, Value};
use uuid::Uuid;

const ROW: &str = "SELECT email, first_name, last_name, phone, role, status, version \
    FROM consumer.user_directory WHERE user_id = $1";

/// Sends one user event at `version` with `data` (the user id and version are added).
async fn send_event(
    producer: &FutureProducer,
    topic: &str,
    user: Uuid,
    event_type: &str,
    version: i64,
    mut data: Value,
) -> Uuid {
    let id = Uuid::now_v7();
    data["user_id"] = json!(user);
    data["version"] = json!(version);
    let headers: Vec<(String, Vec<u8>)> = Attributes {
        id,
        source: "/user-service".into(),
        event_type: event_type.into(),
        time: chrono::Utc::now(),
        subject: Some(user.to_string()),
        traceparent: None,
        user_version: Some(version),
    }
    .to_headers()
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.into_bytes()))
    .collect();
    send_raw(
        producer,
        topic,
        &user.to_string(),
        data.to_string().as_bytes(),
        &headers,
    )
    .await;
    id
}

fn registered(user: &Registration) -> Value {
    let mut data = user.data();
    data["phone"] = json!("+15550100001");
    data
}

async fn row(scratch: &Scratch, user: Uuid) -> Option<Vec<Option<String>>> {
    let client = scratch.client().await;
    client.query_opt(ROW, &[&user]).await.unwrap().map(|row| {
        let mut fields: Vec<Option<String>> = (0..6).map(|i| row.get(i)).collect();
        fields.push(Some(row.get::<_, i64>(6).to_string()));
        fields
    })
}

fn text(values: &[Option<&str>]) -> Vec<Option<String>> {
    values.iter().map(|v| v.map(str::to_owned)).collect()
}

#[tokio::test]
async fn a_gap_is_held_without_blocking_its_partition_and_applied_when_the_missing_version_arrives()
{
    let scratch = Scratch::new().await;
    let producer = producer();
    let user = Registration::new();
    let other = Registration::new();
    send_event(
        &producer,
        &scratch.topic,
        user.user_id,
        "UserRegistered",
        1,
        registered(&user),
    )
    .await;
    // Version 3 before version 2.
    let rename = json!({"changed": {"first_name": "Augusta"}});
    send_event(
        &producer,
        &scratch.topic,
        user.user_id,
        "UserProfileUpdated",
        3,
        rename,
    )
    .await;
    // A later user on the same topic is applied although the first one waits.
    send_event(
        &producer,
        &scratch.topic,
        other.user_id,
        "UserRegistered",
        1,
        other.data(),
    )
    .await;

    let mut consumer = scratch.consumer();
    drive_until(
        &mut consumer,
        &scratch,
        "SELECT count(*) FROM consumer.user_directory",
        2,
    )
    .await;
    drive_until(
        &mut consumer,
        &scratch,
        "SELECT count(*) FROM consumer.held_events",
        1,
    )
    .await;
    let held = row(&scratch, user.user_id).await.unwrap();
    assert_eq!(
        (held[1].as_deref(), held[6].as_deref()),
        (Some("Ada"), Some("1"))
    );
    assert_eq!(
        scratch
            .count("SELECT held_total FROM consumer.counters")
            .await,
        1
    );

    // The missing version: both apply, in order, and nothing is held any more.
    let phone = json!({"changed": {"phone": null, "last_name": "King"}});
    send_event(
        &producer,
        &scratch.topic,
        user.user_id,
        "UserProfileUpdated",
        2,
        phone,
    )
    .await;
    drive_until(
        &mut consumer,
        &scratch,
        &format!(
            "SELECT count(*) FROM consumer.user_directory WHERE user_id = '{}' AND version = 3",
            user.user_id
        ),
        1,
    )
    .await;
    assert_eq!(
        row(&scratch, user.user_id).await.unwrap(),
        text(&[
            Some(&user.email),
            Some("Augusta"),
            Some("King"),
            None,
            Some("user"),
            Some("active"),
            Some("3")
        ])
    );
    assert_eq!(
        scratch
            .count("SELECT count(*) FROM consumer.held_events")
            .await,
        0
    );

    // An older or equal version is a duplicate (a new event id, so not the inbox's): skipped and counted.
    let stale = json!({"changed": {"first_name": "Stale"}});
    send_event(
        &producer,
        &scratch.topic,
        user.user_id,
        "UserProfileUpdated",
        3,
        stale,
    )
    .await;
    drive_until(
        &mut consumer,
        &scratch,
        "SELECT stale_versions_total FROM consumer.counters",
        1,
    )
    .await;
    assert_eq!(
        row(&scratch, user.user_id).await.unwrap()[1].as_deref(),
        Some("Augusta")
    );
    assert_eq!(
        scratch
            .count("SELECT dead_lettered_total FROM consumer.counters")
            .await,
        0
    );
}

#[tokio::test]
async fn a_snapshot_sets_the_row_and_an_erased_user_keeps_no_personal_data() {
    let scratch = Scratch::new().await;
    let producer = producer();
    let user = Registration::new();
    send_event(
        &producer,
        &scratch.topic,
        user.user_id,
        "UserRegistered",
        1,
        registered(&user),
    )
    .await;
    // A gap that only a snapshot closes (versions 2 to 4 never come: purged, say).
    send_event(
        &producer,
        &scratch.topic,
        user.user_id,
        "UserDeactivated",
        6,
        json!({"at": "2026-01-01T00:00:00Z"}),
    )
    .await;
    let snapshot = json!({
        "email": user.email, "first_name": "Ada", "last_name": "Byron",
        "phone": null, "role": "admin", "status": "active",
    });
    send_event(
        &producer,
        &scratch.topic,
        user.user_id,
        "UserSnapshot",
        5,
        snapshot,
    )
    .await;
    let mut consumer = scratch.consumer();
    drive_until(
        &mut consumer,
        &scratch,
        &format!(
            "SELECT count(*) FROM consumer.user_directory WHERE user_id = '{}' AND version = 6",
            user.user_id
        ),
        1,
    )
    .await;
    assert_eq!(
        row(&scratch, user.user_id).await.unwrap(),
        text(&[
            Some(&user.email),
            Some("Ada"),
            Some("Byron"),
            None,
            Some("admin"),
            Some("deactivated"),
            Some("6")
        ])
    );
    assert_eq!(
        scratch
            .count("SELECT count(*) FROM consumer.held_events")
            .await,
        0
    );

    // Erasure: a tombstone, the welcome row gone, and later events (scrubbed or not)
    // skipped without a dead letter.
    send_event(
        &producer,
        &scratch.topic,
        user.user_id,
        "UserErased",
        7,
        json!({}),
    )
    .await;
    let scrubbed = json!({"erased": true});
    send_event(
        &producer,
        &scratch.topic,
        user.user_id,
        "UserRegistered",
        1,
        scrubbed,
    )
    .await;
    send_event(
        &producer,
        &scratch.topic,
        user.user_id,
        "UserReactivated",
        8,
        json!({"at": "2026-01-01T00:00:00Z"}),
    )
    .await;
    drive_until(
        &mut consumer,
        &scratch,
        "SELECT erased_skipped_total FROM consumer.counters",
        2,
    )
    .await;
    assert_eq!(
        row(&scratch, user.user_id).await.unwrap(),
        text(&[
            None,
            None,
            None,
            None,
            Some("admin"),
            Some("erased"),
            Some("7")
        ])
    );
    let client = scratch.client().await;
    for table in ["user_directory", "welcome_notifications", "held_events"] {
        let sql =
            format!("SELECT count(*) FROM consumer.{table} t WHERE t::text LIKE '%' || $1 || '%'");
        let found: i64 = client.query_one(&sql, &[&user.email]).await.unwrap().get(0);
        assert_eq!(
            found, 0,
            "the erased user's email is still in consumer.{table}"
        );
    }
    assert_eq!(
        scratch
            .count("SELECT dead_lettered_total FROM consumer.counters")
            .await,
        0
    );
}

#[tokio::test]
async fn a_backlog_on_every_partition_is_applied_in_each_users_version_order() {
    // A backlog already on the topic when the consumer starts: the running consumer
    // settles it partition by partition, the partitions side by side. Each user's events
    // must still apply in version order: none waits for a version before it, none is
    // skipped as stale, every row ends at the last version.
    const USERS: usize = 150;
    const VERSIONS: i64 = 20;
    let scratch = Scratch::new().await;
    let producer = producer();
    let users: Vec<Registration> = (0..USERS).map(|_| Registration::new()).collect();
    for version in 1..=VERSIONS {
        // Every user's version n is acknowledged before any version n + 1 is sent.
        let sends = users.iter().map(|user| {
            let (event_type, data) = match version {
                1 => ("UserRegistered", registered(user)),
                _ => (
                    "UserProfileUpdated",
                    json!({"changed": {"first_name": format!("v{version}")}}),
                ),
            };
            send_event(
                &producer,
                &scratch.topic,
                user.user_id,
                event_type,
                version,
                data,
            )
        });
        futures::future::join_all(sends).await;
    }

    let consumer = scratch.consumer();
    let (stop, mut stopped) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(consumer.run(async move {
        let _ = stopped.wait_for(|s| *s).await;
    }));
    let total = USERS as i64 * VERSIONS;
    let applied = common::eventually(common::SETTLE, || async {
        scratch.count(common::PROCESSED_TOTAL).await == total
    })
    .await;
    let _ = stop.send(true);
    task.await.unwrap();
    assert!(applied, "every event applied");
    let counted =
        "SELECT held_total + stale_versions_total + duplicates_total FROM consumer.counters";
    assert_eq!(scratch.count(counted).await, 0, "held, stale or duplicate");
    for user in &users {
        assert_eq!(
            row(&scratch, user.user_id).await,
            Some(text(&[
                Some(&user.email),
                Some("v20"),
                Some("Lovelace"),
                Some("+15550100001"),
                Some("user"),
                Some("active"),
                Some("20"),
            ])),
            "user {}",
            user.user_id
        );
    }
}
