//! Idempotent registration, failure answers, documentation and headers.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use platform::testing::send_raw_json;
use poem::web::{Data, Json};
use poem::{handler, post, EndpointExt, Route};
use serde_json::{json, Value};
use tests::bff_kit::{
    closed_port_url, registration, scratch_db, spawn_bff, spawn_fake, spawn_stack,
};
use tokio::sync::Notify;

async fn register_with_key(stack: &tests::bff_kit::Stack, key: &str, body: &Value) -> (u16, Value) {
    register_from(stack, None, key, body).await
}

/// Registers with `key`, as the client `from` when given (the stack trusts 127.0.0.1's
/// `X-Forwarded-For`).
async fn register_from(
    stack: &tests::bff_kit::Stack,
    from: Option<&str>,
    key: &str,
    body: &Value,
) -> (u16, Value) {
    let mut request = stack
        .http
        .post(format!("{}/api/v1/register", stack.base))
        .header("Idempotency-Key", key);
    if let Some(from) = from {
        request = request.header("X-Forwarded-For", from);
    }
    let response = request.json(body).send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn an_idempotency_key_replays_the_first_answer_and_refuses_another_body() {
    let stack = spawn_stack(&[("RATE_LIMIT_REGISTER_PER_MIN", "20")]).await;
    let body = registration("once@example.com");
    let (first_status, first) = register_with_key(&stack, "key-1", &body).await;
    assert_eq!(first_status, 201, "{first}");
    let (again_status, again) = register_with_key(&stack, "key-1", &body).await;
    assert_eq!((again_status, &again), (201, &first));

    let client = stack.pool.get().await.unwrap();
    let users: i64 = client
        .query_one("SELECT count(*) FROM users.users", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(users, 1, "the replay created no second user");

    let (status, body) =
        register_with_key(&stack, "key-1", &registration("other@example.com")).await;
    assert_eq!(status, 422, "{body}");

    // Without the key the same body is a new request, and the email is taken.
    let (status, body) = stack
        .post("/api/v1/register", &registration("once@example.com"), None)
        .await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["details"]["field"], "email");
}

#[tokio::test]
async fn idempotency_keys_are_per_client_so_nobody_can_block_or_replay_anothers() {
    let stack = spawn_stack(&[("TRUSTED_PROXIES", "127.0.0.1/32")]).await;
    let (alice, mallory) = (Some("203.0.113.1"), Some("198.51.100.7"));
    // Mallory takes the key first, with her own body.
    let (status, squatted) = register_from(
        &stack,
        mallory,
        "my-key",
        &registration("mallory@example.com"),
    )
    .await;
    assert_eq!(status, 201, "{squatted}");

    // Alice's request with the same key is her own: it runs (a global key gave 422 here).
    let body = registration("alice@example.com");
    let (status, first) = register_from(&stack, alice, "my-key", &body).await;
    assert_eq!(status, 201, "{first}");
    assert_eq!(first["email"], "alice@example.com");
    let (status, again) = register_from(&stack, alice, "my-key", &body).await;
    assert_eq!(
        (status, &again),
        (201, &first),
        "Alice's retry replays her answer"
    );

    // Mallory sending Alice's body under the key gets her own key's verdict, never
    // Alice's stored answer.
    let (status, refused) = register_from(&stack, mallory, "my-key", &body).await;
    assert_eq!(status, 422, "{refused}");
    assert_ne!(refused["id"], first["id"]);
}

#[tokio::test]
async fn ended_sessions_and_expired_idempotency_keys_are_purged_and_live_ones_stay() {
    let stack = spawn_stack(&[("AUTH_PURGE_INTERVAL_MS", "100")]).await;
    stack.register("live@example.com").await;
    let (_, live_refresh) = stack.login("live@example.com").await;
    let client = stack.pool.get().await.unwrap();
    // Two sessions that ended over a day ago (one expired, one revoked), one revoked an
    // hour ago, each with a refresh token; one key past its window and one fresh.
    client
        .batch_execute(
            "INSERT INTO auth.sessions (id, user_id, role, expires_at, revoked_at) VALUES \
               ('00000000-0000-7000-8000-000000000001', gen_random_uuid(), 'user', \
                now() - interval '2 days', NULL), \
               ('00000000-0000-7000-8000-000000000002', gen_random_uuid(), 'user', \
                now() + interval '3 days', now() - interval '25 hours'), \
               ('00000000-0000-7000-8000-000000000003', gen_random_uuid(), 'user', \
                now() + interval '3 days', now() - interval '1 hour'); \
             INSERT INTO auth.refresh_tokens (jti, session_id) \
               SELECT gen_random_uuid(), id FROM auth.sessions \
               WHERE id::text LIKE '00000000-0000-7000-8000-%'; \
             INSERT INTO auth.idempotency_keys (client, key, request_hash, created_at) VALUES \
               ('203.0.113.1', 'old', '\\x00', now() - interval '25 hours'), \
               ('203.0.113.1', 'new', '\\x00', now() - interval '23 hours');",
        )
        .await
        .unwrap();
    let remaining = || async {
        let count = |sql: &'static str| {
            let client = &client;
            async move { client.query_one(sql, &[]).await.unwrap().get::<_, i64>(0) }
        };
        (
            count("SELECT count(*) FROM auth.sessions").await,
            count("SELECT count(*) FROM auth.refresh_tokens").await,
            count("SELECT count(*) FROM auth.idempotency_keys").await,
        )
    };
    let purged = platform::testing::eventually(Duration::from_secs(10), || async {
        remaining().await == (2, 2, 1)
    })
    .await;
    assert!(
        purged,
        "sessions, tokens, keys left: {:?}",
        remaining().await
    );
    let kept: Vec<String> = client
        .query("SELECT key FROM auth.idempotency_keys", &[])
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(kept, ["new"]);
    let (status, _) = stack.refresh(&live_refresh).await;
    assert_eq!(status, 200, "the live session still refreshes");
}

#[tokio::test]
async fn with_metrics_addr_the_metrics_leave_the_public_listener() {
    let port = platform::testing::free_port();
    let addr = format!("127.0.0.1:{port}");
    let stack = spawn_stack(&[("METRICS_ADDR", &addr)]).await;
    stack.register("counted@example.com").await;

    let public = stack.fetch("/metrics").await;
    assert_eq!(public.status(), 404, "no /metrics on the public listener");
    let own = reqwest::get(format!("http://{addr}/metrics"))
        .await
        .unwrap();
    assert_eq!(own.status(), 200);
    let text = own.text().await.unwrap();
    assert!(text.contains("bff_registrations_total"), "{text}");
    let api = reqwest::get(format!("http://{addr}/api/v1/protected/profile"))
        .await
        .unwrap();
    assert_eq!(
        api.status(),
        404,
        "the metrics listener serves nothing else"
    );
}

#[derive(Default)]
struct Seen {
    traceparents: Vec<String>,
}

/// Holds every request until the test releases it (so a second request is sure to find
/// the first still running).
#[handler]
async fn slow_register(
    req: &poem::Request,
    seen: Data<&Arc<Mutex<Seen>>>,
    release: Data<&Arc<Notify>>,
) -> Json<Value> {
    if let Some(trace) = req
        .headers()
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
    {
        seen.lock().unwrap().traceparents.push(trace.to_owned());
    }
    release.notified().await;
    Json(json!({
        "id": "0191f1a0-0000-7000-8000-000000000001",
        "email": "slow@example.com",
        "phone": null,
        "first_name": "Ada",
        "last_name": "Lovelace",
        "role": "user",
        "is_active": true,
        "created_at": "2025-01-01T00:00:00Z",
    }))
}

#[tokio::test]
async fn a_key_still_running_gets_409_and_the_trace_reaches_the_user_service() {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let release = Arc::new(Notify::new());
    let fake = Route::new()
        .at("/api/v1/register", post(slow_register))
        .data(seen.clone())
        .data(release.clone());
    let (user_service, stop_fake) = spawn_fake(fake).await;
    let db = scratch_db().await;
    let (base, _stop) = spawn_bff(&db, &user_service, &[]).await;
    let http = reqwest::Client::new();
    let send = |http: reqwest::Client, base: String| async move {
        http.post(format!("{base}/api/v1/register"))
            .header("Idempotency-Key", "slow-key")
            .header(
                "traceparent",
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            )
            .json(&registration("slow@example.com"))
            .send()
            .await
            .unwrap()
    };
    let first = tokio::spawn(send(http.clone(), base.clone()));
    // The first request holds the key once the user service has it (which answers only
    // when released).
    let in_flight = platform::testing::eventually(Duration::from_secs(5), || {
        let seen = seen.clone();
        async move { !seen.lock().unwrap().traceparents.is_empty() }
    })
    .await;
    assert!(in_flight, "the first request reached the user service");
    let second = send(http.clone(), base.clone()).await.status();
    // The first request may finish now (a permit is stored if it is not waiting yet).
    release.notify_one();
    assert_eq!(second, 409);
    let first = first.await.unwrap();
    assert_eq!(first.status(), 201);
    let seen = seen.lock().unwrap().traceparents.clone();
    assert_eq!(seen.len(), 1, "one upstream call for one key: {seen:?}");
    assert!(
        seen[0].starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"),
        "{seen:?}"
    );
    drop(stop_fake);
}

#[tokio::test]
async fn an_upstream_that_is_down_or_slow_answers_503_within_5_seconds() {
    let db = scratch_db().await;
    let down = closed_port_url().await;
    let (base, _stop) = spawn_bff(&db, &down, &[]).await;
    let http = reqwest::Client::new();
    let started = Instant::now();
    let response = http
        .post(format!("{base}/api/v1/auth/login"))
        .json(&json!({"email": "a@example.com", "password": "whatever it is"}))
        .send()
        .await
        .unwrap();
    let status = response.status();
    let body: Value = response.json().await.unwrap();
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"], "Service unavailable");
    assert!(started.elapsed() < Duration::from_secs(5));

    let (slow, _stop_slow) = spawn_fake(Route::new().at(
        "/api/v1/register",
        // Never answers: the BFF's own timeout must end the call.
        post(poem::endpoint::make(|_| async {
            std::future::pending::<()>().await;
            "too late"
        })),
    ))
    .await;
    let (base, _stop) = spawn_bff(&db, &slow, &[]).await;
    let started = Instant::now();
    let response = http
        .post(format!("{base}/api/v1/register"))
        .json(&registration("slow@example.com"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
    assert!(started.elapsed() < Duration::from_secs(5));
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "Service unavailable");
}

#[tokio::test]
async fn bodies_over_64_kib_get_413_and_malformed_json_400() {
    let stack = spawn_stack(&[]).await;
    let mut body = registration("big@example.com");
    body["first_name"] = json!("x".repeat(70 * 1024));
    let (status, answer) = stack.post("/api/v1/register", &body, None).await;
    assert_eq!(status, 413, "{answer}");
    assert_eq!(answer["error"], "Payload too large");

    let login = stack.http.post(format!("{}/api/v1/auth/login", stack.base));
    let response = send_raw_json(login, "{not json").await;
    assert_eq!(response.status(), 400);
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["error"], "Bad request");
}

#[tokio::test]
async fn the_openapi_document_lists_every_route_and_the_bearer_scheme() {
    let stack = spawn_stack(&[]).await;
    let (status, doc) = stack.get("/openapi.json", None).await;
    assert_eq!(status, 200);
    let paths = doc["paths"].as_object().unwrap();
    for (path, method) in [
        ("/health", "get"),
        ("/api/v1/register", "post"),
        ("/api/v1/auth/login", "post"),
        ("/api/v1/auth/refresh", "post"),
        ("/api/v1/auth/logout", "post"),
        ("/api/v1/protected/profile", "get"),
        ("/api/v1/protected/admin/dashboard", "get"),
        ("/api/v1/protected/admin/outbox/replay", "post"),
    ] {
        assert!(paths[path][method].is_object(), "{method} {path} missing");
    }
    let profile = &paths["/api/v1/protected/profile"]["get"];
    assert!(profile["security"].is_array());
    for status in ["200", "401", "429", "503"] {
        assert!(profile["responses"][status].is_object(), "profile {status}");
    }
    assert!(paths["/api/v1/register"]["post"]["responses"]["409"].is_object());
    let schemes = doc["components"]["securitySchemes"].as_object().unwrap();
    assert!(schemes.values().any(|s| s["scheme"] == "bearer"));
}

#[tokio::test]
async fn answers_carry_security_headers_and_docs_get_a_csp_for_swagger() {
    let stack = spawn_stack(&[]).await;
    let api = stack.fetch("/api/v1/protected/profile").await;
    assert_eq!(api.headers()["x-content-type-options"], "nosniff");
    assert_eq!(api.headers()["cache-control"], "no-store");
    let csp = api.headers()["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("frame-ancestors 'none'"));
    assert!(api.headers().get("traceparent").is_some());

    let docs = stack.fetch("/docs").await;
    assert_eq!(docs.status(), 200);
    let csp = docs.headers()["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("script-src 'self' 'unsafe-inline'"), "{csp}");
    assert!(docs.text().await.unwrap().contains("swagger"));
}

#[tokio::test]
async fn cors_allows_only_the_configured_origins() {
    let stack = spawn_stack(&[("CORS_ORIGINS", "https://app.example.com")]).await;
    let preflight = |origin: &'static str| {
        stack
            .http
            .request(
                reqwest::Method::OPTIONS,
                format!("{}/api/v1/auth/login", stack.base),
            )
            .header("Origin", origin)
            .header("Access-Control-Request-Method", "POST")
            .send()
    };
    let allowed = preflight("https://app.example.com").await.unwrap();
    assert_eq!(
        allowed.headers()["access-control-allow-origin"],
        "https://app.example.com"
    );
    let refused = preflight("https://evil.example.com").await.unwrap();
    assert!(refused
        .headers()
        .get("access-control-allow-origin")
        .is_none());
}

#[tokio::test]
async fn origin_null_is_never_allowed() {
    // Sandboxed frames and file: pages send `Origin: null`; any page can, so it must never
    // be granted, whether or not origins are configured.
    for env in [&[][..], &[("CORS_ORIGINS", "https://app.example.com")][..]] {
        let stack = spawn_stack(env).await;
        let preflight = stack
            .http
            .request(
                reqwest::Method::OPTIONS,
                format!("{}/api/v1/auth/login", stack.base),
            )
            .header("Origin", "null")
            .header("Access-Control-Request-Method", "POST")
            .send()
            .await
            .unwrap();
        assert!(
            preflight
                .headers()
                .get("access-control-allow-origin")
                .is_none(),
            "{env:?}: {:?}",
            preflight.headers()
        );
        let login = stack
            .http
            .post(format!("{}/api/v1/auth/login", stack.base))
            .header("Origin", "null")
            .json(&serde_json::json!({"email": "nobody@example.com", "password": "x"}))
            .send()
            .await
            .unwrap();
        assert!(login.headers().get("access-control-allow-origin").is_none());
        assert_ne!(login.status(), 401, "refused before the endpoint");
    }
}

#[tokio::test]
async fn same_origin_posts_pass_with_no_cors_origins_configured() {
    // Browsers send Origin on same-origin POSTs (Swagger UI's "Try it out" does): with no
    // CORS_ORIGINS at all, the BFF's own pages must still work, while another origin gets
    // no CORS permission.
    let stack = spawn_stack(&[]).await;
    let own_origin = stack.base.clone();
    let login = |origin: String| {
        stack
            .http
            .post(format!("{}/api/v1/auth/login", stack.base))
            .header("Origin", origin)
            .json(
                &serde_json::json!({"email": "nobody@example.com", "password": "not the password"}),
            )
            .send()
    };
    let same = login(own_origin).await.unwrap();
    assert_eq!(
        same.status(),
        401,
        "a same-origin call reaches the endpoint"
    );
    let other = login("https://evil.example.com".into()).await.unwrap();
    assert!(other.headers().get("access-control-allow-origin").is_none());
    assert_ne!(
        other.status(),
        401,
        "a cross-origin call is refused before the endpoint"
    );
}

#[tokio::test]
async fn an_upstream_500_or_an_off_contract_answer_is_a_500_with_the_generic_body() {
    let (broken, _stop_broken) = spawn_fake(
        Route::new()
            .at(
                "/api/v1/register",
                post(poem::endpoint::make(|_| async {
                    poem::Response::builder()
                        .status(poem::http::StatusCode::INTERNAL_SERVER_ERROR)
                        .body("relation \"users.users\" does not exist")
                })),
            )
            .at(
                "/api/v1/verify-credentials",
                // 200, but not the documented body.
                post(poem::endpoint::make(|_| async { "surprise" })),
            ),
    )
    .await;
    let db = scratch_db().await;
    let (base, _stop) = spawn_bff(&db, &broken, &[]).await;
    let http = reqwest::Client::new();
    for (path, body) in [
        ("/api/v1/register", registration("broken@example.com")),
        (
            "/api/v1/auth/login",
            json!({"email": "broken@example.com", "password": "whatever it is"}),
        ),
    ] {
        let response = http
            .post(format!("{base}{path}"))
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = response.status();
        assert!(response.headers().get("retry-after").is_none(), "{path}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(status, 500, "{path}: {body}");
        assert_eq!(body["error"], "Internal server error", "{path}");
        let text = body.to_string();
        assert!(
            !text.contains("relation") && !text.contains("surprise"),
            "{text}"
        );
    }
}
