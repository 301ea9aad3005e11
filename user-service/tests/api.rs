//! The HTTP contract the BFF relies on, against the real PostgreSQL.

mod common;

use std::time::Duration;

use common::{registration, spawn_app, KEY};
use platform::testing::{eventually, send_raw_json};
use serde_json::{json, Value};

#[tokio::test]
async fn register_returns_the_user_without_any_password_field() {
    let app = spawn_app().await;
    let mut body = registration("Ada@Example.com");
    body["phone"] = json!("+441234567890");
    let (status, user) = app.register(&body).await;
    assert_eq!(status, 201, "{user}");
    assert_eq!(user["email"], "Ada@example.com");
    assert_eq!(user["phone"], "+441234567890");
    assert_eq!(user["role"], "user");
    assert_eq!(user["is_active"], true);
    assert!(user["id"].as_str().is_some() && user["created_at"].as_str().is_some());
    let keys: Vec<&String> = user.as_object().unwrap().keys().collect();
    assert!(keys.iter().all(|k| !k.contains("password")), "{keys:?}");

    let stored: String = app
        .pool
        .get()
        .await
        .unwrap()
        .query_one("SELECT password_hash FROM users.users", &[])
        .await
        .unwrap()
        .get(0);
    assert!(stored.starts_with("$scrypt$ln=10,r=8,p=1$"), "{stored}");
}

#[tokio::test]
async fn a_user_without_phone_has_phone_null() {
    let app = spawn_app().await;
    let (status, user) = app.register(&registration("nophone@example.com")).await;
    assert_eq!(status, 201);
    assert_eq!(user["phone"], Value::Null);
}

#[tokio::test]
async fn emails_conflict_case_insensitively() {
    let app = spawn_app().await;
    assert_eq!(app.register(&registration("Ada@Example.com")).await.0, 201);
    let (status, body) = app.register(&registration("ada@EXAMPLE.com")).await;
    assert_eq!(status, 409);
    assert_eq!(body["error"], "Conflict");
    assert_eq!(body["details"], json!({"field": "email"}));
    assert_eq!(app.count("SELECT count(*) FROM users.outbox").await, 1);
}

#[tokio::test]
async fn phones_conflict() {
    let app = spawn_app().await;
    let mut first = registration("one@example.com");
    first["phone"] = json!("+442079460958");
    let mut second = registration("two@example.com");
    second["phone"] = json!("+442079460958");
    assert_eq!(app.register(&first).await.0, 201);
    let (status, body) = app.register(&second).await;
    assert_eq!(status, 409);
    assert_eq!(body["details"]["field"], "phone");
}

/// The unique constraint is on the stored E.164 form, so spacing and punctuation cannot
/// register one number twice.
#[tokio::test]
async fn phones_are_stored_in_e164_and_conflict_in_any_spelling() {
    let app = spawn_app().await;
    let mut first = registration("spaced@example.com");
    first["phone"] = json!("+1 202 555 0123");
    let (status, user) = app.register(&first).await;
    assert_eq!(status, 201, "{user}");
    assert_eq!(user["phone"], "+12025550123");

    for (n, spelling) in ["+12025550123", "+1 (202) 555-0123"]
        .into_iter()
        .enumerate()
    {
        let mut again = registration(&format!("again{n}@example.com"));
        again["phone"] = json!(spelling);
        let (status, body) = app.register(&again).await;
        assert_eq!(status, 409, "{spelling}: {body}");
        assert_eq!(body["details"], json!({"field": "phone"}));
    }
    let stored: Vec<String> = app
        .pool
        .get()
        .await
        .unwrap()
        .query("SELECT phone FROM users.users", &[])
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(stored, ["+12025550123"]);
    assert_eq!(app.count("SELECT count(*) FROM users.outbox").await, 1);
}

#[tokio::test]
async fn national_or_impossible_phones_are_422() {
    let app = spawn_app().await;
    for (n, phone) in ["2025550123", "+1 202 555 01", "+15551234567"]
        .into_iter()
        .enumerate()
    {
        let mut body = registration(&format!("phone{n}@example.com"));
        body["phone"] = json!(phone);
        let (status, body) = app.register(&body).await;
        assert_eq!(status, 422, "{phone}: {body}");
        assert_eq!(body["details"][0]["field"], "phone", "{body}");
    }
    assert_eq!(app.count("SELECT count(*) FROM users.users").await, 0);
}

/// A stored address ends up in mail headers: display text or a CR/LF there would let a
/// registration add recipients or headers to every mail sent to the user.
#[tokio::test]
async fn hostile_emails_and_names_are_422_and_nothing_is_stored() {
    let app = spawn_app().await;
    for email in [
        "Ada <ada@example.com>",
        "Ada\r\nBcc: eve@example.com <ada@example.com>",
        "ada@example.com\r\nBcc: eve@example.com",
        "ada(comment)@example.com",
        "\"ada lovelace\"@example.com",
        "ada@[127.0.0.1]",
    ] {
        let (status, body) = app.register(&registration(email)).await;
        assert_eq!(status, 422, "{email:?}: {body}");
        assert_eq!(body["error"], "Validation failed");
        assert_eq!(body["details"][0]["field"], "email", "{email:?}: {body}");
        let message = body["details"][0]["message"].as_str().unwrap();
        assert!(message.starts_with("must "), "{message}");
    }
    let mut body = registration("Ada <ada@example.com>");
    body["first_name"] = json!("Ada\u{202e}");
    body["last_name"] = json!("Love\u{200b}lace");
    let (status, body) = app.register(&body).await;
    assert_eq!(status, 422, "{body}");
    let fields: Vec<&str> = body["details"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["email", "first_name", "last_name"]);
    assert_eq!(app.count("SELECT count(*) FROM users.users").await, 0);
    assert_eq!(app.count("SELECT count(*) FROM users.outbox").await, 0);
}

#[tokio::test]
async fn the_stored_email_has_its_domain_lower_cased_and_logs_in_either_way() {
    let app = spawn_app().await;
    let (status, user) = app.register(&registration("Ada.L@Example.COM")).await;
    assert_eq!(status, 201, "{user}");
    assert_eq!(user["email"], "Ada.L@example.com");
    let response = app
        .post(
            "/api/v1/verify-credentials",
            &json!({"email": "Ada.L@Example.COM", "password": "correct horse battery staple"}),
        )
        .await;
    assert_eq!(response.json::<Value>().await.unwrap()["valid"], true);
}

#[tokio::test]
async fn invalid_fields_are_all_listed_with_422() {
    let app = spawn_app().await;
    let body = json!({
        "email": "not an email",
        "password": "password",
        "first_name": "",
        "last_name": "Lovelace",
        "phone": "12ab",
    });
    let (status, body) = app.register(&body).await;
    assert_eq!(status, 422);
    assert_eq!(body["error"], "Validation failed");
    let fields: Vec<&str> = body["details"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["email", "first_name", "phone", "password"]);
    assert_eq!(app.count("SELECT count(*) FROM users.users").await, 0);
}

#[tokio::test]
async fn malformed_json_is_400_with_the_error_body() {
    let app = spawn_app().await;
    let register = app.http.post(app.url("/api/v1/register")).bearer_auth(KEY);
    let response = send_raw_json(register, "{\"email\": ").await;
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "Bad request");
    assert!(body["message"].is_string());
}

#[tokio::test]
async fn bodies_over_64_kib_are_413_with_the_error_body() {
    let app = spawn_app().await;
    let mut body = registration("big@example.com");
    body["first_name"] = json!("x".repeat(70 * 1024));
    let response = app.post("/api/v1/register", &body).await;
    assert_eq!(response.status(), 413);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "Payload too large");
}

#[tokio::test]
async fn a_missing_or_wrong_internal_key_is_401() {
    let app = spawn_app().await;
    let url = app.url("/api/v1/register");
    let body = registration("ada@example.com");
    let missing = app.http.post(&url).json(&body).send().await.unwrap();
    let wrong = app
        .http
        .post(&url)
        .bearer_auth("not-the-key")
        .json(&body)
        .send()
        .await
        .unwrap();
    for response in [missing, wrong] {
        assert_eq!(response.status(), 401);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"], "Unauthorized");
    }
    let stats = app.get_without_key("/api/v1/admin/stats").await;
    assert_eq!(stats.status(), 401);
    assert_eq!(app.count("SELECT count(*) FROM users.users").await, 0);

    // The operational endpoints stay open (`/health` once its first check has run: until
    // then it says "starting" with a 503).
    let health = eventually(Duration::from_secs(10), || async {
        app.get_without_key("/health").await.status() == 200
    })
    .await;
    assert!(health, "/health never answered 200 without a key");
    for path in ["/health/live", "/metrics", "/openapi.json"] {
        let response = app.get_without_key(path).await;
        assert_eq!(response.status(), 200, "{path}");
    }
}

#[tokio::test]
async fn verify_credentials_right_wrong_and_unknown() {
    let app = spawn_app().await;
    let (_, user) = app.register(&registration("Ada@Example.com")).await;
    let check = |email: &'static str, password: &'static str| {
        let app = &app;
        async move {
            let response = app
                .post(
                    "/api/v1/verify-credentials",
                    &json!({"email": email, "password": password}),
                )
                .await;
            assert_eq!(response.status(), 200);
            response.json::<Value>().await.unwrap()
        }
    };
    let right = check("ada@example.com", "correct horse battery staple").await;
    assert_eq!(
        right,
        json!({"valid": true, "user_id": user["id"], "role": "user", "is_active": true})
    );
    let wrong = check("ada@example.com", "correct horse battery stapler").await;
    assert_eq!(wrong, json!({"valid": false}));
    let unknown = check("nobody@example.com", "correct horse battery staple").await;
    assert_eq!(unknown, json!({"valid": false}));
}

#[tokio::test]
async fn users_are_found_by_id_or_404() {
    let app = spawn_app().await;
    let (_, user) = app.register(&registration("ada@example.com")).await;
    let id = user["id"].as_str().unwrap();
    let found = app.get(&format!("/api/v1/users/{id}")).await;
    assert_eq!(found.status(), 200);
    assert_eq!(found.json::<Value>().await.unwrap(), user);

    let missing = app
        .get(&format!("/api/v1/users/{}", uuid::Uuid::now_v7()))
        .await;
    assert_eq!(missing.status(), 404);
    assert_eq!(missing.json::<Value>().await.unwrap()["error"], "Not found");
}

#[tokio::test]
async fn the_api_is_documented_and_counted() {
    let app = spawn_app().await;
    app.register(&registration("ada@example.com")).await;
    let spec: Value = app
        .get_without_key("/openapi.json")
        .await
        .json()
        .await
        .unwrap();
    for path in [
        "/api/v1/register",
        "/api/v1/verify-credentials",
        "/api/v1/users/{id}",
        "/api/v1/admin/stats",
        "/api/v1/admin/outbox/replay",
    ] {
        assert!(spec["paths"][path].is_object(), "{path} undocumented");
    }
    let metrics = app.get_without_key("/metrics").await.text().await.unwrap();
    assert!(metrics.contains("users_registered_total"), "{metrics}");
}
