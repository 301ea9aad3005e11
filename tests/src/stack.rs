//! The four services as real processes (the binaries cargo built next to this test),
//! wired to one scratch database and scratch topics, so a test can kill -9 and restart
//! any of them.

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use platform::db::DbConfig;
use platform::kafka::KafkaConfig;
use platform::testing::scratch_topic_with;
use uuid::Uuid;

use crate::{brokers, eventually, scratch_db};

pub const INTERNAL_KEY: &str = "e2e-internal-key-0123456789";

/// The password every service role gets in the test clusters (roles belong to a whole
/// cluster, so every test sets the same one).
pub const ROLE_PASSWORD: &str = "service-role-password-for-tests";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Service {
    UserService,
    Relay,
    Consumer,
    Bff,
}

impl Service {
    pub const ALL: [Service; 4] = [
        Service::UserService,
        Service::Relay,
        Service::Consumer,
        Service::Bff,
    ];

    /// The database role the service logs in as (made by the migrations).
    pub fn db_role(self) -> &'static str {
        match self {
            Service::UserService => "user_service",
            Service::Relay => "outbox_relay",
            Service::Consumer => "event_consumer",
            Service::Bff => "bff",
        }
    }

    fn binary(self) -> &'static str {
        match self {
            Service::UserService => "user-service",
            Service::Relay => "outbox-relay",
            Service::Consumer => "event-consumer",
            Service::Bff => "bff",
        }
    }
}

pub use platform::testing::{binary_path, free_port};

/// Sets [`ROLE_PASSWORD`] on the service roles of `db`'s cluster, once per cluster and
/// process: two ALTER ROLEs of one role at once fail ("tuple concurrently updated").
pub async fn set_role_passwords(db: &DbConfig) -> anyhow::Result<()> {
    static DONE: tokio::sync::Mutex<Vec<(String, u16)>> = tokio::sync::Mutex::const_new(Vec::new());
    let mut done = DONE.lock().await;
    let cluster = (db.db_host.clone(), db.db_port);
    if done.contains(&cluster) {
        return Ok(());
    }
    let admin = db.connect().await?;
    for (role, _) in migrations::roles::SERVICE_ROLES {
        migrations::roles::set_password(&admin, role, ROLE_PASSWORD).await?;
    }
    done.push(cluster);
    Ok(())
}

#[derive(Debug)]
pub struct Stack {
    pub db: DbConfig,
    pub kafka: KafkaConfig,
    pub topic: String,
    pub dlq_topic: String,
    pub group: String,
    ports: HashMap<Service, u16>,
    children: HashMap<Service, Child>,
    extras: Vec<Child>,
    extra_env: Vec<(String, String)>,
    /// Where the services' output goes once [`Stack::capture_logs`] was called.
    log_dir: Option<std::path::PathBuf>,
    pub http: reqwest::Client,
}

impl Stack {
    /// A scratch database and topics, nothing started yet.
    pub async fn new() -> anyhow::Result<Self> {
        Self::on(scratch_db().await, KafkaConfig::plaintext(brokers())).await
    }

    /// The stack on a migrated database `db` and the brokers `kafka` connects to (the TLS
    /// fixture's, say), with scratch topics there; nothing started yet.
    pub async fn on(db: DbConfig, kafka: KafkaConfig) -> anyhow::Result<Self> {
        // Each service logs in as its own role, as in docker and production, so every
        // stack test also proves the grants suffice.
        set_role_passwords(&db).await?;
        let topic = scratch_topic_with(&kafka, 3).await;
        let dlq_topic = scratch_topic_with(&kafka, 1).await;
        let ports = Service::ALL.iter().map(|s| (*s, free_port())).collect();
        Ok(Self {
            db,
            kafka,
            topic,
            dlq_topic,
            group: format!("e2e-{}", Uuid::new_v4().simple()),
            ports,
            children: HashMap::new(),
            extras: Vec::new(),
            extra_env: Vec::new(),
            log_dir: None,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()?,
        })
    }

    /// A new stack with all four started, each answering `/health`.
    pub async fn start_all() -> anyhow::Result<Self> {
        Self::new().await?.started().await
    }

    /// Starts all four and waits until each answers `/health`.
    pub async fn started(mut self) -> anyhow::Result<Self> {
        for service in Service::ALL {
            self.start(service)?;
        }
        for service in Service::ALL {
            self.wait_healthy(service).await?;
        }
        Ok(self)
    }

    /// Adds an environment variable for services started from now on.
    pub fn set_env(&mut self, key: &str, value: &str) {
        self.extra_env.push((key.to_owned(), value.to_owned()));
    }

    pub fn port(&self, service: Service) -> u16 {
        self.ports[&service]
    }

    pub fn url(&self, service: Service, path: &str) -> String {
        format!("http://127.0.0.1:{}{}", self.port(service), path)
    }

    /// `POST path` on the BFF with `body` as JSON.
    pub async fn bff_post(
        &self,
        path: &str,
        body: &serde_json::Value,
    ) -> reqwest::Result<reqwest::Response> {
        let url = self.url(Service::Bff, path);
        self.http.post(url).json(body).send().await
    }

    fn env(&self, service: Service) -> Vec<(String, String)> {
        let mut env = vec![
            ("ENV", "development".to_owned()),
            // STACK_LOG_LEVEL=info shows what the services do while a test runs.
            (
                "LOG_LEVEL",
                std::env::var("STACK_LOG_LEVEL").unwrap_or_else(|_| "warn".to_owned()),
            ),
            ("LOG_FORMAT", "pretty".to_owned()),
            ("HOST", "127.0.0.1".to_owned()),
            ("PORT", self.port(service).to_string()),
            ("INTERNAL_API_KEY", INTERNAL_KEY.to_owned()),
            ("SCRYPT_LOG_N", "10".to_owned()),
            ("EVENTS_TOPIC", self.topic.clone()),
            ("CONSUMER_TOPIC", self.topic.clone()),
            ("CONSUMER_DLQ_TOPIC", self.dlq_topic.clone()),
            ("CONSUMER_GROUP", self.group.clone()),
            ("RELAY_POLL_INTERVAL_MS", "200".to_owned()),
            // A killed consumer's partitions move on after 6 s (the broker's minimum), not 45.
            ("CONSUMER_SESSION_TIMEOUT_MS", "6000".to_owned()),
            ("USER_SERVICE_URL", self.url(Service::UserService, "")),
            ("EVENT_CONSUMER_URL", self.url(Service::Consumer, "")),
        ];
        let mut env: Vec<(String, String)> =
            env.drain(..).map(|(k, v)| (k.to_owned(), v)).collect();
        env.extend(self.db.to_env());
        env.push(("DB_USER".into(), service.db_role().to_owned()));
        env.push(("DB_PASSWORD".into(), ROLE_PASSWORD.to_owned()));
        env.extend(self.kafka.to_env());
        env.extend(self.extra_env.iter().cloned());
        env
    }

    /// From now on, each service's stdout and stderr go to a file of its own (appended
    /// across restarts) instead of the test's output; [`Stack::logs`] reads them.
    pub fn capture_logs(&mut self) -> anyhow::Result<()> {
        let dir = std::env::temp_dir().join(format!("stack-logs-{}", Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir)?;
        self.log_dir = Some(dir);
        Ok(())
    }

    /// Everything the services printed since [`Stack::capture_logs`], each line prefixed
    /// with the service's binary name.
    pub fn logs(&self) -> anyhow::Result<String> {
        let mut all = String::new();
        let Some(dir) = &self.log_dir else {
            anyhow::bail!("logs are not captured: call capture_logs before starting services")
        };
        for service in Service::ALL {
            let Ok(text) = std::fs::read_to_string(log_file(dir, service)) else {
                continue;
            };
            for line in text.lines() {
                all.push_str(service.binary());
                all.push_str(": ");
                all.push_str(line);
                all.push('\n');
            }
        }
        Ok(all)
    }

    /// stdout and stderr for a process of `service`: the test's own, or its log file.
    fn output(&self, service: Service) -> anyhow::Result<(Stdio, Stdio)> {
        let Some(dir) = &self.log_dir else {
            return Ok((Stdio::inherit(), Stdio::inherit()));
        };
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log_file(dir, service))?;
        Ok((Stdio::from(file.try_clone()?), Stdio::from(file)))
    }

    /// Starts (or restarts) one service process.
    pub fn start(&mut self, service: Service) -> anyhow::Result<()> {
        let (stdout, stderr) = self.output(service)?;
        let child = Command::new(binary_path(service.binary()))
            .env_clear()
            .envs(self.env(service))
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()?;
        self.children.insert(service, child);
        Ok(())
    }

    /// Starts an extra process of `service` with some settings overridden (e.g. a second
    /// consumer in another group on another database); the stack kills it on drop.
    pub fn start_extra(
        &mut self,
        service: Service,
        overrides: &[(&str, String)],
    ) -> anyhow::Result<u16> {
        let port = free_port();
        let mut env = self.env(service);
        env.push(("PORT".into(), port.to_string()));
        env.extend(overrides.iter().map(|(k, v)| ((*k).to_owned(), v.clone())));
        let child = Command::new(binary_path(service.binary()))
            .env_clear()
            .envs(env)
            .stdin(Stdio::null())
            .stdout(Stdio::inherit())
            .stderr(Stdio::inherit())
            .spawn()?;
        self.extras.push(child);
        Ok(port)
    }

    /// Runs a service binary's subcommand (e.g. `user-service set-role ...`) with the stack's
    /// configuration and returns its stdout.
    pub fn run_cli(&self, service: Service, args: &[&str]) -> anyhow::Result<String> {
        let output = Command::new(binary_path(service.binary()))
            .args(args)
            .env_clear()
            .envs(self.env(service))
            .output()?;
        anyhow::ensure!(
            output.status.success(),
            "{} {:?} failed: {}",
            service.binary(),
            args,
            String::from_utf8_lossy(&output.stderr)
        );
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// Runs a subcommand with some settings overridden, whatever its exit code: the code
    /// and stdout (and stderr, when it failed).
    pub fn run_cli_with(
        &self,
        service: Service,
        args: &[&str],
        overrides: &[(&str, String)],
    ) -> anyhow::Result<(i32, String)> {
        let mut env = self.env(service);
        env.extend(overrides.iter().map(|(k, v)| ((*k).to_owned(), v.clone())));
        let output = Command::new(binary_path(service.binary()))
            .args(args)
            .env_clear()
            .envs(env)
            .output()?;
        let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
        if !output.status.success() {
            text.push_str(&String::from_utf8_lossy(&output.stderr));
        }
        Ok((output.status.code().unwrap_or(-1), text))
    }

    /// Starts another process of `service` on a port of its own, with some settings
    /// overridden; the caller owns it (signals it, kills it; dropping it kills it). Its
    /// output goes to a file of its own ([`Process::log`]).
    pub fn spawn(&self, service: Service, overrides: &[(&str, String)]) -> anyhow::Result<Process> {
        let port = free_port();
        let mut env = self.env(service);
        env.push(("PORT".into(), port.to_string()));
        env.extend(overrides.iter().map(|(k, v)| ((*k).to_owned(), v.clone())));
        let log = std::env::temp_dir().join(format!(
            "{}-{}-{}.log",
            service.binary(),
            port,
            Uuid::new_v4().simple()
        ));
        let file = std::fs::File::create(&log)?;
        let child = Command::new(binary_path(service.binary()))
            .env_clear()
            .envs(env)
            .stdin(Stdio::null())
            .stdout(Stdio::from(file.try_clone()?))
            .stderr(Stdio::from(file))
            .spawn()?;
        Ok(Process {
            child,
            port,
            log,
            http: self.http.clone(),
        })
    }

    /// SIGKILL: no shutdown hook, no flush, no commit.
    pub fn kill9(&mut self, service: Service) {
        if let Some(mut child) = self.children.remove(&service) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub async fn wait_healthy(&self, service: Service) -> anyhow::Result<()> {
        let url = self.url(service, "/health");
        let http = self.http.clone();
        let up = eventually(Duration::from_secs(30), || {
            let (url, http) = (url.clone(), http.clone());
            async move { matches!(http.get(&url).send().await, Ok(r) if r.status().is_success()) }
        })
        .await;
        anyhow::ensure!(up, "{} did not become healthy at {url}", service.binary());
        Ok(())
    }

    pub async fn db_client(&self) -> anyhow::Result<tokio_postgres::Client> {
        Ok(self.db.connect().await?)
    }

    /// Counts rows of a query returning one bigint.
    pub async fn count(&self, sql: &str) -> anyhow::Result<i64> {
        Ok(self.db_client().await?.query_one(sql, &[]).await?.get(0))
    }
}

/// A service process a test owns: it can be frozen (SIGSTOP), thawed (SIGCONT) and killed
/// (SIGKILL, also on drop).
#[derive(Debug)]
pub struct Process {
    child: Child,
    pub port: u16,
    log: std::path::PathBuf,
    http: reqwest::Client,
}

impl Process {
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{}", self.port, path)
    }

    fn signal(&self, signal: nix::sys::signal::Signal) -> anyhow::Result<()> {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(self.child.id())?);
        nix::sys::signal::kill(pid, signal)?;
        Ok(())
    }

    /// SIGSTOP: the process stops where it is, its sockets stay open.
    pub fn freeze(&self) -> anyhow::Result<()> {
        self.signal(nix::sys::signal::Signal::SIGSTOP)
    }

    /// SIGCONT.
    pub fn thaw(&self) -> anyhow::Result<()> {
        self.signal(nix::sys::signal::Signal::SIGCONT)
    }

    /// SIGKILL, and waits for it to be gone.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// What it printed so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Its `/health` body (`None` while it does not answer).
    pub async fn health(&self) -> Option<serde_json::Value> {
        let response = self.http.get(self.url("/health")).send().await.ok()?;
        response.json().await.ok()
    }

    /// The value of the metric `name` (a counter or gauge without labels) on `/metrics`.
    pub async fn metric(&self, name: &str) -> Option<f64> {
        let text = self
            .http
            .get(self.url("/metrics"))
            .send()
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        text.lines()
            .filter(|line| !line.starts_with('#'))
            .find_map(|line| {
                let (key, value) = line.split_once(' ')?;
                (key == name).then(|| value.trim().parse().ok()).flatten()
            })
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.thaw();
        self.kill9();
        let _ = std::fs::remove_file(&self.log);
    }
}

/// The file a captured service's output goes to.
fn log_file(dir: &std::path::Path, service: Service) -> std::path::PathBuf {
    dir.join(format!("{}.log", service.binary()))
}

impl Drop for Stack {
    fn drop(&mut self) {
        for mut child in self
            .children
            .drain()
            .map(|(_, c)| c)
            .chain(self.extras.drain(..))
        {
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Some(dir) = &self.log_dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}
