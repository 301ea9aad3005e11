//! Rate limits as a client meets them, through the real listener.

use serde_json::json;
use tests::bff_kit::spawn_stack;

async fn login_attempt(
    stack: &tests::bff_kit::Stack,
    forwarded_for: Option<&str>,
) -> reqwest::Response {
    login_attempt_as(stack, "nobody@example.com", forwarded_for).await
}

async fn login_attempt_as(
    stack: &tests::bff_kit::Stack,
    email: &str,
    forwarded_for: Option<&str>,
) -> reqwest::Response {
    let mut request = stack
        .http
        .post(format!("{}/api/v1/auth/login", stack.base))
        .json(&json!({"email": email, "password": "whatever it is"}));
    if let Some(xff) = forwarded_for {
        request = request.header("X-Forwarded-For", xff);
    }
    request.send().await.unwrap()
}

#[tokio::test]
async fn the_sixth_login_in_a_minute_gets_the_designed_429() {
    let stack = spawn_stack(&[]).await;
    for _ in 0..5 {
        assert_eq!(login_attempt(&stack, None).await.status(), 401);
    }
    let response = login_attempt(&stack, None).await;
    assert_eq!(response.status(), 429);
    let retry_after: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(
        body,
        json!({
            "error": "Too many requests",
            "message": "Rate limit exceeded. Please try again later.",
            "retry_after": format!("{retry_after} seconds"),
        })
    );
    // Other routes keep their own budget.
    assert_eq!(stack.get("/health", None).await.0, 200);
}

#[tokio::test]
async fn a_spoofed_forwarded_for_from_an_untrusted_peer_gains_nothing() {
    let stack = spawn_stack(&[]).await;
    for i in 0..5 {
        let spoof = format!("203.0.113.{i}");
        assert_eq!(login_attempt(&stack, Some(&spoof)).await.status(), 401);
    }
    let response = login_attempt(&stack, Some("198.51.100.99")).await;
    assert_eq!(response.status(), 429);
}

#[tokio::test]
async fn behind_a_trusted_proxy_each_client_is_limited_on_its_own() {
    let stack = spawn_stack(&[("TRUSTED_PROXIES", "127.0.0.1/32")]).await;
    for _ in 0..5 {
        let status = login_attempt(&stack, Some("6.6.6.6, 203.0.113.1"))
            .await
            .status();
        assert_eq!(status, 401);
    }
    // The same client again, whatever it prepends, is over its limit...
    let response = login_attempt(&stack, Some("1.1.1.1, 203.0.113.1")).await;
    assert_eq!(response.status(), 429);
    // ...while another client behind the same proxy still gets through (with another
    // email: the first one's account throttle now holds too).
    let response = login_attempt_as(&stack, "somebody@example.com", Some("203.0.113.2")).await;
    assert_eq!(response.status(), 401);
}

#[tokio::test]
async fn failures_spread_over_many_addresses_still_throttle_the_account() {
    let stack = spawn_stack(&[("TRUSTED_PROXIES", "127.0.0.1/32")]).await;
    stack.register("target@example.com").await;
    let from = |i: usize| format!("198.51.100.{i}");
    let attempt = |i: usize, password: &'static str| {
        let stack = &stack;
        async move {
            stack
                .http
                .post(format!("{}/api/v1/auth/login", stack.base))
                .header("X-Forwarded-For", from(i))
                .json(&json!({"email": "target@example.com", "password": password}))
                .send()
                .await
                .expect("request")
        }
    };
    // One good login from the owner's address first.
    assert_eq!(attempt(1, tests::bff_kit::PASSWORD).await.status(), 200);
    // Five failures from five addresses: each address stays far below its own limit.
    for i in 10..15 {
        assert_eq!(attempt(i, "a wrong guess!").await.status(), 401);
    }
    let throttled = attempt(15, "a wrong guess!").await;
    assert_eq!(
        throttled.status(),
        429,
        "the account is throttled, not the address"
    );
    assert_eq!(throttled.headers()["retry-after"], "1");
    let body: serde_json::Value = throttled.json().await.unwrap();
    assert_eq!(body["error"], "Too many requests");
    // The right password from a new address waits too; from the owner's, it works.
    assert_eq!(attempt(16, tests::bff_kit::PASSWORD).await.status(), 429);
    assert_eq!(attempt(1, tests::bff_kit::PASSWORD).await.status(), 200);
}
