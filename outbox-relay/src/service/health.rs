//! The broker check behind `/health/ready`, and `/metrics` (with the backlog gauges
//! refreshed on each scrape).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use deadpool_postgres::Pool;
use rdkafka::producer::Producer as _;

use crate::bookkeeping;
use crate::relay::{Producer, M_BACKLOG, M_OLDEST, M_PARKED};
use platform::kafka::BrokerAccess;
use platform::metrics as platform_metrics;

const BROKER_TIMEOUT: Duration = Duration::from_secs(1);
const BROKER_CACHE: Duration = Duration::from_secs(2);

/// Whether the broker answers a metadata request, cached briefly so health checks never
/// pile up on a broker that is away. An answer also clears an earlier refusal (the
/// credentials or certificates were fixed).
pub(crate) struct BrokerProbe {
    producer: Producer,
    access: Arc<BrokerAccess>,
    last: Mutex<Option<(Instant, bool)>>,
}

impl BrokerProbe {
    pub(crate) fn new(producer: Producer, access: Arc<BrokerAccess>) -> Self {
        Self {
            producer,
            access,
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
        if up {
            self.access.accepted();
        }
        if let Ok(mut last) = self.last.lock() {
            *last = Some((Instant::now(), up));
        }
        up
    }
}

/// `/metrics`: the outbox backlog measured on `pool` at each scrape, then every family.
pub(crate) fn metrics(pool: Pool) -> impl poem::Endpoint<Output = poem::Response> {
    poem::endpoint::make(move |_| {
        let pool = pool.clone();
        async move {
            if let Ok(client) = pool.get().await {
                match bookkeeping::backlog(&client).await {
                    Ok(backlog) => {
                        ::metrics::gauge!(M_BACKLOG).set(backlog.rows as f64);
                        ::metrics::gauge!(M_OLDEST).set(backlog.oldest_age_s);
                        ::metrics::gauge!(M_PARKED).set(backlog.parked as f64);
                    }
                    Err(error) => tracing::warn!(%error, "cannot measure the outbox backlog"),
                }
            }
            poem::Response::builder()
                .content_type("text/plain; version=0.0.4")
                .body(platform_metrics::render())
        }
    })
}
