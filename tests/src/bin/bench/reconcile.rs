//! `reconcile` over many users: user-service (in this process, on its real listener) serves
//! its paginated directory, the read model holds the same users, and one check compares
//! them all; then a few rows are corrupted and the check must find exactly those.

use std::time::Instant;

use event_consumer::reconcile::{self, Options, Source};
use platform::db::DbConfig;
use platform::testing::spawn_service;
use serde_json::{json, Value};

const KEY: &str = "bench-internal-key-0123456789";
const CORRUPTED: i64 = 100;

/// `users` users in user-service's table and the same in the read model, in one
/// statement each (server-side `generate_series`).
async fn fill(db: &DbConfig, users: i64) -> anyhow::Result<()> {
    let client = db.connect().await?;
    client
        .execute(
            "INSERT INTO users.users (id, email, phone, password_hash, first_name, last_name, version) \
             SELECT (lpad(to_hex(i), 8, '0') || '-0000-7000-8000-000000000000')::uuid, \
                    'user' || i || '@example.com', '+1202555' || lpad(i::text, 7, '0'), \
                    '$scrypt$placeholder', 'First' || i, 'Last' || i, 1 + i % 5 \
             FROM generate_series(1, $1::int8) AS i",
            &[&users],
        )
        .await?;
    client
        .execute(
            "INSERT INTO consumer.user_directory \
                (user_id, email, first_name, last_name, phone, role, status, version) \
             SELECT id, email, first_name, last_name, phone, role, 'active', version \
             FROM users.users",
            &[],
        )
        .await?;
    client
        .batch_execute("ANALYZE users.users; ANALYZE consumer.user_directory")
        .await?;
    Ok(())
}

/// Seconds for one full check of `users` users in sync, and for one that finds the
/// corrupted rows.
pub(crate) async fn measure(db: &DbConfig, users: i64) -> anyhow::Result<Value> {
    fill(db, users).await?;
    let mut env = db.to_env();
    for (k, v) in [
        ("PORT", "0"),
        ("LOG_LEVEL", "error"),
        ("INTERNAL_API_KEY", KEY),
        ("SCRYPT_LOG_N", "10"),
    ] {
        env.push((k.to_owned(), v.to_owned()));
    }
    let (user_service, _stop) = spawn_service::<user_service::startup::App>(env.clone()).await;
    env.push(("USER_SERVICE_URL".to_owned(), user_service));
    let config = event_consumer::config::Config::from_env(env)?;
    let source = Source::from_settings(&config.settings)
        .ok_or_else(|| anyhow::anyhow!("no user-service key"))?;
    let pool = config.db.pool();
    let options = Options {
        grace: std::time::Duration::ZERO,
        repair_wait: std::time::Duration::ZERO,
    };

    let started = Instant::now();
    let in_sync = reconcile::check(&pool, &source, options).await?;
    let in_sync_s = started.elapsed().as_secs_f64();
    anyhow::ensure!(
        in_sync.summary.checked == users && in_sync.summary.differ == 0,
        "reconcile of identical data: {:?}",
        in_sync.summary
    );

    let client = db.connect().await?;
    client
        .execute(
            "UPDATE consumer.user_directory SET first_name = 'Corrupted' \
             WHERE user_id IN (SELECT user_id FROM consumer.user_directory ORDER BY user_id LIMIT $1)",
            &[&CORRUPTED],
        )
        .await?;
    let started = Instant::now();
    let drifted = reconcile::check(&pool, &source, options).await?;
    let drifted_s = started.elapsed().as_secs_f64();
    anyhow::ensure!(
        drifted.summary.differ == CORRUPTED,
        "reconcile found {} of {CORRUPTED} corrupted rows",
        drifted.summary.differ
    );
    Ok(json!({
        "users": users,
        "seconds_in_sync": crate::stats::round3(in_sync_s),
        "seconds_with_drift": crate::stats::round3(drifted_s),
        "corrupted_found": drifted.summary.differ,
        "users_per_s": crate::stats::round0(users as f64 / in_sync_s),
    }))
}
