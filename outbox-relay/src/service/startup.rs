//! Building the relay process apart from running it.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use deadpool_postgres::Pool;
use futures::FutureExt;
use poem::{get, EndpointExt, Route};

use super::config::Config;
use super::health::{self, BrokerProbe};
use crate::platform::http::Listener;
use crate::platform::metrics as platform_metrics;
use crate::relay::{create_producer, Relay, RelayStatus};

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("cannot bind the HTTP port")]
    Bind(#[from] std::io::Error),
    #[error("cannot create the Kafka producer")]
    Kafka(#[from] rdkafka::error::KafkaError),
}

/// What the HTTP handlers share.
#[derive(Clone)]
pub(crate) struct State {
    pub(crate) pool: Pool,
    pub(crate) status: Arc<RelayStatus>,
    pub(crate) broker: Arc<BrokerProbe>,
}

pub struct App {
    listener: Listener,
    state: State,
    relay: Relay,
}

impl App {
    /// Binds the port and creates the producer; neither the database nor Kafka has to be
    /// up yet (the relay waits and retries).
    pub async fn build(config: Config) -> Result<Self, BuildError> {
        let listener = Listener::bind(&config.common.host, config.settings.port).await?;
        // Installed before the relay records anything, so /metrics sees all of it.
        platform_metrics::handle();
        let producer = create_producer(&config.settings.producer())?;
        let relay = Relay::new(config.db.clone(), producer.clone(), config.settings.relay());
        let state = State {
            pool: config.db.pool(),
            status: relay.status(),
            broker: Arc::new(BrokerProbe::new(producer)),
        };
        Ok(Self {
            listener,
            state,
            relay,
        })
    }

    pub fn port(&self) -> u16 {
        self.listener.port()
    }

    pub fn status(&self) -> Arc<RelayStatus> {
        self.state.status.clone()
    }

    /// Relays and serves `/health` and `/metrics` until `shutdown`; then finishes the batch
    /// in flight and flushes the producer.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let stop = (Box::pin(shutdown) as Pin<Box<dyn Future<Output = ()> + Send>>).shared();
        let relay = tokio::spawn(self.relay.run(stop.clone()));
        let app = Route::new()
            .at("/health", get(health::health))
            .at("/metrics", get(health::metrics))
            .data(self.state);
        tracing::info!(port = self.listener.port(), "outbox-relay listening");
        let served = self.listener.serve(app, stop).await;
        if let Err(error) = relay.await {
            tracing::error!(%error, "relay task ended abnormally");
        }
        served
    }
}
