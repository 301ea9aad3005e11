//! Helpers for the relay's fault tests: relay processes with test-speed settings, a writer
//! of per-user sequences, and the check that Kafka holds every event with each user's in
//! order.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use outbox_relay::envelope::Record;
use platform::db::DbConfig;
use uuid::Uuid;

/// A pooled connection to `db` for [`write`].
pub async fn writer(db: &DbConfig) -> anyhow::Result<deadpool_postgres::Object> {
    Ok(db.pool().get().await?)
}

use crate::relay_kit::{read_topic, sequenced};
use crate::stack::{Process, Service, Stack};

/// A relay process of `stack` with a short lease (`lease_ms`), small pages and short
/// Kafka timeouts; `debug` logs every page it publishes (JSON lines, with their times).
pub fn relay(stack: &Stack, lease_ms: u64, debug: bool) -> anyhow::Result<Process> {
    let level = if debug {
        "warn,outbox_relay=debug"
    } else {
        "warn"
    };
    stack.spawn(
        Service::Relay,
        &[
            ("RELAY_LEASE_MS", lease_ms.to_string()),
            ("RELAY_BATCH_SIZE", "100".into()),
            ("RELAY_MESSAGE_TIMEOUT_MS", "3000".into()),
            ("RELAY_POLL_INTERVAL_MS", "100".into()),
            ("LOG_LEVEL", level.into()),
            ("LOG_FORMAT", "json".into()),
        ],
    )
}

/// Whether `relay` says it leads (`/health`'s role).
pub async fn leads(relay: &Process) -> bool {
    relay
        .health()
        .await
        .is_some_and(|health| health["role"] == "leader")
}

/// The events of `users` new users, `per_user` each (sequence 0, 1, ...), interleaved.
pub fn plan(users: usize, per_user: u32) -> Vec<(String, u32)> {
    crate::relay_kit::interleaved(users, per_user)
}

/// Commits `events` through the real `enqueue` on `client`, `per_tx` to a transaction.
pub async fn write(
    client: &mut deadpool_postgres::Object,
    topic: &str,
    events: &[(String, u32)],
    per_tx: usize,
) -> anyhow::Result<Vec<Uuid>> {
    let mut ids = Vec::with_capacity(events.len());
    for chunk in events.chunks(per_tx.max(1)) {
        let tx = client.transaction().await?;
        for (user, seq) in chunk {
            let event = sequenced(topic, "UserRegistered", user, *seq);
            ids.push(outbox_relay::enqueue(&tx, &event).await?);
        }
        tx.commit().await?;
    }
    Ok(ids)
}

/// Rows the relay still has to send.
pub async fn backlog(db: &DbConfig) -> i64 {
    match db.connect().await {
        Ok(client) => client
            .query_one(outbox_relay::bookkeeping::BACKLOG_ROWS, &[])
            .await
            .map(|row| row.get(0))
            .unwrap_or(-1),
        Err(_) => -1,
    }
}

/// What Kafka holds of a run.
#[derive(Debug)]
pub struct Delivered {
    /// Records read (duplicates included).
    pub records: usize,
    /// Events seen more than once, and how many copies beyond the first in all.
    pub duplicated_events: usize,
    pub duplicates: usize,
}

/// Reads `topic` (committed records only, as every consumer reads by default) and checks
/// that every one of `ids` is there and that each user's events first arrive in their
/// order (a re-send after a crash may repeat a run of them: at-least-once).
pub async fn check(topic: &str, ids: &[Uuid], events: &[(String, u32)]) -> Delivered {
    let records = read_topic(topic, ids.len(), Duration::from_secs(60)).await;
    let seen = crate::relay_kit::event_ids(&records);
    let mut copies: HashMap<Uuid, usize> = HashMap::new();
    for id in &seen {
        *copies.entry(*id).or_default() += 1;
    }
    let missing: Vec<&Uuid> = ids.iter().filter(|id| !copies.contains_key(id)).collect();
    assert!(
        missing.is_empty(),
        "{} of {} events never reached Kafka, e.g. {:?}",
        missing.len(),
        ids.len(),
        missing.first()
    );
    let users: HashSet<&str> = events.iter().map(|(u, _)| u.as_str()).collect();
    for user in users {
        let expected: Vec<u64> = events
            .iter()
            .filter(|(u, _)| u == user)
            .map(|(_, seq)| u64::from(*seq))
            .collect();
        assert_eq!(
            first_occurrences(&records, user),
            expected,
            "user {user}'s events in the order they first arrived"
        );
    }
    Delivered {
        records: records.len(),
        duplicated_events: copies.values().filter(|n| **n > 1).count(),
        duplicates: copies.values().map(|n| n - 1).sum(),
    }
}

/// The sequence numbers of `user`'s records, each the first time it arrived.
fn first_occurrences(records: &[Record], user: &str) -> Vec<u64> {
    let mut seen = HashSet::new();
    crate::relay_kit::sequence_of(records, user)
        .into_iter()
        .filter(|seq| seen.insert(*seq))
        .collect()
}

/// Waits until `db` shows a session of the relay's role waiting on a lock in the
/// statement that records a page (`WITH state AS ...`).
pub async fn bookkeeping_waits_on_a_lock(db: &DbConfig) -> bool {
    let Ok(client) = db.connect().await else {
        return false;
    };
    crate::eventually(Duration::from_secs(30), || {
        let client = &client;
        async move {
            client
                .query_one(
                    "SELECT count(*) FROM pg_stat_activity \
                     WHERE datname = current_database() AND usename = 'outbox_relay' \
                       AND wait_event_type = 'Lock' AND query LIKE '%WITH state AS%'",
                    &[],
                )
                .await
                .is_ok_and(|row| row.get::<_, i64>(0) > 0)
        }
    })
    .await
}

/// Ends the database sessions the relay's role left behind. A backend blocked on a lock
/// does not notice its client died until the lock comes free, and would then finish the
/// dead relay's statement (truthfully: Kafka had committed what it records); this is the
/// other outcome, the one where the database notices first and rolls it back.
pub async fn end_relay_sessions(db: &DbConfig) -> anyhow::Result<()> {
    db.connect()
        .await?
        .batch_execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = current_database() AND usename = 'outbox_relay'",
        )
        .await?;
    Ok(())
}
