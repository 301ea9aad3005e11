//! Roles and the admin endpoints, with a fake consumer `/stats` (or none).

use poem::{get, handler, web::Json, Route};
use serde_json::{json, Value};
use tests::bff_kit::{spawn_fake, spawn_stack};

#[handler]
fn consumer_stats() -> Json<Value> {
    Json(json!({
        "processed_total": 7,
        "duplicates_total": 2,
        "dead_lettered_total": 1,
        "unknown_type_total": 0,
        "last_processed_at": "2025-01-01T00:00:00Z",
        "welcome_notifications": {"pending": 0, "total": 7},
        "registrations_per_day": [{"day": "2025-01-01", "count": 7}],
    }))
}

#[tokio::test]
async fn only_admins_see_the_dashboard_and_a_missing_source_is_named() {
    let (consumer, stop) = spawn_fake(Route::new().at("/stats", get(consumer_stats))).await;
    let mut stack = spawn_stack(&[("EVENT_CONSUMER_URL", consumer.as_str())]).await;
    stack.keep(stop);
    stack.register("user@example.com").await;
    stack.register("boss@example.com").await;
    stack.make_admin("boss@example.com").await;

    let (user, _) = stack.login("user@example.com").await;
    let (status, body) = stack.dashboard(&user).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"], "Forbidden");
    let (status, _) = stack
        .replay(&json!({"all": true, "dry_run": true}), &user)
        .await;
    assert_eq!(status, 403);

    let (admin, _) = stack.login("boss@example.com").await;
    let (status, body) = stack.dashboard(&admin).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["users"]["users_total"], 2);
    assert_eq!(body["users"]["outbox_backlog"], 2);
    assert_eq!(body["events"]["processed_total"], 7);
    assert_eq!(body["events"]["dead_lettered_total"], 1);
    assert_eq!(body["missing"], json!([]));
}

#[tokio::test]
async fn the_dashboard_survives_a_consumer_that_is_down() {
    // spawn_stack points the consumer at a closed port by default.
    let stack = spawn_stack(&[]).await;
    stack.register("boss@example.com").await;
    stack.make_admin("boss@example.com").await;
    let (admin, _) = stack.login("boss@example.com").await;
    let (status, body) = stack.dashboard(&admin).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["users"]["users_total"], 1);
    assert!(body.get("events").is_none());
    assert_eq!(body["missing"], json!(["event-consumer"]));
}

#[tokio::test]
async fn admins_replay_the_outbox_through_the_user_service() {
    let stack = spawn_stack(&[]).await;
    stack.register("boss@example.com").await;
    stack.make_admin("boss@example.com").await;
    let client = stack.pool.get().await.unwrap();
    client
        .batch_execute(tests::relay_kit::MARK_PUBLISHED)
        .await
        .unwrap();
    let (admin, _) = stack.login("boss@example.com").await;

    let (status, body) = stack
        .replay(
            &json!({"event_type": "UserRegistered", "dry_run": true}),
            &admin,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!({"count": 1, "dry_run": true}));

    let (status, body) = stack.replay(&json!({}), &admin).await;
    assert_eq!(status, 400, "no filter and not `all`: {body}");

    let (status, body) = stack.replay(&json!({"all": true}), &admin).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["count"], 1);
    let to_send: i64 = client
        .query_one(outbox_relay::bookkeeping::BACKLOG_ROWS, &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(to_send, 1, "the relay has the replayed event to send");
}

/// Produces a `UserRegistered` for a new user named `first_name`; answers its event id.
async fn produce_registration(topic: &str, first_name: &str) -> uuid::Uuid {
    use outbox_relay::envelope::Attributes;
    use rdkafka::producer::{FutureProducer, FutureRecord};
    let user_id = uuid::Uuid::now_v7();
    let event_id = uuid::Uuid::now_v7();
    let headers: Vec<(String, Vec<u8>)> = Attributes {
        id: event_id,
        source: "/user-service".into(),
        event_type: "UserRegistered".into(),
        time: chrono::Utc::now(),
        subject: Some(user_id.to_string()),
        traceparent: None,
        user_version: None,
    }
    .to_headers()
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.into_bytes()))
    .collect();
    let data = json!({
        "user_id": user_id, "email": format!("{}@example.com", user_id.simple()),
        "first_name": first_name, "last_name": "Lovelace", "phone": null, "role": "user",
        "registered_at": chrono::Utc::now(),
    })
    .to_string();
    let producer: FutureProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", platform::testing::brokers())
        .create()
        .unwrap();
    let key = user_id.to_string();
    producer
        .send(
            FutureRecord::to(topic)
                .key(&key)
                .payload(&data)
                .headers(outbox_relay::kafka::owned_headers(&headers)),
            std::time::Duration::from_secs(10),
        )
        .await
        .map_err(|(e, _)| e)
        .unwrap();
    event_id
}

#[tokio::test]
async fn admins_list_show_and_redrive_dead_letters_and_every_action_is_audited() {
    use std::time::Duration;
    use tests::bff_kit::{scratch_db, spawn_consumer, spawn_stack_on};
    let db = scratch_db().await;
    let topic = platform::testing::scratch_topic(3).await;
    let dlq = platform::testing::scratch_topic(1).await;
    // The cause of the dead letter: a read-side rule refusing this name, fixed later.
    let client = db.connect().await.unwrap();
    client
        .batch_execute(
            "ALTER TABLE consumer.welcome_notifications \
             ADD CONSTRAINT no_poison CHECK (first_name <> 'Poison')",
        )
        .await
        .unwrap();
    let (consumer, stop_consumer) = spawn_consumer(&db, &topic, &dlq).await;
    let mut stack = spawn_stack_on(db, &[("EVENT_CONSUMER_URL", consumer.as_str())]).await;
    stack.keep(stop_consumer);
    stack.register("user@example.com").await;
    stack.register("boss@example.com").await;
    stack.make_admin("boss@example.com").await;
    let (user, _) = stack.login("user@example.com").await;
    let (admin, _) = stack.login("boss@example.com").await;
    let poison = produce_registration(&topic, "Poison").await;

    // Admins only.
    for path in [
        "/api/v1/protected/admin/dlq",
        "/api/v1/protected/admin/dlq/0-0",
        "/api/v1/protected/admin/audit",
    ] {
        assert_eq!(stack.get(path, Some(&user)).await.0, 403, "{path}");
        assert_eq!(stack.get(path, None).await.0, 401, "{path}");
    }
    let (status, _) = stack
        .post(
            "/api/v1/protected/admin/dlq/redrive",
            &json!({"all": true}),
            Some(&user),
        )
        .await;
    assert_eq!(status, 403);

    // Listed once the consumer dead-lettered it.
    let listed_one = platform::testing::eventually(Duration::from_secs(60), || async {
        let (status, body) = stack.get("/api/v1/protected/admin/dlq", Some(&admin)).await;
        status == 200
            && body["dead_letters"]
                .as_array()
                .is_some_and(|l| l.len() == 1)
    })
    .await;
    let (_, listed) = stack.get("/api/v1/protected/admin/dlq", Some(&admin)).await;
    assert!(listed_one, "{listed}");
    let letter = &listed["dead_letters"][0];
    assert_eq!(letter["event_id"], poison.to_string());
    assert!(
        letter["error"].as_str().unwrap().contains("23514"),
        "{letter}"
    );
    let id = letter["id"].as_str().unwrap().to_owned();
    let (status, body) = stack
        .get(
            "/api/v1/protected/admin/dlq?event_type=UserErased",
            Some(&admin),
        )
        .await;
    assert_eq!(
        (status, body["dead_letters"].as_array().map(Vec::len)),
        (200, Some(0))
    );
    let (status, body) = stack
        .get("/api/v1/protected/admin/dlq?since=yesterday", Some(&admin))
        .await;
    assert_eq!(status, 400, "{body}");

    // Shown; a malformed id is 422 and a free offset 404, also with hostile text.
    let (status, body) = stack
        .get(&format!("/api/v1/protected/admin/dlq/{id}"), Some(&admin))
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(body["value"].as_str().unwrap().contains("Poison"));
    assert_eq!(body["headers"]["ce_id"], poison.to_string());
    let (status, _) = stack
        .get("/api/v1/protected/admin/dlq/0-999", Some(&admin))
        .await;
    assert_eq!(status, 404);
    for bad in ["zero", "0-x", "..%2F..%2Fstats", "0-1%3Fall%3Dtrue"] {
        let (status, body) = stack
            .get(&format!("/api/v1/protected/admin/dlq/{bad}"), Some(&admin))
            .await;
        assert_eq!(status, 422, "{bad}: {body}");
    }

    // Nothing selected is refused; the fix, then a redrive, then it is applied.
    let redrive = |body: Value| {
        let stack = &stack;
        let admin = admin.clone();
        async move {
            stack
                .post("/api/v1/protected/admin/dlq/redrive", &body, Some(&admin))
                .await
        }
    };
    let (status, body) = redrive(json!({})).await;
    assert_eq!(status, 422, "{body}");
    stack
        .pool
        .get()
        .await
        .unwrap()
        .batch_execute("ALTER TABLE consumer.welcome_notifications DROP CONSTRAINT no_poison")
        .await
        .unwrap();
    let (status, body) = redrive(json!({"ids": [id]})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["redriven"][0]["id"], id.as_str());
    let welcomed =
        "SELECT count(*) FROM consumer.welcome_notifications WHERE first_name = 'Poison'";
    let applied = platform::testing::eventually(Duration::from_secs(60), || async {
        let client = stack.pool.get().await.unwrap();
        let row = client.query_one(welcomed, &[]).await.unwrap();
        row.get::<_, i64>(0) == 1
    })
    .await;
    assert!(applied, "the redriven event was not applied");
    let (status, body) = redrive(json!({"all": true})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["redriven"], json!([]));
    assert_eq!(body["already_redriven"], json!([id]));

    // Each action is in the audit log, newest first, with who, what and how it ended.
    let (status, body) = stack
        .replay(&json!({"all": true, "dry_run": true}), &admin)
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, page) = stack
        .get("/api/v1/protected/admin/audit", Some(&admin))
        .await;
    assert_eq!(status, 200, "{page}");
    let records = page["records"].as_array().unwrap();
    let summary: Vec<(&str, &str)> = records
        .iter()
        .map(|r| {
            (
                r["action"].as_str().unwrap(),
                r["outcome"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("outbox.replay", "ok"),
            ("dlq.redrive", "ok"),
            ("dlq.redrive", "ok"),
            ("dlq.redrive", "refused"),
        ]
    );
    let (status, admin_profile) = stack.profile(&admin).await;
    assert_eq!(status, 200);
    assert!(records.iter().all(|r| r["actor"] == admin_profile["id"]));
    assert_eq!(records[2]["parameters"]["ids"], json!([id]));
    assert_eq!(records[2]["detail"]["redriven"], json!([id]));
    assert_eq!(records[1]["detail"]["already_redriven"], json!([id]));
    assert!(records.iter().all(|r| r["at"].is_string()));
    let (_, older) = stack
        .get("/api/v1/protected/admin/audit?limit=2", Some(&admin))
        .await;
    let before = older["next_before"].as_i64().unwrap();
    let (_, rest) = stack
        .get(
            &format!("/api/v1/protected/admin/audit?limit=2&before={before}"),
            Some(&admin),
        )
        .await;
    assert_eq!(rest["records"].as_array().unwrap().len(), 2);
    assert!(rest.get("next_before").is_none(), "{rest}");
    let (_, only) = stack
        .get(
            "/api/v1/protected/admin/audit?action=outbox.replay",
            Some(&admin),
        )
        .await;
    assert_eq!(only["records"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn admins_deactivate_and_reactivate_users_with_one_event_per_change_and_an_audit_record() {
    use std::time::Duration;
    let stack = spawn_stack(&[]).await;
    let user = stack.register("leaver@example.com").await;
    let user_id = user["id"].as_str().unwrap().to_owned();
    let boss = stack.register("chief@example.com").await;
    stack.make_admin("chief@example.com").await;
    let (admin, _) = stack.login("chief@example.com").await;
    let (access, _) = stack.login("leaver@example.com").await;
    let path = |verb: &str, id: &str| format!("/api/v1/protected/admin/users/{id}/{verb}");

    // Admins only; an unknown user is 404; an admin cannot deactivate themselves.
    let (status, _) = stack
        .post(&path("deactivate", &user_id), &json!({}), Some(&access))
        .await;
    assert_eq!(status, 403);
    let nobody = uuid::Uuid::now_v7().to_string();
    let (status, _) = stack
        .post(&path("deactivate", &nobody), &json!({}), Some(&admin))
        .await;
    assert_eq!(status, 404);
    let (status, body) = stack
        .post(
            &path("deactivate", boss["id"].as_str().unwrap()),
            &json!({}),
            Some(&admin),
        )
        .await;
    assert_eq!(status, 422, "{body}");

    // Deactivated: no login (403), and the open session stops within the window.
    let (status, body) = stack
        .post(&path("deactivate", &user_id), &json!({}), Some(&admin))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (body["changed"].clone(), body["user"]["is_active"].clone()),
        (json!(true), json!(false))
    );
    let (status, again) = stack
        .post(&path("deactivate", &user_id), &json!({}), Some(&admin))
        .await;
    assert_eq!((status, again["changed"].clone()), (200, json!(false)));
    assert_eq!(
        stack
            .login_with("leaver@example.com", tests::bff_kit::PASSWORD)
            .await
            .0,
        403
    );
    let stopped = tests::eventually(Duration::from_secs(5), || async {
        stack.profile_status(&access).await == 401
    })
    .await;
    assert!(
        stopped,
        "the session still works after the revocation window"
    );

    let (status, body) = stack
        .post(&path("reactivate", &user_id), &json!({}), Some(&admin))
        .await;
    assert_eq!((status, body["changed"].clone()), (200, json!(true)));
    assert_eq!(
        stack
            .login_with("leaver@example.com", tests::bff_kit::PASSWORD)
            .await
            .0,
        200
    );

    // One event per change, in order, in the outbox (none for the change that changed
    // nothing), with the user id only.
    let client = stack.pool.get().await.unwrap();
    let rows = client
        .query(
            "SELECT event_type, payload, headers->>'ce_userversion' FROM users.outbox \
             WHERE aggregate_id = $1 ORDER BY id",
            &[&user_id],
        )
        .await
        .unwrap();
    let types: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    assert_eq!(
        types,
        ["UserRegistered", "UserDeactivated", "UserReactivated"]
    );
    // Versions 1, 2, 3: one per change, in outbox order, in the data and the header.
    let versions: Vec<(Value, String)> = rows
        .iter()
        .map(|r| (r.get::<_, Value>(1)["version"].clone(), r.get(2)))
        .collect();
    assert_eq!(
        versions,
        [
            (json!(1), "1".to_owned()),
            (json!(2), "2".to_owned()),
            (json!(3), "3".to_owned())
        ]
    );
    let deactivated: Value = rows[1].get(1);
    assert_eq!(deactivated["user_id"], user_id.as_str());
    assert!(!deactivated.to_string().contains('@'), "{deactivated}");

    // And each attempt in the audit log.
    let (_, page) = stack
        .get("/api/v1/protected/admin/audit", Some(&admin))
        .await;
    let summary: Vec<(String, String, Value)> = page["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["action"].as_str().unwrap().to_owned(),
                r["outcome"].as_str().unwrap().to_owned(),
                r["detail"]["changed"].clone(),
            )
        })
        .collect();
    let expected = [
        ("user.reactivate", "ok", json!(true)),
        ("user.deactivate", "ok", json!(false)),
        ("user.deactivate", "ok", json!(true)),
        ("user.deactivate", "refused", Value::Null),
        ("user.deactivate", "refused", Value::Null),
    ]
    .map(|(a, o, c)| (a.to_owned(), o.to_owned(), c));
    assert_eq!(summary, expected);
}
