//! The one test kit every crate's tests use: a scratch database per test (settings from
//! the real config loader, so `DB_*` are honoured everywhere), a scratch Kafka topic and a
//! reader for it (`KAFKA_BROKERS`), polling with a deadline, free ports and the
//! workspace's binaries, and a TCP proxy that can be cut and restored to take a dependency
//! "down" for one test without stopping the shared server other tests use.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use std::path::PathBuf;
use std::time::Duration;

use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::ClientConfig;
use serde::Deserialize;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, watch};
use uuid::Uuid;

use crate::config::{Layered, Profiles};
use crate::db::DbConfig;
use crate::kafka::KafkaConfig;

const NO_PROFILES: Profiles = Profiles {
    development: "{}",
    docker: "{}",
    production: "{}",
};

#[derive(Debug, Deserialize)]
#[serde(default)]
struct KafkaSettings {
    kafka_brokers: String,
}

impl Default for KafkaSettings {
    fn default() -> Self {
        Self {
            kafka_brokers: "127.0.0.1:9092".into(),
        }
    }
}

fn layers() -> Layered {
    // Tests run in development whatever ENV the shell has.
    let env = std::env::vars().filter(|(k, _)| k != "ENV");
    Layered::from_sources(&NO_PROFILES, None, env).expect("the test environment's settings")
}

/// The PostgreSQL server of `make infra-up`, from the `DB_*` settings.
pub fn server_db() -> DbConfig {
    layers().get().expect("DB_* settings")
}

/// The Kafka bootstrap servers of `make infra-up` (`KAFKA_BROKERS`).
pub fn brokers() -> String {
    layers()
        .get::<KafkaSettings>()
        .expect("KAFKA_BROKERS")
        .kafka_brokers
}

/// A new, migrated database of its own for one test (`test_*`, dropped by the next
/// `make test`), so no test depends on another's data.
pub async fn scratch_db() -> DbConfig {
    let name = format!("test_{}", Uuid::new_v4().simple());
    let server = server_db();
    migrations::create_scratch_database(&server, &name)
        .await
        .unwrap_or_else(|error| panic!("scratch database {name}: {error}"));
    server.with_database(&name)
}

/// [`scratch_db`] on another server (the TLS fixture's, say).
pub async fn scratch_db_on(server: &DbConfig) -> DbConfig {
    let name = format!("test_{}", Uuid::new_v4().simple());
    migrations::create_scratch_database(server, &name)
        .await
        .unwrap_or_else(|error| {
            panic!(
                "scratch database {name} on {}:{}: {error}",
                server.db_host, server.db_port
            )
        });
    server.with_database(&name)
}

/// The TLS fixture of `scripts/infra.sh tls-up` (`make test` starts it): a PostgreSQL that
/// accepts TLS only and a Kafka whose client listener is SASL_SSL with SCRAM-SHA-512, both
/// with a certificate from a test CA.
#[derive(Debug, Clone)]
pub struct TlsFixture {
    dir: PathBuf,
}

/// The fixture's files, or a panic that says how to start it.
pub fn tls_fixture() -> TlsFixture {
    let infra = std::env::var_os("INFRA_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .parent()
                .expect("the workspace")
                .join(".infra")
        });
    let dir = infra.join("tls");
    assert!(
        dir.join(".complete").exists(),
        "no TLS fixture in {}: run `scripts/infra.sh tls-up` (make test does)",
        dir.display()
    );
    TlsFixture { dir }
}

impl TlsFixture {
    /// The CA that signed both servers' certificate.
    pub fn ca(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }

    /// A CA that signed nothing of the fixture's.
    pub fn other_ca(&self) -> PathBuf {
        self.dir.join("other-ca.crt")
    }

    /// The TLS-only PostgreSQL (`DB_TLS_PORT`, default 5433), database `postgres`, with
    /// `DB_SSLMODE=mode`, trusting `root_cert`, as the development role of `make infra-up`.
    pub fn db(&self, mode: &str, root_cert: &std::path::Path) -> Result<DbConfig, String> {
        let server = server_db();
        let port = std::env::var("DB_TLS_PORT").unwrap_or_else(|_| "5433".into());
        let password = secrecy::ExposeSecret::expose_secret(&server.db_password).to_owned();
        DbConfig::from_env_vars(crate::config::pairs(&[
            ("DB_HOST", "127.0.0.1"),
            ("DB_PORT", &port),
            ("DB_NAME", "postgres"),
            ("DB_USER", &server.db_user),
            ("DB_PASSWORD", &password),
            ("DB_SSLMODE", mode),
            ("DB_SSLROOTCERT", &root_cert.display().to_string()),
        ]))
    }

    /// The SCRAM user `make infra-up`'s fixture created, and its password.
    pub fn kafka_user(&self) -> (String, String) {
        let password = std::fs::read_to_string(self.dir.join("kafka_password"))
            .expect("the fixture's Kafka password");
        ("outbox".into(), password.trim().to_owned())
    }

    /// SASL_SSL to the fixture's broker as `user`/`password`, trusting `ca`.
    pub fn kafka_as(&self, user: &str, password: &str, ca: &std::path::Path) -> KafkaConfig {
        KafkaConfig::plaintext("localhost:9094")
            .with_property("security.protocol", "SASL_SSL")
            .with_property("sasl.mechanism", "SCRAM-SHA-512")
            .with_property("sasl.username", user)
            .with_property("sasl.password", password)
            .with_property("ssl.ca.location", &ca.display().to_string())
            // The listener is bound to 127.0.0.1; `localhost` may resolve to ::1 first.
            .with_property("broker.address.family", "v4")
    }

    /// SASL_SSL to the fixture's broker with the right user, password and CA.
    pub fn kafka(&self) -> KafkaConfig {
        let (user, password) = self.kafka_user();
        self.kafka_as(&user, &password, &self.ca())
    }
}

/// Builds service `S` from `env` through its real configuration loader and serves it
/// on a free port until the returned sender is fired or dropped; its base URL.
pub async fn spawn_service<S: crate::service::Service>(
    env: Vec<(String, String)>,
) -> (String, tokio::sync::oneshot::Sender<()>) {
    let config = crate::config::ServiceConfig::<S::Settings>::from_env(env)
        .unwrap_or_else(|error| panic!("{} configuration: {error}", S::NAME));
    let app = S::build(config)
        .await
        .unwrap_or_else(|error| panic!("starting {}: {error}", S::NAME));
    let (stop, stopped) = stop_signal();
    let base = local_url(app.port());
    tokio::spawn(app.run_until_stopped(stopped));
    (base, stop)
}

/// A new topic of its own for one test.
pub async fn scratch_topic(partitions: i32) -> String {
    scratch_topic_with(&KafkaConfig::plaintext(brokers()), partitions).await
}

/// A new topic of its own for one test, on the brokers `kafka` connects to.
pub async fn scratch_topic_with(kafka: &KafkaConfig, partitions: i32) -> String {
    let name = format!("test-{}", Uuid::new_v4().simple());
    crate::kafka::create_topic_with(kafka, &name, partitions)
        .await
        .unwrap_or_else(|error| panic!("creating topic {name}: {error}"));
    name
}

/// A consumer in a new group reading `topic` from the beginning, as a real consumer
/// subscribes.
pub fn reader(topic: &str) -> StreamConsumer {
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .set(
            "group.id",
            format!("test-reader-{}", Uuid::new_v4().simple()),
        )
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .expect("a Kafka consumer");
    consumer.subscribe(&[topic]).expect("subscribe");
    consumer
}

/// Reads `topic` from the start until `at_least` messages arrived and then nothing more for
/// `quiet`, or until `timeout`.
pub async fn read_topic(
    topic: &str,
    at_least: usize,
    timeout: Duration,
) -> Vec<rdkafka::message::OwnedMessage> {
    let consumer = reader(topic);
    let quiet = Duration::from_millis(700);
    let deadline = tokio::time::Instant::now() + timeout;
    let mut messages = Vec::new();
    loop {
        let wait = if messages.len() >= at_least {
            quiet
        } else {
            deadline.saturating_duration_since(tokio::time::Instant::now())
        };
        match tokio::time::timeout(wait, consumer.recv()).await {
            Ok(Ok(message)) => messages.push(message.detach()),
            Ok(Err(error)) => panic!("reading {topic}: {error}"),
            Err(_) => return messages,
        }
    }
}

/// Polls `f` until it holds or `timeout` passes; returns whether it held.
pub async fn eventually<F, Fut>(timeout: Duration, mut f: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if f().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A port nothing listens on right now, and one this process has not handed out before.
/// It is taken below Linux's ephemeral range (32768-60999), so no bind to port 0 in this
/// process (a proxy, a receiver, another service) can be given it before the caller's
/// child process binds it; and never twice, so two stacks started side by side never share
/// one (each would find the other's service answering on it).
pub fn free_port() -> u16 {
    use rand::RngExt as _;
    static GIVEN: std::sync::Mutex<BTreeSet<u16>> = std::sync::Mutex::new(BTreeSet::new());
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    let mut rng = rand::rng();
    for _ in 0..10_000 {
        let port: u16 = rng.random_range(20_000..32_000);
        if given.contains(&port) {
            continue;
        }
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            given.insert(port);
            return port;
        }
    }
    panic!("no free port between 20000 and 32000");
}

/// The base URL of a server listening on `port` of this machine.
pub fn local_url(port: u16) -> String {
    format!("http://127.0.0.1:{port}")
}

/// A stop switch for a server a test runs in the background: pass the future as the
/// server's shutdown signal; it completes once the sender is used or dropped.
pub fn stop_signal() -> (
    oneshot::Sender<()>,
    impl std::future::Future<Output = ()> + Send + 'static,
) {
    let (stop, stopped) = oneshot::channel::<()>();
    (stop, async move {
        let _ = stopped.await;
    })
}

/// Sends `request` with `body` exactly as given, labelled `application/json` (for
/// malformed bodies, which `.json()` cannot make).
pub async fn send_raw_json(request: reqwest::RequestBuilder, body: &str) -> reqwest::Response {
    request
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .expect("request")
}

/// Counts the tracing events whose message is exactly `message` (a service's "batch
/// failed, retrying it", say) while it lives: a way to wait for something a service only
/// reports in its log. It listens on the current thread, which under `#[tokio::test]`'s
/// default current-thread runtime is where every task the test spawns runs.
pub struct LogCount {
    count: Arc<AtomicUsize>,
    _guard: tracing::subscriber::DefaultGuard,
}

impl std::fmt::Debug for LogCount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogCount")
            .field("count", &self.get())
            .finish_non_exhaustive()
    }
}

impl LogCount {
    pub fn start(message: &'static str) -> Self {
        use tracing_subscriber::layer::SubscriberExt as _;
        let count = Arc::new(AtomicUsize::new(0));
        let layer = CountingLayer {
            message,
            count: count.clone(),
        };
        let guard = tracing::subscriber::set_default(tracing_subscriber::registry().with(layer));
        Self {
            count,
            _guard: guard,
        }
    }

    /// How many such events were logged so far.
    pub fn get(&self) -> usize {
        self.count.load(Ordering::SeqCst)
    }
}

struct CountingLayer {
    message: &'static str,
    count: Arc<AtomicUsize>,
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for CountingLayer {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        struct Message<'a> {
            wanted: &'a str,
            found: bool,
        }
        impl tracing::field::Visit for Message<'_> {
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                if field.name() == "message" && format!("{value:?}") == self.wanted {
                    self.found = true;
                }
            }
        }
        let mut visitor = Message {
            wanted: self.message,
            found: false,
        };
        event.record(&mut visitor);
        if visitor.found {
            self.count.fetch_add(1, Ordering::SeqCst);
        }
    }
}

/// Where cargo put the workspace's binary `name`: the test executable lives in
/// `target/<profile>/deps/`.
pub fn binary_path(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary has a path");
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>/deps");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: build the workspace's binaries first (`cargo build --workspace --bins`)",
        path.display()
    );
    path
}

/// Forwards connections from `127.0.0.1:port()` to `upstream` while up. `cut()` drops
/// every open connection and refuses new ones (accepts and closes at once) until
/// `restore()`.
#[derive(Debug)]
pub struct TcpProxy {
    port: u16,
    up: Arc<AtomicBool>,
    generation: watch::Sender<u64>,
    task: tokio::task::JoinHandle<()>,
}

impl TcpProxy {
    pub async fn start(upstream: SocketAddr) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let up = Arc::new(AtomicBool::new(true));
        let (generation, _) = watch::channel(0u64);
        let task = {
            let up = up.clone();
            let generation = generation.clone();
            tokio::spawn(async move {
                while let Ok((inbound, _)) = listener.accept().await {
                    if !up.load(Ordering::SeqCst) {
                        drop(inbound);
                        continue;
                    }
                    let mut cut = generation.subscribe();
                    tokio::spawn(async move {
                        let Ok(mut outbound) = TcpStream::connect(upstream).await else {
                            return;
                        };
                        let mut inbound = inbound;
                        tokio::select! {
                            _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                            _ = cut.changed() => {}
                        }
                    });
                }
            })
        };
        Ok(Self {
            port,
            up,
            generation,
            task,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Drops every open connection and refuses new ones.
    pub fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        self.generation.send_modify(|g| *g += 1);
    }

    pub fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.task.abort();
        self.cut();
    }
}
