//! Building the relay process apart from running it.

use std::future::Future;

use deadpool_postgres::Pool;
use poem::web::{Data, Json};
use poem::{get, handler, EndpointExt, IntoResponse, Route};
use serde_json::json;

use super::config::Config;
use crate::platform::http::Listener;
use crate::platform::{db, metrics};

pub struct App {
    listener: Listener,
    pool: Pool,
}

impl App {
    pub async fn build(config: Config) -> std::io::Result<Self> {
        let listener = Listener::bind(&config.common.host, config.settings.port).await?;
        let pool = config.db.pool();
        Ok(Self { listener, pool })
    }

    pub fn port(&self) -> u16 {
        self.listener.port()
    }

    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send,
    ) -> std::io::Result<()> {
        let app = Route::new()
            .at("/health", get(health))
            .at("/metrics", get(metrics::endpoint))
            .data(self.pool);
        tracing::info!(port = self.listener.port(), "outbox-relay listening");
        self.listener.serve(app, shutdown).await
    }
}

#[handler]
async fn health(pool: Data<&Pool>) -> poem::Response {
    let database = db::ping(&pool).await;
    let status = if database {
        poem::http::StatusCode::OK
    } else {
        poem::http::StatusCode::SERVICE_UNAVAILABLE
    };
    let body = json!({
        "status": if database { "ok" } else { "degraded" },
        "database": if database { "up" } else { "down" },
    });
    Json(body).with_status(status).into_response()
}
