//! Production-style connections, against real servers set up that way by
//! `scripts/infra.sh tls-up` (which `make test` runs): a PostgreSQL that accepts TLS only,
//! and a Kafka whose client listener is SASL_SSL with SCRAM-SHA-512, both with a
//! certificate from a test CA. The whole event path runs over them with `verify-full`, and
//! each misconfiguration fails with a message that names the setting to fix.

use std::process::{Command, Stdio};
use std::time::Duration;

use outbox_relay::service::startup::App as RelayApp;
use platform::db::DbConfig;
use platform::kafka::KafkaConfig;
use platform::testing::{binary_path, free_port, scratch_db_on, spawn_service, tls_fixture};
use serde_json::{json, Value};
use tests::eventually;
use tests::stack::Stack;
use uuid::Uuid;

#[tokio::test]
async fn the_event_path_runs_over_verify_full_postgres_and_sasl_ssl_kafka() -> anyhow::Result<()> {
    let tls = tls_fixture();
    let server = tls
        .db("verify-full", &tls.ca())
        .map_err(anyhow::Error::msg)?;
    let db = scratch_db_on(&server).await;
    let stack = Stack::on(db, tls.kafka()).await?.started().await?;

    let tag = Uuid::new_v4().simple().to_string();
    let registration = json!({
        "email": format!("tls.{}@example.com", &tag[..12]),
        "password": "a long and unusual passphrase 42",
        "first_name": "Grace",
        "last_name": "Hopper",
    });
    let response = stack.bff_post("/api/v1/register", &registration).await?;
    assert_eq!(response.status(), 201, "{}", response.text().await?);
    let user: Value = response.json().await?;

    // Outbox -> relay -> SASL_SSL Kafka -> consumer -> its table on the TLS database.
    assert!(
        eventually(Duration::from_secs(30), || async {
            stack
                .count("SELECT count(*) FROM consumer.welcome_notifications")
                .await
                .unwrap_or(-1)
                == 1
        })
        .await,
        "the registration's event was applied once"
    );
    let client = stack.db_client().await?;
    let applied: i64 = client
        .query_one(
            "SELECT count(*) FROM consumer.welcome_notifications WHERE user_id::text = $1",
            &[&user["id"].as_str().unwrap_or_default()],
        )
        .await?
        .get(0);
    assert_eq!(applied, 1);
    // Every connection of the services to this database is encrypted (the server refuses
    // others, so this also shows they connected at all).
    let (tls_connections, plain): (i64, i64) = {
        let row = client
            .query_one(
                "SELECT count(*) FILTER (WHERE s.ssl), count(*) FILTER (WHERE NOT s.ssl) \
                 FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid) \
                 WHERE a.datname = current_database()",
                &[],
            )
            .await?;
        (row.get(0), row.get(1))
    };
    assert!(tls_connections >= 4, "{tls_connections} TLS connections");
    assert_eq!(plain, 0);
    Ok(())
}

/// The message a process prints when it refuses to start, within a deadline (no hang).
fn start_failure(binary: &str, env: Vec<(String, String)>) -> String {
    let mut child = Command::new(binary_path(binary))
        .env_clear()
        .envs(env)
        .env("PORT", free_port().to_string())
        .env("LOG_FORMAT", "pretty")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            let output = child.wait_with_output().expect("output");
            assert!(!status.success(), "{binary} started");
            return format!(
                "{}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("{binary} neither started nor failed within 20 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// What the user service prints when it refuses to start on `db`.
fn user_service_start_failure(db: &DbConfig) -> String {
    let mut env = db.to_env();
    env.push((
        "INTERNAL_API_KEY".into(),
        "a-test-internal-key-0123456789".into(),
    ));
    start_failure("user-service", env)
}

/// `migrate status` run on `db`.
fn migrate_status(db: &DbConfig) -> std::process::Output {
    Command::new(binary_path("migrate"))
        .arg("status")
        .env_clear()
        .envs(db.to_env())
        .output()
        .unwrap()
}

/// The error connecting to `db` fails with, as printed.
async fn connect_error(db: &DbConfig) -> String {
    db.connect_explained().await.unwrap_err().to_string()
}

#[tokio::test]
async fn postgres_misconfigurations_fail_at_start_naming_the_setting() {
    let tls = tls_fixture();
    let good = tls.db("verify-full", &tls.ca()).unwrap();
    assert!(
        good.connect_explained().await.is_ok(),
        "the control connects"
    );

    let wrong_ca = tls.db("verify-full", &tls.other_ca()).unwrap();
    let error = connect_error(&wrong_ca).await;
    assert!(error.starts_with("DB_SSLROOTCERT"), "{error}");
    // verify-ca checks the chain too...
    let error = connect_error(&tls.db("verify-ca", &tls.other_ca()).unwrap()).await;
    assert!(error.starts_with("DB_SSLROOTCERT"), "{error}");
    // ...but not the name, which verify-full does.
    let by_other_name = DbConfig {
        db_host: "db.wrong-name.example".into(),
        db_hostaddr: Some("127.0.0.1".parse().unwrap()),
        ..tls.db("verify-ca", &tls.ca()).unwrap()
    };
    assert!(by_other_name.connect_explained().await.is_ok());
    let wrong_name = DbConfig {
        db_host: "db.wrong-name.example".into(),
        db_hostaddr: Some("127.0.0.1".parse().unwrap()),
        ..good.clone()
    };
    let error = connect_error(&wrong_name).await;
    assert!(error.starts_with("DB_HOST"), "{error}");

    let plaintext = tls.db("disable", &tls.ca()).unwrap();
    let error = connect_error(&plaintext).await;
    assert!(
        error.contains("DB_SSLMODE") && error.contains("TLS connections only"),
        "{error}"
    );

    let wrong_password = DbConfig {
        db_password: "not-the-password".to_owned().into(),
        ..good.clone()
    };
    let error = connect_error(&wrong_password).await;
    assert!(error.starts_with("DB_USER / DB_PASSWORD"), "{error}");
    assert!(!error.contains("not-the-password"), "{error}");

    // A server without TLS (make infra-up's) under verify-full.
    let no_tls = DbConfig {
        tls: good.tls.clone(),
        connector: good.connector.clone(),
        ..platform::testing::server_db()
    };
    let error = connect_error(&no_tls).await;
    assert!(error.contains("does not offer TLS"), "{error}");

    // The same through a service's start: it exits at once with the message.
    let printed = user_service_start_failure(&wrong_ca);
    assert!(printed.contains("DB_SSLROOTCERT"), "{printed}");
    let printed = user_service_start_failure(&wrong_name);
    assert!(printed.contains("DB_HOST"), "{printed}");
    // And the migrations tool, from the same settings.
    let migrate = migrate_status(&wrong_ca);
    assert!(!migrate.status.success());
    let printed = String::from_utf8_lossy(&migrate.stderr);
    assert!(printed.contains("DB_SSLROOTCERT"), "{printed}");
    let migrated = scratch_db_on(&good).await;
    let migrate = migrate_status(&migrated);
    assert!(
        migrate.status.success(),
        "{}",
        String::from_utf8_lossy(&migrate.stderr)
    );
}

/// A relay (in this process) connecting to Kafka with `kafka`; its `/health/ready` answer.
struct Relay {
    base: String,
    _stop: tokio::sync::oneshot::Sender<()>,
}

async fn relay_with(db: &DbConfig, kafka: &KafkaConfig) -> Relay {
    let mut env = db.to_env();
    env.extend(kafka.to_env());
    env.push(("PORT".into(), "0".into()));
    env.push(("RELAY_MESSAGE_TIMEOUT_MS".into(), "2000".into()));
    let (base, stop) = spawn_service::<RelayApp>(env).await;
    Relay { base, _stop: stop }
}

impl Relay {
    async fn ready(&self) -> (u16, Value) {
        let response = reqwest::get(format!("{}/health/ready", self.base))
            .await
            .expect("ready");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or_default())
    }

    /// Waits until readiness answers `status` after its first check (not "starting");
    /// the last body.
    async fn becomes(&self, status: u16, within: Duration) -> Value {
        self.becomes_with(status, within, |_| true).await
    }

    /// [`Relay::becomes`], with a body that also passes `check`.
    async fn becomes_with(
        &self,
        status: u16,
        within: Duration,
        check: impl Fn(&Value) -> bool,
    ) -> Value {
        let last = std::cell::RefCell::new(Value::Null);
        let reached = eventually(within, || async {
            let (now, body) = self.ready().await;
            let checked = body.get("kafka").is_some() && check(&body);
            *last.borrow_mut() = body;
            now == status && checked
        })
        .await;
        let last = last.into_inner();
        assert!(reached, "readiness never answered {status}: {last}");
        last
    }
}

#[tokio::test]
async fn kafka_refusals_make_the_service_unready_naming_kafka_and_it_recovers() {
    let tls = tls_fixture();
    let db = scratch_db_on(&tls.db("verify-full", &tls.ca()).unwrap()).await;
    let (user, password) = tls.kafka_user();

    // Control: the right settings are ready.
    let relay = relay_with(&db, &tls.kafka()).await;
    let body = relay.becomes(200, Duration::from_secs(20)).await;
    assert_eq!(body["kafka"], "up");

    // A wrong CA, and a plaintext client at the TLS-only listener.
    for (kafka, cause) in [
        (tls.kafka_as(&user, &password, &tls.other_ca()), "TLS"),
        (
            tls.kafka().with_property("security.protocol", "PLAINTEXT"),
            "KAFKA_SECURITY_PROTOCOL",
        ),
    ] {
        let relay = relay_with(&db, &kafka).await;
        // The broker check fails at once too ("broker":"down"); the refusal is named as
        // soon as librdkafka reports it.
        let refused = |b: &Value| b["kafka"] == "down";
        let body = relay
            .becomes_with(503, Duration::from_secs(30), refused)
            .await;
        assert_eq!(body["kafka"], "down", "{body}");
        let refused = body["kafka_refused"].as_str().unwrap_or_default();
        assert!(refused.contains(cause), "{cause}: {body}");
    }

    // Unknown credentials: unready and saying so, until the broker accepts them (here the
    // operator creates the user), then ready again by itself.
    let new_user = format!("relay-{}", &Uuid::new_v4().simple().to_string()[..8]);
    let new_password = Uuid::new_v4().simple().to_string();
    let relay = relay_with(&db, &tls.kafka_as(&new_user, &new_password, &tls.ca())).await;
    let named = |b: &Value| b.get("kafka_refused").is_some();
    let body = relay
        .becomes_with(503, Duration::from_secs(30), named)
        .await;
    assert!(
        body["kafka_refused"]
            .as_str()
            .unwrap_or_default()
            .contains("KAFKA_SASL_PASSWORD"),
        "{body}"
    );
    let infra = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/infra.sh");
    let created = Command::new("bash")
        .arg(infra)
        .args(["tls-user", &new_user, &new_password])
        .output()
        .unwrap();
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );
    let body = relay.becomes(200, Duration::from_secs(40)).await;
    assert_eq!(body["kafka"], "up");
    assert!(body.get("kafka_refused").is_none(), "{body}");
}
