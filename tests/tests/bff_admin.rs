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
        .execute("UPDATE users.outbox SET published_at = now()", &[])
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
    let unpublished: i64 = client
        .query_one(
            "SELECT count(*) FROM users.outbox WHERE published_at IS NULL",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(unpublished, 1);
}
