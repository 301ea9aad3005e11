//! The BFF under load: `/api/v1/protected/profile` (a valid token, the limit raised for
//! the run) against `/health`, same load generator, same run. The user service and the BFF
//! run in this process on their real listeners.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use platform::db::DbConfig;
use platform::service::Service as _;
use platform::testing::{local_url, stop_signal};
use serde_json::{json, Value};

const KEY: &str = "bench-internal-key-0123456789";
const CONCURRENCY: usize = 32;

fn env(db: &DbConfig, extra: &[(&str, String)]) -> Vec<(String, String)> {
    let mut env = db.to_env();
    let settings = [
        ("PORT", "0".to_owned()),
        ("LOG_LEVEL", "error".to_owned()),
        ("INTERNAL_API_KEY", KEY.to_owned()),
        ("SCRYPT_LOG_N", "10".to_owned()),
    ];
    let settings = settings.into_iter().chain(extra.iter().cloned());
    env.extend(settings.map(|(k, v)| (k.to_owned(), v)));
    env
}

/// Requests per second of `url` over `seconds`, from `CONCURRENCY` keep-alive clients;
/// every answer must be a success.
async fn load(
    http: &reqwest::Client,
    url: &str,
    token: Option<&str>,
    seconds: u64,
) -> anyhow::Result<f64> {
    load_expecting(http, url, token, seconds, None).await
}

/// [`load`], where every answer must have the status `expect` (a 404, say) if given.
async fn load_expecting(
    http: &reqwest::Client,
    url: &str,
    token: Option<&str>,
    seconds: u64,
    expect: Option<u16>,
) -> anyhow::Result<f64> {
    let ok = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let workers: Vec<_> = (0..CONCURRENCY)
        .map(|_| {
            let (http, url, token) = (http.clone(), url.to_owned(), token.map(str::to_owned));
            let (ok, failed) = (ok.clone(), failed.clone());
            tokio::spawn(async move {
                while Instant::now() < deadline {
                    let mut request = http.get(&url);
                    if let Some(token) = &token {
                        request = request.bearer_auth(token);
                    }
                    match request.send().await {
                        Ok(r)
                            if expect.map_or(r.status().is_success(), |want| {
                                r.status().as_u16() == want
                            }) =>
                        {
                            let _ = r.bytes().await;
                            ok.fetch_add(1, Ordering::Relaxed);
                        }
                        _ => {
                            failed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await?;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let failed = failed.load(Ordering::Relaxed);
    anyhow::ensure!(
        failed == 0,
        "{failed} requests to {url} failed during the load"
    );
    Ok(ok.load(Ordering::Relaxed) as f64 / elapsed)
}

pub(crate) async fn measure(db: &DbConfig, seconds: u64) -> anyhow::Result<Value> {
    let users =
        user_service::startup::App::build(user_service::config::Config::from_env(env(db, &[]))?)
            .await?;
    let users_url = local_url(users.port());
    let (stop_users, users_stopped) = stop_signal();
    let users_task = tokio::spawn(users.run_until_stopped(users_stopped));

    let limit = "1000000000".to_owned();
    let bff_env = env(
        db,
        &[
            ("USER_SERVICE_URL", users_url),
            ("EVENT_CONSUMER_URL", "http://127.0.0.1:9".to_owned()),
            ("RATE_LIMIT_PROFILE_PER_MIN", limit.clone()),
            ("RATE_LIMIT_LOGIN_PER_MIN", limit.clone()),
            ("RATE_LIMIT_REGISTER_PER_MIN", limit),
        ],
    );
    let bff = bff::startup::App::build(bff::config::Config::from_env(bff_env)?).await?;
    let base = local_url(bff.port());
    let (stop_bff, bff_stopped) = stop_signal();
    let bff_task = tokio::spawn(bff.run_until_stopped(bff_stopped));

    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(CONCURRENCY)
        .build()?;
    let credentials = json!({
        "email": "bench.profile@example.com", "password": "a long and unusual passphrase 42",
        "first_name": "Bench", "last_name": "Profile",
    });
    let registered = http
        .post(format!("{base}/api/v1/register"))
        .json(&credentials)
        .send()
        .await?;
    anyhow::ensure!(
        registered.status() == 201,
        "register answered {}",
        registered.status()
    );
    let tokens: Value = http
        .post(format!("{base}/api/v1/auth/login"))
        .json(&json!({ "email": credentials["email"], "password": credentials["password"] }))
        .send()
        .await?
        .json()
        .await?;
    let token = tokens["access_token"]
        .as_str()
        .ok_or_else(|| anyhow::anyhow!("no access token: {tokens}"))?
        .to_owned();

    // Warm both paths (connections, caches), then measure them one after the other.
    load(&http, &format!("{base}/health"), None, 1).await?;
    load(
        &http,
        &format!("{base}/api/v1/protected/profile"),
        Some(&token),
        1,
    )
    .await?;
    let health = load(&http, &format!("{base}/health"), None, seconds).await?;
    // The liveness probe against the cheapest answer there is, a 404: it must cost no
    // more than that (no I/O, no lock).
    let missing = format!("{base}/no-such-route");
    load_expecting(&http, &missing, None, 1, Some(404)).await?;
    let not_found = load_expecting(&http, &missing, None, seconds, Some(404)).await?;
    let live = load(&http, &format!("{base}/health/live"), None, seconds).await?;
    let profile = load(
        &http,
        &format!("{base}/api/v1/protected/profile"),
        Some(&token),
        seconds,
    )
    .await?;

    let _ = stop_bff.send(());
    let _ = stop_users.send(());
    let _ = bff_task.await;
    let _ = users_task.await;
    Ok(json!({
        "profile_rps": crate::stats::round0(profile),
        "health_rps": crate::stats::round0(health),
        "live_rps": crate::stats::round0(live),
        "not_found_rps": crate::stats::round0(not_found),
        "live_to_not_found": crate::stats::round3(live / not_found),
        "profile_to_live": crate::stats::round3(profile / live),
        "profile_to_health": crate::stats::round3(profile / health),
        "concurrency": CONCURRENCY,
        "seconds": seconds,
    }))
}
