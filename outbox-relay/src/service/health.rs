//! `/health` (role, database, broker) and `/metrics` (with the backlog gauges refreshed
//! on each scrape).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use poem::http::StatusCode;
use poem::web::{Data, Json};
use poem::{handler, IntoResponse};
use rdkafka::producer::{FutureProducer, Producer};
use serde_json::json;

use super::startup::State;
use crate::platform::{db, metrics as platform_metrics};
use crate::relay::{store, M_BACKLOG, M_OLDEST};

const BROKER_TIMEOUT: Duration = Duration::from_secs(1);
const BROKER_CACHE: Duration = Duration::from_secs(2);

/// Whether the broker answers a metadata request, cached briefly so health checks never
/// pile up on a broker that is away.
pub(crate) struct BrokerProbe {
    producer: FutureProducer,
    last: Mutex<Option<(Instant, bool)>>,
}

impl BrokerProbe {
    pub(crate) fn new(producer: FutureProducer) -> Self {
        Self {
            producer,
            last: Mutex::new(None),
        }
    }

    pub(crate) async fn is_up(&self) -> bool {
        if let Ok(last) = self.last.lock() {
            if let Some((at, up)) = *last {
                if at.elapsed() < BROKER_CACHE {
                    return up;
                }
            }
        }
        let producer = self.producer.clone();
        let up = tokio::task::spawn_blocking(move || {
            producer
                .client()
                .fetch_metadata(None, BROKER_TIMEOUT)
                .is_ok_and(|metadata| !metadata.brokers().is_empty())
        })
        .await
        .unwrap_or(false);
        if let Ok(mut last) = self.last.lock() {
            *last = Some((Instant::now(), up));
        }
        up
    }
}

/// 200 while the process works (a standby or an absent broker is reported in the body),
/// 503 when the database is unreachable.
#[handler]
pub(crate) async fn health(state: Data<&State>) -> poem::Response {
    let (database, broker) = tokio::join!(db::ping(&state.pool), state.broker.is_up());
    let role = if state.status.is_leader() {
        "leader"
    } else {
        "standby"
    };
    let up_down = |up: bool| if up { "up" } else { "down" };
    let body = json!({
        "status": if database && broker { "ok" } else { "degraded" },
        "role": role,
        "database": up_down(database),
        "broker": up_down(broker),
    });
    let status = if database {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    Json(body).with_status(status).into_response()
}

#[handler]
pub(crate) async fn metrics(state: Data<&State>) -> poem::Response {
    if let Ok(client) = state.pool.get().await {
        match store::backlog(&client).await {
            Ok((count, oldest)) => {
                ::metrics::gauge!(M_BACKLOG).set(count as f64);
                ::metrics::gauge!(M_OLDEST).set(oldest);
            }
            Err(error) => tracing::warn!(%error, "cannot measure the outbox backlog"),
        }
    }
    poem::Response::builder()
        .content_type("text/plain; version=0.0.4")
        .body(platform_metrics::render())
}
