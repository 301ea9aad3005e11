//! Test support: each test gets a scratch database and its own running app on port 0.
#![allow(dead_code, unreachable_pub)]

use platform::db::DbConfig;
use platform::service::Service as _;
pub use platform::testing::scratch_db;
use platform::testing::{local_url, stop_signal};
use serde_json::{json, Value};
use tokio::sync::oneshot;
use user_service::config::Config;
use user_service::startup::App;

pub const KEY: &str = "test-internal-key-0123456789";

pub struct TestApp {
    pub base: String,
    /// The scratch database, reached directly (not through any proxy).
    pub db: DbConfig,
    pub app_db: DbConfig,
    pub pool: deadpool_postgres::Pool,
    pub http: reqwest::Client,
    _stop: oneshot::Sender<()>,
}

pub fn env(db: &DbConfig) -> Vec<(String, String)> {
    [
        ("PORT", "0".to_owned()),
        ("LOG_LEVEL", "warn".to_owned()),
        ("SCRYPT_LOG_N", "10".to_owned()),
        ("INTERNAL_API_KEY", KEY.to_owned()),
        ("DB_HOST", db.db_host.clone()),
        ("DB_PORT", db.db_port.to_string()),
        ("DB_NAME", db.db_name.clone()),
        ("DB_POOL_SIZE", "4".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

pub async fn spawn_app() -> TestApp {
    let db = scratch_db().await;
    spawn_app_on(db.clone(), db).await
}

/// Starts the app against `app_db` (e.g. through a proxy) while the test reads `db`.
pub async fn spawn_app_on(db: DbConfig, app_db: DbConfig) -> TestApp {
    spawn_app_with(db, app_db, &[]).await
}

/// As [`spawn_app_on`], with some settings overridden (`("DB_POOL_SIZE", "1")`...).
pub async fn spawn_app_with(db: DbConfig, app_db: DbConfig, overrides: &[(&str, &str)]) -> TestApp {
    let mut env = env(&app_db);
    env.extend(
        overrides
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string())),
    );
    let config = Config::from_env(env).expect("config");
    let app = App::build(config).await.expect("app");
    let (stop, stopped) = stop_signal();
    let base = local_url(app.port());
    tokio::spawn(app.run_until_stopped(stopped));
    TestApp {
        base,
        pool: db.pool(),
        db,
        app_db,
        http: reqwest::Client::new(),
        _stop: stop,
    }
}

pub fn registration(email: &str) -> Value {
    json!({
        "email": email,
        "password": "correct horse battery staple",
        "first_name": "Ada",
        "last_name": "Lovelace",
    })
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn post(&self, path: &str, body: &Value) -> reqwest::Response {
        self.http
            .post(self.url(path))
            .bearer_auth(KEY)
            .json(body)
            .send()
            .await
            .expect("request")
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.http
            .get(self.url(path))
            .bearer_auth(KEY)
            .send()
            .await
            .expect("request")
    }

    /// `GET path` without the internal key (the open endpoints, or a refusal).
    pub async fn get_without_key(&self, path: &str) -> reqwest::Response {
        self.http.get(self.url(path)).send().await.expect("request")
    }

    pub async fn register(&self, body: &Value) -> (u16, Value) {
        let response = self.post("/api/v1/register", body).await;
        let status = response.status().as_u16();
        (status, response.json().await.expect("json body"))
    }

    pub async fn count(&self, sql: &str) -> i64 {
        let client = self.pool.get().await.expect("db");
        client.query_one(sql, &[]).await.expect("count").get(0)
    }

    pub async fn execute(&self, sql: &str) {
        let client = self.pool.get().await.expect("db");
        client.batch_execute(sql).await.expect("sql");
    }
}
