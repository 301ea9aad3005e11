//! The real relay engine: draining a backlog, and commit -> Kafka latency under a steady
//! open-loop load.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use outbox_relay::relay::{ProducerSettings, Relay, RelayConfig};
use platform::db::DbConfig;
use rdkafka::consumer::StreamConsumer;
use rdkafka::message::{Headers, Message};
use tests::relay_kit::user_registered;
use uuid::Uuid;

use crate::stats::Latencies;

pub(crate) fn relay_config(batch: i64) -> RelayConfig {
    let defaults = RelayConfig::default();
    RelayConfig {
        batch_size: batch,
        poll_interval: Duration::from_millis(500),
        retention: None,
        commit_interval: std::env::var("BENCH_COMMIT_INTERVAL_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .map(Duration::from_millis)
            .unwrap_or(defaults.commit_interval),
        ..defaults
    }
}

pub(crate) fn producer_settings() -> ProducerSettings {
    ProducerSettings {
        queue_max_messages: 1_000_000,
        linger_ms: std::env::var("BENCH_LINGER_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(ProducerSettings::new("").linger_ms),
        ..ProducerSettings::new(tests::brokers())
    }
}

/// A relay engine on `db` with the bench's producer and `batch`-row transactions.
pub(crate) fn engine(db: &DbConfig, batch: i64) -> Relay {
    Relay::new(db.clone(), producer_settings(), relay_config(batch))
}

/// The relay process's loop on `db` (leadership, LISTEN, the pipelined pages), stopped
/// when dropped.
pub(crate) struct Running {
    pub(crate) status: std::sync::Arc<outbox_relay::relay::RelayStatus>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    /// Starts the loop and waits until it leads with its producer ready.
    pub(crate) async fn start(db: &DbConfig, batch: i64) -> anyhow::Result<Self> {
        let relay = engine(db, batch);
        let status = relay.status();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(relay.run(async {
            let _ = stopped.await;
        }));
        let deadline = Instant::now() + Duration::from_secs(60);
        while !status.is_ready() {
            anyhow::ensure!(Instant::now() < deadline, "the relay never became ready");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        Ok(Self {
            status,
            stop: Some(stop),
            task,
        })
    }

    /// Waits until the relay has published `count` rows more than `from`; the seconds it
    /// took.
    pub(crate) async fn published(&self, from: u64, count: usize) -> anyhow::Result<f64> {
        let started = Instant::now();
        let deadline = started + Duration::from_secs(600);
        while self.status.published() < from + count as u64 {
            anyhow::ensure!(
                Instant::now() < deadline,
                "published {} of {count}",
                self.status.published() - from
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        Ok(started.elapsed().as_secs_f64())
    }

    pub(crate) async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.task).await;
    }
}

/// The relay process's loop draining the `count` rows the outbox holds; rows/s from the
/// moment it is ready to the last one recorded.
pub(crate) async fn drain_per_s(db: &DbConfig, batch: i64, count: usize) -> anyhow::Result<f64> {
    let running = Running::start(db, batch).await?;
    let seconds = running.published(0, count).await?;
    running.stop().await;
    Ok(count as f64 / seconds)
}

/// Reads `topic` back (as a consumer reading committed records does) until `expected`
/// distinct events arrived and then nothing more for a moment: the records, the distinct
/// events, and the duplicates among them.
pub(crate) async fn duplicates(topic: &str, expected: usize) -> anyhow::Result<serde_json::Value> {
    let reader = tests::reader(topic);
    let mut seen: std::collections::HashSet<Uuid> =
        std::collections::HashSet::with_capacity(expected);
    let mut records = 0usize;
    let deadline = Instant::now() + Duration::from_secs(300);
    while Instant::now() < deadline {
        let wait = if seen.len() >= expected {
            Duration::from_secs(2)
        } else {
            Duration::from_secs(30)
        };
        let Ok(message) = tokio::time::timeout(wait, reader.recv()).await else {
            break;
        };
        let message = message?;
        records += 1;
        if let Some(id) = message
            .headers()
            .and_then(|hs| hs.iter().find(|h| h.key == "ce_id").and_then(|h| h.value))
            .and_then(|v| std::str::from_utf8(v).ok())
            .and_then(|s| Uuid::parse_str(s).ok())
        {
            seen.insert(id);
        }
    }
    anyhow::ensure!(
        seen.len() >= expected,
        "only {} of {expected} events read back",
        seen.len()
    );
    Ok(serde_json::json!({
        "records": records,
        "events": seen.len(),
        "duplicates": records - seen.len(),
    }))
}

/// When each event's transaction committed, by event id (monotonic, and wall clock to
/// compare with Kafka's record timestamps), and the ids in commit order.
#[derive(Default)]
pub(crate) struct Commits {
    pub(crate) at: HashMap<Uuid, (Instant, std::time::SystemTime)>,
    pub(crate) order: Vec<Uuid>,
}

pub(crate) type CommitTimes = Arc<Mutex<Commits>>;

/// Commits one event per transaction at `rate` per second for `duration` (open loop: the
/// schedule does not wait for the system), recording each commit's instant.
pub(crate) async fn steady_writer(
    db: DbConfig,
    topic: String,
    rate: u32,
    duration: Duration,
    commits: CommitTimes,
) -> anyhow::Result<usize> {
    // A pooled connection: `enqueue` works on deadpool's client and transaction types.
    let pool = db.pool();
    let mut client = pool.get().await?;
    let interval = Duration::from_secs_f64(1.0 / rate as f64);
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let total = (duration.as_secs_f64() * rate as f64) as usize;
    for n in 0..total {
        ticker.tick().await;
        let event = user_registered(&topic, &format!("lat{n}@example.com"), "Lat", "Ency");
        let tx = client.transaction().await?;
        let id = outbox_relay::enqueue(&tx, &event).await?;
        tx.commit().await?;
        let mut commits = commits.lock().expect("not poisoned");
        commits
            .at
            .insert(id, (Instant::now(), std::time::SystemTime::now()));
        commits.order.push(id);
    }
    Ok(total)
}

/// A consumer in a new group reading `topic` from the beginning, as the event-consumer
/// does: records of open transactions included (`read_uncommitted`), or only committed
/// ones (librdkafka's default, `read_committed`).
pub(crate) fn reader(topic: &str, committed: bool) -> anyhow::Result<StreamConsumer> {
    use rdkafka::consumer::Consumer as _;
    let isolation = if committed {
        "read_committed"
    } else {
        "read_uncommitted"
    };
    let consumer: StreamConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", tests::brokers())
        .set(
            "group.id",
            format!("bench-reader-{}", Uuid::new_v4().simple()),
        )
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .set("isolation.level", isolation)
        .create()?;
    consumer.subscribe(&[topic])?;
    Ok(consumer)
}

/// Reads `expected` records from `reader` and measures receive time minus commit time.
pub(crate) async fn read_latencies(
    reader: &StreamConsumer,
    expected: usize,
    commits: CommitTimes,
    tell_pickup: bool,
) -> anyhow::Result<Latencies> {
    let mut latencies = Latencies::new();
    let mut pickup = Latencies::new();
    // Records that came before the writer stored their commit instant (it is taken right
    // after COMMIT returns): measured once it is there, as 0 when it is later than the
    // receipt.
    let mut early: Vec<(Uuid, Instant, Option<i64>)> = Vec::new();
    let mut measure = |latencies: &mut Latencies,
                       (at, wall): (Instant, std::time::SystemTime),
                       received: Instant,
                       created_ms: Option<i64>| {
        latencies.record_us(received.saturating_duration_since(at).as_micros() as u64);
        // The record's CreateTime is when the relay handed it to the producer.
        if let Some(created_ms) = created_ms {
            let committed_ms = wall
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as i64)
                .unwrap_or(0);
            pickup.record_us(((created_ms - committed_ms).max(0) * 1000) as u64);
        }
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    while latencies.len() as usize + early.len() < expected && Instant::now() < deadline {
        let Ok(message) = tokio::time::timeout(Duration::from_secs(5), reader.recv()).await else {
            continue;
        };
        let message = message?;
        let received = Instant::now();
        let id = message
            .headers()
            .and_then(|hs| hs.iter().find(|h| h.key == "ce_id").and_then(|h| h.value))
            .and_then(|v| std::str::from_utf8(v).ok())
            .and_then(|s| Uuid::parse_str(s).ok());
        let Some(id) = id else { continue };
        let created_ms = message.timestamp().to_millis();
        let committed = commits.lock().expect("not poisoned").at.get(&id).copied();
        match committed {
            Some(committed) => measure(&mut latencies, committed, received, created_ms),
            None => early.push((id, received, created_ms)),
        }
    }
    let settle = Instant::now() + Duration::from_secs(2);
    while !early.is_empty() && Instant::now() < settle {
        early.retain(|(id, received, created_ms)| {
            let committed = commits.lock().expect("not poisoned").at.get(id).copied();
            match committed {
                Some(committed) => {
                    measure(&mut latencies, committed, *received, *created_ms);
                    false
                }
                None => true,
            }
        });
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    if tell_pickup && pickup.len() > 0 {
        eprintln!("[bench]   of which commit -> relay hands it to the producer: p50 {} p99 {} ms (1 ms resolution)", pickup.ms(0.5), pickup.ms(0.99));
    }
    Ok(latencies)
}
