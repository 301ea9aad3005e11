//! Test support: a scratch database, the real user service and the BFF, each on port 0.
#![allow(dead_code, unreachable_pub)]

use std::time::Duration;

use bff::startup::App;
use platform::db::DbConfig;
pub use platform::testing::scratch_db;
use platform::testing::{local_url, spawn_service, stop_signal};
use poem::listener::{Acceptor, Listener as _, TcpListener};
use poem::{Endpoint, Server};
use serde_json::{json, Value};
use tokio::sync::oneshot;

pub const KEY: &str = "test-internal-key-0123456789";

#[derive(Debug)]
pub struct Stack {
    /// The BFF.
    pub base: String,
    pub user_service: String,
    pub db: DbConfig,
    pub pool: deadpool_postgres::Pool,
    pub http: reqwest::Client,
    stops: Vec<oneshot::Sender<()>>,
}

fn db_env(db: &DbConfig) -> Vec<(String, String)> {
    vec![
        ("DB_HOST".into(), db.db_host.clone()),
        ("DB_PORT".into(), db.db_port.to_string()),
        ("DB_NAME".into(), db.db_name.clone()),
        ("DB_POOL_SIZE".into(), "4".into()),
    ]
}

/// Starts the real user service on `db`; returns its base URL.
pub async fn spawn_user_service(db: &DbConfig) -> (String, oneshot::Sender<()>) {
    let mut env = db_env(db);
    env.extend(
        [
            ("PORT", "0"),
            ("LOG_LEVEL", "warn"),
            ("SCRYPT_LOG_N", "10"),
            ("INTERNAL_API_KEY", KEY),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned())),
    );
    spawn_service::<user_service::startup::App>(env).await
}

/// Serves `endpoint` on a free port (fakes of the consumer, slow upstreams).
pub async fn spawn_fake(endpoint: impl Endpoint + 'static) -> (String, oneshot::Sender<()>) {
    let acceptor = TcpListener::bind("127.0.0.1:0")
        .into_acceptor()
        .await
        .expect("bind");
    let port = acceptor.local_addr()[0]
        .as_socket_addr()
        .expect("tcp")
        .port();
    let (stop, stopped) = stop_signal();
    tokio::spawn(
        Server::new_with_acceptor(acceptor).run_with_graceful_shutdown(
            endpoint,
            stopped,
            Some(Duration::from_secs(1)),
        ),
    );
    (local_url(port), stop)
}

/// Starts a BFF on `db` calling `user_service`, with extra settings.
pub async fn spawn_bff(
    db: &DbConfig,
    user_service: &str,
    extra: &[(&str, &str)],
) -> (String, oneshot::Sender<()>) {
    let mut env = db_env(db);
    env.extend(
        [
            ("PORT", "0"),
            ("LOG_LEVEL", "warn"),
            ("INTERNAL_API_KEY", KEY),
            ("USER_SERVICE_URL", user_service),
            ("EVENT_CONSUMER_URL", "http://127.0.0.1:1"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned())),
    );
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    spawn_service::<App>(env).await
}

/// A scratch database, the real user service, and a BFF with `extra` settings.
pub async fn spawn_stack(extra: &[(&str, &str)]) -> Stack {
    spawn_stack_on(scratch_db().await, extra).await
}

/// [`spawn_stack`] on a given database (one other services of the test share).
pub async fn spawn_stack_on(db: DbConfig, extra: &[(&str, &str)]) -> Stack {
    let (user_service, stop_users) = spawn_user_service(&db).await;
    let (base, stop_bff) = spawn_bff(&db, &user_service, extra).await;
    Stack {
        base,
        user_service,
        pool: db.pool(),
        db,
        http: reqwest::Client::new(),
        stops: vec![stop_users, stop_bff],
    }
}

/// Starts the real event consumer on `db`, consuming `topic` and dead-lettering to `dlq`;
/// returns its base URL.
pub async fn spawn_consumer(
    db: &DbConfig,
    topic: &str,
    dlq: &str,
) -> (String, oneshot::Sender<()>) {
    let mut env = db_env(db);
    env.extend(
        [
            ("PORT", "0"),
            ("LOG_LEVEL", "warn"),
            ("INTERNAL_API_KEY", KEY),
            ("KAFKA_BROKERS", &platform::testing::brokers()),
            ("CONSUMER_TOPIC", topic),
            ("CONSUMER_DLQ_TOPIC", dlq),
            (
                "CONSUMER_GROUP",
                &format!("test-group-{}", uuid::Uuid::new_v4().simple()),
            ),
            ("CONSUMER_SESSION_TIMEOUT_MS", "6000"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned())),
    );
    spawn_service::<event_consumer::startup::App>(env).await
}

pub fn registration(email: &str) -> Value {
    json!({
        "email": email,
        "password": PASSWORD,
        "first_name": "Ada",
        "last_name": "Lovelace",
    })
}

pub const PASSWORD: &str = "correct horse battery staple";

impl Stack {
    pub fn keep(&mut self, stop: oneshot::Sender<()>) {
        self.stops.push(stop);
    }

    pub async fn post(&self, path: &str, body: &Value, bearer: Option<&str>) -> (u16, Value) {
        let request = self.http.post(format!("{}{path}", self.base)).json(body);
        send(request, bearer).await
    }

    pub async fn get(&self, path: &str, bearer: Option<&str>) -> (u16, Value) {
        send(self.http.get(format!("{}{path}", self.base)), bearer).await
    }

    /// `GET path` with no token; the whole response (headers too).
    pub async fn fetch(&self, path: &str) -> reqwest::Response {
        let url = format!("{}{path}", self.base);
        self.http.get(url).send().await.expect("request")
    }

    /// `POST /api/v1/auth/login` with these credentials, whatever the answer.
    pub async fn login_with(&self, email: &str, password: &str) -> (u16, Value) {
        let credentials = json!({"email": email, "password": password});
        self.post("/api/v1/auth/login", &credentials, None).await
    }

    /// `POST /api/v1/auth/refresh` with `refresh_token`.
    pub async fn refresh(&self, refresh_token: &str) -> (u16, Value) {
        let body = json!({"refresh_token": refresh_token});
        self.post("/api/v1/auth/refresh", &body, None).await
    }

    /// `POST /api/v1/auth/logout` with `access` as the bearer; the status.
    pub async fn logout(&self, access: &str) -> u16 {
        let request = self.http.post(format!("{}/api/v1/auth/logout", self.base));
        send(request, Some(access)).await.0
    }

    /// `GET /api/v1/protected/profile` with `access` as the bearer.
    pub async fn profile(&self, access: &str) -> (u16, Value) {
        self.get("/api/v1/protected/profile", Some(access)).await
    }

    /// The status of `GET /api/v1/protected/profile` with `access` as the bearer.
    pub async fn profile_status(&self, access: &str) -> u16 {
        self.profile_status_on(&self.base, access).await
    }

    /// As [`Stack::profile_status`], on the BFF instance at `base` (another one, say).
    pub async fn profile_status_on(&self, base: &str, access: &str) -> u16 {
        let request = self.http.get(format!("{base}/api/v1/protected/profile"));
        send(request, Some(access)).await.0
    }

    /// `GET /api/v1/protected/admin/dashboard` with `token` as the bearer.
    pub async fn dashboard(&self, token: &str) -> (u16, Value) {
        self.get("/api/v1/protected/admin/dashboard", Some(token))
            .await
    }

    /// `POST /api/v1/protected/admin/outbox/replay` with `body`, `token` as the bearer.
    pub async fn replay(&self, body: &Value, token: &str) -> (u16, Value) {
        self.post("/api/v1/protected/admin/outbox/replay", body, Some(token))
            .await
    }

    pub async fn register(&self, email: &str) -> Value {
        let (status, user) = self
            .post("/api/v1/register", &registration(email), None)
            .await;
        assert_eq!(status, 201, "{user}");
        user
    }

    /// Logs in; returns (access, refresh).
    pub async fn login(&self, email: &str) -> (String, String) {
        let (status, body) = self.login_with(email, PASSWORD).await;
        assert_eq!(status, 200, "{body}");
        (
            body["access_token"].as_str().expect("access").to_owned(),
            body["refresh_token"].as_str().expect("refresh").to_owned(),
        )
    }

    pub async fn make_admin(&self, email: &str) {
        self.set_role(email, user_service::users::Role::Admin).await;
    }

    /// Gives the user `email` role `role`, as `user-service set-role` does.
    pub async fn set_role(&self, email: &str, role: user_service::users::Role) {
        let client = self.pool.get().await.expect("db");
        user_service::users::set_role(&client, email, role)
            .await
            .expect("set role")
            .expect("user exists");
    }
}

/// Sends `request` (with `bearer`, if any); the status and the JSON body (`null` if none).
async fn send(request: reqwest::RequestBuilder, bearer: Option<&str>) -> (u16, Value) {
    let request = match bearer {
        Some(token) => request.bearer_auth(token),
        None => request,
    };
    let response = request.send().await.expect("request");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// A URL where nothing listens.
pub async fn closed_port_url() -> String {
    local_url(platform::testing::free_port())
}
