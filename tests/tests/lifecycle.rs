//! One user's whole life through the BFF, with all four services: versioned events in
//! order on Kafka, optimistic concurrency, erasure that leaves no personal data in any
//! service's tables, and a read model that `reconcile` proves converged (and repairs).

use std::collections::HashMap;
use std::time::Duration;

use rdkafka::message::{Headers, Message};
use serde_json::{json, Value};
use tests::stack::{Service, Stack};
use tests::{eventually, reader};
use uuid::Uuid;

const PASSWORD: &str = "a long and unusual passphrase 42";
const NEW_PASSWORD: &str = "another rather long passphrase 7";

/// All four services, with room in the rate limits for a test's registrations and logins.
async fn started() -> Stack {
    let mut stack = Stack::new().await.expect("scratch database and topics");
    stack.set_env("RATE_LIMIT_REGISTER_PER_MIN", "100");
    stack.set_env("RATE_LIMIT_LOGIN_PER_MIN", "100");
    stack.started().await.expect("stack")
}

/// A user with names and a phone no other test user has.
fn new_user(tag: &str) -> Value {
    let digits: String = Uuid::new_v4()
        .as_u128()
        .to_string()
        .chars()
        .take(6)
        .collect();
    json!({
        "email": format!("life.{tag}@example.com"),
        "password": PASSWORD,
        "first_name": format!("Zelda{tag}"),
        "last_name": format!("Quill{tag}"),
        "phone": format!("+447400{digits}"),
    })
}

fn tag() -> String {
    Uuid::new_v4().simple().to_string()[..10].to_owned()
}

async fn call(
    stack: &Stack,
    method: reqwest::Method,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
    if_match: Option<&str>,
) -> (u16, Value) {
    let mut request = stack.http.request(method, stack.url(Service::Bff, path));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    if let Some(version) = if_match {
        request = request.header("If-Match", version);
    }
    let response = request.send().await.expect("the BFF answers");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn post(stack: &Stack, path: &str, token: Option<&str>, body: Value) -> (u16, Value) {
    call(stack, reqwest::Method::POST, path, token, Some(body), None).await
}

async fn login(stack: &Stack, email: &str, password: &str) -> (String, String) {
    let (status, tokens) = post(
        stack,
        "/api/v1/auth/login",
        None,
        json!({"email": email, "password": password}),
    )
    .await;
    assert_eq!(status, 200, "login: {tokens}");
    let text = |k: &str| tokens[k].as_str().unwrap_or_default().to_owned();
    (text("access_token"), text("refresh_token"))
}

async fn admin_token(stack: &Stack) -> String {
    let admin = new_user(&tag());
    let email = admin["email"].as_str().unwrap_or_default().to_owned();
    assert_eq!(post(stack, "/api/v1/register", None, admin).await.0, 201);
    stack
        .run_cli(
            Service::UserService,
            &["set-role", "--email", &email, "--role", "admin"],
        )
        .expect("set-role");
    login(stack, &email, PASSWORD).await.0
}

/// `event-consumer reconcile` with `args`: exit code and output.
fn reconcile(stack: &Stack, args: &[&str]) -> (i32, String) {
    let mut all = vec!["reconcile"];
    all.extend_from_slice(args);
    stack
        .run_cli_with(Service::Consumer, &all, &[])
        .expect("reconcile runs")
}

/// Waits until `reconcile` finds the read model in sync with nobody behind.
async fn converged(stack: &Stack) -> String {
    let mut last = String::new();
    let synced = eventually(Duration::from_secs(30), || {
        let (code, out) = reconcile(stack, &[]);
        let done = code == 0 && out.contains(" 0 differ, 0 behind");
        last = out;
        async move { done }
    })
    .await;
    assert!(synced, "the read model did not converge:\n{last}");
    last
}

/// The records of `user_id` on the topic, up to and including its `UserErased`.
async fn events_of(
    topic: &str,
    user_id: &str,
) -> Vec<(String, i64, HashMap<String, String>, Value)> {
    let consumer = reader(topic);
    let mut events = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let message = tokio::time::timeout_at(deadline, consumer.recv())
            .await
            .expect("the user's events reach Kafka")
            .expect("a record");
        if message.key() != Some(user_id.as_bytes()) {
            continue;
        }
        let headers: HashMap<String, String> = message
            .headers()
            .map(|hs| {
                hs.iter()
                    .map(|h| {
                        let value = String::from_utf8_lossy(h.value.unwrap_or_default());
                        (h.key.to_owned(), value.into_owned())
                    })
                    .collect()
            })
            .unwrap_or_default();
        let data: Value = serde_json::from_slice(message.payload().unwrap_or_default()).unwrap();
        let kind = headers["ce_type"].clone();
        let version: i64 = headers["ce_userversion"].parse().unwrap();
        let erased = kind == "UserErased";
        events.push((kind, version, headers, data));
        if erased {
            return events;
        }
    }
}

#[tokio::test]
async fn one_users_whole_life_is_ordered_versioned_events_and_erasure_leaves_no_personal_data() {
    // Every service logs at debug level, into files this test reads at the end.
    let mut stack = Stack::new().await.expect("scratch database and topics");
    stack.set_env("RATE_LIMIT_REGISTER_PER_MIN", "100");
    stack.set_env("RATE_LIMIT_LOGIN_PER_MIN", "100");
    stack.set_env("LOG_LEVEL", "debug");
    stack.capture_logs().expect("a log directory");
    let stack = stack.started().await.expect("stack");
    let admin = admin_token(&stack).await;
    let user = new_user(&tag());
    let email = user["email"].as_str().unwrap().to_owned();
    let (status, created) = post(&stack, "/api/v1/register", None, user.clone()).await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().unwrap().to_owned();
    // The same email again is refused (and the refusal is not logged with the email).
    let (status, taken) = post(&stack, "/api/v1/register", None, user.clone()).await;
    assert_eq!(status, 409, "{taken}");
    let (access, _) = login(&stack, &email, PASSWORD).await;

    // A profile change at version 1, then two changes racing from version 2: one wins,
    // the other is told its version is stale; no update is lost silently.
    let patch = |body: Value, version: &'static str| {
        let (stack, access) = (&stack, access.clone());
        async move {
            let path = "/api/v1/protected/profile";
            call(
                stack,
                reqwest::Method::PATCH,
                path,
                Some(&access),
                Some(body),
                Some(version),
            )
            .await
        }
    };
    let (status, body) = patch(
        json!({"first_name": format!("{}x", user["first_name"].as_str().unwrap())}),
        "\"1\"",
    )
    .await;
    assert_eq!((status, body["version"].clone()), (200, json!(2)), "{body}");
    let (a, b) = tokio::join!(
        patch(json!({"last_name": "Racer A"}), "\"2\""),
        patch(json!({"last_name": "Racer B"}), "\"2\""),
    );
    let mut statuses = [a.0, b.0];
    statuses.sort();
    assert_eq!(statuses, [200, 412], "{a:?} {b:?}");

    // Password (version 4), deactivation (5: the login is refused), reactivation (6).
    let change = json!({"current_password": PASSWORD, "new_password": NEW_PASSWORD});
    assert_eq!(
        post(&stack, "/api/v1/protected/password", Some(&access), change)
            .await
            .0,
        204
    );
    let admin_path = |verb: &str| format!("/api/v1/protected/admin/users/{id}/{verb}");
    assert_eq!(
        post(&stack, &admin_path("deactivate"), Some(&admin), json!({}))
            .await
            .0,
        200
    );
    let refused = post(
        &stack,
        "/api/v1/auth/login",
        None,
        json!({"email": email, "password": NEW_PASSWORD}),
    )
    .await;
    assert_eq!(refused.0, 403, "{:?}", refused.1);
    assert_eq!(
        post(&stack, &admin_path("reactivate"), Some(&admin), json!({}))
            .await
            .0,
        200
    );
    let (access, refresh) = login(&stack, &email, NEW_PASSWORD).await;

    // Erasure needs the password; then every token of the user is refused.
    let erase = |password: &str| {
        let body = json!({"password": password});
        call(
            &stack,
            reqwest::Method::DELETE,
            "/api/v1/protected/account",
            Some(&access),
            Some(body),
            None,
        )
    };
    assert_eq!(erase(PASSWORD).await.0, 403);
    assert_eq!(erase(NEW_PASSWORD).await.0, 204);
    let profile = call(
        &stack,
        reqwest::Method::GET,
        "/api/v1/protected/profile",
        Some(&access),
        None,
        None,
    )
    .await;
    assert_eq!(profile.0, 401, "{:?}", profile.1);
    let refreshed = post(
        &stack,
        "/api/v1/auth/refresh",
        None,
        json!({"refresh_token": refresh}),
    )
    .await;
    assert_eq!(refreshed.0, 401, "{:?}", refreshed.1);

    // Kafka holds the whole life in order, versions 1..7 in the data and the header, and
    // no event ever carries a secret.
    let events = events_of(&stack.topic, &id).await;
    let kinds: Vec<(&str, i64)> = events.iter().map(|(k, v, _, _)| (k.as_str(), *v)).collect();
    assert_eq!(
        kinds,
        [
            ("UserRegistered", 1),
            ("UserProfileUpdated", 2),
            ("UserProfileUpdated", 3),
            ("UserPasswordChanged", 4),
            ("UserDeactivated", 5),
            ("UserReactivated", 6),
            ("UserErased", 7),
        ]
    );
    for (kind, version, headers, data) in &events {
        assert_eq!(headers["ce_subject"], id);
        if data.get("erased").is_none() {
            assert_eq!(data["version"], *version, "{kind}: {data}");
        }
        let text = data.to_string().to_lowercase();
        assert!(
            !text.contains("password") && !text.contains("hash") && !text.contains("scrypt"),
            "{kind}: {data}"
        );
    }
    assert_eq!(events[6].3, json!({"user_id": id, "version": 7}));

    // Once the consumer has applied UserErased, no row of users.*, auth.* or consumer.*
    // holds the user's email, names or phone.
    let pii: Vec<String> = ["email", "first_name", "last_name", "phone"]
        .iter()
        .map(|k| user[k].as_str().unwrap().to_owned())
        .chain(["Racer A".to_owned(), "Racer B".to_owned()])
        .collect();
    let client = stack.db_client().await.unwrap();
    let erased_in_read_model = eventually(Duration::from_secs(30), || {
        let client = &client;
        let id = id.clone();
        async move {
            client
                .query_opt(
                    "SELECT 1 FROM consumer.user_directory WHERE user_id::text = $1 AND status = 'erased'",
                    &[&id],
                )
                .await
                .is_ok_and(|row| row.is_some())
        }
    })
    .await;
    assert!(erased_in_read_model);
    let tables = client
        .query(
            "SELECT table_schema, table_name FROM information_schema.tables \
             WHERE table_schema IN ('users', 'auth', 'consumer') AND table_type = 'BASE TABLE'",
            &[],
        )
        .await
        .unwrap();
    assert!(tables.len() >= 10, "{} tables", tables.len());
    for table in &tables {
        let (schema, name): (String, String) = (table.get(0), table.get(1));
        for value in &pii {
            let sql = format!(
                "SELECT count(*) FROM {schema}.{name} t WHERE lower(t::text) LIKE '%' || lower($1) || '%'"
            );
            let found: i64 = client.query_one(&sql, &[value]).await.unwrap().get(0);
            assert_eq!(found, 0, "{schema}.{name} still holds {value:?}");
        }
    }
    let tombstone = client
        .query_one(
            "SELECT erased_at IS NOT NULL, version FROM users.users WHERE id::text = $1",
            &[&id],
        )
        .await
        .unwrap();
    assert_eq!(
        (tombstone.get::<_, bool>(0), tombstone.get::<_, i64>(1)),
        (true, 7)
    );

    // The email is free again; the read model agrees with user-service for every user.
    let again = post(
        &stack,
        "/api/v1/register",
        None,
        new_user_with_email(&email),
    )
    .await;
    assert_eq!(again.0, 201, "{:?}", again.1);
    assert_ne!(again.1["id"], json!(id));
    converged(&stack).await;

    // Not one line any service logged, at debug level, carries the user's email, names,
    // phone or either password.
    let logs = stack.logs().expect("the services' logs");
    assert!(
        logs.lines().count() > 100,
        "too little was logged to prove anything: {logs}"
    );
    let lowered = logs.to_lowercase();
    for value in pii
        .iter()
        .map(String::as_str)
        .chain([PASSWORD, NEW_PASSWORD])
    {
        let value = value.to_lowercase();
        let line = lowered.lines().find(|line| line.contains(&value));
        assert!(line.is_none(), "a log line carries {value:?}: {line:?}");
    }
}

fn new_user_with_email(email: &str) -> Value {
    let mut user = new_user(&tag());
    user["email"] = json!(email);
    user
}

#[tokio::test]
async fn replay_into_an_empty_read_model_converges_and_reconcile_repairs_what_drifted() {
    let stack = started().await;
    let admin = admin_token(&stack).await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        let user = new_user(&tag());
        let (status, created) = post(&stack, "/api/v1/register", None, user).await;
        assert_eq!(status, 201);
        ids.push(created["id"].as_str().unwrap().to_owned());
    }
    let deactivate = format!("/api/v1/protected/admin/users/{}/deactivate", ids[0]);
    assert_eq!(
        post(&stack, &deactivate, Some(&admin), json!({})).await.0,
        200
    );
    converged(&stack).await;

    // An empty read model (and inbox), then every outbox row replayed: the same rows.
    let client = stack.db_client().await.unwrap();
    let before = client
        .query(
            "SELECT t::text FROM consumer.user_directory t ORDER BY user_id",
            &[],
        )
        .await
        .unwrap()
        .len();
    client
        .batch_execute(
            "TRUNCATE consumer.user_directory, consumer.processed_events, consumer.held_events",
        )
        .await
        .unwrap();
    let (code, out) = reconcile(&stack, &["--grace-seconds", "0"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains(&format!("missing {}", ids[0])), "{out}");
    // The admin's registration and role change, three registrations, one deactivation,
    // once the relay has recorded them as published (the consumer may apply an event
    // before that: it reads records of open Kafka transactions).
    assert!(
        tests::relay_kit::all_recorded(&stack.db).await,
        "the relay did not record what it published"
    );
    let replayed = stack
        .run_cli(Service::Relay, &["replay", "--all"])
        .expect("replay");
    assert_eq!(replayed.trim(), "re-queued 6 events", "{replayed}");
    let out = converged(&stack).await;
    assert!(out.contains(&format!("{} users checked", before)), "{out}");
    let status: String = client
        .query_one(
            "SELECT status FROM consumer.user_directory WHERE user_id::text = $1",
            &[&ids[0]],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(status, "deactivated");

    // A corrupted row and a lost one are found (by field, never by value) and repaired.
    client
        .execute(
            "UPDATE consumer.user_directory SET first_name = 'Mallory', phone = NULL WHERE user_id::text = $1",
            &[&ids[1]],
        )
        .await
        .unwrap();
    client
        .execute(
            "DELETE FROM consumer.user_directory WHERE user_id::text = $1",
            &[&ids[2]],
        )
        .await
        .unwrap();
    let (code, out) = reconcile(&stack, &["--grace-seconds", "0"]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&format!(
            "differs {} first_name,phone (read model v1, user-service v1)",
            ids[1]
        )),
        "{out}"
    );
    assert!(out.contains(&format!("missing {}", ids[2])), "{out}");
    assert!(out.contains(" 2 differ, 0 behind"), "{out}");
    assert!(
        !out.contains("Mallory") && !out.contains('@'),
        "values in the report: {out}"
    );

    let (code, out) = reconcile(&stack, &["--repair", "--grace-seconds", "0"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("before repair: ") && out.contains(" 2 differ"),
        "{out}"
    );
    assert!(
        out.contains("repair: asked user-service for 2 snapshots"),
        "{out}"
    );
    assert!(out.trim_end().ends_with(" 0 differ, 0 behind"), "{out}");
    let repaired: String = client
        .query_one(
            "SELECT first_name FROM consumer.user_directory WHERE user_id::text = $1",
            &[&ids[1]],
        )
        .await
        .unwrap()
        .get(0);
    assert!(repaired.starts_with("Zelda"), "{repaired}");

    // The admin dashboard shows the latest run.
    let (status, dashboard) = call(
        &stack,
        reqwest::Method::GET,
        "/api/v1/protected/admin/dashboard",
        Some(&admin),
        None,
        None,
    )
    .await;
    assert_eq!(status, 200);
    let text = dashboard.to_string();
    assert!(text.contains("\"last_reconcile\""), "{text}");
    assert!(text.contains("\"repaired\":2"), "{text}");
}

/// The user's version in the read model, if it has a row.
async fn version_of(client: &tokio_postgres::Client, id: &str) -> Option<i64> {
    client
        .query_opt(
            "SELECT version FROM consumer.user_directory WHERE user_id::text = $1",
            &[&id],
        )
        .await
        .ok()
        .flatten()
        .map(|row| row.get(0))
}

#[tokio::test]
async fn an_overdue_gap_is_reported_and_repaired_by_a_snapshot() {
    let mut stack = Stack::new().await.expect("scratch database and topics");
    stack.set_env("RATE_LIMIT_LOGIN_PER_MIN", "100");
    stack.set_env("CONSUMER_GAP_TIMEOUT_MS", "500");
    stack.set_env("CONSUMER_GAP_CHECK_MS", "100");
    let mut stack = stack.started().await.expect("stack");
    let user = new_user(&tag());
    let email = user["email"].as_str().unwrap().to_owned();
    let (status, created) = post(&stack, "/api/v1/register", None, user).await;
    assert_eq!(status, 201);
    let id = created["id"].as_str().unwrap().to_owned();
    let client = stack.db_client().await.unwrap();
    assert!(
        eventually(Duration::from_secs(30), || {
            let (client, id) = (&client, id.clone());
            async move { version_of(client, &id).await == Some(1) }
        })
        .await
    );

    // Versions 2 and 3 are written while the relay is down, and version 2's outbox row is
    // lost before it is published (as if purged): the consumer gets version 3 alone.
    stack.kill9(Service::Relay);
    let (access, _) = login(&stack, &email, PASSWORD).await;
    for name in ["Second", "Third"] {
        let body = json!({"last_name": name});
        let path = "/api/v1/protected/profile";
        let (status, _) = call(
            &stack,
            reqwest::Method::PATCH,
            path,
            Some(&access),
            Some(body),
            None,
        )
        .await;
        assert_eq!(status, 200);
    }
    let lost = client
        .execute(
            "DELETE FROM users.outbox WHERE aggregate_id = $1 AND (payload->>'version')::int = 2",
            &[&id],
        )
        .await
        .unwrap();
    assert_eq!(lost, 1);
    stack.start(Service::Relay).unwrap();

    // Parked, reported as overdue, then repaired by the snapshot the consumer asks for.
    let metrics_url = stack.url(Service::Consumer, "/metrics");
    let http = stack.http.clone();
    let reported = eventually(Duration::from_secs(30), || {
        let (http, url) = (http.clone(), metrics_url.clone());
        async move {
            let text = match http.get(&url).send().await {
                Ok(r) => r.text().await.unwrap_or_default(),
                Err(_) => return false,
            };
            text.contains("consumer_held_total 1")
        }
    })
    .await;
    assert!(reported, "the gap was never parked");
    assert!(
        eventually(Duration::from_secs(30), || {
            let (client, id) = (&client, id.clone());
            async move { version_of(client, &id).await == Some(3) }
        })
        .await,
        "the gap was not repaired"
    );
    let snapshots: i64 = client
        .query_one(
            "SELECT count(*) FROM users.outbox WHERE aggregate_id = $1 AND event_type = 'UserSnapshot'",
            &[&id],
        )
        .await
        .unwrap()
        .get(0);
    assert!(snapshots >= 1);
    let last_name: String = client
        .query_one(
            "SELECT last_name FROM consumer.user_directory WHERE user_id::text = $1",
            &[&id],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(last_name, "Third");
    let held: i64 = client
        .query_one("SELECT count(*) FROM consumer.held_events", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(held, 0);
}
