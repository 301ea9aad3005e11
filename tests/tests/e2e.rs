//! The four services as one system: a registration through the BFF reaches Kafka in the
//! contract's form and has exactly one effect; a replay republishes without applying
//! anything twice, and a consumer in a new group rebuilds its tables from the topic.

use std::time::Duration;

use rdkafka::message::{Headers, Message};
use serde_json::{json, Value};
use tests::stack::{Service, Stack, INTERNAL_KEY};
use tests::{eventually, reader, scratch_db};
use uuid::Uuid;

const PASSWORD: &str = "a long and unusual passphrase 42";

fn new_user() -> Value {
    let tag = Uuid::new_v4().simple().to_string();
    json!({
        "email": format!("ada.{}@example.com", &tag[..12]),
        "password": PASSWORD,
        "first_name": "Ada",
        "last_name": "Lovelace",
        // A valid UK mobile number (phones are stored in E.164 and must fit the plan).
        "phone": format!("+447400{}", &tag.chars().filter(char::is_ascii_digit).chain("0123456789".chars()).take(6).collect::<String>()),
    })
}

async fn register(stack: &Stack, user: &Value) -> anyhow::Result<Value> {
    let response = stack.bff_post("/api/v1/register", user).await?;
    anyhow::ensure!(
        response.status() == 201,
        "register answered {}: {}",
        response.status(),
        response.text().await?
    );
    Ok(response.json().await?)
}

async fn login(stack: &Stack, email: &str) -> anyhow::Result<Value> {
    let credentials = json!({ "email": email, "password": PASSWORD });
    let response = stack.bff_post("/api/v1/auth/login", &credentials).await?;
    anyhow::ensure!(
        response.status() == 200,
        "login answered {}",
        response.status()
    );
    Ok(response.json().await?)
}

/// Registers an admin (set-role through the CLI, as an operator would) and returns its
/// access token.
async fn admin_token(stack: &Stack) -> anyhow::Result<String> {
    let admin = new_user();
    register(stack, &admin).await?;
    let email = admin["email"].as_str().unwrap_or_default();
    stack.run_cli(
        Service::UserService,
        &["set-role", "--email", email, "--role", "admin"],
    )?;
    let tokens = login(stack, email).await?;
    Ok(tokens["access_token"]
        .as_str()
        .unwrap_or_default()
        .to_owned())
}

async fn welcome_rows(stack: &Stack) -> i64 {
    stack
        .count("SELECT count(*) FROM consumer.welcome_notifications")
        .await
        .unwrap_or(-1)
}

#[tokio::test]
async fn a_registration_reaches_kafka_in_the_contract_form_and_has_exactly_one_effect(
) -> anyhow::Result<()> {
    let stack = Stack::start_all().await?;
    let user = new_user();
    let created = register(&stack, &user).await?;
    let user_id = created["id"].as_str().unwrap_or_default().to_owned();
    assert_eq!(created["email"], user["email"]);
    assert!(created.get("password").is_none() && created.get("password_hash").is_none());
    // Counted although nothing had scraped the BFF's /metrics before.
    let metrics = stack
        .http
        .get(stack.url(Service::Bff, "/metrics"))
        .send()
        .await?
        .text()
        .await?;
    assert!(metrics.contains("bff_registrations_total 1"), "{metrics}");

    // The record on the topic, as the contract describes it.
    let consumer = reader(&stack.topic);
    let message = tokio::time::timeout(Duration::from_secs(30), consumer.recv()).await??;
    assert_eq!(message.key(), Some(user_id.as_bytes()));
    let headers: std::collections::HashMap<String, String> = message
        .headers()
        .map(|hs| {
            hs.iter()
                .map(|h| {
                    (
                        h.key.to_owned(),
                        String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(headers["ce_specversion"], "1.0");
    assert_eq!(headers["ce_type"], "UserRegistered");
    assert_eq!(headers["ce_source"], "/user-service");
    assert_eq!(headers["ce_subject"], user_id);
    assert_eq!(headers["content-type"], "application/json");
    assert!(Uuid::parse_str(&headers["ce_id"]).is_ok());
    assert!(chrono::DateTime::parse_from_rfc3339(&headers["ce_time"]).is_ok());
    // A new user's first event is its version 1, in the header and in the data.
    assert_eq!(headers["ce_userversion"], "1");
    let data: Value = serde_json::from_slice(message.payload().unwrap_or_default())?;
    assert_eq!(data["version"], 1);
    assert_eq!(data["user_id"], user_id.as_str());
    assert_eq!(data["email"], user["email"]);
    assert_eq!(data["first_name"], "Ada");
    assert_eq!(data["role"], "user");
    assert!(data.get("registered_at").is_some() && data.get("phone").is_some());

    // The consumer's effect, once.
    assert!(
        eventually(Duration::from_secs(30), || async {
            welcome_rows(&stack).await == 1
        })
        .await
    );
    let for_user = stack
        .db_client()
        .await?
        .query_one(
            "SELECT count(*) FROM consumer.welcome_notifications WHERE user_id::text = $1",
            &[&user_id],
        )
        .await?
        .get::<_, i64>(0);
    assert_eq!(for_user, 1);

    // Login and profile.
    let tokens = login(&stack, user["email"].as_str().unwrap_or_default()).await?;
    assert_eq!(tokens["token_type"], "Bearer");
    let profile: Value = stack
        .http
        .get(stack.url(Service::Bff, "/api/v1/protected/profile"))
        .bearer_auth(tokens["access_token"].as_str().unwrap_or_default())
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(profile["id"], user_id.as_str());

    // The admin dashboard's figures follow: two users now, both applied by the consumer
    // (the admin's role change too).
    let token = admin_token(&stack).await?;
    assert!(
        eventually(Duration::from_secs(30), || async {
            welcome_rows(&stack).await == 2
                && stack
                    .count("SELECT processed_total FROM consumer.counters")
                    .await
                    .is_ok_and(|n| n == 3)
        })
        .await
    );
    let dashboard: Value = stack
        .http
        .get(stack.url(Service::Bff, "/api/v1/protected/admin/dashboard"))
        .bearer_auth(&token)
        .send()
        .await?
        .json()
        .await?;
    let text = dashboard.to_string();
    assert!(text.contains("\"users_total\":2"), "dashboard: {text}");
    // Two registrations and the admin's UserRoleChanged; both users in the read model.
    assert!(text.contains("\"processed_total\":3"), "dashboard: {text}");
    assert_eq!(
        dashboard["events"]["read_model"]["users"], 2,
        "dashboard: {text}"
    );
    Ok(())
}

#[tokio::test]
async fn a_replay_republishes_applies_nothing_twice_and_rebuilds_a_new_consumer(
) -> anyhow::Result<()> {
    let mut stack = Stack::start_all().await?;
    register(&stack, &new_user()).await?;
    register(&stack, &new_user()).await?;
    let token = admin_token(&stack).await?;
    assert!(
        eventually(Duration::from_secs(30), || async {
            welcome_rows(&stack).await == 3
        })
        .await
    );

    let replay = |dry_run: bool| {
        stack
            .http
            .post(stack.url(Service::Bff, "/api/v1/protected/admin/outbox/replay"))
            .bearer_auth(&token)
            .json(&json!({ "event_type": "UserRegistered", "dry_run": dry_run }))
            .send()
    };
    // A replay takes only rows recorded as published (the others are on their way anyway).
    assert!(
        tests::relay_kit::all_recorded(&stack.db).await,
        "the relay did not record the events as published"
    );
    let dry: Value = replay(true).await?.json().await?;
    assert_eq!(dry["count"], 3, "dry run: {dry}");
    let done: Value = replay(false).await?.json().await?;
    assert_eq!(done["count"], 3, "replay: {done}");

    // The audit log has both replays by the admin, and the operator's set-role before
    // them (from the command line, so no actor), with user ids and never an email.
    let admin: Value = stack
        .http
        .get(stack.url(Service::Bff, "/api/v1/protected/profile"))
        .bearer_auth(&token)
        .send()
        .await?
        .json()
        .await?;
    let audit: Value = stack
        .http
        .get(stack.url(Service::Bff, "/api/v1/protected/admin/audit"))
        .bearer_auth(&token)
        .send()
        .await?
        .json()
        .await?;
    let records = audit["records"].as_array().expect("audit records");
    let summary: Vec<(&str, &str, &str)> = records
        .iter()
        .map(|r| {
            let text = |k: &str| r[k].as_str().unwrap_or("");
            (text("action"), text("via"), text("outcome"))
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("outbox.replay", "api", "ok"),
            ("outbox.replay", "api", "ok"),
            ("user.set_role", "cli", "ok"),
        ],
        "{audit}"
    );
    assert_eq!(records[0]["actor"], admin["id"]);
    assert_eq!(records[0]["detail"]["count"], 3);
    assert_eq!(records[1]["parameters"]["dry_run"], true);
    assert!(records[2].get("actor").is_none(), "{audit}");
    assert_eq!(records[2]["parameters"]["user_id"], admin["id"]);
    assert_eq!(
        records[2]["detail"],
        json!({"previous": "user", "current": "admin"})
    );
    assert!(
        !audit.to_string().contains('@'),
        "an email in the audit log: {audit}"
    );
    // The role change is the admin's version 2: a UserRoleChanged after its registration.
    let rows = stack
        .db_client()
        .await?
        .query(
            "SELECT event_type, (payload->>'version')::bigint, headers->>'ce_userversion', payload \
             FROM users.outbox WHERE aggregate_id = $1 ORDER BY id",
            &[&admin["id"].as_str().unwrap_or_default()],
        )
        .await?;
    let events: Vec<(String, i64, String)> = rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(
        events,
        [
            ("UserRegistered".to_owned(), 1, "1".to_owned()),
            ("UserRoleChanged".to_owned(), 2, "2".to_owned()),
        ]
    );
    let role_changed: Value = rows[1].get(3);
    assert_eq!(role_changed["role"], "admin");
    assert_eq!(role_changed["previous_role"], "user");

    // The consumer sees the three again and counts them as duplicates; no effect twice.
    let stats_url = stack.url(Service::Consumer, "/stats");
    let http = stack.http.clone();
    let duplicates_seen = eventually(Duration::from_secs(30), || {
        let (http, url) = (http.clone(), stats_url.clone());
        async move {
            let stats: Value = match http.get(&url).bearer_auth(INTERNAL_KEY).send().await {
                Ok(r) => r.json().await.unwrap_or_default(),
                Err(_) => return false,
            };
            stats["duplicates_total"] == 3
        }
    })
    .await;
    assert!(
        duplicates_seen,
        "the consumer did not count the replayed events as duplicates"
    );
    assert_eq!(welcome_rows(&stack).await, 3);
    assert_eq!(
        stack
            .count("SELECT coalesce(sum(count), 0)::bigint FROM consumer.registration_stats")
            .await?,
        3
    );

    // A consumer in a new group, on an empty database, rebuilds its tables from the topic.
    let fresh = scratch_db().await;
    stack.start_extra(
        Service::Consumer,
        &[
            ("DB_NAME", fresh.db_name.clone()),
            (
                "CONSUMER_GROUP",
                format!("rebuild-{}", Uuid::new_v4().simple()),
            ),
        ],
    )?;
    let rebuilt = eventually(Duration::from_secs(30), || {
        let fresh = fresh.clone();
        async move {
            let Ok(client) = fresh.connect().await else {
                return false;
            };
            let Ok(row) = client
                .query_one("SELECT count(*) FROM consumer.welcome_notifications", &[])
                .await
            else {
                return false;
            };
            row.get::<_, i64>(0) == 3
        }
    })
    .await;
    assert!(
        rebuilt,
        "the new consumer group did not rebuild 3 welcome notifications"
    );
    Ok(())
}
