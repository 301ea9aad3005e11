//! The event-consumer service as a whole: its HTTP API, a database outage, and the real
//! binary killed with SIGKILL in the middle of its work.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{
    eventually, producer, send, send_many, Registration, Scratch, PROCESSED_EVENTS,
    PROCESSED_TOTAL, WELCOME_NOTIFICATIONS,
};
use event_consumer::startup::App;
use platform::internal_key::DEV_INTERNAL_API_KEY;
use platform::service::Service as _;
use platform::testing::{LogCount, TcpProxy};
use serde_json::Value;
use tokio::sync::watch;

const SETTLE: Duration = Duration::from_secs(60);

struct Running {
    base: String,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Running {
    async fn stop(self) {
        let _ = self.stop.send(true);
        self.task.await.unwrap().unwrap();
    }
}

async fn spawn_app(env: Vec<(String, String)>) -> Running {
    let config = event_consumer::config::Config::from_env(env).unwrap();
    let app = App::build(config).await.unwrap();
    let base = platform::testing::local_url(app.port());
    let (stop, mut stopped) = watch::channel(false);
    let task = tokio::spawn(app.run_until_stopped(async move {
        let _ = stopped.wait_for(|s| *s).await;
    }));
    Running { base, stop, task }
}

async fn get(url: &str, key: Option<&str>) -> (u16, String) {
    let mut request = reqwest::Client::new().get(url);
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    let response = request.send().await.unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

#[tokio::test]
async fn stats_need_the_internal_key_and_show_what_was_applied() {
    let scratch = Scratch::new().await;
    let producer = producer();
    let first = Registration::new();
    send(&producer, &scratch.topic, &first).await;
    send(&producer, &scratch.topic, &first).await;
    send(&producer, &scratch.topic, &Registration::new()).await;
    let app = spawn_app(scratch.env()).await;
    let stats_url = format!("{}/stats", app.base);

    for key in [None, Some("wrong-key")] {
        let (status, body) = get(&stats_url, key).await;
        assert_eq!(status, 401);
        let body: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(body["error"], "Unauthorized");
        assert!(body["message"].is_string());
    }

    let applied = eventually(SETTLE, || async {
        let (_, body) = get(&stats_url, Some(DEV_INTERNAL_API_KEY)).await;
        let body: Value = serde_json::from_str(&body).unwrap_or_default();
        body["processed_total"] == 2 && body["duplicates_total"] == 1
    })
    .await;
    assert!(
        applied,
        "the stats show two events applied and one duplicate"
    );

    let (status, body) = get(&stats_url, Some(DEV_INTERNAL_API_KEY)).await;
    assert_eq!(status, 200);
    let stats: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(stats["dead_lettered_total"], 0);
    assert_eq!(stats["unknown_type_total"], 0);
    assert!(stats["last_processed_at"].is_string());
    assert_eq!(stats["welcome_notifications"]["pending"], 2);
    assert_eq!(stats["welcome_notifications"]["total"], 2);
    let days = stats["registrations_per_day"].as_array().unwrap();
    assert_eq!(days.len(), 7, "the last 7 days, empty ones included");
    let today = chrono::Utc::now()
        .date_naive()
        .format("%Y-%m-%d")
        .to_string();
    assert_eq!(days[6], serde_json::json!({"day": today, "count": 2}));
    assert!(days[..6].iter().all(|d| d["count"] == 0));

    let (status, health) = get(&format!("{}/health", app.base), None).await;
    assert_eq!((status, health.contains("\"up\"")), (200, true));
    let (_, metrics) = get(&format!("{}/metrics", app.base), None).await;
    assert!(metrics.contains("consumer_processed_total"), "{metrics}");
    assert!(metrics.contains("consumer_duplicates_total"));
    let lag = eventually(SETTLE, || async {
        let (_, metrics) = get(&format!("{}/metrics", app.base), None).await;
        metrics.contains("consumer_lag{partition=")
    })
    .await;
    assert!(lag, "/metrics shows the lag per partition");
    let (_, spec) = get(&format!("{}/openapi.json", app.base), None).await;
    assert!(spec.contains("\"/stats\"") && spec.contains("bearer"));
    app.stop().await;
}

#[tokio::test]
async fn a_database_outage_delays_records_but_skips_none() {
    let scratch = Scratch::new().await;
    let proxy = TcpProxy::start("127.0.0.1:5432".parse().unwrap())
        .await
        .unwrap();
    let env: Vec<(String, String)> = scratch
        .env()
        .into_iter()
        .map(|(k, v)| match k.as_str() {
            "DB_PORT" => (k, proxy.port().to_string()),
            _ => (k, v),
        })
        .collect();
    let producer = producer();
    send_many(&producer, &scratch.topic, 20).await;
    let app = spawn_app(env).await;
    let applied = |n: i64| {
        let scratch = &scratch;
        async move {
            eventually(SETTLE, || async {
                scratch.count(WELCOME_NOTIFICATIONS).await == n
            })
            .await
        }
    };
    assert!(applied(20).await);

    let retries = LogCount::start("batch failed, retrying it");
    proxy.cut();
    send_many(&producer, &scratch.topic, 30).await;
    let health = format!("{}/health", app.base);
    let down = eventually(SETTLE, || async {
        let (status, body) = get(&health, None).await;
        status == 503 && body.contains("\"down\"")
    })
    .await;
    assert!(down, "/health reports the database down");
    // The consumer has the new records in hand and fails to apply them, again and again.
    let retried = eventually(SETTLE, || async { retries.get() >= 3 }).await;
    assert!(
        retried,
        "the consumer retried the batch while the database was down: {retries:?}"
    );
    assert_eq!(scratch.count(WELCOME_NOTIFICATIONS).await, 20);

    proxy.restore();
    assert!(applied(50).await, "every record applied after the outage");
    assert_eq!(scratch.count(PROCESSED_EVENTS).await, 50);
    assert_eq!(scratch.count(PROCESSED_TOTAL).await, 50);
    // Readiness is re-checked in the background: it turns 200 again within a refresh.
    let ready = eventually(SETTLE, || async { get(&health, None).await.0 == 200 }).await;
    assert!(ready, "/health is ready again after the outage");
    app.stop().await;
}

#[tokio::test]
async fn stats_take_the_bff_and_ops_keys_but_not_the_consumers_own() {
    let scratch = Scratch::new().await;
    let (bff, consumer, ops) = (
        "bff-caller-key-0123456789abcdef",
        "consumer-caller-key-0123456789ab",
        "ops-caller-key-0123456789abcdef",
    );
    let mut env = scratch.env();
    env.push((
        "INTERNAL_API_KEYS".into(),
        format!("bff:{bff},event-consumer:{consumer},ops:{ops}"),
    ));
    let app = spawn_app(env).await;
    let stats_url = format!("{}/stats", app.base);
    assert_eq!(get(&stats_url, Some(bff)).await.0, 200);
    assert_eq!(get(&stats_url, Some(ops)).await.0, 200);
    let (status, body) = get(&stats_url, Some(consumer)).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(get(&stats_url, Some(DEV_INTERNAL_API_KEY)).await.0, 401);
    app.stop().await;
}

#[tokio::test]
async fn the_service_purges_processed_events_past_inbox_retention() {
    let scratch = Scratch::new().await;
    let old = scratch.processed_days_ago(5, 3).await;
    let mut kept = scratch.processed_days_ago(4, 1).await;
    kept.sort();
    let mut env = scratch.env();
    env.push(("INBOX_RETENTION".into(), "2d".into()));
    env.push(("INBOX_PURGE_INTERVAL_MS".into(), "200".into()));
    let app = spawn_app(env).await;

    let purged = eventually(SETTLE, || async {
        scratch.count(PROCESSED_EVENTS).await == kept.len() as i64
    })
    .await;
    assert!(purged, "the rows older than 2 days are purged");
    assert_eq!(scratch.processed_ids().await, kept);
    assert!(old.iter().all(|id| !kept.contains(id)));
    app.stop().await;
}

/// The real binary with the test's environment (and `extra`).
fn start_binary(scratch: &Scratch, batch_size: &str, extra: &[(&str, &str)]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_event-consumer"))
        .env("ENV", "development")
        .envs(scratch.env())
        .env("CONSUMER_BATCH_SIZE", batch_size)
        .envs(extra.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start event-consumer")
}

#[tokio::test]
async fn killed_mid_batch_and_restarted_applies_every_event_exactly_once() {
    killed_mid_backlog_and_restarted(3000, "25", &[1]).await;
}

/// Batches of 2,000 records over three partitions: each partition's records are settled
/// in a lane of its own, whose transactions commit (and whose offsets are stored)
/// independently of the others', so each kill finds the partitions at different points.
#[tokio::test]
async fn killed_while_partitions_settle_in_lanes_and_restarted_applies_every_event_exactly_once() {
    killed_mid_backlog_and_restarted(30_000, "2000", &[5_000, 12_500, 20_000]).await;
}

/// A backlog of `n` registrations, applied by the binary (batches of `batch_size`) killed
/// with SIGKILL once it applied each of `kills` (then started again), and a last process
/// that applies the rest: each exactly once. Offsets go to Kafka every 100 ms here (not
/// librdkafka's 5 s), so each restart resumes from what the process before it committed
/// rather than from the start.
async fn killed_mid_backlog_and_restarted(n: usize, batch_size: &str, kills: &[i64]) {
    let env = [("KAFKA_PROPERTIES", "auto.commit.interval.ms=100")];
    let scratch = Scratch::new().await;
    let producer = producer();
    send_many(&producer, &scratch.topic, n).await;

    for &kill_at in kills {
        let mut process = start_binary(&scratch, batch_size, &env);
        let reached = eventually(SETTLE, || async {
            scratch.count(WELCOME_NOTIFICATIONS).await >= kill_at
        })
        .await;
        process.kill().expect("SIGKILL");
        process.wait().unwrap();
        assert!(
            reached,
            "a process applied {kill_at} events before its kill"
        );
        let at_kill = scratch.count(WELCOME_NOTIFICATIONS).await;
        assert!(at_kill < n as i64, "killed before the backlog was done");
    }

    let mut last = start_binary(&scratch, batch_size, &env);
    let done = eventually(SETTLE, || async {
        scratch.count(WELCOME_NOTIFICATIONS).await == n as i64
    })
    .await;
    let _ = last.kill();
    let _ = last.wait();
    assert!(done, "the last process applied the rest");
    scratch.assert_each_applied_once(n as i64).await;
}
