//! The signed-in user changes their profile through the BFF, against the real user
//! service: the registration's rules, a taken phone, optimistic concurrency with
//! `If-Match` / `ETag`, and one versioned `UserProfileUpdated` per change.

use serde_json::{json, Value};
use tests::bff_kit::{spawn_stack, Stack};

const PROFILE: &str = "/api/v1/protected/profile";

/// `PATCH /profile` with `body` and, if given, `If-Match`: status, ETag, body.
async fn patch(
    stack: &Stack,
    token: &str,
    if_match: Option<&str>,
    body: Value,
) -> (u16, String, Value) {
    let mut request = stack
        .http
        .patch(format!("{}{PROFILE}", stack.base))
        .bearer_auth(token)
        .json(&body);
    if let Some(if_match) = if_match {
        request = request.header("If-Match", if_match);
    }
    answer(request.send().await.unwrap()).await
}

/// A profile answer: its status, ETag and body.
async fn answer(response: reqwest::Response) -> (u16, String, Value) {
    let status = response.status().as_u16();
    let etag = response
        .headers()
        .get("etag")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    (status, etag, response.json().await.unwrap_or(Value::Null))
}

/// The profile events of `user_id` in the outbox: (version, changed fields).
async fn profile_events(stack: &Stack, user_id: &str) -> Vec<(i64, Value)> {
    let client = stack.pool.get().await.unwrap();
    client
        .query(
            "SELECT (headers->>'ce_userversion')::bigint, payload FROM users.outbox \
             WHERE aggregate_id = $1 AND event_type = 'UserProfileUpdated' ORDER BY id",
            &[&user_id],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| {
            let payload: Value = row.get(1);
            assert_eq!(payload["version"], row.get::<_, i64>(0), "{payload}");
            (row.get(0), payload["changed"].clone())
        })
        .collect()
}

#[tokio::test]
async fn a_profile_change_is_validated_versioned_and_one_event() {
    let stack = spawn_stack(&[]).await;
    let user = stack.register("grace@example.com").await;
    let id = user["id"].as_str().unwrap().to_owned();
    assert_eq!(user["version"], 1);
    let (token, _) = stack.login("grace@example.com").await;
    let read = stack
        .http
        .get(format!("{}{PROFILE}", stack.base))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(read.headers()["etag"], "\"1\"");

    // A change of some fields: the new profile and version, one event with what changed.
    let (status, etag, body) = patch(
        &stack,
        &token,
        Some("\"1\""),
        json!({"first_name": " Grace ", "phone": "+44 20 7946 0958"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(etag, "\"2\"");
    assert_eq!(
        (body["first_name"].clone(), body["phone"].clone()),
        (json!("Grace"), json!("+442079460958"))
    );
    assert_eq!(body["last_name"], "Lovelace", "a field left out stays");
    let (_, profile) = stack.profile(&token).await;
    assert_eq!(
        (profile["first_name"].clone(), profile["version"].clone()),
        (json!("Grace"), json!(2))
    );

    // The same values again change nothing: no event, the same version.
    let (status, etag, _) = patch(&stack, &token, None, json!({"first_name": "Grace"})).await;
    assert_eq!((status, etag.as_str()), (200, "\"2\""));

    // A stale If-Match is 412 with the current ETag, and nothing changes.
    let (status, etag, body) = patch(
        &stack,
        &token,
        Some("\"1\""),
        json!({"last_name": "Hopper"}),
    )
    .await;
    assert_eq!((status, etag.as_str()), (412, "\"2\""), "{body}");

    // The registration's rules, every bad field at once; a taken phone is 409.
    let (status, _, body) = patch(
        &stack,
        &token,
        None,
        json!({"first_name": "Gr\u{202e}ace", "last_name": "", "phone": "2025550123"}),
    )
    .await;
    assert_eq!(status, 422, "{body}");
    let fields: Vec<&str> = body["details"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["first_name", "last_name", "phone"]);
    let other = stack
        .post(
            "/api/v1/register",
            &json!({"email": "ada@example.com", "password": tests::bff_kit::PASSWORD,
                    "first_name": "Ada", "last_name": "Byron", "phone": "+12025550123"}),
            None,
        )
        .await;
    assert_eq!(other.0, 201);
    let (status, _, body) = patch(&stack, &token, None, json!({"phone": "+1 202 555 0123"})).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["details"]["field"], "phone");

    // Removing the phone is a change too.
    let (status, etag, body) = patch(&stack, &token, Some("W/\"2\""), json!({"phone": null})).await;
    assert_eq!((status, etag.as_str()), (200, "\"3\""), "{body}");
    assert!(body["phone"].is_null());

    assert_eq!(
        profile_events(&stack, &id).await,
        [
            (2, json!({"first_name": "Grace", "phone": "+442079460958"})),
            (3, json!({"phone": null})),
        ]
    );
    // No token, no change.
    let (status, _, _) = patch(&stack, "not-a-token", None, json!({"first_name": "Eve"})).await;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn two_concurrent_changes_of_one_version_are_never_a_lost_update() {
    let stack = spawn_stack(&[]).await;
    let user = stack.register("race@example.com").await;
    let id = user["id"].as_str().unwrap().to_owned();
    let (token, _) = stack.login("race@example.com").await;
    let (a, b) = tokio::join!(
        patch(
            &stack,
            &token,
            Some("\"1\""),
            json!({"first_name": "Alpha"})
        ),
        patch(
            &stack,
            &token,
            Some("\"1\""),
            json!({"first_name": "Bravo"})
        ),
    );
    let mut statuses = [a.0, b.0];
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 412], "{a:?} {b:?}");
    let winner = if a.0 == 200 { &a } else { &b };
    let (_, profile) = stack.profile(&token).await;
    assert_eq!(profile["first_name"], winner.2["first_name"]);
    let events = profile_events(&stack, &id).await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].0, 2);

    // Without If-Match both apply, one after the other: versions 3 and 4.
    let (c, d) = tokio::join!(
        patch(&stack, &token, None, json!({"last_name": "Charlie"})),
        patch(&stack, &token, None, json!({"last_name": "Delta"})),
    );
    assert_eq!((c.0, d.0), (200, 200));
    let versions: Vec<i64> = profile_events(&stack, &id)
        .await
        .iter()
        .map(|e| e.0)
        .collect();
    assert_eq!(versions, [2, 3, 4]);
}

#[tokio::test]
async fn cors_lets_the_browser_patch_with_if_match_and_read_the_etag() {
    let stack = spawn_stack(&[("CORS_ORIGINS", "https://app.example.com")]).await;
    let preflight = stack
        .http
        .request(reqwest::Method::OPTIONS, format!("{}{PROFILE}", stack.base))
        .header("Origin", "https://app.example.com")
        .header("Access-Control-Request-Method", "PATCH")
        .header(
            "Access-Control-Request-Headers",
            "authorization, content-type, if-match",
        )
        .send()
        .await
        .unwrap();
    assert!(preflight.status().is_success(), "{}", preflight.status());
    let allowed = |name: &str| {
        preflight
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_ascii_lowercase()
    };
    assert!(allowed("access-control-allow-methods").contains("patch"));
    assert!(allowed("access-control-allow-methods").contains("delete"));
    assert!(allowed("access-control-allow-headers").contains("if-match"));
    stack.register("cors@example.com").await;
    let (token, _) = stack.login("cors@example.com").await;
    let read = stack
        .http
        .get(format!("{}{PROFILE}", stack.base))
        .header("Origin", "https://app.example.com")
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    let exposed = read
        .headers()
        .get("access-control-expose-headers")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_ascii_lowercase();
    assert!(exposed.contains("etag"), "{exposed}");
}

#[tokio::test]
async fn a_password_change_checks_the_current_one_and_ends_the_other_sessions() {
    use std::time::Duration;
    use tests::bff_kit::PASSWORD;
    let stack = spawn_stack(&[]).await;
    let user = stack.register("moving@example.com").await;
    let id = user["id"].as_str().unwrap().to_owned();
    let (here, _) = stack.login("moving@example.com").await;
    let (elsewhere, elsewhere_refresh) = stack.login("moving@example.com").await;
    let change =
        |current: &str, new: &str| json!({"current_password": current, "new_password": new});
    let new_password = "a brand new and long passphrase 7";

    let (status, body) = stack
        .post(
            "/api/v1/protected/password",
            &change("wrong password!", new_password),
            Some(&here),
        )
        .await;
    assert_eq!(status, 403, "{body}");
    let (status, body) = stack
        .post(
            "/api/v1/protected/password",
            &change(PASSWORD, "short"),
            Some(&here),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["details"][0]["field"], "new_password");
    let (status, _) = stack
        .post(
            "/api/v1/protected/password",
            &change(PASSWORD, new_password),
            None,
        )
        .await;
    assert_eq!(status, 401);

    let (status, body) = stack
        .post(
            "/api/v1/protected/password",
            &change(PASSWORD, new_password),
            Some(&here),
        )
        .await;
    assert_eq!(status, 204, "{body}");
    assert_eq!(
        stack.login_with("moving@example.com", PASSWORD).await.0,
        401
    );
    assert_eq!(
        stack.login_with("moving@example.com", new_password).await.0,
        200
    );
    // This session goes on; the other one ends: its refresh at once, its access within
    // the revocation window.
    assert_eq!(stack.profile_status(&here).await, 200);
    assert_eq!(stack.refresh(&elsewhere_refresh).await.0, 401);
    let ended = tests::eventually(Duration::from_secs(6), || async {
        stack.profile_status(&elsewhere).await == 401
    })
    .await;
    assert!(ended, "the other session still works");

    // One event at the next version, with no secret of any kind.
    let client = stack.pool.get().await.unwrap();
    let rows = client
        .query(
            "SELECT payload, headers FROM users.outbox \
             WHERE aggregate_id = $1 AND event_type = 'UserPasswordChanged'",
            &[&id],
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    let payload: Value = rows[0].get(0);
    assert_eq!(payload, json!({"user_id": id, "version": 2}));
    let headers: Value = rows[0].get(1);
    assert_eq!(headers["ce_userversion"], "2");
    let hash: String = client
        .query_one(
            "SELECT password_hash FROM users.users WHERE id = $1::text::uuid",
            &[&id],
        )
        .await
        .unwrap()
        .get(0);
    for row in client
        .query(
            "SELECT payload::text || headers::text FROM users.outbox",
            &[],
        )
        .await
        .unwrap()
    {
        let text: String = row.get(0);
        assert!(!text.contains(new_password) && !text.contains(PASSWORD) && !text.contains(&hash));
    }
}

/// `GET /profile`: status, ETag, body.
async fn read_profile(stack: &Stack, token: &str) -> (u16, String, Value) {
    let response = stack
        .http
        .get(format!("{}{PROFILE}", stack.base))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    answer(response).await
}

#[tokio::test]
async fn the_profile_a_client_reads_is_never_older_than_the_revocation_window() {
    // A one-second window, so the test is quick.
    let stack = spawn_stack(&[("REVOCATION_CACHE_MS", "1000")]).await;
    stack.register("ada.cache@example.com").await;
    let (token, _) = stack.login("ada.cache@example.com").await;
    assert_eq!(read_profile(&stack, &token).await.1, "\"1\"");

    // A change through this BFF shows at once.
    let (status, _, _) = patch(&stack, &token, None, json!({"first_name": "Augusta"})).await;
    assert_eq!(status, 200);
    let (_, etag, body) = read_profile(&stack, &token).await;
    assert_eq!(
        (etag.as_str(), &body["first_name"]),
        ("\"2\"", &json!("Augusta"))
    );

    // A change made elsewhere (another BFF, an operator) shows within the window.
    let client = stack.pool.get().await.unwrap();
    client
        .execute(
            "UPDATE users.users SET first_name = 'Ada', version = version + 1 \
             WHERE lower(email) = 'ada.cache@example.com'",
            &[],
        )
        .await
        .unwrap();
    let changed = std::time::Instant::now();
    let fresh = tests::eventually(std::time::Duration::from_secs(5), || async {
        read_profile(&stack, &token).await.2["first_name"] == "Ada"
    })
    .await;
    assert!(fresh);
    assert!(
        changed.elapsed() < std::time::Duration::from_millis(1_500),
        "shown after {:?}, past the 1 s window",
        changed.elapsed()
    );
}
