//! The seed's flow and the token rules, against the real user service and PostgreSQL.

use std::time::{Duration, Instant};

use bff::tokens::{generate_paserk, TokenKeys, TokenType};
use platform::testing::eventually;
use tests::bff_kit::{spawn_bff, spawn_stack, PASSWORD};
use uuid::Uuid;

/// The development signing key, as the development profile documents it.
fn dev_secret() -> &'static str {
    include_str!("../../bff/config/development.yaml")
        .lines()
        .find_map(|line| line.strip_prefix("token_secret_key:"))
        .map(str::trim)
        .expect("bff/config/development.yaml has token_secret_key")
}

#[tokio::test]
async fn readme_flow_register_login_profile_refresh_logout() {
    let stack = spawn_stack(&[]).await;
    let user = stack.register("ada@example.com").await;
    assert_eq!(user["email"], "ada@example.com");
    assert!(user.get("password").is_none());

    let (status, pair) = stack.login_with("ada@example.com", PASSWORD).await;
    assert_eq!(status, 200, "{pair}");
    assert_eq!(pair["token_type"], "Bearer");
    assert_eq!(pair["expires_in"], 900);
    let access = pair["access_token"].as_str().unwrap();
    let refresh = pair["refresh_token"].as_str().unwrap();
    assert!(access.starts_with("v4.public."));

    let (status, profile) = stack.profile(access).await;
    assert_eq!(status, 200, "{profile}");
    assert_eq!(profile["id"], user["id"]);

    let (status, next) = stack.refresh(refresh).await;
    assert_eq!(status, 200, "{next}");
    let access2 = next["access_token"].as_str().unwrap();
    let refresh2 = next["refresh_token"].as_str().unwrap();
    assert_ne!(refresh2, refresh);
    assert_eq!(stack.profile_status(access2).await, 200);

    assert_eq!(stack.logout(access2).await, 204);

    // Logout ends the refresh token at once and, on this instance, the access tokens too.
    let (status, body) = stack.refresh(refresh2).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"], "Unauthorized");
    assert_eq!(stack.profile_status(access2).await, 401);
    assert_eq!(stack.profile_status(access).await, 401);
}

#[tokio::test]
async fn reusing_a_refresh_token_revokes_the_whole_session() {
    let stack = spawn_stack(&[]).await;
    stack.register("reuse@example.com").await;
    let (access, refresh) = stack.login("reuse@example.com").await;

    let (status, next) = stack.refresh(&refresh).await;
    assert_eq!(status, 200);
    let fresh_refresh = next["refresh_token"].as_str().unwrap().to_owned();

    // The stolen copy comes back: refused, and the family dies with it.
    let (status, body) = stack.refresh(&refresh).await;
    assert_eq!(status, 401, "{body}");
    let (status, _) = stack.refresh(&fresh_refresh).await;
    assert_eq!(status, 401);
    assert_eq!(stack.profile_status(&access).await, 401);
    // Another login starts a new, working session.
    let (access, _) = stack.login("reuse@example.com").await;
    assert_eq!(stack.profile_status(&access).await, 200);
}

#[tokio::test]
async fn logout_on_one_instance_ends_access_on_another_within_5_seconds() {
    let mut stack = spawn_stack(&[]).await;
    let (other, stop) = spawn_bff(&stack.db, &stack.user_service, &[]).await;
    stack.keep(stop);
    stack.register("two@example.com").await;
    let (access, _) = stack.login("two@example.com").await;
    // The other instance has now cached the session as live.
    assert_eq!(stack.profile_status_on(&other, &access).await, 200);

    assert_eq!(stack.logout(&access).await, 204);

    let logged_out = Instant::now();
    loop {
        if stack.profile_status_on(&other, &access).await == 401 {
            break;
        }
        assert!(
            logged_out.elapsed() < Duration::from_secs(5),
            "the access token still works 5 s after logout"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn bad_tokens_are_refused_with_401() {
    let stack = spawn_stack(&[]).await;
    stack.register("tokens@example.com").await;
    let (access, refresh) = stack.login("tokens@example.com").await;
    let keys = TokenKeys::new(dev_secret(), &[], "bff", "outbox-user-platform").unwrap();
    let good = keys.verify(&access, TokenType::Access).unwrap();

    let mut tampered = access.clone().into_bytes();
    let middle = tampered.len() / 2;
    tampered[middle] = if tampered[middle] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();

    let mut expired = good.clone();
    expired.iat = chrono::Utc::now() - chrono::Duration::hours(2);
    expired.nbf = expired.iat;
    expired.exp = chrono::Utc::now() - chrono::Duration::hours(1);

    let mut not_yet = good.clone();
    not_yet.nbf = chrono::Utc::now() + chrono::Duration::hours(1);

    let other_audience = TokenKeys::new(dev_secret(), &[], "bff", "someone-else").unwrap();
    let mut wrong_audience = good.clone();
    wrong_audience.aud = "someone-else".into();

    let (stranger_secret, _, _) = generate_paserk().unwrap();
    let stranger = TokenKeys::new(&stranger_secret, &[], "bff", "outbox-user-platform").unwrap();

    let cases = [
        ("tampered", tampered),
        ("expired", keys.sign(&expired).unwrap()),
        ("not yet valid", keys.sign(&not_yet).unwrap()),
        ("refresh as access", refresh),
        (
            "wrong audience",
            other_audience.sign(&wrong_audience).unwrap(),
        ),
        ("unknown kid", stranger.sign(&good).unwrap()),
        ("garbage", "v4.public.nonsense".to_owned()),
    ];
    for (name, token) in cases {
        let (status, body) = stack.profile(&token).await;
        assert_eq!(status, 401, "{name}: {body}");
        assert_eq!(body["error"], "Unauthorized", "{name}");
    }
    let (status, body) = stack.get("/api/v1/protected/profile", None).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"], "Unauthorized");
    // The genuine token still works, so the refusals were about the tokens.
    assert_eq!(stack.profile_status(&access).await, 200);
    // A refresh token signed by an unknown key cannot refresh either.
    let mut refresh_claims = good.clone();
    refresh_claims.typ = TokenType::Refresh;
    refresh_claims.jti = Uuid::new_v4();
    let forged = stranger.sign(&refresh_claims).unwrap();
    let (status, _) = stack.refresh(&forged).await;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn login_failures_are_uniform_and_inactive_accounts_get_403() {
    let stack = spawn_stack(&[]).await;
    stack.register("known@example.com").await;
    let (s1, unknown) = stack.login_with("nobody@example.com", PASSWORD).await;
    let (s2, wrong) = stack
        .login_with("known@example.com", "not the password at all")
        .await;
    assert_eq!((s1, s2), (401, 401));
    assert_eq!(unknown, wrong);

    let client = stack.pool.get().await.unwrap();
    client
        .execute(
            "UPDATE users.users SET is_active = false WHERE email = 'known@example.com'",
            &[],
        )
        .await
        .unwrap();
    let (status, body) = stack.login_with("known@example.com", PASSWORD).await;
    assert_eq!(status, 403, "{body}");
}

/// The revocation window: a role change or a deactivation reaches access tokens within it.
const REVOCATION_WINDOW: Duration = Duration::from_secs(5);

#[tokio::test]
async fn a_demoted_admin_is_refreshed_as_a_user_and_loses_admin_within_the_window() {
    let stack = spawn_stack(&[]).await;
    stack.register("demoted@example.com").await;
    stack.make_admin("demoted@example.com").await;
    let (access, refresh) = stack.login("demoted@example.com").await;
    assert_eq!(stack.dashboard(&access).await.0, 200);

    stack
        .set_role("demoted@example.com", user_service::users::Role::User)
        .await;

    let (status, pair) = stack.refresh(&refresh).await;
    assert_eq!(status, 200, "{pair}");
    let fresh = pair["access_token"].as_str().unwrap();
    assert_eq!(
        stack.dashboard(fresh).await.0,
        403,
        "the new token carries the new role"
    );
    assert_eq!(stack.profile_status(fresh).await, 200);
    // The access token issued while admin stops working as admin within the window.
    assert!(
        eventually(REVOCATION_WINDOW, || async {
            stack.dashboard(&access).await.0 == 403
        })
        .await,
        "the old access token is still admin after the revocation window"
    );
}

#[tokio::test]
async fn a_deactivated_users_refresh_is_refused_and_their_access_stops() {
    let stack = spawn_stack(&[]).await;
    stack.register("leaving@example.com").await;
    let (access, refresh) = stack.login("leaving@example.com").await;
    assert_eq!(stack.profile_status(&access).await, 200);

    let client = stack.pool.get().await.unwrap();
    client
        .execute(
            "UPDATE users.users SET is_active = false WHERE email = 'leaving@example.com'",
            &[],
        )
        .await
        .unwrap();

    let (status, body) = stack.refresh(&refresh).await;
    assert_eq!(status, 401, "{body}");
    assert!(
        eventually(REVOCATION_WINDOW, || async {
            stack.profile_status(&access).await == 401
        })
        .await,
        "the access token still works after the revocation window"
    );
    // Reactivating does not bring the revoked session back.
    client
        .execute(
            "UPDATE users.users SET is_active = true WHERE email = 'leaving@example.com'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(stack.refresh(&refresh).await.0, 401);
}
