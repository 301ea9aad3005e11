//! The relay process: `/health`, `/metrics` and the `replay` command.

use std::time::Duration;

use outbox_relay::service::startup::App;
use platform::db::DbConfig;
use platform::testing::spawn_service;
use tests::relay_kit::*;

fn env_for(db: &DbConfig, brokers: &str) -> Vec<(String, String)> {
    let mut env = db.to_env();
    env.extend(
        [
            ("PORT", "0"),
            ("DB_TIMEOUT_MS", "500"),
            ("KAFKA_BROKERS", brokers),
            ("RELAY_MESSAGE_TIMEOUT_MS", "2000"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned())),
    );
    env
}

async fn spawn_app(env: Vec<(String, String)>) -> (String, tokio::sync::oneshot::Sender<()>) {
    spawn_service::<App>(env).await
}

async fn health(base: &str) -> (u16, serde_json::Value) {
    let response = reqwest::get(format!("{base}/health")).await.unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

/// `/health` once its first background check has run (before that it says "starting").
async fn checked_health(base: &str) -> (u16, serde_json::Value) {
    let checked = eventually(Duration::from_secs(10), || async {
        health(base).await.1["status"] != "starting"
    })
    .await;
    assert!(checked, "the readiness checks ran");
    health(base).await
}

#[tokio::test]
async fn health_and_metrics_report_the_leader_the_database_the_broker_and_the_backlog() {
    let db = scratch_db().await;
    let (base, _stop) = spawn_app(env_for(&db, &brokers())).await;
    let leader = eventually(Duration::from_secs(5), || async {
        health(&base).await.1["role"] == "leader"
    })
    .await;
    assert!(leader);
    let (status, body) = health(&base).await;
    assert_eq!(status, 200);
    assert_eq!(body["database"], "up");
    assert_eq!(body["broker"], "up");

    let topic = scratch_topic(1).await;
    write_events(&db, &topic, "UserRegistered", &interleaved(2, 1)).await;
    assert!(
        eventually(Duration::from_secs(10), || async {
            unpublished(&db).await == 0
        })
        .await,
        "the process relays"
    );
    let metrics = reqwest::get(format!("{base}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for name in [
        "outbox_backlog",
        "outbox_oldest_unpublished_age_seconds",
        "outbox_relay_is_leader",
        "outbox_published_total",
        "outbox_commit_to_ack_seconds_bucket",
    ] {
        assert!(metrics.contains(name), "{name} missing from /metrics");
    }
}

#[tokio::test]
async fn health_tells_a_broker_outage_from_a_database_outage() {
    let db = scratch_db().await;
    let (base, _stop) = spawn_app(env_for(&db, "127.0.0.1:1")).await;
    let (status, body) = checked_health(&base).await;
    // Unready (it cannot publish), but it says which dependency is away, and it still
    // serves its figures.
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["broker"], "down");
    assert_eq!(body["database"], "up");
    let metrics = reqwest::get(format!("{base}/metrics")).await.unwrap();
    assert_eq!(
        metrics.status().as_u16(),
        200,
        "metrics served while Kafka is away"
    );

    let no_db = DbConfig {
        db_port: 1,
        ..db.clone()
    };
    let (base, _stop) = spawn_app(env_for(&no_db, &brokers())).await;
    let (status, body) = checked_health(&base).await;
    assert_eq!(status, 503);
    assert_eq!(body["database"], "down");
    assert_eq!(body["role"], "standby");
}

fn replay_command(db: &DbConfig, args: &[&str]) -> std::process::Output {
    std::process::Command::new(platform::testing::binary_path("outbox-relay"))
        .arg("replay")
        .args(args)
        .envs(env_for(db, &brokers()))
        .output()
        .unwrap()
}

#[tokio::test]
async fn the_replay_command_refuses_no_filter_counts_on_dry_run_and_requeues() {
    let db = scratch_db().await;
    write_events(&db, "unused", "UserRegistered", &interleaved(3, 1)).await;
    mark_published(&db).await;

    let refused = replay_command(&db, &[]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--all"));

    let dry = replay_command(&db, &["--event-type", "UserRegistered", "--dry-run"]);
    assert!(dry.status.success());
    assert_eq!(
        String::from_utf8_lossy(&dry.stdout).trim(),
        "would re-queue 3 events (dry run)"
    );
    assert_eq!(unpublished(&db).await, 0);

    let real = replay_command(&db, &["--all"]);
    assert_eq!(
        String::from_utf8_lossy(&real.stdout).trim(),
        "re-queued 3 events"
    );
    assert_eq!(unpublished(&db).await, 3);

    // Both replays are in the audit log as an operator's (no actor).
    let rows = db
        .connect()
        .await
        .unwrap()
        .query(
            "SELECT via, outcome, actor IS NULL, detail FROM auth.audit_log \
             WHERE action = 'outbox.replay' ORDER BY id",
            &[],
        )
        .await
        .unwrap();
    let audited: Vec<(String, String, bool, serde_json::Value)> = rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect();
    let ok = |dry_run: bool| {
        (
            "cli".to_owned(),
            "ok".to_owned(),
            true,
            serde_json::json!({"count": 3, "dry_run": dry_run}),
        )
    };
    assert_eq!(audited, [ok(true), ok(false)]);

    let bad_time = replay_command(&db, &["--since", "yesterday"]);
    assert_eq!(bad_time.status.code(), Some(2));
}
