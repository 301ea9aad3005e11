//! Working the dead-letter topic against the real Kafka and PostgreSQL: a poison record
//! is listed and shown, redriven once its cause is fixed, applied once, and never
//! redriven twice; the `dlq` commands of the real binary print the same.

mod common;

use std::process::Command;

use common::{
    drain, drive_until, drive_until_notified, producer, send, send_raw, Registration, Scratch,
    DEAD_LETTERED_TOTAL, DUPLICATES_TOTAL,
};
use event_consumer::dead_letters::{DeadLetters, Filter, LetterId, Selection};
use platform::kafka::KafkaConfig;
use rdkafka::message::{Headers as _, Message as _};

fn tool(scratch: &Scratch) -> DeadLetters {
    DeadLetters::new(
        KafkaConfig::plaintext(common::brokers()),
        scratch.db.pool(),
        &scratch.dlq,
        &scratch.topic,
    )
}

/// Runs `event-consumer dlq ARGS` against this test's topics; answers the exit code and
/// what it printed.
fn dlq(scratch: &Scratch, args: &[&str]) -> (i32, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_event-consumer"))
        .env("ENV", "development")
        .envs(scratch.env())
        .arg("dlq")
        .args(args)
        .output()
        .expect("the event-consumer binary runs");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test]
async fn a_poison_record_is_listed_shown_redriven_once_fixed_and_applied_once() {
    let scratch = Scratch::new().await;
    // The cause: a rule of the read side that refuses this user (SQLSTATE 23514, a
    // permanent error), later dropped as a fix would.
    scratch
        .client()
        .await
        .batch_execute(
            "ALTER TABLE consumer.welcome_notifications \
             ADD CONSTRAINT no_poison CHECK (first_name <> 'Poison')",
        )
        .await
        .unwrap();
    let producer = producer();
    let before = Registration::new();
    let poison = Registration::new();
    let after = Registration::new();
    send(&producer, &scratch.topic, &before).await;
    let mut data = poison.data();
    data["first_name"] = "Poison".into();
    send_raw(
        &producer,
        &scratch.topic,
        &poison.user_id.to_string(),
        data.to_string().as_bytes(),
        &poison.headers("UserRegistered"),
    )
    .await;
    send(&producer, &scratch.topic, &after).await;
    let mut consumer = scratch.consumer();
    drive_until(&mut consumer, &scratch, DEAD_LETTERED_TOTAL, 1).await;
    drive_until_notified(&mut consumer, &scratch, 2).await;

    // Listed, with why and what.
    let tool = tool(&scratch);
    let listed = tool.list(&Filter::default(), 100).await.unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    let letter = &listed[0];
    assert_eq!(letter.event_id, Some(poison.event_id.to_string()));
    assert_eq!(letter.event_type.as_deref(), Some("UserRegistered"));
    assert_eq!(letter.key, Some(poison.user_id.to_string()));
    assert!(
        letter.error.as_deref().unwrap().contains("23514"),
        "{letter:?}"
    );
    assert_eq!(
        letter.original_topic.as_deref(),
        Some(scratch.topic.as_str())
    );
    assert_eq!(letter.redrive_count, 0);
    assert!(letter.redriven_at.is_none());
    let other_type = Filter {
        event_type: Some("UserErased".into()),
        ..Filter::default()
    };
    assert!(tool.list(&other_type, 100).await.unwrap().is_empty());
    let later = Filter {
        since: Some(chrono::Utc::now() + chrono::Duration::hours(1)),
        ..Filter::default()
    };
    assert!(tool.list(&later, 100).await.unwrap().is_empty());
    let earlier = Filter {
        since: Some(chrono::Utc::now() - chrono::Duration::hours(1)),
        ..Filter::default()
    };
    assert_eq!(tool.list(&earlier, 100).await.unwrap().len(), 1);

    // Shown, with its headers and value; nothing sits at the next offset.
    let id: LetterId = letter.id.parse().unwrap();
    let detail = tool.show(id).await.unwrap().expect("the dead letter");
    assert!(detail.value.as_deref().unwrap().contains("Poison"));
    assert_eq!(
        detail.headers.get("ce_id"),
        Some(&poison.event_id.to_string())
    );
    let next = LetterId {
        offset: id.offset + 1,
        ..id
    };
    assert!(tool.show(next).await.unwrap().is_none());

    // The binary prints the same; an unknown id is a usage error.
    let (code, out, err) = dlq(&scratch, &["list"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains(&letter.id) && out.contains(&poison.event_id.to_string()),
        "{out}"
    );
    assert!(out.contains("1 dead letter\n"), "{out}");
    let (code, out, _) = dlq(&scratch, &["show", &letter.id]);
    assert_eq!(code, 0);
    assert!(out.contains("\"error\"") && out.contains("23514"), "{out}");
    let (code, _, err) = dlq(&scratch, &["show", &next.to_string()]);
    assert_eq!(code, 2);
    assert!(err.contains("no dead letter"), "{err}");
    let (code, _, err) = dlq(&scratch, &["redrive"]);
    assert_eq!(code, 2);
    assert!(err.contains("say which dead letters"), "{err}");

    // A dry run says what it would do and records nothing.
    let dry = Selection {
        all: true,
        dry_run: true,
        ..Selection::default()
    };
    let report = tool.redrive(&dry).await.unwrap();
    assert!(report.dry_run);
    assert_eq!(report.redriven.len(), 1);
    let (code, out, _) = dlq(&scratch, &["redrive", "--all", "--dry-run"]);
    assert_eq!(code, 0);
    assert!(
        out.contains("would redrive 1 dead letter (dry run)"),
        "{out}"
    );

    // The cause is fixed; the redrive sends it back and the consumer applies it, once.
    scratch
        .client()
        .await
        .batch_execute("ALTER TABLE consumer.welcome_notifications DROP CONSTRAINT no_poison")
        .await
        .unwrap();
    let by_id = Selection {
        ids: vec![letter.id.clone()],
        ..Selection::default()
    };
    let report = tool.redrive(&by_id).await.unwrap();
    assert_eq!(report.redriven.len(), 1, "{report:?}");
    assert!(report.failed.is_empty() && report.already_redriven.is_empty());
    drive_until_notified(&mut consumer, &scratch, 3).await;
    assert_eq!(scratch.welcome_statuses(&poison.user_id).await, ["pending"]);

    // What went back: the original record, no failure headers, a redrive count.
    let records = platform::testing::read_topic(&scratch.topic, 4, common::SETTLE).await;
    let header_list = |record: &rdkafka::message::OwnedMessage| -> Vec<(String, String)> {
        record
            .headers()
            .map(|hs| {
                hs.iter()
                    .map(|h| {
                        let value = String::from_utf8_lossy(h.value.unwrap_or_default());
                        (h.key.to_owned(), value.into_owned())
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    let resent: Vec<_> = records
        .iter()
        .filter(|r| header_list(r).iter().any(|(k, _)| k == "redrive_count"))
        .collect();
    assert_eq!(resent.len(), 1, "{} records", records.len());
    let redriven = resent[0];
    assert_eq!(redriven.key(), Some(poison.user_id.to_string().as_bytes()));
    assert_eq!(redriven.payload(), Some(data.to_string().as_bytes()));
    let headers = header_list(redriven);
    assert!(
        headers.contains(&("redrive_count".into(), "1".into())),
        "{headers:?}"
    );
    assert!(headers.contains(&("ce_id".into(), poison.event_id.to_string())));
    for failure in ["error", "failed_at", "original_topic", "original_offset"] {
        assert!(headers.iter().all(|(k, _)| k != failure), "{headers:?}");
    }

    // A second redrive, by any selection, leaves it alone.
    let all = Selection {
        all: true,
        ..Selection::default()
    };
    let again = tool.redrive(&all).await.unwrap();
    assert!(again.redriven.is_empty(), "{again:?}");
    assert_eq!(again.already_redriven, std::slice::from_ref(&letter.id));
    let (code, out, _) = dlq(&scratch, &["redrive", "--all"]);
    assert_eq!(code, 0);
    assert!(
        out.contains("redriven 0 dead letters, 1 skipped, 0 failed"),
        "{out}"
    );
    let listed = tool.list(&Filter::default(), 100).await.unwrap();
    assert!(listed[0].redriven_at.is_some());
    // Each redrive command is audited as an operator's: the refused one, the dry run and
    // the one that skipped.
    let rows = scratch
        .client()
        .await
        .query(
            "SELECT outcome, parameters->>'dry_run', detail->'already_redriven' \
             FROM auth.audit_log WHERE action = 'dlq.redrive' AND via = 'cli' \
             AND actor IS NULL ORDER BY id",
            &[],
        )
        .await
        .unwrap();
    let audited: Vec<(String, String, Option<serde_json::Value>)> = rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    let skipped = serde_json::json!([letter.id]);
    assert_eq!(
        audited,
        [
            ("refused".to_owned(), "false".to_owned(), None),
            (
                "ok".to_owned(),
                "true".to_owned(),
                Some(serde_json::json!([]))
            ),
            ("ok".to_owned(), "false".to_owned(), Some(skipped)),
        ]
    );

    // Had the record of the redrive been lost (a crash after the send), a second send is
    // a counted duplicate, never a second effect.
    scratch
        .client()
        .await
        .execute("DELETE FROM consumer.dlq_redrives", &[])
        .await
        .unwrap();
    assert_eq!(tool.redrive(&all).await.unwrap().redriven.len(), 1);
    drive_until(&mut consumer, &scratch, DUPLICATES_TOTAL, 1).await;
    drain(&mut consumer).await;
    assert_eq!(scratch.welcome_statuses(&poison.user_id).await, ["pending"]);
    scratch.assert_each_applied_once(3).await;
    assert_eq!(scratch.count(DEAD_LETTERED_TOTAL).await, 1);
}
