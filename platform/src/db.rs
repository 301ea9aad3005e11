//! The PostgreSQL connection settings every service shares (`DB_*`) and its pool.

use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct DbConfig {
    pub db_host: String,
    pub db_port: u16,
    pub db_name: String,
    pub db_user: String,
    pub db_password: SecretString,
    /// Connections in the pool.
    pub db_pool_size: usize,
    /// How long a request may wait for a connection (or to connect) before it is refused.
    pub db_timeout_ms: u64,
}

impl Default for DbConfig {
    fn default() -> Self {
        Self {
            db_host: "127.0.0.1".into(),
            db_port: 5432,
            db_name: "event_driven_db".into(),
            db_user: "postgres".into(),
            db_password: SecretString::from("postgres"),
            db_pool_size: 16,
            db_timeout_ms: 3000,
        }
    }
}

/// The password every fresh PostgreSQL install and the development profile use.
pub const DEV_DB_PASSWORD: &str = "postgres";

impl DbConfig {
    /// Whether the password is empty or the development default.
    pub fn has_default_password(&self) -> bool {
        let password = self.db_password.expose_secret();
        password.is_empty() || password == DEV_DB_PASSWORD
    }

    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.db_timeout_ms)
    }

    /// The same settings pointing at another database (tests use one each).
    pub fn with_database(&self, name: &str) -> Self {
        Self {
            db_name: name.to_owned(),
            ..self.clone()
        }
    }

    pub fn pg_config(&self) -> tokio_postgres::Config {
        let mut pg = tokio_postgres::Config::new();
        pg.host(&self.db_host)
            .port(self.db_port)
            .dbname(&self.db_name)
            .user(&self.db_user)
            .password(self.db_password.expose_secret())
            .connect_timeout(self.timeout())
            .keepalives_idle(Duration::from_secs(30));
        pg
    }

    /// A pool that waits at most `db_timeout_ms` for a connection, so a database that is
    /// away turns into a prompt error instead of a hung request. The pool connects lazily:
    /// building it succeeds with the database down, and it recovers by itself.
    pub fn pool(&self) -> Pool {
        let manager = Manager::from_config(
            self.pg_config(),
            tokio_postgres::NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let timeout = Some(self.timeout());
        Pool::builder(manager)
            .max_size(self.db_pool_size)
            .runtime(Runtime::Tokio1)
            .wait_timeout(timeout)
            .create_timeout(timeout)
            .recycle_timeout(timeout)
            .build()
            .expect("a pool with a runtime and timeouts always builds")
    }

    /// One connection outside any pool (LISTEN, advisory locks, migrations).
    pub async fn connect(&self) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
        let (client, connection) = self.pg_config().connect(tokio_postgres::NoTls).await?;
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::warn!(%error, "database connection closed");
            }
        });
        Ok(client)
    }
}

/// True when the database answers a trivial query within the pool's timeout.
pub async fn ping(pool: &Pool) -> bool {
    match pool.get().await {
        Ok(client) => client.simple_query("SELECT 1").await.is_ok(),
        Err(_) => false,
    }
}
