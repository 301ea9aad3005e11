//! Building the service (bind, pool) apart from running it, so tests can start it on
//! port 0 and drive it through its real listener.

use std::future::Future;

use deadpool_postgres::Pool;
use outbox_relay::platform::http::Listener;
use outbox_relay::platform::metrics;
use poem::{get, EndpointExt, Route};
use poem_openapi::OpenApiService;

use crate::api::health::HealthApi;
use crate::config::Config;

pub struct App {
    listener: Listener,
    pool: Pool,
    config: Config,
}

impl App {
    pub async fn build(config: Config) -> std::io::Result<Self> {
        let listener = Listener::bind(&config.common.host, config.settings.port).await?;
        let pool = config.db.pool();
        Ok(Self {
            listener,
            pool,
            config,
        })
    }

    pub fn port(&self) -> u16 {
        self.listener.port()
    }

    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send,
    ) -> std::io::Result<()> {
        let api = OpenApiService::new(HealthApi, "user-service", env!("CARGO_PKG_VERSION"))
            .server(format!("http://127.0.0.1:{}", self.port()));
        let app = Route::new()
            .at("/openapi.json", api.spec_endpoint())
            .nest("/docs", api.swagger_ui())
            .at("/metrics", get(metrics::endpoint))
            .nest("/", api)
            .data(self.pool)
            .data(self.config);
        tracing::info!(port = self.listener.port(), "user-service listening");
        self.listener.serve(app, shutdown).await
    }
}
