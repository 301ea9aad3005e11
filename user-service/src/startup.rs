//! Building the service (bind, pool, hasher) apart from running it, so tests can start it
//! on port 0 and drive it through its real listener.

use std::sync::Arc;

use deadpool_postgres::Pool;
use platform::health::{HealthApi, Readiness, REFRESH};
use platform::http::{Listener, MetricsAt};
use platform::metrics;
use platform::service::{Service, Shutdown};
use poem_openapi::OpenApiService;

use crate::api::admin::AdminApi;
use crate::api::directory::DirectoryApi;
use crate::api::users::UsersApi;
use crate::config::Config;
use crate::password::{HashError, Hasher};
use crate::state::AppState;
use crate::throttle::LoginThrottle;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot bind the listener")]
    Bind(#[from] std::io::Error),
    #[error("cannot set up password hashing")]
    Hasher(#[from] HashError),
}

#[derive(Debug)]
pub struct App {
    listener: Listener,
    metrics: MetricsAt,
    state: AppState,
    keys: platform::internal_key::ServerKeys,
}

impl App {
    pub fn pool(&self) -> &Pool {
        &self.state.pool
    }

    pub fn hasher(&self) -> &Hasher {
        &self.state.hasher
    }
}

impl Service for App {
    const NAME: &'static str = "user-service";
    type Settings = crate::config::Settings;
    type BuildError = StartError;

    async fn build(config: Config) -> Result<Self, StartError> {
        let listener = Listener::bind(&config.common.host, config.settings.port).await?;
        let metrics = MetricsAt::bind(&config.common, config.profile, crate::METRICS).await?;
        let hasher = Hasher::new(config.settings.scrypt_log_n, config.settings.hash_queue).await?;
        let keys = config.internal_keys.clone();
        let state = AppState {
            throttle: Arc::new(LoginThrottle::new(config.settings.login_policy())),
            pool: config.db.pool(),
            settings: Arc::new(config.settings),
            hasher,
        };
        Ok(Self {
            listener,
            metrics,
            state,
            keys,
        })
    }

    async fn run_until_stopped(self, shutdown: impl Shutdown) -> std::io::Result<()> {
        let readiness = Readiness::new().require_database(self.state.pool.clone());
        let _refresh = readiness.spawn_refresh(REFRESH);
        let api = OpenApiService::new(
            (
                HealthApi { readiness },
                UsersApi {
                    state: self.state.clone(),
                },
                AdminApi {
                    state: self.state.clone(),
                },
                DirectoryApi {
                    state: self.state.clone(),
                },
            ),
            "user-service",
            env!("CARGO_PKG_VERSION"),
        )
        .description("Internal API: users and the transactional outbox write path.")
        .server(format!("http://127.0.0.1:{}", self.port()));
        let app = platform::http::internal(api, self.keys, &self.metrics);
        let _metrics = self.metrics.spawn(poem::get(metrics::endpoint));
        tracing::info!(port = self.listener.port(), "user-service listening");
        self.listener.serve(app, shutdown).await
    }

    fn port(&self) -> u16 {
        self.listener.port()
    }
}
