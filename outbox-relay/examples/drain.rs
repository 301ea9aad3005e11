//! Measures the relay against the real PostgreSQL and Kafka:
//! 1. events/s draining a backlog of N rows (default 100 000);
//! 2. commit -> consumer latency p50/p99 at a steady R events/s (default 1 000) for S s.
//!
//! `cargo run --release -p outbox-relay --example drain -- [N] [R] [S]`
//! Uses a scratch database and topic of its own.

use std::time::{Duration, Instant};

use chrono::Utc;
use outbox_relay::envelope::decode;
use outbox_relay::platform::db::DbConfig;
use outbox_relay::relay::{create_producer, ProducerSettings, Relay, RelayConfig};
use outbox_relay::{enqueue, NewEvent};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::ClientConfig;
use uuid::Uuid;

const BROKERS: &str = "127.0.0.1:9092";

// The same row shape `enqueue` writes, made in bulk by the server.
const BACKLOG: &str = "INSERT INTO users.outbox \
    (event_id, aggregate_type, aggregate_id, event_type, topic, payload, headers) \
    SELECT e.id, 'user', e.agg, 'UserRegistered', $1, \
      jsonb_build_object('user_id', e.agg, 'email', 'u' || g || '@example.com', \
        'first_name', 'Ada', 'last_name', 'Lovelace', 'phone', null, 'role', 'user', \
        'registered_at', now()), \
      jsonb_build_object('ce_specversion', '1.0', 'ce_id', e.id::text, \
        'ce_source', '/user-service', 'ce_type', 'UserRegistered', \
        'ce_time', to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'), \
        'ce_subject', e.agg, 'content-type', 'application/json') \
    FROM generate_series(1, $2) AS g, \
      LATERAL (SELECT gen_random_uuid() AS id, md5((g % 10000)::text) AS agg) AS e";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let backlog = args.first().copied().unwrap_or(100_000);
    let rate = args.get(1).copied().unwrap_or(1_000);
    let seconds = args.get(2).copied().unwrap_or(15);

    let server = DbConfig::default();
    let name = format!("test_bench_{}", Uuid::new_v4().simple());
    migrations::create_scratch_database(&server.pg_config(), &name).await?;
    let db = server.with_database(&name);
    let topic = format!("test-bench-{}", Uuid::new_v4().simple());
    outbox_relay::kafka::create_topic(BROKERS, &topic, 3).await?;
    let producer = create_producer(&ProducerSettings::new(BROKERS))?;

    // 1. Drain a backlog.
    let client = db.connect().await?;
    client
        .execute(BACKLOG, &[&topic, &(backlog as i32)])
        .await?;
    let mut relay = Relay::new(db.clone(), producer.clone(), RelayConfig::default());
    let started = Instant::now();
    let mut published = 0;
    loop {
        let outcome = relay.relay_once().await?;
        published += outcome.published;
        if outcome.claimed == 0 {
            break;
        }
    }
    let took = started.elapsed();
    println!(
        "drain: {published} events in {:.2} s = {:.0} events/s",
        took.as_secs_f64(),
        published as f64 / took.as_secs_f64()
    );
    drop(relay);

    // 2. Steady load: writers commit `rate` events/s, the relay runs its real loop, a
    // consumer notes when each event arrives.
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", BROKERS)
        .set("group.id", format!("bench-{}", Uuid::new_v4().simple()))
        .set("auto.offset.reset", "latest")
        .set("fetch.wait.max.ms", "5")
        .create()?;
    consumer.subscribe(&[&topic])?;
    // Let the group settle before measuring.
    let _ = tokio::time::timeout(Duration::from_secs(3), consumer.recv()).await;

    let relay = Relay::new(db.clone(), producer, RelayConfig::default());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(relay.run(async move {
        let _ = stopped.await;
    }));
    tokio::time::sleep(Duration::from_millis(500)).await;

    let writers = 4;
    let total = rate * seconds;
    let mut tasks = Vec::new();
    for _ in 0..writers {
        let db = db.clone();
        let topic = topic.clone();
        tasks.push(tokio::spawn(async move {
            let pool = db.pool();
            let mut client = pool.get().await?;
            let mut tick =
                tokio::time::interval(Duration::from_secs_f64(writers as f64 / rate as f64));
            for _ in 0..total / writers {
                tick.tick().await;
                let tx = client.transaction().await?;
                let user = Uuid::now_v7().to_string();
                let event = NewEvent {
                    aggregate_type: "user".into(),
                    aggregate_id: user.clone(),
                    event_type: "UserRegistered".into(),
                    topic: topic.clone(),
                    source: "/user-service".into(),
                    data: serde_json::json!({ "user_id": user }),
                    traceparent: None,
                };
                enqueue(&tx, &event).await?;
                tx.commit().await?;
            }
            anyhow::Ok(())
        }));
    }
    let mut latencies = Vec::with_capacity(total as usize);
    let deadline = Instant::now() + Duration::from_secs(seconds + 30);
    while latencies.len() < (total / writers * writers) as usize && Instant::now() < deadline {
        let Ok(Ok(message)) = tokio::time::timeout(Duration::from_secs(5), consumer.recv()).await
        else {
            break;
        };
        let seen = Utc::now();
        if let Ok(event) = decode(&outbox_relay::kafka::record_of(&message)) {
            let latency = (seen - event.attributes.time).to_std().unwrap_or_default();
            latencies.push(latency);
        }
    }
    for task in tasks {
        task.await??;
    }
    let _ = stop.send(());
    running.await?;

    latencies.sort();
    let pick = |q: f64| latencies[((latencies.len() as f64 - 1.0) * q) as usize];
    if latencies.is_empty() {
        println!("steady: no events seen");
    } else {
        println!(
            "steady {rate}/s for {seconds}s: {} events, commit->consumer p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            latencies.len(),
            pick(0.50).as_secs_f64() * 1e3,
            pick(0.99).as_secs_f64() * 1e3,
            pick(1.0).as_secs_f64() * 1e3,
        );
    }
    Ok(())
}
