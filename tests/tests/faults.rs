//! The failures the outbox exists for, with an exact accounting at the end: every
//! accepted registration has exactly one effect.
//!
//! These tests stop the shared Kafka and PostgreSQL of `make infra-up`, so they run one at
//! a time (a lock) and live in their own test binary (cargo runs test binaries one after
//! another, so no other suite sees the outage).

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use rand::RngExt as _;
use serde_json::json;
use tests::eventually;
use tests::relay_kit::user_registered;
use tests::stack::{Service, Stack, INTERNAL_KEY};
use uuid::Uuid;

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn infra(action: &str) -> anyhow::Result<()> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/infra.sh");
    let status = Command::new("bash").arg(script).arg(action).status()?;
    anyhow::ensure!(status.success(), "scripts/infra.sh {action} failed");
    // `down` only stops what `make infra-up` started; a server started some other way
    // would keep answering and the test would prove nothing.
    let port = match action {
        "kafka-down" => Some(9092),
        "pg-down" => Some(5432),
        _ => None,
    };
    if let Some(port) = port {
        let still_up = std::net::TcpStream::connect(("127.0.0.1", port)).is_ok();
        anyhow::ensure!(
            !still_up,
            "port {port} still answers after `scripts/infra.sh {action}`: this test needs the \
             PostgreSQL and Kafka that `make infra-up` started itself"
        );
    }
    Ok(())
}

/// Brings both back whatever happened in the test, so a failure does not cascade.
struct Restore;

impl Drop for Restore {
    fn drop(&mut self) {
        let _ = infra("up");
    }
}

fn user(i: usize) -> serde_json::Value {
    json!({
        "email": format!("fault.{}.{}@example.com", i, &Uuid::new_v4().simple().to_string()[..8]),
        "password": "a long and unusual passphrase 42",
        "first_name": "Grace",
        "last_name": "Hopper",
    })
}

/// Registers straight through the user service (the BFF's rate limit is not under test).
async fn register_direct(stack: &Stack, i: usize) -> anyhow::Result<reqwest::StatusCode> {
    Ok(stack
        .http
        .post(stack.url(Service::UserService, "/api/v1/register"))
        .bearer_auth(INTERNAL_KEY)
        .json(&user(i))
        .send()
        .await?
        .status())
}

async fn effects(stack: &Stack) -> (i64, i64) {
    let welcome = stack
        .count("SELECT count(*) FROM consumer.welcome_notifications")
        .await
        .unwrap_or(-1);
    let projected = stack
        .count("SELECT coalesce(sum(count), 0)::bigint FROM consumer.registration_stats")
        .await
        .unwrap_or(-1);
    (welcome, projected)
}

/// Whether both effects reach `n` within `timeout`.
async fn all_effects(stack: &Stack, n: usize, timeout: Duration) -> bool {
    let n = n as i64;
    eventually(timeout, || async { effects(stack).await == (n, n) }).await
}

const UNPUBLISHED: &str = outbox_relay::bookkeeping::BACKLOG_ROWS;

#[tokio::test]
async fn kafka_down_registrations_still_succeed_and_all_arrive_after() -> anyhow::Result<()> {
    let _serial = SERIAL.lock().await;
    let _restore = Restore;
    let stack = Stack::start_all().await?;

    infra("kafka-down")?;
    const N: usize = 20;
    for i in 0..N {
        assert_eq!(
            register_direct(&stack, i).await?,
            201,
            "registration {i} during the Kafka outage"
        );
    }
    // Nothing can have been published: every event waits in the outbox.
    assert_eq!(stack.count(UNPUBLISHED).await?, N as i64);

    infra("kafka-up")?;
    let all = all_effects(&stack, N, Duration::from_secs(90)).await;
    let unpublished = stack.count(UNPUBLISHED).await?;
    assert!(
        all,
        "after Kafka returned: {:?} effects of {N}, {unpublished} rows still unpublished",
        effects(&stack).await
    );
    assert!(
        tests::relay_kit::all_recorded(&stack.db).await,
        "the relay did not record what it published"
    );
    Ok(())
}

#[tokio::test]
async fn postgres_down_answers_503_fast_and_services_recover_without_restart() -> anyhow::Result<()>
{
    let _serial = SERIAL.lock().await;
    let _restore = Restore;
    let stack = Stack::start_all().await?;

    infra("pg-down")?;
    let started = Instant::now();
    let response = stack.bff_post("/api/v1/register", &user(0)).await?;
    let waited = started.elapsed();
    assert_eq!(response.status(), 503);
    let body: serde_json::Value = response.json().await?;
    assert!(
        body.get("error").is_some() && body.get("message").is_some(),
        "{body}"
    );
    assert!(waited < Duration::from_secs(5), "503 took {waited:?}");

    infra("pg-up")?;
    // Same processes, no restart: registrations go through again (straight through the
    // user service while polling, so the BFF's 3/min register limit is not what we test),
    // then once more through the BFF, and both are applied by the consumer.
    let mut attempt = 1;
    let recovered = eventually(Duration::from_secs(30), || {
        attempt += 1;
        let n = attempt;
        let stack = &stack;
        async move { matches!(register_direct(stack, n).await, Ok(s) if s == 201) }
    })
    .await;
    assert!(
        recovered,
        "the user service did not recover after PostgreSQL returned"
    );
    let through_bff = stack.bff_post("/api/v1/register", &user(0)).await?;
    assert_eq!(
        through_bff.status(),
        201,
        "the BFF did not recover after PostgreSQL returned"
    );
    assert!(all_effects(&stack, 2, Duration::from_secs(60)).await);
    Ok(())
}

/// A stream of 2,000 events written through the outbox library while the relay and the
/// consumer are killed with SIGKILL at random moments and restarted.
#[tokio::test]
async fn kill_9_of_relay_and_consumer_loses_nothing_and_applies_nothing_twice() -> anyhow::Result<()>
{
    let _serial = SERIAL.lock().await;
    let mut stack = Stack::start_all().await?;
    const TOTAL: usize = 2_000;
    const PER_TX: usize = 10;

    // The stream waits for the chaos rather than racing it: the chunks are split into
    // KILLS + 1 parts, and part k is written only once k kills (and restarts) are done, so
    // every kill lands while the stream goes on, however fast either side runs.
    const KILLS: usize = 3;
    const CHUNKS: usize = TOTAL / PER_TX;
    let (killed, mut kills_seen) = tokio::sync::watch::channel(0usize);

    let writer_db = stack.db.clone();
    let topic = stack.topic.clone();
    let writer = tokio::spawn(async move {
        let pool = writer_db.pool();
        let mut client = pool.get().await?;
        for chunk in 0..CHUNKS {
            let part = chunk * (KILLS + 1) / CHUNKS;
            let due = kills_seen.wait_for(|kills| *kills >= part);
            let ready = matches!(
                tokio::time::timeout(Duration::from_secs(60), due).await,
                Ok(Ok(_))
            );
            anyhow::ensure!(ready, "only {} kills within 60 s", *kills_seen.borrow());
            let tx = client.transaction().await?;
            for i in 0..PER_TX {
                let n = chunk * PER_TX + i;
                let email = format!("chaos{n}@example.com");
                let event = user_registered(&topic, &email, "Chaos", &n.to_string());
                outbox_relay::enqueue(&tx, &event).await?;
            }
            tx.commit().await?;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        anyhow::Ok(())
    });

    // Kill one of the two at a random moment, a few times, while the stream goes on.
    let mut kills = 0;
    while !writer.is_finished() {
        let pause = rand::rng().random_range(300..1200);
        tokio::time::sleep(Duration::from_millis(pause)).await;
        let victim = if rand::rng().random_bool(0.5) {
            Service::Relay
        } else {
            Service::Consumer
        };
        stack.kill9(victim);
        kills += 1;
        tokio::time::sleep(Duration::from_millis(200)).await;
        stack.start(victim)?;
        killed.send_replace(kills);
    }
    writer.await??;
    assert!(kills >= KILLS, "the stream ended before the chaos began");

    let all = all_effects(&stack, TOTAL, Duration::from_secs(120)).await;
    let processed = stack
        .count("SELECT count(*) FROM consumer.processed_events")
        .await?;
    assert!(
        all,
        "after {kills} kills: effects {:?}, processed {processed}, of {TOTAL}",
        effects(&stack).await
    );
    assert_eq!(processed, TOTAL as i64);
    Ok(())
}

/// The relay draining a backlog while `outage` stops a piece of the infrastructure (and
/// brings it back) once a few pages are out: every event reaches Kafka, each user's in
/// order, and the relay goes on by itself.
async fn drain_through(outage: &str) -> anyhow::Result<()> {
    use tests::relay_faults::{backlog, check, plan, relay, write, writer};
    let _serial = SERIAL.lock().await;
    let _restore = Restore;
    let stack = Stack::new().await?;
    // 100,000 events in pages of 100: the outage comes as soon as the relay has recorded
    // some of them, while it is busy with the rest (it drains ~100k events/s here, so the
    // backlog is watched closely).
    let events = plan(1_000, 100);
    let ids = write(&mut writer(&stack.db).await?, &stack.topic, &events, 500).await?;
    let total = ids.len() as i64;
    let relay = relay(&stack, 1_500, false)?;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let left = loop {
        let left = backlog(&stack.db).await;
        if (1..total).contains(&left) {
            break left;
        }
        assert!(
            left != 0 && std::time::Instant::now() < deadline,
            "the relay publishes, and is caught in the middle (backlog {left})"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    infra(&format!("{outage}-down"))?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    infra(&format!("{outage}-up"))?;
    eprintln!("{outage} stopped with {left} rows to go");
    assert!(left > 0, "the outage came in the middle of the drain");
    let drained = eventually(Duration::from_secs(120), || async {
        backlog(&stack.db).await == 0
    })
    .await;
    assert!(
        drained,
        "after {outage} came back: {} rows left",
        backlog(&stack.db).await
    );
    let delivered = check(&stack.topic, &ids, &events).await;
    eprintln!(
        "{outage} away mid-drain: {delivered:?} for {} events",
        ids.len()
    );
    drop(relay);
    Ok(())
}

#[tokio::test]
async fn kafka_away_in_the_middle_of_a_drain_loses_nothing() -> anyhow::Result<()> {
    drain_through("kafka").await
}

#[tokio::test]
async fn postgres_restarting_in_the_middle_of_a_drain_loses_nothing() -> anyhow::Result<()> {
    drain_through("pg").await
}
