//! The relay as real processes, killed with SIGKILL at the moments that matter (after
//! Kafka committed a page and before it was recorded, in the middle of recording it, and
//! at 20 random moments under load) and frozen with SIGSTOP while it leads: no event is
//! lost, each user's events stay in order, and a frozen leader writes nothing once a
//! standby has taken over.
//!
//! Each test uses a scratch database and topic of its own; they run one at a time (a
//! lock) because each keeps both cores busy.

use std::time::{Duration, Instant};

use rand::RngExt as _;
use tests::eventually;
use tests::relay_faults::*;
use tests::stack::Stack;

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Waits until `relay` leads.
async fn until_leads(relay: &tests::stack::Process) -> bool {
    eventually(Duration::from_secs(20), || leads(relay)).await
}

async fn until_drained(db: &platform::db::DbConfig, within: Duration) -> bool {
    eventually(within, || async { backlog(db).await == 0 }).await
}

#[tokio::test]
async fn a_relay_killed_after_kafka_committed_a_page_and_before_recording_it_loses_nothing(
) -> anyhow::Result<()> {
    let _serial = SERIAL.lock().await;
    let stack = Stack::new().await?;
    let mut first = relay(&stack, 1_500, false)?;
    assert!(until_leads(&first).await, "the relay leads");

    // The relay's state row is locked: it can publish, but not record what it published.
    let mut locker = stack.db.connect().await?;
    let lock = locker.transaction().await?;
    lock.execute("SELECT 1 FROM users.outbox_relay FOR UPDATE", &[])
        .await?;
    let events = plan(30, 10);
    let ids = write(&mut writer(&stack.db).await?, &stack.topic, &events, 10).await?;

    // Kafka has committed a page (of 100) and the relay waits to record it: kill it there.
    let committed = eventually(Duration::from_secs(30), || async {
        tests::relay_kit::read_topic(&stack.topic, 100, Duration::from_secs(2))
            .await
            .len()
            >= 100
    })
    .await;
    assert!(committed, "Kafka committed a page");
    assert!(
        bookkeeping_waits_on_a_lock(&stack.db).await,
        "the relay waits to record it"
    );
    first.kill9();
    end_relay_sessions(&stack.db).await?;
    lock.rollback().await?;
    assert_eq!(backlog(&stack.db).await, 300, "nothing was recorded");

    let second = relay(&stack, 1_500, false)?;
    assert!(until_drained(&stack.db, Duration::from_secs(60)).await);
    let delivered = check(&stack.topic, &ids, &events).await;
    assert!(
        delivered.duplicates >= 100,
        "the page committed but not recorded was sent again: {delivered:?}"
    );
    drop(second);
    Ok(())
}

#[tokio::test]
async fn a_relay_killed_in_the_middle_of_recording_a_page_loses_nothing() -> anyhow::Result<()> {
    let _serial = SERIAL.lock().await;
    let stack = Stack::new().await?;
    let events = plan(30, 10);
    let ids = write(&mut writer(&stack.db).await?, &stack.topic, &events, 10).await?;
    let mut first = relay(&stack, 1_500, false)?;
    assert!(until_drained(&stack.db, Duration::from_secs(60)).await);
    first.kill9();

    // A replay of everything, whose row is locked: a relay records a replayed page in
    // one statement that updates the state row first and the replay's row second.
    let client = stack.db.connect().await?;
    let all = outbox_relay::ReplayFilter {
        all: true,
        ..Default::default()
    };
    assert_eq!(outbox_relay::replay(&client, &all, false).await?, 300);
    let mut locker = stack.db.connect().await?;
    let lock = locker.transaction().await?;
    lock.execute("SELECT 1 FROM users.outbox_replays FOR UPDATE", &[])
        .await?;

    let mut second = relay(&stack, 1_500, false)?;
    assert!(
        bookkeeping_waits_on_a_lock(&stack.db).await,
        "the relay records a replayed page and waits on the replay's row"
    );
    // Half written: the state row is already updated (and so locked) by its statement.
    let probe = stack.db.connect().await?;
    let state_locked = probe
        .batch_execute("BEGIN; SELECT 1 FROM users.outbox_relay FOR UPDATE NOWAIT; ROLLBACK")
        .await
        .is_err_and(|e| e.code() == Some(&tokio_postgres::error::SqlState::LOCK_NOT_AVAILABLE));
    assert!(state_locked, "the relay's statement updated the state row");
    second.kill9();
    end_relay_sessions(&stack.db).await?;
    lock.rollback().await?;

    let third = relay(&stack, 1_500, false)?;
    let finished = eventually(Duration::from_secs(60), || async {
        client
            .query_one(
                "SELECT count(*) FILTER (WHERE finished_at IS NULL) FROM users.outbox_replays",
                &[],
            )
            .await
            .is_ok_and(|row| row.get::<_, i64>(0) == 0)
    })
    .await;
    assert!(finished, "the replay finished");
    let delivered = check(&stack.topic, &ids, &events).await;
    assert!(
        delivered.duplicated_events == 300,
        "every event is in Kafka again after the replay: {delivered:?}"
    );
    drop(third);
    Ok(())
}

#[tokio::test]
async fn twenty_kill_9s_of_the_leader_at_random_moments_under_load_lose_nothing(
) -> anyhow::Result<()> {
    let _serial = SERIAL.lock().await;
    let stack = Stack::new().await?;
    const KILLS: usize = 20;
    let lease = 600;
    let mut relays = [relay(&stack, lease, false)?, relay(&stack, lease, false)?];

    // The stream is written in KILLS + 1 parts; part k only once k kills are done, so
    // every kill lands while events keep coming.
    let events = plan(40, 75);
    let (killed, mut kills_seen) = tokio::sync::watch::channel(0usize);
    let writer = {
        let (db, topic, events) = (stack.db.clone(), stack.topic.clone(), events.clone());
        tokio::spawn(async move {
            let mut client = writer(&db).await?;
            let mut ids = Vec::new();
            let parts = events.chunks(events.len().div_ceil(KILLS + 1));
            for (part, chunk) in parts.enumerate() {
                let due = kills_seen.wait_for(|kills| *kills >= part);
                anyhow::ensure!(
                    matches!(
                        tokio::time::timeout(Duration::from_secs(120), due).await,
                        Ok(Ok(_))
                    ),
                    "the kills stalled"
                );
                for small in chunk.chunks(5) {
                    ids.extend(write(&mut client, &topic, small, 5).await?);
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            }
            anyhow::Ok(ids)
        })
    };

    for kill in 1..=KILLS {
        let pause = rand::rng().random_range(50..400);
        tokio::time::sleep(Duration::from_millis(pause)).await;
        // Kill whichever leads (waiting for a leader if the last kill left none yet).
        let deadline = Instant::now() + Duration::from_secs(20);
        let leader = loop {
            let mut found = None;
            for (i, r) in relays.iter().enumerate() {
                if leads(r).await {
                    found = Some(i);
                }
            }
            if let Some(i) = found {
                break i;
            }
            anyhow::ensure!(Instant::now() < deadline, "no relay took over");
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        relays[leader].kill9();
        relays[leader] = relay(&stack, lease, false)?;
        killed.send_replace(kill);
    }
    let ids = writer.await??;
    assert!(until_drained(&stack.db, Duration::from_secs(120)).await);
    let delivered = check(&stack.topic, &ids, &events).await;
    eprintln!(
        "after {KILLS} kills: {delivered:?} for {} events",
        ids.len()
    );
    Ok(())
}

/// A JSON log line's time, when it has one.
fn time_of(line: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    let value: serde_json::Value = serde_json::from_str(line).ok()?;
    chrono::DateTime::parse_from_rfc3339(value["timestamp"].as_str()?)
        .ok()
        .map(|t| t.with_timezone(&chrono::Utc))
}

#[tokio::test]
async fn a_leader_frozen_until_a_standby_took_over_writes_nothing_once_thawed() -> anyhow::Result<()>
{
    let _serial = SERIAL.lock().await;
    let stack = Stack::new().await?;
    let frozen = relay(&stack, 1_500, true)?;
    assert!(until_leads(&frozen).await);
    let standby = relay(&stack, 1_500, true)?;

    // A steady stream the whole time.
    let events = plan(20, 150);
    let writer = {
        let (db, topic, events) = (stack.db.clone(), stack.topic.clone(), events.clone());
        tokio::spawn(async move {
            let mut client = writer(&db).await?;
            let mut ids = Vec::new();
            for chunk in events.chunks(5) {
                ids.extend(write(&mut client, &topic, chunk, 5).await?);
                tokio::time::sleep(Duration::from_millis(8)).await;
            }
            anyhow::Ok(ids)
        })
    };
    let publishing = eventually(Duration::from_secs(20), || async {
        frozen.metric("outbox_published_total").await.unwrap_or(0.0) > 0.0
    })
    .await;
    assert!(publishing, "the leader publishes");

    frozen.freeze()?;
    assert!(until_leads(&standby).await, "the standby took over");
    let epoch_now = || async {
        stack
            .db
            .connect()
            .await
            .ok()?
            .query_one("SELECT epoch FROM users.outbox_relay", &[])
            .await
            .ok()
            .map(|row| row.get::<_, i64>(0))
    };
    let standby_epoch = epoch_now().await;
    let standby_publishes = eventually(Duration::from_secs(20), || async {
        standby
            .metric("outbox_published_total")
            .await
            .unwrap_or(0.0)
            > 0.0
    })
    .await;
    assert!(standby_publishes, "the standby publishes");

    let thawed = chrono::Utc::now();
    frozen.thaw()?;
    let stepped_down = eventually(Duration::from_secs(20), || async {
        frozen
            .health()
            .await
            .is_some_and(|health| health["role"] == "standby")
    })
    .await;
    assert!(stepped_down, "the thawed relay knows it no longer leads");
    let ids = writer.await??;
    assert!(until_drained(&stack.db, Duration::from_secs(60)).await);

    // Nothing published by the old leader after it was thawed: no Kafka transaction of its
    // committed (its producer is fenced), nothing recorded (its epoch is gone).
    let log = frozen.log();
    let published_after: Vec<&str> = log
        .lines()
        .filter(|line| line.contains("page published"))
        .filter(|line| time_of(line).is_some_and(|at| at >= thawed))
        .collect();
    assert!(
        published_after.is_empty(),
        "the thawed relay published: {published_after:?}"
    );
    let after: Vec<&str> = log
        .lines()
        .filter(|line| time_of(line).is_some_and(|at| at >= thawed))
        .collect();
    eprintln!("the thawed relay, after SIGCONT:\n{}", after.join("\n"));
    assert!(
        after
            .iter()
            .any(|line| line.contains("fenced") || line.contains("lease ran out")),
        "the thawed relay says it lost the lead:\n{log}"
    );
    assert_eq!(epoch_now().await, standby_epoch, "the standby still leads");
    assert!(leads(&standby).await);
    check(&stack.topic, &ids, &events).await;
    Ok(())
}
