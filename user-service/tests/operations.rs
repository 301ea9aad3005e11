//! The outbox write path's guarantees, admin endpoints, set-role and a database outage.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::{registration, scratch_db, spawn_app, spawn_app_on, spawn_app_with, KEY};
use platform::testing::TcpProxy;
use serde_json::{json, Value};
use user_service::validation::NewUser;

#[tokio::test]
async fn the_outbox_row_carries_the_event_and_the_trace() {
    let app = spawn_app().await;
    let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let response = app
        .http
        .post(app.url("/api/v1/register"))
        .bearer_auth(KEY)
        .header("traceparent", traceparent)
        .json(&registration("Ada@Example.com"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let user: Value = response.json().await.unwrap();

    let client = app.pool.get().await.unwrap();
    let row = client
        .query_one(
            "SELECT aggregate_type, aggregate_id, event_type, topic, payload, headers, \
             event_id::text FROM users.outbox",
            &[],
        )
        .await
        .unwrap();
    let id = user["id"].as_str().unwrap();
    assert_eq!(row.get::<_, String>(0), "user");
    assert_eq!(row.get::<_, String>(1), id);
    assert_eq!(row.get::<_, String>(2), "UserRegistered");
    assert_eq!(row.get::<_, String>(3), "user-events");
    let payload: Value = row.get(4);
    assert_eq!(
        payload,
        json!({
            "user_id": id,
            "email": "Ada@example.com", // stored with its domain lower-cased
            "first_name": "Ada",
            "last_name": "Lovelace",
            "phone": null,
            "role": "user",
            "registered_at": payload["registered_at"],
            "version": 1,
        })
    );
    assert!(payload["registered_at"].as_str().unwrap().ends_with('Z'));
    let headers: Value = row.get(5);
    let event_id: String = row.get(6);
    assert_eq!(headers["ce_id"], event_id.as_str());
    assert_eq!(headers["ce_type"], "UserRegistered");
    assert_eq!(headers["ce_source"], "/user-service");
    assert_eq!(headers["ce_subject"], id);
    assert_eq!(headers["traceparent"], traceparent);
    assert_eq!(headers["ce_userversion"], "1");
    assert_eq!(
        uuid::Uuid::parse_str(&event_id).unwrap().get_version_num(),
        7
    );
}

#[tokio::test]
async fn a_failure_after_the_user_insert_leaves_neither_row() {
    let app = spawn_app().await;
    // Only this scratch database's outbox refuses inserts.
    app.execute(
        "CREATE FUNCTION users.refuse() RETURNS trigger LANGUAGE plpgsql AS $$ \
         BEGIN RAISE EXCEPTION 'outbox refused by test'; END $$; \
         CREATE TRIGGER refuse BEFORE INSERT ON users.outbox \
         FOR EACH ROW EXECUTE FUNCTION users.refuse();",
    )
    .await;
    let (status, body) = app.register(&registration("ada@example.com")).await;
    assert_eq!(status, 500);
    assert_eq!(body["error"], "Internal server error");
    assert!(
        !body.to_string().contains("refused"),
        "internals leaked: {body}"
    );
    assert_eq!(app.count("SELECT count(*) FROM users.users").await, 0);
    assert_eq!(app.count("SELECT count(*) FROM users.outbox").await, 0);

    // The library path as well.
    let mut client = app.pool.get().await.unwrap();
    let user = NewUser {
        email: "lib@example.com".into(),
        first_name: "Lib".into(),
        last_name: "User".into(),
        phone: None,
    };
    let result = user_service::register(&mut client, &user, "$scrypt$x", "t", None).await;
    assert!(result.is_err());
    assert_eq!(app.count("SELECT count(*) FROM users.users").await, 0);
}

#[tokio::test]
async fn twenty_concurrent_registrations_of_one_email_make_one_user_and_one_event() {
    let db = common::scratch_db().await;
    // A hashing queue long enough for all twenty: this is about the database's decision.
    let app = common::spawn_app_with(db.clone(), db, &[("HASH_QUEUE", "20")]).await;
    let attempts = (0..20).map(|i| {
        let app = &app;
        // Same address, different case: the database decides, case-insensitively.
        let email = if i % 2 == 0 {
            "race@example.com"
        } else {
            "RACE@example.com"
        };
        async move { app.register(&registration(email)).await.0 }
    });
    let mut statuses = futures::future::join_all(attempts).await;
    statuses.sort_unstable();
    let created = statuses.iter().filter(|s| **s == 201).count();
    let conflicts = statuses.iter().filter(|s| **s == 409).count();
    assert_eq!((created, conflicts), (1, 19), "{statuses:?}");
    assert_eq!(app.count("SELECT count(*) FROM users.users").await, 1);
    assert_eq!(app.count("SELECT count(*) FROM users.outbox").await, 1);
}

/// The relay's state once every committed row is published.
const PUBLISHED_ALL: &str = "UPDATE users.outbox_relay SET published = pg_current_snapshot(), \
         high_water = (SELECT max(id) FROM users.outbox), published_at = now()";

#[tokio::test]
async fn stats_report_users_and_the_outbox_backlog() {
    let app = spawn_app().await;
    app.register(&registration("one@example.com")).await;
    app.register(&registration("two@example.com")).await;
    let stats: Value = app.get("/api/v1/admin/stats").await.json().await.unwrap();
    assert_eq!(stats["users_total"], 2);
    assert_eq!(stats["registered_last_24h"], 2);
    assert!(stats["registered_today"].as_i64().unwrap() <= 2);
    assert_eq!(stats["outbox_backlog"], 2);
    assert!(stats["oldest_unpublished_age_s"].as_f64().unwrap() >= 0.0);
    assert_eq!(stats["last_published_at"], Value::Null);

    // The relay's bookkeeping once it has published both.
    app.execute(PUBLISHED_ALL).await;
    let stats: Value = app.get("/api/v1/admin/stats").await.json().await.unwrap();
    assert_eq!(stats["outbox_backlog"], 0);
    assert_eq!(stats["oldest_unpublished_age_s"], Value::Null);
    assert!(stats["last_published_at"].is_string());
}

#[tokio::test]
async fn replay_requeues_published_rows_and_refuses_an_unbounded_request() {
    let app = spawn_app().await;
    let (_, ada) = app.register(&registration("ada@example.com")).await;
    app.register(&registration("bob@example.com")).await;
    app.execute(PUBLISHED_ALL).await;
    let backlog = outbox_relay::bookkeeping::BACKLOG_ROWS;

    let replay = |body: Value| {
        let app = &app;
        async move {
            let response = app.post("/api/v1/admin/outbox/replay", &body).await;
            (
                response.status().as_u16(),
                response.json::<Value>().await.unwrap(),
            )
        }
    };
    assert_eq!(
        replay(json!({"all": true, "dry_run": true})).await,
        (200, json!({"count": 2, "dry_run": true}))
    );
    assert_eq!(app.count(backlog).await, 0, "a dry run changes nothing");

    assert_eq!(
        replay(json!({"aggregate_id": ada["id"]})).await,
        (200, json!({"count": 1, "dry_run": false}))
    );
    assert_eq!(app.count(backlog).await, 1);

    let (status, body) = replay(json!({})).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("Bad request")));
    let (status, _) = replay(json!({
        "since": "2030-01-02T00:00:00Z", "until": "2030-01-01T00:00:00Z"
    }))
    .await;
    assert_eq!(status, 400);
}

async fn set_role(db: &platform::db::DbConfig, email: &str) -> std::process::Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_user-service"))
        .args(["set-role", "--email", email, "--role", "admin"])
        .env_clear()
        .envs(common::env(db))
        .output()
        .await
        .unwrap()
}

#[tokio::test]
async fn set_role_promotes_a_user_and_fails_clearly_for_an_unknown_email() {
    let app = spawn_app().await;
    app.register(&registration("Ada@Example.com")).await;

    let promoted = set_role(&app.db, "ada@example.com").await;
    assert!(promoted.status.success(), "{promoted:?}");
    let stdout = String::from_utf8_lossy(&promoted.stdout);
    assert!(stdout.contains("user -> admin"), "{stdout}");
    let check = app
        .post(
            "/api/v1/verify-credentials",
            &json!({"email": "ada@example.com", "password": "correct horse battery staple"}),
        )
        .await;
    assert_eq!(check.json::<Value>().await.unwrap()["role"], "admin");

    let unknown = set_role(&app.db, "nobody@example.com").await;
    assert!(!unknown.status.success());
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("nobody@example.com"));
}

#[tokio::test]
async fn a_database_outage_is_503_promptly_and_the_service_recovers_by_itself() {
    let db = scratch_db().await;
    let upstream: SocketAddr = format!("{}:{}", db.db_host, db.db_port).parse().unwrap();
    let proxy = TcpProxy::start(upstream).await.unwrap();
    let mut through_proxy = db.clone();
    through_proxy.db_host = "127.0.0.1".into();
    through_proxy.db_port = proxy.port();
    let app = spawn_app_on(db, through_proxy).await;
    assert_eq!(
        app.register(&registration("before@example.com")).await.0,
        201
    );

    proxy.cut();
    let started = Instant::now();
    let (status, body) = app.register(&registration("during@example.com")).await;
    assert_eq!(status, 503);
    assert_eq!(body["error"], "Service unavailable");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    // Readiness is checked in the background, so it reports the outage within a refresh.
    let unready = platform::testing::eventually(Duration::from_secs(5), || async {
        let health = app.get_without_key("/health").await;
        health.status() == 503
    })
    .await;
    assert!(unready, "/health reports the database down");

    proxy.restore();
    let mut status = 0;
    for _ in 0..50 {
        status = app.register(&registration("after@example.com")).await.0;
        if status == 201 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status, 201, "the service did not recover");
    assert_eq!(app.count("SELECT count(*) FROM users.users").await, 2);
}

#[tokio::test]
async fn an_exhausted_pool_is_503_within_the_timeout_not_a_hang() {
    let db = scratch_db().await;
    let app = spawn_app_with(
        db.clone(),
        db,
        &[("DB_POOL_SIZE", "1"), ("DB_TIMEOUT_MS", "1000")],
    )
    .await;
    let (_, user) = app.register(&registration("ada@example.com")).await;
    let path = format!("/api/v1/users/{}", user["id"].as_str().unwrap());

    // The only pooled connection blocks on a lock this test holds.
    let mut locker = app.db.connect().await.unwrap();
    let tx = locker.transaction().await.unwrap();
    tx.batch_execute("LOCK TABLE users.users IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    let blocked = tokio::spawn({
        let (http, url) = (app.http.clone(), app.url(&path));
        async move {
            http.get(url)
                .bearer_auth(KEY)
                .send()
                .await
                .unwrap()
                .status()
        }
    });
    // Wait until that request really holds the only connection, blocked on the lock.
    let waiting = platform::testing::eventually(Duration::from_secs(5), || {
        let locker = &tx;
        async move {
            locker
                .query_one(
                    "SELECT count(*) FROM pg_stat_activity \
                     WHERE datname = current_database() AND wait_event_type = 'Lock'",
                    &[],
                )
                .await
                .is_ok_and(|row| row.get::<_, i64>(0) > 0)
        }
    })
    .await;
    assert!(waiting, "the request is blocked on the table lock");

    let started = Instant::now();
    let response = app.get(&path).await;
    assert_eq!(response.status(), 503);
    assert_eq!(
        response.json::<Value>().await.unwrap()["error"],
        "Service unavailable"
    );
    assert!(started.elapsed() < Duration::from_secs(5));

    tx.rollback().await.unwrap();
    assert_eq!(blocked.await.unwrap(), 200);
    assert_eq!(app.get(&path).await.status(), 200);
}
