//! `make bench`: the platform's speed against this machine's own limits, in one run.
//!
//! Every figure comes from the real PostgreSQL (synchronous_commit on) and the real Kafka
//! of `make infra-up`, in a scratch database and on scratch topics. Writes
//! `target/bench/report.json` and `target/bench/chart.svg`, and prints a table.

mod chart;
mod consumer;
mod db_limit;
mod http;
mod producer;
mod reconcile;
mod relay;
mod replay;
mod stats;
mod write_cost;
mod write_overhead;

use std::time::Instant;

use outbox_relay::relay::{create_producer, Relay};
use serde_json::{json, Value};
use tests::{fill_outbox, scratch_db, scratch_topic};

/// The run's sizes; `BENCH_*` environment variables override them (a quick smoke run uses
/// small ones).
struct Sizes {
    /// Backlog drained by the relay and the claim-and-mark loop (at least 200k by default).
    backlog: i64,
    batch: i64,
    /// Steady load of the latency runs, events/s, and for how long.
    rate: u32,
    latency_run: std::time::Duration,
    /// The same load before it, not measured.
    latency_warmup: std::time::Duration,
    consumer_backlog: usize,
    consumer_batch: usize,
    http_seconds: u64,
    /// Raw producer and relay drains, alternated; the figures are the medians.
    rounds: usize,
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

impl Sizes {
    fn from_env() -> Self {
        Self {
            backlog: env_or("BENCH_BACKLOG", 200_000),
            batch: env_or(
                "BENCH_BATCH",
                outbox_relay::relay::RelayConfig::default().batch_size,
            ),
            rate: env_or("BENCH_RATE", 1_000),
            latency_run: std::time::Duration::from_secs(env_or("BENCH_LATENCY_SECS", 10)),
            latency_warmup: std::time::Duration::from_secs(env_or("BENCH_LATENCY_WARMUP_SECS", 5)),
            consumer_backlog: env_or("BENCH_CONSUMER_BACKLOG", 100_000),
            consumer_batch: env_or(
                "BENCH_CONSUMER_BATCH",
                event_consumer::config::Settings::default().consumer_batch_size,
            ),
            http_seconds: env_or("BENCH_HTTP_SECS", 5),
            rounds: env_or("BENCH_ROUNDS", 3usize).max(1),
        }
    }
}

/// One outbox-shaped record (value and headers as the relay sends them).
pub(crate) struct Sample {
    pub(crate) value: Vec<u8>,
    pub(crate) headers: Vec<(String, Vec<u8>)>,
}

async fn sample_record(db: &platform::db::DbConfig) -> anyhow::Result<Sample> {
    let client = db.connect().await?;
    fill_outbox(&client, 1, "sample").await?;
    let row = client
        .query_one(
            "SELECT payload, headers FROM users.outbox WHERE topic = 'sample'",
            &[],
        )
        .await?;
    let payload: Value = row.get(0);
    let headers: Value = row.get(1);
    client
        .execute("DELETE FROM users.outbox WHERE topic = 'sample'", &[])
        .await?;
    Ok(Sample {
        value: serde_json::to_vec(&payload)?,
        headers: outbox_relay::envelope::headers_from_json(&headers),
    })
}

/// The parts of the run; `BENCH_ONLY=relay,consumer` runs only those (a quick look at
/// one figure), the default all of them.
const SECTIONS: [&str; 8] = [
    "relay",
    "latency",
    "consumer",
    "overhead",
    "replay",
    "reconcile",
    "http",
    "traced",
];

fn wanted(section: &str) -> bool {
    match std::env::var("BENCH_ONLY") {
        Ok(only) if !only.trim().is_empty() => only.split(',').any(|s| s.trim() == section),
        _ => true,
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let run_started = Instant::now();
    let mut report = json!({});
    report["machine"] = machine_facts();
    let sizes = Sizes::from_env();
    report["settings"] = json!({
        "relay_backlog": sizes.backlog, "relay_batch_size": sizes.batch,
        "relay_rounds": sizes.rounds,
        "latency_rate_per_s": sizes.rate, "latency_run_s": sizes.latency_run.as_secs(),
        "latency_warmup_s": sizes.latency_warmup.as_secs(),
        "consumer_backlog": sizes.consumer_backlog, "consumer_batch_size": sizes.consumer_batch,
        "http_seconds": sizes.http_seconds, "synchronous_commit": "on",
        "latency_run_database": format!("fresh scratch database holding {USERS_IN_USE} users in the read model (vacuumed and analyzed, as a database in use), relay and consumer running as in production, after a CHECKPOINT (the sections before wrote hundreds of thousands of rows)"),
        "producer": "idempotent, acks=all, lz4, the relay's default linger.ms (BENCH_LINGER_MS overrides); the relay's is also transactional",
        "sections": SECTIONS.iter().filter(|s| wanted(s)).collect::<Vec<_>>(),
    });

    let db = scratch_db().await;
    let sample = sample_record(&db).await?;
    let postgres: String = db
        .connect()
        .await?
        .query_one("SHOW server_version", &[])
        .await?
        .get(0);
    report["machine"]["postgresql"] = json!(postgres);
    report["machine"]["kafka"] = json!(kafka_version());
    eprintln!(
        "[bench] record size: {} bytes value, {} headers",
        sample.value.len(),
        sample.headers.len()
    );

    let mut latencies = None;
    if wanted("relay") {
        relay_drain(&sample, &sizes, &mut report).await?;
    }
    if wanted("latency") {
        latencies = Some(latency(&sizes, &mut report).await?);
    }
    if wanted("consumer") {
        consumer_drain(&sizes, &mut report).await?;
    }
    if wanted("overhead") {
        // The outbox row's cost inside the register transaction.
        let overhead = write_overhead::measure(&db, 2_000).await?;
        eprintln!(
            "[bench] outbox row adds {} ms (p50) to the register transaction",
            overhead["p50"]
        );
        report["outbox_write_overhead_ms"] = overhead;
    }
    if wanted("replay") {
        // Replay of a million published rows (BENCH_REPLAY_ROWS), then the purge of them
        // all, in a database of its own.
        let rows: i64 = env_or("BENCH_REPLAY_ROWS", 1_000_000);
        let replay_db = scratch_db().await;
        let (replayed, purged) =
            replay::measure(&replay_db, &scratch_topic(3).await, rows, sizes.batch).await?;
        eprintln!(
            "[bench] replay: {} rows re-queued and published in {} s; purge: {} rows in {} s, longest statement {} ms",
            replayed["rows"], replayed["seconds"], purged["rows"], purged["seconds"], purged["longest_statement_ms"]
        );
        report["replay"] = replayed;
        report["retention"] = purged;
    }
    if wanted("reconcile") {
        // reconcile over 100k users (BENCH_RECONCILE_USERS).
        let users: i64 = env_or("BENCH_RECONCILE_USERS", 100_000);
        let reconciled = reconcile::measure(&scratch_db().await, users).await?;
        eprintln!(
            "[bench] reconcile: {} users in {} s",
            reconciled["users"], reconciled["seconds_in_sync"]
        );
        report["reconcile"] = reconciled;
    }
    if wanted("http") {
        // The public API under load.
        let figures = http::measure(&scratch_db().await, sizes.http_seconds).await?;
        eprintln!(
            "[bench] http: profile {} rps, health/live {} rps",
            figures["profile_rps"], figures["live_rps"]
        );
        report["http"] = figures;
    }
    if wanted("traced") {
        traced_drain(&sizes, &mut report).await?;
    }

    report["duration_s"] = json!(stats::round0(run_started.elapsed().as_secs_f64()));
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench");
    std::fs::create_dir_all(&dir)?;
    write_report(&dir, &report)?;
    if let Some((kafka_latency, effect_latency)) = latencies {
        let f = |v: &Value| v.as_f64().unwrap_or(0.0);
        chart::draw(
            &dir.join("chart.svg"),
            &[
                ("commit -> Kafka", chart::cdf(&kafka_latency.buckets())),
                (
                    "commit -> consumer effect",
                    chart::cdf(&effect_latency.buckets()),
                ),
            ],
            &[
                ("relay (real engine)", f(&report["relay"]["events_per_s"])),
                (
                    "limit: read-and-record, no Kafka",
                    f(&report["relay"]["db_limit_per_s"]),
                ),
                (
                    "limit: raw producer, no DB",
                    f(&report["relay"]["raw_producer_per_s"]),
                ),
                ("consumer (backlog)", f(&report["consumer"]["events_per_s"])),
            ],
        )?;
    }
    print_table(&report, &previous_design());
    eprintln!(
        "[bench] wrote {} and chart.svg",
        dir.join("report.json").display()
    );
    Ok(())
}

/// The relay between its two limits: a raw producer with its settings and no database,
/// and the database's reading and recording with no Kafka; then the relay itself (the
/// process's loop) draining the same backlog, what it wrote to the database per event,
/// and every record read back to count duplicates.
async fn relay_drain(sample: &Sample, sizes: &Sizes, report: &mut Value) -> anyhow::Result<()> {
    let backlog = sizes.backlog;
    let producer = create_producer(&relay::producer_settings())?;
    // Each round measures the raw producer and then the relay, back to back, so both
    // meet the same machine; a drain takes a couple of seconds, and the median of the
    // rounds' ratios keeps one noisy second from deciding the figure.
    let mut rounds = Vec::new();
    let mut db_limit = None;
    let mut written = None;
    let mut duplicates = 0u64;
    let mut records = 0u64;
    let mut events = 0u64;
    for round in 1..=sizes.rounds {
        let topic = scratch_topic(3).await;
        let raw = producer::raw_producer_per_s(&producer, &topic, sample, backlog as usize).await?;
        eprintln!("[bench] round {round}: raw producer {raw:.0}/s");
        if db_limit.is_none() {
            let limit_db = backlog_db(backlog, &topic).await?;
            let limit = db_limit::read_and_record_per_s(&limit_db, sizes.batch).await?;
            drop_database(&limit_db).await?;
            eprintln!("[bench] read-and-record (no Kafka): {limit:.0}/s");
            db_limit = Some(limit);
        }

        // The real relay over the same backlog and broker, on a topic of its own.
        let topic = scratch_topic(3).await;
        let round_db = backlog_db(backlog, &topic).await?;
        let before = write_cost::read(&round_db).await?;
        let relay_rate = relay::drain_per_s(&round_db, sizes.batch, backlog as usize).await?;
        let cost =
            write_cost::per_event(before, write_cost::read(&round_db).await?, backlog as usize);
        drop_database(&round_db).await?;
        let read_back = relay::duplicates(&topic, backlog as usize).await?;
        eprintln!(
            "[bench] round {round}: relay drain {relay_rate:.0}/s ({:.3} of raw); per published event {} WAL bytes, {} row versions; {} duplicates in Kafka",
            relay_rate / raw,
            cost["wal_bytes_per_event"],
            cost["row_versions_per_event"],
            read_back["duplicates"]
        );
        duplicates += read_back["duplicates"].as_u64().unwrap_or(0);
        records += read_back["records"].as_u64().unwrap_or(0);
        events += read_back["events"].as_u64().unwrap_or(0);
        written.get_or_insert(cost);
        rounds.push((raw, relay_rate));
    }
    let db_limit = db_limit.unwrap_or_default();
    let median = |mut values: Vec<f64>| {
        values.sort_by(f64::total_cmp);
        values.get(values.len() / 2).copied().unwrap_or_default()
    };
    let raw = median(rounds.iter().map(|(raw, _)| *raw).collect());
    let relay_rate = median(rounds.iter().map(|(_, relay)| *relay).collect());
    let ratio = median(rounds.iter().map(|(raw, relay)| relay / raw).collect());
    let limit = raw.min(db_limit);
    report["relay"] = json!({
        "events_per_s": stats::round0(relay_rate),
        "db_limit_per_s": stats::round0(db_limit),
        "raw_producer_per_s": stats::round0(raw),
        "ratio_to_limit": stats::round3(relay_rate / limit),
        "ratio_to_raw_producer": stats::round3(ratio),
        "rounds": rounds.iter().map(|(raw, relay)| json!({
            "raw_producer_per_s": stats::round0(*raw),
            "relay_per_s": stats::round0(*relay),
            "ratio": stats::round3(relay / raw),
        })).collect::<Vec<_>>(),
        "database_writes_per_event": written,
        "kafka": {
            "events": events,
            "records": records,
            "duplicates": duplicates,
        },
    });
    Ok(())
}

/// Users the read model holds before the latency run, as in a database in use.
const USERS_IN_USE: i64 = 50_000;

/// Makes a new scratch database's read model look like one in use: [`USERS_IN_USE`] users
/// and their processed events, with statistics. In a fresh database the consumer's plans
/// were made before any row came and kept (autovacuum first looks a minute later): they
/// read the whole directory for every lookup, a cost that grew with each second of the run
/// and that no database in use pays. (The outbox is left as it is: never analyzed. Analyzed
/// while empty, it gets plans that read it whole until autovacuum analyzes it again.)
async fn in_use(db: &platform::db::DbConfig) -> anyhow::Result<()> {
    let client = db.connect().await?;
    client
        .batch_execute(&format!(
            "INSERT INTO consumer.user_directory (user_id, email, first_name, last_name, role, status, version)
             SELECT gen_random_uuid(), 'prior' || n || '@example.com', 'Prior', 'User', 'user', 'active', 1
             FROM generate_series(1, {USERS_IN_USE}) n;
             INSERT INTO consumer.processed_events (event_id, event_type, topic, partition, kafka_offset)
             SELECT gen_random_uuid(), 'UserRegistered', 'prior-events', 0, n
             FROM generate_series(1, {USERS_IN_USE}) n"
        ))
        .await?;
    // As autovacuum keeps tables in use (else it would vacuum these rows during the run).
    client
        .batch_execute("VACUUM ANALYZE consumer.user_directory, consumer.processed_events")
        .await?;
    Ok(())
}

/// Commit -> Kafka and commit -> effect under a steady open-loop load, with the relay and
/// the consumer running as in production (leadership, LISTEN wake-ups, polls), in a
/// database of its own.
async fn latency(
    sizes: &Sizes,
    report: &mut Value,
) -> anyhow::Result<(stats::Latencies, stats::Latencies)> {
    let latency_db = scratch_db().await;
    in_use(&latency_db).await?;
    let latency_topic = scratch_topic(3).await;
    let dlq_topic = scratch_topic(1).await;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let until_stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let running = Relay::new(
        latency_db.clone(),
        relay::producer_settings(),
        relay::relay_config(sizes.batch),
    );
    let relay_task = tokio::spawn(running.run(until_stopped(stopped.clone())));
    let consumer_settings = consumer::settings(&latency_topic, &dlq_topic, sizes.consumer_batch);
    let consumer_engine = event_consumer::Consumer::new(
        &consumer_settings,
        &platform::kafka::KafkaConfig::plaintext(tests::brokers()),
        latency_db.pool(),
    )?;
    let consumer_task = tokio::spawn(consumer_engine.run(until_stopped(stopped.clone())));

    // Warm-up: the same load, not measured, end to end through the consumer and through
    // two readers that subscribe like any consumer (one as the event-consumer reads,
    // records of open transactions included, one reading committed records only): no
    // group join is measured, nor a broker (a JVM) that has not run this traffic yet.
    let reader = std::sync::Arc::new(relay::reader(&latency_topic, false)?);
    let committed_reader = std::sync::Arc::new(relay::reader(&latency_topic, true)?);
    let warm = relay::CommitTimes::default();
    let rate = sizes.rate;
    let warm_events = ((sizes.latency_warmup.as_secs_f64() * rate as f64) as usize).max(1);
    let warm_writer = tokio::spawn(relay::steady_writer(
        latency_db.clone(),
        latency_topic.clone(),
        rate,
        sizes
            .latency_warmup
            .max(std::time::Duration::from_millis(1)),
        warm.clone(),
    ));
    let (applied, read, read_committed) = tokio::join!(
        consumer::effect_latencies(&latency_db, warm_events, warm.clone()),
        relay::read_latencies(&reader, warm_events, warm.clone(), false),
        relay::read_latencies(&committed_reader, warm_events, warm.clone(), false),
    );
    warm_writer.await??;
    for (what, latencies) in [
        ("applied", applied?),
        ("read", read?),
        ("read committed", read_committed?),
    ] {
        anyhow::ensure!(
            latencies.len() as usize >= warm_events,
            "warm-up: only {} of {warm_events} events {what}",
            latencies.len()
        );
    }
    // The sections before wrote hundreds of thousands of rows: flush them now rather than
    // in a checkpoint in the middle of this run.
    if let Err(error) = latency_db
        .connect()
        .await?
        .batch_execute("CHECKPOINT")
        .await
    {
        eprintln!("[bench] no CHECKPOINT before the latency run: {error}");
    }
    let commits = relay::CommitTimes::default();
    let expected = (sizes.latency_run.as_secs_f64() * rate as f64) as usize;
    let writer = tokio::spawn(relay::steady_writer(
        latency_db.clone(),
        latency_topic.clone(),
        rate,
        sizes.latency_run,
        commits.clone(),
    ));
    let effects = {
        let (db, commits) = (latency_db.clone(), commits.clone());
        tokio::spawn(async move { consumer::effect_latencies(&db, expected, commits).await })
    };
    let committed_latency = {
        let commits = commits.clone();
        tokio::spawn(async move {
            relay::read_latencies(&committed_reader, expected, commits, true).await
        })
    };
    let kafka_latency = relay::read_latencies(&reader, expected, commits.clone(), true).await?;
    let committed_latency = committed_latency.await??;
    let written = writer.await??;
    let effect_latency = effects.await??;
    let _ = stop.send(true);
    let _ = relay_task.await;
    let _ = consumer_task.await;
    eprintln!(
        "[bench] {written} events at {rate}/s: commit->kafka p50 {} p99 {} ms (committed: p50 {} p99 {} ms); commit->consumer p50 {} p99 {} ms",
        kafka_latency.ms(0.5), kafka_latency.ms(0.99), committed_latency.ms(0.5), committed_latency.ms(0.99),
        effect_latency.ms(0.5), effect_latency.ms(0.99)
    );
    report["latency_commit_to_kafka_ms"] = kafka_latency.summary();
    report["latency_commit_to_kafka_ms"]["rate_per_s"] = json!(rate);
    report["latency_commit_to_kafka_ms"]["reader"] =
        json!("read_uncommitted, as the event-consumer reads");
    report["latency_commit_to_kafka_committed_ms"] = committed_latency.summary();
    report["latency_commit_to_kafka_committed_ms"]["reader"] =
        json!("read_committed (librdkafka's default): a record shows once its transaction commits");
    report["latency_commit_to_consumer_ms"] = effect_latency.summary();
    report["latency_commit_to_consumer_ms"]["rate_per_s"] = json!(rate);
    report["rate_per_s"] = json!(rate);
    Ok((kafka_latency, effect_latency))
}

/// The consumer applying a backlog already on its topic.
async fn consumer_drain(sizes: &Sizes, report: &mut Value) -> anyhow::Result<()> {
    let backlog_topic = scratch_topic(3).await;
    let dlq_topic = scratch_topic(1).await;
    consumer::fill_topic(
        &create_producer(&relay::producer_settings())?,
        &backlog_topic,
        sizes.consumer_backlog,
    )
    .await?;
    let consumer_db = scratch_db().await;
    let consumer_rate = consumer::drain_per_s(
        &consumer_db,
        &consumer::settings(&backlog_topic, &dlq_topic, sizes.consumer_batch),
        sizes.consumer_backlog,
    )
    .await?;
    eprintln!("[bench] consumer: {consumer_rate:.0}/s");
    report["consumer"] = json!({
        "events_per_s": stats::round0(consumer_rate),
        "backlog": sizes.consumer_backlog,
        "batch_size": sizes.consumer_batch,
    });
    Ok(())
}

/// Last, because it turns tracing on for the whole process: the same drain with spans
/// exported (to an OTLP receiver in this process) under a 1% parent-based sampler, side
/// by side with an untraced drain just before it, each in a database of its own (the
/// figures measured so far leave other databases for autovacuum to clean).
async fn traced_drain(sizes: &Sizes, report: &mut Value) -> anyhow::Result<()> {
    let backlog = sizes.backlog;
    let topic = scratch_topic(3).await;
    // Rows as requests write them when 1% of traces are sampled: each with its
    // traceparent, 1% of them sampled.
    // Each drain in a fresh database of its own, the first one dropped before the second
    // starts: a second drain in the same database (twice the rows, and autovacuum at
    // work on the first ones) ran 10-20% slower with no tracing at all.
    let untraced_db = scratch_db().await;
    tests::fill_outbox_traced(&untraced_db.connect().await?, backlog, &topic, 0.01).await?;
    let untraced_rate = relay::drain_per_s(&untraced_db, sizes.batch, backlog as usize).await?;
    drop_database(&untraced_db).await?;
    let trace_db = scratch_db().await;
    tests::fill_outbox_traced(&trace_db.connect().await?, backlog, &topic, 0.01).await?;
    let otlp = tests::otlp::receiver().await;
    for (name, value) in [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", otlp.endpoint.as_str()),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
        ("OTEL_TRACES_SAMPLER", "parentbased_traceidratio"),
        ("OTEL_TRACES_SAMPLER_ARG", "0.01"),
        ("OTEL_BSP_SCHEDULE_DELAY", "500"),
    ] {
        std::env::set_var(name, value);
    }
    platform::telemetry::init(
        "outbox-relay",
        "error",
        platform::telemetry::LogFormat::Json,
    );
    anyhow::ensure!(platform::telemetry::exporting(), "tracing did not start");
    let traced_rate = relay::drain_per_s(&trace_db, sizes.batch, backlog as usize).await?;
    platform::telemetry::shutdown();
    eprintln!(
        "[bench] relay drain, 1% of traces sampled: {traced_rate:.0}/s against {untraced_rate:.0}/s untraced just before ({} spans received)",
        otlp.spans().len()
    );
    report["relay"]["events_per_s_traced_1pct"] = json!(stats::round0(traced_rate));
    report["relay"]["events_per_s_untraced_beside_traced"] = json!(stats::round0(untraced_rate));
    report["relay"]["traced_to_untraced"] = json!(stats::round3(traced_rate / untraced_rate));
    report["relay"]["traced_spans_received"] = json!(otlp.spans().len());
    Ok(())
}

/// A fresh scratch database holding a backlog of `count` outbox rows for `topic`,
/// vacuumed and analyzed as autovacuum keeps a table in use (else it would vacuum the
/// new rows while they are measured). Written by a session of its own that hands its
/// statistics over before it closes, so these inserts and the vacuum are not counted as
/// the relay's writes.
async fn backlog_db(count: i64, topic: &str) -> anyhow::Result<platform::db::DbConfig> {
    let db = scratch_db().await;
    let filler = db.connect().await?;
    fill_outbox(&filler, count, topic).await?;
    filler.batch_execute("VACUUM ANALYZE users.outbox").await?;
    // Flushed when the session next goes idle, which the statement after it waits for.
    filler
        .batch_execute("SELECT pg_stat_force_next_flush()")
        .await?;
    filler.batch_execute("SELECT 1").await?;
    drop(filler);
    Ok(db)
}

/// Drops a scratch database (and with it the work autovacuum had left there).
async fn drop_database(db: &platform::db::DbConfig) -> anyhow::Result<()> {
    db.with_database("postgres")
        .connect()
        .await?
        .batch_execute(&format!("DROP DATABASE \"{}\" WITH (FORCE)", db.db_name))
        .await?;
    Ok(())
}

/// The last run of the relay design before this one (one UPDATE per published row),
/// kept beside this run's figures.
fn previous_design() -> Value {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("bench-results/previous-design.json");
    std::fs::read_to_string(path)
        .ok()
        .and_then(|text| serde_json::from_str(&text).ok())
        .unwrap_or(Value::Null)
}

/// The broker version `make infra-up` resolves (scripts/kafka/pom.xml).
fn kafka_version() -> &'static str {
    let pom = include_str!("../../../../scripts/kafka/pom.xml");
    pom.split("<kafka.version>")
        .nth(1)
        .and_then(|rest| rest.split('<').next())
        .unwrap_or("unknown")
}

fn machine_facts() -> Value {
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .next()
                .map(|l| l.split_whitespace().nth(1).unwrap_or("0").to_owned())
        })
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

fn write_report(dir: &std::path::Path, report: &Value) -> anyhow::Result<()> {
    std::fs::write(
        dir.join("report.json"),
        serde_json::to_string_pretty(report)?,
    )?;
    Ok(())
}

/// One line of the table: a figure, the previous design's, its target (`-` for none) and
/// whether it is met.
struct Row {
    name: &'static str,
    value: f64,
    previous: f64,
    target: String,
    met: bool,
}

impl Row {
    /// A figure with no target of its own.
    fn info(name: &'static str, value: f64) -> Self {
        Self::new(name, value, "-".into(), true)
    }

    fn at_most(name: &'static str, value: f64, max: f64) -> Self {
        Self::new(name, value, format!("<= {max}"), value <= max)
    }

    fn at_least(name: &'static str, value: f64, min: f64) -> Self {
        Self::new(name, value, format!(">= {min}"), value >= min)
    }

    fn new(name: &'static str, value: f64, target: String, met: bool) -> Self {
        Self {
            name,
            value,
            previous: f64::NAN,
            target,
            met,
        }
    }

    /// The previous design's figure at `path` in its report.
    fn was(mut self, previous: &Value, path: &[&str]) -> Self {
        self.previous = path
            .iter()
            .fold(previous, |v, key| &v[*key])
            .as_f64()
            .unwrap_or(f64::NAN);
        self
    }
}

/// The figures against the targets and the previous design's, one line each (figures of
/// sections not run are left out).
fn print_table(r: &Value, was: &Value) {
    let f = |v: &Value| v.as_f64().unwrap_or(f64::NAN);
    let raw = f(&r["relay"]["raw_producer_per_s"]);
    let limit = f(&r["relay"]["db_limit_per_s"]).min(raw);
    let relay = f(&r["relay"]["events_per_s"]);
    let to_kafka = &r["latency_commit_to_kafka_ms"];
    let to_consumer = &r["latency_commit_to_consumer_ms"];
    let (profile, live) = (f(&r["http"]["profile_rps"]), f(&r["http"]["live_rps"]));
    let writes = &r["relay"]["database_writes_per_event"];
    let rows = [
        Row::new(
            "relay events/s (drain)",
            relay,
            format!(">= 100000 and >= {:.0}", 0.8 * raw),
            relay >= 100_000.0 && relay >= 0.8 * raw,
        )
        .was(was, &["relay", "events_per_s"]),
        Row::at_least(
            "  relay / raw producer",
            f(&r["relay"]["ratio_to_raw_producer"]),
            0.8,
        )
        .was(was, &["relay", "ratio_to_raw_producer"]),
        Row::info("  relay / min(limits)", relay / limit),
        Row::info(
            "  limit: raw producer, no DB",
            f(&r["relay"]["raw_producer_per_s"]),
        )
        .was(was, &["relay", "raw_producer_per_s"]),
        Row::info(
            "  limit: DB read+record, no Kafka",
            f(&r["relay"]["db_limit_per_s"]),
        )
        .was(was, &["relay", "db_limit_per_s"]),
        Row::info(
            "  WAL bytes per published event",
            f(&writes["wal_bytes_per_event"]),
        )
        .was(
            was,
            &["relay", "database_writes_per_event", "wal_bytes_per_event"],
        ),
        Row::info(
            "  row versions per published event",
            f(&writes["row_versions_per_event"]),
        )
        .was(
            was,
            &[
                "relay",
                "database_writes_per_event",
                "row_versions_per_event",
            ],
        ),
        Row::info(
            "  duplicates in Kafka after the drain",
            f(&r["relay"]["kafka"]["duplicates"]),
        ),
        Row::at_most("commit->Kafka p50 ms", f(&to_kafka["p50"]), 2.0)
            .was(was, &["latency_commit_to_kafka_ms", "p50"]),
        Row::at_most("commit->Kafka p99 ms", f(&to_kafka["p99"]), 10.0)
            .was(was, &["latency_commit_to_kafka_ms", "p99"]),
        Row::info("commit->Kafka max ms", f(&to_kafka["max"]))
            .was(was, &["latency_commit_to_kafka_ms", "max"]),
        Row::info(
            "  committed (read_committed) p50 ms",
            f(&r["latency_commit_to_kafka_committed_ms"]["p50"]),
        ),
        Row::info(
            "  committed (read_committed) p99 ms",
            f(&r["latency_commit_to_kafka_committed_ms"]["p99"]),
        ),
        Row::info("commit->consumer p50 ms", f(&to_consumer["p50"]))
            .was(was, &["latency_commit_to_consumer_ms", "p50"]),
        Row::at_most("commit->consumer p99 ms", f(&to_consumer["p99"]), 15.0)
            .was(was, &["latency_commit_to_consumer_ms", "p99"]),
        Row::at_least(
            "consumer events/s (backlog)",
            f(&r["consumer"]["events_per_s"]),
            60_000.0,
        )
        .was(was, &["consumer", "events_per_s"]),
        Row::at_most(
            "replay of 1M rows, s",
            f(&r["replay"]["seconds_for_1m"]),
            15.0,
        )
        .was(was, &["replay", "seconds_for_1m"]),
        Row::info(
            "  purge: longest statement, ms",
            f(&r["retention"]["longest_statement_ms"]),
        ),
        Row::info("  purge: rows/s", f(&r["retention"]["rows_per_s"])),
        Row::info(
            "reconcile of 100k users, s",
            f(&r["reconcile"]["seconds_in_sync"]),
        )
        .was(was, &["reconcile", "seconds_in_sync"]),
        Row::at_most(
            "outbox row cost, p50 ms",
            f(&r["outbox_write_overhead_ms"]["p50"]),
            0.25,
        )
        .was(was, &["outbox_write_overhead_ms", "p50"]),
        Row::new(
            "BFF /profile rps",
            profile,
            format!(">= {:.0} (0.5 x /health/live)", 0.5 * live),
            profile >= 0.5 * live,
        )
        .was(was, &["http", "profile_rps"]),
        Row::info("  BFF /health/live rps", live).was(was, &["http", "live_rps"]),
        Row::at_least(
            "BFF /health/live / 404 rps",
            f(&r["http"]["live_to_not_found"]),
            0.8,
        )
        .was(was, &["http", "live_to_not_found"]),
        Row::at_least(
            "relay traced (1%) / untraced",
            f(&r["relay"]["traced_to_untraced"]),
            0.9,
        )
        .was(was, &["relay", "traced_to_untraced"]),
        Row::info(
            "  relay events/s, 1% traced",
            f(&r["relay"]["events_per_s_traced_1pct"]),
        )
        .was(was, &["relay", "events_per_s_traced_1pct"]),
    ];
    println!(
        "{:<38} {:>12} {:>12}  {:<28}",
        "figure", "value", "previous", "target"
    );
    for row in rows.into_iter().filter(|row| !row.value.is_nan()) {
        let mark = if row.target == "-" {
            ""
        } else if row.met {
            "met"
        } else {
            "MISSED"
        };
        let previous = if row.previous.is_nan() {
            "-".to_owned()
        } else {
            format!("{:.3}", row.previous)
        };
        let (name, value, target) = (row.name, row.value, &row.target);
        println!("{name:<38} {value:>12.3} {previous:>12}  {target:<28} {mark}");
    }
}
