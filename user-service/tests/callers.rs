//! One internal key per caller, each accepted only on the routes its caller needs: a leaked
//! event-consumer or ops key cannot register users or check passwords.

mod common;

use common::{registration, scratch_db, spawn_app_with};
use serde_json::json;

const BFF: &str = "bff-caller-key-0123456789abcdef";
const CONSUMER: &str = "consumer-caller-key-0123456789ab";
const OPS: &str = "ops-caller-key-0123456789abcdef";

#[tokio::test]
async fn each_callers_key_opens_only_its_callers_routes() {
    let db = scratch_db().await;
    let keys = format!("bff:{BFF},event-consumer:{CONSUMER},ops:{OPS}");
    // Every caller is named, so the suite's shorthand key covers none of them.
    let app = spawn_app_with(db.clone(), db, &[("INTERNAL_API_KEYS", &keys)]).await;
    let send = |key: &'static str, method: &'static str, path: String, body: serde_json::Value| {
        let request = match method {
            "GET" => app.http.get(app.url(&path)),
            _ => app.http.post(app.url(&path)).json(&body),
        };
        async move {
            request
                .bearer_auth(key)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    let register = |email: &str| registration(email);
    let login = json!({"email": "caller@example.com", "password": "correct horse battery staple"});
    let replay = json!({"all": true, "dry_run": true});

    // The BFF's key does everything the BFF does.
    assert_eq!(
        send(
            BFF,
            "POST",
            "/api/v1/register".into(),
            register("caller@example.com")
        )
        .await,
        201
    );
    let id: uuid::Uuid = app
        .pool
        .get()
        .await
        .unwrap()
        .query_one("SELECT id FROM users.users", &[])
        .await
        .unwrap()
        .get(0);
    let user = format!("/api/v1/users/{id}");
    assert_eq!(
        send(
            BFF,
            "POST",
            "/api/v1/verify-credentials".into(),
            login.clone()
        )
        .await,
        200
    );
    assert_eq!(send(BFF, "GET", user.clone(), json!(null)).await, 200);
    assert_eq!(
        send(BFF, "GET", "/api/v1/admin/stats".into(), json!(null)).await,
        200
    );
    assert_eq!(
        send(
            BFF,
            "POST",
            "/api/v1/admin/outbox/replay".into(),
            replay.clone()
        )
        .await,
        200
    );

    // The consumer's key only looks users up.
    assert_eq!(send(CONSUMER, "GET", user.clone(), json!(null)).await, 200);
    for (method, path, body) in [
        ("POST", "/api/v1/register", register("other@example.com")),
        ("POST", "/api/v1/verify-credentials", login.clone()),
        ("GET", "/api/v1/admin/stats", json!(null)),
        ("POST", "/api/v1/admin/outbox/replay", replay.clone()),
    ] {
        assert_eq!(
            send(CONSUMER, method, path.into(), body).await,
            403,
            "{path}"
        );
    }
    for verb in ["deactivate", "reactivate"] {
        let path = format!("/api/v1/admin/users/{id}/{verb}");
        assert_eq!(
            send(CONSUMER, "POST", path, json!(null)).await,
            403,
            "{verb}"
        );
    }
    // The BFF's and the operators' keys change a user's status.
    let deactivate = format!("/api/v1/admin/users/{id}/deactivate");
    let reactivate = format!("/api/v1/admin/users/{id}/reactivate");
    assert_eq!(
        send(BFF, "POST", deactivate.clone(), json!(null)).await,
        200
    );
    assert_eq!(
        send(OPS, "POST", reactivate.clone(), json!(null)).await,
        200
    );

    // The operators' key reads and replays, but neither registers nor checks passwords.
    assert_eq!(send(OPS, "GET", user.clone(), json!(null)).await, 200);
    assert_eq!(
        send(OPS, "GET", "/api/v1/admin/stats".into(), json!(null)).await,
        200
    );
    assert_eq!(
        send(OPS, "POST", "/api/v1/admin/outbox/replay".into(), replay).await,
        200
    );
    assert_eq!(
        send(
            OPS,
            "POST",
            "/api/v1/register".into(),
            register("ops@example.com")
        )
        .await,
        403
    );
    assert_eq!(
        send(OPS, "POST", "/api/v1/verify-credentials".into(), login).await,
        403
    );

    assert_eq!(
        app.count("SELECT count(*) FROM users.users").await,
        1,
        "no refused call wrote"
    );
    assert_eq!(
        send(common::KEY, "GET", user, json!(null)).await,
        401,
        "the shorthand is unused"
    );
}
