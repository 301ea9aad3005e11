//! Per-account throttling of credential checks and the bounded hashing queue, against the
//! real PostgreSQL.

mod common;

use std::time::Duration;

use common::{registration, scratch_db, spawn_app, spawn_app_with, TestApp, KEY};
use platform::testing::eventually;
use serde_json::{json, Value};

const PASSWORD: &str = "correct horse battery staple";

/// A credential check from client `client` (if any): the status, `Retry-After`, the body.
async fn check(
    app: &TestApp,
    email: &str,
    password: &str,
    client: Option<&str>,
) -> (u16, Option<String>, Value) {
    let mut request = app
        .http
        .post(app.url("/api/v1/verify-credentials"))
        .bearer_auth(KEY)
        .json(&json!({"email": email, "password": password}));
    if let Some(client) = client {
        request = request.header("X-Client-Ip", client);
    }
    let response = request.send().await.expect("request");
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    (
        status,
        retry_after,
        response.json().await.unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn after_five_failures_an_email_waits_known_or_not_and_a_success_resets_it() {
    let app = spawn_app().await;
    app.register(&registration("ada@example.com")).await;
    for email in ["ada@example.com", "nobody@example.com"] {
        for _ in 0..5 {
            let (status, _, body) = check(&app, email, "wrong password!", None).await;
            assert_eq!((status, body), (200, json!({"valid": false})), "{email}");
        }
        // The sixth attempt must wait, the same way whether the account exists or not.
        let (status, retry_after, body) = check(&app, email, "wrong password!", None).await;
        assert_eq!(status, 429, "{email}: {body}");
        assert_eq!(retry_after.as_deref(), Some("1"));
        assert_eq!(body["error"], "Too many requests");
    }
    // Even the right password waits (the throttle is checked before the password is) ...
    let (status, _, _) = check(&app, "ADA@example.com ", PASSWORD, None).await;
    assert_eq!(status, 429, "the key is the normalised email");
    // ... and passes once the delay is over; then the count starts again.
    let passed = eventually(Duration::from_secs(5), || async {
        let (status, _, body) = check(&app, "ada@example.com", PASSWORD, None).await;
        status == 200 && body["valid"] == true
    })
    .await;
    assert!(passed, "the right password passes after the wait");
    let (status, _, _) = check(&app, "ada@example.com", "wrong password!", None).await;
    assert_eq!(status, 200, "a success resets the count");
}

#[tokio::test]
async fn a_recent_good_client_is_not_locked_out_by_a_flood() {
    let app = spawn_app().await;
    app.register(&registration("ada@example.com")).await;
    let owner = Some("198.51.100.7");
    let attacker = Some("203.0.113.9");
    let (_, _, first) = check(&app, "ada@example.com", PASSWORD, owner).await;
    assert_eq!(first["valid"], true);
    for _ in 0..8 {
        check(&app, "ada@example.com", "guess guess guess", attacker).await;
    }
    let (status, _, _) = check(&app, "ada@example.com", PASSWORD, attacker).await;
    assert_eq!(status, 429);
    let (status, _, body) = check(&app, "ada@example.com", PASSWORD, owner).await;
    assert_eq!((status, body["valid"].clone()), (200, json!(true)));
}

#[tokio::test]
async fn a_full_hashing_queue_answers_503_with_retry_after_and_nothing_else_fails() {
    let db = scratch_db().await;
    let app = spawn_app_with(
        db.clone(),
        db,
        &[("HASH_QUEUE", "1"), ("SCRYPT_LOG_N", "15")],
    )
    .await;
    // Distinct emails, so no account throttle is involved: only the queue.
    let checks = (0..12).map(|i| {
        let app = &app;
        async move { check(app, &format!("burst{i}@example.com"), PASSWORD, None).await }
    });
    let answers = futures::future::join_all(checks).await;
    let busy: Vec<_> = answers
        .iter()
        .filter(|(status, ..)| *status == 503)
        .collect();
    assert!(
        !busy.is_empty(),
        "12 checks at once on a queue of 1: some must be refused"
    );
    for (status, retry_after, body) in &answers {
        match status {
            200 => assert_eq!(body["valid"], false),
            503 => assert_eq!(retry_after.as_deref(), Some("1"), "{body}"),
            other => panic!("unexpected {other}: {body}"),
        }
    }
}
